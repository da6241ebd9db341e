//! Run: start a launcher (through the spawner) with the task's plan, stream
//! its output (bounded), enforce the deadline, answer cancellation, then
//! purge and report.
//!
//! Killing: the supervisor sends SIGKILL to the task's init (through a
//! pidfd, so never to a recycled pid), pid 1 of the task's pid namespace;
//! the kernel then kills every other process of the pid namespace,
//! double-forked daemons included, and reaps them before the init's exit
//! completes.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airlock_protocol::v1::{
    task_event, ExitReason, Exited, Limits as WireLimits, OutputChunk, Started, Stream, TaskEvent,
    TaskState,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Notify};
use tonic::Status;

use crate::admit::Admitted;
use crate::audit::AuditEvent;
use crate::credentials::TaskCredentials;
use crate::launch::plan::{LaunchPlan, NetPlan, Report, Rlimits};
use crate::supervisor::Supervisor;

/// Events to the client.
pub type EventSender = mpsc::Sender<Result<TaskEvent, Status>>;

/// How long the task's end may take after its init closed its socket.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub use crate::launch::plan::Timeline;

/// Runs an admitted task to the end, purges it, reports and records it.
/// Returns the task's timeline (logged at debug level too).
pub async fn run(sup: Arc<Supervisor>, task: Admitted, events: EventSender) -> Timeline {
    use tracing::Instrument;
    let span =
        tracing::info_span!("task", task_id = %task.id, user = %task.request.user, uid = task.uid);
    run_in_span(sup, task, events).instrument(span).await
}

async fn run_in_span(sup: Arc<Supervisor>, mut task: Admitted, events: EventSender) -> Timeline {
    let mut timeline = Timeline(vec![("received".to_string(), task.received_ns)]);
    timeline.mark("admitted (policy, uid, netns lease, audit)");
    let creds = crate::credentials::for_task(&sup, &task).await;
    timeline.mark("credentials");
    // `reaped`: the task's init has exited, so the kernel has reaped every
    // process of the task (or none ever started).
    let outcome = match &creds {
        Ok(creds) => execute(&sup, &mut task, &events, creds.as_ref(), &mut timeline).await,
        Err(err) => Ok((crate::credentials::spawn_failed(err), true, Output::none())),
    };
    let (exited, reaped, output) = match outcome {
        Ok(outcome) => outcome,
        Err(err) => {
            tracing::error!(task_id = %task.id, ?err, "failed to start the launcher");
            let exited = Exited {
                reason: ExitReason::SpawnFailed as i32,
                exit_code: None,
                signal: None,
                message: format!("could not start the sandbox launcher: {err}"),
            };
            (exited, false, Output::none())
        }
    };
    // The task's token stops working before anything else is purged.
    if let Some(service) = &sup.credentials {
        service.revoke(&task.id);
    }
    let mut cleaned = crate::purge::Cleaned::default();
    // Scanning /proc costs milliseconds with thousands of processes: only
    // when the kernel's guarantee does not already cover it.
    let uid_clear = reaped || crate::purge::clear_uid(task.uid, &mut cleaned).await;
    // The scratch dir was a tmpfs of the task's mount namespace, gone with
    // it; a host dir of that name would be a leftover of an older airlockd.
    cleaned.scratch_removed = task.scratch.symlink_metadata().is_err()
        || crate::purge::remove_scratch_async(task.scratch.clone()).await;
    timeline.mark("purged");
    let attribution = crate::credentials::finish(&sup, creds);
    // The network namespace is reused only when no process of the task can
    // be left in it (and it holds no socket, which the pool's checker
    // thread checks without keeping us waiting).
    if let Some(netns) = task.netns.take().filter(|_| uid_clear) {
        sup.netns.give_back(netns);
    }
    // A uid goes back to the pool only when nothing of the task is left
    // that the next holder of the uid could reach: no process, no file on
    // the host. (The task's own tmpfs files may outlive this by
    // milliseconds, in a mount namespace its spawner holds and nothing can
    // enter, until the spawner tears it down.)
    if uid_clear && cleaned.scratch_removed {
        sup.uids.release(task.uid);
        cleaned.uid_released = true;
    } else {
        tracing::error!(task_id = %task.id, uid = task.uid, uid_clear, scratch_removed = cleaned.scratch_removed, "task left something behind; uid quarantined");
    }
    let ended_at_ms = crate::now_ms();
    sup.audit.record(&AuditEvent::TaskEnd {
        task_id: &task.id,
        user: &task.request.user,
        groups: &task.request.groups,
        program: &task.request.program,
        uid: task.uid,
        started_at_ms: task.started_at_ms,
        ended_at_ms,
        reason: reason_name(exited.reason),
        exit_code: exited.exit_code,
        signal: exited.signal,
        cleaned: &cleaned,
        credentials: attribution.as_ref(),
    });
    match exited.reason() {
        // The driver sees the message; the operator, who can fix the
        // host or the policy, sees it here.
        ExitReason::SpawnFailed => {
            tracing::warn!(task_id = %task.id, message = %exited.message, "task could not start")
        }
        _ => {
            tracing::info!(task_id = %task.id, reason = reason_name(exited.reason), code = ?exited.exit_code, signal = ?exited.signal, "task ended")
        }
    }
    sup.registry().end(&task.id, |info| {
        info.state = TaskState::Exited as i32;
        info.ended_at_ms = ended_at_ms;
        info.exited = Some(exited.clone());
    });
    timeline.mark("recorded (audit, registry)");
    // The task is gone and purged; its last output may still wait for a
    // driver that reads slowly (a user paging through it): it goes, then
    // `Exited`, as long as the driver takes an event at least every
    // DELIVERY_IDLE. A driver that hangs up ends both at once. One that
    // went silent with output left gets no `Exited`: its stream just ends.
    let mut gave_up = false;
    for reader in output.readers {
        gave_up |= reader.await.unwrap_or(true);
    }
    if !gave_up {
        let _ = tokio::time::timeout_at(
            output.delivery.deadline(),
            events.send(Ok(event(task_event::Event::Exited(exited)))),
        )
        .await;
    }
    timeline.mark("reported to the client");
    tracing::debug!(stages_us = ?timeline.durations_us(), "task timeline");
    timeline
}

