//! Step 5: the task's private mounts, made in its own mount namespace.
//!
//! - every mount becomes a slave (`MS_SLAVE|MS_REC`): nothing we mount
//!   propagates to the host, and host unmounts still reach us;
//! - `/tmp` and `/dev/shm`: fresh tmpfs, bounded by the plan's `tmp_bytes`,
//!   `nosuid,nodev,noexec`;
//! - the scratch dir is bind-mounted onto itself `nosuid,nodev,noexec`: a
//!   task cannot execute, or load through the dynamic loader
//!   (`mmap(PROT_EXEC)` fails on noexec), anything it wrote;
//! - `/proc`: a new procfs of the task's pid namespace, `subset=pid`
//!   (no /proc/sys, /proc/kcore, ...), `nosuid,nodev,noexec`;
//! - `/run`: an empty read-only tmpfs. Connecting to a Unix socket by path
//!   is not a Landlock right before ABI 9, and /run is where host daemons
//!   keep theirs (D-Bus, systemd, container runtimes, airlockd).
//!
//! The host's root stays visible; Landlock decides what may be read.
//! See mount(2), mount_namespaces(7), tmpfs(5), proc(5).

use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::plan::LaunchPlan;
use super::{sys, LaunchError};

const HARDENED: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Makes the task's mounts.
pub fn setup(plan: &LaunchPlan) -> Result<(), LaunchError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(sys("make mounts slave"))?;
    let tmpfs_options = format!(
        "size={},nr_inodes=16384,mode=1777",
        plan.tmp_bytes.max(4096)
    );
    for dir in ["/tmp", "/dev/shm"] {
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            HARDENED,
            Some(tmpfs_options.as_str()),
        )
        .map_err(sys(format!("mount tmpfs on {dir}")))?;
    }
    bind_hardened(&plan.scratch)?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        HARDENED,
        Some("subset=pid"),
    )
    .map_err(sys("mount /proc"))?;
    if std::path::Path::new("/run").is_dir() {
        mount(
            Some("tmpfs"),
            "/run",
            Some("tmpfs"),
            HARDENED | MsFlags::MS_RDONLY,
            Some("size=4k,nr_inodes=16,mode=755"),
        )
        .map_err(sys("mask /run"))?;
    }
    Ok(())
}

fn bind_hardened(dir: &Path) -> Result<(), LaunchError> {
    let step = format!("bind scratch dir {}", dir.display());
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(sys(step.clone()))?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | HARDENED,
        None::<&str>,
    )
    .map_err(sys(step))
}
