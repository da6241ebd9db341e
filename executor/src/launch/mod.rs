//! The per-task launcher. `airlock-launch` is a small single-threaded
//! program that airlockd starts at start-up, once per core, as its
//! *spawners* ([`main`]); for each task a spawner starts a launcher
//! ([`crate::spawner`] is airlockd's side) in a new pid namespace, whose
//! init it is, and in the spawner's memory until its exec ([`vfork`]). The
//! launcher gets its [`plan::LaunchPlan`] (read by the spawner), builds the
//! sandbox around itself in the order below, and execs the program, which
//! stays pid 1 of the namespace.
//!
//! Why a separate program: after `fork` in the multithreaded supervisor the
//! child must not allocate or take locks, and std runs `pre_exec` after the
//! uid switch. Here there is one thread, and the launcher allocates from
//! an arena of its own ([`vfork`]), so ordinary Rust is safe; and starting
//! a launcher from this small process costs far less than forking airlockd
//! and exec'ing a launcher for each task.
//!
//! Processes: the task's *init* is the launcher until its exec, and the
//! program after it: one process, pid 1 of its pid namespace, the spawner's
//! child. When it exits the kernel kills every process left in the
//! namespace, and hands it to the spawner to reap only once they are all
//! gone; the spawner reports its status and CPU time on the task's socket.
//! airlockd holds a pidfd of the init: SIGKILL through it ends the whole
//! task (double-forked daemons included), and it becomes readable only once
//! the kernel has reaped every process of the namespace
//! (pid_namespaces(7)). The spawner also makes the task's mount namespace
//! (most often ahead, while idle), holds it, and hands it to a process of
//! its own to tear down after reporting the task's end ([`Teardown`]).
//! When airlockd's socket closes (airlockd ended, crashed or not) the
//! spawner SIGKILLs every live task and exits; the init also has the
//! spawner's death as its parent-death signal, until the program, which
//! may change that, runs.
//!
//! Why the program is pid 1 and not a child of a waiting init: a second
//! process per task cost a fork, an exit and a wake-up (about a sixth of a
//! task's start). What pid 1 changes for the program: signals it has no
//! handler for are ignored when they come from inside its namespace or as
//! side effects of its own calls (SIGTERM, SIGINT, SIGPIPE, SIGXFSZ,
//! SIGXCPU at the soft CPU limit), while a fault still ends it (SIGSEGV,
//! SIGBUS, SIGILL, SIGFPE; `abort()` ends with SIGSEGV); and orphans of
//! its children become its children (most runtimes reap them; unreaped
//! ones count against the task's process limit until it ends). SIGKILL
//! from airlockd and the CPU limit's hard SIGKILL work.
//!
//! `docs/launcher.md` mirrors [`init`]'s steps.
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
pub mod template;
pub mod vfork;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;

use nix::unistd::{fork, ForkResult};

