//! A task's life: stdin and exit codes pass through; timeout and cancel kill
//! the whole tree, double-forked daemons included; purge leaves nothing; a
//! crashed supervisor's leftovers are cleaned at start-up; audit records.

use std::time::Duration;

use airlock_protocol::v1::{
    CancelTaskRequest, ExitReason, GetTaskRequest, ListTasksRequest, TaskState,
};

use crate::harness::*;

/// Double-forks a daemon that outlives its parent, then waits forever.
const DOUBLE_FORK: &str = r#"
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open("daemon.pid", "w").write("alive")
        time.sleep(300)
    os._exit(0)
time.sleep(300)
"#;

#[tokio::test]
async fn stdin_exit_code_and_output_pass_through() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python("alice", "import sys; data = sys.stdin.read(); print(data.upper()); sys.stderr.write('err'); sys.exit(3)");
    req.stdin = b"hello".to_vec();
    let out = d.run(req).await;
    assert_eq!(out.stdout(), "HELLO\n");
    assert_eq!(out.stderr(), "err");
    assert_eq!(out.reason(), ExitReason::Completed);
    assert_eq!(out.exited().exit_code, Some(3));
}

/// A task given no stdin reads end-of-file at once, rather than waiting
/// for the deadline.
#[tokio::test]
async fn empty_stdin_is_end_of_file() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python("alice", "import sys; print(repr(sys.stdin.read()))");
    req.timeout_ms = 10_000;
    let out = d.run(req).await;
    assert_eq!(out.reason(), ExitReason::Completed, "{:?}", out.exited);
    assert_eq!(out.stdout(), "''\n");
}

/// The program is pid 1 of its namespace, and the spawner reports how it
/// ended: when it exits, whatever it left running dies with it.
#[tokio::test]
async fn the_programs_end_is_the_tasks_end() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let out = d
        .run(python(
            "alice",
            "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n    os._exit(0)\nsys.exit(3)",
        ))
        .await;
    assert_eq!(out.reason(), ExitReason::Completed, "{:?}", out.exited);
    assert_eq!(out.exited().exit_code, Some(3));
    assert!(
        d.pool_processes().is_empty(),
        "the program's child outlived it: {:?}",
        d.pool_processes()
    );
    // A fault ends pid 1 as it ends any process.
    let out = d
        .run(python("alice", "import ctypes; ctypes.string_at(0)"))
        .await;
    assert_eq!(out.exited().signal, Some(libc::SIGSEGV), "{:?}", out.exited);
}

/// The program, pid 1 of its namespace, may clear its parent-death signal
/// or set one that pid 1 ignores: a crashed airlockd's tasks still die,
/// because the spawner kills them when airlockd's socket closes.
#[tokio::test]
async fn no_task_outlives_a_crashed_airlockd_whatever_its_parent_death_signal() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start(Opts::default());
    let code = |sig: i32| {
        format!(
            "import ctypes, time\nlibc = ctypes.CDLL(None)\nassert libc.prctl(1, {sig}, 0, 0, 0) == 0\nopen('armed', 'w').write('x')\ntime.sleep(300)\n"
        )
    };
    let (a, _alice) = start_background(&d, python("alice", &code(0))).await;
    let (b, _bob) = start_background(&d, python("bob", &code(libc::SIGTERM))).await;
    for id in [&a, &b] {
        assert!(eventually(Duration::from_secs(10), || d.in_task(id, "armed").exists()).await);
    }
    d.crash();
    let gone = eventually(Duration::from_secs(5), || d.pool_processes().is_empty()).await;
    let survivors = d.pool_processes();
    d.restart();
    assert!(gone, "tasks outlived the crashed airlockd: {survivors:?}");
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_and_purges() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python("alice", DOUBLE_FORK);
    req.timeout_ms = 1500;
    let out = d.run(req).await;
    assert_eq!(out.reason(), ExitReason::Timeout, "{:?}", out.exited);
    assert!(
        d.pool_processes().is_empty(),
        "a process of the task survived: {:?}",
        d.pool_processes()
    );
    assert!(d.scratch_dirs().is_empty(), "scratch dir left behind");
    let audit = d.audit();
    let end = audit
        .iter()
        .find(|r| r["event"] == "task_end")
        .expect("task_end record");
    assert_eq!(end["reason"], "timeout");
    assert_eq!(end["cleaned"]["scratch_removed"], true);
    assert_eq!(end["cleaned"]["uid_released"], true);
    assert_eq!(end["user"], "alice");
}