fn event(e: task_event::Event) -> TaskEvent {
    TaskEvent { event: Some(e) }
}

/// The wire name of a reason, for logs and audit.
pub fn reason_name(reason: i32) -> &'static str {
    match ExitReason::try_from(reason) {
        Ok(ExitReason::Completed) => "completed",
        Ok(ExitReason::Timeout) => "timeout",
        Ok(ExitReason::Cancelled) => "cancelled",
        Ok(ExitReason::Limit) => "limit",
        Ok(ExitReason::SpawnFailed) => "spawn_failed",
        _ => "unspecified",
    }
}

fn plan_for(sup: &Supervisor, task: &Admitted, creds: Option<&TaskCredentials>) -> LaunchPlan {
    let req = &task.request;
    let policy = &task.policy;
    let mut argv = vec![req.program.clone()];
    argv.extend(req.args.iter().cloned());
    let home = task.scratch.display().to_string();
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/bin:/usr/bin:/bin".to_string(),
        ),
        ("HOME".to_string(), home),
        ("TMPDIR".to_string(), "/tmp".to_string()),
        ("USER".to_string(), req.user.clone()),
        ("LOGNAME".to_string(), req.user.clone()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ];
    let mut extra: Vec<_> = req
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    extra.sort();
    env.extend(extra);
    if let Some(creds) = creds {
        env.extend(creds.env.iter().cloned());
    }
    let udp = policy.policy.network.udp;
    if policy.policy.network.mode == airlock_policy::NetworkMode::Host
        && !udp
        && !req.env.contains_key("RES_OPTIONS")
    {
        // seccomp refuses UDP sockets: have glibc's resolver ask over TCP
        // (port 53 must be in connect_tcp for names to resolve).
        env.push(("RES_OPTIONS".to_string(), "use-vc".to_string()));
    }
    let (network, seccomp) = match policy.policy.network.mode {
        airlock_policy::NetworkMode::Host => (
            NetPlan::Host {
                connect_tcp: crate::credentials::connect_ports(
                    &policy.policy.network.connect_tcp,
                    creds,
                ),
            },
            match udp {
                true => sup.seccomp.host_net_udp.clone(),
                false => sup.seccomp.host_net.clone(),
            },
        ),
        airlock_policy::NetworkMode::None => (NetPlan::None, sup.seccomp.no_net.clone()),
    };
    // Empty only on a host without seccomp whose policy allows that.
    let seccomp = if sup.host.seccomp {
        seccomp.iter().map(|name| name.to_string()).collect()
    } else {
        Vec::new()
    };
    let l = &task.limits;
    LaunchPlan {
        task_id: task.id.clone(),
        uid: task.uid,
        scratch: task.scratch.clone(),
        program: req.program.clone().into(),
        program_sha256: policy
            .policy
            .programs
            .iter()
            .find(|r| r.path.as_os_str() == req.program.as_str())
            .and_then(|r| r.sha256.clone()),
        argv,
        env,
        read_only: policy.read_only.clone(),
        executables: policy.executables_for(&req.user, &req.groups),
        network,
        // Admission leased one for every task; an empty path fails the
        // launch closed.
        netns: task.netns.as_ref().map(|n| n.path()).unwrap_or_default(),
        rlimits: Rlimits {
            memory_bytes: l.memory_bytes,
            processes: l.processes,
            open_files: l.open_files,
            file_size_bytes: l.file_size_bytes,
            cpu_seconds: l.cpu_seconds,
        },
        tmp_bytes: l.tmp_bytes,
        scratch_bytes: l.scratch_bytes,
        scratch_files: creds.map(|c| c.files.clone()).unwrap_or_default(),
        landlock_abi: sup.host.landlock_abi,
        seccomp,
    }
}

