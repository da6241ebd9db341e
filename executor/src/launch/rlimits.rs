//! Step 6: resource limits, the portable floor on every host (cgroups v2 is
//! used where a host offers it). With a per-task uid, `RLIMIT_NPROC` counts
//! just this task's processes. A core limit of 0 keeps memory images of the
//! task off the disk. See setrlimit(2).

use nix::sys::resource::{setrlimit, Resource};

use super::plan::Rlimits;
use super::{sys, LaunchError};

/// Applies the limits (soft = hard, except CPU: SIGXCPU at the soft limit,
/// SIGKILL one second later).
pub fn apply(limits: &Rlimits) -> Result<(), LaunchError> {
    let table = [
        (
            Resource::RLIMIT_AS,
            limits.memory_bytes,
            limits.memory_bytes,
            "RLIMIT_AS",
        ),
        (
            Resource::RLIMIT_NPROC,
            limits.processes,
            limits.processes,
            "RLIMIT_NPROC",
        ),
        (
            Resource::RLIMIT_NOFILE,
            limits.open_files,
            limits.open_files,
            "RLIMIT_NOFILE",
        ),
        (
            Resource::RLIMIT_FSIZE,
            limits.file_size_bytes,
            limits.file_size_bytes,
            "RLIMIT_FSIZE",
        ),
        (
            Resource::RLIMIT_CPU,
            limits.cpu_seconds,
            limits.cpu_seconds.saturating_add(1),
            "RLIMIT_CPU",
        ),
        (Resource::RLIMIT_CORE, 0, 0, "RLIMIT_CORE"),
        (Resource::RLIMIT_MEMLOCK, 0, 0, "RLIMIT_MEMLOCK"),
    ];
    for (resource, soft, hard, name) in table {
        setrlimit(resource, soft, hard).map_err(sys(format!("set {name}")))?;
    }
    Ok(())
}
