//! What airlockd claims on its host, checked before it changes anything
//! there: start-up kills every process of its uid pool and removes what a
//! previous run left in its scratch root, so the pool must be no
//! account's and no other airlockd's, and the scratch root must hold
//! nothing airlockd did not make.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use airlock_policy::UidPool;
use anyhow::{bail, Context};

/// The file whose bytes stand for uids: each airlockd holds an
/// open-file-description lock on the bytes of its pool, so two pools on one
/// host cannot overlap. The kernel drops a lock with its holder.
pub const UID_LOCK_FILE: &str = "/run/airlock-uids.lock";

/// Locks the pool's uids in [`UID_LOCK_FILE`] for as long as the returned
/// file is open; refuses when another airlockd holds any of them.
pub fn lock_uid_pool(pool: UidPool) -> anyhow::Result<std::fs::File> {
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(UID_LOCK_FILE)
        .with_context(|| format!("open {UID_LOCK_FILE}"))?;
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: i64::from(pool.first),
        l_len: i64::from(pool.count),
        l_pid: 0,
    };
    match fcntl(&file, FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => return Ok(file),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {}
        Err(errno) => return Err(errno).with_context(|| format!("lock uids in {UID_LOCK_FILE}")),
    }
    // Which uids the other holds, for the message.
    let held = fcntl(&file, FcntlArg::F_OFD_GETLK(&mut lock))
        .ok()
        .filter(|_| lock.l_type != libc::F_UNLCK as libc::c_short)
        .map(|_| format!("uids {}..{}", lock.l_start, lock.l_start + lock.l_len))
        .unwrap_or_else(|| "some of them".to_string());
    bail!(
        "another airlockd on this host uses {held}, which overlap this policy's pool {}..{} \
         (sandbox.uid_first, sandbox.uid_count): its start-up would kill that airlockd's tasks; \
         give each airlockd a pool of its own",
        pool.first,
        pool.first + pool.count
    )
}

/// Refuses a pool that holds the uid of an account of this host (every
/// account the system's user database lists: /etc/passwd, and directories
/// such as LDAP where they enumerate): start-up would kill that account's
/// processes, and tasks would run as it.
pub fn check_no_account_in(pool: UidPool) -> anyhow::Result<()> {
    let found: Vec<String> = accounts()
        .into_iter()
        .filter(|(_, uid)| pool.contains(*uid))
        .map(|(name, uid)| format!("{name} ({uid})"))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let shown = found.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    bail!(
        "the uid pool {}..{} (sandbox.uid_first, sandbox.uid_count) holds the uids of {} of this host's accounts: {shown}; \
         start-up would kill their processes and tasks would run as them: move the pool to uids no account uses",
        pool.first,
        pool.first + pool.count,
        found.len()
    )
}

/// Refuses a pool that overlaps a user's subordinate uids (/etc/subuid):
/// that user's rootless containers run as them, and start-up would kill
/// their processes.
pub fn check_no_subordinate_uids_in(pool: UidPool) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string("/etc/subuid") {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).context("read /etc/subuid"),
    };
    let found = subordinate_overlaps(&text, pool);
    if found.is_empty() {
        return Ok(());
    }
    bail!(
        "the uid pool {}..{} (sandbox.uid_first, sandbox.uid_count) overlaps subordinate uids of /etc/subuid: {}; \
         start-up would kill their users' container processes: move the pool to uids no range there holds",
        pool.first,
        pool.first + pool.count,
        found.join(", ")
    )
}

/// The ranges of an /etc/subuid text (`user:first:count` lines) that
/// overlap `pool`, as `user (first..end)`.
fn subordinate_overlaps(text: &str, pool: UidPool) -> Vec<String> {
    let (pool_start, pool_end) = (
        u64::from(pool.first),
        u64::from(pool.first) + u64::from(pool.count),
    );
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let user = fields.next()?;
            let first: u64 = fields.next()?.parse().ok()?;
            let count: u64 = fields.next()?.parse().ok()?;
            let end = first.saturating_add(count);
            (first < pool_end && pool_start < end).then(|| format!("{user} ({first}..{end})"))
        })
        .collect()
}

/// Every account the user database enumerates, with its uid.
fn accounts() -> Vec<(String, u32)> {
    let mut found = Vec::new();
    // SAFETY: setpwent/getpwent/endpwent keep their state in libc; nothing
    // else in airlockd walks the user database, and it does this once, at
    // start-up. Each entry is copied out before the next call.
    unsafe {
        libc::setpwent();
        loop {
            let entry = libc::getpwent();
            if entry.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*entry).pw_name)
                .to_string_lossy()
                .into_owned();
            found.push((name, (*entry).pw_uid));
        }
        libc::endpwent();
    }
    found
}

/// Refuses a scratch root that holds what airlockd did not make: start-up
/// removes what a previous run left there. A task's scratch dir is a tmpfs
/// in the task's own mount namespace, so on the host the root holds only
/// airlockd's dot files, and, from versions that made scratch dirs on the
/// host, dirs owned by a pool uid.
pub fn check_scratch_root(root: &Path, pool: UidPool) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(err).with_context(|| format!("read scratch root {}", root.display()))
        }
    };
    let foreign: Vec<String> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        // A file system of its own has one; start-up leaves it alone.
        .filter(|e| !(e.file_name() == "lost+found" && e.metadata().is_ok_and(|m| m.uid() == 0)))
        .filter(|e| {
            !e.metadata()
                .is_ok_and(|m| m.is_dir() && pool.contains(m.uid()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let shown = foreign
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    bail!(
        "scratch root {} (sandbox.scratch_root) holds what airlockd did not make ({shown}{more}); \
         start-up removes what it finds there: name an empty or new directory of airlockd's own",
        root.display(),
        more = if foreign.len() > 5 { ", …" } else { "" },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_that_overlap_the_pool_are_found() {
        let text = "alice:100000:65536\nbob:165536:65536\n# comment\nbad line\n";
        let pool = |first, count| UidPool { first, count };
        assert_eq!(
            subordinate_overlaps(text, pool(200_000, 1000)),
            ["bob (165536..231072)"]
        );
        assert_eq!(subordinate_overlaps(text, pool(165_000, 1000)).len(), 2);
        assert!(subordinate_overlaps(text, pool(231_072, 1000)).is_empty());
        assert!(subordinate_overlaps(text, pool(99_000, 1000)).is_empty());
    }

    #[test]
    fn the_user_database_lists_root() {
        assert!(accounts().contains(&("root".to_string(), 0)));
    }

    #[test]
    fn a_pool_with_root_in_it_is_refused() {
        // Policies never allow a pool below 1000; the check itself does
        // not care.
        let err = check_no_account_in(UidPool { first: 0, count: 1 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("root (0)"), "{err}");
        check_no_account_in(UidPool {
            first: 2_000_000_000,
            count: 10,
        })
        .unwrap();
    }
}
