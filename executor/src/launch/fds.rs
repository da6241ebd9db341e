//! Step 1: file descriptors, environment and signals.
//!
//! The spawner hands each launcher its stdio and the plan socket only
//! (everything else it holds is `O_CLOEXEC`), but the launcher does not rely
//! on that: it closes every fd above 3 with `close_range(2)`, marks the plan
//! socket close-on-exec so the program never inherits it, resets every signal
//! disposition and unblocks all signals.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use super::plan::PLAN_FD;
use super::{sys, LaunchError};

/// The spawner's socket to airlockd, at fd 3.
pub fn take_control_socket() -> std::os::fd::OwnedFd {
    // SAFETY: airlockd always starts the spawner with its socket as fd 3,
    // and nothing else in the spawner refers to that fd. If fd 3 is not that
    // socket, the first recvmsg fails and the spawner exits.
    unsafe { crate::sys::adopt_fd(PLAN_FD) }
}

/// Takes ownership of the plan socket at fd 3.
pub fn take_plan_socket() -> UnixStream {
    // SAFETY: the supervisor always passes the plan socket as fd 3, and
    // nothing else in the launcher refers to that fd. If fd 3 is not a
    // socket, the first read fails and the launcher exits 127.
    unsafe { crate::sys::adopt_unix_stream(PLAN_FD) }
}

/// The spawner's pidfd in each launcher: kept until the uid switch, after
/// which the init arms its parent-death signal again
/// ([`super::namespaces::die_with_parent`]).
pub const SPAWNER_FD: i32 = PLAN_FD + 1;

/// Moves the spawner's pidfd to [`SPAWNER_FD`], close-on-exec.
pub fn keep_spawner_pidfd(
    pidfd: std::os::fd::OwnedFd,
) -> Result<std::os::fd::OwnedFd, LaunchError> {
    use std::os::fd::AsRawFd;
    if pidfd.as_raw_fd() == SPAWNER_FD {
        return Ok(pidfd);
    }
    crate::sys::dup_onto(pidfd.as_fd(), SPAWNER_FD).map_err(sys("keep the spawner's pidfd"))?;
    drop(pidfd);
    crate::sys::set_cloexec(SPAWNER_FD).map_err(sys("keep the spawner's pidfd"))?;
    // SAFETY: dup2 just made SPAWNER_FD; nothing else in this process owns it.
    Ok(unsafe { crate::sys::adopt_fd(SPAWNER_FD) })
}

/// Closes inherited fds (all but stdio, the plan socket and the spawner's
/// pidfd), marks the plan socket CLOEXEC, resets signals.
pub fn sanitize() -> Result<(), LaunchError> {
    crate::sys::close_fds_from(SPAWNER_FD as u32 + 1).map_err(sys("close inherited fds"))?;
    crate::sys::set_cloexec(PLAN_FD).map_err(sys("cloexec plan socket"))?;
    crate::sys::reset_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys("reset signal mask"))?;
    Ok(())
}

/// Points fds 0-2 at /dev/null (the init's copies of the task's pipes).
pub fn close_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = crate::sys::dup_onto(null.as_fd(), fd);
        }
    }
}
