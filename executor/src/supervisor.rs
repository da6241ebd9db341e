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
    /// Its place in the order of admission (`ListTasks` pages by it).
    seq: u64,
}

/// Live and recently ended tasks.
#[derive(Default)]
pub struct Registry {
    /// Live tasks by id.
    pub live: HashMap<String, LiveTask>,
    /// Ended tasks with their place in the order of admission, newest
    /// last.
    pub ended: VecDeque<(u64, TaskInfo)>,
    /// The next task's place.
    next_seq: u64,
}

/// How much of a task's groups and arguments its [`TaskInfo`] keeps: a
/// request may carry 16 KiB of groups and 1 MiB of arguments, which
/// kept for each of [`ENDED_TASKS_KEPT`] ended tasks would be a GiB, and
/// listed at once more than a client takes.
pub const GROUPS_SHOWN_BYTES: usize = 1 << 10;
/// See [`GROUPS_SHOWN_BYTES`].
pub const ARGS_SHOWN_BYTES: usize = 4 << 10;

/// Most tasks on a page of `ListTasks`.
pub const PAGE_SIZE_MAX: usize = 1000;
/// A page of `ListTasks` ends before its tasks pass this many bytes,
/// half of a gRPC client's default limit.
pub const PAGE_BYTES_MAX: usize = 2 << 20;

/// What `GetTask` and `ListTasks` show of a task that has just been
/// admitted: its groups and arguments cut to fit (`abridged`).
pub fn task_info(
    task_id: &str,
    req: &airlock_protocol::v1::RunTaskRequest,
    uid: u32,
    started_at_ms: u64,
) -> TaskInfo {
    let (groups, cut_groups) = abridge(&req.groups, GROUPS_SHOWN_BYTES);
    let (args, cut_args) = abridge(&req.args, ARGS_SHOWN_BYTES);
    TaskInfo {
        task_id: task_id.to_string(),
        user: req.user.clone(),
        groups,
        program: req.program.clone(),
        args,
        uid,
        state: airlock_protocol::v1::TaskState::Starting as i32,
        started_at_ms,
        ended_at_ms: 0,
        exited: None,
        abridged: cut_groups || cut_args,
    }
}

/// The strings of `list` up to `budget` bytes in all: the last one kept
/// is cut on a UTF-8 boundary to fit; true when anything was left out.
fn abridge(list: &[String], budget: usize) -> (Vec<String>, bool) {
    let mut left = budget;
    let mut kept = Vec::new();
    for item in list {
        if item.len() <= left {
            left -= item.len();
            kept.push(item.clone());
            continue;
        }
        let cut = (0..=left)
            .rev()
            .find(|&i| item.is_char_boundary(i))
            .unwrap_or(0);
        kept.push(item[..cut].to_string());
        return (kept, true);
    }
    (kept, false)
}

