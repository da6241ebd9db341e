//! Tenants cannot see, read or signal each other or the host.

use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn task_runs_as_pool_uid_with_every_layer_applied() {
    if !privileged() {
        return;
    }
    // A new uts namespace starts with copies of the worker's names: the
    // spawner sets both in every task's.
    let d = Daemon::start(Opts {
        worker_names: Some(("worker-7", "corp.example")),
        ..Opts::default()
    });
    let out = d
        .python(
            "alice",
            r#"
import ctypes, json, os, signal
domain = ctypes.create_string_buffer(256)
assert ctypes.CDLL(None).getdomainname(domain, 256) == 0
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
# Python ignores SIGPIPE and SIGXFSZ itself, and handles SIGINT only when it
# was not ignored when it started.
own = {signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT}
print(json.dumps({
    "signals_not_default": [signal.Signals(s).name for s in signal.valid_signals()
        if s not in own and s < signal.SIGRTMIN and signal.getsignal(s) != signal.SIG_DFL],
    "sigint_handled": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "blocked": status["SigBlk"].strip(),
    "uid": os.getresuid(), "gid": os.getresgid(), "groups": os.getgroups(),
    "caps": [status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
    "nnp": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
    "env": sorted(os.environ), "cwd": os.getcwd(), "pid": os.getpid(),
    "hostname": os.uname().nodename, "domainname": domain.value.decode(),
    "comm": open("/proc/self/comm").read().strip(),
}))
"#,
        )
        .await;
    let v = out.json();
    let uid = v["uid"][0].as_u64().unwrap() as u32;
    assert!((d.uid_first..d.uid_first + UID_COUNT).contains(&uid), "{v}");
    assert_eq!(v["uid"], serde_json::json!([uid, uid, uid]));
    assert_eq!(v["gid"], serde_json::json!([uid, uid, uid]));
    assert_eq!(v["groups"], serde_json::json!([]));
    assert_eq!(v["caps"], serde_json::json!(vec!["0000000000000000"; 5]));
    assert_eq!(v["nnp"], "1");
    assert_eq!(v["seccomp"], "2");
    // airlockd was started with SIGUSR2 ignored (harness): nothing of that
    // reaches the task.
    assert_eq!(v["signals_not_default"], serde_json::json!([]), "{v}");
    assert_eq!(v["sigint_handled"], true, "{v}");
    assert_eq!(v["blocked"], "0000000000000000", "{v}");
    // stdio plus the fd listdir itself opened
    assert_eq!(
        v["fds"],
        serde_json::json!([0, 1, 2, 3]),
        "an inherited fd leaked into the task"
    );
    assert_eq!(
        v["env"],
        serde_json::json!([
            "HOME",
            "LANG",
            "LOGNAME",
            "PATH",
            "RES_OPTIONS",
            "TMPDIR",
            "USER"
        ])
    );
    assert!(v["cwd"]
        .as_str()
        .unwrap()
        .starts_with(d.scratch_root.to_str().unwrap()));
    assert_eq!(v["pid"], 1, "the program is pid 1 of its own pid namespace");
    assert_eq!(
        v["hostname"], "airlock",
        "the worker's hostname reached the task"
    );
    assert_eq!(
        v["domainname"], "(none)",
        "the worker's NIS domain name reached the task"
    );
    // `ps`, `top` and `pgrep` on the worker name the task after its
    // program's file, as they name a program started by hand: the launcher
    // executes the descriptor it opened with `execveat(AT_EMPTY_PATH)`,
    // which Linux 6.14 and later name after the file (an exec of
    // `/proc/self/fd/N` was named `N`). /usr/bin/python3 is a link: the
    // name is the file's, at most 15 bytes.
    // Before 6.14 the kernel names it after the descriptor's number.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let version: Vec<u32> = release
        .trim()
        .split(['.', '-'])
        .take(2)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    if version >= vec![6, 14] {
        let file = std::fs::canonicalize("/usr/bin/python3").unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        assert_eq!(v["comm"], name[..name.len().min(15)], "{v}");
    } else {
        eprintln!("Linux {release:?}: the task's process name is not checked (it needs 6.14)");
    }
    let started = out.started.as_ref().unwrap();
    for layer in [
        "pid-ns",
        "mount-ns",
        "ipc-ns",
        "uts-ns",
        "uid",
        "caps",
        "no-new-privs",
        "landlock-fs",
        "landlock-net",
        "landlock-scope",
        "seccomp",
    ] {
        assert!(
            started.layers.iter().any(|l| l == layer),
            "layer {layer} missing from {:?}",
            started.layers
        );
    }
    assert!(started.landlock_abi >= 6, "this host runs Landlock ABI 6+");
}

#[tokio::test]
async fn alice_cannot_read_bobs_scratch_environ_or_memory() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut bob = python(
        "bob",
        "open('secret.txt','w').write('bob-secret-4711'); import time; time.sleep(60)",
    );
    bob.env = env(&[("BOB_TOKEN", "bob-env-secret-0815")]);
    let (bob_id, bob_task) = start_background(&d, bob).await;
    assert!(
        eventually(Duration::from_secs(10), || d
            .in_task(&bob_id, "secret.txt")
            .exists())
        .await
    );
    let bob_file = d.in_task(&bob_id, "secret.txt");
    // Positive control: the secret is there for whoever could read it.
    assert_eq!(
        std::fs::read_to_string(&bob_file).unwrap(),
        "bob-secret-4711"
    );
    let bob_pids = d.pool_processes();
    assert_eq!(bob_pids.len(), 1, "bob's task is python alone, its init");
    let bob_pid = *bob_pids.iter().max().unwrap();
    assert!(std::fs::read(format!("/proc/{bob_pid}/environ"))
        .unwrap()
        .windows(11)
        .any(|w| w == b"bob-env-sec"));

    let code = format!(
        r#"
import json, os
def attempt(f):
    try:
        return "LEAKED: " + repr(f())[:80]
    except Exception as e:
        return type(e).__name__
print(json.dumps({{
  "file": attempt(lambda: open("{file}").read()),
  "list": attempt(lambda: os.listdir("{dir}")),
  "environ": attempt(lambda: open("/proc/{pid}/environ", "rb").read()),
  "mem": attempt(lambda: open("/proc/{pid}/mem", "rb").read(16)),
  "root_via_proc": attempt(lambda: os.listdir("/proc/{pid}/root/")),
  "kill": attempt(lambda: os.kill({pid}, 0)),
}}))
"#,
        file = d.scratch_root.join(&bob_id).join("secret.txt").display(),
        dir = d.scratch_root.join(&bob_id).display(),
        pid = bob_pid
    );
    let v = d.python("alice", &code).await.json();
    for (attack, result) in v.as_object().unwrap() {
        assert!(
            !result.as_str().unwrap().starts_with("LEAKED"),
            "{attack}: {result}"
        );
    }
    assert_eq!(
        v["file"], "FileNotFoundError",
        "bob's scratch dir is not in alice's root"
    );
    assert_eq!(v["list"], "FileNotFoundError");
    assert_eq!(
        v["environ"], "FileNotFoundError",
        "bob's pid is not visible in alice's pid namespace"
    );
    assert_eq!(v["kill"], "ProcessLookupError");
    d.client()
        .await
        .cancel_task(airlock_protocol::v1::CancelTaskRequest { task_id: bob_id })
        .await
        .unwrap();
    bob_task.await.unwrap();
}

