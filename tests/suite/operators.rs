//! What operators rely on: pinned programs run only as the exact file that
//! was hashed; `airlock policy check` reports errors by line and warns about
//! risky entries; `policy explain` gives the decision RunTask makes; a reload
//! (API or SIGHUP) loses no task and a broken file changes nothing;
//! airlockd refuses to start on a uid pool or scratch root that is not its
//! alone, before its start-up clean-up could harm anything.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use airlock_protocol::v1::{ExitReason, RunTaskRequest};

use crate::harness::*;

fn sha256(path: &Path) -> String {
    airlock_executor::pin::sha256_hex(std::fs::File::open(path).unwrap()).unwrap()
}

/// Puts `content` in `path`'s place the way a package upgrade does: a new
/// file renamed over the old one.
fn replace(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn run_program(program: &Path, args: &[&str]) -> RunTaskRequest {
    RunTaskRequest {
        user: "alice".into(),
        program: program.display().to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn pinned_program_swapped_after_load_is_refused_and_never_runs() {
    if !privileged() {
        return;
    }
    let bin = shared_tempdir("airlock-pin-");
    let pinned = bin.path().join("python3-pinned");
    let unpinned = bin.path().join("python3-unpinned");
    for copy in [&pinned, &unpinned] {
        std::fs::copy("/usr/bin/python3.11", copy).unwrap();
    }
    let digest = sha256(&pinned);
    let programs = format!(
        "[[program]]\npath = {pinned:?}\nsha256 = \"{digest}\"\n\n[[program]]\npath = {unpinned:?}\n"
    );
    let d = Daemon::start(Opts {
        extra_programs: Box::leak(programs.into_boxed_str()),
        ..Default::default()
    });

    let out = d
        .run(run_program(&pinned, &["-c", "print('pinned ok')"]))
        .await;
    assert_eq!(out.ok().stdout(), "pinned ok\n");

    // Another program in its place: /usr/bin/id, which announces itself
    // with "uid=" (its libraries are in the task's read-only paths).
    let other = std::fs::read("/usr/bin/id").unwrap();
    replace(&pinned, &other);
    replace(&unpinned, &other);
    let swapped = sha256(&pinned);

    let out = d.run(run_program(&pinned, &[])).await;
    assert_eq!(out.reason(), ExitReason::SpawnFailed, "{:?}", out.exited);
    let message = &out.exited().message;
    assert!(
        message.contains(&digest),
        "names the pinned digest: {message}"
    );
    assert!(
        message.contains(&swapped),
        "names the file's digest: {message}"
    );
    assert!(
        message.contains(&pinned.display().to_string()),
        "names the program: {message}"
    );
    assert!(out.started.is_none(), "the task never started");
    assert!(!out.stdout().contains("uid="), "{}", out.stdout());
    // The operator, who can mend it, reads the same in airlockd's log.
    let logged = d
        .log()
        .lines()
        .any(|l| l.contains("task could not start") && l.contains(&swapped));
    assert!(logged, "{}", d.log());

    // Control: the same swap of an unpinned program does run the new file,
    // so the refusal above is the pin's doing.
    let out = d.run(run_program(&unpinned, &[])).await;
    assert!(out.ok().stdout().starts_with("uid="), "{}", out.stdout());
    assert!(d.scratch_dirs().is_empty());
}

/// Runs the `airlock` CLI and returns (exit code, stdout, stderr).
pub fn airlock_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin_dir().join("airlock"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_check_prints_errors_with_lines_and_warnings_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let file_arg = file.to_str().unwrap();
    let risky = "cluster = \"c\"\nmode = \"shared\"\n[sandbox]\nuid_first = 200000\n\
                 uid_count = 5\nscratch_root = \"/var/lib/airlock/tasks\"\nread_only = [\"/usr/bin\", \"/srv/nowhere\"]\n\
                 [network]\nmode = \"host\"\nconnect_tcp = [443, 80]\n\
                 [[program]]\npath = \"/usr/bin/python3\"\n[[program]]\npath = \"/opt/nowhere/tool\"\n\
                 [[program]]\npath = \"/etc/passwd\"\n";
    // A program only its owner may run: tasks' uids are others.
    let own_dir = shared_tempdir("airlock-own-");
    let own = own_dir.path().join("owner-only");
    std::fs::write(&own, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).unwrap();
    let risky = format!(
        "{risky}[[program]]\npath = {:?}\n",
        own.display().to_string()
    );
    let risky = risky.as_str();
    std::fs::write(&file, risky).unwrap();
    let (code, stdout, stderr) = airlock_cli(&["policy", "check", file_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok (cluster c, 4 programs, 6 warnings)"),
        "{stdout}"
    );
    for at in [
        "7:14: warning: sandbox.read_only[1]: /usr/bin is a directory of executables",
        "10:21: warning: network.connect_tcp[2]: port 80",
        "7:26: warning: sandbox.read_only[2]: /srv/nowhere does not exist on this host",
        "14:8: warning: program[2].path: /opt/nowhere/tool does not exist on this host",
        "16:8: warning: program[3].path: /etc/passwd is not a file that tasks may execute",
        "18:8: warning: program[4].path: ",
    ] {
        assert!(
            stderr.contains(&format!("{file_arg}:{at}")),
            "{at}: {stderr}"
        );
    }
    let (code, _, stderr) = airlock_cli(&["policy", "check", "--deny-warnings", file_arg]);
    assert_eq!(code, 1, "{stderr}");

    std::fs::write(&file, risky.replace("uid_count = 5", "uid_count = 0")).unwrap();
    let (code, _, stderr) = airlock_cli(&["policy", "check", file_arg]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        format!("{file_arg}:5:13: sandbox.uid_count: 0 is out of range: use 1 to 1000000")
    );
}

/// One explain-versus-RunTask case.
struct Case {
    name: &'static str,
    user: &'static str,
    groups: &'static [&'static str],
    program: &'static str,
    args: &'static [&'static str],
    memory: Option<u64>,
    role: Option<&'static str>,
    allowed: bool,
}

impl Case {
    fn request(&self) -> RunTaskRequest {
        RunTaskRequest {
            user: self.user.into(),
            groups: self.groups.iter().map(|g| g.to_string()).collect(),
            program: self.program.into(),
            args: self.args.iter().map(|a| a.to_string()).collect(),
            limits: self
                .memory
                .and_then(|m| limits(|l| l.memory_bytes = Some(m))),
            role_arn: self.role.unwrap_or_default().into(),
            ..Default::default()
        }
    }

    fn cli_args(&self, config: &Path) -> Vec<String> {
        let mut out = vec!["policy".into(), "explain".into(), "--config".into()];
        out.push(config.display().to_string());
        out.extend(["--user".into(), self.user.into()]);
        for g in self.groups {
            out.extend(["--group".into(), g.to_string()]);
        }
        if let Some(m) = self.memory {
            out.extend(["--memory".into(), m.to_string()]);
        }
        if let Some(role) = self.role {
            out.extend(["--role".into(), role.into()]);
        }
        out.push("--".into());
        out.push(self.program.into());
        out.extend(self.args.iter().map(|a| a.to_string()));
        out
    }
}

/// Explain (over gRPC and from the file) agrees with what RunTask does.
async fn check_explain_agrees(d: &Daemon, cases: &[Case]) {
    for case in cases {
        let name = case.name;
        let explained = d
            .client()
            .await
            .explain_task(case.request())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            explained.allowed, case.allowed,
            "{name}: {}",
            explained.text
        );
        let (code, stdout, stderr) = airlock_cli(
            &case
                .cli_args(&d.config)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(stdout.trim_end(), explained.text, "{name}: {stderr}");
        assert_eq!(code, if case.allowed { 0 } else { 77 }, "{name}: {stderr}");
        if case.role.is_some() {
            assert!(
                explained.reason.contains("not entitled"),
                "{name}: {}",
                explained.reason
            );
        }
        let ran = d.run(case.request()).await;
        if case.allowed {
            ran.ok();
            assert!(
                explained.text.starts_with("allowed: program rule "),
                "{name}"
            );
        } else {
            let status = ran.status.expect("denied");
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{name}");
            assert_eq!(status.message(), explained.reason, "{name}");
            assert_eq!(
                explained.text,
                format!("denied: {}", status.message()),
                "{name}"
            );
        }
    }
}

const RESTRICTED: &str =
    "[[program]]\npath = \"/usr/bin/true\"\nusers = [\"bob\"]\ngroups = [\"ds\"]\n";

fn case(name: &'static str, user: &'static str, program: &'static str, allowed: bool) -> Case {
    Case {
        name,
        user,
        groups: &[],
        program,
        args: &[],
        memory: None,
        role: None,
        allowed,
    }
}

const BOB_ROLE: &str = "arn:aws:iam::123456789012:role/bob-data";

#[tokio::test]
async fn explain_agrees_with_the_real_decision() {
    if !privileged() {
        return;
    }
    // Credentials configured (STS is never called: no case gets a role).
    let entitlements = format!(
        "[credentials]\nregion = \"us-east-1\"\nsts_endpoint = \"http://127.0.0.1:9\"\n\n\
         [[entitlement]]\nusers = [\"bob\"]\nroles = [\"{BOB_ROLE}\"]\n"
    );
    let d = Daemon::start(Opts {
        extra_programs: RESTRICTED,
        extra_policy: entitlements,
        ..Default::default()
    });
    let cases = [
        Case {
            args: &["-c", "pass"],
            ..case("allowed", "alice", "/usr/bin/python3", true)
        },
        case("not allowlisted", "alice", "/usr/bin/id", false),
        case("user not in the rule", "alice", "/usr/bin/true", false),
        case("user named by the rule", "bob", "/usr/bin/true", true),
        Case {
            groups: &["ds"],
            ..case("group named by the rule", "carol", "/usr/bin/true", true)
        },
        Case {
            memory: Some(1 << 30),
            ..case("limit above the policy", "alice", "/usr/bin/python3", false)
        },
        Case {
            role: Some(BOB_ROLE),
            args: &["-c", "pass"],
            ..case("role not entitled", "alice", "/usr/bin/python3", false)
        },
    ];
    check_explain_agrees(&d, &cases).await;

    // The same daemon, reloaded into a single-user cluster.
    let text = std::fs::read_to_string(&d.config).unwrap();
    let single = text.replacen(
        "mode = \"shared\"",
        "mode = \"single-user\"\nassigned_user = \"bob\"",
        1,
    );
    std::fs::write(&d.config, single).unwrap();
    d.client()
        .await
        .reload_policy(airlock_protocol::v1::ReloadPolicyRequest {})
        .await
        .unwrap();
    let cases = [
        Case {
            args: &["-c", "pass"],
            ..case(
                "single-user cluster, another user",
                "alice",
                "/usr/bin/python3",
                false,
            )
        },
        Case {
            args: &["-c", "pass"],
            ..case(
                "single-user cluster, its user",
                "bob",
                "/usr/bin/python3",
                true,
            )
        },
    ];
    check_explain_agrees(&d, &cases).await;
}

async fn reload(d: &Daemon) -> Result<airlock_protocol::v1::ReloadPolicyResponse, tonic::Status> {
    d.client()
        .await
        .reload_policy(airlock_protocol::v1::ReloadPolicyRequest {})
        .await
        .map(|r| r.into_inner())
}

fn text_sha256(text: &str) -> String {
    airlock_executor::pin::sha256_hex(text.as_bytes()).unwrap()
}

/// Runs a task on its own connection, to the end.
async fn run_owned(
    mut client: airlock_protocol::v1::airlock_client::AirlockClient<tonic::transport::Channel>,
    req: RunTaskRequest,
) -> Outcome {
    use airlock_protocol::v1::{task_event::Event, Stream};
    let mut out = Outcome::default();
    let mut stream = match client.run_task(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            out.status = Some(status);
            return out;
        }
    };
    while let Some(ev) = stream.message().await.unwrap() {
        match ev.event.unwrap() {
            Event::Started(s) => out.started = Some(s),
            Event::Output(o) if o.stream == Stream::Stdout as i32 => out.stdout.extend(o.data),
            Event::Output(o) => out.stderr.extend(o.data),
            Event::Exited(e) => out.exited = Some(e),
        }
    }
    out
}

#[tokio::test]
async fn reload_under_load_loses_no_task() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let original = std::fs::read_to_string(&d.config).unwrap();
    // B: fewer processes per task and one more program.
    let narrower = original.replace("processes = 32", "processes = 16")
        + "\n[[program]]\npath = \"/usr/bin/true\"\n";
    assert_ne!(original, narrower);

    // Tasks admitted under the original policy, running across every reload.
    let mut running = Vec::new();
    for _ in 0..3 {
        let req = python("alice", "import time; time.sleep(2); print('done')");
        running.push(start_background(&d, req).await);
    }
    // Tasks arriving all through the reloads.
    let mut arriving = Vec::new();
    for i in 0..24 {
        let client = d.client().await;
        arriving.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(40 * i)).await;
            run_owned(client, python("bob", "print('ok')")).await
        }));
    }
    let mut applied = Vec::new();
    for round in 0..6 {
        let text = if round % 2 == 0 { &narrower } else { &original };
        std::fs::write(&d.config, text).unwrap();
        let r = reload(&d).await.unwrap();
        assert_eq!(r.policy_sha256, text_sha256(text));
        applied.push(r.policy_sha256);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    for task in arriving {
        let out = task.await.unwrap();
        assert_eq!(out.ok().stdout(), "ok\n", "{:?}", out.status);
    }
    for (_, handle) in running {
        let out = handle.await.unwrap();
        assert_eq!(out.ok().stdout(), "done\n");
        let started = out.started.as_ref().unwrap();
        assert_eq!(
            started.limits.unwrap().processes,
            Some(32),
            "admitted under the original"
        );
    }

    // The last reload put the original back; SIGHUP now applies B.
    std::fs::write(&d.config, &narrower).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let b = text_sha256(&narrower);
    assert!(
        eventually(std::time::Duration::from_secs(10), || {
            d.audit().iter().any(|r| {
                r["event"] == "policy_reload" && r["trigger"] == "sighup" && r["sha256"] == b
            })
        })
        .await,
        "no SIGHUP reload record: {}",
        d.log()
    );
    let out = d.python("alice", "pass").await;
    assert_eq!(
        out.ok().started.as_ref().unwrap().limits.unwrap().processes,
        Some(16)
    );
    let out = d.run(run_program(Path::new("/usr/bin/true"), &[])).await;
    out.ok();

    let audit = d.audit();
    let reloads: Vec<_> = audit
        .iter()
        .filter(|r| r["event"] == "policy_reload" && r["trigger"] == "api")
        .collect();
    assert_eq!(reloads.len(), 6);
    for (record, sha) in reloads.iter().zip(&applied) {
        assert_eq!(record["outcome"], "applied");
        assert_eq!(record["sha256"], sha.as_str());
        assert_eq!(record["caller_uid"], 0);
    }
    let start = audit.iter().find(|r| r["event"] == "start").unwrap();
    assert_eq!(start["policy_sha256"], text_sha256(&original));
    assert!(audit
        .iter()
        .filter(|r| r["event"] == "admission")
        .all(|r| r["policy_sha256"] == text_sha256(&original) || r["policy_sha256"] == b));
    assert!(d.pool_processes().is_empty());
}

