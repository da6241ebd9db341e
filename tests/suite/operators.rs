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