/// The plan as JSON. It may carry the task's token or credentials file:
/// zeroized, and written into a buffer sized up front, since one that grew
/// would leave copies in memory freed unzeroed.
fn plan_json(plan: &LaunchPlan) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, plan).map_err(std::io::Error::other)?;
    let mut json = zeroize::Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *json, plan).map_err(std::io::Error::other)?;
    Ok(json)
}

/// The task's init, through a pidfd (never a recycled pid). Dropping it
/// kills the init, and so the whole task: nothing outlives its runner.
struct Init(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

impl Init {
    fn kill(&self) {
        let _ = crate::sys::pidfd_send_signal(self.0.get_ref().as_fd(), libc::SIGKILL);
    }

    /// Waits until the init has exited, after every other process of its
    /// pid namespace (pid_namespaces(7)).
    async fn exited(&self) {
        let _ = self.0.readable().await;
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Most bytes of one output event.
const OUTPUT_CHUNK: usize = 64 << 10;

/// How long an output event waits after its first byte for more (tokio's
/// timer rounds it up to the next millisecond: 1 to 2 ms).
const OUTPUT_LINGER: Duration = Duration::from_millis(1);

/// The output a task may still stream, stdout and stderr together.
#[derive(Clone)]
struct OutputBudget {
    /// Bytes read so far.
    sent: Arc<AtomicU64>,
    /// The task's output limit.
    limit: u64,
    /// Notified when the task wrote past the limit.
    full: Arc<Notify>,
}

impl OutputBudget {
    /// How many of `n` bytes just read may be streamed; past the limit,
    /// notifies `full`.
    fn take(&self, n: usize) -> usize {
        let before = self.sent.fetch_add(n as u64, Ordering::SeqCst);
        let allowed = self.limit.saturating_sub(before).min(n as u64) as usize;
        if allowed < n {
            self.full.notify_one();
        }
        allowed
    }

    /// Whether the task wrote more than its limit.
    fn over(&self) -> bool {
        self.sent.load(Ordering::SeqCst) > self.limit
    }
}

/// Once a task has ended, how long its driver may go without taking an
/// event before the rest of the task's output is dropped and its stream
/// ends without `Exited`.
const DELIVERY_IDLE: Duration = Duration::from_secs(60);

/// How many events a task's stream holds for its driver: with
/// [`OUTPUT_CHUNK`], at most 128 KiB of output a task for a driver that
/// reads slowly (it was 64 events, 4 MiB).
pub const EVENTS_QUEUED: usize = 2;

/// Why the supervisor is killing a task.
#[derive(Clone, Copy)]
enum KillCause {
    Timeout,
    Cancelled,
    ClientGone,
    Output,
    /// Not a kill: the task had ended with more in its pipes than the
    /// output limit left.
    OutputAtEnd,
}

async fn execute(
    sup: &Supervisor,
    task: &mut Admitted,
    events: &EventSender,
    creds: Option<&TaskCredentials>,
    timeline: &mut Timeline,
) -> std::io::Result<(Exited, bool, Output)> {
    let plan = plan_json(&plan_for(sup, task, creds))?;
    // The plan carries them now: a live task's request may hold 1 MiB of
    // arguments and environment, which airlockd need not keep.
    task.request.args = Vec::new();
    task.request.env = Default::default();
    timeline.mark("plan made");
    // The launcher's own stages (from "plan read" on) come with `Ready`.
    let launched = sup.spawner.launch(plan).await?;
    let init = Init(crate::sys::async_fd(launched.pidfd)?);

    let mut stdin = launched.stdin;
    let data = std::mem::take(&mut task.request.stdin);
    if data.is_empty() {
        // No input: the task reads end-of-file at once.
        drop(stdin);
    } else {
        tokio::spawn(async move {
            // A task that exits without reading its stdin closes the pipe:
            // that error is expected and ignored. The pipe closes when
            // everything is written, which the task reads as end-of-file.
            let _ = stdin.write_all(&data).await;
        });
    }
    let mut stdout = Some(launched.stdout);
    let mut stderr = Some(launched.stderr);

    let deadline = tokio::time::sleep(Duration::from_millis(task.limits.wall_time_ms));
    tokio::pin!(deadline);
    let budget = OutputBudget {
        sent: Arc::new(AtomicU64::new(0)),
        limit: task.limits.output_bytes,
        full: Arc::new(Notify::new()),
    };
    let mut readers = Vec::new();
    // Cancelled once every process of the task is gone.
    let task_ended = tokio_util::sync::CancellationToken::new();
    let delivery = Delivery::new();
    let mut lines = BufReader::new(launched.reports).lines();
    let mut killed: Option<KillCause> = None;
    let mut failure: Option<String> = None;
    let mut exit: Option<(Option<i32>, Option<i32>, Option<u64>)> = None;
    let mut reported_end = false;

    loop {
        let cause = tokio::select! {
            line = lines.next_line() => {
                match line {
                    Ok(Some(line)) => match serde_json::from_str::<Report>(&line) {
                        Ok(Report::Ready { layers, landlock_abi, stages }) => {
                            timeline.0.extend(stages.0);
                            timeline.mark("ready received");
                            set_state(sup, &task.id, TaskState::Running);
                            let started = Started {
                                task_id: task.id.clone(),
                                uid: task.uid,
                                layers,
                                landlock_abi: landlock_abi as u32,
                                limits: Some(wire_limits(&task.limits)),
                                ..crate::credentials::started(creds)
                            };
                            // A driver gone by now is noticed below (`events.closed()`).
                            let _ = events.send(Ok(event(task_event::Event::Started(started)))).await;
                            for (pipe, stream) in [(stdout.take(), Stream::Stdout), (stderr.take(), Stream::Stderr)] {
                                if let Some(pipe) = pipe {
                                    let (accounted, charged) = tokio::sync::oneshot::channel();
                                    let reader = tokio::spawn(forward_output(
                                        pipe, stream, events.clone(), budget.clone(),
                                        task_ended.clone(), accounted, delivery.clone(),
                                    ));
                                    readers.push((reader, charged));
                                }
                            }
                        }
                        Ok(Report::Failed { step, error }) => failure = Some(format!("sandbox setup failed ({step}): {error}")),
                        Ok(Report::Exited { code, signal, cpu_ms }) => {
                            timeline.mark("program ended (exec, run, exit, namespace emptied)");
                            exit = exit.or(Some((code, signal, cpu_ms)));
                        }
                        Err(err) => tracing::warn!(?err, "unreadable launcher report"),
                    },
                    Ok(None) | Err(_) => {
                        reported_end = true;
                        break;
                    }
                }
                None
            }
            _ = &mut deadline => {
                if killed.is_none() {
                    Some(KillCause::Timeout)
                } else {
                    // Armed again by the kill below: the spawner, which
                    // reaps the task, has not said so in KILL_GRACE.
                    tracing::error!(task_id = %task.id, "no word from the spawner that the killed task was reaped");
                    break;
                }
            }
            _ = task.cancel.cancelled(), if killed.is_none() => Some(KillCause::Cancelled),
            _ = budget.full.notified(), if killed.is_none() => Some(KillCause::Output),
            // The driver hung up (every send fails from then on): the task
            // ends, even one that prints nothing and would otherwise hold
            // its uid until its deadline.
            _ = events.closed(), if killed.is_none() => Some(KillCause::ClientGone),
        };
        if let Some(cause) = cause {
            killed = Some(cause);
            // The init is pid 1 of the task's namespace: when it dies, the
            // kernel kills every other process there. Its uid is free for
            // the next task only once the spawner has reaped it, too (a
            // zombie still counts against that uid's process limit), so
            // the loop goes on until the spawner's report stream ends.
            init.kill();
            deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + KILL_GRACE);
        }
    }
    // The report stream ended: the spawner reaped the task's init and
    // closed its end (or the spawner died, and the init with it). Or,
    // after a kill, the spawner went quiet. The init's pidfd turns
    // readable once the kernel has also killed and reaped every other
    // process of its pid namespace.
    timeline.mark("report stream closed");
    let ended = tokio::time::timeout(KILL_GRACE, init.exited())
        .await
        .is_ok();
    if !ended {
        tracing::error!(task_id = %task.id, "the task's init did not end after its report stream did; killing it");
        init.kill();
    }
    // Not reaped for sure: purge must look for processes of the uid.
    let reaped = ended && reported_end;
    timeline.mark("namespace gone");
    // No process of the task is left to write: what its pipes still hold
    // is all it wrote. The readers charge it to the output budget (at
    // once: no I/O), so that a limit it passes is this task's end; it
    // goes to the driver after purge (`run_in_span`), which has
    // DELIVERY_IDLE from now to take an event.
    delivery.taken();
    task_ended.cancel();
    let mut handles = Vec::new();
    for (reader, charged) in readers {
        let _ = charged.await;
        handles.push(reader);
    }
    if budget.over() && killed.is_none() && failure.is_none() {
        killed = Some(KillCause::OutputAtEnd);
    }
    if exit.is_none() && failure.is_none() && killed.is_none() {
        // Ready hands the output pipes to their readers.
        let started = stdout.is_none();
        failure = Some(if !started {
            "the sandbox launcher ended without a report".to_string()
        } else {
            // Ready came, then the stream ended without Exited: the
            // spawner, which reports how tasks end, is gone.
            "the spawner ended while the task ran, so how the task ended is unknown; the task was killed".to_string()
        });
    }
    let exited = outcome(
        task,
        sup.shutdown.is_cancelled(),
        killed,
        failure,
        exit.unwrap_or((None, None, None)),
    );
    Ok((
        exited,
        reaped,
        Output {
            readers: handles,
            delivery,
        },
    ))
}

fn outcome(
    task: &Admitted,
    shutting_down: bool,
    killed: Option<KillCause>,
    failure: Option<String>,
    (code, signal, cpu_ms): (Option<i32>, Option<i32>, Option<u64>),
) -> Exited {
    let (reason, message) = if let Some(failure) = failure {
        (ExitReason::SpawnFailed, failure)
    } else {
        match killed {
            Some(KillCause::Timeout) => (
                ExitReason::Timeout,
                format!(
                    "wall-clock limit of {} ms reached; the task was killed",
                    task.limits.wall_time_ms
                ),
            ),
            Some(KillCause::Cancelled) if shutting_down => (
                ExitReason::Cancelled,
                "airlockd is shutting down; the task was killed".to_string(),
            ),
            Some(KillCause::Cancelled) => (
                ExitReason::Cancelled,
                "cancelled by the driver (CancelTask); the task was killed".to_string(),
            ),
            Some(KillCause::ClientGone) => (
                ExitReason::Cancelled,
                "the client disconnected; the task was cancelled".to_string(),
            ),
            Some(KillCause::Output) => (
                ExitReason::Limit,
                format!(
                    "output limit of {} bytes reached; the task was killed",
                    task.limits.output_bytes
                ),
            ),
            Some(KillCause::OutputAtEnd) => (
                ExitReason::Limit,
                format!(
                    "output limit of {} bytes reached as the task ended; the rest was dropped",
                    task.limits.output_bytes
                ),
            ),
            None => match signal {
                // The program is pid 1 of its namespace, so it ignores the
                // soft limit's SIGXCPU and ends by the hard limit's SIGKILL
                // (its children end by SIGXCPU, as anywhere).
                Some(sig)
                    if sig == libc::SIGXCPU
                        || (sig == libc::SIGKILL
                            && cpu_ms.is_some_and(|ms| ms >= task.limits.cpu_seconds * 1000)) =>
                {
                    (
                        ExitReason::Limit,
                        format!("CPU limit of {} s reached", task.limits.cpu_seconds),
                    )
                }
                Some(libc::SIGXFSZ) => (
                    ExitReason::Limit,
                    format!(
                        "file size limit of {} bytes reached",
                        task.limits.file_size_bytes
                    ),
                ),
                Some(sig) => (ExitReason::Completed, format!("killed by signal {sig}")),
                None => (
                    ExitReason::Completed,
                    format!("exited with code {}", code.unwrap_or(-1)),
                ),
            },
        }
    };
    let killed_by_us = killed.is_some();
    Exited {
        reason: reason as i32,
        exit_code: if killed_by_us { None } else { code },
        signal: if killed_by_us {
            Some(libc::SIGKILL)
        } else {
            signal
        },
        message,
    }
}

fn set_state(sup: &Supervisor, id: &str, state: TaskState) {
    if let Some(live) = sup.registry().live.get_mut(id) {
        live.info.state = state as i32;
    }
}

/// Limits as the wire shows them.
pub fn wire_limits(l: &airlock_policy::Limits) -> WireLimits {
    WireLimits {
        memory_bytes: Some(l.memory_bytes),
        processes: Some(l.processes),
        open_files: Some(l.open_files),
        file_size_bytes: Some(l.file_size_bytes),
        cpu_seconds: Some(l.cpu_seconds),
        output_bytes: Some(l.output_bytes),
        scratch_bytes: Some(l.scratch_bytes),
    }
}

/// Streams one pipe to the client until EOF, within the task's output
/// `budget` (past it, it drops the rest), in chunks of at most
/// [`OUTPUT_CHUNK`] bytes. A chunk waits [`OUTPUT_LINGER`] after its first
/// byte for more (not at EOF), and grows while the driver's stream has no
/// room: a task that writes a byte at a time made an event each, half a
/// million in 2 s, and a client's HTTP/2 layer answered that many small
/// frames by closing its whole connection, other tasks' streams with it.
/// With the chunk full, the task's writes wait on its pipe.
///
/// Once the task has `ended` (no process of it is left to write), the
/// bytes still in the pipe are charged to the budget at once and the
/// reader says so (`accounted`), so that the task's end can report an
/// output limit they pass; they go as the driver takes them, as long as
/// the driver (through either reader: `delivery`) takes an event every
/// [`DELIVERY_IDLE`]. Returns whether it gave up on such a driver with
/// output left.
async fn forward_output(
    pipe: tokio::net::unix::pipe::Receiver,
    stream: Stream,
    events: EventSender,
    budget: OutputBudget,
    ended: tokio_util::sync::CancellationToken,
    accounted: tokio::sync::oneshot::Sender<()>,
    delivery: Delivery,
) -> bool {
    let mut accounted = Some(accounted);
    // Allocated at the first output: a task that prints nothing (a sleeping
    // one) costs the supervisor no buffer.
    let mut buf = Vec::new();
    // Read, not yet sent: at most OUTPUT_CHUNK (the task's writes, or the
    // rest in its pipe, wait meanwhile).
    let mut pending = Vec::new();
    // Once the task has ended: how much more of the pipe may still stream
    // (charged to the budget at its end).
    let mut left: Option<usize> = None;
    // Past the output limit, or with the driver gone: read and drop, so
    // that the task never blocks on a full pipe.
    let mut drain = false;
    let mut open = true;
    // While set, the pending output waits for `linger` to fire.
    let mut lingering = false;
    let linger = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(linger);
    let idle = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(idle);
    while open || !pending.is_empty() {
        tokio::select! {
            permit = events.reserve(), if !pending.is_empty() && !lingering => match permit {
                Ok(permit) => {
                    permit.send(Ok(event(task_event::Event::Output(OutputChunk {
                        stream: stream as i32,
                        data: std::mem::take(&mut pending),
                    }))));
                    delivery.taken();
                }
                // The driver is gone; the task is being ended
                // (`events.closed()` in `execute`).
                Err(_) => {
                    pending = Vec::new();
                    drain = true;
                }
            },
            () = &mut linger, if lingering => lingering = false,
            () = ended.cancelled(), if left.is_none() => {
                let unread = crate::sys::unread_bytes(std::os::fd::AsFd::as_fd(&pipe)).unwrap_or(0);
                left = Some(match drain {
                    true => 0,
                    false => budget.take(unread),
                });
                if let Some(accounted) = accounted.take() {
                    let _ = accounted.send(());
                }
                lingering = false;
                idle.as_mut().reset(delivery.deadline());
            }
            () = &mut idle, if left.is_some() && !pending.is_empty() => {
                if tokio::time::Instant::now() < delivery.deadline() {
                    idle.as_mut().reset(delivery.deadline());
                    continue;
                }
                tracing::warn!("the driver took none of an ended task's output for {} s; its stream ends without the rest", DELIVERY_IDLE.as_secs());
                return true;
            }
            ready = pipe.readable(), if open && pending.len() < OUTPUT_CHUNK => {
                if ready.is_err() {
                    (open, lingering) = (false, false);
                    continue;
                }
                if buf.is_empty() {
                    buf = vec![0u8; OUTPUT_CHUNK];
                }
                let room = match drain {
                    true => OUTPUT_CHUNK,
                    false => OUTPUT_CHUNK - pending.len(),
                };
                let n = match pipe.try_read(&mut buf[..room]) {
                    Ok(n) if n > 0 => n,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                    // EOF, or a pipe that cannot be read: what is left goes.
                    _ => {
                        (open, lingering) = (false, false);
                        continue;
                    }
                };
                if drain {
                    continue;
                }
                let allowed = match left.as_mut() {
                    // Charged at the task's end.
                    Some(left) => {
                        let allowed = n.min(*left);
                        *left -= allowed;
                        allowed
                    }
                    None => budget.take(n),
                };
                if allowed < n {
                    (drain, lingering) = (true, false);
                }
                if pending.is_empty() && allowed > 0 && !drain && left.is_none() {
                    lingering = true;
                    linger.as_mut().reset(tokio::time::Instant::now() + OUTPUT_LINGER);
                }
                pending.extend_from_slice(&buf[..allowed]);
                if pending.len() >= OUTPUT_CHUNK {
                    lingering = false;
                }
            }
        }
    }
    if let Some(accounted) = accounted.take() {
        let _ = accounted.send(());
    }
    false
}

/// A task's output readers, for `run_in_span` to wait on before `Exited`.
struct Output {
    /// Each returns whether it gave up on the driver with output left.
    readers: Vec<tokio::task::JoinHandle<bool>>,
    /// When the driver last took an event.
    delivery: Delivery,
}

impl Output {
    /// No readers: the task never started.
    fn none() -> Self {
        Self {
            readers: Vec::new(),
            delivery: Delivery::new(),
        }
    }
}

/// When a task's driver last took an event, shared by the task's readers:
/// once the task has ended, the driver must take one every
/// [`DELIVERY_IDLE`].
#[derive(Clone)]
struct Delivery(Arc<std::sync::Mutex<tokio::time::Instant>>);

impl Delivery {
    fn new() -> Self {
        Self(Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())))
    }

    fn taken(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = tokio::time::Instant::now();
        }
    }

    /// When the driver's time runs out.
    fn deadline(&self) -> tokio::time::Instant {
        let at = self
            .0
            .lock()
            .map_or_else(|_| tokio::time::Instant::now(), |at| *at);
        at + DELIVERY_IDLE
    }
}

