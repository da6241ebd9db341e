//! The only module with `unsafe`: raw system calls that `nix`, `caps`,
//! `landlock` and `seccompiler` do not wrap, all in one shape: the call, then
//! [`check`] turning `-1` into the `errno`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Maps a raw syscall return to `Result`, reading `errno` on `-1`.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// The kernel's Landlock ABI version, or 0 when Landlock is unavailable.
pub fn landlock_abi() -> i32 {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION (1) with a null attr and size 0
    // only returns the ABI version; no memory is read or written.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    check(ret).map_or(0, |v| v as i32)
}

/// Adds a path-beneath rule to a Landlock ruleset: `access` (the kernel's
/// `LANDLOCK_ACCESS_FS_*` bits) on everything beneath `parent`. For a
/// ruleset the spawner made, to which a task's init adds what only it can
/// open (the `landlock` crate builds rulesets from its own types only).
pub fn landlock_add_path_rule(
    ruleset: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    access: u64,
) -> Result<(), Errno> {
    /// `struct landlock_path_beneath_attr` (packed, as the kernel's).
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let attr = PathBeneath {
        allowed_access: access,
        parent_fd: parent.as_raw_fd(),
    };
    // SAFETY: `attr` is a live, correctly laid out rule attribute that the
    // kernel only reads; both descriptors are borrowed and valid.
    check(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneath,
            0u32,
        )
    })
    .map(drop)
}

/// Restricts the calling thread (and what it execs) with a Landlock
/// ruleset (landlock_restrict_self(2)); needs no_new_privs first.
pub fn landlock_restrict_self(ruleset: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: takes a borrowed, valid descriptor and no pointer.
    check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) })
        .map(drop)
}

/// Closes every fd from `first` to `last`, both included.
pub fn close_fd_range(first: u32, last: u32) -> Result<(), Errno> {
    // SAFETY: close_range only closes descriptors; the caller owns every fd
    // in the range (the launcher keeps nothing there).
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) }).map(drop)
}

/// Opens a pidfd for `pid` (pidfd_open(2)).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd we own.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) })?;
    // SAFETY: `fd` is a fresh descriptor returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How many bytes wait unread in a pipe (`FIONREAD`).
pub fn unread_bytes(pipe: BorrowedFd<'_>) -> Result<usize, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at
    // `n`; the fd is borrowed and valid.
    check(unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) }.into())?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Sends `sig` through a pidfd (pidfd_send_signal(2)): race-free, the pid
/// cannot have been reused.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> Result<(), Errno> {
    // SAFETY: null siginfo means "as kill(2)"; the fd is borrowed and valid.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    })
    .map(drop)
}

/// Fills `buf` from the kernel's random number generator (getrandom(2),
/// which blocks only until the pool is first initialized, at boot).
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe the writable `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match n {
            n if n > 0 => filled += n as usize,
            _ => {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// Raises this process's soft limit on open files to its hard limit: a
/// supervisor holds a few descriptors per live task, and the usual soft
/// limit of 1,024 would cap it at a few hundred tasks.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Resets every catchable signal to its default disposition.
pub fn reset_signal_dispositions() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { sigaction(sig, &default) };
    }
}

/// Takes ownership of an inherited fd as a Unix stream socket.
///
/// # Safety
/// `fd` must be open and owned by nobody else in this process.
pub unsafe fn adopt_unix_stream(fd: RawFd) -> std::os::unix::net::UnixStream {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) }
}

/// `dup2(src, target)`: makes `target` (0-2 here) refer to `src`'s file.
pub fn dup_onto(src: BorrowedFd<'_>, target: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 on a valid fd; replacing `target` is what the caller wants
    // and no Rust object owns the stdio fds it is used on.
    check(unsafe { libc::dup2(src.as_raw_fd(), target) }.into()).map(drop)
}

/// Sets FD_CLOEXEC on a raw fd.
pub fn set_cloexec(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: F_SETFD only changes the flags of `fd`, if it is open.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }.into()).map(drop)
}

/// Makes `cmd`'s child get `fd` as its fd 3 (the launch plan socket).
pub fn pass_fd_as_3(cmd: &mut std::process::Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec in the child of a
    // multithreaded process: it only calls dup2(2), which is
    // async-signal-safe, allocates nothing and takes no lock. `fd` stays
    // open in the parent until spawn returns. dup2 clears FD_CLOEXEC on the
    // new fd 3, so the launcher inherits exactly that one.
    unsafe {
        cmd.pre_exec(move || {
            let ret = if fd == 3 {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if ret == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// Takes ownership of an inherited fd.
///
/// # Safety
/// `fd` must be open and owned by nobody else in this process.
pub unsafe fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sends one message with descriptors attached (SCM_RIGHTS).
pub fn send_with_fds(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[std::io::IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

/// Receives one message into `buf` with up to 4 descriptors, which arrive
/// close-on-exec. Returns the byte count (0 at EOF) and the descriptors.
pub fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Vec<OwnedFd>), Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this
            // process for us; nothing else owns them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// Registers a non-blocking descriptor with tokio's reactor.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so it stays open and refers to the same
    // file for the AsyncFd's whole life.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|err| err.into_parts().1)
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the host,
/// so the supervisor and the launcher can compare their timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `mount_setattr(2)` flags.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// See [`MOUNT_ATTR_RDONLY`].
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// See [`MOUNT_ATTR_RDONLY`].
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
/// See [`MOUNT_ATTR_RDONLY`].
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// `mount_setattr(2)`: sets and clears mount attributes of the mount at
/// `path`, and with `recursive` of every mount below it, in one call.
pub fn mount_setattr(
    path: &std::path::Path,
    recursive: bool,
    set: u64,
    clear: u64,
) -> Result<(), Errno> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let path = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| Errno::EINVAL)?;
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a NUL-terminated string and `attr` a mount_attr of
    // the size passed, both alive for the call; the kernel only reads them.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Fails unless `path` (resolved) is root's and writable by no one else,
/// and so is every directory above it (a sticky one above may be writable
/// by all, as /tmp is): otherwise another user could change what airlockd
/// reads or serves there. `what` names it in the error.
pub fn check_root_only(path: &std::path::Path, what: &str) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let real = path.canonicalize().map_err(|err| {
        std::io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
    })?;
    for (k, at) in real.ancestors().enumerate() {
        let meta = std::fs::metadata(at)?;
        let others_write = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 || (others_write && (k == 0 || !sticky)) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{what} {} is not safe: {} is owned by uid {} with mode {:o}; it and every \
                     directory above it must be root's and writable only by root (a sticky one \
                     above, such as /tmp, is fine), or another user could change it",
                    real.display(),
                    at.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}