#[tokio::test]
async fn cancel_kills_the_whole_tree() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let (id, task) = start_background(&d, python("alice", DOUBLE_FORK)).await;
    assert!(
        eventually(Duration::from_secs(10), || d
            .in_task(&id, "daemon.pid")
            .exists())
        .await,
        "daemon never started"
    );
    let marker = d.in_task(&id, "daemon.pid");
    assert!(
        d.pool_processes().len() >= 3,
        "init, task and its daemon run"
    );
    let info = d
        .client()
        .await
        .get_task(GetTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, TaskState::Running as i32);
    d.client()
        .await
        .cancel_task(CancelTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap();
    let out = task.await.unwrap();
    assert_eq!(out.reason(), ExitReason::Cancelled);
    assert!(
        d.pool_processes().is_empty(),
        "survivors: {:?}",
        d.pool_processes()
    );
    assert!(!marker.exists());
    let listed = d.list_tasks(0, "").await;
    let ended = listed.tasks.iter().find(|t| t.task_id == id).unwrap();
    assert_eq!(ended.state, TaskState::Exited as i32);
    let err = d
        .client()
        .await
        .cancel_task(CancelTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // Both cancels are in the audit log, with who asked.
    let cancels: Vec<_> = d
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "cancel" && r["task_id"] == id.as_str())
        .map(|r| (r["found"].clone(), r["driver_uid"].clone()))
        .collect();
    assert_eq!(
        cancels,
        [
            (serde_json::json!(true), serde_json::json!(0)),
            (serde_json::json!(false), serde_json::json!(0))
        ]
    );
}

/// A driver that hangs up ends its tasks, even ones that print nothing,
/// whose end airlockd would otherwise notice only at their deadline.
#[tokio::test]
async fn a_silent_task_ends_when_its_driver_hangs_up() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let (_, stream) = start_background(&d, python("alice", "import time; time.sleep(60)")).await;
    assert!(!d.pool_processes().is_empty(), "the task is not running");
    stream.abort();
    assert!(
        eventually(Duration::from_secs(5), || d.pool_processes().is_empty()).await,
        "the task outlived its driver's stream: {:?}",
        d.pool_processes()
    );
}

#[tokio::test]
async fn duplicate_live_task_id_is_rejected() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python("alice", "import time; time.sleep(60)");
    req.task_id = "job-1".into();
    let (_, task) = start_background(&d, req.clone()).await;
    let status = d.run(req).await.status.expect("rejected");
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    // The audit log says the second never ran: one "allow" for job-1.
    let decisions: Vec<_> = d
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "admission" && r["task_id"] == "job-1")
        .map(|r| r["decision"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(decisions, ["allow", "refused"]);
    d.client()
        .await
        .cancel_task(CancelTaskRequest {
            task_id: "job-1".into(),
        })
        .await
        .unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn restart_after_crash_cleans_leftovers() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start(Opts::default());
    let (id, _task) = start_background(&d, python("alice", DOUBLE_FORK)).await;
    assert!(
        eventually(Duration::from_secs(10), || d
            .in_task(&id, "daemon.pid")
            .exists())
        .await
    );
    d.crash();
    // No task outlives its supervisor: the launcher kills it when airlockd's
    // end of the plan socket closes.
    assert!(
        eventually(Duration::from_secs(5), || d.pool_processes().is_empty()).await,
        "the task outlived the crashed supervisor: {:?}",
        d.pool_processes()
    );
    assert!(
        !d.scratch_root.join(&id).exists(),
        "the scratch dir is a tmpfs of the task's: nothing of it is on the host"
    );
    // A scratch dir an older airlockd (host directories, each its task
    // uid's) left behind.
    let old = d.scratch_root.join("t-left-by-an-old-version");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("data"), "x").unwrap();
    std::os::unix::fs::chown(&old, Some(d.uid_first + 3), None).unwrap();
    // A scratch root on a file system of its own has a lost+found, which
    // start-up neither refuses nor removes.
    let lost = d.scratch_root.join("lost+found");
    std::fs::create_dir(&lost).unwrap();
    d.restart();
    assert!(lost.is_dir(), "start-up removed lost+found");
    assert!(
        d.pool_processes().is_empty(),
        "start-up left processes of pool uids: {:?}",
        d.pool_processes()
    );
    assert!(!old.exists(), "start-up left the old scratch dir");
    let start = d
        .audit()
        .into_iter()
        .rfind(|r| r["event"] == "start")
        .unwrap();
    assert_eq!(start["removed_scratch_dirs"], 1);
}

