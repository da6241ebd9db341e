//! Starts airlockd with a test policy and runs tasks through it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use airlock_executor::client::{connect, Endpoint};
use airlock_protocol::v1::airlock_client::AirlockClient;
use airlock_protocol::v1::{
    task_event, ExitReason, Exited, Limits, ListTasksRequest, ListTasksResponse, RunTaskRequest,
    Started, Stream, TaskEvent,
};
use tonic::transport::Channel;

/// Each daemon gets its own uid range: airlockd kills every process of its
/// pool at start-up, so daemons of parallel tests must not share uids.
static NEXT_POOL: AtomicU32 = AtomicU32::new(0);

/// The directory of the workspace binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIRLOCK_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// True when the sandbox tests can run here; prints why not otherwise, and
/// panics instead when REQUIRE_PRIVILEGED=1.
pub fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let why =
        "skipped: airlockd needs root to build the sandbox (run as root, e.g. `sudo scripts/test`)";
    if std::env::var("REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{why}; REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    eprintln!("{why}");
    false
}

/// Policy knobs the tests vary.
#[derive(Clone)]
pub struct Opts {
    pub network: &'static str,
    pub connect_tcp: Vec<u16>,
    /// `[network] udp = true` (host mode only).
    pub udp: bool,
    pub limits: &'static str,
    pub extra_programs: &'static str,
    pub tcp_listen: bool,
    /// Appended to the policy (e.g. `[credentials]` and entitlements).
    pub extra_policy: String,
    /// Added to `[sandbox] read_only`.
    pub extra_read_only: Vec<String>,
    /// Extra environment of airlockd itself (e.g. its AWS identity).
    pub env: Vec<(String, String)>,
    /// A dir with ca.pem, server.pem, server.key: the tcp listener uses mTLS.
    pub tls_dir: Option<PathBuf>,
    /// airlockd starts in a uts namespace of its own with this hostname and
    /// NIS domain name, as on a worker that has both set.
    pub worker_names: Option<(&'static str, &'static str)>,
    /// airlockd starts chrooted into `jail` in its dir: a recursive bind of
    /// the host's root in a private mount namespace, so that every path
    /// is the same inside.
    pub chroot: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            network: "host",
            connect_tcp: vec![],
            udp: false,
            limits: "memory = \"512MiB\"\nprocesses = 32\nwall_time = \"60s\"\noutput = \"1MiB\"\ntmp = \"16MiB\"\n",
            extra_programs: "",
            tcp_listen: false,
            extra_policy: String::new(),
            extra_read_only: vec![],
            env: vec![],
            tls_dir: None,
            worker_names: None,
            chroot: false,
        }
    }
}

/// A running airlockd and its files.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub scratch_root: PathBuf,
    pub audit_log: PathBuf,
    pub uid_first: u32,
    pub tcp_port: Option<u16>,
    pub config: PathBuf,
    /// airlockd's extra environment, kept for `restart`.
    pub env: Vec<(String, String)>,
}

pub const UID_COUNT: u32 = 50;

/// The worker as tasks on the network see it (`airlock_executor::netns::host::GATEWAY`).
pub const WORKER_ADDR: std::net::Ipv4Addr = airlock_executor::netns::host::GATEWAY;

/// A temporary dir that tasks can reach: under /var/tmp, not /tmp (tasks
/// get a private /tmp, which would hide it), and 0755 so task uids can
/// traverse it.
pub fn shared_tempdir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

