//! rlimits stop fork bombs, memory hogs, CPU burners and huge files; output
//! is bounded; a request cannot raise a limit above the policy's.

use airlock_protocol::v1::{task_event, ExitReason};

use crate::harness::*;

#[tokio::test]
async fn fork_bomb_is_stopped_by_the_process_limit() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()); // processes = 32
    let v = d
        .python(
            "alice",
            r#"
import json, os, time
n = 0
err = None
while n < 10000:
    try:
        pid = os.fork()
    except OSError as e:
        err = e.strerror
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
print(json.dumps({"forked": n, "error": err}))
"#,
        )
        .await
        .json();
    let forked = v["forked"].as_u64().unwrap();
    assert!(forked < 32, "forked {forked} processes with a limit of 32");
    assert_eq!(v["error"], "Resource temporarily unavailable");
    assert!(
        eventually(std::time::Duration::from_secs(5), || d
            .pool_processes()
            .is_empty())
        .await,
        "the children died with the task"
    );
}

#[tokio::test]
async fn memory_hog_is_stopped_by_the_memory_limit() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()); // memory = 512MiB
    let v = d
        .python(
            "alice",
            "import json\ntry:\n    b = bytearray(1 << 30)\n    print(json.dumps('allocated'))\nexcept MemoryError:\n    print(json.dumps('MemoryError'))\n",
        )
        .await
        .json();
    assert_eq!(v, "MemoryError");
}

#[tokio::test]
async fn output_is_bounded() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python(
        "alice",
        "import sys\nwhile True: sys.stdout.write('x' * 65536)",
    );
    req.limits = limits(|l| l.output_bytes = Some(100_000));
    let out = d.run(req).await;
    assert_eq!(out.reason(), ExitReason::Limit, "{:?}", out.exited);
    assert!(
        out.stdout.len() <= 100_000,
        "{} bytes streamed",
        out.stdout.len()
    );
    assert!(out.stdout.len() >= 65_536);
}

#[tokio::test]
async fn cpu_and_file_size_limits_end_or_refuse() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python("alice", "while True: pass");
    req.limits = limits(|l| l.cpu_seconds = Some(1));
    let out = d.run(req).await;
    assert_eq!(out.reason(), ExitReason::Limit, "{:?}", out.exited);
    assert!(out.exited().message.contains("CPU"), "{:?}", out.exited);

    let mut req = python(
        "alice",
        "import json\ntry:\n    open('big','wb').write(b'x' * (2 << 20))\n    print(json.dumps('written'))\nexcept OSError as e:\n    print(json.dumps(e.strerror))\n",
    );
    req.limits = limits(|l| l.file_size_bytes = Some(1 << 20));
    assert_eq!(d.run(req).await.json(), "File too large");
}

#[tokio::test]
async fn limit_above_policy_is_denied() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python("alice", "pass");
    req.limits = limits(|l| l.memory_bytes = Some(4 << 30));
    let status = d.run(req).await.status.expect("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("memory"), "{}", status.message());
}

#[tokio::test]
async fn scratch_dir_is_a_bounded_tmpfs_and_nothing_reaches_the_host_disk() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    // 1 MiB files, so that only the scratch limit can stop the sum.
    let mut req = python(
        "alice",
        r#"
import json, os
total, err = 0, None
try:
    for i in range(64):
        with open("fill-%d" % i, "wb") as f:
            for _ in range(16):
                f.write(b"z" * 65536)
                total += 65536
except OSError as e:
    err = e.strerror
st = os.statvfs(".")
mounts = [l.split() for l in open("/proc/self/mountinfo")]
fstype = [m[m.index("-") + 1] for m in mounts if m[4] == os.path.dirname(os.getcwd())]
print(json.dumps({"total": total, "error": err, "size": st.f_blocks * st.f_frsize,
                  "fstype": fstype, "mode": oct(os.stat(".").st_mode & 0o777),
                  "owner": os.stat(".").st_uid == os.getuid()}))
"#,
    );
    req.limits = Some(airlock_protocol::v1::Limits {
        file_size_bytes: Some(1 << 20),
        scratch_bytes: Some(8 << 20),
        ..Default::default()
    });
    let out = d.run(req).await;
    let v = out.json();
    let total = v["total"].as_u64().unwrap();
    assert!(
        total <= 8 << 20,
        "wrote {total} bytes into a scratch dir limited to 8 MiB: {v}"
    );
    assert_eq!(v["error"], "No space left on device", "{v}");
    assert_eq!(v["size"], 8 << 20, "{v}");
    assert_eq!(v["fstype"], serde_json::json!(["tmpfs"]), "{v}");
    assert_eq!(v["mode"], "0o700", "{v}");
    assert_eq!(v["owner"], true, "{v}");
    assert_eq!(
        out.started.as_ref().unwrap().limits.unwrap().scratch_bytes,
        Some(8 << 20)
    );
    assert!(d.scratch_dirs().is_empty(), "a scratch dir on the host");

    // A request above the policy's limit is denied, naming the limit.
    let mut req = python("alice", "print(1)");
    req.limits = Some(airlock_protocol::v1::Limits {
        scratch_bytes: Some(1 << 40),
        ..Default::default()
    });
    let status = d.run(req).await.status.expect("denied");
    assert!(status.message().contains("limits.scratch"), "{status:?}");
}

