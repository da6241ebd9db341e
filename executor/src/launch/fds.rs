//! Step 1: file descriptors, environment and signals.
//!
//! The spawner hands each launcher its stdio and the plan socket, and the
//! fds the init uses while still root (the spawner's pidfd, the task's
//! mount namespace, its Landlock ruleset); the
//! launcher closes every other fd above 3 with
//! `close_range(2)` (it inherits the spawner's, all close-on-exec), marks the plan
//! socket close-on-exec so the program never inherits it, and unblocks all
//! signals. Dispositions need no reset here: the spawner reset every one
//! to its default at start-up and sets none (only SIG_IGN survives an exec).

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

/// Closes every inherited fd but stdio, the plan socket and `keep` (the
/// spawner's pidfd, the task's mount namespace and its Landlock ruleset,
/// until the init is done with them), marks the plan socket CLOEXEC,
/// unblocks every signal.
pub fn sanitize(keep: &[std::os::fd::BorrowedFd<'_>]) -> Result<(), LaunchError> {
    use std::os::fd::AsRawFd;
    let mut keep: Vec<u32> = keep.iter().map(|fd| fd.as_raw_fd() as u32).collect();
    keep.sort_unstable();
    let mut from = PLAN_FD as u32 + 1;
    for k in keep {
        if k < from {
            continue;
        }
        if k > from {
            crate::sys::close_fd_range(from, k - 1).map_err(sys("close inherited fds"))?;
        }
        from = k + 1;
    }
    crate::sys::close_fd_range(from, u32::MAX).map_err(sys("close inherited fds"))?;
    crate::sys::set_cloexec(PLAN_FD).map_err(sys("cloexec plan socket"))?;
    // Dispositions: the spawner reset them all once (it sets none).
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys("reset signal mask"))?;
    Ok(())
}

/// Closes this launcher's copy of a descriptor it borrows from the
/// spawner's state (the task's ruleset), once it is done with it.
pub fn close_inherited(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let fd = fd.as_raw_fd() as u32;
    let _ = crate::sys::close_fd_range(fd, fd);
}
