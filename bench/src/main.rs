//! `airlock-bench`: how long a task takes to start and end, for a bare
//! fork+exec (the limit), bubblewrap with comparable isolation, and Airlock
//! end to end (through gRPC from a warm client, and through the `airlock`
//! CLI), all in one run on this machine, the methods taking turns in
//! blocks, so the ratios compare like with like. Also airlockd's resident
//! memory idle and with many live tasks.
//! Prints a markdown table. Run by `scripts/bench` (as root).

mod credentials;

/// `[network]` for tasks without network.
const NO_NETWORK: &str = "mode = \"none\"";

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use airlock_executor::client::{connect, Endpoint};
use airlock_protocol::v1::airlock_client::AirlockClient;
use airlock_protocol::v1::{task_event, CancelTaskRequest, RunTaskRequest};
use anyhow::{bail, Context};
use tonic::transport::Channel;

const CONCURRENCY: [usize; 4] = [1, 2, 8, 64];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut tasks = 400usize;
    let mut live = 1000usize;
    let mut quick = false;
    let mut load_secs = 0u64;
    let mut load_concurrency = 8usize;
    let mut load_grpc = false;
    let mut venv = std::env::var_os("AIRLOCK_VENV").map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--load" => load_secs = args.next().context("--load SECONDS")?.parse()?,
            "--load-concurrency" => {
                load_concurrency = args.next().context("--load-concurrency N")?.parse()?
            }
            "--load-grpc" => load_grpc = true,
            "--venv" => venv = Some(args.next().context("--venv DIR")?.into()),
            "--tasks" => {
                tasks = args.next().context("--tasks N")?.parse()?;
                if tasks < 4 {
                    bail!("--tasks {tasks}: at least 4 (python3 runs a quarter of them)");
                }
            }
            "--live" => live = args.next().context("--live N")?.parse()?,
            other => {
                bail!("unknown argument {other}: airlock-bench [--tasks N] [--live N] [--quick] [--venv DIR] [--load SECONDS [--load-concurrency N] [--load-grpc]]")
            }
        }
    }
    if !nix_is_root() {
        bail!("airlock-bench starts airlockd, which needs root");
    }
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary dir")?
        .to_path_buf();
    let bwrap = which("bwrap");
    // Before any thread: it sets this process's AWS identity.
    let moto = match venv.filter(|v| v.join("bin/moto_server").exists()) {
        Some(venv) => Some(credentials::Moto::start(&venv)?),
        None => None,
    };
    let daemon = Daemon::start(&bin_dir, live)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let channel = runtime.block_on(connect(&Endpoint::Unix(daemon.socket.clone()), None))?;
    // A second supervisor inside this process (its own uids and scratch
    // root), for the spawn path without gRPC.
    let local_dir = bench_dir()?;
    let local_config = local_dir.path().join("policy.toml");
    std::fs::write(
        &local_config,
        bench_policy(local_dir.path(), 930000, 200, NO_NETWORK, ""),
    )?;
    let local = runtime
        .block_on(airlock_executor::daemon::prepare(
            &local_config,
            Some(&bin_dir.join("airlock-launch")),
        ))
        .context("start the in-process supervisor")?;
    let timelines = std::sync::Mutex::new(Vec::new());
    if load_secs > 0 {
        // For profilers (perf record -a) and A/B runs: only /usr/bin/true
        // tasks, in-process (or through gRPC), 8 (or N) at a time, for this
        // long.
        let end = Instant::now() + Duration::from_secs(load_secs);
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for w in 0..load_concurrency {
                let (runtime, local, done, channel) = (&runtime, &local, &done, &channel);
                s.spawn(move || {
                    while Instant::now() < end {
                        let ran = match load_grpc {
                            true => {
                                runtime.block_on(run_grpc(channel.clone(), w, "/usr/bin/true", &[]))
                            }
                            false => runtime
                                .block_on(run_local(&local.sup, w, "/usr/bin/true", &[]))
                                .map(drop),
                        };
                        if ran.is_ok() {
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        println!("{:.0} tasks/s", done.into_inner() as f64 / load_secs as f64);
        return Ok(());
    }

    println!(
        "| program | method | concurrency | median ms | p99 ms | tasks/s | × bare | × bwrap |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let programs: [(&str, &[&str]); 2] = [
        ("/usr/bin/true", &[]),
        ("/usr/bin/python3", &["-c", "pass"]),
    ];
    // --quick: /usr/bin/true at concurrency 1 and 8 only, for iterating.
    let programs = if quick { &programs[..1] } else { &programs[..] };
    for &(program, args) in programs {
        let label = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        let n = if program.ends_with("python3") {
            tasks / 4
        } else {
            tasks
        };
        for c in CONCURRENCY {
            if quick && c != 1 && c != 8 {
                continue;
            }
            let bare = |_| spawn_status(Command::new(program).args(args));
            let bw = bwrap.as_ref().map(|b| {
                move |_| spawn_status(Command::new(b).args(BWRAP_ARGS).arg(program).args(args))
            });
            let inproc = |i| {
                let timeline = runtime.block_on(run_local(&local.sup, i, program, args))?;
                if c == 1 && args.is_empty() {
                    timelines
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push(timeline);
                }
                Ok(())
            };
            let grpc = |i| runtime.block_on(run_grpc(channel.clone(), i, program, args));
            let cli = |i: usize| {
                spawn_status(
                    Command::new(bin_dir.join("airlock"))
                        .arg("--endpoint")
                        .arg(format!("unix:{}", daemon.socket.display()))
                        .args([
                            "run",
                            "--no-stdin",
                            "--user",
                            &format!("bench{}", i % 8),
                            "--",
                            program,
                        ])
                        .args(args),
                )
            };
            let methods: [(&str, Option<Run>); 5] = [
                ("bare fork+exec", Some(&bare)),
                ("bubblewrap", bw.as_ref().map(|b| b as Run)),
                ("airlock in-process (no gRPC)", Some(&inproc)),
                ("airlock gRPC (warm client)", Some(&grpc)),
                ("airlock CLI", Some(&cli)),
            ];
            let measured = measure(n, c, &methods);
            let (Some(bare), bw) = (&measured[0], &measured[1]) else {
                bail!("no bare fork+exec row");
            };
            for (method, m) in methods.iter().map(|(name, _)| name).zip(&measured) {
                let Some(m) = m else { continue };
                let vs_bwrap = bw
                    .as_ref()
                    .map_or("-".to_string(), |b| format!("{:.2}", m.median / b.median));
                println!(
                    "| `{label}` | {method} | {c} | {:.2} | {:.2} | {:.0} | {:.2} | {vs_bwrap} |",
                    m.median * 1e3,
                    m.p99 * 1e3,
                    m.per_second,
                    m.median / bare.median,
                );
            }
        }
    }
    if bwrap.is_none() {
        println!("\nbubblewrap not found: its rows are missing (scripts/bench installs it)");
    }

    print_stages(&timelines.into_inner().unwrap_or_default());
    drop(local);

    let idle = daemon.rss_kib()?;
    let held = runtime.block_on(hold_sleeping_tasks(channel.clone(), live))?;
    let busy = daemon.rss_kib()?;
    runtime.block_on(cancel_all(channel, held))?;
    println!(
        "\nairlockd resident memory: idle {:.1} MiB; with {live} live sleeping tasks {:.1} MiB, {:.1} KiB per task",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0,
        (busy.saturating_sub(idle)) as f64 / live as f64
    );

    match moto {
        Some(moto) => {
            let dir = bench_dir()?;
            let config = dir.path().join("policy.toml");
            std::fs::write(&config, moto.policy(dir.path())?)?;
            let creds = runtime
                .block_on(airlock_executor::daemon::prepare(
                    &config,
                    Some(&bin_dir.join("airlock-launch")),
                ))
                .context("start the in-process supervisor with credentials")?;
            runtime.block_on(moto.report(&creds.sup, tasks))?;
        }
        None => println!(
            "\nCredentials not measured: no moto venv (run scripts/moto --install, or pass --venv DIR)"
        ),
    }
    match FAILED.load(std::sync::atomic::Ordering::Relaxed) {
        0 => {
            println!("\nEvery task ran and reported exit code 0.");
            Ok(())
        }
        n => bail!("{n} tasks failed or were misreported (see above)"),
    }
}

/// bubblewrap with isolation comparable to Airlock's: every namespace,
/// a read-only system, private /tmp, /proc and /dev, an unprivileged uid.
const BWRAP_ARGS: &[&str] = &[
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--symlink",
    "usr/bin",
    "/bin",
    "--ro-bind",
    "/etc",
    "/etc",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "--uid",
    "65534",
    "--gid",
    "65534",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--",
];

/// Tasks that failed or reported anything but exit code 0, in any row.
static FAILED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Measured {
    median: f64,
    p99: f64,
    per_second: f64,
}

/// One way of running task `i` (its index picks its user).
type Run<'a> = &'a (dyn Fn(usize) -> anyhow::Result<()> + Sync);

/// Runs `n` tasks of every method (`None`: skipped) on `c` threads. The
/// methods take turns in blocks, each starting with the next method, so
/// that a machine that drifts, as these do by 10 to 30 % within an hour,
/// moves every row of a ratio alike (as `spawnbench` does): in up to 8
/// rounds, with blocks of at least 25 tasks per thread, so that threads
/// idling at a block's end cost tasks/s at most a few per cent (400 tasks:
/// 8 rounds at concurrency 1 and 2, 2 at 8, none at 64).
fn measure(n: usize, c: usize, methods: &[(&str, Option<Run>)]) -> Vec<Option<Measured>> {
    let block = (c * (n / (8 * c)).max(25)).clamp(1, n.max(1));
    let mut times = vec![Vec::new(); methods.len()];
    let mut walls = vec![0.0; methods.len()];
    let mut first = 0;
    while first < n {
        let last = n.min(first + block);
        let round = first / block;
        for k in (0..methods.len()).map(|k| (k + round) % methods.len()) {
            let Some(run) = methods[k].1 else { continue };
            let start = Instant::now();
            times[k].extend(run_block(first..last, c, run));
            walls[k] += start.elapsed().as_secs_f64();
        }
        first = last;
    }
    methods
        .iter()
        .zip(times.iter_mut().zip(walls))
        .map(|((_, run), (all, wall))| {
            run.as_ref()?;
            all.sort_by(f64::total_cmp);
            let pick = |q: f64| {
                all.get(((all.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            Some(Measured {
                median: pick(0.5),
                p99: pick(0.99),
                per_second: all.len() as f64 / wall,
            })
        })
        .collect()
}

/// Runs the tasks `range` on `c` threads, each timing its tasks one after
/// another; their times in seconds.
fn run_block(range: std::ops::Range<usize>, c: usize, run: Run) -> Vec<f64> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..c)
            .map(|w| {
                let range = range.clone();
                s.spawn(move || {
                    let mut times = Vec::new();
                    for i in range.skip(w).step_by(c) {
                        let t = Instant::now();
                        if let Err(err) = run(i) {
                            eprintln!("task {i} failed: {err:#}");
                            FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        times.push(t.elapsed().as_secs_f64());
                    }
                    times
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    })
}

fn spawn_status(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{cmd:?}: {status}");
    }
    Ok(())
}

/// One task through the in-process supervisor; its timeline.
async fn run_local(
    sup: &std::sync::Arc<airlock_executor::supervisor::Supervisor>,
    i: usize,
    program: &str,
    args: &[&str],
) -> anyhow::Result<airlock_executor::run::Timeline> {
    let done = airlock_executor::run::run_in_process(
        sup,
        RunTaskRequest {
            user: format!("bench{}", i % 8),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        },
    )
    .await?;
    if done.exited.exit_code != Some(0) {
        bail!("task ended: {:?}", done.exited);
    }
    Ok(done.timeline)
}

/// The median time of each stage of the in-process spawn path.
fn print_stages(timelines: &[airlock_executor::run::Timeline]) {
    let Some(first) = timelines.first() else {
        return;
    };
    println!(
        "\nWhere the time goes: the in-process `/usr/bin/true` runs at concurrency 1 ({} tasks), median µs of each stage (each ends at the named point)\n",
        timelines.len()
    );
    println!("| stage | median µs |");
    println!("|---|---|");
    let mut total = 0.0;
    for (k, (stage, _)) in first.durations_us().iter().enumerate() {
        let mut times: Vec<f64> = timelines
            .iter()
            .filter_map(|t| {
                t.durations_us()
                    .get(k)
                    .filter(|(s, _)| s == stage)
                    .map(|(_, us)| *us)
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
        total += median;
        println!("| {stage} | {median:.0} |");
    }
    println!("| sum of medians | {total:.0} |");
}

/// A world-readable temporary dir under /var/tmp (tasks reach their
/// scratch dirs through it).
fn bench_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("airlock-bench-")
        .tempdir_in("/var/tmp")?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    Ok(dir)
}

async fn run_grpc(channel: Channel, i: usize, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut client = AirlockClient::new(channel);
    let mut stream = client
        .run_task(RunTaskRequest {
            user: format!("bench{}", i % 8),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })
        .await?
        .into_inner();
    while let Some(event) = stream.message().await? {
        if let Some(task_event::Event::Exited(e)) = event.event {
            if e.exit_code != Some(0) {
                bail!("task ended: {e:?}");
            }
        }
    }
    Ok(())
}

/// Starts `n` sleeping tasks and returns their ids and streams once all
/// have started.
async fn hold_sleeping_tasks(
    channel: Channel,
    n: usize,
) -> anyhow::Result<Vec<(String, tonic::Streaming<airlock_protocol::v1::TaskEvent>)>> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = AirlockClient::new(channel.clone());
        let mut stream = client
            .run_task(RunTaskRequest {
                user: format!("bench{}", i % 8),
                program: "/usr/bin/sleep".into(),
                args: vec!["600".into()],
                ..Default::default()
            })
            .await?
            .into_inner();
        match stream.message().await?.and_then(|e| e.event) {
            Some(task_event::Event::Started(s)) => held.push((s.task_id, stream)),
            other => bail!("sleeping task {i} did not start: {other:?}"),
        }
    }
    // Let the daemon settle (buffers, tasks of the runtime).
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(held)
}

async fn cancel_all(
    channel: Channel,
    held: Vec<(String, tonic::Streaming<airlock_protocol::v1::TaskEvent>)>,
) -> anyhow::Result<()> {
    let mut client = AirlockClient::new(channel);
    for (id, _) in &held {
        client
            .cancel_task(CancelTaskRequest {
                task_id: id.clone(),
            })
            .await?;
    }
    for (_, mut stream) in held {
        while stream.message().await?.is_some() {}
    }
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The bench's policy: uids from `uid_first`, scratch root and audit log in
/// `dir`, `/usr/bin/true`, python3 and sleep; tasks without network (each
/// in an empty namespace of its own) unless `network` says otherwise, and
/// `extra_read_only` (quoted TOML strings) readable too.
fn bench_policy(
    dir: &Path,
    uid_first: u32,
    uid_count: usize,
    network: &str,
    extra_read_only: &str,
) -> String {
    format!(
        r#"cluster = "bench"
mode = "shared"
[sandbox]
uid_first = {uid_first}
uid_count = {uid_count}
scratch_root = "{root}/tasks"
audit_log = "{root}/audit.jsonl"
read_only = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/lib/x86_64-linux-gnu", "/etc"{extra_read_only}]
[network]
{network}
[limits]
processes = 16
[[program]]
path = "/usr/bin/true"
[[program]]
path = "/usr/bin/python3"
[[program]]
path = "/usr/bin/sleep"
"#,
        root = dir.display()
    )
}

/// A bench airlockd: tasks without network (they join one empty namespace),
/// its own uid range and scratch root, /usr/bin/true, python3 and sleep.
struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(bin_dir: &Path, live: usize) -> anyhow::Result<Self> {
        let dir = bench_dir()?;
        let socket = dir.path().join("airlockd.sock");
        let policy = bench_policy(dir.path(), 910000, live + 200, NO_NETWORK, "");
        let config = dir.path().join("policy.toml");
        std::fs::write(&config, policy)?;
        let child = Command::new(bin_dir.join("airlockd"))
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .env("AIRLOCK_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                bail!("airlockd did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            socket,
            _dir: dir,
        })
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmRSS")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
