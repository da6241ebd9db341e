//! The per-task launcher. `airlock-launch` is a small single-threaded
//! program that airlockd starts once, the *spawner* ([`main`]); for every task
//! it forks a launcher ([`crate::spawner`] is airlockd's side). The launcher
//! reads a [`plan::LaunchPlan`] from fd 3, builds the sandbox in the order
//! below, and execs the program.
//!
//! Why a separate program: after `fork` in the multithreaded supervisor the
//! child must not allocate or take locks, and std runs `pre_exec` after the
//! uid switch. Here there is one thread, so ordinary Rust is safe; and
//! forking this small process costs far less than forking airlockd and
//! exec'ing a launcher for each task.
//!
//! Processes: the launcher (the *waiter*) unshares the namespaces and forks
//! the task's *init*, pid 1 of a new pid namespace, which builds the rest of
//! the sandbox around itself and then forks the *program* process, which
//! execs. The init stays as confined as the program, reaps orphans, and
//! exits with the program's status, which kills every process left in the
//! namespace. The waiter stays outside the sandbox, turns SIGTERM from the
//! supervisor into SIGKILL of the init (double-forked daemons die with it),
//! and reports the exit.
//!
//! `docs/launcher.md` mirrors [`run`]'s steps.
//!
//! Test strategy: every step is observed from inside a real task by the
//! escape tests in `tests/suite`, each of which fails when its layer is
//! removed.

pub mod caps;
pub mod exec;
pub mod fds;
pub mod ids;
pub mod landlock;
pub mod mounts;
pub mod namespaces;
pub mod plan;
pub mod rlimits;
pub mod scratch;
pub mod seccomp;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use plan::{LaunchPlan, Report, MAX_PLAN_BYTES};

/// Errors of one launch step; the report names the step and the cause.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A system call failed.
    #[error("{step}")]
    Sys {
        /// The step.
        step: String,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// An I/O operation failed.
    #[error("{step}")]
    Io {
        /// The step.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A check after a step found the sandbox weaker than planned.
    #[error("{step}: {detail}")]
    Check {
        /// The step.
        step: String,
        /// What was found.
        detail: String,
    },
    /// Landlock refused the ruleset.
    #[error("{step}")]
    Landlock {
        /// The step.
        step: String,
        /// The cause.
        #[source]
        source: ::landlock::RulesetError,
    },
    /// seccomp refused the filter.
    #[error("{step}")]
    Seccomp {
        /// The step.
        step: String,
        /// The cause.
        #[source]
        source: seccompiler::Error,
    },
}

impl LaunchError {
    /// The step that failed.
    pub fn step(&self) -> &str {
        match self {
            Self::Sys { step, .. }
            | Self::Io { step, .. }
            | Self::Check { step, .. }
            | Self::Landlock { step, .. }
            | Self::Seccomp { step, .. } => step,
        }
    }
}

/// `map_err` helper: an errno from the named step.
pub(crate) fn sys(step: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> LaunchError {
    let step = step.into();
    move |source| LaunchError::Sys { step, source }
}

/// `map_err` helper: an I/O error from the named step.
pub(crate) fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let step = step.into();
    move |source| LaunchError::Io { step, source }
}

/// `airlock-launch`'s entry point: the spawner. airlockd starts it once
/// with a `SOCK_SEQPACKET` socket as fd 3 (see [`crate::spawner`]); for each
/// request it forks a launcher for one task and answers with the launcher's
/// pidfd. It exits when the socket closes, i.e. with airlockd.
pub fn main() -> ! {
    let control = fds::take_control_socket();
    // Our own session, so a terminal's Ctrl-C reaches airlockd only, and the
    // kernel reaps our children (each task's waiter): nobody here waits.
    let _ = nix::unistd::setsid();
    crate::sys::ignore_sigchld();
    loop {
        let fds = match receive_request(&control) {
            Ok(Some(fds)) => fds,
            Ok(None) => std::process::exit(0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        };
        if fds.len() != 4 {
            answer(&control, Err(nix::errno::Errno::EPROTO));
            continue;
        }
        match fork_child() {
            Ok(ForkResult::Child) => {
                // The plan socket becomes fd 3, replacing our control socket.
                std::mem::forget(control);
                for (target, fd) in fds.iter().enumerate() {
                    if crate::sys::dup_onto(fd.as_fd(), target as i32).is_err() {
                        std::process::exit(127);
                    }
                }
                drop(fds);
                launch_task()
            }
            Ok(ForkResult::Parent { child }) => {
                // The child cannot have exited yet: it waits for its plan,
                // which airlockd sends only after this answer.
                answer(&control, crate::sys::pidfd_open(child.as_raw()));
            }
            Err(_) => answer(&control, Err(nix::errno::Errno::last())),
        }
    }
}

/// One request from airlockd: its descriptors, or `None` at EOF. A
/// malformed request yields no descriptors, and is answered EPROTO.
fn receive_request(control: &OwnedFd) -> Result<Option<Vec<OwnedFd>>, nix::errno::Errno> {
    let mut buf = [0u8; 8];
    match crate::sys::recv_with_fds(control.as_fd(), &mut buf)? {
        (0, _) => Ok(None),
        (1, fds) if buf[0] == crate::spawner::SPAWN => Ok(Some(fds)),
        _ => Ok(Some(Vec::new())),
    }
}

/// Answers a request: the launcher's pidfd, or the errno of the failure.
fn answer(control: &OwnedFd, result: Result<OwnedFd, nix::errno::Errno>) {
    let _ = match result {
        Ok(pidfd) => crate::sys::send_with_fds(control.as_fd(), b"P", &[pidfd.as_raw_fd()]),
        Err(errno) => {
            let mut msg = [b'E', 0, 0, 0, 0];
            msg[1..].copy_from_slice(&(errno as i32).to_le_bytes());
            crate::sys::send_with_fds(control.as_fd(), &msg, &[])
        }
    };
}

/// One task's launcher, in the spawner's child: stdio and the plan socket
/// (fd 3) are the task's. Never returns: it execs the task, or reports and
/// exits 127.
fn launch_task() -> ! {
    let mut stages = Stages::default();
    stages.mark("forked by the spawner");
    let mut channel = fds::take_plan_socket();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let plan = read_plan(&mut channel)?;
        stages.mark("plan read");
        run(&plan, &mut channel, stages)
    }));
    let report = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(err)) => Report::Failed {
            step: err.step().to_string(),
            error: error_chain(&err),
        },
        Err(_) => Report::Failed {
            step: "launcher".into(),
            error: "the launcher panicked".into(),
        },
    };
    send(&mut channel, &report);
    std::process::exit(127)
}

