#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use airlock_policy::{
    ClusterMode, Layer, Limits, Network, NetworkMode, Policy, PolicyError, ProgramRule, UidPool,
};
use pretty_assertions::assert_eq;

const FULL: &str = r#"
cluster = "gpu.team-7"
mode = "single-user"
assigned_user = "alice"

[sandbox]
uid_first = 70000
uid_count = 500
scratch_root = "/srv/airlock"
audit_log = "/srv/audit.jsonl"
read_only = ["/usr/lib", "/etc"]
best_effort = ["landlock-scope", "seccomp"]

[network]
mode = "none"

[limits]
memory = 536870912
processes = 8
open_files = 64
file_size = "10 MiB"
cpu_seconds = 60
wall_time = 90
output = "1M"
tmp = "1GiB"
scratch = "2GiB"

[[program]]
path = "/usr/bin/python3"
users = ["alice"]
groups = ["ds", "ml_ops"]
justification = "notebooks"

[[program]]
path = "/opt/tool/bin/run"
sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
"#;

/// A valid policy, one line per key so that tests can replace lines.
const BASE: &str = r#"cluster = "c1"
mode = "shared"
[sandbox]
uid_first = 200000
uid_count = 1000
scratch_root = "/var/lib/airlock/tasks"
read_only = ["/usr/lib"]
[network]
mode = "host"
connect_tcp = [443]
[limits]
[[program]]
path = "/usr/bin/python3"
"#;

/// `BASE` with every line starting with `from` replaced by `to` (`to` may hold several lines).
fn edit(from: &str, to: &str) -> String {
    let lines = BASE
        .lines()
        .map(|l| if l.starts_with(from) { to } else { l });
    lines.collect::<Vec<_>>().join("\n") + "\n"
}

fn errors(text: &str) -> Vec<String> {
    let errors = Policy::parse(text, "p.toml").unwrap_err();
    errors.0.iter().map(ToString::to_string).collect()
}

#[test]
fn full_policy_parses_into_every_field() {
    let want = Policy {
        cluster: "gpu.team-7".into(),
        mode: ClusterMode::SingleUser {
            user: "alice".into(),
        },
        uid_pool: UidPool {
            first: 70000,
            count: 500,
        },
        scratch_root: "/srv/airlock".into(),
        audit_log: "/srv/audit.jsonl".into(),
        read_only: vec!["/usr/lib".into(), "/etc".into()],
        best_effort: vec![Layer::LandlockScope, Layer::Seccomp],
        network: Network {
            mode: NetworkMode::None,
            connect_tcp: vec![],
            udp: false,
        },
        limits: Limits {
            memory_bytes: 512 << 20,
            processes: 8,
            open_files: 64,
            file_size_bytes: 10 << 20,
            cpu_seconds: 60,
            wall_time_ms: 90_000,
            output_bytes: 1 << 20,
            tmp_bytes: 1 << 30,
            scratch_bytes: 2 << 30,
        },
        programs: vec![
            ProgramRule {
                path: "/usr/bin/python3".into(),
                users: vec!["alice".into()],
                groups: vec!["ds".into(), "ml_ops".into()],
                justification: Some("notebooks".into()),
                sha256: None,
            },
            ProgramRule {
                path: "/opt/tool/bin/run".into(),
                users: vec![],
                groups: vec![],
                justification: None,
                sha256: Some(
                    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                ),
            },
        ],
        credentials: None,
        entitlements: vec![],
        roles: vec![],
    };
    assert_eq!(Policy::parse(FULL, "full.toml").unwrap(), want);
}

