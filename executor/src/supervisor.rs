//! The supervisor's shared state: the loaded policy and what was derived
//! from it at load time, the uid pool, the task registry, and the facts
//! probed at start-up.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use airlock_policy::Policy;
use airlock_protocol::v1::TaskInfo;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::seccomp_profile::SeccompPrograms;
use crate::uids::UidPool;

/// How many ended tasks `GetTask`/`ListTasks` still show.
pub const ENDED_TASKS_KEPT: usize = 1000;

/// A policy plus what the supervisor derives from it once, at load time.
pub struct LoadedPolicy {
    /// The policy.
    pub policy: Policy,
    /// For each allowlisted program, the files its exec opens (the program,
    /// then interpreters), which get Landlock EXECUTE.
    pub exec_closure: HashMap<PathBuf, Vec<PathBuf>>,
    /// The policy's read-only paths that exist on this host.
    pub read_only: Vec<PathBuf>,
    /// SHA-256 of the policy file's text (64 lower-case hex digits); empty
    /// when the policy did not come from a file.
    pub sha256: String,
}

impl LoadedPolicy {
    /// Derives the exec closures and existing read-only paths. A program
    /// that cannot be read is a load error: it could never run; so is a
    /// pinned program whose file does not have the pinned digest.
    pub fn new(policy: Policy) -> Result<Self, std::io::Error> {
        let mut exec_closure = HashMap::new();
        for rule in &policy.programs {
            if let Some(pinned) = &rule.sha256 {
                let actual = std::fs::File::open(&rule.path)
                    .and_then(crate::pin::sha256_hex)
                    .map_err(|err| {
                        std::io::Error::new(
                            err.kind(),
                            format!("program {}: {err}", rule.path.display()),
                        )
                    })?;
                if actual != *pinned {
                    let msg = crate::pin::mismatch(&rule.path, pinned, &actual);
                    return Err(std::io::Error::other(format!(
                        "{msg}: pin the file's digest or restore the file"
                    )));
                }
            }
            let closure = crate::exec_index::exec_closure(&rule.path).map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("program {}: {err}", rule.path.display()),
                )
            })?;
            exec_closure.insert(rule.path.clone(), closure);
        }
        let read_only = policy
            .read_only
            .iter()
            .filter(|p| {
                let exists = p.exists();
                if !exists {
                    tracing::warn!(path = %p.display(), "read_only path does not exist on this host; skipped");
                }
                exists
            })
            .cloned()
            .collect();
        Ok(Self {
            policy,
            exec_closure,
            read_only,
            sha256: String::new(),
        })
    }

    /// Every file a task of this user may execute: the closures of the
    /// programs the user may run.
    pub fn executables_for(&self, user: &str, groups: &[String]) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for rule in self
            .policy
            .programs
            .iter()
            .filter(|r| r.admits(user, groups))
        {
            for path in self.exec_closure.get(&rule.path).into_iter().flatten() {
                if !out.contains(path) {
                    out.push(path.clone());
                }
            }
        }
        out
    }
}

/// A live task in the registry.
pub struct LiveTask {
    /// What `GetTask` shows.
    pub info: TaskInfo,
    /// Cancels the task (CancelTask, client gone, shutdown).
    pub cancel: CancellationToken,
}

/// Live and recently ended tasks.
#[derive(Default)]
pub struct Registry {
    /// Live tasks by id.
    pub live: HashMap<String, LiveTask>,
    /// Ended tasks, newest last.
    pub ended: VecDeque<TaskInfo>,
}

/// Facts probed at start-up.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The kernel's Landlock ABI (0: none, allowed by the policy).
    pub landlock_abi: i32,
    /// Whether seccomp filters are installed (false only when the host
    /// lacks them and the policy allows that).
    pub seccomp: bool,
}

/// Everything the service and the task runners share.
pub struct Supervisor {
    /// The current policy: read once per admission ([`Supervisor::policy`]),
    /// replaced whole by a reload ([`crate::reload`]). An admitted task holds
    /// its own `Arc`, so a reload never changes a task's policy.
    pub policy: RwLock<Arc<LoadedPolicy>>,
    /// The policy file, read again on reload.
    pub config: PathBuf,
    /// Held for the whole of a reload, so that two reloads (SIGHUP and the
    /// API) cannot interleave their check and swap.
    pub reloading: Mutex<()>,
    /// Free task uids.
    pub uids: UidPool,
    /// The audit log.
    pub audit: AuditLog,
    /// Compiled seccomp programs.
    pub seccomp: SeccompPrograms,
    /// Probed facts.
    pub host: HostFacts,
    /// Tasks.
    pub tasks: Mutex<Registry>,
    /// Cancelled on shutdown: every task is cancelled with it.
    pub shutdown: CancellationToken,
    /// Empty network namespaces for tasks without network, one per live
    /// task.
    pub netns: Arc<crate::netns::NetnsPool>,
    /// AWS credentials for tasks; `None` when the policy has no
    /// `[credentials]` section.
    pub credentials: Option<Arc<crate::credentials::CredentialService>>,
    /// Starts every task's launcher.
    pub spawner: crate::spawner::Spawner,
}

impl Supervisor {
    /// The policy in force now (a poisoned lock still holds a whole `Arc`:
    /// the swap is a single assignment).
    pub fn policy(&self) -> Arc<LoadedPolicy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Locks the registry (a poisoned lock is still usable: entries are
    /// plain data).
    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        match self.tasks.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy_pinning(program: &str, sha256: &str) -> Policy {
        let text = format!(
            "cluster = \"c\"\nmode = \"shared\"\n[sandbox]\nuid_first = 200000\nuid_count = 10\n\
             scratch_root = \"/var/lib/airlock/tasks\"\nread_only = []\n[network]\nmode = \"none\"\n\
             [[program]]\npath = \"{program}\"\nsha256 = \"{sha256}\"\n"
        );
        Policy::parse(&text, "p.toml").unwrap()
    }

    #[test]
    fn pinned_program_with_another_digest_is_a_load_error() {
        let actual = crate::pin::sha256_hex(std::fs::File::open("/bin/true").unwrap()).unwrap();
        assert!(LoadedPolicy::new(policy_pinning("/bin/true", &actual)).is_ok());
        let wrong = "0".repeat(64);
        let err = LoadedPolicy::new(policy_pinning("/bin/true", &wrong))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&wrong) && err.contains(&actual), "{err}");
        assert!(err.contains("/bin/true"), "{err}");
    }
}