/// The sandbox, step by step, in the order the kernel needs them.
fn run(
    plan: &LaunchPlan,
    channel: &mut UnixStream,
    mut stages: Stages,
) -> Result<std::convert::Infallible, LaunchError> {
    // 1. Nothing of the supervisor's may reach the task: close every fd but
    //    stdio and the plan socket, reset signal dispositions and mask.
    fds::sanitize()?;
    // 2. A new session, so the task has no controlling terminal and the
    //    supervisor's process group signals do not reach it.
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // 3. New mount, ipc, uts and pid namespaces (and the empty network
    //    namespace when the task has none). The pid namespace applies to
    //    our next child, which becomes its init.
    stages.mark("fds, signals, session");
    namespaces::enter(plan)?;
    stages.mark("namespaces");
    let waiter = crate::sys::pidfd_open(nix::unistd::getpid().as_raw())
        .map_err(sys("pidfd of the launcher"))?;
    match fork_child()? {
        ForkResult::Parent { child } => {
            drop(waiter);
            wait_for_init(child, channel)
        }
        ForkResult::Child => init(plan, waiter, channel, stages),
    }
}

/// The task's init (pid 1 of its namespace): everything that must happen
/// inside the namespaces, then the exec.
fn init(
    plan: &LaunchPlan,
    waiter: std::os::fd::OwnedFd,
    channel: &mut UnixStream,
    mut stages: Stages,
) -> Result<std::convert::Infallible, LaunchError> {
    stages.mark("init forked");
    // 4. Die with the waiter: if it is killed, nothing of the task survives.
    //    The waiter is single-threaded, so bubblewrap#692 does not apply.
    namespaces::die_with_parent(waiter)?;
    // 5. Private mounts: /tmp and /dev/shm tmpfs, the scratch dir (a
    //    bounded tmpfs holding the credentials), a fresh /proc of this pid
    //    namespace.
    mounts::setup(plan)?;
    stages.mark("own root (mounts)");
    // 6. rlimits while still root (lowering needs no privilege, but NPROC
    //    must be in place before the uid switch is counted).
    rlimits::apply(&plan.rlimits)?;
    // 7. Open everything Landlock and exec need while we can still see it,
    //    and build the ruleset. seccomp programs were compiled by the
    //    supervisor.
    let ruleset = landlock::prepare(plan)?;
    stages.mark("rlimits, Landlock ruleset");
    let program = exec::Program::open(plan)?;
    stages.mark("open (and hash) the program");
    // 8. Drop every capability (bounding set while CAP_SETPCAP is held),
    //    then groups, gid, uid; check every set is empty.
    caps::drop_all()?;
    ids::switch(plan.uid)?;
    caps::assert_none()?;
    stages.mark("capabilities, ids");
    // 9. no_new_privs, then Landlock, which must follow every mount.
    let mut layers = vec![
        "pid-ns",
        "mount-ns",
        "ipc-ns",
        "uts-ns",
        "net-ns",
        "uid",
        "rlimits",
        "caps",
        "no-new-privs",
    ];
    if matches!(plan.network, plan::NetPlan::Host { .. }) {
        layers.retain(|l| *l != "net-ns");
    }
    if let Some(ruleset) = ruleset {
        layers.extend(landlock::enforce(ruleset, plan.landlock_abi)?);
    } else {
        nix::sys::prctl::set_no_new_privs().map_err(sys("no_new_privs"))?;
    }
    exec::enter_scratch(plan)?;
    stages.mark("no_new_privs, Landlock");
    // 10. seccomp last: from here on only the allowlisted syscalls work.
    if !plan.seccomp.is_empty() {
        seccomp::install(&plan.seccomp)?;
        layers.push("seccomp");
    }
    stages.mark("seccomp");
    // 11. Tell the supervisor, then fork the program's process: it execs
    //     exactly the opened file, while this init (as confined as the task)
    //     reaps orphans and passes on the program's exit. The program is not
    //     pid 1, so the kernel's signals (SIGXCPU, SIGXFSZ) and its own
    //     default dispositions work as anywhere else.
    send(
        channel,
        &Report::Ready {
            layers: layers.iter().map(|l| l.to_string()).collect(),
            landlock_abi: plan.landlock_abi,
            stages: stages.0,
        },
    );
    match fork_child()? {
        ForkResult::Child => Err(program.exec()),
        ForkResult::Parent { child } => {
            drop(program);
            reap_until(child, channel)
        }
    }
}

