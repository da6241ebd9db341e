#![allow(clippy::unwrap_used)]

use airlock_policy::{Admission, Decision, Denial, Limits, Policy, RequestedLimits, TaskRequest};
use pretty_assertions::assert_eq;

const POLICY: &str = r#"
cluster = "shared-ds"
mode = "shared"
[sandbox]
uid_first = 200000
uid_count = 1000
scratch_root = "/var/lib/airlock/tasks"
read_only = ["/usr/lib"]
[network]
mode = "host"
[limits]
memory = "1GiB"
cpu_seconds = 300
wall_time = "10m"
[[program]]
path = "/usr/bin/python3"
users = ["alice"]
groups = ["ds"]
[[program]]
path = "/usr/bin/true"
[[program]]
path = "/usr/bin/R"
groups = ["stats"]
"#;

fn policy(text: &str) -> Policy {
    Policy::parse(text, "p.toml").unwrap()
}

fn allow(program: &str, rule: usize, limits: Limits) -> Decision {
    Decision::Allow(Admission {
        program: program.into(),
        rule,
        limits,
    })
}

fn deny(reason: &str) -> Decision {
    Decision::Deny(Denial {
        reason: reason.into(),
    })
}

struct Case {
    name: &'static str,
    user: &'static str,
    groups: &'static [&'static str],
    program: &'static str,
    timeout_ms: u64,
    limits: RequestedLimits,
    want: Decision,
}

fn run(policy: &Policy, cases: Vec<Case>) {
    for case in cases {
        let groups: Vec<String> = case.groups.iter().map(|g| g.to_string()).collect();
        let req = TaskRequest {
            user: case.user,
            groups: &groups,
            program: case.program,
            timeout_ms: case.timeout_ms,
            limits: &case.limits,
        };
        assert_eq!(policy.decide(&req), case.want, "{}", case.name);
    }
}

#[test]
fn decide_table() {
    let policy = policy(POLICY);
    let base = policy.limits;
    let none = RequestedLimits::default();
    run(
        &policy,
        vec![
            Case {
                name: "allow_when_user_listed_with_policy_limits",
                user: "alice",
                groups: &[],
                program: "/usr/bin/python3",
                timeout_ms: 0,
                limits: none,
                want: allow("/usr/bin/python3", 0, base),
            },
            Case {
                name: "allow_when_a_group_is_listed",
                user: "bob",
                groups: &["users", "ds"],
                program: "/usr/bin/python3",
                timeout_ms: 0,
                limits: none,
                want: allow("/usr/bin/python3", 0, base),
            },
            Case {
                name: "allow_everyone_when_rule_lists_nobody",
                user: "carol",
                groups: &[],
                program: "/usr/bin/true",
                timeout_ms: 0,
                limits: none,
                want: allow("/usr/bin/true", 1, base),
            },
            Case {
                name: "allow_with_requested_limits_below_policy",
                user: "carol",
                groups: &[],
                program: "/usr/bin/true",
                timeout_ms: 30_000,
                limits: RequestedLimits {
                    memory_bytes: Some(256 << 20),
                    processes: Some(4),
                    cpu_seconds: Some(300),
                    ..none
                },
                want: allow(
                    "/usr/bin/true",
                    1,
                    Limits {
                        memory_bytes: 256 << 20,
                        processes: 4,
                        wall_time_ms: 30_000,
                        ..base
                    },
                ),
            },
            Case {
                name: "deny_when_program_not_allowlisted",
                user: "alice",
                groups: &[],
                program: "/usr/bin/id",
                timeout_ms: 0,
                limits: none,
                want: deny("/usr/bin/id is not on cluster shared-ds's program allowlist (allowed: /usr/bin/python3, /usr/bin/true, /usr/bin/R)"),
            },
            Case {
                name: "deny_when_path_only_resolves_to_an_allowlisted_program",
                user: "alice",
                groups: &[],
                program: "/usr/bin/../bin/true",
                timeout_ms: 0,
                limits: none,
                want: deny("/usr/bin/../bin/true is not on cluster shared-ds's program allowlist (allowed: /usr/bin/python3, /usr/bin/true, /usr/bin/R)"),
            },
            Case {
                name: "deny_when_user_not_in_rule",
                user: "bob",
                groups: &["users"],
                program: "/usr/bin/python3",
                timeout_ms: 0,
                limits: none,
                want: deny("user bob may not run /usr/bin/python3: program rule 1 allows users [alice] and groups [ds]"),
            },
            Case {
                name: "deny_when_no_group_in_rule",
                user: "alice",
                groups: &["ds"],
                program: "/usr/bin/R",
                timeout_ms: 0,
                limits: none,
                want: deny("user alice may not run /usr/bin/R: program rule 3 allows groups [stats]"),
            },
            Case {
                name: "deny_when_limit_above_policy",
                user: "alice",
                groups: &[],
                program: "/usr/bin/python3",
                timeout_ms: 0,
                limits: RequestedLimits { memory_bytes: Some(2 << 30), ..none },
                want: deny("requested memory 2GiB is above cluster shared-ds's limit of 1GiB (limits.memory); ask for at most 1GiB"),
            },
            Case {
                name: "deny_when_scratch_above_policy",
                user: "alice",
                groups: &[],
                program: "/usr/bin/python3",
                timeout_ms: 0,
                limits: RequestedLimits { scratch_bytes: Some(1 << 30), ..none },
                want: deny("requested scratch 1GiB is above cluster shared-ds's limit of 256MiB (limits.scratch); ask for at most 256MiB"),
            },
            Case {
                name: "deny_when_cpu_time_above_policy",
                user: "alice",
                groups: &[],
                program: "/usr/bin/python3",
                timeout_ms: 0,
                limits: RequestedLimits { cpu_seconds: Some(3600), ..none },
                want: deny("requested cpu_seconds 1h is above cluster shared-ds's limit of 5m (limits.cpu_seconds); ask for at most 5m"),
            },
            Case {
                name: "deny_when_limit_requested_is_zero",
                user: "alice",
                groups: &[],
                program: "/usr/bin/python3",
                timeout_ms: 0,
                limits: RequestedLimits { processes: Some(0), ..none },
                want: deny("requested processes 0 is not a usable limit; leave it unset to get cluster shared-ds's 64"),
            },
            Case {
                name: "deny_when_timeout_above_wall_time",
                user: "alice",
                groups: &[],
                program: "/usr/bin/python3",
                timeout_ms: 3_600_000,
                limits: none,
                want: deny("requested timeout 1h is above cluster shared-ds's wall time limit of 10m (limits.wall_time); ask for at most 10m, or for none to get 10m"),
            },
        ],
    );
}