impl Registry {
    /// Registers a task just admitted, after every task before it.
    pub fn insert(&mut self, info: TaskInfo, cancel: CancellationToken) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = info.task_id.clone();
        self.live.insert(id, LiveTask { info, cancel, seq });
    }

    /// Moves a live task to the ended ones, `update`d, keeping the last
    /// [`ENDED_TASKS_KEPT`].
    pub fn end(&mut self, id: &str, update: impl FnOnce(&mut TaskInfo)) {
        if let Some(mut live) = self.live.remove(id) {
            update(&mut live.info);
            self.ended.push_back((live.seq, live.info));
            while self.ended.len() > ENDED_TASKS_KEPT {
                self.ended.pop_front();
            }
        }
    }

    /// One page of `ListTasks`: the tasks admitted after `after` (the
    /// last task of the page before), in the order of admission, at most
    /// `size` of them and [`PAGE_BYTES_MAX`] bytes; and the last one's
    /// place, when tasks are left. A task admitted while pages are read
    /// comes after every task listed already: none is skipped.
    pub fn page(&self, size: usize, after: Option<u64>) -> (Vec<TaskInfo>, Option<u64>) {
        use prost::Message;
        let mut tasks: Vec<(u64, &TaskInfo)> = self
            .ended
            .iter()
            .map(|(seq, info)| (*seq, info))
            .chain(self.live.values().map(|l| (l.seq, &l.info)))
            .filter(|(seq, _)| after.is_none_or(|after| *seq > after))
            .collect();
        tasks.sort_unstable_by_key(|(seq, _)| *seq);
        let size = match size {
            0 => PAGE_SIZE_MAX,
            size => size.min(PAGE_SIZE_MAX),
        };
        let mut page = Vec::new();
        let mut last = None;
        let mut bytes = 0;
        for (seq, task) in &tasks {
            // Each task costs its length and a few bytes of framing.
            bytes += task.encoded_len() + 8;
            if page.len() == size || (bytes > PAGE_BYTES_MAX && !page.is_empty()) {
                break;
            }
            page.push((*task).clone());
            last = Some(*seq);
        }
        let next = last.filter(|_| page.len() < tasks.len());
        (page, next)
    }
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
    fn abridge_keeps_whole_strings_then_cuts_one_on_a_char_boundary() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            abridge(&list(&["ab", "cd"]), 4),
            (list(&["ab", "cd"]), false)
        );
        assert_eq!(
            abridge(&list(&["ab", "cd", "e"]), 4),
            (list(&["ab", "cd", ""]), true)
        );
        assert_eq!(
            abridge(&list(&["ab", "cdef"]), 4),
            (list(&["ab", "cd"]), true)
        );
        // "é" is two bytes: a cut inside it leaves it out.
        assert_eq!(abridge(&list(&["aé"]), 2), (list(&["a"]), true));
        assert_eq!(abridge(&[], 0), (vec![], false));
    }

    fn info(id: &str, args: usize) -> TaskInfo {
        TaskInfo {
            task_id: id.to_string(),
            args: vec!["x".repeat(args)],
            ..Default::default()
        }
    }

    #[test]
    fn pages_list_each_task_once_in_the_order_of_admission() {
        let mut registry = Registry::default();
        for id in ["c", "a", "b", "d"] {
            registry.insert(info(id, 0), CancellationToken::new());
        }
        registry.end("a", |t| t.state = 3);
        let ids = |page: &[TaskInfo]| page.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>();
        let (first, next) = registry.page(3, None);
        assert_eq!(ids(&first), ["c", "a", "b"]);
        assert_eq!(next, Some(2));
        // A task admitted meanwhile comes after the others, whatever its
        // id or start time; one that ends meanwhile keeps its place.
        registry.insert(info("0", 0), CancellationToken::new());
        registry.end("d", |_| {});
        let (second, next) = registry.page(3, next);
        assert_eq!(ids(&second), ["d", "0"]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_page_ends_before_it_passes_its_byte_bound() {
        let mut registry = Registry::default();
        for i in 0..5 {
            registry.insert(
                info(&format!("t{i}"), PAGE_BYTES_MAX / 3),
                CancellationToken::new(),
            );
        }
        let (page, next) = registry.page(0, None);
        assert_eq!(page.len(), 2);
        assert_eq!(next, Some(1));
        // One task larger than the bound still gets a page of its own.
        let mut big = Registry::default();
        big.insert(info("big", PAGE_BYTES_MAX * 2), CancellationToken::new());
        assert_eq!(big.page(0, None).0.len(), 1);
    }

    #[test]
    fn the_last_ended_tasks_are_kept() {
        let mut registry = Registry::default();
        for i in 0..ENDED_TASKS_KEPT + 2 {
            let id = format!("t{i}");
            registry.insert(info(&id, 0), CancellationToken::new());
            registry.end(&id, |_| {});
        }
        assert_eq!(registry.ended.len(), ENDED_TASKS_KEPT);
        assert_eq!(registry.ended[0].1.task_id, "t2");
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