use plan::{LaunchPlan, Report, Timeline, MAX_PLAN_BYTES};

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
    // Our own session, so a terminal's Ctrl-C reaches airlockd only.
    let _ = nix::unistd::setsid();
    // Every signal back to its default disposition, once, here: an ignored
    // signal (inherited from whoever started airlockd, or std's SIGPIPE)
    // would stay ignored across the task's exec. Launchers inherit these.
    crate::sys::reset_signal_dispositions();
    // One descriptor per live task (its report socket) is ours to hold.
    crate::sys::raise_nofile_limit();
    // Each task's process ends as our child: SIGCHLD comes through a
    // signalfd, and we reap and report it (see `reap`).
    let Ok(children) = children_signalfd() else {
        std::process::exit(1)
    };
    // Compiled once here, inherited by every launcher: a failure is
    // reported by each launcher that needs a filter.
    let _ = crate::seccomp_profile::programs();
    // Dropped and checked empty once here, inherited by every launcher
    // (see `caps`): a bounding set can only shrink. Without it no task
    // could start.
    if let Err(err) = caps::drop_bounding() {
        eprintln!(
            "airlock-launch: {}; airlockd needs CAP_SETPCAP",
            error_chain(&err)
        );
        std::process::exit(1)
    }
    // Every init watches this pidfd to die with us.
    let Ok(spawner) = crate::sys::pidfd_open(nix::unistd::getpid().as_raw()) else {
        std::process::exit(1)
    };
    let Ok(mut vfork) = vfork::Vfork::new() else {
        std::process::exit(1)
    };
    // What std makes lazily on first use is made here, so that no
    // launcher, in our memory, makes it in its arena (see `vfork`); and a
    // launcher's panic, which runs our hook in our memory, prints nothing
    // (it is reported as a failed step).
    let _ = std::thread::current();
    std::panic::set_hook(Box::new(|_| {}));
    let home = match mounts::Home::here() {
        Ok(home) => home,
        Err(err) => {
            eprintln!("airlock-launch: {}", error_chain(&err));
            std::process::exit(1)
        }
    };
    let mut templates = template::Templates::default();
    // Each live task's report socket and mount namespace, by the pid of
    // its process.
    let mut live: std::collections::HashMap<i32, Live> = Default::default();
    let mut chores = Chores::new(home, Teardown::start());
    loop {
        match wait_for_work(&control, &children, &mut chores) {
            Ok(Work::Reap) => {
                reap(&children, &mut live, &mut chores.teardown);
                continue;
            }
            Ok(Work::Request) => {}
            Err(_) => end_tasks_and_exit(&live, 1),
        }
        let fds = match receive_request(&control) {
            Ok(Some(fds)) => fds,
            Ok(None) => end_tasks_and_exit(&live, 0),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(_) => end_tasks_and_exit(&live, 1),
        };
        let Ok::<[OwnedFd; 4], _>([stdin, stdout, stderr, plan_socket]) = fds.try_into() else {
            answer(&control, Err(nix::errno::Errno::EPROTO));
            continue;
        };
        // airlockd writes the plan as it asks: read it here, find (or
        // build) the task's template root and its seccomp program. A plan
        // that never comes must not stall every later task.
        let mut stages = Timeline::default();
        let mut plan_socket = UnixStream::from(plan_socket);
        let _ = plan_socket.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let plan = read_plan(&mut plan_socket);
        stages.mark("plan read");
        let prepared = plan.as_ref().map_err(failed).and_then(|plan| {
            // The ipc and uts namespaces the launcher starts in, unless
            // made already while we were idle; before a template build,
            // whose builder would otherwise start in the last task's.
            chores
                .make_next_namespaces()
                .and_then(|()| chores.bound_shared_memory(plan.tmp_bytes))
                .map_err(|err| failed(&err))?;
            let template = templates.get(plan).map_err(|detail| {
                failed(&LaunchError::Check {
                    step: "build the task's root".into(),
                    detail,
                })
            })?;
            stages.mark("template root");
            // The task's mount namespace and ruleset, unless made while
            // we were idle.
            let root = chores
                .task_root(plan, template)
                .map_err(|err| failed(&err))?;
            let seccomp = (!plan.seccomp.is_empty())
                .then(|| crate::seccomp_profile::combined(&plan.seccomp))
                .transpose()
                .map_err(|err| {
                    failed(&LaunchError::Check {
                        step: "install seccomp filter".into(),
                        detail: err.to_string(),
                    })
                })?;
            Ok((plan, seccomp, root))
        });
        stages.mark("mount namespace and ruleset");
        let args = ChildArgs {
            fds: [
                stdin.as_raw_fd(),
                stdout.as_raw_fd(),
                stderr.as_raw_fd(),
                plan_socket.as_raw_fd(),
            ],
            spawner: spawner.as_raw_fd(),
            task: prepared.as_ref().map(|(plan, seccomp, root)| Task {
                plan,
                seccomp: seccomp.as_deref(),
                root,
            }),
            stages: &stages,
        };
        let spawned = vfork.spawn(child_main, &args);
        let mount_ns = prepared.ok().map(|(_, _, root)| root.mounts);
        match spawned {
            Ok((child, pidfd)) => {
                // That launcher's: the next needs new ones.
                chores.fresh = false;
                answer(&control, Ok(pidfd));
                live.insert(
                    child,
                    Live {
                        socket: plan_socket,
                        mount_ns,
                    },
                );
            }
            Err(errno) => answer(&control, Err(errno)),
        }
    }
}

