//! `airlock-escape`: the escape-attempt suite for security testers.
//!
//! It runs as two tenants against a live airlockd: a *victim* task that
//! holds secrets the tool generated (in its environment, argv, token and
//! scratch files, /tmp, /dev/shm, memory, System V shared memory, an
//! abstract socket and, if the policy lets it, a TCP listener), and an
//! *attacker* whose probes each run as an ordinary task through the normal
//! API. A probe is `escaped` only when it observed a secret or a forbidden
//! effect; `contained` when it tried and failed; `error` when it could not
//! run. `--baseline` runs the same probes directly on the host, to show each
//! one can see an escape. `docs/escape-suite.md` describes every probe.

mod host;
mod probes;
mod python;
mod report;
mod runner;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_executor::client::{connect, resolve_endpoint, Endpoint};
use airlock_protocol::v1::airlock_client::AirlockClient;
use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

use host::{Listeners, Workspace};
use probes::{Category, Probe, Watch};
use report::{Outcome, Report, Verdict};
use runner::{Runner, TaskResult, TaskSpec, Victim};

/// Exit code when the run itself failed (no verdicts).
const EXIT_RUN_FAILED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "airlock-escape",
    version,
    about = "Attack a live airlockd from inside real tasks and report what held",
    after_help = "Exit status: 0 every probe contained; 1 at least one probe escaped; \
                  2 no escape but at least one probe could not run (error); \
                  3 the run itself failed (cannot connect, the victim did not start)."
)]
struct Args {
    /// airlockd's endpoint: unix:/path or https://host:port (default: $AIRLOCK_ENDPOINT,
    /// then unix:/run/airlock/airlockd.sock).
    #[arg(long)]
    endpoint: Option<String>,
    /// Run the probes directly on the host (as nobody, or root where the
    /// probe is about a privilege) instead of through airlockd.
    #[arg(long)]
    baseline: bool,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the results as JUnit XML.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// The allowlisted interpreter the probes are written for.
    #[arg(long, default_value = "/usr/bin/python3")]
    program: String,
    /// Probes run at the same time.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Run only probes whose name starts with one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// IAM role for the victim's AWS credentials (the policy must entitle
    /// user `victim`); its keys become canaries for
    /// supervisor.credentials-endpoint.
    #[arg(long, value_name = "ARN")]
    role: Option<String>,
    /// IAM role for the attacker of supervisor.credentials-endpoint (the
    /// policy must entitle user `attacker`): it then also presents its own
    /// token on the victim's path.
    #[arg(long, value_name = "ARN")]
    attacker_role: Option<String>,
    /// The user the victim task runs for.
    #[arg(long, default_value = "victim")]
    victim_user: String,
    /// The user the probes run for.
    #[arg(long, default_value = "attacker")]
    attacker_user: String,
    /// The user of the second stage of the persistence probes (the next
    /// tenant).
    #[arg(long, default_value = "nexttenant")]
    next_user: String,
    /// List the probes and exit.
    #[arg(long)]
    list: bool,
    /// Print the probe catalogue as Markdown and exit.
    #[arg(long)]
    list_markdown: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_markdown {
        print!("{}", report::markdown(&probes::all()));
        return ExitCode::SUCCESS;
    }
    if args.list {
        for p in probes::all() {
            println!("{:<34} {:<13} {}", p.name, p.category, p.tries);
        }
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airlock-escape: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("airlock-escape: {e:#}");
            ExitCode::from(EXIT_RUN_FAILED)
        }
    }
}

/// A secret the tool generated, by what it stands for.
struct Canary {
    label: &'static str,
    value: String,
}

fn canary(label: &'static str) -> Result<Canary> {
    Ok(Canary {
        label,
        value: format!(
            "canary-{}-{}",
            label.replace(' ', "-"),
            host::random_hex(16)?
        ),
    })
}

/// Everything shared by the probes of one run.
struct Shared {
    runner: Runner,
    base_ctx: Value,
    canaries: Vec<Canary>,
    victim: Victim,
    ws: Arc<Workspace>,
    listeners: Listeners,
    target_hex: String,
    attacker_role: String,
    attacker_user: String,
    next_user: String,
}

