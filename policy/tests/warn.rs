#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use airlock_policy::{is_interpreter, HostFacts, Policy, PolicyWarning};
use pretty_assertions::assert_eq;

/// A policy that draws no warning; cases edit it.
const QUIET: &str = r#"cluster = "c1"
mode = "shared"
[sandbox]
uid_first = 200000
uid_count = 1000
scratch_root = "/var/lib/airlock/tasks"
read_only = ["/usr/lib/python3.11", "/etc"]
[network]
mode = "host"
connect_tcp = [443]
[[program]]
path = "/usr/bin/python3"
"#;

fn warnings(text: &str, host: &HostFacts) -> Vec<String> {
    let policy = Policy::parse(text, "p.toml").unwrap();
    policy
        .warnings(host)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn present(paths: &[&str]) -> HostFacts {
    HostFacts {
        exists: paths.iter().map(|p| (PathBuf::from(p), true)).collect(),
        ..Default::default()
    }
}

#[test]
fn a_careful_policy_draws_no_warning() {
    assert_eq!(
        warnings(QUIET, &present(&["/usr/bin/python3"])),
        Vec::<String>::new()
    );
}

#[test]
fn each_risky_entry_is_warned_about_with_its_key() {
    let ro = |paths: &str| QUIET.replace(r#"["/usr/lib/python3.11", "/etc"]"#, paths);
    let cases: Vec<(&str, String, HostFacts, Vec<&str>)> = vec![
        (
            "interpreter with a read-only path in a tenant-writable place",
            ro(r#"["/etc", "/var/tmp/libs"]"#),
            HostFacts::default(),
            vec![
                "program[1].path: /usr/bin/python3 runs code it reads, and sandbox.read_only[2] (/var/tmp/libs) lies under /var/tmp, which anyone on the host can write: one host user could plant code there that a tenant's python3 then loads; keep read-only paths out of writable places",
            ],
        ),
        (
            "program missing on this host",
            QUIET.to_string(),
            HostFacts {
                exists: [(PathBuf::from("/usr/bin/python3"), false)].into(),
                ..Default::default()
            },
            vec!["program[1].path: /usr/bin/python3 does not exist on this host: airlockd refuses to load a policy whose program it cannot read"],
        ),
        (
            "pinned digest differs on this host",
            QUIET.replace("path = \"/usr/bin/python3\"\n", &format!("path = \"/usr/bin/python3\"\nsha256 = \"{}\"\n", "a".repeat(64))),
            HostFacts {
                sha256: [(PathBuf::from("/usr/bin/python3"), "b".repeat(64))].into(),
                ..Default::default()
            },
            vec!["program[1].sha256: /usr/bin/python3 has sha256 bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb on this host, not the pinned aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: airlockd refuses to load this policy here"],
        ),
        (
            "the metadata service's port",
            QUIET.replace("connect_tcp = [443]", "connect_tcp = [443, 80]"),
            HostFacts::default(),
            vec!["network.connect_tcp[2]: port 80 is the cloud metadata service's (169.254.169.254:80), which hands out the worker's own credentials (its meta role); tasks get their credentials from Airlock, so remove 80 unless tasks must reach plain HTTP"],
        ),
        (
            "directories of executables",
            ro(r#"["/usr/bin", "/usr"]"#),
            HostFacts::default(),
            vec![
                "sandbox.read_only[1]: /usr/bin is a directory of executables: through the dynamic loader (ld.so FILE), which every dynamically linked program needs, a task can run every ELF file it can read there, not only the allowlist; list the library directories the programs need instead",
                "sandbox.read_only[2]: /usr contains /usr/bin, a directory of executables: through the dynamic loader (ld.so FILE), which every dynamically linked program needs, a task can run every ELF file it can read there, not only the allowlist; list the library directories the programs need instead",
            ],
        ),
        (
            "read-only path missing on this host",
            QUIET.to_string(),
            HostFacts {
                exists: [(PathBuf::from("/etc"), false)].into(),
                ..Default::default()
            },
            vec!["sandbox.read_only[2]: /etc does not exist on this host: airlockd skips it, and tasks do not see it"],
        ),
        (
            "program that is not an executable file",
            QUIET.to_string(),
            HostFacts {
                not_executable: [PathBuf::from("/usr/bin/python3")].into(),
                ..Default::default()
            },
            vec!["program[1].path: /usr/bin/python3 is not a file that tasks may execute (a directory, or a file without execute permission for others, which tasks' uids are): airlockd refuses to load a policy whose program is a directory, and a task of a file it cannot execute fails to start"],
        ),
        (
            "a single-user cluster's user allowed no program",
            QUIET
                .replace("mode = \"shared\"", "mode = \"single-user\"\nassigned_user = \"carol\"")
                .replace("path = \"/usr/bin/python3\"\n", "path = \"/usr/bin/python3\"\nusers = [\"dave\"]\n"),
            HostFacts::default(),
            vec!["program[1].users: the cluster's one user, carol (mode single-user), is not among the users allowed /usr/bin/python3: no task can run it"],
        ),
    ];
    for (name, text, host, want) in cases {
        assert_eq!(warnings(&text, &host), want, "{name}");
    }
}

#[test]
fn the_whole_root_draws_the_executables_warning() {
    let text = QUIET
        .replace(r#"["/usr/lib/python3.11", "/etc"]"#, r#"["/"]"#)
        .replace("/var/lib/airlock/tasks", "/srv/airlock/tasks");
    // "/" holds the scratch root, which is an error; with the scratch root
    // elsewhere it is still "/" as a read-only path.
    assert!(Policy::parse(&text, "p.toml").is_err());
    let keys: Vec<PolicyWarning> =
        Policy::parse(&text.replace(r#"["/"]"#, r#"["/usr"]"#), "p.toml")
            .unwrap()
            .warnings(&HostFacts::default());
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].message.contains("contains /usr/bin"));
}

#[test]
fn interpreters_are_recognized_by_name_and_version() {
    for yes in [
        "/usr/bin/python3",
        "/usr/bin/python3.11",
        "/bin/sh",
        "/usr/bin/bash",
        "/usr/bin/perl5.36",
        "/usr/local/bin/node",
        "/usr/bin/Rscript",
    ] {
        assert!(is_interpreter(std::path::Path::new(yes)), "{yes}");
    }
    for no in [
        "/usr/bin/id",
        "/opt/tool/run",
        "/usr/bin/shasum",
        "/usr/bin/python-config",
    ] {
        assert!(!is_interpreter(std::path::Path::new(no)), "{no}");
    }
}

#[test]
fn warning_keys_locate_their_line_and_column() {
    let text = QUIET.replace("connect_tcp = [443]", "connect_tcp = [443, 80]");
    let cases = [
        ("network.connect_tcp[2]", Some((10, 21))),
        ("sandbox.read_only[1]", Some((7, 14))),
        ("program[1].path", Some((12, 8))),
        ("cluster", Some((1, 11))),
        ("program[2].path", None),
        ("sandbox.nothing", None),
    ];
    for (key, want) in cases {
        assert_eq!(airlock_policy::locate_key(&text, key), want, "{key}");
    }
}
