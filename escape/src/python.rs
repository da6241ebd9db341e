//! The Python the tenants run: the victim, and the prelude and epilogue
//! around every probe body.
//!
//! A probe reads its context (JSON: the victim's host-visible facts, the
//! tool's listeners and files, a nonce; never a secret) from stdin and ends by
//! printing one `AIRLOCK-ESCAPE-RESULT {json}` line: the escapes it
//! *observed* (a read that returned data, a syscall that returned an object,
//! a marker printed by an exec'd program), every attempt and its error, and
//! the raw data it obtained. The tool searches that data (and the whole
//! output) for the secrets it gave the victim; the probe itself never knows
//! them.

/// Marks the result line.
pub const RESULT_TAG: &str = "AIRLOCK-ESCAPE-RESULT ";
/// Marks the victim's facts line.
pub const VICTIM_TAG: &str = "AIRLOCK-ESCAPE-VICTIM ";
/// Marks the victim's own AWS credentials (they become canaries).
pub const VICTIM_CREDS_TAG: &str = "AIRLOCK-ESCAPE-VICTIM-CREDS ";
/// Marks a signal the victim received.
pub const SIGNAL_TAG: &str = "AIRLOCK-ESCAPE-SIGNAL ";

/// Runs before every probe body. x86_64 syscall numbers.
pub const PRELUDE: &str = r##"
import ctypes, errno, json, os, signal, socket, struct, subprocess, sys, time
# Inherited fds, before this program opens any: os.fstat opens nothing.
_INHERITED = []
for _fd in range(3, 1024):
    try:
        os.fstat(_fd)
        _INHERITED.append(_fd)
    except OSError:
        pass
CTX = json.loads(sys.stdin.buffer.read() or b"{}")
V = CTX.get("victim", {})
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"ptrace": 101, "process_vm_readv": 310, "execveat": 322, "unshare": 272,
      "mount": 165, "umount2": 166, "chroot": 161, "io_uring_setup": 425, "bpf": 321,
      "perf_event_open": 298, "userfaultfd": 323, "add_key": 248, "keyctl": 250,
      "open_by_handle_at": 304, "pidfd_open": 434, "pidfd_getfd": 438,
      "pidfd_send_signal": 424, "adjtimex": 159, "sethostname": 170, "setresuid": 117,
      "shmget": 29, "shmat": 30, "shmdt": 67, "shmctl": 31}
_attempts, _observed, _escapes, _skipped = [], [], [], []

def note(what):
    _attempts.append(str(what)[:300])

def oserr(e):
    n = getattr(e, "errno", None)
    if n:
        return "%s(%s)" % (type(e).__name__, errno.errorcode.get(n, n))
    return "%s(%s)" % (type(e).__name__, str(e)[:80])

def attempt(label, f, *a):
    try:
        return f(*a)
    except (OSError, subprocess.SubprocessError) as e:
        note("%s: %s" % (label, oserr(e)))
        return None

def ok(label, f, *a):
    try:
        f(*a)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        note("%s: %s" % (label, oserr(e)))
        return False

def sc(name, *args):
    # Every integer as a full register: syscall(2) is variadic.
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *args)
    return r, ctypes.get_errno()

def sc_try(label, name, *args):
    r, e = sc(name, *args)
    if r < 0:
        note("%s: %s" % (label, errno.errorcode.get(e, e)))
        return None
    return r

def saw(label, data):
    if isinstance(data, bytes):
        data = data.decode("latin-1")
    _observed.append("%s: %s" % (label, data[:4000]))

def escaped(evidence):
    _escapes.append(str(evidence)[:300])

def skip(reason):
    # Nothing to attack in this deployment (not an escape, not contained).
    _skipped.append(str(reason)[:300])

def run(argv, **kw):
    try:
        p = subprocess.run(argv, capture_output=True, timeout=10, **kw)
        return (p.stdout + p.stderr).decode("latin-1")
    except (OSError, subprocess.SubprocessError) as e:
        note("exec %s: %s" % (argv[0], oserr(e)))
        return None

MARK = "AIRLOCK_ESCAPE_MARK=" + CTX.get("nonce", "")
MENV = dict(os.environ, AIRLOCK_ESCAPE_MARK=CTX.get("nonce", ""))

def exec_check(how, out):
    if out is None:
        return
    if MARK in out:
        escaped("%s: the target program ran and printed the marker" % how)
    else:
        note("%s: ran, but no marker in its output %r" % (how, out[:100]))

def target_copy(path):
    data = bytes.fromhex(CTX["target_hex"])
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)
    return path

def read_file(label, path, n=65536):
    def go():
        with open(path, "rb") as f:
            return f.read(n)
    d = attempt(label, go)
    if d is not None:
        saw(label, d)
    return d

def wronly(path):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    os.close(fd)
    return True

def in_child(f):
    # Runs f() in a forked child; returns what it wrote (bytes) or None.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = f()
        except BaseException as e:
            out = "child error: " + oserr(e)
        os.write(w, str(out).encode()[:4000])
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return data.decode("latin-1")
"##;

/// Runs after every probe body (which defines `probe()`).
pub const EPILOGUE: &str = r##"
def _finish(status):
    print("AIRLOCK-ESCAPE-RESULT " + json.dumps({"status": status, "escaped": _escapes,
          "attempts": _attempts, "observed": _observed, "skipped": _skipped}), flush=True)