#[tokio::test]
async fn a_broken_policy_file_changes_nothing() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts {
        extra_programs: "[[program]]\npath = \"/usr/bin/true\"\n",
        ..Default::default()
    });
    let original = std::fs::read_to_string(&d.config).unwrap();
    let in_force = text_sha256(&original);
    let config = d.config.display().to_string();
    let broken = [
        (
            "syntax error",
            original.replacen("cluster = \"test\"", "cluster = \"test", 1),
            format!("invalid policy, nothing changed:\n{config}:1:"),
        ),
        (
            "invalid value",
            original.replace("processes = 32", "processes = 0"),
            "limits.processes: a zero processes limit".to_string(),
        ),
        (
            "start-up setting changed",
            original.replace("uid_count = 50", "uid_count = 40"),
            "changes settings that only a restart of airlockd applies (sandbox.uid_first/uid_count)"
                .to_string(),
        ),
        (
            "program missing on this host",
            original.replace("/usr/bin/true", "/usr/bin/no-such-program"),
            "cannot be loaded on this host, nothing changed: program /usr/bin/no-such-program"
                .to_string(),
        ),
    ];
    for (name, text, want) in &broken {
        std::fs::write(&d.config, text).unwrap();
        let status = reload(&d).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{name}");
        assert!(
            status.message().contains(want),
            "{name}: {}",
            status.message()
        );
        // Still the original: /usr/bin/true allowed, the same digest.
        let explained = d
            .client()
            .await
            .explain_task(run_program(Path::new("/usr/bin/true"), &[]))
            .await
            .unwrap()
            .into_inner();
        assert!(explained.allowed, "{name}: {}", explained.text);
        assert_eq!(explained.policy_sha256, in_force, "{name}");
    }
    // The CLI prints every problem on its own line and exits 1.
    std::fs::write(&d.config, &broken[0].1).unwrap();
    let endpoint = format!("unix:{}", d.socket.display());
    let (code, _, stderr) = airlock_cli(&["--endpoint", &endpoint, "policy", "reload"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("airlock: invalid policy, nothing changed:\nairlock: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("airlock: {config}:1:")),
        "{stderr}"
    );
    // SIGHUP with a broken file: audited and logged, nothing changes.
    std::fs::write(&d.config, &broken[0].1).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(10), || {
            d.audit()
                .iter()
                .any(|r| r["event"] == "policy_reload" && r["trigger"] == "sighup")
        })
        .await
    );
    d.run(run_program(Path::new("/usr/bin/true"), &[]))
        .await
        .ok();
    let rejected: Vec<_> = d
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "policy_reload")
        .collect();
    assert_eq!(
        rejected.len(),
        broken.len() + 2,
        "the API's, the CLI's and SIGHUP's"
    );
    for (record, (name, text, _)) in rejected.iter().zip(&broken) {
        assert_eq!(record["outcome"], "rejected", "{name}");
        assert_eq!(record["sha256"], text_sha256(text), "{name}");
        assert_eq!(record["previous_sha256"], in_force.as_str(), "{name}");
        assert!(record["error"].as_str().unwrap().len() > 10, "{name}");
    }
    assert!(rejected[broken.len()..]
        .iter()
        .all(|r| r["outcome"] == "rejected"));
    assert!(d.log().contains("policy reload rejected"), "{}", d.log());
}

