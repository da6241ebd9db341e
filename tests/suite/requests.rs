//! Malformed requests get clear errors and run nothing.

use airlock_protocol::v1::RunTaskRequest;

use crate::harness::*;

#[tokio::test]
async fn malformed_requests_are_rejected_with_clear_errors() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let base = || python("alice", "print(1)");
    let cases: Vec<(&str, RunTaskRequest, &str)> = vec![
        (
            "relative program",
            RunTaskRequest {
                program: "python3".into(),
                ..base()
            },
            "absolute",
        ),
        (
            "NUL in an argument",
            RunTaskRequest {
                args: vec!["-c".into(), "print(1)\0".into()],
                ..base()
            },
            "NUL",
        ),
        (
            "oversized argument",
            RunTaskRequest {
                args: vec!["-c".into(), "#".repeat(200_000)],
                ..base()
            },
            "arg",
        ),
        (
            "unicode user",
            RunTaskRequest {
                user: "аlice".into(),
                ..base()
            },
            "user",
        ),
        (
            "user with a slash",
            RunTaskRequest {
                user: "../root".into(),
                ..base()
            },
            "user",
        ),
        (
            "reserved env",
            RunTaskRequest {
                env: env(&[("LD_PRELOAD", "/x.so")]),
                ..base()
            },
            "LD_PRELOAD",
        ),
        (
            "bad task id",
            RunTaskRequest {
                task_id: "../../etc".into(),
                ..base()
            },
            "task id",
        ),
        (
            "oversized stdin",
            RunTaskRequest {
                stdin: vec![0; (1 << 20) + 1],
                ..base()
            },
            "stdin",
        ),
    ];
    for (what, req, needle) in cases {
        let status = d
            .run(req)
            .await
            .status
            .unwrap_or_else(|| panic!("{what}: was not rejected"));
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        assert!(
            status
                .message()
                .to_lowercase()
                .contains(&needle.to_lowercase()),
            "{what}: message {:?} does not mention {needle}",
            status.message()
        );
    }
    assert!(d.scratch_dirs().is_empty(), "nothing ran");
}

#[tokio::test]
async fn a_plan_larger_than_the_socket_buffer_reaches_the_task_whole() {
    if !privileged() {
        return;
    }
    // Eight arguments of 120 KiB: a plan of about 1 MiB, more than a Unix
    // socket's buffer takes at once (airlockd writes the rest while the
    // spawner reads).
    let d = Daemon::start(Opts::default());
    let mut req = python(
        "alice",
        "import json, sys\nprint(json.dumps([len(a) for a in sys.argv[1:]] + [sys.argv[8][-3:]]))",
    );
    req.args
        .extend((0..8).map(|i| format!("{}{i:03}", "x".repeat(120 << 10))));
    let lens =
        serde_json::json!([122883, 122883, 122883, 122883, 122883, 122883, 122883, 122883, "007"]);
    assert_eq!(d.run(req).await.json(), lens);
}
