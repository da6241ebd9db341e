//! Running tenant code: through airlockd's API (the real thing), or, for the
//! baseline, directly on the host as an ordinary process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_protocol::v1::airlock_client::AirlockClient;
use airlock_protocol::v1::{task_event, CancelTaskRequest, ExitReason, RunTaskRequest};
use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::host::Workspace;
use crate::probes::ProbeLimits;

/// The uid baseline tenants run as.
pub const NOBODY: u32 = 65534;

/// One task to run.
pub struct TaskSpec {
    /// The API user.
    pub user: String,
    /// `-c` code.
    pub code: String,
    /// Arguments after the code.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: HashMap<String, String>,
    /// stdin bytes.
    pub stdin: Vec<u8>,
    /// Request limits (sandbox only).
    pub limits: ProbeLimits,
    /// Request deadline (sandbox only; the baseline allows [`BASELINE_TIMEOUT`]).
    pub timeout_ms: u64,
    /// Baseline: run as root instead of nobody.
    pub as_root: bool,
    /// Baseline: name of its working dir.
    pub dir_name: String,
    /// Sandbox: the IAM role to ask credentials for (empty: none).
    pub role_arn: String,
}

/// How long the baseline lets any process run.
pub const BASELINE_TIMEOUT: Duration = Duration::from_secs(20);

/// How a task ended and what it printed.
#[derive(Debug, Default, Clone)]
pub struct TaskResult {
    /// stdout.
    pub stdout: Vec<u8>,
    /// stderr.
    pub stderr: Vec<u8>,
    /// How it ended, for people.
    pub ending: String,
    /// The supervisor's exit reason (sandbox).
    pub reason: Option<ExitReason>,
    /// The task could not be run at all (denied, spawn failed, RPC error).
    pub failure: Option<String>,
}

/// Where tasks run.
#[derive(Clone)]
pub enum Runner {
    /// Through airlockd.
    Sandbox {
        /// The gRPC client.
        client: AirlockClient<Channel>,
        /// The interpreter.
        program: String,
    },
    /// Directly on the host.
    Baseline {
        /// The tool's work dir.
        ws: Arc<Workspace>,
        /// The interpreter.
        program: String,
    },
}

fn request(spec: &TaskSpec, program: &str) -> RunTaskRequest {
    let mut args = vec!["-c".to_string(), spec.code.clone()];
    args.extend(spec.args.iter().cloned());
    let limits = (spec.limits != ProbeLimits::default()).then_some(spec.limits);
    RunTaskRequest {
        user: spec.user.clone(),
        program: program.to_string(),
        args,
        env: spec.env.clone(),
        stdin: spec.stdin.clone(),
        timeout_ms: spec.timeout_ms,
        limits,
        role_arn: spec.role_arn.clone(),
        ..Default::default()
    }
}

fn describe_exit(e: &airlock_protocol::v1::Exited) -> (Option<ExitReason>, String) {
    let reason = ExitReason::try_from(e.reason).ok();
    let mut s = reason.map_or("unknown".to_string(), |r| r.as_str_name().to_string());
    if let Some(c) = e.exit_code {
        s.push_str(&format!(" exit {c}"));
    }
    if let Some(sig) = e.signal {
        s.push_str(&format!(" signal {sig}"));
    }
    if !e.message.is_empty() {
        s.push_str(&format!(": {}", e.message));
    }
    (reason, s)
}