#[tokio::test]
async fn deep_directory_tree_is_purged_without_harm() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    // 20,000 nested dirs overflowed a recursive removal and crashed airlockd.
    let out = d
        .python("alice", "import os\nfor _ in range(20000):\n    os.mkdir('d')\n    os.chdir('d')\nprint('deep')")
        .await;
    assert_eq!(out.ok().stdout(), "deep\n");
    assert!(d.scratch_dirs().is_empty(), "the deep tree was left behind");
    d.python("bob", "print('still serving')").await.ok();
    let end = d
        .audit()
        .into_iter()
        .find(|r| r["event"] == "task_end")
        .unwrap();
    assert_eq!(end["cleaned"]["scratch_removed"], true);
    assert_eq!(end["cleaned"]["uid_released"], true);
}

/// The spawner (airlock-launch, started once by airlockd) forks every
/// task's launcher. If it dies, the next task starts a new one; and it
/// never outlives airlockd, not even a crashed one.
#[tokio::test]
async fn a_killed_spawner_is_replaced_and_none_outlives_airlockd() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start(Opts::default());
    let airlockd = d.pid();
    let first = spawners(airlockd);
    assert!(
        first.len() >= 2,
        "a spawner per core, at least 2, started with airlockd: {first:?}"
    );
    for pid in &first {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = d.python("alice", "print('after')").await;
    assert_eq!(out.stdout(), "after\n", "{:?}", out.exited);
    let second = spawners(airlockd);
    assert!(!second.is_empty(), "a new spawner");
    assert!(
        second.iter().all(|pid| !first.contains(pid)),
        "the killed spawners are gone: {first:?}, {second:?}"
    );
    // Even when airlockd crashes: a spawner sees its socket close.
    d.crash();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for pid in second {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the spawner outlived airlockd"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A task's launcher runs in its spawner's memory until its exec
/// (`launch::vfork`): nothing it allocates may stay there, and killing it
/// in the middle of its setup must leave the spawner whole.
#[tokio::test]
async fn launchers_leave_nothing_in_their_spawners_memory_even_when_killed_in_setup() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let pids = spawners(d.pid());
    let four = || async {
        let (a, b, c, e) = tokio::join!(
            d.python("alice", "print('ok')"),
            d.python("alice", "print('ok')"),
            d.python("alice", "print('ok')"),
            d.python("alice", "print('ok')"),
        );
        for out in [a, b, c, e] {
            assert_eq!(out.stdout(), "ok\n", "{:?}", out.exited);
        }
    };
    // The templates, and the first pages of the launchers' arena.
    for _ in 0..3 {
        four().await;
    }
    let rss = || -> u64 { pids.iter().map(|pid| rss_kib(*pid)).sum() };
    let before = rss();
    for _ in 0..50 {
        four().await;
    }
    // Launchers that allocated from the spawner's heap left about half a
    // KiB each behind there: 48 KiB over 100 tasks, measured once.
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 16,
        "the spawners grew by {grown} KiB over 200 tasks: launchers' memory stays in them"
    );
    // A wall-clock limit of a millisecond or two ends most of these tasks
    // while their launcher sets the sandbox up.
    for i in 0..40 {
        let mut req = python("alice", "print('ok')");
        req.timeout_ms = 1 + i % 2;
        let out = d.run(req).await;
        assert!(out.exited.is_some(), "{:?}", out.status);
    }
    four().await;
    assert_eq!(spawners(d.pid()), pids, "a spawner died and was replaced");
}