/// A live task, as its spawner holds it.
struct Live {
    /// The task's report socket.
    socket: UnixStream,
    /// The task's mount namespace (we made it), held so that its teardown
    /// (unmounting every mount, a wait for an RCU grace period, the end of
    /// its tmpfs and procfs) happens after the task's end is reported,
    /// when this is closed, instead of in the init's exit, before it.
    mount_ns: Option<OwnedFd>,
}

/// What the spawner does when nothing waits: it makes the ipc and uts
/// namespaces its next launcher starts in ([`namespaces::make_next`]) and
/// the next task's mount namespace and Landlock ruleset
/// ([`mounts::make_task_root`]).
struct Chores {
    /// We are in ipc and uts namespaces in which no launcher has started.
    fresh: bool,
    /// Making them failed while idle (see [`Chores::idle_timeout`]).
    failed: bool,
    /// The System V shared memory bound of the namespace we are in, once
    /// set (`namespaces::bound_shared_memory`).
    shared_memory: Option<u64>,
    /// The bound the last launcher asked for.
    last_shared_memory: Option<u64>,
    teardown: Teardown,
    /// Where we return after making a task's mount namespace.
    home: mounts::Home,
    /// A mount namespace and ruleset made ahead, for a task like the last,
    /// used by no task yet.
    next_root: Option<(mounts::TaskRootSpec, mounts::TaskRoot)>,
    /// The last task's spec and template: what the next task most likely
    /// needs.
    last_root: Option<(mounts::TaskRootSpec, Rc<template::Template>)>,
}

impl Chores {
    fn new(home: mounts::Home, teardown: Teardown) -> Self {
        Self {
            fresh: false,
            failed: false,
            shared_memory: None,
            last_shared_memory: None,
            teardown,
            home,
            next_root: None,
            last_root: None,
        }
    }

    /// Whether there is something to do when idle.
    fn pending(&self) -> bool {
        (!self.fresh && !self.failed) || self.wants_root()
    }

    /// Whether a mount namespace and ruleset should be made ahead.
    fn wants_root(&self) -> bool {
        self.next_root.is_none() && self.last_root.is_some()
    }

    /// One chore: the next launcher's namespaces first (and, after a
    /// failure, again only when nothing else is left: see
    /// [`Chores::idle_timeout`]), then the next task's mount namespace
    /// and ruleset.
    fn do_one(&mut self) {
        if !self.fresh && (!self.failed || !self.wants_root()) {
            self.failed = self.make_next_namespaces().is_err();
        } else if self.wants_root() {
            self.make_root_ahead();
        }
    }

    /// A mount namespace and ruleset for a task like the last. When that
    /// fails, the next request makes its own, and reports why it could not.
    fn make_root_ahead(&mut self) {
        if let Some((spec, template)) = self.last_root.take() {
            if let Ok(root) = mounts::make_task_root(&spec, &template, &self.home) {
                self.next_root = Some((spec.clone(), root));
                self.last_root = Some((spec, template));
            }
        }
    }

    /// The mount namespace and ruleset of the task `plan` asks for, in a
    /// copy of `template`: the ones made ahead if they fit, else ones made
    /// now. A namespace made ahead that does not fit (another policy's) is
    /// torn down, as an ended task's.
    fn task_root(
        &mut self,
        plan: &LaunchPlan,
        template: &Rc<template::Template>,
    ) -> Result<mounts::TaskRoot, LaunchError> {
        let spec = mounts::TaskRootSpec::of(plan, template.id);
        let root = match self.next_root.take() {
            Some((ahead, root)) if ahead == spec => root,
            other => {
                if let Some((_, unfit)) = other {
                    self.teardown.push(unfit.mounts);
                }
                mounts::make_task_root(&spec, template, &self.home)?
            }
        };
        if self.last_root.as_ref().map(|(last, _)| last) != Some(&spec) {
            self.last_root = Some((spec, template.clone()));
        }
        Ok(root)
    }

    /// How long to wait for work: not at all when a chore is pending; for
    /// ever when none is; and when making the next namespaces failed, 100
    /// ms before trying again, so that we do not stay in the last task's
    /// namespaces (keeping what it left in them alive) until the next
    /// request.
    fn idle_timeout(&self) -> nix::poll::PollTimeout {
        match (self.pending(), self.fresh) {
            (true, _) => nix::poll::PollTimeout::ZERO,
            (false, true) => nix::poll::PollTimeout::NONE,
            (false, false) => nix::poll::PollTimeout::from(100u16),
        }
    }

