//! The probes: each one is tenant code (a Python body for the allowlisted
//! interpreter) plus what the tool watches for. `docs/escape-suite.md`
//! documents every one (`airlock-escape --list-markdown` prints the table).

use std::fmt;

/// What a probe attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Another tenant's secrets, processes and sockets.
    OtherTenants,
    /// The host: system files, devices, kernel tunables, identity.
    Host,
    /// Running a program that is not on the allowlist.
    Exec,
    /// Kernel interfaces the sandbox should not expose.
    Kernel,
    /// The network: metadata service, other services, listening.
    Network,
    /// The supervisor's socket, process and API.
    Supervisor,
    /// Outliving the task or leaving something for the next tenant.
    Persistence,
    /// Exceeding the task's resource limits.
    Exhaustion,
    /// File descriptors and environment handed into the task.
    Leakage,
    /// The task's own identity and confinement state.
    Privileges,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 10] = [
        Category::OtherTenants,
        Category::Host,
        Category::Exec,
        Category::Kernel,
        Category::Network,
        Category::Supervisor,
        Category::Persistence,
        Category::Exhaustion,
        Category::Leakage,
        Category::Privileges,
    ];

    /// The category's short name.
    pub fn name(self) -> &'static str {
        match self {
            Category::OtherTenants => "other-tenants",
            Category::Host => "host",
            Category::Exec => "exec",
            Category::Kernel => "kernel",
            Category::Network => "network",
            Category::Supervisor => "supervisor",
            Category::Persistence => "persistence",
            Category::Exhaustion => "exhaustion",
            Category::Leakage => "leakage",
            Category::Privileges => "privileges",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the tool itself watches, besides the probe's own observations and
/// the secrets in its output (both always apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Nothing more.
    Nothing,
    /// The victim reports receiving this signal.
    VictimSignal(i32),
    /// A process carrying the probe's nonce is alive after the task ended.
    Survivor,
    /// The file `drop_dir/<nonce>` exists on the host after the task.
    HostFile,
    /// The tool's UDP listener received the nonce.
    UdpDatagram,
    /// More stdout than the output limit reached the client.
    OutputOver(u64),
    /// The first stage's scratch dir is still on the host after it ended.
    ScratchLeft,
    /// The tool's bait file is gone or changed after the task's purge.
    BaitIntact,
}

/// Limits a probe asks for in its request (sandbox only): the API's own
/// `Limits` message, unset fields taking the policy's.
pub type ProbeLimits = airlock_protocol::v1::Limits;

/// One probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `category.name`, unique.
    pub name: &'static str,
    /// What it attacks.
    pub category: Category,
    /// What it tries, for people.
    pub tries: &'static str,
    /// What counts as an escape, for people.
    pub escape_if: &'static str,
    /// The Python body; defines `probe()`.
    pub code: &'static str,
    /// What the tool watches besides the probe's observations.
    pub watch: Watch,
    /// Baseline runs it as root (the point is a privilege), not as nobody.
    pub baseline_root: bool,
    /// Limits asked for in the request.
    pub limits: ProbeLimits,
    /// Wall-clock limit in the request (ms).
    pub timeout_ms: u64,
    /// Runs twice: stage 1 as `attacker`, stage 2 as the next tenant.
    pub two_stage: bool,
    /// Gets the target program's bytes in its context.
    pub needs_target: bool,
    /// Asks for `--attacker-role` in its request, when given.
    pub attacker_role: bool,
}

const DEFAULT_TIMEOUT_MS: u64 = 20_000;

fn p(
    name: &'static str,
    category: Category,
    tries: &'static str,
    escape_if: &'static str,
    code: &'static str,
) -> Probe {
    Probe {
        name,
        category,
        tries,
        escape_if,
        code,
        watch: Watch::Nothing,
        baseline_root: false,
        limits: ProbeLimits::default(),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        two_stage: false,
        needs_target: false,
        attacker_role: false,
    }
}

impl Probe {
    fn root(mut self) -> Self {
        self.baseline_root = true;
        self
    }
    fn watch(mut self, w: Watch) -> Self {
        self.watch = w;
        self
    }
    fn limits(mut self, l: ProbeLimits) -> Self {
        self.limits = l;
        self
    }
    fn timeout(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }
    fn staged(mut self) -> Self {
        self.two_stage = true;
        self
    }
    fn target(mut self) -> Self {
        self.needs_target = true;
        self
    }
    fn attacker_role(mut self) -> Self {
        self.attacker_role = true;
        self
    }
}

/// Limits of the exhaustion probes (the request's, in the sandbox).
pub const FORK_LIMIT: u64 = 8;
/// RLIMIT_AS asked for by `exhaustion.memory`.
pub const MEMORY_LIMIT: u64 = 256 << 20;
/// Largest file for `exhaustion.disk`.
pub const FILE_LIMIT: u64 = 1 << 20;
/// Scratch dir size for `exhaustion.scratch-quota`: a quarter of what it writes.
pub const SCRATCH_LIMIT: u64 = 8 << 20;
/// Open files for `exhaustion.fds`.
pub const FD_LIMIT: u64 = 64;
/// Output bytes for `exhaustion.output`.
pub const OUTPUT_LIMIT: u64 = 64 << 10;
/// Wall-clock limit for `exhaustion.wall-time`.
pub const WALL_LIMIT_MS: u64 = 1_500;

use Category::*;

/// Every probe, in report order.
pub fn all() -> Vec<Probe> {
    let mut v = Vec::new();
    v.extend(other_tenants());
    v.extend(host());
    v.extend(exec());
    v.extend(kernel());
    v.extend(network());
    v.extend(supervisor());
    v.push(credentials_probe());
    v.extend(persistence());
    v.extend(exhaustion());
    v.extend(leakage());
    v.extend(privileges());
    v
}