#[tokio::test]
async fn only_root_on_the_unix_socket_may_reload() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts {
        tcp_listen: true,
        ..Default::default()
    });
    // A driver over TCP (here plaintext loopback) is never an admin.
    let uri = format!("http://127.0.0.1:{}", d.tcp_port.unwrap());
    let endpoint = airlock_executor::client::Endpoint::InsecureLoopback { uri };
    let channel = airlock_executor::client::connect(&endpoint, None)
        .await
        .unwrap();
    let status = airlock_protocol::v1::airlock_client::AirlockClient::new(channel)
        .reload_policy(airlock_protocol::v1::ReloadPolicyRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("root"), "{}", status.message());
    assert!(!d.audit().iter().any(|r| r["event"] == "policy_reload"));
    // Root on the Unix socket may, through the CLI too.
    let (code, stdout, stderr) = airlock_cli(&[
        "--endpoint",
        &format!("unix:{}", d.socket.display()),
        "policy",
        "reload",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("policy reloaded: cluster test, 1 programs, sha256 "),
        "{stdout}"
    );
}

#[tokio::test]
async fn allowlisted_scripts_run_through_their_interpreter_pinned_or_not() {
    if !privileged() {
        return;
    }
    let bin = shared_tempdir("airlock-script-");
    let script = "#!/usr/bin/python3\nimport os, sys\nprint('script', sys.argv[1:], len(os.listdir('/proc/self/fd')))\n";
    let (pinned, plain) = (bin.path().join("pinned.py"), bin.path().join("plain.py"));
    for path in [&pinned, &plain] {
        replace(path, script.as_bytes());
    }
    let programs = format!(
        "[[program]]\npath = {pinned:?}\nsha256 = \"{}\"\n\n[[program]]\npath = {plain:?}\n",
        sha256(&pinned)
    );
    let d = Daemon::start(Opts {
        extra_programs: Box::leak(programs.into_boxed_str()),
        ..Default::default()
    });
    for path in [&pinned, &plain] {
        let out = d.run(run_program(path, &["a"])).await;
        // stdio, the script for the interpreter, and listdir's own fd.
        assert_eq!(out.ok().stdout(), "script ['a'] 5\n", "{}", path.display());
    }
}