try:
    probe()
    _finish("skipped" if _skipped and not _escapes else "ran")
except OSError as e:
    note("probe stopped: " + oserr(e))
    _finish("ran")
except Exception as e:
    import traceback
    note("probe error: " + traceback.format_exc()[-600:])
    _finish("error")
"##;

/// The victim: plants its secrets, listens, reports its facts, waits.
/// Its secrets arrive as one JSON line on stdin.
pub const VICTIM: &str = r##"
import ctypes, json, os, signal, socket, sys, threading, time
S = json.loads(sys.stdin.readline())
libc = ctypes.CDLL(None, use_errno=True)
facts = {"cwd": os.getcwd(), "pid": os.getpid(), "uid": os.getuid(),
         "hostname": os.uname().nodename}
def report_signal(signum, frame):
    print("AIRLOCK-ESCAPE-SIGNAL %d" % signum, flush=True)
for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGURG, signal.SIGWINCH):
    signal.signal(sig, report_signal)
with open("token", "w") as f:
    f.write(S["token"])
os.chmod("token", 0o600)
for name in ("data.txt", "secret-" + S["filename"] + ".txt"):
    with open(name, "w") as f:
        f.write(S["scratch_file"])
    os.chmod(name, 0o600)
facts["token"] = os.path.join(os.getcwd(), "token")
facts["scratch_file"] = os.path.join(os.getcwd(), "data.txt")
token_fd = os.open("token", os.O_RDONLY)
facts["token_fd"] = token_fd
planted = []
for d, key in (("/tmp", "tmp_file"), ("/dev/shm", "shm_file")):
    p = os.path.join(d, "airlock-escape-victim-" + S["nonce"])
    try:
        with open(p, "w") as f:
            f.write(S[key])
        os.chmod(p, 0o600)
        facts[key] = p
        planted.append(p)
    except OSError as e:
        facts[key + "_error"] = repr(e)
mem = ctypes.create_string_buffer(S["memory"].encode())
facts["mem_addr"] = ctypes.addressof(mem)
facts["mem_len"] = len(S["memory"])
def serve(sock, secret):
    while True:
        try:
            c, _ = sock.accept()
            c.sendall(secret.encode() + b"\n")
            c.close()
        except OSError:
            return
abstract = "airlock-escape-" + S["nonce"]
a = socket.socket(socket.AF_UNIX)
a.bind("\0" + abstract)
a.listen(16)
facts["abstract"] = abstract
threading.Thread(target=serve, args=(a, S["abstract"]), daemon=True).start()
try:
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    t.listen(16)
    facts["tcp_port"] = t.getsockname()[1]
    threading.Thread(target=serve, args=(t, S["tcp"]), daemon=True).start()
except OSError as e:
    facts["tcp_error"] = "%s: %s" % (type(e).__name__, e)
libc.shmget.restype = ctypes.c_int
libc.shmat.restype = ctypes.c_void_p
shm_key = int(S["shm_key"])
shm_id = libc.shmget(shm_key, 4096, 0o1000 | 0o600)
if shm_id >= 0:
    addr = libc.shmat(shm_id, None, 0)
    ctypes.memmove(addr, S["sysv"].encode(), len(S["sysv"]))
    facts["shm_key"] = shm_key
else:
    facts["shm_error"] = os.strerror(ctypes.get_errno())
def cleanup(signum, frame):
    for p in planted:
        try:
            os.unlink(p)
        except OSError:
            pass
    if shm_id >= 0:
        libc.shmctl(shm_id, 0, None)
    os._exit(0)
signal.signal(signal.SIGTERM, cleanup)
uri = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
if uri:
    # The victim's own AWS credentials: the tool makes them canaries.
    import urllib.request
    facts["credentials_uri"] = uri
    tokfile = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "")
    facts["credentials_token_file"] = tokfile
    try:
        req = urllib.request.Request(uri, headers={"Authorization": open(tokfile).read().strip()})
        creds = json.loads(urllib.request.urlopen(req, timeout=5).read())
        print("AIRLOCK-ESCAPE-VICTIM-CREDS " + json.dumps({"secret": creds["SecretAccessKey"],
              "token": creds.get("Token", "")}), flush=True)
    except Exception as e:
        facts["credentials_error"] = "%s: %s" % (type(e).__name__, e)
print("AIRLOCK-ESCAPE-VICTIM " + json.dumps(facts), flush=True)
while True:
    time.sleep(0.2)
"##;

/// Computes a file handle for `open_by_handle_at` (run by the tool, as root,
/// on its own root-only file): prints `type hexbytes`.
pub const NAME_TO_HANDLE: &str = r##"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(8 + 128)
ctypes.memmove(buf, (128).to_bytes(4, "little"), 4)
mount_id = ctypes.c_int()
r = libc.name_to_handle_at(-100, sys.argv[1].encode(), buf, ctypes.byref(mount_id), 0)
if r != 0:
    sys.exit("name_to_handle_at: errno %d" % ctypes.get_errno())
n = int.from_bytes(buf.raw[0:4], "little")
t = int.from_bytes(buf.raw[4:8], "little", signed=True)
print(t, buf.raw[8:8 + n].hex())
"##;
