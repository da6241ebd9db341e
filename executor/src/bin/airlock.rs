//! `airlock`: the command-line client of `airlockd`, and the operator's
//! policy checker.
//!
//! `airlock run` behaves like the program it runs as far as a shell can tell:
//! the task's stdout and stderr come out on ours as they arrive, and our exit
//! status is the task's (see [`EXIT_CODES`]). Ctrl-C cancels the task on the
//! supervisor rather than abandoning it.
//!
//! Test strategy: the pure parts (durations, sizes, `--env`, exit-code
//! mapping, table and time formatting) are unit-tested below. Running against
//! a live `airlockd` belongs to the end-to-end suite in `tests/`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_executor::client::{self, TlsFiles};
use airlock_protocol::v1::{
    airlock_client::AirlockClient, task_event, CancelTaskRequest, ExitReason, Exited,
    ExplainTaskResponse, GetTaskRequest, Limits, ListTasksRequest, ReloadPolicyRequest,
    RunTaskRequest, Started, Stream, TaskInfo, TaskState,
};
use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The most stdin `run` forwards; the supervisor refuses more.
const MAX_STDIN: usize = airlock_policy::MAX_STDIN_BYTES;

/// Exit statuses, shown by `--help`.
const EXIT_CODES: &str = "\
Exit status of `airlock run`:
  N      the task's own exit code
  128+N  the task was killed by signal N
  124    the task hit its wall-clock timeout
  125    the task was cancelled (CancelTask, Ctrl-C, shutdown)
  126    a resource limit ended the task (CPU time, output)
  127    the sandbox could not start the program
Any command:
  77     the policy denied the request; nothing ran
  2      invalid request or command line
  1      any other error (cannot reach airlockd, daemon error, ...)
  130/143  interrupted twice while waiting: stopped waiting for the task to end";

/// Talk to airlockd: run, cancel and inspect sandboxed tasks, check policies.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, after_help = EXIT_CODES)]
struct Cli {
    /// Where airlockd listens: unix:/PATH, https://HOST:PORT (needs --tls-*),
    /// or http://127.0.0.1:PORT (loopback only). Default: $AIRLOCK_ENDPOINT,
    /// else unix:/run/airlock/airlockd.sock.
    #[arg(long, global = true, value_name = "EP", help_heading = "Connection")]
    endpoint: Option<String>,
    /// CA certificate (PEM) that verifies airlockd's certificate, for https.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Connection",
        env = "AIRLOCK_TLS_CA",
        requires_all = ["tls_cert", "tls_key"]
    )]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to airlockd, for https.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Connection",
        env = "AIRLOCK_TLS_CERT",
        requires_all = ["tls_ca", "tls_key"]
    )]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate, for https.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Connection",
        env = "AIRLOCK_TLS_KEY",
        requires_all = ["tls_ca", "tls_cert"]
    )]
    tls_key: Option<PathBuf>,
    /// Say more on stderr (e.g. the task's uid and sandbox layers).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a program as a sandboxed task and stream its output. Stdin, if it
    /// is not a terminal, is read to the end and fed to the task.
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// Cancel (kill) a running task.
    Cancel {
        /// The task's id.
        task_id: String,
    },
    /// List live and recently ended tasks.
    Ps,
    /// Show one task.
    Get {
        /// The task's id.
        task_id: String,
    },
    /// Check, explain and reload policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Parse and validate a policy file; print every error with its line,
    /// then warnings about risky entries (exit 0 with warnings, unless
    /// --deny-warnings).
    Check {
        /// The policy file (TOML).
        file: PathBuf,
        /// Exit 1 when there are warnings.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// The decision airlockd (or, with --config, a policy file) makes on a
    /// task, and which rule makes it; a denial is the text the task would
    /// get. Exit 0 when allowed, 77 when denied. Nothing runs.
    #[command(after_help = "Accepts every option of `airlock run`.")]
    Explain(Box<ExplainArgs>),
    /// Make airlockd re-read its policy file (admin: root on its Unix
    /// socket). An invalid file changes nothing and is reported.
    Reload,
}