#[test]
fn omitted_keys_take_secure_defaults() {
    let policy = Policy::parse(BASE, "p.toml").unwrap();
    assert_eq!(policy.mode, ClusterMode::Shared);
    assert_eq!(
        policy.audit_log,
        PathBuf::from("/var/log/airlock/audit.jsonl")
    );
    assert_eq!(policy.best_effort, vec![]);
    assert_eq!(
        policy.network,
        Network {
            mode: NetworkMode::Host,
            connect_tcp: vec![443],
            udp: false,
        }
    );
    assert_eq!(
        policy.limits,
        Limits {
            memory_bytes: 1 << 30,
            processes: 64,
            open_files: 256,
            file_size_bytes: 256 << 20,
            cpu_seconds: 300,
            wall_time_ms: 600_000,
            output_bytes: 16 << 20,
            tmp_bytes: 64 << 20,
            scratch_bytes: 256 << 20,
        }
    );
}

#[test]
fn each_kind_of_error_reports_line_column_and_key() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown key",
            edit("uid_count", "uid_count = 1000\nuid_last = 2"),
            vec!["p.toml:6:1: sandbox.uid_last: unknown field `uid_last`, expected one of `uid_first`, `uid_count`, `scratch_root`, `audit_log`, `read_only`, `best_effort`"],
        ),
        (
            "unknown key in a program",
            edit("path", "path = \"/usr/bin/python3\"\nuser = [\"a\"]"),
            vec!["p.toml:14:1: program[1].user: unknown field `user`, expected one of `path`, `users`, `groups`, `justification`, `sha256`"],
        ),
        (
            "wrong type",
            edit("uid_count", "uid_count = \"many\""),
            vec!["p.toml:5:13: sandbox.uid_count: invalid type: string \"many\", expected an integer"],
        ),
        (
            "missing key",
            edit("scratch_root", ""),
            vec!["p.toml:3:1: sandbox.scratch_root: missing field `scratch_root`"],
        ),
        (
            "unknown top-level key",
            edit("cluster", "cluster = \"c1\"\nowner = \"me\""),
            vec!["p.toml:2:1: owner: unknown field `owner`, expected one of `cluster`, `mode`, `assigned_user`, `sandbox`, `network`, `limits`, `program`, `credentials`, `entitlement`, `role`"],
        ),
        (
            "missing table",
            BASE.replace("[network]\nmode = \"host\"\nconnect_tcp = [443]\n", ""),
            vec!["p.toml:1:1: network: missing field `network`"],
        ),
        (
            "missing key in a program",
            edit("path", "path = \"/usr/bin/python3\"\n[[program]]\nusers = [\"a\"]"),
            vec!["p.toml:14:1: program[2].path: missing field `path`"],
        ),
        (
            "duplicate key",
            edit("uid_count", "uid_count = 1000\nuid_count = 2000"),
            vec!["p.toml:6:1: sandbox.uid_count: duplicate key"],
        ),
        (
            "syntax error",
            edit("cluster", "cluster = \"c1"),
            vec!["p.toml:1:14: cluster: invalid basic string, expected `\"`"],
        ),
        (
            "unquoted string in an array table",
            edit("path = \"/usr/bin/python3\"", "path = /usr/bin/python3"),
            vec!["p.toml:13:8: program[1].path: string values must be quoted, expected literal string"],
        ),
        (
            "bad size string",
            edit("[limits]", "[limits]\nmemory = \"1GB\""),
            vec!["p.toml:12:10: limits.memory: \"1GB\" is not a size: write an integer number of bytes or a string like \"512MiB\" (units B, KiB, MiB, GiB, TiB; K, M, G, T are binary too)"],
        ),
        (
            "limit of the wrong type",
            edit("[limits]", "[limits]\nwall_time = true"),
            vec!["p.toml:12:13: limits.wall_time: expected an integer number of seconds or a string like \"10m\", found a boolean"],
        ),
        (
            "zero limit",
            edit("[limits]", "[limits]\nprocesses = 0"),
            vec!["p.toml:12:13: limits.processes: a zero processes limit would stop every task: use a positive value or leave it out for the default"],
        ),
        (
            "udp without network",
            edit("mode = \"host\"", "mode = \"none\"\nudp = true").replace("connect_tcp = [443]\n", ""),
            vec!["p.toml:10:7: network.udp: tasks have no network with mode = \"none\": remove udp or use mode = \"host\""],
        ),
        (
            "read-only path holding the scratch root",
            edit("read_only", "read_only = [\"/usr/lib\", \"/var/lib\"]"),
            vec!["p.toml:7:26: sandbox.read_only[2]: /var/lib contains the scratch root /var/lib/airlock/tasks: every task's scratch dir is a tmpfs mounted below it, which a read-only bind cannot hold; list narrower paths, or move sandbox.scratch_root out of it"],
        ),
        (
            "read-only path under /proc",
            edit("read_only", "read_only = [\"/usr/lib\", \"/proc/cpuinfo\"]"),
            vec!["p.toml:7:26: sandbox.read_only[2]: /proc/cpuinfo is under /proc, which every task gets its own of (it may read that already): remove it"],
        ),
        (
            "read-only path under /dev/shm",
            edit("read_only", "read_only = [\"/usr/lib\", \"/dev/shm/libs\"]"),
            vec!["p.toml:7:26: sandbox.read_only[2]: /dev/shm/libs is under /dev/shm, which every task gets a private, empty mount of: move it elsewhere"],
        ),
        (
            "read-only path under the scratch root",
            edit("read_only", "read_only = [\"/usr/lib\", \"/var/lib/airlock/tasks/shared\"]"),
            vec!["p.toml:7:26: sandbox.read_only[2]: /var/lib/airlock/tasks/shared is under the scratch root /var/lib/airlock/tasks, where every task gets a private, empty mount: move it elsewhere"],
        ),
        (
            "relative path",
            edit("read_only", "read_only = [\"/usr/lib\", \"etc\"]"),
            vec!["p.toml:7:26: sandbox.read_only[2]: \"etc\" is relative: write an absolute path starting with /"],
        ),
        (
            "unnormalized path",
            edit("scratch_root", "scratch_root = \"/var/lib/../tmp\""),
            vec!["p.toml:6:16: sandbox.scratch_root: \"/var/lib/../tmp\" is not normalized: write it without '.' or '..' components, '//' or a trailing '/'"],
        ),
        (
            "scratch root under a private mount",
            edit("scratch_root", "scratch_root = \"/tmp/tasks\""),
            vec!["p.toml:6:16: sandbox.scratch_root: \"/tmp/tasks\" is under /tmp, which every task gets a private mount of: use a directory such as /var/lib/airlock/tasks"],
        ),
        (
            "missing assigned_user",
            edit("mode = \"shared\"", "mode = \"single-user\""),
            vec!["p.toml:2:8: assigned_user: mode = \"single-user\" needs assigned_user = \"<name>\", the one user who may run tasks"],
        ),
        (
            "assigned_user on a shared cluster",
            edit("mode = \"shared\"", "mode = \"shared\"\nassigned_user = \"alice\""),
            vec!["p.toml:3:17: assigned_user: assigned_user only applies to mode = \"single-user\": remove it or change mode"],
        ),
        (
            "unknown mode",
            edit("mode = \"shared\"", "mode = \"multi\""),
            vec!["p.toml:2:8: mode: unknown mode \"multi\": expected \"shared\" or \"single-user\""],
        ),
        (
            "bad cluster name",
            edit("cluster", "cluster = \"a b\""),
            vec!["p.toml:1:11: cluster: \"a b\" is not a cluster name: use 1 to 64 of A-Z a-z 0-9 . _ -"],
        ),
        (
            "uid pool containing nobody",
            edit("uid_first", "uid_first = 65000"),
            vec!["p.toml:4:13: sandbox.uid_first: uids 65000..66000 include 65534 (nobody): start the pool above 65534 or end it below"],
        ),
        (
            "uid pool of system uids",
            edit("uid_first", "uid_first = 999"),
            vec!["p.toml:4:13: sandbox.uid_first: 999 is out of range: use at least 1000, so tasks never share a uid with a system account, and below 2^31"],
        ),
        (
            "uid pool past 2^31",
            edit("uid_first", "uid_first = 2147483000"),
            vec!["p.toml:5:13: sandbox.uid_count: uids 2147483000..2147484000 end above 2^31 (2147483648): lower uid_first or uid_count"],
        ),
        (
            "unknown layer",
            edit("read_only", "read_only = []\nbest_effort = [\"apparmor\"]"),
            vec!["p.toml:8:16: sandbox.best_effort[1]: unknown sandbox layer \"apparmor\": expected landlock-fs, landlock-net, landlock-scope or seccomp"],
        ),
        (
            "ports with no network",
            edit("mode = \"host\"", "mode = \"none\""),
            vec!["p.toml:10:16: network.connect_tcp: tasks have no network with mode = \"none\": remove connect_tcp or use mode = \"host\""],
        ),
        (
            "bad and duplicate ports",
            edit("connect_tcp", "connect_tcp = [443, 0, 443, 70000]"),
            vec![
                "p.toml:10:21: network.connect_tcp[2]: 0 is not a TCP port: use 1 to 65535",
                "p.toml:10:24: network.connect_tcp[3]: port 443 is listed twice",
                "p.toml:10:29: network.connect_tcp[4]: 70000 is not a TCP port: use 1 to 65535",
            ],
        ),
        (
            "no program",
            edit("[[program]]", "").replace("path = \"/usr/bin/python3\"\n", ""),
            vec!["p.toml:1:1: program: no program is allowed: add a [[program]] table with the path of a program tasks may run"],
        ),
        (
            "duplicate program and bad user",
            edit("path", "path = \"/usr/bin/python3\"\n[[program]]\npath = \"/usr/bin/python3\"\nusers = [\"Bob\"]"),
            vec![
                "p.toml:15:8: program[2].path: /usr/bin/python3 is already allowed by program[1]: merge the two rules",
                "p.toml:16:10: program[2].users[1]: \"Bob\" is not a user or group name: use a lower-case ASCII letter or _ then up to 63 of a-z 0-9 _ . -",
            ],
        ),
        (
            "pinned digest that is not sha256",
            edit("path", "path = \"/usr/bin/python3\"\nsha256 = \"abc\""),
            vec!["p.toml:14:10: program[1].sha256: \"abc\" is not a SHA-256 digest: write the 64 hex digits that `sha256sum /usr/bin/python3` prints"],
        ),
        (
            "every error is collected",
            edit("scratch_root", "scratch_root = \"tasks\"")
                .replace("[limits]", "[limits]\ncpu_seconds = -1\ntmp = \"lots\""),
            vec![
                "p.toml:6:16: sandbox.scratch_root: \"tasks\" is relative: write an absolute path starting with /",
                "p.toml:12:15: limits.cpu_seconds: -1 is negative: limits are positive",
                "p.toml:13:7: limits.tmp: \"lots\" is not a size: write an integer number of bytes or a string like \"512MiB\" (units B, KiB, MiB, GiB, TiB; K, M, G, T are binary too)",
            ],
        ),
    ];
    for (name, text, want) in cases {
        assert_eq!(errors(&text), want, "{name}:\n{text}");
    }
}

#[test]
fn error_without_key_and_error_list_display() {
    let errors = airlock_policy::PolicyErrors(vec![
        PolicyError {
            origin: "a.toml".into(),
            line: 1,
            column: 2,
            key: String::new(),
            message: "bad".into(),
        },
        PolicyError {
            origin: "a.toml".into(),
            line: 3,
            column: 4,
            key: "limits.tmp".into(),
            message: "worse".into(),
        },
    ]);
    assert_eq!(
        errors.to_string(),
        "a.toml:1:2: bad\na.toml:3:4: limits.tmp: worse"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = edit("read_only", "read_only = [\"/ü\", \"rel\"]");
    assert_eq!(errors(&text)[0].split(": ").next(), Some("p.toml:7:20"));
}
