//! Purge: what happens after a task's init has died, and at start-up for
//! whatever a crash left behind. The pid namespace is already gone (the
//! kernel reaps every process of it before its init's exit completes), so
//! the scan for processes of the uid is a check that must find nothing; if
//! it does find some, it kills them, and a uid that cannot be cleared is
//! never handed out again.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// What purge did, for the audit record.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Cleaned {
    /// The scratch dir is gone.
    pub scratch_removed: bool,
    /// Processes of the task's uid found and killed after its init died.
    pub processes_killed: usize,
    /// The uid went back to the pool.
    pub uid_released: bool,
}

/// Pids of processes whose real, effective, saved or filesystem uid
/// satisfies `is_task_uid`, read from `/proc/*/status`.
pub fn processes_of(is_task_uid: impl Fn(u32) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .is_some_and(|ids| {
                    ids.split_whitespace()
                        .filter_map(|u| u.parse().ok())
                        .any(&is_task_uid)
                })
        })
        .collect()
}

/// SIGKILLs each pid through a pidfd (no pid-reuse race). Returns how many
/// were signalled.
pub fn kill_all(pids: &[i32]) -> usize {
    pids.iter()
        .filter(|pid| {
            crate::sys::pidfd_open(**pid)
                .and_then(|fd| {
                    crate::sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&fd), libc::SIGKILL)
                })
                .is_ok()
        })
        .count()
}

/// Kills every process of `uid` until none is left; false if some survive
/// two seconds (then the uid must not be reused).
pub async fn clear_uid(uid: u32, cleaned: &mut Cleaned) -> bool {
    for _ in 0..100 {
        let pids = processes_of(|u| u == uid);
        if pids.is_empty() {
            return true;
        }
        cleaned.processes_killed += kill_all(&pids);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Removes a task's scratch dir (as root, whatever the task left in it).
pub fn remove_scratch(dir: &Path) -> bool {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => true,
        Err(err) => {
            tracing::error!(dir = %dir.display(), ?err, "failed to remove scratch dir");
            false
        }
    }
}

/// Start-up: kill every process of a pool uid and remove every scratch dir
/// a previous run left. Returns (processes killed, dirs removed).
pub fn startup_cleanup(first_uid: u32, count: u32, scratch_root: &Path) -> (usize, usize) {
    let in_pool = |u: u32| u >= first_uid && u - first_uid < count;
    let mut killed = 0;
    for _ in 0..100 {
        let pids = processes_of(in_pool);
        if pids.is_empty() {
            break;
        }
        killed += kill_all(&pids);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(scratch_root) {
        // Task ids never start with '.': dot files are airlockd's own.
        for entry in entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        {
            if remove_scratch(&entry.path()) {
                removed += 1;
            }
        }
    }
    (killed, removed)
}