/// The policy of `d` with its scratch root and audit log moved into a new
/// dir (and `edit` applied, which gets that dir too); airlockd started on
/// it must refuse, before it serves. Returns what it printed, and the dir.
async fn refused_start(
    d: &Daemon,
    edit: impl FnOnce(String, &Path) -> String,
) -> (String, tempfile::TempDir) {
    let other = shared_tempdir("airlock-claim-");
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace(
            d.scratch_root.to_str().unwrap(),
            other.path().join("tasks").to_str().unwrap(),
        )
        .replace(
            d.audit_log.to_str().unwrap(),
            other.path().join("audit.jsonl").to_str().unwrap(),
        );
    let config = other.path().join("policy.toml");
    std::fs::write(&config, edit(text, other.path())).unwrap();
    let err = airlockd_refuses(&config, &other.path().join("airlockd.sock")).await;
    (err, other)
}

/// A second airlockd on an overlapping uid pool used to start, and its
/// start-up killed the first one's tasks (exit 137, reported "completed").
#[tokio::test]
async fn start_up_refuses_a_uid_pool_another_airlockd_uses() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let (id, task) = start_background(&d, python("alice", "import time; time.sleep(60)")).await;
    // The same pool, shifted to overlap it by its last ten uids.
    let first = d.uid_first + UID_COUNT - 10;
    let (err, _) = refused_start(&d, |text, _| {
        text.replace(
            &format!("uid_first = {}", d.uid_first),
            &format!("uid_first = {first}"),
        )
    })
    .await;
    assert!(
        err.contains("another airlockd on this host uses uids"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}..{}", d.uid_first, d.uid_first + UID_COUNT)),
        "{err}"
    );
    // The first airlockd's task still runs.
    assert!(!d.pool_processes().is_empty(), "the task was killed");
    d.client()
        .await
        .cancel_task(airlock_protocol::v1::CancelTaskRequest { task_id: id })
        .await
        .unwrap();
    assert_eq!(task.await.unwrap().reason(), ExitReason::Cancelled);
}

