//! The audit log: JSON lines, root-only (0600), one record per admission
//! decision, per task end, per supervisor start and per STS call made for
//! tasks. Records carry who, what, which uid, when and how it ended; never
//! arguments' or environment values, never a secret.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// How many bytes of environment names an admission record keeps.
pub const ENV_NAMES_LOGGED_BYTES: usize = 4 << 10;

/// A request's environment names as an admission record keeps them.
pub struct EnvNames {
    /// Sorted, whole names, up to [`ENV_NAMES_LOGGED_BYTES`].
    pub shown: Vec<String>,
    /// When names were left out: the SHA-256 of all of them, sorted, each
    /// followed by a NUL byte.
    pub sha256: Option<String>,
}

impl EnvNames {
    /// Names are never cut: a cut one would be a name nobody asked for.
    pub fn of<'a>(names: impl Iterator<Item = &'a String>) -> Self {
        let mut names: Vec<&str> = names.map(String::as_str).collect();
        names.sort_unstable();
        let mut left = ENV_NAMES_LOGGED_BYTES;
        let shown: Vec<String> = names
            .iter()
            .take_while(|name| match left.checked_sub(name.len()) {
                Some(rest) => {
                    left = rest;
                    true
                }
                None => false,
            })
            .map(|name| name.to_string())
            .collect();
        let sha256 = (shown.len() < names.len()).then(|| {
            let all: Vec<u8> = names.iter().flat_map(|n| n.bytes().chain([0])).collect();
            crate::pin::sha256_hex(all.as_slice()).unwrap_or_default()
        });
        Self { shown, sha256 }
    }
}

/// One audit event.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent<'a> {
    /// airlockd started and cleaned what a previous run left.
    Start {
        /// The cluster name from the policy.
        cluster: &'a str,
        /// Processes of pool uids killed at start-up.
        killed_processes: usize,
        /// Scratch dirs removed at start-up.
        removed_scratch_dirs: usize,
        /// SHA-256 of the policy file loaded.
        policy_sha256: &'a str,
    },
    /// A task was admitted or denied.
    Admission {
        /// The task id.
        task_id: &'a str,
        /// The user the task runs for.
        user: &'a str,
        /// The user's groups.
        groups: &'a [String],
        /// The program requested.
        program: &'a str,
        /// Number of arguments (values are not logged).
        arg_count: usize,
        /// Number of environment variables requested.
        env_count: usize,
        /// Their names, sorted (values are not logged), up to
        /// [`ENV_NAMES_LOGGED_BYTES`]: a request may carry 1 MiB of names,
        /// and every decision is recorded, denials too.
        env_names: &'a [String],
        /// Set when `env_names` leaves names out.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        env_names_abridged: bool,
        /// Then: the SHA-256 of every name, sorted, each followed by a NUL
        /// byte, so that the record still pins the whole list.
        #[serde(skip_serializing_if = "Option::is_none")]
        env_names_sha256: Option<&'a str>,
        /// "allow", "deny", or "refused" (allowed, but it could not start:
        /// a duplicate id, no free uid, no network namespace).
        decision: &'static str,
        /// Why, for denials.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        /// Who asked.
        #[serde(flatten)]
        driver: &'a Driver,
        /// The IAM role asked for or granted, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        role_arn: Option<&'a str>,
        /// SHA-256 of the policy file that decided.
        policy_sha256: &'a str,
    },
    /// A driver asked to cancel a task (`CancelTask`).
    Cancel {
        /// The task id asked for (clipped to 64 characters).
        task_id: &'a str,
        /// Whether a live task had that id (and was told to end).
        found: bool,
        /// Who asked.
        #[serde(flatten)]
        driver: &'a Driver,
    },
    /// The policy file was read again (SIGHUP or `ReloadPolicy`), and
    /// either replaced the policy or was rejected, changing nothing.
    PolicyReload {
        /// The policy file.
        path: &'a str,
        /// "sighup" or "api".
        trigger: &'a str,
        /// The caller's uid, for the API.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller_uid: Option<u32>,
        /// "applied" or "rejected".
        outcome: &'static str,
        /// SHA-256 of the file read (empty when it could not be read).
        sha256: &'a str,
        /// SHA-256 of the policy in force before.
        previous_sha256: &'a str,
        /// Why it was rejected.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    /// A task ended and was purged.
    TaskEnd {
        /// The task id.
        task_id: &'a str,
        /// The user.
        user: &'a str,
        /// The user's groups.
        groups: &'a [String],
        /// The program.
        program: &'a str,
        /// The per-task uid.
        uid: u32,
        /// Start, Unix ms.
        started_at_ms: u64,
        /// End, Unix ms.
        ended_at_ms: u64,
        /// completed, timeout, cancelled, limit, spawn_failed.
        reason: &'a str,
        /// Exit code, when it exited.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Signal, when it was killed.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// What purge cleaned.
        cleaned: &'a crate::purge::Cleaned,
        /// The AWS session the task had: role, assumed-role ARN, session
        /// name and source identity (never keys).
        #[serde(skip_serializing_if = "Option::is_none")]
        credentials: Option<&'a crate::credentials::broker::Attribution>,
    },
    /// One STS call made for tasks (never keys).
    CredentialsIssued {
        /// AssumeRole or AssumeRoleWithSAML.
        operation: &'static str,
        /// Whether it renewed a session tasks were holding.
        refresh: bool,
        /// The user.
        user: &'a str,
        /// Role, assumed-role ARN, session name and source identity.
        #[serde(flatten)]
        attribution: &'a crate::credentials::broker::Attribution,
        /// When the session expires, RFC 3339.
        expiration: &'a str,
    },
    /// An STS call made for tasks failed.
    CredentialsFailed {
        /// AssumeRole or AssumeRoleWithSAML.
        operation: &'static str,
        /// Whether it was to renew a session tasks were holding.
        refresh: bool,
        /// The user.
        user: &'a str,
        /// The role asked for.
        role_arn: &'a str,
        /// What failed and what to check.
        error: &'a str,
    },
}