fn other_tenants() -> Vec<Probe> {
    vec![
        p("other.proc-visible", OtherTenants,
          "looks for the victim's process in /proc by its host pid and by scanning every visible /proc/<pid>/cmdline",
          "the victim's process is visible (its cmdline names the victim)",
          r##"
def probe():
    pid = V.get("host_pid")
    c = read_file("cmdline of victim pid %s" % pid, "/proc/%s/cmdline" % pid)
    if c and b"airlock-escape-victim" in c:
        escaped("/proc/%s is the victim's process" % pid)
    seen = []
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            try:
                if b"airlock-escape-victim" in open("/proc/%s/cmdline" % p, "rb").read():
                    seen.append(p)
            except OSError:
                pass
    if seen:
        escaped("victim process visible in /proc: %s" % seen)
    note("visible pids: %s" % sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:20])
"##),
        p("other.proc-environ", OtherTenants,
          "reads /proc/<victim pid>/environ and the environ and cmdline of every process whose cmdline names the victim",
          "the victim's environment canary or argv canary appears in what was read",
          r##"
def probe():
    pids = set([str(V.get("host_pid"))])
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if b"airlock-escape-victim" in open("/proc/%s/cmdline" % p, "rb").read():
                    pids.add(p)
            except OSError:
                pass
    for p in pids:
        read_file("/proc/%s/environ" % p, "/proc/%s/environ" % p)
        read_file("/proc/%s/cmdline" % p, "/proc/%s/cmdline" % p)
"##),
        p("other.proc-mem", OtherTenants,
          "opens /proc/<victim pid>/mem and reads the address where the victim keeps its in-memory secret",
          "the memory canary is read",
          r##"
def probe():
    def go():
        with open("/proc/%d/mem" % V["host_pid"], "rb", buffering=0) as f:
            f.seek(V["mem_addr"])
            return f.read(V["mem_len"])
    d = attempt("/proc/pid/mem", go)
    if d is not None:
        saw("victim memory", d)
"##),
        p("other.process-vm-readv", OtherTenants,
          "process_vm_readv(2) of the victim's secret address",
          "the memory canary is read",
          r##"
def probe():
    n = V["mem_len"]
    buf = ctypes.create_string_buffer(n)
    local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), n)
    remote = (ctypes.c_void_p * 2)(V["mem_addr"], n)
    r = sc_try("process_vm_readv", "process_vm_readv", V["host_pid"], local, 1, remote, 1, 0)
    if r is not None and r > 0:
        saw("process_vm_readv", buf.raw[:r])
"##),
        p("other.ptrace", OtherTenants,
          "PTRACE_ATTACH to the victim, PTRACE_PEEKDATA its secret, detach",
          "the memory canary is read",
          r##"
def probe():
    pid = V["host_pid"]
    libc.ptrace.restype = ctypes.c_long
    if sc_try("PTRACE_ATTACH", "ptrace", 16, pid, 0, 0) is None:
        return
    try:
        os.waitpid(pid, 0x40000000)
        data = b""
        for off in range(0, V["mem_len"], 8):
            ctypes.set_errno(0)
            w = libc.ptrace(2, pid, ctypes.c_void_p(V["mem_addr"] + off), None)
            if ctypes.get_errno():
                note("PTRACE_PEEKDATA: errno %d" % ctypes.get_errno())
                break
            data += struct.pack("<q", w)
        saw("ptrace peek", data)
    finally:
        sc("ptrace", 17, pid, 0, 0)
"##),
        p("other.pidfd-getfd", OtherTenants,
          "pidfd_open(2) on the victim and pidfd_getfd(2) of its open token fd, then reads it",
          "the token canary is read through the stolen fd",
          r##"
def probe():
    pfd = sc_try("pidfd_open", "pidfd_open", V["host_pid"], 0)
    if pfd is None:
        return
    fd = sc_try("pidfd_getfd", "pidfd_getfd", pfd, V["token_fd"], 0)
    if fd is not None:
        saw("stolen fd", os.pread(fd, 4096, 0))
"##),
        p("other.proc-links", OtherTenants,
          "reads the victim's token through /proc/<pid>/cwd, /proc/<pid>/fd/<n> and /proc/<pid>/root",
          "the token canary is read",
          r##"
def probe():
    pid = V["host_pid"]
    read_file("via cwd", "/proc/%d/cwd/token" % pid)
    read_file("via fd", "/proc/%d/fd/%d" % (pid, V["token_fd"]))
    read_file("via root", "/proc/%d/root%s" % (pid, V["token"]))
"##),
        p("other.scratch-read", OtherTenants,
          "opens the victim's token and secret file in its scratch dir by their host paths",
          "the token or scratch-file canary is read",
          r##"
def probe():
    read_file("token", V["token"])
    read_file("scratch file", V["scratch_file"])
"##),
        p("other.scratch-list", OtherTenants,
          "lists the victim's scratch dir and the scratch root above it",
          "the secret file name (a canary) is listed",
          r##"
def probe():
    for d in (V["cwd"], os.path.dirname(V["cwd"])):
        names = attempt("listdir " + d, os.listdir, d)
        if names is not None:
            saw("listing of " + d, " ".join(names))
            for n in names:
                sub = os.path.join(d, n)
                if os.path.isdir(sub):
                    inner = attempt("listdir " + sub, os.listdir, sub)
                    if inner:
                        saw("listing of " + sub, " ".join(inner))
"##),
        p("other.tmp", OtherTenants,
          "reads the victim's file in /tmp by name and every airlock-escape file listed in /tmp",
          "the victim's /tmp canary is read",
          r##"
def probe():
    read_file("victim /tmp file", V.get("tmp_file", "/tmp/airlock-escape-victim-" + V.get("nonce", "")))
    for n in attempt("listdir /tmp", os.listdir, "/tmp") or []:
        if n.startswith("airlock-escape-victim"):
            read_file("/tmp/" + n, "/tmp/" + n)
"##),
        p("other.dev-shm", OtherTenants,
          "reads the victim's file in /dev/shm by name and every airlock-escape file listed there",
          "the victim's /dev/shm canary is read",
          r##"
def probe():
    read_file("victim /dev/shm file", V.get("shm_file", "/dev/shm/airlock-escape-victim-" + V.get("nonce", "")))
    for n in attempt("listdir /dev/shm", os.listdir, "/dev/shm") or []:
        if n.startswith("airlock-escape-victim"):
            read_file("/dev/shm/" + n, "/dev/shm/" + n)
"##),
        p("other.sysv-shm", OtherTenants,
          "shmget(2) the victim's System V shared memory key and shmat(2) it",
          "the System V canary is read",
          r##"
def probe():
    libc.shmat.restype = ctypes.c_void_p
    key = V.get("shm_key")
    if key is None:
        note("victim has no SysV segment: " + V.get("shm_error", "?"))
        return
    sid = libc.shmget(key, 0, 0)
    if sid < 0:
        note("shmget: %s" % errno.errorcode.get(ctypes.get_errno()))
        return
    addr = libc.shmat(sid, None, 0o10000)
    if addr in (None, ctypes.c_void_p(-1).value):
        note("shmat: %s" % errno.errorcode.get(ctypes.get_errno()))
        return
    saw("sysv shm", ctypes.string_at(addr, 64).split(b"\0")[0])
    libc.shmdt(ctypes.c_void_p(addr))
"##),
        p("other.abstract-socket", OtherTenants,
          "connects to the victim's abstract unix socket (the victim answers with a secret)",
          "the abstract-socket canary is received",
          r##"
def probe():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    if ok("connect @" + V["abstract"], s.connect, "\0" + V["abstract"]):
        saw("abstract socket reply", s.recv(256))
"##),
        p("other.tcp-service", OtherTenants,
          "connects to another tenant's TCP service on loopback: the victim's listener, or when the victim may not listen, the tool's stand-in on the worker, at 127.0.0.1 and at 10.213.0.1 (the worker as tasks on the network see it) (both answer with a secret)",
          "the service canary is received",
          r##"
def probe():
    for label, port, addrs in (("victim listener", V.get("tcp_port"), ["127.0.0.1"]),
                               ("stand-in service", CTX["tcp_service_port"], CTX["worker_addrs"])):
        if not port:
            continue
        for addr in addrs:
            s = socket.socket()
            s.settimeout(3)
            if ok("connect %s %s:%d" % (label, addr, port), s.connect, (addr, port)):
                s.sendall(CTX["nonce"].encode() + b"\n")
                saw(label + " reply", s.recv(256))
"##),
        p(
            "other.net-sockets",
            OtherTenants,
            "reads /proc/self/net/unix, tcp and tcp6 (the network namespace's socket tables) for the victim's sockets",
            "the victim's abstract socket or a TCP socket of the victim's uid is listed",
            r##"
def probe():
    name = "@" + V["abstract"]
    for table in ("unix", "tcp", "tcp6"):
        d = attempt("read /proc/self/net/" + table, lambda: open("/proc/self/net/" + table).read())
        if d is None:
            continue
        lines = d.splitlines()[1:]
        note("/proc/self/net/%s: %d sockets" % (table, len(lines)))
        for l in lines:
            f = l.split()
            if table == "unix" and f and f[-1] == name:
                escaped("the victim's abstract socket %s is listed in /proc/self/net/unix" % name)
            if table != "unix" and len(f) > 7 and V.get("uid") not in (None, os.getuid()) and f[7] == str(V["uid"]):
                escaped("a TCP socket of the victim's uid %s is listed in /proc/self/net/%s" % (f[7], table))
"##,
        ),
        p("other.signal-kill", OtherTenants,
          "kill(2) SIGUSR1 to the victim's pid",
          "the victim reports receiving SIGUSR1",
          r##"
def probe():
    if ok("kill SIGUSR1", os.kill, V["host_pid"], signal.SIGUSR1):
        note("kill(SIGUSR1) returned; waiting for the victim to see it")
"##).watch(Watch::VictimSignal(10)),
        p("other.signal-pidfd", OtherTenants,
          "pidfd_open(2) + pidfd_send_signal(2) SIGUSR2 to the victim",
          "the victim reports receiving SIGUSR2",
          r##"
def probe():
    pfd = sc_try("pidfd_open", "pidfd_open", V["host_pid"], 0)
    if pfd is not None and sc_try("pidfd_send_signal", "pidfd_send_signal", pfd, 12, 0, 0) is not None:
        note("pidfd_send_signal returned 0")
"##).watch(Watch::VictimSignal(12)),
        p("other.signal-broadcast", OtherTenants,
          "kill(-1, SIGURG): signal every process the task may signal (SIGURG is ignored by default, so nothing else is harmed)",
          "the victim reports receiving SIGURG",
          r##"
def probe():
    if ok("kill(-1, SIGURG)", os.kill, -1, signal.SIGURG):
        note("kill(-1, SIGURG) returned")
"##).watch(Watch::VictimSignal(23)),
    ]
}

fn host() -> Vec<Probe> {
    vec![
        p("host.read-world-readable", Host,
          "reads a 0644 file the tool placed in a 0755 dir outside the policy's paths (only Landlock stands in the way)",
          "the host-file canary is read",
          r##"
def probe():
    read_file("world-readable host file", CTX["host_world_file"])
"##),
        p("host.read-root-only", Host,
          "reads a 0600 root file the tool placed in a 0700 root dir",
          "the root-only canary is read",
          r##"
def probe():
    read_file("root-only host file", CTX["host_root_file"])
"##).root(),
        p("host.read-shadow", Host,
          "reads /etc/shadow",
          "a line starting with `root:` is read (the hash is never printed)",
          r##"
def probe():
    d = attempt("read /etc/shadow", lambda: open("/etc/shadow", "rb").read())
    if d is not None and any(l.startswith(b"root:") for l in d.splitlines()):
        escaped("read /etc/shadow (%d lines)" % len(d.splitlines()))
"##).root(),
        p("host.write-system-files", Host,
          "opens existing system files O_WRONLY without O_TRUNC/O_CREAT (nothing is written): /etc/passwd, /etc/hosts, /etc/ld.so.cache, the interpreter's os.py",
          "any open for writing succeeds",
          r##"
def probe():
    for path in ("/etc/passwd", "/etc/hosts", "/etc/ld.so.cache", os.__file__):
        if not os.path.exists(path):
            note("%s: absent" % path)
        elif attempt("open %s O_WRONLY" % path, wronly, path):
            escaped("opened %s for writing (nothing written)" % path)
"##).root(),
        p("host.create-in-world-writable", Host,
          "creates a file in a 0777 dir the tool made outside the policy's paths",
          "the tool finds the file on the host afterwards",
          r##"
def probe():
    path = os.path.join(CTX["drop_dir"], CTX["nonce"])
    def go():
        with open(path, "w") as f:
            f.write("planted")
    if ok("create " + path, go):
        note("created %s" % path)
"##).watch(Watch::HostFile),
        p("host.kmsg", Host,
          "reads one record of the kernel log from /dev/kmsg",
          "a kernel log record is read",
          r##"
def probe():
    def go():
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        try:
            return os.read(fd, 8192)
        finally:
            os.close(fd)
    d = attempt("read /dev/kmsg", go)
    if d:
        escaped("read a kernel log record (%d bytes)" % len(d))
"##).root(),
        p("host.block-device", Host,
          "reads the first 512 bytes of the host's root block device (and common disk names)",
          "512 bytes of a raw disk are read",
          r##"
def probe():
    devs = [CTX.get("root_block_device")] + ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda"]
    for i, dev in enumerate(devs):
        if not dev or dev in devs[:i] or not os.path.exists(dev):
            continue
        def go():
            with open(dev, "rb", buffering=0) as f:
                return f.read(512)
        d = attempt("read " + dev, go)
        if d is not None and len(d) == 512:
            escaped("read the first 512 bytes of %s" % dev)
            return
"##).root(),
        p("host.kernel-tunables-write", Host,
          "opens kernel tunables O_WRONLY without writing: /proc/sys/kernel/hostname, /proc/sys/vm/drop_caches, /proc/sysrq-trigger, /sys/kernel/mm/transparent_hugepage/enabled",
          "any of them opens for writing",
          r##"
def probe():
    for path in ("/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger",
                 "/sys/kernel/mm/transparent_hugepage/enabled"):
        if not os.path.exists(path):
            note("%s: absent" % path)
        elif attempt("open %s O_WRONLY" % path, wronly, path):
            escaped("opened %s for writing (nothing written)" % path)
"##).root(),
        p("host.pid-namespace", Host,
          "reads /proc/1/cmdline and compares it with the host's init",
          "pid 1 is the host's init (the task shares the host's pid namespace)",
          r##"
def probe():
    d = read_file("/proc/1/cmdline", "/proc/1/cmdline")
    if d is not None and d.decode("latin-1") == CTX["host_init_cmdline"]:
        escaped("pid 1 is the host's init")
    elif d is not None:
        note("pid 1 is %r, not the host's init" % d.split(b"\0")[0].decode("latin-1"))
"##),
        p("host.hostname", Host,
          "sethostname(2) to the current name (no change)",
          "sethostname succeeds",
          r##"
def probe():
    name = os.uname().nodename.encode()
    note("uname nodename %r (host: %r)" % (name.decode(), CTX["host_hostname"]))
    if sc_try("sethostname", "sethostname", name, len(name)) is not None:
        escaped("sethostname succeeded (set to its current value)")
"##).root(),
        p("host.time", Host,
          "adjtimex(2): reads the tick, then sets ADJ_TICK to the same value (no change)",
          "the privileged adjtimex call succeeds",
          r##"
def probe():
    tx = ctypes.create_string_buffer(208)
    if sc_try("adjtimex read", "adjtimex", tx) is None:
        return
    struct.pack_into("<I", tx, 0, 0x4000)
    if sc_try("adjtimex ADJ_TICK", "adjtimex", tx) is not None:
        escaped("adjtimex(ADJ_TICK) succeeded (tick set to its current value %d)" % struct.unpack_from("<q", tx, 88))
"##).root(),
    ]
}

fn exec() -> Vec<Probe> {
    vec![
        p("exec.direct", Exec,
          "runs the target (/usr/bin/env) directly",
          "the target prints the marker",
          r##"
def probe():
    exec_check("direct", run(["/usr/bin/env"], env=MENV))
"##),
        p("exec.shell", Exec,
          "runs the target through /bin/sh -c and os.system",
          "the target prints the marker",
          r##"
def probe():
    exec_check("sh -c", run(["/bin/sh", "-c", "exec /usr/bin/env"], env=MENV))
    os.environ["AIRLOCK_ESCAPE_MARK"] = CTX["nonce"]
    rc = os.system("/usr/bin/env > sys-out 2>&1")
    note("os.system exit %d" % rc)
    out = attempt("read sys-out", lambda: open("sys-out").read())
    if rc == 0:
        exec_check("os.system", out)
"##),
        p("exec.copy-scratch", Exec,
          "writes a copy of the target into the scratch dir, chmod 755, runs it",
          "the copy prints the marker",
          r##"
def probe():
    exec_check("copy in scratch", run([target_copy(os.path.abspath("env-copy"))], env=MENV))
"##).target(),
        p("exec.copy-tmp", Exec,
          "writes a copy of the target into /tmp, runs it",
          "the copy prints the marker",
          r##"
def probe():
    path = "/tmp/airlock-escape-env-" + CTX["nonce"]
    try:
        exec_check("copy in /tmp", run([target_copy(path)], env=MENV))
    finally:
        attempt("cleanup", os.unlink, path)
"##).target(),
        p("exec.copy-dev-shm", Exec,
          "writes a copy of the target into /dev/shm, runs it",
          "the copy prints the marker",
          r##"
def probe():
    path = "/dev/shm/airlock-escape-env-" + CTX["nonce"]
    try:
        exec_check("copy in /dev/shm", run([target_copy(path)], env=MENV))
    finally:
        attempt("cleanup", os.unlink, path)
"##).target(),
        p("exec.symlink", Exec,
          "symlinks the target into the scratch dir and runs the link",
          "the target prints the marker",
          r##"
def probe():
    if ok("symlink", os.symlink, "/usr/bin/env", "env-link"):
        exec_check("symlink", run(["./env-link"], env=MENV))
"##),
        p("exec.hardlink", Exec,
          "hardlinks the target into the scratch dir and runs the link",
          "the target prints the marker",
          r##"
def probe():
    if ok("link", os.link, "/usr/bin/env", "env-hardlink"):
        exec_check("hardlink", run(["./env-hardlink"], env=MENV))
"##).root(),
        p("exec.memfd", Exec,
          "memfd_create(2), writes the target into it, runs /proc/self/fd/<n>",
          "the target prints the marker",
          r##"
def probe():
    fd = attempt("memfd_create", os.memfd_create, "x", 0)
    if fd is None:
        return
    os.write(fd, bytes.fromhex(CTX["target_hex"]))
    exec_check("memfd", run(["/proc/self/fd/%d" % fd], env=MENV, pass_fds=(fd,)))
"##).target(),
        p("exec.opath-fd", Exec,
          "opens the target O_PATH and runs it through /proc/self/fd/<n> (fexecve)",
          "the target prints the marker",
          r##"
def probe():
    fd = attempt("open O_PATH", os.open, "/usr/bin/env", os.O_PATH)
    if fd is not None:
        exec_check("O_PATH fd", run(["/proc/self/fd/%d" % fd], env=MENV, pass_fds=(fd,)))
"##),
        p("exec.loader", Exec,
          "runs the target through the dynamic loader (ld-linux <target>)",
          "the target prints the marker",
          r##"
def probe():
    for ld in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"):
        if os.path.exists(ld):
            exec_check("loader " + ld, run([ld, "/usr/bin/env"], env=MENV))
            return
    note("no dynamic loader found")
"##),
        p("exec.loader-copy", Exec,
          "writes a copy of the target into the scratch dir and runs it through the dynamic loader",
          "the copy prints the marker",
          r##"
def probe():
    path = target_copy(os.path.abspath("env-copy"))
    for ld in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"):
        if os.path.exists(ld):
            exec_check("loader on copy", run([ld, path], env=MENV))
            return
"##).target(),
        p("exec.mmap-written-code", Exec,
          "writes x86-64 code (return 42) to a file in scratch, /tmp and /dev/shm, maps it PROT_EXEC and calls it",
          "the mapped code runs and returns 42",
          r##"
def probe():
    code = bytes.fromhex("b82a000000c3")
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    for d in (".", "/tmp", "/dev/shm"):
        path = os.path.join(d, "airlock-escape-code-" + CTX["nonce"])
        try:
            with open(path, "wb") as f:
                f.write(code + b"\0" * (4096 - len(code)))
            fd = os.open(path, os.O_RDONLY)
            addr = libc.mmap(None, 4096, 5, 2, fd, 0)
            os.close(fd)
            if addr in (None, ctypes.c_void_p(-1).value):
                note("mmap PROT_EXEC in %s: %s" % (d, errno.errorcode.get(ctypes.get_errno())))
                continue
            if ctypes.CFUNCTYPE(ctypes.c_int)(addr)() == 42:
                escaped("ran code written to a file in " + d)
        except OSError as e:
            note("%s: %s" % (d, oserr(e)))
        finally:
            attempt("cleanup", os.unlink, path)
"##),
        p("exec.setuid-binary", Exec,
          "runs a setuid-root binary (/usr/bin/mount --version, /usr/bin/passwd --help)",
          "the setuid binary runs and prints its own output",
          r##"
def probe():
    for argv, sign in ((["/usr/bin/mount", "--version"], "util-linux"), (["/usr/bin/passwd", "--help"], "Usage")):
        if not os.path.exists(argv[0]):
            note("%s: absent" % argv[0])
            continue
        out = run(argv)
        if out is not None and sign in out:
            escaped("setuid %s ran: %r" % (argv[0], out.splitlines()[0][:60]))
        elif out is not None:
            note("%s: %r" % (argv[0], out[:80]))
"##),
        p("exec.shebang", Exec,
          "writes a `#!/bin/sh` script that execs the target into the scratch dir and runs it",
          "the target prints the marker",
          r##"
def probe():
    with open("script.sh", "w") as f:
        f.write("#!/bin/sh\nexec /usr/bin/env\n")
    os.chmod("script.sh", 0o755)
    exec_check("shebang script", run(["./script.sh"], env=MENV))
"##),
        p("exec.interpreter-chain", Exec,
          "starts the allowlisted interpreter again and has it os.execve the target",
          "the target prints the marker",
          r##"
def probe():
    exec_check("python -> execve", run([sys.executable, "-c",
        "import os; os.execve('/usr/bin/env', ['env'], dict(os.environ))"], env=MENV))
"##),
    ]
}

fn kernel() -> Vec<Probe> {
    vec![
        p("kernel.user-namespace", Kernel,
          "unshare(CLONE_NEWUSER) in a child",
          "the child ends up in a new user namespace (its /proc/self/ns/user changed)",
          r##"
def probe():
    before = os.readlink("/proc/self/ns/user")
    def child():
        r, e = sc("unshare", 0x10000000)
        return os.readlink("/proc/self/ns/user") if r == 0 else "unshare errno %s" % errno.errorcode.get(e, e)
    out = in_child(child)
    if out.startswith("user:") and out != before:
        escaped("unshare(CLONE_NEWUSER) made %s" % out)
    else:
        note(out)
"##),
        p("kernel.other-namespaces", Kernel,
          "unshare(2) each of the mount, uts, ipc, net, pid, cgroup and time namespaces in a child",
          "any namespace link of the child changed",
          r##"
def probe():
    flags = {"mnt": 0x20000, "uts": 0x04000000, "ipc": 0x08000000, "net": 0x40000000,
             "pid_for_children": 0x20000000, "cgroup": 0x02000000, "time_for_children": 0x80}
    for ns, flag in flags.items():
        link = "/proc/self/ns/" + ns
        if not os.path.exists(link):
            continue
        before = os.readlink(link)
        def child():
            r, e = sc("unshare", flag)
            return os.readlink(link) if r == 0 else "errno %s" % errno.errorcode.get(e, e)
        out = in_child(child)
        if out != before and ":" in out and "errno" not in out:
            escaped("unshare made a new %s namespace" % ns)
        else:
            note("%s: %s" % (ns, out))
"##).root(),
        p("kernel.mount", Kernel,
          "mount(2) a 1 MiB tmpfs on a dir in its scratch dir (in a child; unmounted at once)",
          "the tmpfs appears in /proc/self/mountinfo",
          r##"
def probe():
    target = os.path.abspath("mnt-" + CTX["nonce"])
    os.mkdir(target)
    def child():
        r, e = sc("mount", b"tmpfs", target.encode(), b"tmpfs", 0, b"size=1m")
        if r != 0:
            return "mount errno %s" % errno.errorcode.get(e, e)
        try:
            return "mounted" if (" " + target + " ") in open("/proc/self/mountinfo").read() else "mount returned 0 but not in mountinfo"
        finally:
            sc("umount2", target.encode(), 2)
    out = in_child(child)
    if out == "mounted":
        escaped("mounted a tmpfs on " + target)
    else:
        note(out)
    os.rmdir(target)
"##).root(),
        p("kernel.chroot", Kernel,
          "chroot(2) into its scratch dir (in a child)",
          "chroot succeeds",
          r##"
def probe():
    out = in_child(lambda: "ok" if sc("chroot", b".")[0] == 0 else "chroot errno %s" % errno.errorcode.get(ctypes.get_errno()))
    if out == "ok":
        escaped("chroot succeeded")
    else:
        note(out)
"##).root(),
        p("kernel.io-uring", Kernel,
          "io_uring_setup(2)",
          "an io_uring fd is returned",
          r##"
def probe():
    params = ctypes.create_string_buffer(120)
    fd = sc_try("io_uring_setup", "io_uring_setup", 4, params)
    if fd is not None:
        escaped("io_uring_setup returned fd %d" % fd)
"##),
        p("kernel.bpf", Kernel,
          "bpf(BPF_PROG_LOAD) of a two-instruction socket filter",
          "a BPF program fd is returned",
          r##"
def probe():
    insns = struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    ibuf = ctypes.create_string_buffer(insns)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQ", attr, 0, 1, 2, ctypes.addressof(ibuf), ctypes.addressof(lic))
    fd = sc_try("bpf(BPF_PROG_LOAD)", "bpf", 5, attr, 128)
    if fd is not None:
        escaped("bpf(BPF_PROG_LOAD) returned fd %d" % fd)
"##).root(),
        p("kernel.perf-event-open", Kernel,
          "perf_event_open(2) of a software CPU clock counter on itself, user space only",
          "a perf event fd is returned",
          r##"
def probe():
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQ", attr, 0, 1, 128, 0)
    struct.pack_into("<Q", attr, 40, 1 | (1 << 5) | (1 << 6))
    fd = sc_try("perf_event_open", "perf_event_open", attr, 0, -1, -1, 0)
    if fd is not None:
        escaped("perf_event_open returned fd %d" % fd)
"##),
        p("kernel.userfaultfd", Kernel,
          "userfaultfd(UFFD_USER_MODE_ONLY)",
          "a userfaultfd is returned",
          r##"
def probe():
    fd = sc_try("userfaultfd", "userfaultfd", 0o2000000 | 1)
    if fd is not None:
        escaped("userfaultfd returned fd %d" % fd)
"##),
        p("kernel.keyctl", Kernel,
          "add_key(2) a user key to its process keyring and keyctl(KEYCTL_READ) it back",
          "the key is read back",
          r##"
def probe():
    data = ("airlock-" + CTX["nonce"]).encode()
    kid = sc_try("add_key", "add_key", b"user", ("airlock-escape-" + CTX["nonce"]).encode(), data, len(data), -2)
    if kid is None:
        return
    buf = ctypes.create_string_buffer(256)
    n = sc_try("keyctl READ", "keyctl", 11, kid, buf, 256)
    if n is not None and buf.raw[:n] == data:
        escaped("added key %d to the kernel keyring and read it back" % kid)
"##),
        p("kernel.open-by-handle-at", Kernel,
          "open_by_handle_at(2) of a root-only file by its file handle (the 'shocker' attack), bypassing the path's permissions",
          "the root-only canary is read",
          r##"
def probe():
    h = CTX.get("handle")
    if not h:
        note("no handle from the tool")
        return
    raw = bytes.fromhex(h["hex"])
    fh = ctypes.create_string_buffer(struct.pack("<Ii", len(raw), h["type"]) + raw)
    for mp in (h["mount_hint"], "/", "."):
        mfd = attempt("open " + mp, os.open, mp, os.O_RDONLY | os.O_DIRECTORY)
        if mfd is None:
            continue
        fd = sc_try("open_by_handle_at via " + mp, "open_by_handle_at", mfd, fh, os.O_RDONLY)
        if fd is not None:
            saw("file opened by handle", os.read(fd, 4096))
            return
"##).root(),
        p("kernel.tiocsti", Kernel,
          "TIOCSTI: pushes characters into a new pty's input queue and into fds 0-2",
          "the injected characters are read back from the terminal",
          r##"
import fcntl, termios
def probe():
    pair = attempt("openpty", os.openpty)
    targets = [pair[1]] if pair else []
    for fd in targets + [0, 1, 2]:
        injected = True
        for ch in b"Z\n":
            if not ok("TIOCSTI on fd %d" % fd, fcntl.ioctl, fd, termios.TIOCSTI, bytes([ch])):
                injected = False
                break
        if injected and pair and fd == pair[1]:
            os.set_blocking(fd, False)
            got = attempt("read back", os.read, fd, 16)
            if got and b"Z" in got:
                escaped("injected input into a terminal and read it back")
                return
        elif injected:
            escaped("TIOCSTI on fd %d succeeded" % fd)
"##).root(),
        p("kernel.socket-families", Kernel,
          "socket(2) of AF_NETLINK, AF_PACKET, AF_VSOCK, AF_ALG, AF_KEY",
          "any such socket is created",
          r##"
def probe():
    for name, fam, typ, proto in (("netlink", 16, socket.SOCK_RAW, 0), ("packet", 17, socket.SOCK_RAW, 0),
                                  ("vsock", 40, socket.SOCK_STREAM, 0), ("alg", 38, socket.SOCK_SEQPACKET, 0),
                                  ("key", 15, socket.SOCK_RAW, 2)):
        s = attempt("socket " + name, socket.socket, fam, typ, proto)
        if s is not None:
            escaped("created an AF_%s socket" % name.upper())
            s.close()
"##),
        p("kernel.ptrace-own-child", Kernel,
          "PTRACE_ATTACH to its own child and PTRACE_PEEKDATA a value (ptrace reachable at all)",
          "the child's memory is read through ptrace",
          r##"
def probe():
    libc.ptrace.restype = ctypes.c_long
    val = ctypes.c_long(0x41524c4b)
    pid = os.fork()
    if pid == 0:
        time.sleep(10)
        os._exit(0)
    try:
        if sc_try("PTRACE_ATTACH", "ptrace", 16, pid, 0, 0) is None:
            return
        os.waitpid(pid, 0x40000000)
        ctypes.set_errno(0)
        w = libc.ptrace(2, pid, ctypes.c_void_p(ctypes.addressof(val)), None)
        if ctypes.get_errno() == 0 and w == val.value:
            escaped("read the child's memory through ptrace")
        sc("ptrace", 17, pid, 0, 0)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
"##),
    ]
}

fn network() -> Vec<Probe> {
    vec![
        p("network.metadata-fake", Network,
          "HTTP GET of the credentials path from the tool's fake metadata service on the worker, at 127.0.0.1 and 10.213.0.1 (169.254.169.254 is not routable here)",
          "the fake metadata credentials canary is received",
          r##"
def probe():
    for addr in CTX["worker_addrs"]:
        s = socket.socket()
        s.settimeout(3)
        if ok("connect %s:%d" % (addr, CTX["metadata_port"]), s.connect, (addr, CTX["metadata_port"])):
            s.sendall(b"GET /latest/meta-data/iam/security-credentials/worker HTTP/1.0\r\nX-Nonce: " + CTX["nonce"].encode() + b"\r\n\r\n")
            saw("metadata reply", s.recv(4096))
"##),
        p("network.metadata-fake-ipv6", Network,
          "the same request to the fake metadata service on [::1]",
          "the fake metadata credentials canary is received",
          r##"
def probe():
    port = CTX.get("metadata_port_v6")
    if not port:
        note("no IPv6 loopback on this host")
        return
    s = socket.socket(socket.AF_INET6)
    s.settimeout(3)
    if ok("connect [::1]:%d" % port, s.connect, ("::1", port)):
        s.sendall(b"GET /latest/meta-data/iam/security-credentials/worker HTTP/1.0\r\n\r\n")
        saw("metadata reply", s.recv(4096))
"##),
        p("network.metadata-real", Network,
          "connects to 169.254.169.254:80 (2 s timeout) and asks for the instance credentials; reports what happens",
          "an HTTP response is received",
          r##"
def probe():
    s = socket.socket()
    s.settimeout(2)
    if ok("connect 169.254.169.254:80", s.connect, ("169.254.169.254", 80)):
        s.sendall(b"GET /latest/meta-data/iam/security-credentials/ HTTP/1.0\r\n\r\n")
        d = attempt("recv", s.recv, 4096)
        if d and d.startswith(b"HTTP/"):
            escaped("the metadata service answered: %r" % d.splitlines()[0][:60])
"##),
        p("network.tcp-listen", Network,
          "bind(2) and listen(2) on 127.0.0.1, then looks for the socket in /proc/self/net/tcp",
          "a listening socket of the task appears in LISTEN state",
          r##"
def probe():
    s = socket.socket()
    if not ok("bind 127.0.0.1:0", s.bind, ("127.0.0.1", 0)) or not ok("listen", s.listen, 1):
        return
    port = s.getsockname()[1]
    for line in open("/proc/self/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(":%04X" % port) and f[3] == "0A":
            escaped("listening on 127.0.0.1:%d" % port)
"##),
        p("network.udp-loopback", Network,
          "sends a UDP datagram carrying its nonce to the tool's UDP listener on the worker (another tenant's UDP service), at 127.0.0.1 and 10.213.0.1",
          "the tool's listener receives the nonce",
          r##"
def probe():
    for addr in CTX["worker_addrs"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if ok("sendto %s:%d" % (addr, CTX["udp_port"]), s.sendto, CTX["nonce"].encode(), (addr, CTX["udp_port"])):
            note("sendto returned")
"##).watch(Watch::UdpDatagram),
        p("network.host-unix-socket", Network,
          "connects to a 0666 pathname unix socket the tool listens on (a host service such as /dev/log or a bus, reachable by DAC)",
          "the host-service canary is received",
          r##"
def probe():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    if ok("connect " + CTX["host_unix_socket"], s.connect, CTX["host_unix_socket"]):
        saw("host service reply", s.recv(256))
"##),
    ]
}

fn supervisor() -> Vec<Probe> {
    vec![
        p("supervisor.purge-symlinks", Supervisor,
          "leaves symlinks to a host file and dir of the tool's (and a 0000 dir) in its scratch dir for the supervisor's purge to trip over",
          "the tool's bait file is gone or changed after the purge",
          r##"
def probe():
    bait = CTX["bait_dir"]
    for src, dst in ((bait, "link-dir"), (os.path.join(bait, "bait.txt"), "link-file"),
                     (bait, "deep/a/b/link-dir")):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        ok("symlink " + dst, os.symlink, src, dst)
    os.mkdir("locked")
    open("locked/f", "w").close()
    os.chmod("locked", 0)
    note("left links to %s" % bait)
    print("AIRLOCK-ESCAPE-CWD " + os.getcwd(), flush=True)
"##).watch(Watch::BaitIntact),
        p("supervisor.socket", Supervisor,
          "connects to airlockd's gRPC socket and sends an HTTP/2 preface and SETTINGS frame",
          "the supervisor answers with an HTTP/2 frame",
          r##"
def probe():
    path = CTX.get("supervisor_socket")
    if not path:
        note("the endpoint is not a unix socket")
        return
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    if not ok("connect " + path, s.connect, path):
        return
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    d = attempt("recv", s.recv, 64)
    if d and len(d) >= 9 and d[3] == 4:
        escaped("airlockd's gRPC server answered with a SETTINGS frame")
"##).root(),
        p("supervisor.signal", Supervisor,
          "kill(airlockd, 0): whether the supervisor can be signalled (signal 0 delivers nothing)",
          "kill returns 0",
          r##"
def probe():
    pid = CTX.get("supervisor_pid")
    if not pid:
        note("supervisor pid unknown")
        return
    if ok("kill(%d, 0)" % pid, os.kill, pid, 0):
        escaped("kill(airlockd, 0) succeeded")
"##).root(),
        p("supervisor.proc", Supervisor,
          "reads airlockd's /proc/<pid>/environ and /proc/<pid>/cmdline",
          "the supervisor's environment is read",
          r##"
def probe():
    pid = CTX.get("supervisor_pid")
    if not pid:
        note("supervisor pid unknown")
        return
    d = read_file("airlockd environ", "/proc/%d/environ" % pid)
    if d:
        escaped("read airlockd's environment (%d variables)" % d.count(b"\0"))
"##).root(),
    ]
}

fn credentials_probe() -> Probe {
    p(
        "supervisor.credentials-endpoint",
        Supervisor,
        "asks the container-credentials endpoint for the victim's credentials: the victim's path with no token, an empty and a forged token, a dot-dot path, and its own token if it has one; and reads the victim's token file",
        "the victim's AWS secret key or session token is received",
        r##"
def probe():
    uri = V.get("credentials_uri")
    if not uri:
        skip("the victim got no AWS credentials: %s" % V.get("credentials_error", "run with --role and a policy with [credentials]"))
        return
    import urllib.parse
    u = urllib.parse.urlsplit(uri)
    host, port, path = u.hostname, u.port or 80, u.path
    def get(p, auth):
        s = socket.create_connection((host, port), timeout=3)
        req = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n" % (p, host, port)
        if auth is not None:
            req += "Authorization: %s\r\n" % auth
        s.sendall((req + "\r\n").encode())
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                return data
            data += c
    tries = [("no token", path, None), ("empty token", path, ""), ("forged token", path, "0" * 64),
             ("dot-dot path", path.rsplit("/", 1)[0] + "/x/../" + path.rsplit("/", 1)[-1], None)]
    own = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if own:
        tries.append(("own token on the victim's path", path, open(own).read().strip()))
    for label, p, auth in tries:
        d = attempt(label, get, p, auth)
        if d is not None:
            note("%s: %s" % (label, d.split(b"\r\n", 1)[0].decode("latin-1")))
            saw(label, d)
            if d.startswith(b"HTTP/1.1 200") and b"SecretAccessKey" in d:
                escaped("the endpoint handed out credentials (%s)" % label)
    if V.get("credentials_token_file"):
        read_file("victim token file", V["credentials_token_file"])
"##,
    )
    .attacker_role()
}

fn persistence() -> Vec<Probe> {
    vec![
        p("persistence.double-fork", Persistence,
          "double-forks a daemon (setsid) that sleeps 15 s, then the task exits",
          "a process carrying the probe's nonce is alive 300 ms after the task ended",
          r##"
def probe():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for fd in (0, 1, 2):
                os.close(fd)
            time.sleep(15)
        os._exit(0)
    note("daemon started")
"##).watch(Watch::Survivor),
        p("persistence.ignore-signals", Persistence,
          "starts a child that ignores SIGTERM, SIGHUP and SIGINT in a new session, then exits",
          "a process carrying the probe's nonce is alive 300 ms after the task ended",
          r##"
def probe():
    if os.fork() == 0:
        os.setsid()
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        for fd in (0, 1, 2):
            os.close(fd)
        time.sleep(15)
        os._exit(0)
    note("child started")
"##).watch(Watch::Survivor),
        p("persistence.tmp-residue", Persistence,
          "stage 1 writes a canary into /tmp and /dev/shm and exits; stage 2, the next tenant, reads and lists them",
          "stage 2 reads stage 1's canary",
          r##"
def probe():
    name = "airlock-escape-residue-" + CTX["nonce"]
    if CTX["stage"] == 1:
        for d in ("/tmp", "/dev/shm"):
            with open(os.path.join(d, name), "w") as f:
                f.write(CTX["residue"])
            os.chmod(os.path.join(d, name), 0o644)
        return
    for d in ("/tmp", "/dev/shm"):
        read_file(d, os.path.join(d, name))
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            pass
"##).staged(),
        p("persistence.scratch-residue", Persistence,
          "stage 1 writes a canary into its scratch dir (0644, dir 0755) and exits; stage 2 reads it by path; the tool checks the dir is gone",
          "stage 2 reads the canary, or stage 1's scratch dir is still on the host",
          r##"
def probe():
    if CTX["stage"] == 1:
        with open("residue.txt", "w") as f:
            f.write(CTX["residue"])
        os.chmod("residue.txt", 0o644)
        os.chmod(".", 0o755)
        print("AIRLOCK-ESCAPE-CWD " + os.getcwd(), flush=True)
        return
    read_file("stage 1 residue", os.path.join(CTX["stage1_cwd"], "residue.txt"))
"##).staged().watch(Watch::ScratchLeft),
        p("persistence.sysv-residue", Persistence,
          "stage 1 leaves a System V shared memory segment holding a canary; stage 2 attaches it by key",
          "stage 2 reads the canary",
          r##"
def probe():
    libc.shmat.restype = ctypes.c_void_p
    key = int(CTX["nonce"][:7], 16)
    if CTX["stage"] == 1:
        sid = libc.shmget(key, 4096, 0o1000 | 0o644)
        if sid < 0:
            note("shmget: %s" % errno.errorcode.get(ctypes.get_errno()))
            return
        addr = libc.shmat(sid, None, 0)
        ctypes.memmove(addr, CTX["residue"].encode(), len(CTX["residue"]))
        return
    sid = libc.shmget(key, 0, 0)
    if sid < 0:
        note("shmget: %s" % errno.errorcode.get(ctypes.get_errno()))
        return
    addr = libc.shmat(sid, None, 0o10000)
    if addr not in (None, ctypes.c_void_p(-1).value):
        saw("segment", ctypes.string_at(addr, 64).split(b"\0")[0])
        libc.shmdt(ctypes.c_void_p(addr))
    libc.shmctl(sid, 0, None)
"##).staged(),
    ]
}

fn exhaustion() -> Vec<Probe> {
    vec![
        p("exhaustion.fork", Exhaustion,
          "forks up to 48 children that wait on a pipe (request: processes = 8)",
          "more children than the process limit are alive at once",
          r##"
def probe():
    limit = CTX["limits"]["processes"]
    r, w = os.pipe()
    kids = []
    try:
        for _ in range(48):
            try:
                pid = os.fork()
            except OSError as e:
                note("fork %d: %s" % (len(kids) + 1, oserr(e)))
                break
            if pid == 0:
                os.close(w)
                os.read(r, 1)
                os._exit(0)
            kids.append(pid)
    finally:
        os.close(w)
        for pid in kids:
            os.waitpid(pid, 0)
    note("forked %d children with a limit of %d processes" % (len(kids), limit))
    if len(kids) > limit:
        escaped("%d children alive at once with a limit of %d processes" % (len(kids), limit))
"##).limits(ProbeLimits { processes: Some(FORK_LIMIT), ..ProbeLimits::default() }),
        p("exhaustion.memory", Exhaustion,
          "reserves up to 1 GiB in 64 MiB pieces, without touching it (request: memory = 256 MiB)",
          "more than the memory limit is reserved",
          r##"
def probe():
    limit = CTX["limits"]["memory"]
    held, total = [], 0
    while total < (1 << 30):
        try:
            held.append(bytearray(64 << 20))
            total += 64 << 20
        except MemoryError:
            note("MemoryError after %d MiB" % (total >> 20))
            break
    note("reserved %d MiB with a limit of %d MiB" % (total >> 20, limit >> 20))
    if total > limit:
        escaped("reserved %d MiB with a limit of %d MiB" % (total >> 20, limit >> 20))
"##).limits(ProbeLimits { memory_bytes: Some(MEMORY_LIMIT), ..ProbeLimits::default() }),
        p("exhaustion.disk", Exhaustion,
          "writes a 4 MiB file into its scratch dir (request: file_size = 1 MiB)",
          "the file grows past the limit",
          r##"
def probe():
    limit = CTX["limits"]["file_size"]
    chunk = b"x" * 65536
    try:
        with open("big", "wb") as f:
            for _ in range(64):
                f.write(chunk)
    except OSError as e:
        note("write: " + oserr(e))
    size = os.path.getsize("big")
    os.unlink("big")
    note("file reached %d bytes with a limit of %d" % (size, limit))
    if size > limit:
        escaped("wrote a %d-byte file with a limit of %d" % (size, limit))
"##).limits(ProbeLimits { file_size_bytes: Some(FILE_LIMIT), ..ProbeLimits::default() }),
        p("exhaustion.scratch-quota", Exhaustion,
          "fills its scratch dir with 32 MiB in files no larger than the file-size limit (request: file_size = 1 MiB, scratch = 8 MiB), then deletes them",
          "more than the scratch limit is written: nothing bounds a task's total disk use",
          r##"
def probe():
    limit = CTX["limits"]["file_size"]
    target = 32 << 20
    chunk = b"z" * 65536
    total, names = 0, []
    try:
        while total < target:
            name = "fill-%d" % len(names)
            names.append(name)
            with open(name, "wb") as f:
                written = 0
                while written < limit and total < target:
                    f.write(chunk)
                    written += len(chunk)
                    total += len(chunk)
    except OSError as e:
        note("write: " + oserr(e))
    finally:
        for n in names:
            attempt("unlink", os.unlink, n)
    note("wrote %d MiB in %d files" % (total >> 20, len(names)))
    if total > CTX["limits"]["scratch"]:
        escaped("wrote %d MiB to its scratch dir with a scratch limit of %d MiB, in %d files of at most %d bytes" % (total >> 20, CTX["limits"]["scratch"] >> 20, len(names), limit))
"##).limits(ProbeLimits { file_size_bytes: Some(FILE_LIMIT), scratch_bytes: Some(SCRATCH_LIMIT), ..ProbeLimits::default() }),
        p("exhaustion.fds", Exhaustion,
          "dup(2)s /dev/null up to 512 times (request: open_files = 64)",
          "more fds than the limit are open",
          r##"
def probe():
    limit = CTX["limits"]["open_files"]
    fd0 = os.open("/dev/null", os.O_RDONLY)
    fds = [fd0]
    try:
        for _ in range(511):
            fds.append(os.dup(fd0))
    except OSError as e:
        note("dup: " + oserr(e))
    top = max(fds)
    for fd in fds:
        os.close(fd)
    note("held %d fds (highest %d) with a limit of %d" % (len(fds), top, limit))
    if top >= limit:
        escaped("held fd %d with a limit of %d open files" % (top, limit))
"##).limits(ProbeLimits { open_files: Some(FD_LIMIT), ..ProbeLimits::default() }),
        p("exhaustion.cpu", Exhaustion,
          "spins for 2.5 s of CPU time (request: cpu_seconds = 1); a SIGXCPU handler reports the limit",
          "it spins past the CPU limit",
          r##"
def probe():
    def xcpu(signum, frame):
        t = os.times()
        note("SIGXCPU after %.2f s of CPU (user and system)" % (t.user + t.system))
        _finish("ran")
        os._exit(0)
    signal.signal(signal.SIGXCPU, xcpu)
    t0 = os.times()
    while os.times().user + os.times().system - t0.user - t0.system < 2.5:
        pass
    escaped("spun 2.5 s of CPU with a limit of %d s" % CTX["limits"]["cpu_seconds"])
"##).limits(ProbeLimits { cpu_seconds: Some(1), ..ProbeLimits::default() }),
        p("exhaustion.output", Exhaustion,
          "writes 512 KiB to stdout (request: output = 64 KiB)",
          "more than the output limit reaches the client",
          r##"
def probe():
    line = ("y" * 1023 + "\n").encode()
    for _ in range(512):
        sys.stdout.buffer.write(line)
    sys.stdout.flush()
"##).limits(ProbeLimits { output_bytes: Some(OUTPUT_LIMIT), ..ProbeLimits::default() })
          .watch(Watch::OutputOver(OUTPUT_LIMIT)),
        p("exhaustion.wall-time", Exhaustion,
          "sleeps 4 s (request: timeout 1.5 s)",
          "it is still running after 4 s",
          r##"
def probe():
    time.sleep(4)
    escaped("still running after 4 s with a deadline of %d ms" % CTX["limits"]["timeout_ms"])
"##).timeout(WALL_LIMIT_MS),
    ]
}

fn leakage() -> Vec<Probe> {
    vec![
        p("leakage.fds", Leakage,
          "lists the fds it inherited beyond stdin, stdout and stderr, and reads from each",
          "any inherited fd beyond 0-2",
          r##"
def probe():
    note("inherited fds beyond 0-2: %s" % (_INHERITED or "none"))
    for fd in _INHERITED:
        target = attempt("readlink fd %d" % fd, os.readlink, "/proc/self/fd/%d" % fd) or "?"
        escaped("inherited fd %d -> %s" % (fd, target))
        d = attempt("read fd %d" % fd, os.pread, fd, 4096, 0)
        if d:
            saw("fd %d" % fd, d)
"##),
        p("leakage.environment", Leakage,
          "lists its environment variable names",
          "any name beyond PATH, HOME, TMPDIR, USER, LOGNAME, LANG, RES_OPTIONS and the request's own (the supervisor's environment leaked)",
          r##"
def probe():
    allowed = {"PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "LANG", "RES_OPTIONS"}
    extra = sorted(k for k in os.environ if k not in allowed)
    note("environment: %s" % sorted(os.environ))
    if extra:
        escaped("unexpected environment variables: %s" % ", ".join(extra)[:200])
"##),
    ]
}

fn privileges() -> Vec<Probe> {
    vec![
        p(
            "privileges.uid",
            Privileges,
            "reads its real, effective and saved uids and gids and its groups",
            "any id is 0 or the victim's uid, or it has supplementary groups",
            r##"
def probe():
    u, g, groups = os.getresuid(), os.getresgid(), os.getgroups()
    note("uids %s gids %s groups %s" % (u, g, groups))
    bad = [x for x in u + g if x == 0 or x == V.get("uid")]
    if bad or groups:
        escaped("ids %s %s groups %s" % (u, g, groups))
"##,
        )
        .root(),
        p(
            "privileges.capabilities",
            Privileges,
            "reads CapInh, CapPrm, CapEff, CapBnd and CapAmb from /proc/self/status",
            "any capability set is non-empty",
            r##"
def probe():
    st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    sets = {k: st[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    note(str(sets))
    held = {k: v for k, v in sets.items() if int(v, 16)}
    if held:
        escaped("capabilities held: %s" % held)
"##,
        )
        .root(),
        p(
            "privileges.no-new-privs",
            Privileges,
            "reads NoNewPrivs from /proc/self/status",
            "NoNewPrivs is 0",
            r##"
def probe():
    st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    v = st["NoNewPrivs"].strip()
    note("NoNewPrivs %s" % v)
    if v != "1":
        escaped("NoNewPrivs is %s" % v)
"##,
        )
        .root(),
        p(
            "privileges.seccomp",
            Privileges,
            "reads Seccomp from /proc/self/status",
            "Seccomp is not 2 (filter mode)",
            r##"
def probe():
    st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    v = st["Seccomp"].strip()
    note("Seccomp %s" % v)
    if v != "2":
        escaped("Seccomp is %s, not 2 (no filter)" % v)
"##,
        )
        .root(),
        p(
            "privileges.rlimits",
            Privileges,
            "reads its rlimits",
            "NPROC, AS, NOFILE, FSIZE or CPU is unlimited, or CORE is not 0",
            r##"
import resource
def probe():
    inf = resource.RLIM_INFINITY
    names = ("RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CPU")
    lim = {n: resource.getrlimit(getattr(resource, n)) for n in names + ("RLIMIT_CORE",)}
    note(str(lim))
    bad = [n for n in names if inf in lim[n]]
    if lim["RLIMIT_CORE"] != (0, 0):
        bad.append("RLIMIT_CORE")
    if bad:
        escaped("unbounded: %s" % ", ".join(bad))
"##,
        )
        .root(),
        p(
            "privileges.setuid-root",
            Privileges,
            "setresuid(0, 0, 0)",
            "its effective uid is 0 afterwards",
            r##"
def probe():
    sc_try("setresuid(0,0,0)", "setresuid", 0, 0, 0)
    if os.geteuid() == 0:
        escaped("effective uid is 0")
"##,
        )
        .root(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_are_unique_and_prefixed_by_their_category() {
        let probes = all();
        let mut names: Vec<_> = probes.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), probes.len());
        for p in &probes {
            let prefix = match p.category {
                OtherTenants => "other.",
                c => &format!("{}.", c.name()),
            };
            assert!(p.name.starts_with(prefix), "{}", p.name);
            assert!(p.code.contains("def probe():"), "{}", p.name);
        }
    }

    #[test]
    fn at_least_forty_probes_cover_every_category() {
        let probes = all();
        assert!(probes.len() >= 40, "{}", probes.len());
        for c in Category::ALL {
            assert!(probes.iter().any(|p| p.category == c), "{c}");
        }
    }
}