async fn run(args: Args) -> Result<u8> {
    if !nix::unistd::geteuid().is_root() {
        bail!("run as root: the tool plants root-owned files, finds the supervisor's and the victim's processes, and the baseline switches to nobody");
    }
    let selected: Vec<Probe> = probes::all()
        .into_iter()
        .filter(|p| args.only.is_empty() || args.only.iter().any(|o| p.name.starts_with(o)))
        .collect();
    if selected.is_empty() {
        bail!("--only matches no probe (see --list)");
    }
    let endpoint = resolve_endpoint(args.endpoint.as_deref())?;
    let mut notes = Vec::new();

    // Secrets: the victim's, and the host's stand-ins.
    let names = [
        "victim env",
        "victim argv",
        "victim token",
        "victim scratch file",
        "victim file name",
        "victim tmp",
        "victim shm",
        "victim memory",
        "victim abstract socket",
        "victim tcp",
        "victim sysv shm",
        "tenant service",
        "metadata credentials",
        "host unix service",
        "host world-readable file",
        "host root-only file",
    ];
    let canaries = names
        .iter()
        .map(|n| canary(n))
        .collect::<Result<Vec<_>>>()?;
    let secret = |label: &str| -> String {
        canaries
            .iter()
            .find(|c| c.label == label)
            .map(|c| c.value.clone())
            .unwrap_or_default()
    };

    let ws = Arc::new(Workspace::create(
        &secret("host world-readable file"),
        &secret("host root-only file"),
    )?);
    let listeners = Listeners::start(
        &secret("tenant service"),
        &secret("metadata credentials"),
        &secret("host unix service"),
        &ws.unix_socket,
    )?;

    let runner = if args.baseline {
        notes.push(format!(
            "baseline: no sandbox; tenants run directly on the host as nobody ({}), as root where the probe's table says so, with the tool's environment; one fd of a root-only file is left open without CLOEXEC to stand in for a supervisor that leaks fds",
            runner::NOBODY
        ));
        Runner::Baseline {
            ws: ws.clone(),
            program: args.program.clone(),
        }
    } else {
        let channel = connect(&endpoint, None)
            .await
            .with_context(|| format!("connect to {endpoint}"))?;
        Runner::Sandbox {
            client: AirlockClient::new(channel),
            program: args.program.clone(),
        }
    };
    // The baseline's stand-in leaked fd: deliberately not CLOEXEC, so every
    // process the baseline starts inherits it.
    let _leaked_fd = if args.baseline {
        Some(
            nix::fcntl::open(
                &ws.root_file,
                nix::fcntl::OFlag::O_RDONLY,
                nix::sys::stat::Mode::empty(),
            )
            .context("open the baseline's leaked fd")?,
        )
    } else {
        None
    };

    // The victim.
    let victim_nonce = host::random_hex(8)?;
    let shm_key = u32::from_str_radix(&victim_nonce[..7], 16).unwrap_or(0x5eed) | 0x100_0000;
    let victim_secrets = json!({
        "token": secret("victim token"),
        "filename": secret("victim file name"),
        "scratch_file": secret("victim scratch file"),
        "tmp_file": secret("victim tmp"),
        "shm_file": secret("victim shm"),
        "memory": secret("victim memory"),
        "abstract": secret("victim abstract socket"),
        "tcp": secret("victim tcp"),
        "sysv": secret("victim sysv shm"),
        "nonce": victim_nonce,
        "shm_key": shm_key,
    });
    let mut victim_stdin = serde_json::to_vec(&victim_secrets)?;
    victim_stdin.push(b'\n');
    let victim = runner
        .start_victim(TaskSpec {
            user: args.victim_user.clone(),
            code: python::VICTIM.into(),
            args: vec!["airlock-escape-victim".into(), secret("victim argv")],
            env: HashMap::from([("VICTIM_SECRET_ACCESS_KEY".into(), secret("victim env"))]),
            stdin: victim_stdin,
            limits: probes::ProbeLimits::default(),
            timeout_ms: 0,
            as_root: false,
            dir_name: "victim".into(),
            role_arn: args.role.clone().unwrap_or_default(),
        })
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let facts_line = loop {
        if let Some(l) = victim.line(python::VICTIM_TAG) {
            break l;
        }
        if let Some(how) = victim.ended() {
            bail!("the victim ended before it was ready: {how}");
        }
        if Instant::now() > deadline {
            victim.stop().await;
            bail!("the victim did not report ready within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut facts: Value = serde_json::from_str(&facts_line).context("victim facts")?;
    let mut creds_canaries = Vec::new();
    if let Some(creds) = victim.line(python::VICTIM_CREDS_TAG) {
        let creds: Value = serde_json::from_str(&creds).context("victim credentials")?;
        for (label, key) in [
            ("victim AWS secret key", "secret"),
            ("victim AWS session token", "token"),
        ] {
            if let Some(v) = creds[key].as_str().filter(|v| v.len() >= 16) {
                creds_canaries.push(Canary {
                    label,
                    value: v.to_string(),
                });
            }
        }
        notes.push(
            "the victim has AWS credentials: its secret key and session token are canaries".into(),
        );
    }
    let victim_pid = host::pids_with_cmdline(&secret("victim argv"))
        .into_iter()
        .find(|&pid| {
            host::cmdline(pid).is_some_and(|c| c.starts_with(&format!("{}\0", args.program)))
        });
    match victim_pid {
        Some(pid) => facts["host_pid"] = json!(pid),
        None => notes
            .push("the victim's host pid was not found: probes that need it report error".into()),
    }
    if let Some(uid) = victim.uid.lock().ok().and_then(|g| *g) {
        facts["uid"] = json!(uid);
    }
    facts["nonce"] = json!(victim_nonce);
    match facts.get("tcp_port") {
        Some(p) => notes.push(format!("the victim listens on TCP 127.0.0.1:{p}")),
        None => notes.push(format!(
            "the victim could not listen on TCP ({}); the tool's listener on port {} of every address stands in for another tenant's service",
            facts.get("tcp_error").and_then(Value::as_str).unwrap_or("?"),
            listeners.tcp_service_port
        )),
    }
    // Where tasks look for the tool's services: loopback, and the worker as
    // tasks on the network see it, when this host has that address.
    let gateway = airlock_executor::netns::host::GATEWAY;
    let mut worker_addrs = vec!["127.0.0.1".to_string()];
    if std::net::UdpSocket::bind((gateway, 0)).is_ok() {
        worker_addrs.push(gateway.to_string());
    }
    notes.push(format!(
        "fake metadata service on port {} of {}{}; 169.254.169.254 itself is tried by network.metadata-real",
        listeners.metadata_port,
        worker_addrs.join(" and "),
        listeners
            .metadata_port_v6
            .map(|p| format!(" and [::1]:{p}"))
            .unwrap_or_default()
    ));

    // What the attacker may know: never a secret.
    let (supervisor_socket, supervisor_pid) = match &endpoint {
        Endpoint::Unix(path) => (Some(path.clone()), host::socket_owner(path)),
        _ => (None, None),
    };
    let handle = name_to_handle(&args.program, &ws).await;
    let base_ctx = json!({
        "victim": facts,
        "tcp_service_port": listeners.tcp_service_port,
        "metadata_port": listeners.metadata_port,
        "metadata_port_v6": listeners.metadata_port_v6,
        "udp_port": listeners.udp_port,
        "worker_addrs": worker_addrs,
        "host_unix_socket": ws.unix_socket,
        "host_world_file": ws.world_file,
        "host_root_file": ws.root_file,
        "drop_dir": ws.drop_dir,
        "bait_dir": ws.bait_dir,
        "supervisor_socket": supervisor_socket,
        "supervisor_pid": supervisor_pid,
        "host_init_cmdline": host::cmdline(1).unwrap_or_default(),
        "host_hostname": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()),
        "root_block_device": host::root_block_device(),
        "handle": handle,
        "limits": {
            "processes": probes::FORK_LIMIT,
            "memory": probes::MEMORY_LIMIT,
            "file_size": probes::FILE_LIMIT,
            "scratch": probes::SCRATCH_LIMIT,
            "open_files": probes::FD_LIMIT,
            "cpu_seconds": 1,
            "timeout_ms": probes::WALL_LIMIT_MS,
        },
    });
    let target_hex = host::hex(&std::fs::read("/usr/bin/env").context("read /usr/bin/env")?);

    let mut canaries = canaries;
    canaries.extend(creds_canaries);
    let shared = Arc::new(Shared {
        runner,
        base_ctx,
        canaries,
        victim,
        ws: ws.clone(),
        listeners,
        target_hex,
        attacker_role: args.attacker_role.clone().unwrap_or_default(),
        attacker_user: args.attacker_user.clone(),
        next_user: args.next_user.clone(),
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(args.jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, probe) in selected.iter().cloned().enumerate() {
        let shared = shared.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire().await;
            (i, run_probe(&probe, &shared).await)
        });
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; selected.len()];
    while let Some(joined) = set.join_next().await {
        let (i, o) = joined.context("a probe panicked")?;
        outcomes[i] = Some(o);
    }
    let mut outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();

    // A victim that died early would make its probes look contained.
    if let Some(how) = shared.victim.ended() {
        for o in outcomes.iter_mut().filter(|o| {
            o.category == Category::OtherTenants.name() && o.verdict != Verdict::Escaped
        }) {
            o.verdict = Verdict::Error;
            o.evidence = format!("the victim ended during the run: {how}");
        }
    }
    shared.victim.stop().await;

    let target = if args.baseline {
        "the host (baseline)".to_string()
    } else {
        endpoint.to_string()
    };
    let report = Report::new(
        if args.baseline { "baseline" } else { "sandbox" },
        target,
        notes,
        outcomes,
    );
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report.junit())
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(report.exit_code() as u8)
}

/// The file handle of the root-only file, for `kernel.open-by-handle-at`.
async fn name_to_handle(program: &str, ws: &Workspace) -> Value {
    let out = tokio::process::Command::new(program)
        .arg("-c")
        .arg(python::NAME_TO_HANDLE)
        .arg(&ws.root_file)
        .output()
        .await;
    let Ok(out) = out else {
        return Value::Null;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    match (it.next().and_then(|t| t.parse::<i32>().ok()), it.next()) {
        (Some(t), Some(h)) => json!({"type": t, "hex": h, "mount_hint": ws.root}),
        _ => Value::Null,
    }
}

fn probe_program(probe: &Probe) -> String {
    format!("{}\n{}\n{}", python::PRELUDE, probe.code, python::EPILOGUE)
}

async fn run_stage(
    probe: &Probe,
    shared: &Shared,
    nonce: &str,
    user: &str,
    extra: &[(&str, Value)],
    stage: u32,
) -> TaskResult {
    let mut ctx = shared.base_ctx.clone();
    ctx["nonce"] = json!(nonce);
    if probe.needs_target {
        ctx["target_hex"] = json!(shared.target_hex);
    }
    for (k, v) in extra {
        ctx[*k] = v.clone();
    }
    let stdin = serde_json::to_vec(&ctx).unwrap_or_default();
    shared
        .runner
        .run(TaskSpec {
            user: user.into(),
            code: probe_program(probe),
            args: vec![
                "airlock-escape-probe".into(),
                probe.name.into(),
                nonce.into(),
            ],
            env: HashMap::new(),
            stdin,
            limits: probe.limits,
            timeout_ms: probe.timeout_ms,
            as_root: probe.baseline_root,
            dir_name: format!("{}-{stage}-{nonce}", probe.name),
            role_arn: if probe.attacker_role {
                shared.attacker_role.clone()
            } else {
                String::new()
            },
        })
        .await
}

async fn run_probe(probe: &Probe, shared: &Shared) -> Outcome {
    let start = Instant::now();
    let nonce =
        host::random_hex(8).unwrap_or_else(|_| format!("{:016x}", start.elapsed().as_nanos()));
    let mut watched: Option<String> = None;
    let mut extra_canary: Option<String> = None;
    let res = if probe.two_stage {
        let residue = format!(
            "canary-residue-{}",
            host::random_hex(16).unwrap_or_default()
        );
        let first = run_stage(
            probe,
            shared,
            &nonce,
            &shared.attacker_user,
            &[("stage", json!(1)), ("residue", json!(residue))],
            1,
        )
        .await;
        let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
        let cwd = stdout
            .lines()
            .find_map(|l| l.strip_prefix("AIRLOCK-ESCAPE-CWD "))
            .map(str::to_string);
        if let Some(f) = &first.failure {
            return outcome(
                probe,
                Verdict::Error,
                format!("stage 1 did not run: {f}"),
                vec![],
                first.ending,
                start,
            );
        }
        if probe.watch == Watch::ScratchLeft {
            if let Some(dir) = &cwd {
                let dir = PathBuf::from(dir);
                let mut left = true;
                for _ in 0..40 {
                    if !dir.exists() {
                        left = false;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if left {
                    watched = Some(format!(
                        "stage 1's scratch dir {} is still on the host after the task ended",
                        dir.display()
                    ));
                }
            }
        }
        extra_canary = Some(residue);
        run_stage(
            probe,
            shared,
            &nonce,
            &shared.next_user,
            &[
                ("stage", json!(2)),
                ("stage1_cwd", json!(cwd.unwrap_or_default())),
            ],
            2,
        )
        .await
    } else {
        run_stage(probe, shared, &nonce, &shared.attacker_user, &[], 1).await
    };

    match probe.watch {
        Watch::VictimSignal(sig) => {
            let want = format!("{}{sig}", python::SIGNAL_TAG);
            for _ in 0..20 {
                if shared.victim.line(&want).is_some() {
                    watched = Some(format!("the victim received signal {sig}"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Watch::Survivor => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let pids = host::pids_with_cmdline(&nonce);
            if !pids.is_empty() {
                watched = Some(format!(
                    "processes {pids:?} of the probe are alive after the task ended"
                ));
                host::kill_all(&pids);
            }
        }
        Watch::HostFile => {
            let path = shared.ws.drop_dir.join(&nonce);
            if path.exists() {
                watched = Some(format!("the probe created {} on the host", path.display()));
                let _ = std::fs::remove_file(&path);
            }
        }
        Watch::UdpDatagram => {
            for _ in 0..10 {
                if host::log_contains(&shared.listeners.log, &nonce) {
                    watched = Some("the tool's UDP listener received the probe's datagram".into());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Watch::OutputOver(limit) => {
            let n = res.stdout.len() as u64;
            if n > limit {
                watched = Some(format!(
                    "{n} bytes of output reached the client with a limit of {limit}"
                ));
            }
        }
        Watch::BaitIntact => {
            let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
            if let Some(dir) = stdout
                .lines()
                .find_map(|l| l.strip_prefix("AIRLOCK-ESCAPE-CWD "))
            {
                let dir = PathBuf::from(dir);
                for _ in 0..40 {
                    if !dir.exists() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let bait = shared.ws.bait_dir.join("bait.txt");
            match std::fs::read_to_string(&bait) {
                Ok(s) if s == host::BAIT => {}
                Ok(_) => watched = Some(format!("{} was changed", bait.display())),
                Err(e) => watched = Some(format!("{} is gone: {e}", bait.display())),
            }
            if !shared.ws.bait_dir.is_dir() {
                watched = Some(format!("{} is gone", shared.ws.bait_dir.display()));
            }
        }
        Watch::Nothing | Watch::ScratchLeft => {}
    }
    // What the tool checked and found in order, for a contained verdict.
    let checked = match probe.watch {
        Watch::VictimSignal(sig) => Some(format!("the victim saw no signal {sig}")),
        Watch::Survivor => Some("no process of the probe alive after the task ended".into()),
        Watch::HostFile => Some("no file of the probe on the host".into()),
        Watch::UdpDatagram => Some("the tool's UDP listener received nothing".into()),
        Watch::OutputOver(limit) => Some(format!(
            "{} bytes of output reached the client (limit {limit})",
            res.stdout.len()
        )),
        Watch::ScratchLeft => Some("stage 1's scratch dir was removed".into()),
        Watch::BaitIntact => Some("the bait is intact after the purge".into()),
        Watch::Nothing => None,
    };
    let mut out = judge(probe, shared, &res, watched, extra_canary.as_deref(), start);
    if let (Verdict::Contained, Some(c)) = (out.verdict, checked) {
        out.evidence = format!("{}; {c}", out.evidence);
    }
    out
}

fn outcome(
    probe: &Probe,
    verdict: Verdict,
    evidence: String,
    attempts: Vec<String>,
    ending: String,
    start: Instant,
) -> Outcome {
    Outcome {
        probe: probe.name.into(),
        category: probe.category.name().into(),
        verdict,
        evidence,
        attempts,
        ending,
        duration_ms: start.elapsed().as_millis() as u64,
    }
}

/// The verdict: escaped only on an observation (a secret in the output, an
/// escape the probe observed, an effect the tool observed).
fn judge(
    probe: &Probe,
    shared: &Shared,
    res: &TaskResult,
    watched: Option<String>,
    extra_canary: Option<&str>,
    start: Instant,
) -> Outcome {
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    let result: Option<Value> = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(python::RESULT_TAG))
        .and_then(|j| serde_json::from_str(j).ok());
    let list = |key: &str| -> Vec<String> {
        result
            .as_ref()
            .and_then(|r| r.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let attempts = list("attempts");
    let observed = list("observed");
    let ending = res.ending.clone();

    let mut leaked: Vec<&str> = shared
        .canaries
        .iter()
        .filter(|c| stdout.contains(&c.value) || stderr.contains(&c.value))
        .map(|c| c.label)
        .collect();
    if let Some(r) = extra_canary {
        if stdout.contains(r) || stderr.contains(r) {
            leaked.push("previous tenant's residue");
        }
    }
    if !leaked.is_empty() {
        let how = observed
            .iter()
            .find(|o| {
                shared.canaries.iter().any(|c| o.contains(&c.value))
                    || extra_canary.is_some_and(|r| o.contains(r))
            })
            .map(|o| o.split(':').next().unwrap_or("").to_string())
            .unwrap_or_else(|| "output".into());
        let evidence = format!("observed the {} canary (via {how})", leaked.join(", "));
        return outcome(probe, Verdict::Escaped, evidence, attempts, ending, start);
    }
    let escapes = list("escaped");
    if let Some(first) = escapes.first() {
        return outcome(
            probe,
            Verdict::Escaped,
            first.clone(),
            attempts,
            ending,
            start,
        );
    }
    if let Some(w) = watched {
        return outcome(probe, Verdict::Escaped, w, attempts, ending, start);
    }
    if let Some(f) = &res.failure {
        return outcome(
            probe,
            Verdict::Error,
            format!("the probe did not run: {f}"),
            attempts,
            ending,
            start,
        );
    }
    let Some(result) = result.as_ref() else {
        let limited = matches!(
            res.reason,
            Some(
                airlock_protocol::v1::ExitReason::Limit | airlock_protocol::v1::ExitReason::Timeout
            )
        );
        if probe.category == Category::Exhaustion && limited {
            let evidence = format!("the supervisor ended the task: {ending}");
            return outcome(probe, Verdict::Contained, evidence, attempts, ending, start);
        }
        let tail: String = stderr
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let evidence = format!(
            "no result from the probe ({ending}); stderr: {}",
            tail.replace('\n', " | ")
        );
        return outcome(probe, Verdict::Error, evidence, attempts, ending, start);
    };
    if result.get("status").and_then(Value::as_str) == Some("skipped") {
        let why = list("skipped").join("; ");
        return outcome(probe, Verdict::Skipped, why, attempts, ending, start);
    }
    if result.get("status").and_then(Value::as_str) == Some("error") {
        let evidence = attempts
            .last()
            .cloned()
            .unwrap_or_else(|| "probe error".into());
        return outcome(
            probe,
            Verdict::Error,
            evidence.replace('\n', " | "),
            attempts,
            ending,
            start,
        );
    }
    let evidence = if attempts.is_empty() {
        "no attempt succeeded".to_string()
    } else {
        attempts.join("; ")
    };
    outcome(probe, Verdict::Contained, evidence, attempts, ending, start)
}
