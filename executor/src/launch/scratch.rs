//! Step 5 (part): the task's scratch dir, a tmpfs of its own.
//!
//! Why a tmpfs and not a host directory: a directory on the host's disk is
//! bounded only per file (`RLIMIT_FSIZE`), so one task could fill the
//! worker's disk and starve its neighbours. A tmpfs has a size and an inode
//! bound of its own (`size=`, `nr_inodes=`): past them writes fail with
//! `ENOSPC`, and only this task sees that. It is mounted `nosuid,nodev,noexec`
//! (nothing written there can be executed or mapped executable) on the
//! scratch root of the task's own root, and holds only the task's dir (0700,
//! owned by the task's uid, at the same path the task has always had); it
//! vanishes with the task's mount namespace: nothing of it reaches the host's
//! disk, so purge has nothing to remove and nothing to trip over.
//!
//! The cost: tmpfs pages live in memory (and swap), not on disk, and are not
//! charged to the task's `RLIMIT_AS`; the policy's `limits.scratch` bounds
//! them per task. See tmpfs(5).
//!
//! The credential token (or credentials file) comes in the plan and is
//! written here by the init, still root, before the uid switch: 0400, owned
//! by the task's uid, in a 0500 dir. It never touches the host's disk.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path};

use nix::mount::mount;

use super::plan::{LaunchPlan, ScratchFile};
use super::{io, sys, LaunchError};

/// Inodes per scratch tmpfs: files and dirs a task may create there (a
/// Python virtualenv is a few thousand). Each costs kernel memory that
/// `size=` does not count, so it is bounded too.
pub const SCRATCH_INODES: u64 = 65_536;

/// Mounts a scratch tmpfs of `bytes` on the scratch root `root` (a mount
/// point in the task's template root: 0711, root's). The spawner does this
/// when it makes the task's mount namespace; the tmpfs will hold nothing
/// but the task's dir ([`make_dir`]).
pub fn mount_on(root: &Path, bytes: u64) -> Result<(), LaunchError> {
    let options = format!("size={bytes},nr_inodes={SCRATCH_INODES},mode=0711");
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        super::mounts::HARDENED,
        Some(options.as_str()),
    )
    .map_err(sys("mount the scratch tmpfs"))?;
    Ok(())
}

/// Makes the task's scratch dir in its scratch tmpfs (0700, the task
/// uid's) and writes the plan's files there.
pub fn make_dir(plan: &LaunchPlan) -> Result<(), LaunchError> {
    let step = "make the scratch dir";
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&plan.scratch)
        .map_err(io(step))?;
    let id = Some(nix::unistd::Uid::from_raw(plan.uid));
    nix::unistd::chown(
        &plan.scratch,
        id,
        Some(nix::unistd::Gid::from_raw(plan.uid)),
    )
    .map_err(sys(step))?;
    for file in &plan.scratch_files {
        write_private(&plan.scratch, file, plan.uid)?;
    }
    Ok(())
}

/// Writes one file 0400 into a new 0500 dir, both owned by `uid`: only the
/// task (and root) can read it. The task owns them and could make them
/// writable again, but replacing its own token only breaks its own
/// credentials (the endpoint compares the token with airlockd's copy).
fn write_private(scratch: &Path, file: &ScratchFile, uid: u32) -> Result<(), LaunchError> {
    // Not the file's path in the step: it names no secret, but the rule is
    // simple to keep when nothing but the fixed step names is reported.
    let step = "write the credentials into the scratch dir";
    let plain = file
        .path
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let (Some(dir), true) = (file.path.parent(), plain) else {
        return Err(LaunchError::Check {
            step: step.into(),
            detail: "the plan names a scratch file outside the scratch dir".into(),
        });
    };
    let dir = scratch.join(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io(step))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(scratch.join(&file.path))
        .map_err(io(step))?;
    out.write_all(file.contents.0.as_bytes())
        .map_err(io(step))?;
    let owner = Some(nix::unistd::Uid::from_raw(uid));
    let group = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::fchown(&out, owner, group).map_err(sys(step))?;
    drop(out);
    nix::unistd::chown(&dir, owner, group).map_err(sys(step))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500))
        .map_err(io(step))?;
    Ok(())
}