    /// New ipc and uts namespaces for the next launcher, unless we are in
    /// fresh ones already; their shared memory bounded as the last task's
    /// was (the next is most likely of the same policy).
    fn make_next_namespaces(&mut self) -> Result<(), LaunchError> {
        if !self.fresh {
            self.shared_memory = None;
            namespaces::make_next()?;
            self.fresh = true;
            self.failed = false;
            if let Some(bytes) = self.last_shared_memory {
                self.bound_shared_memory(bytes)?;
            }
        }
        Ok(())
    }

    /// The next launcher's shared memory bounded to `bytes`, unless it is.
    fn bound_shared_memory(&mut self, bytes: u64) -> Result<(), LaunchError> {
        if self.shared_memory != Some(bytes) {
            namespaces::bound_shared_memory(bytes)?;
            self.shared_memory = Some(bytes);
        }
        self.last_shared_memory = Some(bytes);
        Ok(())
    }
}

/// Tears ended tasks' mount namespaces down (see [`Live`]) in a process of
/// its own, so that no request waits for it. Closing the last reference
/// to a namespace unmounts everything in it, waits for an RCU grace
/// period and frees its tmpfs, whose every inode costs: a task that
/// filled its tmpfs with files makes that 0.2 s here, which its next
/// tenant's start would wait for if the spawner did it. What ended
/// namespaces hold (their tasks' tmpfs pages) is counted nowhere, so at
/// most [`Teardown::IN_FLIGHT`] wait for that process at once; past that,
/// or without it, the spawner tears them down itself.
#[derive(Default)]
struct Teardown {
    /// Our end of the socket to that process (non-blocking), `None` if it
    /// could not start or has gone.
    socket: Option<OwnedFd>,
    /// Namespaces sent whose teardown it has not yet confirmed.
    in_flight: usize,
}

impl Teardown {
    const IN_FLIGHT: usize = 4;

    /// Forks the process that tears namespaces down: it closes each
    /// namespace it receives, confirms with one byte, and exits when our
    /// end closes (or, by its parent-death signal, when we die).
    fn start() -> Self {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let Ok((ours, theirs)) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        ) else {
            return Self::default();
        };
        match fork_child() {
            Ok(ForkResult::Child) => {
                drop(ours);
                let keep = theirs.as_raw_fd() as u32;
                let _ = crate::sys::close_fd_range(3, keep - 1);
                let _ = crate::sys::close_fd_range(keep + 1, u32::MAX);
                let _ = nix::sys::prctl::set_name(c"airlock-unmount");
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                let mut buf = [0u8; 1];
                while let Ok((1.., namespaces)) =
                    crate::sys::recv_with_fds(theirs.as_fd(), &mut buf)
                {
                    drop(namespaces);
                    let _ = nix::sys::socket::send(
                        theirs.as_raw_fd(),
                        b".",
                        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                    );
                }
                std::process::exit(0)
            }
            Ok(ForkResult::Parent { .. }) => {
                let nonblocking = nix::fcntl::fcntl(
                    &ours,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                Self {
                    socket: nonblocking.is_ok().then_some(ours),
                    in_flight: 0,
                }
            }
            Err(_) => Self::default(),
        }
    }

    /// An ended task's namespace, to tear down.
    fn push(&mut self, mount_ns: OwnedFd) {
        let Some(socket) = &self.socket else {
            return drop(mount_ns);
        };
        let mut acks = [0u8; 16];
        loop {
            match nix::unistd::read(socket, &mut acks) {
                Ok(n @ 1..) => self.in_flight = self.in_flight.saturating_sub(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => break,
                // Gone (0: closed): we tear down ourselves from now on.
                Ok(0) | Err(_) => {
                    self.socket = None;
                    return drop(mount_ns);
                }
            }
        }
        if self.in_flight < Self::IN_FLIGHT
            && crate::sys::send_with_fds(socket.as_fd(), b"N", &[mount_ns.as_raw_fd()]).is_ok()
        {
            self.in_flight += 1;
        }
        // Sent (the other process holds it now), or torn down here.
        drop(mount_ns);
    }
}

/// What the spawner prepared for one task's init; the init only reads it
/// (see [`vfork`]).
struct Task<'a> {
    plan: &'a LaunchPlan,
    /// The merged seccomp program, unless the plan names no filter.
    seccomp: Option<&'a [crate::seccomp_bpf::Insn]>,
    /// The task's mount namespace and ruleset, made by the spawner for it
    /// alone.
    root: &'a mounts::TaskRoot,
}