#[tokio::test]
async fn task_sees_no_host_process() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let v = d
        .python("alice", "import os, json; print(json.dumps(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())))")
        .await
        .json();
    assert_eq!(
        v,
        serde_json::json!([1]),
        "only the task itself, pid 1 of its namespace, is visible"
    );
}

#[tokio::test]
async fn task_cannot_read_or_write_outside_its_allowed_paths() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    // World-readable and world-writable to DAC: only Landlock stands in the way.
    let open_dir = d.dir.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let readable = world_readable_file(&open_dir, "readable.txt", "host-data-1234");
    // Unique, so that a file left on the host by another run cannot decide
    // this one.
    let marker = format!("airlock-test-mine-{}-{}", std::process::id(), d.uid_first);
    let code = format!(
        r#"
import json, os
def attempt(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__
print(json.dumps({{
  "read_outside": attempt(lambda: open("{readable}").read()),
  "write_world_writable": attempt(lambda: open("{open_dir}/planted", "w").write("x")),
  "write_etc": attempt(lambda: open("/etc/airlock-planted", "w").write("x")),
  "read_shadow": attempt(lambda: open("/etc/shadow").read()),
  "read_usr_bin": attempt(lambda: open("/usr/bin/id", "rb").read(4)),
  "list_root": attempt(lambda: os.listdir("/")),
  "list_scratch_root": attempt(lambda: os.listdir(os.path.dirname(os.getcwd()))),
  "write_scratch": attempt(lambda: open("mine.txt", "w").write("x")),
  "write_tmp": attempt(lambda: open("/tmp/{marker}", "w").write("x")),
  "write_shm": attempt(lambda: open("/dev/shm/{marker}", "w").write("x")),
  "read_python_lib": attempt(lambda: open("/usr/lib/python3.11/os.py").read(10)),
  "write_dev_null": attempt(lambda: open("/dev/null", "w").write("x")),
  "read_dev_zero": attempt(lambda: open("/dev/zero", "rb").read(4)),
  "read_urandom": attempt(lambda: len(os.urandom(4)) and open("/dev/urandom", "rb").read(4)),
  "write_urandom": attempt(lambda: open("/dev/urandom", "wb").write(b"x")),
  "write_dev_full": attempt(lambda: open("/dev/full", "w").write("x") and os.fsync(1)),
  "create_in_dev": attempt(lambda: open("/dev/planted", "w").write("x")),
}}))
"#,
        readable = readable.display(),
        open_dir = open_dir.display(),
        marker = marker,
    );
    let v = d.python("alice", &code).await.json();
    // Not in the task's root at all:
    assert_eq!(v["read_outside"], "FileNotFoundError");
    assert_eq!(v["write_world_writable"], "FileNotFoundError");
    assert_eq!(v["read_usr_bin"], "FileNotFoundError");
    // In the root, but Landlock grants no right on the root itself or on
    // the dirs leading to scratch; /etc is mounted read-only:
    assert_eq!(v["list_root"], "PermissionError");
    assert_eq!(v["list_scratch_root"], "PermissionError");
    assert_eq!(
        v["write_etc"], "OSError",
        "EROFS: the read-only bind mount stops it first"
    );
    assert_eq!(v["read_shadow"], "PermissionError");
    assert_eq!(v["write_scratch"], "ok");
    assert_eq!(v["write_tmp"], "ok");
    assert_eq!(v["write_shm"], "ok");
    assert_eq!(v["read_python_lib"], "ok");
    // /dev: the nodes work as on the host; random sources are read-only,
    // and nothing can be added.
    assert_eq!(v["write_dev_null"], "ok");
    assert_eq!(v["read_dev_zero"], "ok");
    assert_eq!(v["read_urandom"], "ok");
    assert_eq!(v["write_urandom"], "PermissionError");
    assert_eq!(v["write_dev_full"], "OSError", "ENOSPC, as on the host");
    assert_ne!(v["create_in_dev"], "ok");
    assert!(!open_dir.join("planted").exists());
    assert!(!std::path::Path::new("/etc/airlock-planted").exists());
    assert!(
        !std::path::Path::new("/tmp").join(&marker).exists(),
        "the task's /tmp is private"
    );
    assert!(
        !std::path::Path::new("/dev/shm").join(&marker).exists(),
        "the task's /dev/shm is private"
    );
}