#[test]
fn single_user_cluster_admits_only_its_user() {
    let policy = policy(&POLICY.replace(
        "mode = \"shared\"",
        "mode = \"single-user\"\nassigned_user = \"alice\"",
    ));
    let base = policy.limits;
    let none = RequestedLimits::default();
    run(
        &policy,
        vec![
            Case {
                name: "allow_assigned_user",
                user: "alice",
                groups: &[],
                program: "/usr/bin/true",
                timeout_ms: 0,
                limits: none,
                want: allow("/usr/bin/true", 1, base),
            },
            Case {
                name: "deny_other_user_even_when_rule_allows_everyone",
                user: "bob",
                groups: &["ds"],
                program: "/usr/bin/true",
                timeout_ms: 0,
                limits: none,
                want: deny(
                    "this is a single-user cluster assigned to alice; bob may not run tasks on it",
                ),
            },
        ],
    );
}

#[test]
fn deny_orders_above_allow_so_max_is_strictest() {
    let allowed = allow("/usr/bin/true", 1, Limits::default());
    let denied = deny("no");
    assert_eq!(
        [allowed.clone(), denied.clone()].into_iter().max(),
        Some(denied.clone())
    );
    assert_eq!([denied.clone(), allowed].into_iter().max(), Some(denied));
}

#[test]
fn explained_admission_names_the_rule_whom_it_allows_and_the_limits() {
    let policy = policy(POLICY);
    let groups = vec!["stats".to_string()];
    let req = TaskRequest {
        user: "carol",
        groups: &groups,
        program: "/usr/bin/R",
        timeout_ms: 30_000,
        limits: &RequestedLimits {
            memory_bytes: Some(512 << 20),
            ..Default::default()
        },
    };
    let Decision::Allow(admission) = policy.decide(&req) else {
        panic!("denied")
    };
    assert_eq!(
        policy.explain_admission(&admission),
        "allowed: program rule 3 (/usr/bin/R) allows groups [stats], on shared cluster shared-ds\n\
         limits: memory 512MiB, processes 64, open_files 256, file_size 256MiB, cpu_seconds 300, \
         wall_time 30s, output 16MiB, tmp 64MiB, scratch 256MiB"
    );
    let req = TaskRequest {
        program: "/usr/bin/true",
        ..req
    };
    let Decision::Allow(admission) = policy.decide(&req) else {
        panic!("denied")
    };
    assert!(policy
        .explain_admission(&admission)
        .starts_with("allowed: program rule 2 (/usr/bin/true) allows everyone, on shared cluster"));
}