/// Everything a task's init gets from the spawner.
struct ChildArgs<'a> {
    /// The task's stdin, stdout, stderr and report socket, to become its
    /// descriptors 0 to 3.
    fds: [std::os::fd::RawFd; 4],
    /// A pidfd of the spawner.
    spawner: std::os::fd::RawFd,
    /// The task, or why it cannot start.
    task: Result<Task<'a>, &'a Report>,
    stages: &'a Timeline,
}

/// A failed step as the launcher reports it.
fn failed(err: &LaunchError) -> Report {
    Report::Failed {
        step: err.step().to_string(),
        error: error_chain(err),
    }
}

/// The task's init, from its start by [`vfork::Vfork::spawn`] in the
/// spawner's memory until its exec (or `_exit`).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` passes a `ChildArgs` that outlives this child's use
    // of the spawner's memory.
    let args = unsafe { &*(arg as *const ChildArgs<'_>) };
    // The report socket becomes fd 3, replacing our copy of the control
    // socket; every other descriptor is closed by the launcher's first
    // step (`fds::sanitize`).
    for (target, fd) in args.fds.iter().enumerate() {
        // SAFETY: dup2 of descriptors of this child's own table.
        if unsafe { libc::dup2(*fd, target as i32) } < 0 {
            // SAFETY: ends this child only, running no exit handlers.
            unsafe { libc::_exit(127) };
        }
    }
    // Hello: our own pidfd, to airlockd, first thing. The spawner, asleep
    // until our exec, answers with its pidfd of us only then; with this one
    // airlockd can end us while we set up (a deadline, a cancel). Our pid
    // as our own pid namespace numbers it (1), which is how pidfd_open
    // reads it.
    let said = crate::sys::pidfd_open(nix::unistd::getpid().as_raw()).is_ok_and(|pidfd| {
        // SAFETY: fd 3 is ours (dup2'd above) for as long as this borrow.
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(plan::PLAN_FD) };
        crate::sys::send_with_fds(socket, &[crate::spawner::HELLO], &[pidfd.as_raw_fd()]).is_ok()
    });
    if !said {
        // SAFETY: ends this child only, running no exit handlers.
        unsafe { libc::_exit(127) };
    }
    launch_task(args)
}

/// Kills every live task and exits: airlockd is gone (or we cannot serve
/// it), and nothing of a task may outlive its supervisor, which enforces its
/// deadline. The parent-death signal alone does not do: the program, pid 1
/// of its namespace, may clear it, or set one that pid 1 ignores. Each pid
/// is a child not yet reaped, so it cannot have been reused, and SIGKILL
/// from the parent namespace always reaches a namespace's pid 1.
fn end_tasks_and_exit(live: &std::collections::HashMap<i32, Live>, code: i32) -> ! {
    for pid in live.keys() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
    }
    std::process::exit(code)
}

/// What woke the spawner.
enum Work {
    /// airlockd asks (or closed the socket).
    Request,
    /// A child ended.
    Reap,
}

/// SIGCHLD, blocked, as a non-blocking signalfd.
fn children_signalfd() -> nix::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Waits until airlockd asks or a child ends; ended children first, so
/// their sockets close before new ones open.
fn wait_for_work(
    control: &OwnedFd,
    children: &nix::sys::signalfd::SignalFd,
    chores: &mut Chores,
) -> nix::Result<Work> {
    use nix::poll::{poll, PollFd, PollFlags};
    loop {
        let mut fds = [
            PollFd::new(children.as_fd(), PollFlags::POLLIN),
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, chores.idle_timeout()) {
            Ok(0) => {
                // Nothing waits: one chore now.
                chores.do_one();
                continue;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err),
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[0]) {
            return Ok(Work::Reap);
        }
        if ready(&fds[1]) {
            return Ok(Work::Request);
        }
    }
}