impl Daemon {
    pub fn start(opts: Opts) -> Daemon {
        let dir = shared_tempdir("airlock-test-");
        let uid_first = 300_000
            + NEXT_POOL.fetch_add(1, Ordering::SeqCst) * 1000
            + (std::process::id() % 100) * 100_000;
        let scratch_root = dir.path().join("tasks");
        let audit_log = dir.path().join("audit.jsonl");
        let socket = dir.path().join("airlockd.sock");
        let ports = opts
            .connect_tcp
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let connect = if opts.network == "host" {
            format!("connect_tcp = [{ports}]\nudp = {}\n", opts.udp)
        } else {
            String::new()
        };
        let policy = format!(
            r#"cluster = "test"
mode = "shared"

[sandbox]
uid_first = {uid_first}
uid_count = {UID_COUNT}
scratch_root = "{scratch}"
audit_log = "{audit}"
read_only = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/lib/x86_64-linux-gnu", "/usr/lib/ssl", "/etc"{read_only}]

[network]
mode = "{network}"
{connect}
[limits]
{limits}
[[program]]
path = "/usr/bin/python3"
{extra}
{extra_policy}
"#,
            scratch = scratch_root.display(),
            audit = audit_log.display(),
            network = opts.network,
            limits = opts.limits,
            extra = opts.extra_programs,
            extra_policy = opts.extra_policy,
            read_only = opts
                .extra_read_only
                .iter()
                .map(|p| format!(", {p:?}"))
                .collect::<String>(),
        );
        let config = dir.path().join("policy.toml");
        std::fs::write(&config, policy).unwrap();
        let tcp_port = opts.tcp_listen.then(free_port);
        let mut cmd = Command::new(bin_dir().join("airlockd"));
        cmd.envs(opts.env.iter().cloned());
        cmd.arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()));
        if let Some(port) = tcp_port {
            cmd.arg("--listen").arg(format!("tcp:127.0.0.1:{port}"));
            match &opts.tls_dir {
                Some(tls) => {
                    cmd.arg("--tls-cert").arg(tls.join("server.pem"));
                    cmd.arg("--tls-key").arg(tls.join("server.key"));
                    cmd.arg("--tls-client-ca").arg(tls.join("ca.pem"));
                }
                None => {
                    cmd.arg("--insecure-loopback");
                }
            }
        }
        let log = std::fs::File::create(dir.path().join("airlockd.log")).unwrap();
        // Started as `nohup` would start it, with a signal ignored: no task
        // may inherit that (see `isolation`).
        ignore_sigusr2_in(&mut cmd);
        if let Some(names) = opts.worker_names {
            name_worker_in(&mut cmd, names);
        }
        if opts.chroot {
            let jail = dir.path().join("jail");
            std::fs::create_dir(&jail).unwrap();
            chroot_in(&mut cmd, &jail);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Daemon {
            child: Some(child),
            dir,
            socket,
            scratch_root,
            audit_log,
            uid_first,
            tcp_port,
            config,
            env: opts.env.clone(),
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        // Each listener comes up on its own: wait for all of them.
        let tcp_up = || {
            self.tcp_port
                .is_none_or(|port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        };
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() && tcp_up() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("airlockd did not start; its log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("airlockd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// airlockd's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Kills airlockd with SIGKILL (a crash) and returns without cleanup.
    pub fn crash(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts airlockd again on the same files (after `crash`).
    pub fn restart(&mut self) {
        // The crashed daemon's socket file is still there: remove it first,
        // so that waiting for the socket waits for the new daemon.
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("airlockd.log"))
            .unwrap();
        let mut cmd = Command::new(bin_dir().join("airlockd"));
        ignore_sigusr2_in(&mut cmd);
        let child = cmd
            .envs(self.env.iter().cloned())
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("unix:{}", self.socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    pub async fn client(&self) -> AirlockClient<Channel> {
        let channel = connect(&Endpoint::Unix(self.socket.clone()), None)
            .await
            .unwrap();
        AirlockClient::new(channel)
    }

    /// One page of `ListTasks`.
    pub async fn list_tasks(&self, page_size: u32, page_token: &str) -> ListTasksResponse {
        self.client()
            .await
            .list_tasks(ListTasksRequest {
                page_size,
                page_token: page_token.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Runs a task to the end and collects everything it streamed.
    pub async fn run(&self, req: RunTaskRequest) -> Outcome {
        let mut client = self.client().await;
        let mut stream = match client.run_task(req).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Outcome {
                    status: Some(status),
                    ..Default::default()
                }
            }
        };
        let mut out = Outcome::default();
        read_events(&mut stream, &mut out).await;
        out
    }

    /// Starts a task and reads its first event, `Started`; the rest is
    /// the caller's to read, or not.
    pub async fn start_unread(&self, req: RunTaskRequest) -> tonic::Streaming<TaskEvent> {
        let mut client = self.client().await;
        let mut stream = client.run_task(req).await.unwrap().into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert!(
            matches!(first.event, Some(task_event::Event::Started(_))),
            "{first:?}"
        );
        stream
    }

    /// Runs `python3 -c code` as `user`.
    pub async fn python(&self, user: &str, code: &str) -> Outcome {
        self.run(python(user, code)).await
    }

    /// `rel` in the scratch dir of the live task `id`, as root on the host
    /// reaches it: the scratch dir is a tmpfs inside the task's mount
    /// namespace, seen through a task process's `/proc/PID/root`. A path
    /// that does not exist when no process of the pool has it.
    pub fn in_task(&self, id: &str, rel: &str) -> PathBuf {
        let inside = self.scratch_root.join(id).join(rel);
        let inside = inside.strip_prefix("/").unwrap().to_path_buf();
        match self.task_pid(id) {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/root")).join(&inside),
            None => PathBuf::from("/nonexistent").join(&inside),
        }
    }

    /// A process of live task `id`: one whose root holds its scratch dir.
    fn task_pid(&self, id: &str) -> Option<i32> {
        let scratch = self.scratch_root.join(id);
        let scratch = scratch.strip_prefix("/").unwrap();
        self.pool_processes().into_iter().find(|pid| {
            PathBuf::from(format!("/proc/{pid}/root"))
                .join(scratch)
                .exists()
        })
    }

    /// The network namespace of live task `id`, held open (through one of
    /// its processes).
    pub fn task_netns(&self, id: &str) -> std::fs::File {
        let pid = self
            .task_pid(id)
            .unwrap_or_else(|| panic!("no process of task {id}"));
        std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap()
    }

    /// Task scratch dirs present (airlockd's own dot files excluded).
    pub fn scratch_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.scratch_root)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect()
    }

    /// Audit records, parsed.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Host pids of processes whose uid is in this daemon's pool.
    pub fn pool_processes(&self) -> Vec<i32> {
        let first = self.uid_first;
        processes_with_uid(|u| (first..first + UID_COUNT).contains(&u))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts airlockd on `config`, listening on the Unix socket `listen`,
/// which must refuse to start within 20 s (one that serves instead is
/// killed: a failure, not a hang). Returns what it printed.
pub async fn airlockd_refuses(config: &Path, listen: &Path) -> String {
    let mut daemon = Command::new(bin_dir().join("airlockd"))
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("unix:{}", listen.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = eventually(Duration::from_secs(20), || {
        daemon.try_wait().unwrap().is_some()
    })
    .await;
    if !ended {
        daemon.kill().unwrap();
    }
    let out = daemon.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(ended && !out.status.success(), "airlockd started: {err}");
    err
}

/// Resident memory of `pid`, in KiB (0 when it is gone).
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn python(user: &str, code: &str) -> RunTaskRequest {
    RunTaskRequest {
        user: user.into(),
        program: "/usr/bin/python3".into(),
        args: vec!["-c".into(), code.into()],
        ..Default::default()
    }
}

#[derive(Default, Debug)]
pub struct Outcome {
    pub status: Option<tonic::Status>,
    pub started: Option<Started>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exited: Option<Exited>,
}

impl Outcome {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn exited(&self) -> &Exited {
        self.exited
            .as_ref()
            .unwrap_or_else(|| panic!("task did not exit: {self:?}"))
    }

    pub fn reason(&self) -> ExitReason {
        ExitReason::try_from(self.exited().reason).unwrap()
    }

    /// The task completed with exit code 0; panics with its output otherwise.
    pub fn ok(&self) -> &Self {
        let e = self.exited();
        assert!(
            e.reason == ExitReason::Completed as i32 && e.exit_code == Some(0),
            "task failed: {e:?}\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// The last stdout line parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        self.ok();
        let text = self.stdout();
        let line = text
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no output; stderr: {}", self.stderr()));
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{e}: {line:?}; stderr: {}", self.stderr()))
    }
}

pub fn processes_with_uid(pred: impl Fn(u32) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .is_some_and(|ids| {
                        ids.split_whitespace()
                            .filter_map(|u| u.parse().ok())
                            .any(&pred)
                    })
            })
        })
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `f` is true or the timeout passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f()
}

/// Starts a task in the background and returns once it has started; the
/// handle yields its outcome.
pub async fn start_background(
    d: &Daemon,
    req: RunTaskRequest,
) -> (String, tokio::task::JoinHandle<Outcome>) {
    let mut client = d.client().await;
    let mut stream = client.run_task(req).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let started = match first.event.unwrap() {
        task_event::Event::Started(s) => s,
        other => panic!("expected started, got {other:?}"),
    };
    let id = started.task_id.clone();
    let handle = tokio::spawn(async move {
        let mut out = Outcome {
            started: Some(started),
            ..Default::default()
        };
        read_events(&mut stream, &mut out).await;
        out
    });
    (id, handle)
}

/// Reads a task's events into `out` until its stream ends.
pub async fn read_events(stream: &mut tonic::Streaming<TaskEvent>, out: &mut Outcome) {
    while let Some(ev) = stream.message().await.unwrap() {
        match ev.event.unwrap() {
            task_event::Event::Started(s) => out.started = Some(s),
            task_event::Event::Output(o) if o.stream == Stream::Stdout as i32 => {
                out.stdout.extend(o.data)
            }
            task_event::Event::Output(o) => out.stderr.extend(o.data),
            task_event::Event::Exited(e) => out.exited = Some(e),
        }
    }
}

/// A marker file written by the test, readable by everyone.
pub fn world_readable_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(content.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    path
}

pub fn limits(f: impl FnOnce(&mut Limits)) -> Option<Limits> {
    let mut l = Limits::default();
    f(&mut l);
    Some(l)
}

pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The virtualenv with moto, boto3 and the AWS CLI (`scripts/moto --install`).
pub fn venv() -> PathBuf {
    match std::env::var_os("AIRLOCK_VENV") {
        Some(v) => v.into(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join(".venv"),
    }
}

/// Starts moto_server on a free port and waits until it answers. A watchdog
/// kills it when this test process is gone (its parent changes), and moto
/// dies with the watchdog (PR_SET_PDEATHSIG, set in its child: the watchdog
/// is single-threaded), so no server outlives the tests.
pub fn spawn_moto() -> (u16, Child) {
    let port = free_port();
    let watchdog = "import ctypes, os, subprocess, sys, time\n\
        die = lambda: ctypes.CDLL(None).prctl(1, 9)\n\
        p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die)\n\
        parent = os.getppid()\n\
        while os.getppid() == parent and p.poll() is None: time.sleep(0.5)\n\
        p.kill()\n";
    let child = Command::new(venv().join("bin/python3"))
        .arg("-c")
        .arg(watchdog)
        .arg(venv().join("bin/moto_server"))
        // Tasks reach the worker at 10.213.0.1 (their loopback is their
        // own), so not only on loopback.
        .args(["-H", "0.0.0.0", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (port, child)
}

/// `cmd` starts in a new uts namespace with these host and NIS domain
/// names (the test's own stay the host's).
fn name_worker_in(cmd: &mut Command, (host, domain): (&'static str, &'static str)) {
    use std::os::unix::process::CommandExt;
    // SAFETY: unshare, sethostname and setdomainname are plain system calls
    // that allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUTS) != 0
                || libc::sethostname(host.as_ptr().cast(), host.len()) != 0
                || libc::setdomainname(domain.as_ptr().cast(), domain.len()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `cmd` chrooted into `jail`, a recursive bind of `/` in a mount
/// namespace of its own.
fn chroot_in(cmd: &mut Command, jail: &std::path::Path) {
    use std::os::unix::process::CommandExt;
    let jail = std::ffi::CString::new(jail.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain system calls on a string made before the fork; nothing
    // allocates.
    unsafe {
        cmd.pre_exec(move || {
            let none = std::ptr::null::<libc::c_char>();
            let root = c"/".as_ptr();
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    none,
                    root,
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    none.cast(),
                ) != 0
                || libc::mount(
                    root,
                    jail.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    none.cast(),
                ) != 0
                || libc::chroot(jail.as_ptr()) != 0
                || libc::chdir(root) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `cmd` with SIGUSR2 ignored; an ignored signal survives exec.
fn ignore_sigusr2_in(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: sigaction is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
            Ok(())
        });
    }
}