/// A spawner holds each task's mount namespace past the task's end, so
/// that its teardown (unmounting, the end of the task's tmpfs) comes after
/// the end is reported, and then hands it to a process of its own that
/// tears it down (`launch::Teardown`): nothing of an ended task stays.
#[tokio::test]
async fn an_ended_tasks_mounts_are_torn_down_after_its_end() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    // Each task fills a file in its /tmp (pages that only the end of its
    // mount namespace frees) and names its mount namespace.
    let code = "import os\n\
        open('/tmp/fill', 'wb').write(bytes(1 << 20))\n\
        print(os.readlink('/proc/self/ns/mnt'))";
    let mut ended = Vec::new();
    for _ in 0..3 {
        let (a, b, c, e) = tokio::join!(
            d.python("alice", code),
            d.python("alice", code),
            d.python("alice", code),
            d.python("alice", code),
        );
        for out in [a, b, c, e] {
            let ns = out.stdout();
            assert!(ns.starts_with("mnt:["), "{ns:?} {:?}", out.exited);
            ended.push(ns.trim().to_string());
        }
    }
    // A namespace number is reused once its namespace is gone: the one an
    // idle spawner made ahead for its next task may have an ended task's
    // number. It is that task's only if it holds the task's file.
    let holds_fill = |ns: &std::path::Path| {
        std::process::Command::new("nsenter")
            .arg(format!("--mount={}", ns.display()))
            .args(["/usr/bin/python3", "-c"])
            .arg("import os, sys; sys.exit(0 if os.path.exists('/tmp/fill') else 1)")
            .status()
            .is_ok_and(|s| s.success())
    };
    let held = || -> Vec<String> {
        let spawners = spawners(d.pid());
        let teardowns = spawners
            .iter()
            .flat_map(|&s| children(s, "airlock-unmount"));
        spawners
            .iter()
            .copied()
            .chain(teardowns)
            .flat_map(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .filter_map(|fd| Some((std::fs::read_link(fd.path()).ok()?, fd.path())))
            .map(|(target, fd)| (target.display().to_string(), fd))
            .filter(|(target, fd)| ended.contains(target) && holds_fill(fd))
            .map(|(target, _)| target)
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !held().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "spawners or their teardown processes still hold ended tasks' mount namespaces: {:?}",
            held()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A spawner joins each task's template root to make the task's mount
/// namespace, which moves its root to that namespace's root; it must come
/// back to its own. Run chrooted, airlockd's spawners must stay in the
/// jail after making tasks' namespaces, or every later template would be
/// built from the host's files.
#[tokio::test]
async fn spawners_stay_in_airlockds_chroot() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts {
        chroot: true,
        ..Opts::default()
    });
    for _ in 0..4 {
        let (a, b) = tokio::join!(d.python("alice", "pass"), d.python("bob", "pass"));
        a.ok();
        b.ok();
    }
    // Wait for the namespaces made ahead, while idle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let jail = d.dir.path().join("jail");
    let pids = spawners(d.pid());
    assert!(!pids.is_empty());
    for pid in pids {
        let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
        assert_eq!(root, jail, "spawner {pid}'s root");
    }
}

/// airlockd's spawners: its children named airlock-launch.
fn spawners(parent: i32) -> Vec<i32> {
    children(parent, "airlock-launch")
}

/// The live children of `parent` named `comm`.
fn children(parent: i32, comm: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may hold spaces.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let mut fields = after.split_whitespace();
            // A killed spawner stays a zombie until airlockd next uses its
            // slot.
            stat.contains(&format!("({comm})"))
                && fields.next() != Some("Z")
                && fields.next() == Some(&parent.to_string())
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Tasks with the largest arguments a request may carry (1 MiB) neither
/// make `ListTasks` too large for a client's default 4 MiB limit (it did:
/// 40 such tasks made a 39 MB answer, which broke `airlock ps` for every
/// driver) nor keep that much of airlockd's memory (44 MiB for those 40
/// tasks, which would have been a GiB for the 1,000 ended tasks kept).
/// `ListTasks` pages list every task once.
#[tokio::test]
async fn large_arguments_do_not_break_list_tasks() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let before = d.rss_kib();
    // Eight arguments of 120 KiB: 960 KiB, under the 1 MiB total.
    let big = "x".repeat(120 << 10);
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut req = python("alice", "import sys; assert len(sys.argv) == 9");
        req.task_id = format!("big-{i:02}");
        req.args.extend(std::iter::repeat_n(big.clone(), 8));
        d.run(req).await.ok();
        ids.push(format!("big-{i:02}"));
    }
    let grown = d.rss_kib().saturating_sub(before);
    assert!(grown < 16 << 10, "airlockd grew by {grown} KiB");

    let listed = d.list_tasks(0, "").await;
    assert_eq!(listed.tasks.len(), 40);
    assert!(listed.next_page_token.is_empty());
    for task in &listed.tasks {
        let shown: usize = task.args.iter().map(String::len).sum();
        assert!(task.abridged && shown == 4096, "{shown} bytes shown");
        assert_eq!(task.args[0], "-c");
    }
    // Seven at a time: every task once, in start order.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = d.list_tasks(7, &token).await;
        assert!(page.tasks.len() <= 7);
        paged.extend(page.tasks.into_iter().map(|t| t.task_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, ids);
    let err = d
        .client()
        .await
        .list_tasks(ListTasksRequest {
            page_size: 0,
            page_token: "not a token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("next_page_token"),
        "{}",
        err.message()
    );

    // The CLI reads every page.
    let socket = format!("unix:{}", d.socket.display());
    let (code, stdout, stderr) = crate::operators::airlock_cli(&["--endpoint", &socket, "ps"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("big-")).count(),
        40,
        "{stdout}"
    );
}
