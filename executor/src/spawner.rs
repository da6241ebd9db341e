//! The supervisor's side of the spawners: `airlock-launch` processes that
//! airlockd starts once and that start a launcher for every task.
//!
//! Why: forking the multithreaded supervisor and exec'ing a fresh launcher
//! per task cost more than the task (page tables of a large process, the
//! dynamic loader, a JSON parse). A spawner is small and single-threaded,
//! and starts each launcher in its own memory (`launch::vfork`), sleeping
//! until the launcher has exec'd the task's program. So that setups still
//! overlap, airlockd runs one spawner per core (at least 2, at most 8)
//! and gives each task to a free one.
//!
//! Protocol, over a `SOCK_SEQPACKET` pair (the spawner's fd 3): airlockd sends
//! one message per task, a byte and four descriptors (the task's stdin,
//! stdout, stderr and the plan socket, on which airlockd writes the plan at
//! the same time); the spawner reads the plan, finds the task's template
//! root ([`crate::launch::template`]), starts the launcher, and answers
//! with a byte and a pidfd of the child, the task's launcher and init (or
//! an errno when the clone failed). [`Report`](crate::launch::plan::Report)s
//! come back on the plan socket.
//!
//! A spawner exits when this socket closes, so it never outlives airlockd.
//! If one dies, the next task it is given starts a new one.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// The message that asks for a launcher.
pub const SPAWN: u8 = b'S';

/// The first byte a task's init sends on its report socket, with its own
/// pidfd.
pub const HELLO: u8 = b'H';

/// One live spawner process and our end of its socket.
struct Conn {
    socket: AsyncFd<OwnedFd>,
    process: Child,
    /// A request was sent and its answer not read yet. Found so by the
    /// next task, it means the request was given up (only a runtime
    /// shutting down drops a launch): the answer still to come would be
    /// taken for the next one's, so this spawner is replaced instead.
    asked: bool,
}