/// An account whose uid is in the pool would have its processes killed by
/// start-up, and tasks would run as it; so would a user's containers whose
/// subordinate uids are in it.
#[tokio::test]
async fn start_up_refuses_a_uid_pool_holding_an_accounts_uids() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start(Opts::default());
    d.crash();
    struct Account(String);
    impl Drop for Account {
        fn drop(&mut self) {
            let _ = std::process::Command::new("userdel").arg(&self.0).status();
        }
    }
    let uid = d.uid_first + 7;
    let account = Account(format!("airlock-t{}", std::process::id()));
    let made = std::process::Command::new("useradd")
        // A system account: no subordinate uids are given it in /etc/subuid.
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--uid",
        ])
        .arg(uid.to_string())
        .arg(&account.0)
        .status()
        .unwrap();
    assert!(made.success(), "useradd failed");
    let (err, _) = refused_start(&d, |text, _| text).await;
    assert!(err.contains(&format!("{} ({uid})", account.0)), "{err}");
    assert!(err.contains("move the pool"), "{err}");
    drop(account);
    // So do a user's subordinate uids, which rootless containers run as.
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            match &self.0 {
                Some(text) => std::fs::write("/etc/subuid", text).unwrap(),
                None => std::fs::remove_file("/etc/subuid").unwrap(),
            }
        }
    }
    let subuid = Restore(std::fs::read_to_string("/etc/subuid").ok());
    let line = format!("airlock-sub:{}:100\n", d.uid_first + 40);
    std::fs::write(
        "/etc/subuid",
        format!("{}{line}", subuid.0.as_deref().unwrap_or("")),
    )
    .unwrap();
    let (err, _) = refused_start(&d, |text, _| text).await;
    let range = format!("airlock-sub ({}..{})", d.uid_first + 40, d.uid_first + 140);
    assert!(err.contains(&range), "{err}");
    // Control: without either, the same policy starts.
    drop(subuid);
    d.restart();
}