/// A spawner makes the next task's mount namespace while idle, with the
/// scratch size of the last task's request: a request for another size
/// must get a namespace of its own, never the one made ahead, and never a
/// scratch dir in which an earlier task's is still there. Tasks one after
/// another, alice's and bob's in turn: 8, 8, 16, 8 MiB and the default.
#[tokio::test]
async fn each_task_gets_the_scratch_size_it_asked_for() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut earlier = String::new();
    for (i, mib) in [Some(8u64), Some(8), Some(16), Some(8), None]
        .into_iter()
        .enumerate()
    {
        let code = format!(
            "import json, os\n\
             st = os.statvfs('.')\n\
             here = os.path.basename(os.getcwd())\n\
             seen = bool('{earlier}') and os.path.exists(os.path.join('..', '{earlier}'))\n\
             print(json.dumps({{'size': st.f_blocks * st.f_frsize, 'earlier_seen': seen, 'me': here}}))"
        );
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let mut req = python(user, &code);
        req.limits = limits(|l| l.scratch_bytes = mib.map(|m| m << 20));
        let v = d.run(req).await.json();
        let want = mib.map_or(256u64 << 20, |m| m << 20);
        assert_eq!(v["size"], want, "task {i}: {v}");
        assert_eq!(v["earlier_seen"], false, "task {i}: {v}");
        earlier = v["me"].as_str().unwrap_or_default().to_string();
        // Idle, so that the spawner makes the next namespace ahead.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// System V IPC is bounded per task: its shared memory by the policy's
/// `tmp` size (16 MiB here), like /tmp and /dev/shm, its message queues
/// and semaphores by small fixed counts. A fresh ipc namespace's own
/// bounds are practically none, and what no process has attached counts
/// against no rlimit: without these a task could hold the worker's memory
/// until its deadline. Empty messages cost the kernel 64 bytes each, and a
/// queue holds as many as its size in bytes: so few queues.
#[tokio::test]
async fn system_v_ipc_is_bounded() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()); // tmp = 16 MiB
    let v = d
        .python(
            "alice",
            r#"
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
IPC_PRIVATE, IPC_CREAT = 0, 0o1000
def err():
    return errno.errorcode[ctypes.get_errno()]
MiB = 1 << 20
one = libc.shmget(IPC_PRIVATE, 17 * MiB, IPC_CREAT | 0o600)
one = one if one >= 0 else err()
segments = 0
while libc.shmget(IPC_PRIVATE, 4 * MiB, IPC_CREAT | 0o600) >= 0:
    segments += 1
    if segments > 64: break
shm_end = err()
ids = []
while len(ids) <= 100000:
    q = libc.msgget(IPC_PRIVATE, IPC_CREAT | 0o600)
    if q < 0: break
    ids.append(q)
queues = len(ids)
msg_end = err()
libc.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
IPC_NOWAIT = 0o4000
empty = ctypes.c_long(1)
held = 0
for q in ids:
    while libc.msgsnd(q, ctypes.byref(empty), 0, IPC_NOWAIT) == 0:
        held += 1
        if held > 10**7: break
sets = 0
while libc.semget(IPC_PRIVATE, 250, IPC_CREAT | 0o600) >= 0:
    sets += 1
    if sets > 100000: break
sem_end = err()
print(json.dumps({"one": one, "segments": segments, "shm_end": shm_end,
                  "queues": queues, "msg_end": msg_end, "held": held, "sets": sets, "sem_end": sem_end}))
"#,
        )
        .await
        .json();
    // One segment larger than tmp: refused; 4 MiB ones: four fit in 16 MiB.
    assert_eq!(v["one"], "ENOSPC", "{v}");
    assert_eq!(v["segments"], 4, "{v}");
    assert_eq!(v["shm_end"], "ENOSPC", "{v}");
    assert_eq!(v["queues"], 4, "{v}");
    assert_eq!(v["msg_end"], "ENOSPC", "{v}");
    // Each queue takes as many empty messages as its 16 KiB: 4 MiB of
    // kernel memory in all.
    assert_eq!(v["held"], 4 * 16384, "{v}");
    // 32,000 semaphores: 128 sets of 250.
    assert_eq!(v["sets"], 128, "{v}");
    assert_eq!(v["sem_end"], "ENOSPC", "{v}");
}