/// pid 1's loop: reap every orphan until `program` ends, report how it
/// ended, and exit, which kills whatever is left in the namespace.
fn reap_until(
    program: Pid,
    channel: &mut UnixStream,
) -> Result<std::convert::Infallible, LaunchError> {
    fds::close_stdio();
    loop {
        match nix::sys::wait::wait() {
            Ok(WaitStatus::Exited(pid, code)) if pid == program => {
                send(
                    channel,
                    &Report::Exited {
                        code: Some(code),
                        signal: None,
                    },
                );
                std::process::exit(code)
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == program => {
                send(
                    channel,
                    &Report::Exited {
                        code: None,
                        signal: Some(sig as i32),
                    },
                );
                std::process::exit(128 + sig as i32)
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(sys("wait for the program")(err)),
        }
    }
}

/// When each setup step ended ([`Report::Ready`]'s `stages`).
#[derive(Default)]
struct Stages(Vec<(String, u64)>);

impl Stages {
    fn mark(&mut self, step: &str) {
        self.0.push((step.to_string(), crate::sys::monotonic_ns()));
    }
}

fn fork_child() -> Result<ForkResult, LaunchError> {
    // SAFETY: the spawner and every launcher have exactly one thread (a
    // fresh exec that starts none), so the child may do anything after fork.
    unsafe { fork() }.map_err(sys("fork"))
}

/// The waiter: forwards cancellation, reaps the init, reports how it ended.
fn wait_for_init(
    child: Pid,
    channel: &mut UnixStream,
) -> Result<std::convert::Infallible, LaunchError> {
    crate::sys::forward_termination_to(child.as_raw()).map_err(sys("forward signals"))?;
    // The task's stdio belongs to the task: drop our copies so the
    // supervisor sees EOF when the last task process is gone.
    fds::close_stdio();
    // No task outlives its supervisor: once the plan socket reaches EOF
    // (airlockd exited or crashed), the init is killed, and with it the
    // namespace. Otherwise nobody would enforce the task's deadline.
    let init = crate::sys::pidfd_open(child.as_raw()).map_err(sys("pidfd of the task's init"))?;
    let mut watching_supervisor = true;
    loop {
        let mut fds = vec![PollFd::new(init.as_fd(), PollFlags::POLLIN)];
        if watching_supervisor {
            fds.push(PollFd::new(channel.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(sys("wait for the task's init")(err)),
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            break;
        }
        if fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty())
        {
            let mut byte = [0u8; 1];
            if matches!(channel.read(&mut byte), Ok(0) | Err(_)) {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                watching_supervisor = false;
            }
        }
    }
    drop(init);
    let report = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                break Report::Reaped {
                    code: Some(code),
                    signal: None,
                }
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                break Report::Reaped {
                    code: None,
                    signal: Some(sig as i32),
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(sys("wait for the task's init")(err)),
        }
    };
    send(channel, &report);
    std::process::exit(0)
}

fn read_plan(channel: &mut UnixStream) -> Result<LaunchPlan, LaunchError> {
    let mut len = [0u8; 4];
    channel
        .read_exact(&mut len)
        .map_err(io("read plan length"))?;
    let len = u32::from_le_bytes(len);
    if len > MAX_PLAN_BYTES {
        return Err(LaunchError::Check {
            step: "read plan".into(),
            detail: format!("plan of {len} bytes is larger than {MAX_PLAN_BYTES}"),
        });
    }
    let mut buf = vec![0u8; len as usize];
    channel.read_exact(&mut buf).map_err(io("read plan"))?;
    serde_json::from_slice(&buf).map_err(|err| LaunchError::Check {
        step: "parse plan".into(),
        detail: err.to_string(),
    })
}

/// Writes one report line. A failed write means the supervisor is gone; the
/// launcher carries on, and the task dies with its waiter's socket peer.
fn send(channel: &mut UnixStream, report: &Report) {
    if let Ok(mut line) = serde_json::to_vec(report) {
        line.push(b'\n');
        let _ = channel.write_all(&line);
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