/// A scratch root naming a directory with files in it (an operator's typo
/// for a data dir, /home) had them removed by start-up's clean-up, and its
/// mode made 0711.
#[tokio::test]
async fn start_up_refuses_a_scratch_root_holding_other_files() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start(Opts::default());
    d.crash();
    let mut thesis = std::path::PathBuf::new();
    let (err, _other) = refused_start(&d, |text, other| {
        let home = other.join("tasks/alice");
        std::fs::create_dir_all(&home).unwrap();
        thesis = home.join("thesis.txt");
        std::fs::write(&thesis, "years of work").unwrap();
        std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(other.join("tasks"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        text
    })
    .await;
    assert!(
        err.contains("holds what airlockd did not make (alice)"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&thesis).unwrap(), "years of work");
    let mode = std::fs::metadata(thesis.parent().unwrap().parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // What an older airlockd left (a dir of a pool uid) is no obstacle:
    // `restart_after_crash_cleans_leftovers` has it removed.
    d.restart();
}

/// `airlock run` exits 126 when a limit ended the task and 125 when it was
/// cancelled, as its help says: both kill with a signal, and used to give
/// 128+N (137 for every cancel), which a script cannot tell from a task
/// that died of that signal.
#[tokio::test]
async fn cli_exit_status_says_limit_and_cancel() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let endpoint = format!("unix:{}", d.socket.display());
    let (code, _, stderr) = airlock_cli(&[
        "--endpoint",
        &endpoint,
        "run",
        "--user",
        "alice",
        "--cpu-seconds",
        "1",
        "--",
        "/usr/bin/python3",
        "-c",
        "while True: pass",
    ]);
    assert_eq!(code, 126, "{stderr}");
    assert!(stderr.contains("CPU"), "{stderr}");

    let run = std::process::Command::new(bin_dir().join("airlock"))
        .args([
            "--endpoint",
            &endpoint,
            "run",
            "--user",
            "alice",
            "--id",
            "to-cancel",
            "--",
        ])
        .args(["/usr/bin/python3", "-c", "import time; time.sleep(60)"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = eventually(std::time::Duration::from_secs(10), || {
        airlock_cli(&["--endpoint", &endpoint, "get", "to-cancel"])
            .1
            .contains("state: running")
    })
    .await;
    assert!(running);
    let (code, _, stderr) = airlock_cli(&["--endpoint", &endpoint, "cancel", "to-cancel"]);
    assert_eq!(code, 0, "{stderr}");
    let status = run.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(125));
}

/// Start-up errors name the file at fault and what to do.
#[tokio::test]
async fn start_up_errors_name_the_file_at_fault() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start(Opts::default());
    d.crash();
    let missing = d.dir.path().join("missing.toml");
    let err = airlockd_refuses(&missing, &d.dir.path().join("other.sock")).await;
    assert!(
        err.contains(&format!(
            "the policy file {}: No such file",
            missing.display()
        )),
        "{err}"
    );
    // An audit log that is a symbolic link is refused, and said to be one.
    let (err, _dir) = refused_start(&d, |text, other| {
        let target = other.join("elsewhere.jsonl");
        let link = other.join("audit-link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        text.replace(
            other.join("audit.jsonl").to_str().unwrap(),
            link.to_str().unwrap(),
        )
    })
    .await;
    assert!(err.contains("audit-link.jsonl"), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    // A program that is not on this host: the policy file and key are named.
    let (err, _dir) = refused_start(&d, |text, _| {
        text.replace("/usr/bin/python3", "/usr/bin/no-such-python")
    })
    .await;
    assert!(
        err.contains("(program.path)") && err.contains("no-such-python"),
        "{err}"
    );
}