impl Runner {
    /// Runs a task to its end.
    pub async fn run(&self, spec: TaskSpec) -> TaskResult {
        match self {
            Runner::Sandbox { client, program } => {
                let mut client = client.clone();
                let mut out = TaskResult::default();
                let mut stream = match client.run_task(request(&spec, program)).await {
                    Ok(r) => r.into_inner(),
                    Err(status) => {
                        out.failure = Some(format!(
                            "RunTask: {:?}: {}",
                            status.code(),
                            status.message()
                        ));
                        return out;
                    }
                };
                loop {
                    match stream.message().await {
                        Ok(Some(ev)) => match ev.event {
                            Some(task_event::Event::Output(o)) => {
                                if o.stream == airlock_protocol::v1::Stream::Stderr as i32 {
                                    out.stderr.extend(o.data);
                                } else {
                                    out.stdout.extend(o.data);
                                }
                            }
                            Some(task_event::Event::Exited(e)) => {
                                let (reason, ending) = describe_exit(&e);
                                if reason == Some(ExitReason::SpawnFailed) {
                                    out.failure = Some(ending.clone());
                                }
                                out.reason = reason;
                                out.ending = ending;
                            }
                            _ => {}
                        },
                        Ok(None) => break,
                        Err(status) => {
                            out.failure = Some(format!("stream: {}", status.message()));
                            break;
                        }
                    }
                }
                out
            }
            Runner::Baseline { ws, program } => baseline_run(ws, program, spec).await,
        }
    }
}

async fn baseline_run(ws: &Workspace, program: &str, spec: TaskSpec) -> TaskResult {
    let mut out = TaskResult::default();
    let uid = if spec.as_root { 0 } else { NOBODY };
    let dir = match ws.task_dir(&spec.dir_name, uid) {
        Ok(d) => d,
        Err(e) => {
            out.failure = Some(format!("{e:#}"));
            return out;
        }
    };
    let mut child = match baseline_command(program, &spec, &dir, uid).spawn() {
        Ok(c) => c,
        Err(e) => {
            out.failure = Some(format!("spawn {program}: {e}"));
            return out;
        }
    };
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        let data = spec.stdin.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
        });
    }
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let all = async {
        let (o, e) = tokio::join!(read_out, read_err);
        (o, e, child.wait().await)
    };
    match tokio::time::timeout(BASELINE_TIMEOUT, all).await {
        Ok((o, e, status)) => {
            out.stdout = o;
            out.stderr = e;
            out.ending = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
        }
        Err(_) => {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            out.ending = format!("killed by the tool after {BASELINE_TIMEOUT:?}");
        }
    }
    out
}

fn baseline_command(
    program: &str,
    spec: &TaskSpec,
    dir: &PathBuf,
    uid: u32,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("-c")
        .arg(&spec.code)
        .args(&spec.args)
        .current_dir(dir)
        .env("HOME", dir)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if uid != 0 {
        // std drops supplementary groups when it switches uid from root.
        cmd.uid(uid).gid(uid);
    }
    cmd
}

/// The victim, running in the background.
pub struct Victim {
    /// Every stdout line so far.
    pub lines: Arc<Mutex<Vec<String>>>,
    /// How it ended, once it has.
    pub ended: Arc<Mutex<Option<String>>>,
    /// The sandbox uid, from `Started`.
    pub uid: Arc<Mutex<Option<u32>>>,
    stop: VictimStop,
}

enum VictimStop {
    Sandbox {
        client: AirlockClient<Channel>,
        task_id: Arc<Mutex<Option<String>>>,
    },
    Baseline {
        pid: Option<u32>,
    },
}

fn push_lines(lines: &Mutex<Vec<String>>, partial: &mut Vec<u8>, data: &[u8]) {
    partial.extend_from_slice(data);
    while let Some(i) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=i).collect();
        if let Ok(mut v) = lines.lock() {
            v.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
    }
}