/// Every task starts with an empty /tmp and /dev/shm, whoever ran before
/// it. Six tasks, alice's and bob's in turn, each listing both and then
/// leaving a file in each: the first task's mount namespace is made on
/// its request, the later ones' while their spawner was idle, so both
/// kinds are checked.
#[tokio::test]
async fn private_tmp_is_not_shared_between_tasks() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    for (i, user) in ["alice", "bob"].iter().cycle().take(6).enumerate() {
        let v = d
            .python(
                user,
                &format!(
                    "import os, json\n\
                     print(json.dumps(os.listdir('/tmp') + os.listdir('/dev/shm')))\n\
                     open('/tmp/{user}-{i}','w').write('1'); open('/dev/shm/{user}-{i}','w').write('1')"
                ),
            )
            .await
            .json();
        assert_eq!(v, serde_json::json!([]), "task {i} ({user})");
    }
}

/// System V IPC objects outlive the process that made them: a message
/// queue left by one task must not reach any later task, nor one running
/// beside it. Each task has an ipc namespace no other task was ever in.
#[tokio::test]
async fn ipc_objects_do_not_cross_tasks() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    // msgget through ctypes; 0o666 so that only the namespace keeps others
    // out. Prints the queue id, or the errno name.
    let queue = |flags: &str, then: &str| {
        format!(
            "import ctypes, errno, os, time\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             q = libc.msgget(0x4a11, {flags})\n\
             print(q if q >= 0 else errno.errorcode[ctypes.get_errno()], flush=True)\n\
             {then}"
        )
    };
    // IPC_CREAT | IPC_EXCL | 0o666: made here, left behind.
    let made = d
        .python("alice", &queue("0o1000 | 0o2000 | 0o666", ""))
        .await;
    assert!(
        made.stdout().trim().parse::<i32>().is_ok(),
        "alice could not make a queue: {:?} {:?}",
        made.stdout(),
        made.exited
    );
    // Later tasks, one after another (the same spawners as alice's task),
    // and again while a task of alice's holds a queue of its own.
    for _ in 0..4 {
        let found = d.python("bob", &queue("0", "")).await;
        assert_eq!(found.stdout().trim(), "ENOENT", "{:?}", found.exited);
    }
    let (_, holder) = start_background(
        &d,
        python("alice", &queue("0o1000 | 0o2000 | 0o666", "time.sleep(3)")),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    for _ in 0..4 {
        let found = d.python("bob", &queue("0", "")).await;
        assert_eq!(found.stdout().trim(), "ENOENT", "{:?}", found.exited);
    }
    let held = holder.await.unwrap();
    assert!(
        held.stdout().trim().parse::<i32>().is_ok(),
        "alice's second task could not make its queue: {:?} {:?}",
        held.stdout(),
        held.exited
    );
}

