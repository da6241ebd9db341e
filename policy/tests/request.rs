use airlock_policy::{
    validate_request, RequestError, RequestShape, MAX_ARGS, MAX_ARGS_TOTAL_BYTES, MAX_ARG_BYTES,
    MAX_STDIN_BYTES,
};
use pretty_assertions::assert_eq;

/// An owned request, so that each case can change one field of a valid one.
#[derive(Clone)]
struct Req {
    task_id: String,
    user: String,
    groups: Vec<String>,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin_len: usize,
}

fn valid() -> Req {
    Req {
        task_id: "job-1.retry_2".into(),
        user: "alice".into(),
        groups: vec!["ds".into(), "_svc.ops-1".into()],
        program: "/usr/bin/python3".into(),
        args: vec!["-c".into(), "print('hi')".into()],
        env: vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("_X9".into(), String::new()),
        ],
        stdin_len: 10,
    }
}

fn check(r: &Req) -> Result<(), RequestError> {
    validate_request(&RequestShape {
        task_id: &r.task_id,
        user: &r.user,
        groups: &r.groups,
        program: &r.program,
        args: &r.args,
        env: &r.env,
        stdin_len: r.stdin_len,
    })
}

fn env(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.into(), value.into())]
}

#[test]
fn validate_request_table() {
    let long = "a".repeat(100);
    let clipped = format!("{}…", "a".repeat(64));
    type Edit = Box<dyn Fn(&mut Req)>;
    let cases: Vec<(&str, Edit, Result<(), RequestError>)> = vec![
        ("accept_valid_request", Box::new(|_| {}), Ok(())),
        (
            "accept_empty_task_id",
            Box::new(|r| r.task_id.clear()),
            Ok(()),
        ),
        (
            "accept_limits_exactly",
            Box::new(|r| {
                r.args = vec!["x".repeat(MAX_ARG_BYTES)];
                r.stdin_len = MAX_STDIN_BYTES;
            }),
            Ok(()),
        ),
        (
            "reject_task_id_starting_with_dot",
            Box::new(|r| r.task_id = "..".into()),
            Err(RequestError::TaskId { value: "..".into() }),
        ),
        (
            "reject_task_id_with_slash",
            Box::new(|r| r.task_id = "a/b".into()),
            Err(RequestError::TaskId {
                value: "a/b".into(),
            }),
        ),
        (
            "reject_task_id_over_64_and_clip_it",
            Box::new(move |r| r.task_id = "a".repeat(100)),
            Err(RequestError::TaskId {
                value: clipped.clone(),
            }),
        ),
        (
            "reject_unicode_user",
            Box::new(|r| r.user = "álice".into()),
            Err(RequestError::User {
                value: "álice".into(),
            }),
        ),
        (
            "reject_user_with_upper_case",
            Box::new(|r| r.user = "Alice".into()),
            Err(RequestError::User {
                value: "Alice".into(),
            }),
        ),
        (
            "reject_user_starting_with_digit",
            Box::new(|r| r.user = "1alice".into()),
            Err(RequestError::User {
                value: "1alice".into(),
            }),
        ),
        (
            "reject_empty_user",
            Box::new(|r| r.user.clear()),
            Err(RequestError::User { value: "".into() }),
        ),
        (
            "reject_user_over_64",
            Box::new(move |r| r.user = long.clone() + "b"),
            Err(RequestError::User {
                value: format!("{}…", "a".repeat(64)),
            }),
        ),
        (
            "reject_unicode_group",
            Box::new(|r| r.groups.push("dş".into())),
            Err(RequestError::Group {
                index: 2,
                value: "dş".into(),
            }),
        ),
        (
            "accept_256_groups",
            Box::new(|r| r.groups = (0..256).map(|i| format!("g{i}")).collect()),
            Ok(()),
        ),
        (
            "reject_257_groups",
            Box::new(|r| r.groups = (0..257).map(|i| format!("g{i}")).collect()),
            Err(RequestError::TooManyGroups { count: 257 }),
        ),
        (
            "reject_empty_program",
            Box::new(|r| r.program.clear()),
            Err(RequestError::ProgramEmpty),
        ),
        (
            "reject_relative_program",
            Box::new(|r| r.program = "python3".into()),
            Err(RequestError::ProgramRelative {
                value: "python3".into(),
            }),
        ),
        (
            "reject_program_with_nul",
            Box::new(|r| r.program = "/usr/bin/python3\0x".into()),
            Err(RequestError::ProgramNul {
                value: "/usr/bin/python3\0x".into(),
            }),
        ),
        (
            "reject_program_with_dot_dot",
            Box::new(|r| r.program = "/usr/bin/../bin/id".into()),
            Err(RequestError::ProgramNotNormalized {
                value: "/usr/bin/../bin/id".into(),
            }),
        ),
        (
            "reject_program_with_dot",
            Box::new(|r| r.program = "/usr/./bin/id".into()),
            Err(RequestError::ProgramNotNormalized {
                value: "/usr/./bin/id".into(),
            }),
        ),
        (
            "reject_program_with_double_slash",
            Box::new(|r| r.program = "/usr//bin/id".into()),
            Err(RequestError::ProgramNotNormalized {
                value: "/usr//bin/id".into(),
            }),
        ),
        (
            "reject_program_with_trailing_slash",
            Box::new(|r| r.program = "/usr/bin/id/".into()),
            Err(RequestError::ProgramNotNormalized {
                value: "/usr/bin/id/".into(),
            }),
        ),
        (
            "reject_program_over_4096_bytes",
            Box::new(|r| r.program = "/a".repeat(2049)),
            Err(RequestError::ProgramTooLong { len: 4098 }),
        ),
        (
            "reject_nul_in_args",
            Box::new(|r| r.args.push("a\0b".into())),
            Err(RequestError::ArgNul { index: 2 }),
        ),
        (
            "reject_arg_over_128_kib",
            Box::new(|r| r.args = vec!["x".repeat(MAX_ARG_BYTES + 1)]),
            Err(RequestError::ArgTooLong {
                index: 0,
                len: MAX_ARG_BYTES + 1,
            }),
        ),
        (
            "reject_too_many_args",
            Box::new(|r| r.args = vec![String::new(); MAX_ARGS + 1]),
            Err(RequestError::TooManyArgs {
                count: MAX_ARGS + 1,
            }),
        ),
        (
            "reject_args_and_env_over_1_mib",
            Box::new(|r| {
                r.args = vec!["x".repeat(MAX_ARG_BYTES - 1); 8];
                r.env = env("BIG", "y");
            }),
            Err(RequestError::ArgsTooLarge {
                total: MAX_ARGS_TOTAL_BYTES + 6,
            }),
        ),
        (
            "reject_env_name_with_dash",
            Box::new(|r| r.env = env("MY-VAR", "1")),
            Err(RequestError::EnvName {
                name: "MY-VAR".into(),
            }),
        ),
        (
            "reject_env_name_starting_with_digit",
            Box::new(|r| r.env = env("1X", "1")),
            Err(RequestError::EnvName { name: "1X".into() }),
        ),
        (
            "reject_unicode_env_name",
            Box::new(|r| r.env = env("NAMÉ", "1")),
            Err(RequestError::EnvName {
                name: "NAMÉ".into(),
            }),
        ),
        (
            "reject_env_name_over_128",
            Box::new(|r| r.env = env(&"X".repeat(129), "1")),
            Err(RequestError::EnvName {
                name: format!("{}…", "X".repeat(64)),
            }),
        ),
        (
            "reject_reserved_path",
            Box::new(|r| r.env = env("PATH", "/tmp")),
            Err(RequestError::EnvReserved {
                name: "PATH".into(),
                reserved: "PATH",
            }),
        ),
        (
            "reject_reserved_home",
            Box::new(|r| r.env = env("HOME", "/")),
            Err(RequestError::EnvReserved {
                name: "HOME".into(),
                reserved: "HOME",
            }),
        ),
        (
            "reject_loader_variables",
            Box::new(|r| r.env = env("LD_PRELOAD", "/tmp/x.so")),
            Err(RequestError::EnvReserved {
                name: "LD_PRELOAD".into(),
                reserved: "LD_*",
            }),
        ),
        (
            "reject_aws_credentials",
            Box::new(|r| r.env = env("AWS_SECRET_ACCESS_KEY", "k")),
            Err(RequestError::EnvReserved {
                name: "AWS_SECRET_ACCESS_KEY".into(),
                reserved: "AWS_*",
            }),
        ),
        (
            "reject_duplicate_env",
            Box::new(|r| r.env.push(("LANG".into(), "C".into()))),
            Err(RequestError::EnvDuplicate {
                name: "LANG".into(),
            }),
        ),
        (
            "reject_nul_in_env_value",
            Box::new(|r| r.env = env("X", "a\0b")),
            Err(RequestError::EnvNul { name: "X".into() }),
        ),
        (
            "reject_env_value_over_128_kib",
            Box::new(|r| r.env = env("X", &"v".repeat(MAX_ARG_BYTES + 1))),
            Err(RequestError::EnvTooLong {
                name: "X".into(),
                len: MAX_ARG_BYTES + 1,
            }),
        ),
        (
            "reject_stdin_over_1_mib",
            Box::new(|r| r.stdin_len = MAX_STDIN_BYTES + 1),
            Err(RequestError::StdinTooLarge {
                len: MAX_STDIN_BYTES + 1,
            }),
        ),
    ];
    for (name, edit, want) in cases {
        let mut req = valid();
        edit(&mut req);
        assert_eq!(check(&req), want, "{name}");
    }
}

