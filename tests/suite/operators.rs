//! What operators rely on: pinned programs run only as the exact file that
//! was hashed.

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
    // Not under /tmp (tasks get a private one); traversable by task uids.
    let bin = tempfile::Builder::new()
        .prefix("airlock-pin-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
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
                 uid_count = 5\nscratch_root = \"/var/lib/airlock/tasks\"\nread_only = [\"/usr/bin\"]\n\
                 [network]\nmode = \"host\"\nconnect_tcp = [443, 80]\n\
                 [[program]]\npath = \"/usr/bin/python3\"\n[[program]]\npath = \"/opt/nowhere/tool\"\n";
    std::fs::write(&file, risky).unwrap();
    let (code, stdout, stderr) = airlock_cli(&["policy", "check", file_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok (cluster c, 2 programs, 3 warnings)"),
        "{stdout}"
    );
    for key in [
        "sandbox.read_only[1]",
        "network.connect_tcp[2]",
        "program[2].path",
    ] {
        assert!(
            stderr.contains(&format!("{file_arg}: warning: {key}: ")),
            "{key}: {stderr}"
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