/// Output a driver does not read yet waits in airlockd in a few chunks,
/// and then in the task's pipe (its writes block): 64 queued events of up
/// to 64 KiB each held 4.4 MiB a task, which 1,000 tasks make 4.4 GiB.
#[tokio::test]
async fn unread_output_holds_little_of_airlockds_memory() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(large_output());
    let before = d.rss_kib();
    let code = "import os, time\nb = b'x' * 65536\nfor _ in range(200): os.write(1, b)\nprint('unreachable')";
    let mut streams = Vec::new();
    for _ in 0..20 {
        // Started, then nothing more is read.
        streams.push(d.start_unread(python("alice", code)).await);
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let per_task = d.rss_kib().saturating_sub(before) / 20;
    assert!(per_task < 1024, "{per_task} KiB a task");
    // The tasks wait on their pipes: none got past its writes.
    assert_eq!(d.pool_processes().len(), 20);
}

/// A task writing a byte at a time used to get an event each write: half
/// a million in 2 s, and a client's HTTP/2 layer that read more slowly
/// closed the whole connection over so many small frames
/// (`too_many_data_frames`), ending another user's task that shared it.
#[tokio::test]
async fn tiny_writes_do_not_cost_a_shared_connection() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(large_output());
    // One connection, as a driver's channel is.
    let client = d.client().await;
    let collect = |mut client: airlock_protocol::v1::airlock_client::AirlockClient<
        tonic::transport::Channel,
    >,
                   req| async move {
        let mut stream = client.run_task(req).await.unwrap().into_inner();
        let mut out = Outcome::default();
        let mut events = 0;
        while let Some(ev) = stream.message().await.unwrap() {
            events += 1;
            match ev.event.unwrap() {
                task_event::Event::Output(o) => out.stdout.extend(o.data),
                task_event::Event::Exited(e) => out.exited = Some(e),
                task_event::Event::Started(s) => out.started = Some(s),
            }
        }
        (out, events)
    };
    let bob = tokio::spawn(collect(
        client.clone(),
        python("bob", "import time; time.sleep(4); print('bob done')"),
    ));
    let code = "import os, time\nt = time.monotonic()\nwhile time.monotonic() - t < 3:\n    os.write(1, b'x')";
    let (alice, events) = collect(client.clone(), python("alice", code)).await;
    assert_eq!(alice.reason(), ExitReason::Completed, "{:?}", alice.exited);
    let (bob, _) = bob.await.unwrap();
    assert_eq!(bob.ok().stdout(), "bob done\n");
    // An event waits 2 ms for more output: at most 1,500 in 3 s, and a
    // few more when chunks fill.
    let bytes = alice.stdout.len();
    assert!(bytes > 10_000, "{bytes} bytes");
    assert!(
        events < 1_600 + bytes / 65_536,
        "{bytes} bytes in {events} events"
    );
}

/// A driver that pauses past the task's end (a user paging through its
/// output) still gets all of it, then `Exited`: the readers' last chunks
/// used to be dropped 5 s after the task ended.
#[tokio::test]
async fn a_driver_that_pauses_gets_all_the_output() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(large_output());
    let code = "import os, sys\nsys.stdout.write('x' * 2_330_000)\nsys.stdout.flush()\nos.write(2, b'stderr-end')";
    // Started; then the task writes all, blocks, and ends while the
    // driver reads nothing for 7 s.
    let mut stream = d.start_unread(python("alice", code)).await;
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let mut out = Outcome::default();
    read_events(&mut stream, &mut out).await;
    assert_eq!(out.reason(), ExitReason::Completed, "{:?}", out.exited);
    assert_eq!(out.stdout.len(), 2_330_000);
    assert_eq!(out.stderr(), "stderr-end");

    // A task that ends while its pipe is full and airlockd's chunk too:
    // what is left in the pipe still goes when the driver reads.
    let code = r#"
import os, time
os.set_blocking(1, False)
n = 0
last = time.monotonic()
while time.monotonic() - last < 1:
    try:
        n += os.write(1, b'y' * 4096)
        last = time.monotonic()
    except BlockingIOError:
        time.sleep(0.01)
os.write(2, str(n).encode())
"#;
    let mut stream = d.start_unread(python("alice", code)).await;
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    let mut out = Outcome::default();
    read_events(&mut stream, &mut out).await;
    assert_eq!(out.reason(), ExitReason::Completed, "{:?}", out.exited);
    assert_eq!(out.stdout.len().to_string(), out.stderr());
    assert!(!d.log().contains("task output still open"), "{}", d.log());
}