/// The audit sink.
pub struct AuditLog {
    file: Mutex<File>,
}

/// Who made a request, as far as the connection tells: the driver's uid
/// on the Unix socket, or the SHA-256 of its client certificate (DER) on
/// mTLS.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Driver {
    /// The uid, on the Unix socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_uid: Option<u32>,
    /// The client certificate's SHA-256, on mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_cert_sha256: Option<String>,
}

/// Errors opening the audit log.
#[derive(Debug, thiserror::Error)]
#[error("open audit log {path}")]
pub struct AuditError {
    path: String,
    #[source]
    source: std::io::Error,
}

impl AuditLog {
    /// Opens (appends to) the log, creating it and its directory root-only.
    /// An existing log must be a regular file of this process's user (not
    /// a link), and is made 0600 if it was not: records name users, roles
    /// and sessions.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let err = |source| AuditError {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => std::io::Error::other(
                    "it is a symbolic link, which airlockd does not follow (another user \
                     could point it elsewhere): name the file itself",
                ),
                _ => e,
            })
            .map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let ours = nix::unistd::geteuid().as_raw();
        if !meta.is_file() || meta.uid() != ours {
            return Err(err(std::io::Error::other(format!(
                "it must be a regular file owned by uid {ours}, not one of uid {}: \
                 fix its owner, or move it away",
                meta.uid()
            ))));
        }
        if meta.mode() & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Appends one record with a timestamp. A failed write is logged, not
    /// fatal: the task's outcome does not depend on it.
    pub fn record(&self, event: &AuditEvent<'_>) {
        #[derive(Serialize)]
        struct Line<'a, 'b> {
            ts_ms: u64,
            #[serde(flatten)]
            event: &'a AuditEvent<'b>,
        }
        let line = Line {
            ts_ms: crate::now_ms(),
            event,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(err) = file.write_all(&text) {
            tracing::error!(?err, "failed to write audit record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An existing log readable by others is made 0600; a link in its
    /// place is refused.
    #[test]
    fn the_log_is_private_and_never_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("airlock-audit-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(std::fs::create_dir_all(&dir).is_ok());
        let log = dir.join("audit.jsonl");
        assert!(std::fs::write(&log, "").is_ok());
        assert!(std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).is_ok());
        assert!(AuditLog::open(&log).is_ok());
        let mode = std::fs::metadata(&log).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let link = dir.join("link.jsonl");
        assert!(std::os::unix::fs::symlink(&log, &link).is_ok());
        assert!(AuditLog::open(&link).is_err(), "a link was followed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