impl Conn {
    /// Kills and reaps this spawner (gone, or not to be trusted).
    fn end(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Starts task launchers through long-lived spawner processes.
pub struct Spawner {
    launcher: PathBuf,
    /// One slot per spawner process; a task holds one while its launcher
    /// starts.
    conns: Vec<std::sync::Arc<tokio::sync::Mutex<Option<Conn>>>>,
    /// One permit per spawner not busy with a task: a task waits for any
    /// spawner to be free, not for one in particular (which may be held
    /// by a launcher whose setup blocks).
    free: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A started launcher: our ends of its stdio and plan socket, and a pidfd
/// that signals it.
pub struct Launched {
    /// A pidfd of the launcher, the init of the task's pid namespace.
    pub pidfd: OwnedFd,
    /// The task's stdin.
    pub stdin: pipe::Sender,
    /// The task's stdout.
    pub stdout: pipe::Receiver,
    /// The task's stderr.
    pub stderr: pipe::Receiver,
    /// The plan socket's read half, on which the launcher reports (the
    /// plan has been written and read: nothing more goes the other way).
    pub reports: tokio::net::unix::OwnedReadHalf,
}

impl Spawner {
    /// A spawner that runs `launcher`; the first process starts on the first
    /// task. Call [`Spawner::check`] at start-up to fail early.
    pub fn new(launcher: PathBuf) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let spawners = cores.clamp(2, 8);
        Self {
            launcher,
            conns: (0..spawners).map(|_| Default::default()).collect(),
            free: std::sync::Arc::new(tokio::sync::Semaphore::new(spawners)),
        }
    }

    /// Starts the spawner processes now, so a broken launcher stops
    /// airlockd at start-up instead of failing every task.
    pub async fn check(&self) -> std::io::Result<()> {
        for conn in &self.conns {
            *conn.lock().await = Some(self.start()?);
        }
        Ok(())
    }

    /// Starts a launcher for one task with `plan` (the JSON launch plan).
    /// The plan is written to the task's socket before the spawner is asked
    /// (what the socket's buffer does not take, while it is asked), because
    /// the spawner reads it before it forks.
    pub async fn launch(&self, plan: zeroize::Zeroizing<Vec<u8>>) -> std::io::Result<Launched> {
        let plan = std::sync::Arc::new(plan);
        // A free spawner: a permit means one is unlocked (a slot is
        // unlocked before its permit goes back).
        let permit = self
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let mut conn = match self
            .conns
            .iter()
            .find_map(|c| c.clone().try_lock_owned().ok())
        {
            Some(free) => free,
            None => self.conns[0].clone().lock_owned().await,
        };
        // A spawner that died is replaced once; a second failure is real.
        let mut attempt = 0;
        loop {
            let live = match conn.take() {
                Some(live) if !live.asked => conn.insert(live),
                Some(given_up) => {
                    given_up.end();
                    conn.insert(self.start()?)
                }
                None => conn.insert(self.start()?),
            };
            let (stdin_task, stdin) = pipe2()?;
            let (stdout, stdout_task) = pipe2()?;
            let (stderr, stderr_task) = pipe2()?;
            let (ours, theirs) = UnixStream::pair()?;
            ours.set_nonblocking(true)?;
            // The plan goes into the socket's buffer now, before the
            // spawner is asked, so that it reads the plan at once instead
            // of waiting for a task of ours to be scheduled; a plan larger
            // than the buffer is finished by such a task.
            let length = (plan.len() as u32).to_le_bytes();
            let written = write_now(&ours, &[&length, &plan])?;
            let (reports, mut writer) = tokio::net::UnixStream::from_std(ours)?.into_split();
            let sending = (written < length.len() + plan.len()).then(|| {
                let plan = plan.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let length_left = length.get(written..).unwrap_or_default();
                    let plan_left = plan.get(written.saturating_sub(4)..).unwrap_or_default();
                    writer.write_all(length_left).await?;
                    writer.write_all(plan_left).await?;
                    std::io::Result::Ok(())
                })
            });
            let fds = [
                stdin_task.as_raw_fd(),
                stdout_task.as_raw_fd(),
                stderr_task.as_raw_fd(),
                theirs.as_raw_fd(),
            ];
            live.asked = true;
            let sent = send_request(&live.socket, &fds).await;
            drop((stdin_task, stdout_task, stderr_task, theirs));
            // The spawner sleeps until the task's init has exec'd its
            // program, and answers only then; the init sends its own pidfd
            // first thing, so that the deadline and a cancel can end it
            // while it sets up.
            let (answer, answered) = match sent {
                Err(err) => (Err(err), true),
                Ok(()) => tokio::select! {
                    hello = hello(&reports) => match hello {
                        Ok(Some(pidfd)) => (Ok(pidfd), false),
                        // Ended before it said hello: the answer comes now.
                        _ => (answer(&live.socket).await, true),
                    },
                    answered = answer(&live.socket) => {
                        // Done already (exec'd or ended): its hello, if it
                        // said one, must not reach the report reader.
                        let _ = take_hello(&reports);
                        (answered, true)
                    }
                },
            };
            live.asked = !answered;
            match answer {
                Ok(pidfd) => {
                    if !answered {
                        // This spawner is busy until it answers.
                        tokio::spawn(await_answer(conn, permit));
                    }
                    // The spawner read the whole plan before it forked.
                    if let Some(sending) = sending {
                        sending.await.map_err(std::io::Error::other)??;
                    }
                    return Ok(Launched {
                        pidfd,
                        stdin: pipe::Sender::from_owned_fd(stdin)?,
                        stdout: pipe::Receiver::from_owned_fd(stdout)?,
                        stderr: pipe::Receiver::from_owned_fd(stderr)?,
                        reports,
                    });
                }
                Err(Failure::Spawner(err)) if attempt == 0 => {
                    if let Some(sending) = &sending {
                        sending.abort();
                    }
                    tracing::warn!(%err, "the spawner is gone; starting a new one");
                    if let Some(dead) = conn.take() {
                        dead.end();
                    }
                    attempt += 1;
                }
                Err(Failure::Spawner(err) | Failure::Fork(err)) => {
                    if let Some(sending) = &sending {
                        sending.abort();
                    }
                    return Err(err);
                }
            }
        }
    }

    fn start(&self) -> std::io::Result<Conn> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        // The spawner's end must block: it is a plain single-threaded loop.
        let flags = nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        let mut cmd = Command::new(&self.launcher);
        cmd.env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        crate::sys::pass_fd_as_3(&mut cmd, theirs.as_raw_fd());
        let process = cmd.spawn().map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("start the launcher {}: {err}", self.launcher.display()),
            )
        })?;
        Ok(Conn {
            socket: crate::sys::async_fd(ours)?,
            process,
            asked: false,
        })
    }
}