#[test]
fn messages_say_what_is_wrong_and_what_is_allowed() {
    let cases = [
        (
            RequestError::EnvReserved { name: "AWS_SECRET_ACCESS_KEY".into(), reserved: "AWS_*" },
            "env AWS_SECRET_ACCESS_KEY is reserved: Airlock sets AWS_* itself",
        ),
        (
            RequestError::User { value: "álice".into() },
            "user \"álice\" is invalid: use a lower-case ASCII letter or _ then up to 63 of a-z 0-9 _ . -",
        ),
        (
            RequestError::ProgramNul { value: "/bin/x\0".into() },
            "program \"/bin/x\\0\" contains a NUL byte",
        ),
        (RequestError::ArgNul { index: 3 }, "argument 3 contains a NUL byte"),
    ];
    for (error, want) in cases {
        assert_eq!(error.to_string(), want);
    }
}

/// A megabyte of short environment names is a valid request, and is
/// checked in one pass: comparing each name with every earlier one took
/// airlockd 45 s of CPU for 170,000 names, while no other request got an
/// answer (this test ran for minutes that way).
#[test]
fn a_megabyte_of_environment_names_is_checked_in_one_pass() {
    let mut r = valid();
    r.args.clear();
    r.env = (0..130_000)
        .map(|i| (format!("V{i:05X}"), String::new()))
        .collect();
    assert_eq!(check(&r), Ok(()));
    r.env.push(("V00007".into(), "again".into()));
    assert_eq!(
        check(&r),
        Err(RequestError::EnvDuplicate {
            name: "V00007".into()
        })
    );
    // Too large is refused before any name is looked at.
    r.env.push(("V".into(), "x".repeat(64 << 10)));
    assert!(matches!(check(&r), Err(RequestError::ArgsTooLarge { .. })));
}