#[tokio::test]
async fn task_cannot_ptrace_signal_or_reach_the_supervisor() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    // A world-connectable socket of a host daemon under /run: Landlock does
    // not cover connecting by path, so /run is masked in the task.
    let run_socket =
        std::path::PathBuf::from(format!("/run/airlock-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&run_socket);
    let host_listener = std::os::unix::net::UnixListener::bind(&run_socket).unwrap();
    std::fs::set_permissions(
        &run_socket,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let code = format!(
        r#"
import ctypes, json, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
def errno_of(ret):
    return "ok" if ret == 0 else os.strerror(ctypes.get_errno())
def attempt(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__
r = {{}}
r["ptrace_child"] = errno_of(libc.ptrace(16, child, None, None))  # PTRACE_ATTACH
r["kill_supervisor"] = attempt(lambda: os.kill({daemon}, 0))
def connect_unix(addr):
    s = socket.socket(socket.AF_UNIX)
    s.connect(addr)
r["supervisor_socket"] = attempt(lambda: connect_unix("{socket}"))
r["host_socket_in_run"] = attempt(lambda: connect_unix("{run_socket}"))
r["inotify"] = "ok" if libc.inotify_init1(0) >= 0 else os.strerror(ctypes.get_errno())
os.kill(child, 9)
print(json.dumps(r))
"#,
        daemon = d.pid(),
        socket = d.socket.display(),
        run_socket = run_socket.display(),
    );
    let v = d.python("alice", &code).await.json();
    assert_eq!(
        v["ptrace_child"], "Operation not permitted",
        "seccomp denies ptrace"
    );
    assert_eq!(v["kill_supervisor"], "ProcessLookupError");
    assert_eq!(
        v["supervisor_socket"], "FileNotFoundError",
        "not in the task's root"
    );
    assert_eq!(
        v["host_socket_in_run"], "FileNotFoundError",
        "/run is masked"
    );
    assert_eq!(
        v["inotify"], "Operation not permitted",
        "seccomp denies inotify (a side channel on shared dirs)"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&run_socket).is_ok(),
        "positive control: the host socket accepts"
    );
    drop(host_listener);
    let _ = std::fs::remove_file(&run_socket);
}

/// Abstract unix sockets live in a network namespace, and every task has
/// its own, so no other tenant's is in reach. The second layer: Landlock's
/// scope keeps a task off abstract sockets made outside its sandbox even in
/// its own namespace. The test binds one there while the task tries to
/// connect to it.
#[tokio::test]
async fn abstract_sockets_made_outside_the_sandbox_are_out_of_reach() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let name = format!("airlock-test-{}", std::process::id());
    let code = format!(
        r#"
import json, socket, time
deadline = time.time() + 20
while True:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("\0{name}")
        r = "connected"
    except ConnectionRefusedError:
        if time.time() < deadline:
            time.sleep(0.05)
            continue
        r = "never bound"
    except Exception as e:
        r = type(e).__name__
    break
print(json.dumps({{"abstract_socket": r}}))
"#
    );
    let (id, task) = start_background(&d, python("alice", &code)).await;
    let ns = d.task_netns(&id);
    let addr = abstract_addr(&name);
    let listener = std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    })
    .join()
    .unwrap();
    let v = task.await.unwrap().json();
    assert_eq!(
        v["abstract_socket"], "PermissionError",
        "Landlock scopes abstract unix sockets: {v}"
    );
    drop(listener);
}

fn abstract_addr(name: &str) -> std::os::unix::net::SocketAddr {
    <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
        name.as_bytes(),
    )
    .unwrap()
}