/// Reaps every ended child and reports how its task ended on the task's
/// socket, which it then closes: airlockd reads `Exited` and then the end
/// of the stream. A task's process is pid 1 of its namespace, so the kernel
/// hands it to us only once every other process there is gone.
fn reap(
    children: &nix::sys::signalfd::SignalFd,
    live: &mut std::collections::HashMap<i32, Live>,
    teardown: &mut Teardown,
) {
    while let Ok(Some(_)) = children.read_signal() {}
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals of the right types.
        let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
        if pid <= 0 {
            return;
        }
        let Some(Live { socket, mount_ns }) = live.remove(&pid) else {
            continue;
        };
        let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
        let report = Report::Exited {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            cpu_ms: Some(ms(usage.ru_utime) + ms(usage.ru_stime)),
        };
        // Never block on one task's socket: airlockd reads it at once, and
        // a line this short fits in any socket buffer.
        if let Ok(mut line) = serde_json::to_vec(&report) {
            line.push(b'\n');
            let _ = nix::sys::socket::send(
                socket.as_raw_fd(),
                &line,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            );
        }
        // The report, then the end of the stream, then (later) the mount
        // namespace's teardown.
        drop(socket);
        if let Some(mount_ns) = mount_ns {
            teardown.push(mount_ns);
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

/// One task's launcher, in the spawner's child, the init (pid 1) of the
/// task's pid namespace: stdio and the plan socket (fd 3) are the task's.
/// Never returns: it runs the task and exits with its status, or reports
/// and exits 127.
fn launch_task(args: &ChildArgs<'_>) -> ! {
    let mut stages = args.stages.clone();
    stages.mark("started by the spawner");
    let mut channel = fds::take_plan_socket();
    // SAFETY: our own copy (this child's descriptor table) of the
    // spawner's pidfd; nothing else here owns it.
    let spawner = unsafe { std::os::fd::FromRawFd::from_raw_fd(args.spawner) };
    let report = match &args.task {
        Err(report) => (*report).clone(),
        Ok(task) => {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Die with the spawner, which dies with airlockd: nothing
                // of the task outlives its supervisor, which enforces its
                // deadline.
                namespaces::die_with_parent(&spawner)?;
                init(task, &mut channel, spawner, stages)
            }));
            match outcome {
                Ok(Ok(never)) => match never {},
                Ok(Err(err)) => failed(&err),
                Err(_) => Report::Failed {
                    step: "launcher".into(),
                    error: "the launcher panicked".into(),
                },
            }
        }
    };
    send(&mut channel, &report);
    // SAFETY: ends this child only, running no exit handlers (they would
    // run in the spawner's memory).
    unsafe { libc::_exit(127) }
}