/// A task cancelled while its driver reads nothing ends at once: its end
/// does not wait on its pipes (each used to take 5 s, holding
/// the task's uid), and what it wrote still goes when the driver reads.
#[tokio::test]
async fn a_cancelled_task_of_a_paused_driver_ends_at_once() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(large_output());
    let code = "import os, sys\nos.write(2, b'e' * 2_000_000)\nsys.stdout.write('o' * 3_000_000)";
    let mut req = python("alice", code);
    req.task_id = "paused".into();
    let mut stream = d.start_unread(req).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut client = d.client().await;
    client
        .cancel_task(airlock_protocol::v1::CancelTaskRequest {
            task_id: "paused".into(),
        })
        .await
        .unwrap();
    let ended = eventually(std::time::Duration::from_secs(3), || {
        d.audit()
            .iter()
            .any(|r| r["event"] == "task_end" && r["task_id"] == "paused")
    })
    .await;
    assert!(ended, "the task did not end");
    let mut out = Outcome::default();
    read_events(&mut stream, &mut out).await;
    assert_eq!(out.reason(), ExitReason::Cancelled, "{:?}", out.exited);
    assert!(!d.log().contains("task output still open"), "{}", d.log());
}

/// The default policy with 16 MiB of output a task.
fn large_output() -> Opts {
    Opts {
        limits: "memory = \"512MiB\"\nprocesses = 32\nwall_time = \"60s\"\noutput = \"16MiB\"\ntmp = \"16MiB\"\n",
        ..Opts::default()
    }
}

/// Fills the pipe of each file descriptor of FDS in turn (raised to
/// 1 MiB) without blocking until it has taken nothing for a second, and
/// exits: a driver that is not reading then leaves output in airlockd and
/// in the pipes when the task ends (its HTTP/2 window takes about 2 MiB a
/// stream), the first stream's events ahead of the next's.
fn fill_and_exit(fds: &str) -> String {
    format!(
        r#"
import fcntl, os, time
for fd in {fds}:
    fcntl.fcntl(fd, 1031, 1 << 20)
    os.set_blocking(fd, False)
    last = time.monotonic()
    while time.monotonic() - last < 1:
        try:
            os.write(fd, b'x' * 4096)
            last = time.monotonic()
        except BlockingIOError:
            time.sleep(0.005)
"#
    )
}

/// What a task left in its pipes when it ended counts against its output
/// limit, and passing it is reported as the limit (it was reported
/// Completed, the rest dropped silently).
#[tokio::test]
async fn output_left_in_the_pipes_at_the_end_counts_against_the_limit() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts {
        limits: "memory = \"512MiB\"\nprocesses = 32\nwall_time = \"60s\"\noutput = \"3MiB\"\ntmp = \"16MiB\"\n",
        ..Opts::default()
    });
    let mut stream = d
        .start_unread(python("alice", &fill_and_exit("(1,)")))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let mut out = Outcome::default();
    read_events(&mut stream, &mut out).await;
    assert_eq!(out.reason(), ExitReason::Limit, "{:?}", out.exited);
    assert!(
        out.exited().message.contains("as the task ended"),
        "{:?}",
        out.exited
    );
    assert!(out.stdout.len() <= 3 << 20);
}

/// Once a task has ended, a driver that takes an event at least once a
/// minute, on either stream, gets everything, then `Exited`, and no
/// reader gives up on it (a review saw the stderr reader, whose events
/// waited behind stdout's, give up when only stdout's were taken; this
/// test does not force that order).
#[tokio::test]
async fn an_ended_tasks_output_waits_for_a_driver_that_takes_an_event_a_minute() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(large_output());
    let mut stream = d
        .start_unread(python("alice", &fill_and_exit("(1, 2)")))
        .await;
    let mut out = Outcome::default();
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_secs(40)).await;
        stream.message().await.unwrap().unwrap();
    }
    read_events(&mut stream, &mut out).await;
    assert_eq!(out.reason(), ExitReason::Completed, "{:?}", out.exited);
    assert!(
        !d.log().contains("its stream ends without the rest"),
        "{}",
        d.log()
    );
}

/// A driver silent for a minute after its task ended, with output left,
/// gets a stream that ends without `Exited`, not a `Completed` that hides
/// what was dropped.
#[tokio::test]
async fn a_driver_silent_for_a_minute_gets_no_exited() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(large_output());
    let mut stream = d.start_unread(python("bob", &fill_and_exit("(1,)"))).await;
    tokio::time::sleep(std::time::Duration::from_secs(65)).await;
    let mut out = Outcome::default();
    read_events(&mut stream, &mut out).await;
    assert!(out.exited.is_none(), "{:?}", out.exited);
    assert!(
        d.log().contains("its stream ends without the rest"),
        "{}",
        d.log()
    );
}