/// Writes `parts`, one after the other, to the non-blocking `socket` as
/// far as its buffer takes them; returns how many bytes were written.
fn write_now(mut socket: &UnixStream, parts: &[&[u8]]) -> std::io::Result<usize> {
    use std::io::Write;
    let mut written = 0;
    for part in parts {
        let mut done = 0;
        while done < part.len() {
            match socket.write(&part[done..]) {
                Ok(n) => done += n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(written + done)
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        written += done;
    }
    Ok(written)
}

enum Failure {
    /// The spawner is gone or broke the protocol.
    Spawner(std::io::Error),
    /// The spawner is fine but could not fork.
    Fork(std::io::Error),
}

/// One request: the four fds out.
async fn send_request(socket: &AsyncFd<OwnedFd>, fds: &[i32; 4]) -> Result<(), Failure> {
    loop {
        let mut guard = socket.writable().await.map_err(Failure::Spawner)?;
        match guard.try_io(|s| Ok(crate::sys::send_with_fds(s.as_fd(), &[SPAWN], fds)?)) {
            Ok(sent) => return sent.map_err(Failure::Spawner),
            Err(_would_block) => continue,
        }
    }
}

/// The init's first message on its report socket: `H` with its own pidfd
/// (see `launch::child_main`). `None` when the stream starts otherwise (the
/// init ended before it said hello); nothing else is consumed then.
async fn hello(reports: &tokio::net::unix::OwnedReadHalf) -> std::io::Result<Option<OwnedFd>> {
    loop {
        reports.as_ref().readable().await?;
        match reports
            .as_ref()
            .try_io(tokio::io::Interest::READABLE, || take_hello(reports))
        {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// [`hello`], from what the socket holds now (`WouldBlock` when nothing),
/// whatever tokio last saw of its readiness.
fn take_hello(reports: &tokio::net::unix::OwnedReadHalf) -> std::io::Result<Option<OwnedFd>> {
    let fd = reports.as_ref().as_fd();
    let mut first = [0u8; 1];
    let peeked = nix::sys::socket::recv(
        fd.as_raw_fd(),
        &mut first,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )?;
    if peeked == 0 || first[0] != HELLO {
        return Ok(None);
    }
    let (_, fds) = crate::sys::recv_with_fds(fd, &mut first)?;
    Ok(fds.into_iter().next())
}

/// Holds a spawner until it answers for the init that already said hello,
/// so that no other task's request comes between.
async fn await_answer(
    mut conn: tokio::sync::OwnedMutexGuard<Option<Conn>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    if let Some(live) = conn.as_mut() {
        let answered = answer(&live.socket).await;
        live.asked = false;
        if let Err(Failure::Spawner(err)) = answered {
            tracing::warn!(%err, "the spawner is gone; the next task starts a new one");
            if let Some(dead) = conn.take() {
                dead.end();
            }
        }
    }
    // The slot is unlocked before its permit goes back.
    drop(conn);
    drop(permit);
}

/// The spawner's answer to a request: the init's pidfd, or an errno.
async fn answer(socket: &AsyncFd<OwnedFd>) -> Result<OwnedFd, Failure> {
    let spawner = Failure::Spawner;
    let mut buf = [0u8; 8];
    let (n, pidfd) = loop {
        let mut guard = socket.readable().await.map_err(spawner)?;
        match guard.try_io(|s| Ok(crate::sys::recv_with_fds(s.as_fd(), &mut buf)?)) {
            Ok(received) => break received.map_err(spawner)?,
            Err(_would_block) => continue,
        }
    };
    match (n, pidfd.into_iter().next()) {
        (0, _) => Err(spawner(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the spawner closed its socket",
        ))),
        (_, Some(pidfd)) => Ok(pidfd),
        (n, None) if n >= 5 && buf[0] == b'E' => Err(Failure::Fork(
            std::io::Error::from_raw_os_error(i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]])),
        )),
        _ => Err(spawner(std::io::Error::other(
            "the spawner answered with neither a pidfd nor an errno",
        ))),
    }
}

fn pipe2() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}
