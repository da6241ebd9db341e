//! Purge: what happens after a task's init has died, and at start-up for
//! whatever a crash left behind. When airlockd's pidfd of the task's init
//! turns readable, the kernel has already reaped every process of the
//! task's pid namespace; otherwise (the init did not end in time) every
//! process of the uid is looked up in /proc and killed, and a uid that
//! cannot be cleared is never handed out again.

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
    match remove_tree(dir) {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(dir = %dir.display(), ?err, "failed to remove scratch dir");
            false
        }
    }
}

/// [`remove_scratch`] on a blocking thread: a task can leave millions of
/// files, and removing them must not stall the gRPC service.
pub async fn remove_scratch_async(dir: std::path::PathBuf) -> bool {
    tokio::task::spawn_blocking(move || remove_scratch(&dir))
        .await
        .unwrap_or(false)
}

/// Removes `dir` and everything below it without recursion and with at most
/// three directories open: a task's tree may be deeper than any stack or fd
/// limit (a chain of 20,000 nested dirs overflowed the recursive
/// `remove_dir_all`). Entries of a non-empty subdirectory are moved up into
/// `dir` (renames never follow symlinks, and nothing below `dir` is ever
/// resolved through a link), then the emptied subdirectory is removed.
/// Only for quiescent trees: every process of the task is gone.
pub fn remove_tree(dir: &Path) -> nix::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{open, openat, renameat2, OFlag, RenameFlags};
    use nix::sys::stat::Mode;
    use nix::unistd::{unlinkat, UnlinkatFlags};

    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = match open(dir, flags, Mode::empty()) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other?,
    };
    let mut hoisted = 0u64;
    loop {
        let names = list_dir(&root, 4096)?;
        if names.is_empty() {
            break;
        }
        for name in &names {
            match unlinkat(&root, name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                Err(Errno::EISDIR) => {}
                Err(err) => return Err(err),
            }
            match unlinkat(&root, name.as_c_str(), UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
                Err(err) => return Err(err),
            }
            let sub = openat(&root, name.as_c_str(), flags, Mode::empty())?;
            for child in list_dir(&sub, 4096)? {
                loop {
                    hoisted += 1;
                    let target = format!(".purge-{hoisted}");
                    match renameat2(
                        &sub,
                        child.as_c_str(),
                        &root,
                        target.as_str(),
                        RenameFlags::RENAME_NOREPLACE,
                    ) {
                        Err(Errno::EEXIST) => continue,
                        other => break other?,
                    }
                }
            }
        }
    }
    drop(root);
    match std::fs::remove_dir(dir)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Up to `max` names in the directory `fd` (without `.` and `..`), read
/// through a fresh open file description so each call starts at the top.
fn list_dir(fd: &std::os::fd::OwnedFd, max: usize) -> nix::Result<Vec<std::ffi::CString>> {
    use nix::fcntl::OFlag;
    let mut dir = nix::dir::Dir::openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
            if names.len() == max {
                break;
            }
        }
    }
    Ok(names)
}

/// What start-up found of a previous run.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Processes of pool uids killed.
    pub killed: usize,
    /// Scratch dirs removed.
    pub removed: usize,
    /// Owners of processes or scratch dirs that could not be cleared: these
    /// uids must not be handed out.
    pub stuck_uids: Vec<u32>,
}

/// Start-up: kill every process of a pool uid and remove every scratch dir
/// a previous run left.
pub fn startup_cleanup(pool: airlock_policy::UidPool, scratch_root: &Path) -> Leftovers {
    use std::os::unix::fs::MetadataExt;
    let in_pool = |u: u32| pool.contains(u);
    let mut found = Leftovers::default();
    for _ in 0..100 {
        let pids = processes_of(in_pool);
        if pids.is_empty() {
            break;
        }
        found.killed += kill_all(&pids);
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in processes_of(in_pool) {
        if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}")) {
            found.stuck_uids.push(meta.uid());
        }
    }
    if let Ok(entries) = std::fs::read_dir(scratch_root) {
        // Task ids never start with '.': dot files are airlockd's own. A
        // scratch dir was its task uid's; anything else is not removed
        // (`claim::check_scratch_root` refused to start on it, or it is a
        // file system's lost+found).
        for entry in entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        {
            let Some(uid) = entry
                .metadata()
                .ok()
                .map(|m| m.uid())
                .filter(|u| in_pool(*u))
            else {
                continue;
            };
            if remove_scratch(&entry.path()) {
                found.removed += 1;
            } else {
                found.stuck_uids.push(uid);
            }
        }
    }
    found
}
