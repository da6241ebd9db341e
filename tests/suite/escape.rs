//! The escape suite for security testers (`airlock-escape`, `escape/`)
//! against a real airlockd: every probe runs as an ordinary task through the
//! API, and the baseline shows the same probes see an escape when there is
//! no sandbox. `docs/escape-suite.md` describes every probe.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const VICTIM_ROLE: &str = "arn:aws:iam::123456789012:role/escape-victim";
const ATTACKER_ROLE: &str = "arn:aws:iam::123456789012:role/escape-attacker";

fn escape_bin() -> PathBuf {
    let bin = bin_dir().join("airlock-escape");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs the suite against `d`; returns the exit code, the JSON report, the
/// JUnit XML and the table.
fn run_suite(d: &Daemon, baseline: bool) -> (i32, serde_json::Value, String, String) {
    run_suite_with(d, baseline, &[])
}

fn run_suite_with(
    d: &Daemon,
    baseline: bool,
    extra: &[&str],
) -> (i32, serde_json::Value, String, String) {
    let json = d.dir.path().join(format!("escape-{baseline}.json"));
    let junit = d.dir.path().join(format!("escape-{baseline}.xml"));
    let mut cmd = Command::new(escape_bin());
    cmd.arg("--endpoint")
        .arg(format!("unix:{}", d.socket.display()))
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .args(extra);
    if baseline {
        cmd.arg("--baseline");
    }
    let out = cmd.output().unwrap();
    let table = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&json, &table);
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    (out.status.code().unwrap_or(-1), report, xml, table)
}

fn read_json(path: &Path, table: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); output:\n{table}"));
    serde_json::from_str(&text).unwrap()
}

fn names_with(report: &serde_json::Value, verdict: &str) -> BTreeSet<String> {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["verdict"] == verdict)
        .map(|o| o["probe"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn escape_suite_against_the_sandbox_finds_no_escape() {
    if !privileged() {
        return;
    }
    sandbox_holds(Opts::default());
}

#[test]
fn escape_suite_against_a_sandbox_without_network_finds_no_escape() {
    if !privileged() {
        return;
    }
    sandbox_holds(Opts {
        network: "none",
        ..Opts::default()
    });
}

/// Runs every probe against `opts`' sandbox: nothing may escape (CI fails
/// on any escape), and every probe must run.
fn sandbox_holds(opts: Opts) {
    let d = Daemon::start(opts);
    let (code, report, xml, table) = run_suite(&d, false);
    let total = report["outcomes"].as_array().unwrap().len();
    assert!(total >= 40, "only {total} probes\n{table}");
    assert_eq!(report["mode"], "sandbox");
    let errors = names_with(&report, "error");
    assert!(
        errors.is_empty(),
        "probes that could not run: {errors:?}\n{table}"
    );
    let escaped = names_with(&report, "escaped");
    assert!(escaped.is_empty(), "ESCAPED: {escaped:?}\n{table}");
    // Exit status: 0 when everything held (1 on any escape).
    assert_eq!(code, 0, "{table}");
    // JUnit: one testcase per probe, a failure per escape.
    assert_eq!(xml.matches("<testcase ").count(), total);
    assert_eq!(xml.matches("<failure ").count(), escaped.len());
    assert_eq!(xml.matches("<error ").count(), 0);
    // Nothing of the victim or a probe is left on the host.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !(d.pool_processes().is_empty() && d.scratch_dirs().is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        d.pool_processes().is_empty(),
        "task processes left: {:?}",
        d.pool_processes()
    );
    assert!(
        d.scratch_dirs().is_empty(),
        "scratch dirs left: {:?}",
        d.scratch_dirs()
    );
}

#[test]
fn escape_suite_baseline_detects_escapes_without_the_sandbox() {
    if !privileged() {
        return;
    }
    // The daemon is only a target for the supervisor probes here.
    let d = Daemon::start(Opts::default());
    let (code, report, _, table) = run_suite(&d, true);
    assert_eq!(report["mode"], "baseline");
    let total = report["outcomes"].as_array().unwrap().len();
    let escaped = names_with(&report, "escaped");
    let errors = names_with(&report, "error");
    assert!(
        errors.is_empty(),
        "probes that could not run: {errors:?}\n{table}"
    );
    // Probes with nothing to attack here (no credentials endpoint) skip.
    let ran = total - names_with(&report, "skipped").len();
    assert!(
        escaped.len() * 4 >= ran * 3,
        "only {} of {ran} probes saw an escape without the sandbox\n{table}",
        escaped.len()
    );
    // Every category has probes that can see an escape.
    let categories: BTreeSet<_> = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["verdict"] == "escaped")
        .map(|o| o["category"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(categories.len(), 10, "{categories:?}\n{table}");
    assert_eq!(code, 1, "escapes exit 1\n{table}");
}

#[test]
fn escape_suite_cannot_take_the_victims_aws_credentials() {
    if !privileged() {
        return;
    }
    if !venv().join("bin/moto_server").is_file() {
        let why = format!(
            "skipped: moto is not installed in {} (run scripts/moto --install, or set AIRLOCK_VENV)",
            venv().display()
        );
        if std::env::var("REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("{why}; REQUIRE_PRIVILEGED=1 forbids skipping");
        }
        eprintln!("{why}");
        return;
    }
    let (sts, mut moto) = spawn_moto();
    let d = Daemon::start(Opts {
        extra_policy: format!(
            r#"
[credentials]
region = "us-east-1"
sts_endpoint = "http://127.0.0.1:{sts}"

[[entitlement]]
users = ["victim"]
roles = ["{VICTIM_ROLE}"]

[[entitlement]]
users = ["attacker"]
roles = ["{ATTACKER_ROLE}"]
"#
        ),
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), "escape-meta".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "escape-meta-secret".into()),
        ],
        ..Opts::default()
    });
    let (_, report, _, table) = run_suite_with(
        &d,
        false,
        &[
            "--role",
            VICTIM_ROLE,
            "--attacker-role",
            ATTACKER_ROLE,
            "--only",
            "supervisor.,other.",
        ],
    );
    let _ = moto.kill();
    let _ = moto.wait();
    assert!(
        report["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("the victim has AWS credentials")),
        "the victim got no credentials: {}\n{table}",
        report["notes"]
    );
    let creds = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["probe"] == "supervisor.credentials-endpoint")
        .unwrap();
    assert_eq!(creds["verdict"], "contained", "{creds}\n{table}");
    // Its own token on the victim's path was tried and refused.
    assert!(
        creds["attempts"].as_array().unwrap().iter().any(|a| a
            .as_str()
            .unwrap()
            .starts_with("own token on the victim's path: HTTP/1.1 403")),
        "{creds}"
    );
    for verdict in ["error", "skipped"] {
        let names = names_with(&report, verdict);
        assert!(names.is_empty(), "{verdict}: {names:?}\n{table}");
    }
    let escaped = names_with(&report, "escaped");
    assert!(escaped.is_empty(), "ESCAPED: {escaped:?}\n{table}");
}
