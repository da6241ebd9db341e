//! Step 3: the task's mount namespace, and the network. The pid namespace
//! came with the spawner's `clone(CLONE_NEWPID)` ([`super::main`]); the
//! ipc and uts namespaces ([`make_next`]) and the mount namespace were made
//! by the spawner, most often ahead, while idle.
//! Every task joins the network namespace airlockd leased to it, made
//! ahead (a fresh one per task costs about 0.6 ms; joining, 0.07 ms). See
//! unshare(2), setns(2), pid_namespaces(7).

use nix::sched::{setns, unshare, CloneFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::plan::LaunchPlan;
use super::{io, sys, LaunchError};

/// Joins the planned network namespace, then the task's mount namespace,
/// which the spawner made for this task alone (a copy of its template
/// root with its tmpfs: `mounts::make_task_root`). The network comes
/// first: its path is under the host's /proc.
pub fn enter(plan: &LaunchPlan, mounts: BorrowedFd<'_>) -> Result<(), LaunchError> {
    let ns = std::fs::File::open(&plan.netns).map_err(io("open the task's network namespace"))?;
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(sys("join the task's network namespace"))?;
    setns(mounts, CloneFlags::CLONE_NEWNS).map_err(sys("join the task's mount namespace"))?;
    super::fds::close_inherited(mounts);
    nix::sys::prctl::set_name(c"airlock-init").ok();
    Ok(())
}

/// Moves the calling spawner into new ipc and uts namespaces (hostname
/// "airlock", NIS domain name "(none)", the kernel's own default: a new uts
/// namespace starts with copies of the worker's), in which its next
/// launcher starts: the spawner makes them
/// when it has nothing else to do, so that a task's start does not wait
/// for them (a new ipc namespace alone costs about 27 µs here, for its
/// sysctl tables and mqueue mount). The spawner keeps one task from ever
/// sharing them with another: it calls this again after every launcher
/// before the next starts (`Chores` in `launch/mod.rs`). It uses no System
/// V IPC itself, and what it shares with the task until then (a hostname
/// neither can change) carries nothing.
pub fn make_next() -> Result<(), LaunchError> {
    unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
        .map_err(sys("unshare ipc and uts namespaces"))?;
    nix::unistd::sethostname("airlock").map_err(sys("set hostname"))?;
    set_domainname(b"(none)")?;
    // What no plan changes: at most 4 message queues of 16 KiB (the
    // default size), each also holding at most 16,384 messages, which
    // empty ones make about 1 MiB of kernel memory (4 MiB in all), and
    // 32,000 semaphores in 128 sets (Linux's old default, about 2 MiB). A
    // new ipc namespace's own allow 32,000 queues, some 32 GiB of empty
    // messages, and a billion semaphores, all of it kernel memory that no
    // rlimit counts.
    write_sysctl("kernel/msgmni", "4")?;
    write_sysctl("kernel/sem", "250 32000 32 128")
}

/// setdomainname(2), which nix does not wrap.
fn set_domainname(name: &[u8]) -> Result<(), LaunchError> {
    // SAFETY: the pointer and length describe `name`, which the call only
    // reads.
    let set = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    nix::errno::Errno::result(set)
        .map(drop)
        .map_err(sys("set NIS domain name"))
}

/// Bounds the System V shared memory of the ipc namespace we are in to
/// `bytes` in all (`shmall`, which also refuses any one segment larger):
/// the policy's `tmp` size, which bounds /tmp and /dev/shm too. A new ipc
/// namespace's own bound is practically none, and shared memory no task's
/// process has attached counts against no rlimit.
pub fn bound_shared_memory(bytes: u64) -> Result<(), LaunchError> {
    const PAGE: u64 = 4096;
    write_sysctl("kernel/shmall", &bytes.div_ceil(PAGE).to_string())
}

/// Writes one of the ipc namespace's tunables; they are per ipc
/// namespace, and the file opened is the one of the opener's.
fn write_sysctl(name: &str, value: &str) -> Result<(), LaunchError> {
    std::fs::write(format!("/proc/sys/{name}"), value).map_err(io(format!(
        "set {} of the task's ipc namespace",
        name.replace('/', ".")
    )))
}

/// SIGKILL this process when the spawner (its parent) dies, and make sure
/// it has not already died. `getppid()` is 0 in a new pid namespace, so the
/// spawner is watched through a pidfd opened before the fork: it is
/// readable once the spawner has exited. The spawner is single-threaded, so
/// bubblewrap#692 (the signal firing when the parent's *thread* exits) does
/// not apply. A change of uid or gid clears the setting (PR_SET_PDEATHSIG in
/// prctl(2)), so the init calls this again after its uid switch.
pub fn die_with_parent(spawner: &OwnedFd) -> Result<(), LaunchError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(sys("set parent-death signal"))?;
    let mut fds = [PollFd::new(spawner.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::ZERO).map_err(sys("check the spawner is alive"))?;
    if ready != 0 {
        return Err(LaunchError::Check {
            step: "parent-death signal".into(),
            detail: "the spawner died before the task started".into(),
        });
    }
    Ok(())
}