/// What [`run_in_process`] returns.
pub struct InProcess {
    /// How the task ended.
    pub exited: Exited,
    /// When each stage ended.
    pub timeline: Timeline,
    /// Everything the task wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the task wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Admits and runs one task in this process, the way `RunTask` does but
/// without gRPC: for the benchmark's in-process rows.
pub async fn run_in_process(
    sup: &Arc<Supervisor>,
    request: airlock_protocol::v1::RunTaskRequest,
) -> Result<InProcess, Status> {
    let task = crate::admit::admit(sup, request, &Default::default())?;
    let (tx, mut rx) = mpsc::channel(EVENTS_QUEUED);
    let drain = tokio::spawn(async move {
        let mut exited = None;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(Ok(TaskEvent { event: Some(event) })) = rx.recv().await {
            match event {
                task_event::Event::Exited(e) => exited = Some(e),
                task_event::Event::Output(o) if o.stream == Stream::Stdout as i32 => {
                    stdout.extend(o.data)
                }
                task_event::Event::Output(o) => stderr.extend(o.data),
                _ => {}
            }
        }
        (exited, stdout, stderr)
    });
    let timeline = run(sup.clone(), task, tx).await;
    let (exited, stdout, stderr) = drain
        .await
        .map_err(|_| Status::internal("the event reader failed"))?;
    let exited =
        exited.ok_or_else(|| Status::internal("the task ended without an Exited event"))?;
    Ok(InProcess {
        exited,
        timeline,
        stdout,
        stderr,
    })
}
