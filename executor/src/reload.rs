//! Reloading the policy, on SIGHUP or the admin-only `ReloadPolicy` call.
//!
//! The file is read, parsed and validated in full (syntax, every key, and
//! what [`LoadedPolicy::new`] checks on this host: every program readable,
//! every pin matching) before anything changes; then the new policy replaces
//! the old one in a single assignment. An admitted task holds an `Arc` of the
//! policy it was admitted under, so running tasks are untouched, and a task
//! arriving during a reload is decided wholly by the old policy or wholly by
//! the new one. A file that fails any check changes nothing. Every attempt is
//! an audit record with the file's SHA-256.
//!
//! Some settings were acted on at start-up and cannot change without a
//! restart: the uid pool, the scratch root, the audit log, the network mode,
//! the `[credentials]` section and `best_effort` (checked against the
//! kernel's layers at start). A reload that changes one of them is rejected,
//! naming each. Listen sockets and TLS files are command-line options and are
//! not part of the policy.

use airlock_policy::Policy;

use crate::audit::AuditEvent;
use crate::supervisor::{LoadedPolicy, Supervisor};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read.
    #[error("cannot read policy {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("invalid policy, nothing changed:\n{0}")]
    Invalid(airlock_policy::PolicyErrors),
    /// The policy changes settings that need a restart.
    #[error("policy {path} changes settings that only a restart of airlockd applies ({}); nothing changed: restore them, or restart airlockd", keys.join(", "))]
    NeedsRestart {
        /// The file.
        path: String,
        /// The keys changed.
        keys: Vec<&'static str>,
    },
    /// A program of the policy cannot be used on this host.
    #[error("policy {path} cannot be loaded on this host, nothing changed")]
    Programs {
        /// The file.
        path: String,
        /// The cause (a missing program, a pin that does not match).
        #[source]
        source: std::io::Error,
    },
}

/// The policy now in force after a successful reload.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// SHA-256 of the new policy file.
    pub sha256: String,
    /// SHA-256 of the policy it replaced.
    pub previous_sha256: String,
    /// The new policy's cluster name.
    pub cluster: String,
    /// How many programs it allows.
    pub programs: usize,
}

/// Settings a reload may not change, as `(key, changed?)`.
pub fn restart_only_changes(old: &Policy, new: &Policy) -> Vec<&'static str> {
    [
        ("sandbox.uid_first/uid_count", old.uid_pool != new.uid_pool),
        ("sandbox.scratch_root", old.scratch_root != new.scratch_root),
        ("sandbox.audit_log", old.audit_log != new.audit_log),
        ("sandbox.best_effort", old.best_effort != new.best_effort),
        ("network.mode", old.network.mode != new.network.mode),
        ("credentials", old.credentials != new.credentials),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// Reads, validates and swaps in the policy file; `trigger` ("sighup" or
/// "api") and `caller_uid` go into the audit record. Blocking: it reads and
/// hashes files.
pub fn reload(
    sup: &Supervisor,
    trigger: &str,
    caller_uid: Option<u32>,
) -> Result<Reloaded, ReloadError> {
    let _one_at_a_time = match sup.reloading.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let path = sup.config.display().to_string();
    let previous = sup.policy();
    let mut sha256 = String::new();
    let result = load(sup, &previous, &path, &mut sha256);
    let (outcome, error) = match &result {
        Ok(_) => ("applied", None),
        Err(err) => ("rejected", Some(error_text(err))),
    };
    sup.audit.record(&AuditEvent::PolicyReload {
        path: &path,
        trigger,
        caller_uid,
        outcome,
        sha256: &sha256,
        previous_sha256: &previous.sha256,
        error: error.as_deref(),
    });
    match &result {
        Ok(r) => tracing::info!(
            policy = %path, sha256 = %r.sha256, previous = %r.previous_sha256, trigger,
            "policy reloaded"
        ),
        Err(_) => tracing::error!(
            policy = %path, trigger, error = error.as_deref().unwrap_or_default(),
            "policy reload rejected; the previous policy stays in force"
        ),
    }
    result
}

fn load(
    sup: &Supervisor,
    previous: &LoadedPolicy,
    path: &str,
    sha256: &mut String,
) -> Result<Reloaded, ReloadError> {
    let text = crate::sys::check_root_only(&sup.config, "the policy file")
        .and_then(|()| std::fs::read_to_string(&sup.config))
        .map_err(|source| ReloadError::Read {
            path: path.to_string(),
            source,
        })?;
    *sha256 = crate::pin::sha256_hex(text.as_bytes()).unwrap_or_default();
    let policy = Policy::parse(&text, path).map_err(ReloadError::Invalid)?;
    let keys = restart_only_changes(&previous.policy, &policy);
    if !keys.is_empty() {
        return Err(ReloadError::NeedsRestart {
            path: path.to_string(),
            keys,
        });
    }
    let mut loaded = LoadedPolicy::new(policy).map_err(|source| ReloadError::Programs {
        path: path.to_string(),
        source,
    })?;
    loaded.sha256 = sha256.clone();
    let reloaded = Reloaded {
        sha256: sha256.clone(),
        previous_sha256: previous.sha256.clone(),
        cluster: loaded.policy.cluster.clone(),
        programs: loaded.policy.programs.len(),
    };
    let new = std::sync::Arc::new(loaded);
    match sup.policy.write() {
        Ok(mut current) => *current = new,
        Err(poisoned) => *poisoned.into_inner() = new,
    }
    Ok(reloaded)
}

/// The error and its causes on one line, for the audit log and the API.
pub fn error_text(err: &ReloadError) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BASE: &str = "cluster = \"c\"\nmode = \"shared\"\n[sandbox]\nuid_first = 200000\n\
        uid_count = 10\nscratch_root = \"/var/lib/airlock/tasks\"\nread_only = []\n\
        [network]\nmode = \"host\"\nconnect_tcp = [443]\n[[program]]\npath = \"/bin/true\"\n";

    fn parse(text: &str) -> Policy {
        Policy::parse(text, "p.toml").unwrap()
    }

    #[test]
    fn allowlist_ports_and_limits_may_change_on_reload() {
        let new = BASE
            .replace("[443]", "[443, 8443]")
            .replace("/bin/true", "/bin/false")
            + "[limits]\nmemory = \"64MiB\"\n";
        assert_eq!(
            restart_only_changes(&parse(BASE), &parse(&new)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn start_up_settings_changed_on_reload_are_each_named() {
        let new = BASE
            .replace("uid_count = 10", "uid_count = 20")
            .replace("/var/lib/airlock/tasks", "/srv/tasks")
            .replace("mode = \"host\"\nconnect_tcp = [443]", "mode = \"none\"");
        assert_eq!(
            restart_only_changes(&parse(BASE), &parse(&new)),
            vec![
                "sandbox.uid_first/uid_count",
                "sandbox.scratch_root",
                "network.mode"
            ]
        );
    }
}