/// The task's init (pid 1 of its namespace): the sandbox, step by step, in
/// the order the kernel needs them, then the program.
fn init(
    task: &Task<'_>,
    channel: &mut UnixStream,
    spawner: OwnedFd,
    mut stages: Timeline,
) -> Result<std::convert::Infallible, LaunchError> {
    let Task { plan, root, .. } = *task;
    // 1. Nothing of the supervisor's may reach the task: close every fd but
    //    stdio and the plan socket (and, until the init is done with them,
    //    the spawner's pidfd, the task's mount namespace and its Landlock
    //    ruleset), reset signal dispositions and mask.
    let mut keep = vec![spawner.as_fd(), root.mounts.as_fd()];
    keep.extend(root.ruleset.as_ref().map(|r| r.as_fd()));
    fds::sanitize(&keep)?;
    // 2. A new session, so the task has no controlling terminal and the
    //    supervisor's process group signals do not reach it.
    nix::unistd::setsid().map_err(sys("setsid"))?;
    stages.mark("fds, signals, session");
    // 3. The network namespace airlockd leased to the task; the mount
    //    namespace the spawner made for it: a private copy of the template
    //    root with its scratch, /tmp and /dev/shm tmpfs (the pid namespace
    //    came with the clone, the ipc and uts ones were made by the
    //    spawner too).
    namespaces::enter(plan, root.mounts.as_fd())?;
    stages.mark("network and mount namespaces");
    // 4. What only the task's init can add: its scratch dir holding the
    //    credentials, a /proc of this pid namespace.
    mounts::per_task(plan)?;
    stages.mark("scratch dir, /proc");
    // 5. rlimits while still root (lowering needs no privilege, but NPROC
    //    must be in place before the uid switch is counted).
    rlimits::apply(&plan.rlimits)?;
    // 6. Landlock's rules on the scratch dir and /proc (the spawner made
    //    the rest of the ruleset); the program opened while we can still
    //    see it. The seccomp filters were compiled by the spawner.
    if root.ruleset.is_some() != (plan.landlock_abi >= 1) {
        return Err(LaunchError::Check {
            step: "add landlock rules".into(),
            detail: format!(
                "the spawner made {} ruleset for Landlock ABI {}",
                if root.ruleset.is_some() { "a" } else { "no" },
                plan.landlock_abi
            ),
        });
    }
    let ruleset = root.ruleset.as_ref().map(|r| r.finish(plan)).transpose()?;
    stages.mark("rlimits, Landlock rules");
    let program = exec::Program::open(plan)?;
    stages.mark("open (and hash) the program");
    // 7. Drop every capability (the bounding set came empty from the
    //    spawner), then groups, gid, uid; check every set is empty.
    caps::drop_inheritable_and_ambient()?;
    ids::switch(plan.uid)?;
    caps::assert_none()?;
    // The uid switch cleared the parent-death signal: arm it again.
    namespaces::die_with_parent(&spawner)?;
    drop(spawner);
    stages.mark("capabilities, ids");
    // 8. no_new_privs, then Landlock, which must follow every mount.
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
    if let Some(ruleset) = ruleset {
        layers.extend(landlock::enforce(ruleset, plan.landlock_abi)?);
    } else {
        nix::sys::prctl::set_no_new_privs().map_err(sys("no_new_privs"))?;
    }
    exec::enter_scratch(plan)?;
    stages.mark("no_new_privs, Landlock");
    // 9. seccomp last: from here on only the allowlisted syscalls work.
    if let Some(program) = task.seccomp {
        seccomp::install(program)?;
        layers.push("seccomp");
    }
    stages.mark("seccomp");
    // 10. Tell the supervisor, then become the program: it execs exactly
    //     the opened file, as pid 1 of the task's namespace. The report
    //     socket is close-on-exec; the spawner reports how the task ended.
    send(
        channel,
        &Report::Ready {
            layers: layers.iter().map(|l| l.to_string()).collect(),
            landlock_abi: plan.landlock_abi,
            stages,
        },
    );
    Err(program.exec())
}

pub(crate) fn fork_child() -> Result<ForkResult, LaunchError> {
    // SAFETY: the spawner and every launcher have exactly one thread (a
    // fresh exec that starts none), so the child may do anything after fork.
    unsafe { fork() }.map_err(sys("fork"))
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
    // The plan may hold the task's credential token: zeroed once parsed
    // (the parsed secrets are zeroized on their own when dropped).
    let mut buf = zeroize::Zeroizing::new(vec![0u8; len as usize]);
    channel.read_exact(&mut buf).map_err(io("read plan"))?;
    serde_json::from_slice(&buf).map_err(|err| LaunchError::Check {
        step: "parse plan".into(),
        detail: err.to_string(),
    })
}

/// Writes one report line. A failed write means the supervisor is gone; the
/// launcher carries on, and dies with the spawner.
fn send(channel: &mut UnixStream, report: &Report) {
    if let Ok(mut line) = serde_json::to_vec(report) {
        line.push(b'\n');
        let _ = channel.write_all(&line);
    }
}

pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&describe(cause));
        source = cause.source();
    }
    text
}

/// An error as text. An OS error is named from nix's table, not by
/// `strerror`, which takes glibc's locale lock: a launcher runs in the
/// spawner's memory (see [`vfork`]).
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    match err
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::raw_os_error)
    {
        Some(code) => {
            let errno = nix::errno::Errno::from_raw(code);
            format!("{} (os error {code})", errno.desc())
        }
        None => err.to_string(),
    }
}