impl Runner {
    /// Starts the victim and returns at once.
    pub async fn start_victim(&self, spec: TaskSpec) -> Result<Victim> {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let ended: Arc<Mutex<Option<String>>> = Arc::default();
        let uid: Arc<Mutex<Option<u32>>> = Arc::default();
        match self {
            Runner::Sandbox { client, program } => {
                let mut c = client.clone();
                let mut stream = c
                    .run_task(request(&spec, program))
                    .await
                    .context("start the victim task")?
                    .into_inner();
                let task_id: Arc<Mutex<Option<String>>> = Arc::default();
                let (l, en, u, t) = (lines.clone(), ended.clone(), uid.clone(), task_id.clone());
                tokio::spawn(async move {
                    let mut partial = Vec::new();
                    let mut stderr = Vec::new();
                    let mut how = String::from("stream closed");
                    loop {
                        match stream.message().await {
                            Ok(Some(ev)) => match ev.event {
                                Some(task_event::Event::Started(s)) => {
                                    if let Ok(mut g) = u.lock() {
                                        *g = Some(s.uid);
                                    }
                                    if let Ok(mut g) = t.lock() {
                                        *g = Some(s.task_id);
                                    }
                                }
                                Some(task_event::Event::Output(o)) => {
                                    if o.stream == airlock_protocol::v1::Stream::Stderr as i32 {
                                        stderr.extend(o.data);
                                    } else {
                                        push_lines(&l, &mut partial, &o.data);
                                    }
                                }
                                Some(task_event::Event::Exited(e)) => {
                                    how = describe_exit(&e).1;
                                }
                                None => {}
                            },
                            Ok(None) => break,
                            Err(s) => {
                                how = format!("stream error: {}", s.message());
                                break;
                            }
                        }
                    }
                    let tail = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(400)..])
                        .into_owned();
                    if let Ok(mut g) = en.lock() {
                        *g = Some(format!("{how}; stderr: {tail}"));
                    }
                });
                Ok(Victim {
                    lines,
                    ended,
                    uid,
                    stop: VictimStop::Sandbox {
                        client: client.clone(),
                        task_id,
                    },
                })
            }
            Runner::Baseline { ws, program } => {
                let dir = ws.task_dir(&spec.dir_name, NOBODY)?;
                let mut child = baseline_command(program, &spec, &dir, NOBODY)
                    .spawn()
                    .context("start the baseline victim")?;
                if let Ok(mut g) = uid.lock() {
                    *g = Some(NOBODY);
                }
                let pid = child.id();
                if let Some(mut stdin) = child.stdin.take() {
                    let data = spec.stdin.clone();
                    tokio::spawn(async move {
                        let _ = stdin.write_all(&data).await;
                    });
                }
                let mut so = child.stdout.take();
                let (l, en) = (lines.clone(), ended.clone());
                tokio::spawn(async move {
                    let mut partial = Vec::new();
                    let mut buf = [0u8; 4096];
                    if let Some(s) = so.as_mut() {
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            push_lines(&l, &mut partial, &buf[..n]);
                        }
                    }
                    let status = child.wait().await;
                    if let Ok(mut g) = en.lock() {
                        *g = Some(format!("{status:?}"));
                    }
                });
                Ok(Victim {
                    lines,
                    ended,
                    uid,
                    stop: VictimStop::Baseline { pid },
                })
            }
        }
    }
}

impl Victim {
    /// The first line starting with `tag`, without the tag.
    pub fn line(&self, tag: &str) -> Option<String> {
        self.lines
            .lock()
            .ok()?
            .iter()
            .find_map(|l| l.strip_prefix(tag).map(str::to_string))
    }

    /// How it ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().ok()?.clone()
    }

    /// Ends the victim: CancelTask, or SIGTERM (it cleans its host files)
    /// then SIGKILL in the baseline.
    pub async fn stop(&self) {
        match &self.stop {
            VictimStop::Sandbox { client, task_id } => {
                let id = task_id.lock().ok().and_then(|g| g.clone());
                if let Some(task_id) = id {
                    let _ = client
                        .clone()
                        .cancel_task(CancelTaskRequest { task_id })
                        .await;
                }
            }
            VictimStop::Baseline { pid } => {
                if let Some(pid) = pid {
                    let pid = nix::unistd::Pid::from_raw(*pid as i32);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        for _ in 0..50 {
            if self.ended().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