#[derive(Debug, Args)]
#[command(
    override_usage = "airlock policy explain [OPTIONS] --user <USER> [--config FILE] [--] <PROGRAM> [ARGS]..."
)]
struct ExplainArgs {
    /// Decide with this policy file instead of asking airlockd.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
#[command(override_usage = "airlock run [OPTIONS] --user <USER> [--] <PROGRAM> [ARGS]...")]
struct RunArgs {
    /// The user the task runs for.
    #[arg(long)]
    user: String,
    /// One of the user's groups (repeatable).
    #[arg(long = "group", value_name = "G")]
    groups: Vec<String>,
    /// Wall-clock limit: 500ms, 30s, 10m, 1h or plain seconds. Default: the
    /// policy's.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Extra environment variable for the task (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Task id to use ([A-Za-z0-9._-], 1-64 chars); airlockd picks one if
    /// omitted.
    #[arg(long = "id", value_name = "TASK_ID")]
    id: Option<String>,
    /// Memory limit, e.g. 512MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// Most processes (and threads) the task may have.
    #[arg(long, value_name = "N")]
    processes: Option<u64>,
    /// Most open files per process.
    #[arg(long, value_name = "N")]
    open_files: Option<u64>,
    /// Largest file the task may write.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    file_size: Option<u64>,
    /// CPU time limit in seconds.
    #[arg(long, value_name = "N")]
    cpu_seconds: Option<u64>,
    /// Most output (stdout and stderr together) the task may produce.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    output: Option<u64>,
    /// Size of the task's scratch dir (its cwd and HOME).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    scratch: Option<u64>,
    /// IAM role ARN the task gets AWS credentials for. Default: the user's
    /// default role in the policy, if any.
    #[arg(long, value_name = "ARN")]
    role: Option<String>,
    /// File holding the user's SAML assertion (the base64 SAMLResponse from
    /// the identity provider); its roles are then the user's entitlements.
    #[arg(long, value_name = "FILE")]
    saml_assertion_file: Option<PathBuf>,
    /// Do not read stdin; the task gets an empty one.
    #[arg(short = 'n', long)]
    no_stdin: bool,
    /// The program's absolute path, then its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    command: Vec<String>,
}

/// Prints a line to stderr, ignoring failure: unlike `eprintln!`, this must
/// not panic when stderr is closed.
macro_rules! note {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr().lock(), "airlock: {}", format_args!($($arg)*));
    }};
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Policy(PolicyCommand::Check {
        file,
        deny_warnings,
    }) = &cli.command
    {
        return policy_check(file, *deny_warnings);
    }
    if let Command::Policy(PolicyCommand::Explain(args)) = &cli.command {
        if let Some(file) = &args.config {
            return explain_file(file, &args.run);
        }
    }
    let request = match &cli.command {
        // A malformed request says so without a daemon to ask (exit 2).
        Command::Run(args) => build_request(args, Vec::new())?,
        _ => RunTaskRequest::default(),
    };
    let endpoint = client::resolve_endpoint(cli.endpoint.as_deref())?;
    let tls = match (cli.tls_ca, cli.tls_cert, cli.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
        _ => None,
    };
    let channel = client::connect(&endpoint, tls.as_ref()).await?;
    let mut airlock = AirlockClient::new(channel);
    match cli.command {
        Command::Run(args) => run(airlock, *args, request, cli.verbose).await,
        Command::Cancel { task_id } => {
            airlock
                .cancel_task(CancelTaskRequest {
                    task_id: task_id.clone(),
                })
                .await?;
            if cli.verbose {
                note!("cancelled task {task_id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ps => {
            let mut tasks = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = airlock
                    .list_tasks(ListTasksRequest {
                        page_size: 0,
                        page_token: page_token.clone(),
                    })
                    .await?
                    .into_inner();
                tasks.extend(page.tasks);
                // A token that does not move on would never end the loop.
                if page.next_page_token.is_empty() || page.next_page_token == page_token {
                    break;
                }
                page_token = page.next_page_token;
            }
            print!("{}", ps_table(tasks, now_ms()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { task_id } => {
            let info = airlock
                .get_task(GetTaskRequest { task_id })
                .await?
                .into_inner();
            print!("{}", task_details(&info, now_ms()));
            Ok(ExitCode::SUCCESS)
        }
        // Answered above, before connecting; kept so that the match is total.
        Command::Policy(PolicyCommand::Check {
            file,
            deny_warnings,
        }) => policy_check(&file, deny_warnings),
        Command::Policy(PolicyCommand::Explain(args)) => {
            let request = build_request(&args.run, Vec::new())?;
            let explained = airlock.explain_task(request).await?.into_inner();
            Ok(print_explained(&explained))
        }
        Command::Policy(PolicyCommand::Reload) => {
            let r = match airlock.reload_policy(ReloadPolicyRequest {}).await {
                Ok(r) => r.into_inner(),
                // Every problem of the file, one per line, as `policy check`
                // prints them.
                Err(status) if status.code() == Code::FailedPrecondition => {
                    for line in status.message().lines() {
                        note!("{}", one_line(line));
                    }
                    return Ok(ExitCode::FAILURE);
                }
                Err(status) => return Err(status.into()),
            };
            println!(
                "policy reloaded: cluster {}, {} programs, sha256 {} (was {})",
                one_line(&r.cluster),
                r.programs,
                one_line(&r.policy_sha256),
                one_line(&r.previous_sha256)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a top-level error and picks the exit status.
fn report(err: &anyhow::Error) -> ExitCode {
    match err.downcast_ref::<Status>() {
        Some(status) => {
            let (prefix, code) = status_exit(status.code());
            note!("{prefix}: {}", status_text(status));
            ExitCode::from(code)
        }
        None => {
            note!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a gRPC status is reported: the prefix after "airlock: " and the exit
/// status.
fn status_exit(code: Code) -> (&'static str, u8) {
    match code {
        Code::PermissionDenied => ("denied", 77),
        Code::InvalidArgument => ("invalid request", 2),
        other => (code_name(other), 1),
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// A status's message, followed by its cause chain when it has one (tonic
/// puts transport failures there).
fn status_text(status: &Status) -> String {
    let mut text = if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        one_line(status.message())
    };
    let mut cause = std::error::Error::source(status);
    while let Some(err) = cause {
        let _ = write!(text, ": {err}");
        cause = err.source();
    }
    text
}

// ---------------------------------------------------------------- policy check

fn policy_check(file: &std::path::Path, deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match airlock_policy::Policy::parse(&text, &file.display().to_string()) {
        Ok(policy) => {
            let warnings = policy.warnings(&host_facts(&policy));
            println!(
                "{}: ok (cluster {}, {} programs, {} warnings)",
                file.display(),
                policy.cluster,
                policy.programs.len(),
                warnings.len()
            );
            let mut err = io::stderr().lock();
            for warning in &warnings {
                let at = match airlock_policy::locate_key(&text, &warning.key) {
                    Some((line, column)) => format!("{}:{line}:{column}", file.display()),
                    None => file.display().to_string(),
                };
                let _ = writeln!(err, "{at}: warning: {warning}");
            }
            if deny_warnings && !warnings.is_empty() {
                let _ = writeln!(
                    err,
                    "{}: {} warnings and --deny-warnings: failing",
                    file.display(),
                    warnings.len()
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            let _ = writeln!(io::stderr().lock(), "{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `airlock policy explain --config FILE`: the same decision airlockd's
/// `ExplainTask` makes, from the file.
fn explain_file(file: &std::path::Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let policy = match airlock_policy::Policy::parse(&text, &file.display().to_string()) {
        Ok(policy) => policy,
        Err(errors) => {
            let _ = writeln!(io::stderr().lock(), "{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let digest = airlock_executor::pin::sha256_hex(text.as_bytes())?;
    let request = build_request(args, Vec::new())?;
    match airlock_executor::admit::explain(&policy, &digest, &request) {
        Ok(explained) => Ok(print_explained(&explained)),
        // The same status RunTask would answer with.
        Err(err) => Err(Status::from(err).into()),
    }
}

/// Prints an explanation; exit 0 when allowed, 77 (as a denied `run`) when
/// denied.
fn print_explained(e: &ExplainTaskResponse) -> ExitCode {
    println!("{}", e.text);
    if e.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(77)
    }
}

/// What this host says about the policy's programs: whether each exists,
/// and the digest of each pinned one.
fn host_facts(policy: &airlock_policy::Policy) -> airlock_policy::HostFacts {
    let mut facts = airlock_policy::HostFacts::default();
    for path in policy.host_paths() {
        facts.exists.insert(path.clone(), path.exists());
    }
    for rule in &policy.programs {
        use std::os::unix::fs::PermissionsExt;
        // Tasks run as uids of the pool, which neither own the file nor
        // have its group: only the bits for others count.
        let executable = std::fs::metadata(&rule.path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o001 != 0);
        if executable.is_ok_and(|x| !x) {
            facts.not_executable.insert(rule.path.clone());
        }
    }
    for rule in policy.programs.iter().filter(|r| r.sha256.is_some()) {
        if let Ok(digest) =
            std::fs::File::open(&rule.path).and_then(airlock_executor::pin::sha256_hex)
        {
            facts.sha256.insert(rule.path.clone(), digest);
        }
    }
    facts
}

// ------------------------------------------------------------------------ run

/// `airlock run`: `request` is `args` as `build_request` made it, without
/// stdin, which is read here.
async fn run(
    mut airlock: AirlockClient<Channel>,
    args: RunArgs,
    mut request: RunTaskRequest,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    if !args.no_stdin && !io::stdin().is_terminal() {
        request.stdin = tokio::task::spawn_blocking(|| read_bounded(io::stdin().lock(), MAX_STDIN))
            .await
            .context("reading stdin")??;
    }

    let mut task = RunState {
        id: args.id.clone(),
        started: false,
        cancel_requested: false,
        interrupts: 0,
        stdout_open: true,
        stderr_open: true,
        verbose,
        canceller: airlock.clone(),
    };
    // Installed before the call, so that Ctrl-C while airlockd admits the
    // task (which may include an STS round trip) cancels it as soon as it
    // starts, instead of killing us and leaving it to start unattended.
    let mut interrupts = Interrupts::new()?;

    let call = airlock.run_task(request);
    tokio::pin!(call);
    let mut events = loop {
        tokio::select! {
            response = &mut call => break response?.into_inner(),
            sig = interrupts.recv() => {
                if let Some(code) = task.on_interrupt(sig) {
                    return Ok(code);
                }
            }
        }
    };

    loop {
        tokio::select! {
            message = events.message() => {
                let event = match message? {
                    Some(event) => event.event,
                    None => bail!(
                        "airlockd closed the stream before {} exited",
                        task.name()
                    ),
                };
                match event {
                    Some(task_event::Event::Started(started)) => task.on_started(&started),
                    Some(task_event::Event::Output(chunk)) => {
                        let stream = chunk.stream();
                        task.on_output(stream, &chunk.data);
                    }
                    Some(task_event::Event::Exited(exited)) => {
                        return Ok(ExitCode::from(task.on_exited(&exited)));
                    }
                    // An event kind newer than this client: nothing to show.
                    None => {}
                }
            }
            sig = interrupts.recv() => {
                if let Some(code) = task.on_interrupt(sig) {
                    return Ok(code);
                }
            }
        }
    }
}

/// What `run` knows about its task while the events stream in.
struct RunState {
    /// From `started`, or `--id` until then.
    id: Option<String>,
    started: bool,
    /// A cancel is wanted; sent once `started` names the task.
    cancel_requested: bool,
    interrupts: u32,
    stdout_open: bool,
    stderr_open: bool,
    verbose: bool,
    canceller: AirlockClient<Channel>,
}

impl RunState {
    fn name(&self) -> String {
        match &self.id {
            Some(id) => format!("task {id}"),
            None => String::from("the task"),
        }
    }

    fn on_started(&mut self, started: &Started) {
        self.id = Some(started.task_id.clone());
        self.started = true;
        if self.verbose {
            note!(
                "task {} started as uid {} (layers: {}, landlock ABI {})",
                started.task_id,
                started.uid,
                started.layers.join(", "),
                started.landlock_abi
            );
            if !started.role_arn.is_empty() {
                note!(
                    "AWS credentials: role {} as session {} (source identity {})",
                    started.assumed_role_arn,
                    started.session_name,
                    started.source_identity
                );
            }
        }
        if self.cancel_requested {
            self.send_cancel();
        }
    }

    fn on_output(&mut self, stream: Stream, data: &[u8]) {
        let (result, name) = match stream {
            Stream::Stderr if self.stderr_open => {
                (write_flush(&mut io::stderr().lock(), data), "stderr")
            }
            Stream::Stderr => return,
            _ if self.stdout_open => (write_flush(&mut io::stdout().lock(), data), "stdout"),
            _ => return,
        };
        if let Err(err) = result {
            // Nobody reads the output any more (`airlock run ... | head`):
            // stop the task rather than let it run to its output limit.
            if name == "stderr" {
                self.stderr_open = false;
            } else {
                self.stdout_open = false;
                note!(
                    "cannot write the task's {name} ({err}); cancelling {}",
                    self.name()
                );
            }
            self.request_cancel();
        }
    }

    fn on_exited(&self, exited: &Exited) -> u8 {
        let reason = exited.reason();
        if let Some(what) = reason_text(reason) {
            let task = self.name();
            if exited.message.is_empty() {
                note!("{task} {what}");
            } else {
                note!("{task} {what}: {}", one_line(&exited.message));
            }
        } else if self.verbose {
            note!("{} {}", self.name(), exit_summary(exited));
        }
        exit_status(exited)
    }

    /// Handles SIGINT/SIGTERM: the first cancels the task and keeps waiting
    /// for its end; the second stops waiting.
    fn on_interrupt(&mut self, signo: i32) -> Option<ExitCode> {
        self.interrupts += 1;
        if self.interrupts > 1 {
            note!("interrupted again; not waiting for {} to end", self.name());
            return Some(ExitCode::from(signal_status(signo)));
        }
        if self.started {
            note!(
                "cancelling {} (interrupt again to stop waiting)",
                self.name()
            );
        } else {
            note!("cancelling the task as soon as it starts (interrupt again to stop waiting)");
        }
        self.request_cancel();
        None
    }

    /// Cancels the task once `started` has named it ours. Not before: with
    /// `--id X`, a live task X of someone else's may exist, and this
    /// request would only be refused as a duplicate, while a cancel of X
    /// sent meanwhile would end theirs.
    fn request_cancel(&mut self) {
        let first = !std::mem::replace(&mut self.cancel_requested, true);
        if first && self.started {
            self.send_cancel();
        }
    }

    /// Sends CancelTask in the background, so the event stream keeps being
    /// read; the `exited` event that follows ends `run`.
    fn send_cancel(&self) {
        let Some(task_id) = self.id.clone() else {
            return;
        };
        let mut client = self.canceller.clone();
        tokio::spawn(async move {
            let request = CancelTaskRequest {
                task_id: task_id.clone(),
            };
            match client.cancel_task(request).await {
                Ok(_) => {}
                // Already ended: the `exited` event still comes.
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => note!("cannot cancel task {task_id}: {}", status_text(&status)),
            }
        });
    }
}

fn write_flush(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    out.write_all(data)?;
    out.flush()
}

/// SIGINT and SIGTERM, as one stream.
struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> i32 {
        tokio::select! {
            Some(()) = self.int.recv() => libc::SIGINT,
            Some(()) = self.term.recv() => libc::SIGTERM,
            else => std::future::pending().await,
        }
    }
}

/// Reads all of `input`, refusing more than `limit` bytes.
fn read_bounded(input: impl Read, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    input
        .take(cap)
        .read_to_end(&mut buf)
        .context("cannot read stdin")?;
    if buf.len() > limit {
        bail!(
            "stdin is larger than the limit of {} ({limit} bytes); nothing was run \
             (pass -n to run without stdin)",
            fmt_size(u64::try_from(limit).unwrap_or(u64::MAX))
        );
    }
    Ok(buf)
}

fn build_request(args: &RunArgs, stdin: Vec<u8>) -> anyhow::Result<RunTaskRequest> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("no program given");
    };
    let mut env = HashMap::new();
    for (key, value) in &args.env {
        if env.insert(key.clone(), value.clone()).is_some() {
            // Malformed, as the daemon's INVALID_ARGUMENT: exit 2.
            let why = format!("--env {key} is given more than once");
            return Err(Status::invalid_argument(why).into());
        }
    }
    let timeout_ms = match args.timeout {
        Some(t) => u64::try_from(t.as_millis()).context("--timeout is too long")?,
        None => 0,
    };
    let limits = Limits {
        memory_bytes: args.memory,
        processes: args.processes,
        open_files: args.open_files,
        file_size_bytes: args.file_size,
        cpu_seconds: args.cpu_seconds,
        output_bytes: args.output,
        scratch_bytes: args.scratch,
    };
    let any_limit = limits != Limits::default();
    let saml_assertion = match &args.saml_assertion_file {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("read --saml-assertion-file {}", path.display()))?;
            // The file may end in a newline; base64 has no whitespace.
            text.trim_ascii().to_vec()
        }
        None => Vec::new(),
    };
    Ok(RunTaskRequest {
        task_id: args.id.clone().unwrap_or_default(),
        user: args.user.clone(),
        groups: args.groups.clone(),
        program: program.clone(),
        args: rest.to_vec(),
        env,
        stdin,
        timeout_ms,
        limits: any_limit.then_some(limits),
        role_arn: args.role.clone().unwrap_or_default(),
        saml_assertion,
    })
}

// ----------------------------------------------------------- exit statuses

/// What to say on stderr for an ending that was not the program's own.
fn reason_text(reason: ExitReason) -> Option<&'static str> {
    match reason {
        ExitReason::Timeout => Some("timed out"),
        ExitReason::Cancelled => Some("was cancelled"),
        ExitReason::Limit => Some("hit a resource limit"),
        ExitReason::SpawnFailed => Some("failed to start"),
        ExitReason::Completed | ExitReason::Unspecified => None,
    }
}

/// Our exit status for a task's end; see [`EXIT_CODES`].
fn exit_status(exited: &Exited) -> u8 {
    let by_signal = exited.signal.map(signal_status);
    match exited.reason() {
        ExitReason::Completed | ExitReason::Unspecified => exited
            .exit_code
            // An exit status outside 0..=255 cannot come from Linux; never
            // let it turn into success.
            .map(|code| u8::try_from(code).unwrap_or(1))
            .or(by_signal)
            .unwrap_or(1),
        ExitReason::Timeout => 124,
        // Both kill with a signal (SIGKILL, SIGXCPU): the reason is what
        // a script needs to tell them from a task that died of it.
        ExitReason::Cancelled => 125,
        ExitReason::Limit => 126,
        ExitReason::SpawnFailed => 127,
    }
}

/// 128+N, the shell's convention for death by signal N.
fn signal_status(signo: i32) -> u8 {
    u8::try_from(signo)
        .ok()
        .filter(|s| (1..128).contains(s))
        .map_or(255, |s| 128 + s)
}

/// "exited with code 3", "killed by signal 9", ...
fn exit_summary(exited: &Exited) -> String {
    match (exited.exit_code, exited.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => String::from("ended"),
    }
}

// ------------------------------------------------------------- ps and get

fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Unspecified => "unknown",
        TaskState::Starting => "starting",
        TaskState::Running => "running",
        TaskState::Exited => "exited",
    }
}

/// The EXIT column: the code, the signal, or why the task was ended.
fn exit_column(exited: Option<&Exited>) -> String {
    let Some(e) = exited else {
        return String::from("-");
    };
    match e.reason() {
        ExitReason::Timeout => String::from("timeout"),
        ExitReason::Cancelled => String::from("cancelled"),
        ExitReason::Limit => String::from("limit"),
        ExitReason::SpawnFailed => String::from("spawn-failed"),
        ExitReason::Completed | ExitReason::Unspecified => match (e.exit_code, e.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(sig)) => format!("sig {sig}"),
            (None, None) => String::from("?"),
        },
    }
}

fn ps_table(mut tasks: Vec<TaskInfo>, now_ms: u64) -> String {
    tasks.sort_by(|a, b| (a.started_at_ms, &a.task_id).cmp(&(b.started_at_ms, &b.task_id)));
    let header = ["ID", "USER", "UID", "STATE", "PROGRAM", "AGE", "EXIT"].map(String::from);
    let mut rows = vec![header];
    for t in &tasks {
        rows.push([
            one_line(&t.task_id),
            one_line(&t.user),
            if t.uid == 0 {
                String::from("-")
            } else {
                t.uid.to_string()
            },
            state_name(t.state()).to_owned(),
            one_line(&t.program),
            if t.started_at_ms == 0 {
                String::from("-")
            } else {
                fmt_age(now_ms.saturating_sub(t.started_at_ms))
            },
            exit_column(t.exited.as_ref()),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn task_details(t: &TaskInfo, now_ms: u64) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "{key}: {value}");
    };
    line("id", &one_line(&t.task_id));
    line("user", &one_line(&t.user));
    line("groups", &one_line(&t.groups.join(",")));
    line("program", &one_line(&t.program));
    line(
        "args",
        &serde_json::to_string(&t.args).unwrap_or_else(|_| String::from("?")),
    );
    if t.abridged {
        line("abridged", "groups or args cut to 1 KiB and 4 KiB");
    }
    line(
        "uid",
        &if t.uid == 0 {
            String::from("-")
        } else {
            t.uid.to_string()
        },
    );
    line("state", state_name(t.state()));
    if t.started_at_ms != 0 {
        let ago = fmt_age(now_ms.saturating_sub(t.started_at_ms));
        line(
            "started",
            &format!("{} ({ago} ago)", fmt_utc(t.started_at_ms)),
        );
    }
    if t.ended_at_ms != 0 {
        let took = fmt_age(t.ended_at_ms.saturating_sub(t.started_at_ms));
        line(
            "ended",
            &format!("{} (after {took})", fmt_utc(t.ended_at_ms)),
        );
    }
    if let Some(e) = &t.exited {
        line("exit", &exit_column(Some(e)));
        let reason = e.reason().as_str_name();
        let reason = reason.strip_prefix("EXIT_REASON_").unwrap_or(reason);
        line("reason", &reason.to_ascii_lowercase().replace('_', "-"));
        if !e.message.is_empty() {
            line("message", &one_line(&e.message));
        }
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// "850ms", "42s", "7m", "3h", "2d".
fn fmt_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=99 => format!("{s}s"),
        100..=5999 => format!("{}m", s / 60),
        6000..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Unix milliseconds as "2024-05-01T12:34:56.789Z".
fn fmt_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's
/// `civil_from_days` (proleptic Gregorian, non-negative days only).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Makes a daemon-supplied string safe for one line of a terminal: control
/// characters are escaped.
fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

// ------------------------------------------------------ argument parsing

/// Parses "500ms", "30s", "10m", "1h" or plain seconds ("30").
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(s).ok_or_else(|| {
        format!("{s:?} is not a duration: write e.g. 500ms, 30s, 10m, 1h or plain seconds")
    })?;
    let scale_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?} in {s:?}: use ms, s, m or h"
            ))
        }
    };
    if number == 0 {
        return Err(String::from("a duration must be more than 0"));
    }
    let ms = number
        .checked_mul(scale_ms)
        .ok_or_else(|| format!("{s:?} is too long"))?;
    Ok(Duration::from_millis(ms))
}

/// Parses a size: integer bytes, or with a binary unit B, K/KiB, M/MiB,
/// G/GiB, T/TiB ("512MiB", "2G").
fn parse_size(s: &str) -> Result<u64, String> {
    let (number, unit) = split_number(s)
        .ok_or_else(|| format!("{s:?} is not a size: write bytes or e.g. 512MiB"))?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {s:?}: use B, K/KiB, M/MiB, G/GiB or T/TiB \
                 (all binary)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// "512MiB" → (512, "MiB"); one space is allowed between them.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let number = s[..end].parse().ok()?;
    Some((number, s[end..].trim_start()))
}

/// Renders a byte count with the largest binary unit that divides it.
fn fmt_size(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        // `scale` is a power of two: the mask tests divisibility.
        if bytes >= scale && bytes & (scale - 1) == 0 {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes} bytes")
}

/// Parses `--env K=V`.
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn exited(reason: ExitReason, code: Option<i32>, signal: Option<i32>) -> Exited {
        Exited {
            reason: reason as i32,
            exit_code: code,
            signal,
            message: String::new(),
        }
    }

    #[test]
    fn durations_parse_with_units_and_plain_seconds() {
        for (input, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("30", 30_000),
            (" 2 s", 2_000),
        ] {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(ms)),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_durations_are_refused() {
        for input in [
            "",
            "s",
            "1.5s",
            "10d",
            "-1s",
            "0",
            "0ms",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(input).is_err(), "{input}");
        }
        assert!(parse_duration("10d").unwrap_err().contains("ms, s, m or h"));
    }

    #[test]
    fn sizes_parse_as_binary_units() {
        for (input, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("512B", 512),
            ("1K", 1024),
            ("1KiB", 1024),
            ("512MiB", 512 << 20),
            ("512M", 512 << 20),
            ("2GiB", 2 << 30),
            ("2G", 2 << 30),
            ("1 TiB", 1 << 40),
        ] {
            assert_eq!(parse_size(input), Ok(bytes), "{input}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for input in ["", "MiB", "1.5G", "10MB", "1kib", "-1", "99999999999G"] {
            assert!(parse_size(input).is_err(), "{input}");
        }
    }

    #[test]
    fn env_pairs_split_on_the_first_equals() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("A").is_err());
    }

    #[test]
    fn completed_task_passes_its_code_or_signal_through() {
        assert_eq!(
            exit_status(&exited(ExitReason::Completed, Some(0), None)),
            0
        );
        assert_eq!(
            exit_status(&exited(ExitReason::Completed, Some(3), None)),
            3
        );
        assert_eq!(
            exit_status(&exited(ExitReason::Completed, None, Some(9))),
            137
        );
        assert_eq!(
            exit_status(&exited(ExitReason::Completed, None, Some(11))),
            139
        );
    }

    #[test]
    fn completed_task_never_maps_nonsense_to_success() {
        assert_eq!(
            exit_status(&exited(ExitReason::Completed, Some(256), None)),
            1
        );
        assert_eq!(
            exit_status(&exited(ExitReason::Completed, Some(-1), None)),
            1
        );
        assert_eq!(exit_status(&exited(ExitReason::Completed, None, None)), 1);
        assert_eq!(exit_status(&exited(ExitReason::Unspecified, None, None)), 1);
    }

    #[test]
    fn endings_imposed_on_the_task_have_fixed_codes() {
        assert_eq!(
            exit_status(&exited(ExitReason::Timeout, None, Some(9))),
            124
        );
        assert_eq!(exit_status(&exited(ExitReason::Cancelled, None, None)), 125);
        assert_eq!(
            exit_status(&exited(ExitReason::Cancelled, None, Some(9))),
            125
        );
        assert_eq!(exit_status(&exited(ExitReason::Limit, None, None)), 126);
        assert_eq!(exit_status(&exited(ExitReason::Limit, None, Some(24))), 126);
        assert_eq!(
            exit_status(&exited(ExitReason::SpawnFailed, None, None)),
            127
        );
    }

    #[test]
    fn signal_status_is_128_plus_n_and_saturates() {
        assert_eq!(signal_status(libc::SIGINT), 130);
        assert_eq!(signal_status(libc::SIGTERM), 143);
        assert_eq!(signal_status(0), 255);
        assert_eq!(signal_status(200), 255);
    }

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        assert_eq!(status_exit(Code::PermissionDenied), ("denied", 77));
        assert_eq!(status_exit(Code::InvalidArgument), ("invalid request", 2));
        assert_eq!(status_exit(Code::NotFound), ("not found", 1));
        assert_eq!(status_exit(Code::Unavailable), ("unavailable", 1));
    }

    #[test]
    fn stdin_over_the_limit_is_refused_and_names_the_limit() {
        assert_eq!(read_bounded(&b"abc"[..], 3).unwrap(), b"abc");
        let err = read_bounded(&b"abcd"[..], 3).unwrap_err().to_string();
        assert!(err.contains("3 bytes"), "{err}");
        let err = read_bounded(&vec![0u8; (1 << 20) + 1][..], 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1MiB"), "{err}");
    }

    #[test]
    fn request_carries_program_args_and_only_given_limits() {
        let cli = Cli::try_parse_from([
            "airlock",
            "run",
            "--user",
            "alice",
            "--group",
            "ml",
            "--timeout",
            "2m",
            "--env",
            "A=1",
            "--memory",
            "1G",
            "--",
            "/usr/bin/python3",
            "-c",
            "print(1)",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        let req = build_request(&args, b"in".to_vec()).unwrap();
        assert_eq!(req.program, "/usr/bin/python3");
        assert_eq!(req.args, ["-c", "print(1)"]);
        assert_eq!(req.groups, ["ml"]);
        assert_eq!(req.timeout_ms, 120_000);
        assert_eq!(req.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(req.stdin, b"in");
        let limits = req.limits.unwrap();
        assert_eq!(limits.memory_bytes, Some(1 << 30));
        assert_eq!(limits.processes, None);
    }

    #[test]
    fn request_without_limits_leaves_them_to_the_policy() {
        let cli =
            Cli::try_parse_from(["airlock", "run", "--user", "u", "/bin/true", "--flag"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        let req = build_request(&args, Vec::new()).unwrap();
        assert_eq!(req.args, ["--flag"]);
        assert!(req.limits.is_none());
        assert_eq!(req.timeout_ms, 0);
    }

    #[test]
    fn role_and_saml_assertion_file_go_into_the_request() {
        let dir = tempfile_dir();
        let file = dir.join("assertion.b64");
        std::fs::write(&file, "PHNhbWw+\n").unwrap();
        let cli = Cli::try_parse_from([
            "airlock",
            "run",
            "--user",
            "u",
            "--role",
            "arn:aws:iam::123456789012:role/r",
            "--saml-assertion-file",
            file.to_str().unwrap(),
            "/bin/true",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        let req = build_request(&args, Vec::new()).unwrap();
        assert_eq!(req.role_arn, "arn:aws:iam::123456789012:role/r");
        assert_eq!(req.saml_assertion, b"PHNhbWw+");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("airlock-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn duplicate_env_keys_are_refused_as_malformed() {
        let cli = Cli::try_parse_from([
            "airlock",
            "run",
            "--user",
            "u",
            "--env",
            "A=1",
            "--env",
            "A=2",
            "/bin/true",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        let err = build_request(&args, Vec::new()).unwrap_err();
        // Malformed: exit 2, as for the daemon's INVALID_ARGUMENT.
        assert_eq!(report(&err), ExitCode::from(2));
    }

    #[test]
    fn tls_flags_must_come_together() {
        assert!(Cli::try_parse_from(["airlock", "--tls-ca", "ca.pem", "ps"]).is_err());
        assert!(Cli::try_parse_from([
            "airlock",
            "--tls-ca",
            "a",
            "--tls-cert",
            "b",
            "--tls-key",
            "c",
            "ps"
        ])
        .is_ok());
    }

    #[test]
    fn utc_formatting_matches_known_instants() {
        assert_eq!(fmt_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt_utc(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
    }

    #[test]
    fn ages_use_the_largest_sensible_unit() {
        assert_eq!(fmt_age(850), "850ms");
        assert_eq!(fmt_age(42_000), "42s");
        assert_eq!(fmt_age(7 * 60_000), "7m");
        assert_eq!(fmt_age(3 * 3_600_000), "3h");
        assert_eq!(fmt_age(3 * 86_400_000), "3d");
    }

    #[test]
    fn ps_table_aligns_columns_and_summarizes_exits() {
        let task = |id: &str, started: u64, state: TaskState, exited: Option<Exited>| TaskInfo {
            task_id: id.into(),
            user: "alice".into(),
            program: "/usr/bin/python3".into(),
            uid: 70001,
            state: state as i32,
            started_at_ms: started,
            exited,
            ..TaskInfo::default()
        };
        let table = ps_table(
            vec![
                task(
                    "b-long-id",
                    2_000,
                    TaskState::Exited,
                    Some(exited(ExitReason::Timeout, None, Some(9))),
                ),
                task("a", 1_000, TaskState::Running, None),
            ],
            61_000,
        );
        let expected = "\
ID         USER   UID    STATE    PROGRAM           AGE  EXIT
a          alice  70001  running  /usr/bin/python3  60s  -
b-long-id  alice  70001  exited   /usr/bin/python3  59s  timeout
";
        assert_eq!(table, expected);
    }

    #[test]
    fn daemon_strings_cannot_break_lines() {
        assert_eq!(one_line("a\nb\x1b[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn task_details_are_key_value_lines() {
        let info = TaskInfo {
            task_id: "t1".into(),
            user: "alice".into(),
            groups: vec!["ml".into(), "eng".into()],
            program: "/bin/echo".into(),
            args: vec!["hi there".into()],
            uid: 70001,
            state: TaskState::Exited as i32,
            started_at_ms: 1_000,
            ended_at_ms: 3_000,
            exited: Some(Exited {
                reason: ExitReason::Completed as i32,
                exit_code: Some(0),
                signal: None,
                message: String::new(),
            }),
            abridged: false,
        };
        let text = task_details(&info, 10_000);
        let expected = "\
id: t1
user: alice
groups: ml,eng
program: /bin/echo
args: [\"hi there\"]
uid: 70001
state: exited
started: 1970-01-01T00:00:01.000Z (9s ago)
ended: 1970-01-01T00:00:03.000Z (after 2s)
exit: 0
reason: completed
";
        assert_eq!(text, expected);
    }
}
