//! Credentials end to end: a real `moto_server` (STS, IAM with enforcement
//! on, S3), a real airlockd, and stock boto3 inside real sandboxed tasks.
//!
//! moto comes from the virtualenv `scripts/moto --install` makes
//! (`$AIRLOCK_VENV`, default `<repo>/.venv`). Without it these tests skip
//! with that advice, and fail when `REQUIRE_PRIVILEGED=1`.
//!
//! Facts about moto these tests rely on: it enforces IAM on S3 and trust
//! policies on AssumeRole once `/moto-api/reset-auth` gets `0`, accepts only
//! `"*"` as a trust principal of our roles, ignores session policies and
//! expiry, and cannot take an unsigned AssumeRoleWithSAML while enforcing,
//! so SAML is tested on a second moto without enforcement. STS errors moto
//! cannot produce come from a small fake STS in this file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use airlock_protocol::v1::{CancelTaskRequest, ExitReason, RunTaskRequest};
use base64_lite::encode as b64;

use crate::harness::*;

const ACCOUNT: &str = "123456789012";
const ALICE_ROLE: &str = "arn:aws:iam::123456789012:role/alice-data";
const BOB_ROLE: &str = "arn:aws:iam::123456789012:role/bob-data";
const LOCKED_ROLE: &str = "arn:aws:iam::123456789012:role/locked";
const IDP: &str = "arn:aws:iam::123456789012:saml-provider/corp";

/// Roles, buckets and airlockd's own IAM user, made with enforcement off.
/// Buckets, roles and the meta user; shared with scripts/demo.
const FIXTURES: &str = include_str!("../../scripts/moto-fixtures.py");

/// Reads both buckets and asks STS who it is, with nothing Airlock-specific.
const BOTO3_PROBE: &str = r#"
import json, boto3, botocore
s3 = boto3.client("s3")
out = {}
for b in ["alice-bucket", "bob-bucket"]:
    try:
        out[b] = s3.get_object(Bucket=b, Key="hello.txt")["Body"].read().decode()
    except botocore.exceptions.ClientError as e:
        out[b] = e.response["Error"]["Code"]
out["arn"] = boto3.client("sts").get_caller_identity()["Arn"]
out["method"] = boto3.Session().get_credentials().method
import os
out["env"] = sorted(k for k in os.environ if k.startswith("AWS_"))
tok = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
st = os.stat(tok)
out["token_mode"] = oct(st.st_mode & 0o777)
out["token_owner_is_me"] = st.st_uid == os.getuid()
out["token_newline"] = open(tok).read().endswith("\n")
out["dir_mode"] = oct(os.stat(os.path.dirname(tok)).st_mode & 0o777)
print(json.dumps(out))
"#;

/// A moto_server of this test process; killed when the process exits (its
/// watchdog sees its parent change) or when the watchdog is killed.
struct Moto {
    port: u16,
    meta_key: (String, String),
    _child: Child,
}

fn site_packages() -> PathBuf {
    let lib = venv().join("lib");
    std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .unwrap_or_else(|| panic!("no site-packages under {}", lib.display()))
}

/// True when root and moto are here; prints why not, or panics with
/// REQUIRE_PRIVILEGED=1.
fn ready() -> bool {
    if !privileged() {
        return false;
    }
    let why = if !venv().join("bin/moto_server").is_file() {
        format!(
            "skipped: moto is not installed in {} (run scripts/moto --install, or set AIRLOCK_VENV)",
            venv().display()
        )
    } else if let Some(dir) = closed_ancestor(&site_packages()) {
        format!(
            "skipped: sandboxed tasks cannot reach {} ({} is not searchable by other users); \
             put the venv where every user can read it, e.g. AIRLOCK_VENV=/var/tmp/airlock-venv scripts/moto --install",
            site_packages().display(),
            dir.display()
        )
    } else {
        return true;
    };
    if std::env::var("REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{why}; REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    eprintln!("{why}");
    false
}

/// The first directory on the way to `path` that other users cannot
/// search (tasks run as other uids and import boto3 from the venv).
fn closed_ancestor(path: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .find(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(PathBuf::from)
}

fn start_moto(enforce: bool) -> Moto {
    let (port, child) = spawn_moto();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(venv().join("bin/python3"))
        .args(["-c", FIXTURES, &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fixtures: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if enforce {
        let status = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "-H",
                "Content-Type: text/plain",
                "--data-binary",
                "0",
            ])
            .arg(format!("{url}/moto-api/reset-auth"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "enabling IAM enforcement failed");
    }
    Moto {
        port,
        meta_key: (
            key["id"].as_str().unwrap().to_owned(),
            key["secret"].as_str().unwrap().to_owned(),
        ),
        _child: child,
    }
}

/// moto with IAM enforcement on, shared by the tests of this process.
fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start_moto(true))
}

/// moto without enforcement, for AssumeRoleWithSAML.
fn moto_open() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start_moto(false))
}

/// Policy knobs of the credential tests.
struct Creds {
    sts_port: u16,
    task_port: u16,
    duration: &'static str,
    refresh_margin: &'static str,
    network: &'static str,
    meta_key: (String, String),
    /// The policy's `[limits]`, when not the harness's.
    limits: Option<&'static str>,
}

impl Creds {
    fn on(m: &Moto) -> Self {
        Creds {
            sts_port: m.port,
            task_port: m.port,
            duration: "\"1h\"",
            refresh_margin: "\"5m\"",
            network: "host",
            meta_key: m.meta_key.clone(),
            limits: None,
        }
    }

    fn daemon(self) -> Daemon {
        let policy = format!(
            r#"
[credentials]
region = "us-east-1"
sts_endpoint = "http://127.0.0.1:{sts}"
task_endpoint_url = "http://10.213.0.1:{task}"
duration = {duration}
refresh_margin = {margin}

[[entitlement]]
users = ["alice"]
roles = ["{ALICE_ROLE}", "{LOCKED_ROLE}"]
default_role = "{ALICE_ROLE}"

[[entitlement]]
groups = ["bobs"]
roles = ["{BOB_ROLE}"]

[[role]]
arn = "{ALICE_ROLE}"
session_policy = '{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"*"}}]}}'
"#,
            sts = self.sts_port,
            task = self.task_port,
            duration = self.duration,
            margin = self.refresh_margin,
        );
        let defaults = Opts::default();
        Daemon::start(Opts {
            limits: self.limits.unwrap_or(defaults.limits),
            network: self.network,
            connect_tcp: if self.network == "host" {
                vec![self.task_port]
            } else {
                vec![]
            },
            extra_policy: policy,
            extra_read_only: vec![site_packages().display().to_string()],
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), self.meta_key.0),
                ("AWS_SECRET_ACCESS_KEY".into(), self.meta_key.1),
            ],
            ..Opts::default()
        })
    }
}

/// `python3 -c code` as `user` with boto3 importable.
fn boto(user: &str, code: &str) -> RunTaskRequest {
    RunTaskRequest {
        env: env(&[("PYTHONPATH", &site_packages().display().to_string())]),
        ..python(user, code)
    }
}

fn with_role(mut req: RunTaskRequest, role: &str) -> RunTaskRequest {
    req.role_arn = role.into();
    req
}

fn issued(d: &Daemon) -> Vec<serde_json::Value> {
    d.audit()
        .into_iter()
        .filter(|r| r["event"] == "credentials_issued")
        .collect()
}

/// GETs a task's credentials from the endpoint from inside network
/// namespace `ns` (a task's, held open by the test), or from the host's:
/// the HTTP status, or 0 when the connection fails.
fn fetch_from(ns: Option<&std::fs::File>, url: &str, token: &str) -> u16 {
    let ns = ns.map(|f| f.try_clone().unwrap());
    let (url, token) = (url.to_owned(), token.to_owned());
    std::thread::spawn(move || {
        if let Some(ns) = ns {
            // Only this thread moves; its socket is made in the namespace.
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
        http_status(&url, &token)
    })
    .join()
    .unwrap()
}

/// Whether the endpoint of `url` accepts TCP connections (it closes those
/// of addresses that are no task's unread, but accepts them).
fn listening(url: &str) -> bool {
    let (addr, _) = split_url(url);
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// `http://IP:PORT/PATH` as the address and the path.
fn split_url(url: &str) -> (std::net::SocketAddr, &str) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    (host.parse().unwrap(), path)
}

fn http_status(url: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let (addr, path) = split_url(url);
    let timeout = Duration::from_secs(5);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return 0;
    };
    s.set_read_timeout(Some(timeout)).unwrap();
    if write!(s, "GET {path} HTTP/1.1\r\nAuthorization: {token}\r\n\r\n").is_err() {
        return 0;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The endpoint URL and token of a live task, read as root.
fn task_secret(d: &Daemon, id: &str) -> (String, String) {
    let token = std::fs::read_to_string(d.in_task(id, ".airlock/token")).unwrap();
    (task_secret_url(d, id), token)
}

#[tokio::test]
async fn stock_boto3_reads_its_users_bucket_only() {
    if !ready() {
        return;
    }
    let d = Creds::on(moto()).daemon();
    let alice = d.run(boto("alice", BOTO3_PROBE)).await;
    let out = alice.json();
    assert_eq!(out["alice-bucket"], "alice data", "{out}");
    assert_eq!(out["bob-bucket"], "AccessDenied", "{out}");
    assert_eq!(
        out["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/alice-data/alice")
    );
    assert_eq!(out["method"], "container-role");
    assert_eq!(out["token_mode"], "0o400");
    assert_eq!(out["token_owner_is_me"], true);
    assert_eq!(out["token_newline"], false);
    assert_eq!(out["dir_mode"], "0o500");
    let env: Vec<&str> = out["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        [
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_DEFAULT_REGION",
            "AWS_EC2_METADATA_DISABLED",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
        ],
        "no key, and not airlockd's own identity, reaches the task"
    );
    let started = alice.started.as_ref().unwrap();
    assert_eq!(started.role_arn, ALICE_ROLE);
    assert_eq!(started.session_name, "alice");
    assert_eq!(started.source_identity, "alice");
    assert!(started
        .assumed_role_arn
        .ends_with("assumed-role/alice-data/alice"));

    let mut bob = boto("bob", BOTO3_PROBE);
    bob.groups = vec!["bobs".into()];
    let out = d.run(with_role(bob, BOB_ROLE)).await.json();
    assert_eq!(out["alice-bucket"], "AccessDenied", "{out}");
    assert_eq!(out["bob-bucket"], "bob data", "{out}");
    assert_eq!(
        out["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/bob-data/bob")
    );

    let audit = d.audit();
    let ends: Vec<_> = audit.iter().filter(|r| r["event"] == "task_end").collect();
    assert_eq!(ends[0]["credentials"]["session_name"], "alice");
    assert_eq!(ends[0]["credentials"]["source_identity"], "alice");
    assert_eq!(ends[1]["credentials"]["role_arn"], BOB_ROLE);
    let text = std::fs::read_to_string(&d.audit_log).unwrap();
    assert!(
        !text.contains(&moto().meta_key.1),
        "a secret reached the audit log"
    );
    assert!(
        !text.contains("SecretAccessKey") && !text.contains("ASIA"),
        "{text}"
    );
    let records = issued(&d);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["operation"], "AssumeRole");
    assert!(records[0]["expiration"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn unentitled_role_is_denied_before_any_sts_call() {
    if !ready() {
        return;
    }
    let d = Creds::on(moto()).daemon();
    let out = d.run(with_role(boto("bob", "print(1)"), ALICE_ROLE)).await;
    let status = out.status.expect("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status
            .message()
            .starts_with(&format!("user bob is not entitled to role {ALICE_ROLE}")),
        "{}",
        status.message()
    );
    assert!(status.message().contains("ask the cluster operator"));
    let bad = d
        .run(with_role(
            boto("alice", "print(1)"),
            "arn:aws:iam::1:role/x",
        ))
        .await;
    assert_eq!(bad.status.unwrap().code(), tonic::Code::InvalidArgument);
    assert!(issued(&d).is_empty(), "STS was called");
    let admission = d
        .audit()
        .into_iter()
        .find(|r| r["event"] == "admission")
        .unwrap();
    assert_eq!(admission["decision"], "deny");
    assert_eq!(admission["role_arn"], ALICE_ROLE);
    // Without a role and without a default one, a task gets no credentials.
    let out = d
        .run(boto(
            "bob",
            "import os; print(sorted(k for k in os.environ if k.startswith('AWS_')))",
        ))
        .await;
    assert_eq!(out.ok().stdout(), "[]\n");
    assert!(issued(&d).is_empty());
}

#[tokio::test]
async fn sts_access_denied_reaches_the_user_clearly() {
    if !ready() {
        return;
    }
    let d = Creds::on(moto()).daemon();
    let out = d
        .run(with_role(boto("alice", "print(1)"), LOCKED_ROLE))
        .await;
    assert_eq!(out.reason(), ExitReason::SpawnFailed, "{out:?}");
    let msg = &out.exited().message;
    assert!(
        msg.contains(&format!("STS denied access to role {LOCKED_ROLE}"))
            && msg.contains("trust policy"),
        "{msg}"
    );
    let failed: Vec<_> = (d.audit().into_iter())
        .filter(|r| r["event"] == "credentials_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["role_arn"], LOCKED_ROLE);
    assert!(issued(&d).is_empty());
    let left: Vec<_> = (d.scratch_root.read_dir().unwrap().flatten())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "scratch left: {left:?}");
}

/// A SAML assertion as an IdP would post it (unsigned: moto and the fake
/// STS do not check signatures, STS does).
fn assertion(roles: &[String], session: &str) -> Vec<u8> {
    let values: String = roles
        .iter()
        .map(|r| format!("<saml:AttributeValue>{r}</saml:AttributeValue>"))
        .collect();
    let xml = format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Assertion><saml:AttributeStatement><saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/Role">{values}</saml:Attribute><saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/RoleSessionName"><saml:AttributeValue>{session}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion></samlp:Response>"#
    );
    b64(xml.as_bytes()).into_bytes()
}

#[tokio::test]
async fn saml_assertion_roles_are_the_entitlements() {
    if !ready() {
        return;
    }
    let d = Creds::on(moto_open()).daemon();
    // mallory has no entitlement in the policy; her assertion grants bob-data.
    let mut req = with_role(boto("mallory", BOTO3_PROBE), BOB_ROLE);
    req.saml_assertion = assertion(&[format!("{BOB_ROLE},{IDP}")], "mallory@example.com");
    let out = d.run(req.clone()).await;
    let json = out.json();
    assert_eq!(json["bob-bucket"], "bob data", "{json}");
    assert_eq!(
        json["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/bob-data/mallory@example.com")
    );
    assert_eq!(
        out.started.as_ref().unwrap().session_name,
        "mallory@example.com"
    );
    assert_eq!(issued(&d)[0]["operation"], "AssumeRoleWithSAML");

    // A role the assertion does not grant is denied, whatever the policy says.
    let mut alice = with_role(boto("alice", "print(1)"), ALICE_ROLE);
    alice.saml_assertion = req.saml_assertion.clone();
    let status = d.run(alice).await.status.expect("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("SAML assertion for alice does not grant role"),
        "{}",
        status.message()
    );
    // A malformed Role attribute is named.
    req.saml_assertion = assertion(&[BOB_ROLE.to_owned()], "mallory");
    let status = d.run(req).await.status.expect("rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("Role attribute"),
        "{}",
        status.message()
    );
    assert_eq!(issued(&d).len(), 1);

    // Two people submitting as one user, each with an assertion of their
    // own, get sessions of their own while their tasks overlap: CloudTrail
    // shows each of them, not whoever came first.
    let saml = |code: &str, session: &str| {
        let mut req = with_role(boto("mallory", code), BOB_ROLE);
        req.saml_assertion = assertion(&[format!("{BOB_ROLE},{IDP}")], session);
        req
    };
    let (_, first) = start_background(
        &d,
        saml("import time; time.sleep(5)", "mallory@example.com"),
    )
    .await;
    let out = d.run(saml(BOTO3_PROBE, "eve@example.com")).await;
    assert_eq!(
        out.json()["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/bob-data/eve@example.com")
    );
    assert_eq!(
        out.started.as_ref().unwrap().session_name,
        "eve@example.com"
    );
    assert!(first.await.unwrap().exited.is_some());
    assert_eq!(issued(&d).len(), 3);
}

/// Form bodies of the requests a fake STS received.
type Requests = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An STS that records each request's form body and answers it: with the
/// error for its action, or (`ok`) with a session.
async fn fake_sts(ok: bool) -> (u16, Requests) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Requests::default();
    let seen = requests.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then the form body up to Content-Length.
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push(body);
                if ok {
                    let body = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><SourceIdentity>a=</SourceIdentity><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/bob-data/a=</Arn><AssumedRoleId>AROAEXAMPLE:a=</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>ASIAEXAMPLEFAKE</AccessKeyId><SecretAccessKey>fake-secret</SecretAccessKey><SessionToken>fake-token</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    return;
                }
                let (code, message) = if text.contains("Action=AssumeRoleWithSAML") {
                    ("InvalidIdentityToken", "Specified provider doesn't exist.")
                } else {
                    ("ValidationError", "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint")
                };
                let body = format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
                );
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, requests)
}

/// `application/x-www-form-urlencoded` into pairs.
fn form(body: &str) -> std::collections::HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

#[tokio::test]
async fn airlock_asks_sts_for_the_user_duration_and_session_policy() {
    if !privileged() {
        return;
    }
    // moto ignores session names, durations and session policies, so this
    // reads Airlock's own request to a recording STS.
    let (sts, requests) = fake_sts(true).await;
    let d = Creds {
        sts_port: sts,
        task_port: sts,
        duration: "\"15m\"",
        refresh_margin: "\"5m\"",
        network: "host",
        meta_key: ("AKIDEXAMPLE".into(), "not-a-secret".into()),
        limits: None,
    }
    .daemon();
    // User "a" is one character; STS needs two: the mapping appends '='.
    let mut a = python(
        "a",
        "import json, os, urllib.request\n\
         tok = open(os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE']).read()\n\
         req = urllib.request.Request(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'], headers={'Authorization': tok})\n\
         print(json.dumps(json.load(urllib.request.urlopen(req))))",
    );
    a.groups = vec!["bobs".into()];
    let out = d.run(with_role(a, BOB_ROLE)).await.json();
    assert_eq!(out["AccessKeyId"], "ASIAEXAMPLEFAKE");
    assert_eq!(out["SecretAccessKey"], "fake-secret");
    assert_eq!(out["Token"], "fake-token");
    assert_eq!(out["Expiration"], "2030-01-01T00:00:00Z");
    let alice = with_role(python("alice", "print(1)"), ALICE_ROLE);
    d.run(alice).await.ok();
    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let a = form(&requests[0]);
    assert_eq!(a["Action"], "AssumeRole");
    assert_eq!(a["RoleArn"], BOB_ROLE);
    assert_eq!(a["RoleSessionName"], "a=");
    assert_eq!(a["SourceIdentity"], "a=");
    assert_eq!(a["DurationSeconds"], "900");
    assert!(!a.contains_key("Policy"), "{a:?}");
    let alice = form(&requests[1]);
    assert_eq!(alice["RoleSessionName"], "alice");
    let policy: serde_json::Value = serde_json::from_str(&alice["Policy"]).unwrap();
    assert_eq!(
        policy["Version"], "2012-10-17",
        "the [[role]] session policy is sent"
    );
}

#[tokio::test]
async fn sts_validation_and_identity_token_errors_reach_the_user_clearly() {
    if !privileged() {
        return;
    }
    let (sts, _) = fake_sts(false).await;
    let d = Creds {
        sts_port: sts,
        task_port: sts,
        duration: "\"1h\"",
        refresh_margin: "\"5m\"",
        network: "host",
        meta_key: ("AKIDEXAMPLE".into(), "not-a-secret".into()),
        limits: None,
    }
    .daemon();
    let out = d
        .run(with_role(python("alice", "print(1)"), ALICE_ROLE))
        .await;
    assert_eq!(out.reason(), ExitReason::SpawnFailed);
    let msg = &out.exited().message;
    assert!(
        msg.contains("as invalid") && msg.contains("credentials.duration"),
        "{msg}"
    );
    let mut req = with_role(python("alice", "print(1)"), BOB_ROLE);
    req.saml_assertion = assertion(&[format!("{IDP},{BOB_ROLE}")], "alice");
    let out = d.run(req).await;
    assert_eq!(out.reason(), ExitReason::SpawnFailed);
    let msg = &out.exited().message;
    assert!(
        msg.contains("rejected the SAML assertion (InvalidIdentityToken"),
        "{msg}"
    );
    assert!(msg.contains("signed by the identity provider"), "{msg}");
}

/// What alice's task tries against bob's live task.
const STEAL: &str = r#"
import json, os, sys, urllib.request, urllib.error
bob_id, bob_token, bob_url = sys.stdin.read().split()
out = {}
try:
    open(os.path.join(os.path.dirname(os.environ["HOME"]), bob_id, ".airlock/token")).read()
    out["file"] = "read"
except OSError as e:
    out["file"] = type(e).__name__
def get(url, token):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": token}), timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
mine = open(os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read()
out["bob_token"] = get(bob_url, bob_token)
out["my_token_bob_path"] = get(bob_url, mine)
out["bob_token_my_path"] = get(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], bob_token)
out["mine"] = get(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], mine)
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for f in ("environ", "cmdline"):
            try:
                if bob_token.encode() in open(f"/proc/{pid}/{f}", "rb").read():
                    found.append(pid)
            except OSError:
                pass
out["proc"] = found
print(json.dumps(out))
"#;

#[tokio::test]
async fn other_tenants_cannot_get_a_tasks_credentials() {
    if !ready() {
        return;
    }
    let d = Creds::on(moto()).daemon();
    let mut bob = with_role(boto("bob", "import time; time.sleep(60)"), BOB_ROLE);
    bob.groups = vec!["bobs".into()];
    let (bob_id, bob_task) = start_background(&d, bob).await;
    let (url, token) = task_secret(&d, &bob_id);
    let bob_net = d.task_netns(&bob_id);
    // The token works from bob's network namespace, so refusals below are
    // not an accident.
    assert_eq!(fetch_from(Some(&bob_net), &url, &token), 200);
    // From an address that is no task's, the endpoint closes the
    // connection unread; alice's attempts below get as far as the token
    // and address check.
    assert_eq!(
        fetch_from(None, &url, &token),
        0,
        "the endpoint answered another address (the host's)"
    );

    let mut alice = boto("alice", STEAL);
    alice.stdin = format!("{bob_id} {token} {url}").into_bytes();
    let out = d.run(alice).await.json();
    assert_ne!(out["file"], "read", "{out}");
    assert_eq!(out["bob_token"], 403, "{out}");
    assert_eq!(out["my_token_bob_path"], 403, "{out}");
    assert_eq!(out["bob_token_my_path"], 403, "{out}");
    assert_eq!(out["mine"], 200, "{out}");
    assert_eq!(out["proc"], serde_json::json!([]), "{out}");

    d.client()
        .await
        .cancel_task(CancelTaskRequest { task_id: bob_id })
        .await
        .unwrap();
    assert_eq!(bob_task.await.unwrap().reason(), ExitReason::Cancelled);
    assert_ne!(
        fetch_from(Some(&bob_net), &url, &token),
        200,
        "token outlived the task"
    );
}

/// A task that holds `n` connections to the endpoint for 15 seconds, each
/// sending one byte of a request and nothing more: every 0.1 s it opens
/// new ones for those the endpoint closed (over its bound, or after the
/// 2 seconds a request may take). Prints the most it found still open.
fn hog(n: usize) -> String {
    format!(
        r#"
import os, select, socket, time, urllib.parse
u = urllib.parse.urlparse(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
held, kept, end = [], 0, time.time() + 15
while time.time() < end:
    closed, _, _ = select.select(held, [], [], 0)
    for s in closed:
        held.remove(s)
        s.close()
    kept = max(kept, len(held))
    while len(held) < {n}:
        try:
            s = socket.create_connection((u.hostname, u.port), timeout=1)
            s.send(b"G")
            held.append(s)
        except OSError:
            break
    open("ready", "w").close()
    time.sleep(0.1)
print(kept)
"#
    )
}

#[tokio::test]
async fn no_users_tasks_can_take_the_endpoint_from_the_others() {
    if !ready() {
        return;
    }
    let d = Creds {
        limits: Some(
            "memory = \"512MiB\"\nprocesses = 32\nwall_time = \"60s\"\nopen_files = 1024\n",
        ),
        ..Creds::on(moto())
    }
    .daemon();
    let mut bob = with_role(boto("bob", "import time; time.sleep(60)"), BOB_ROLE);
    bob.groups = vec!["bobs".into()];
    let (bob_id, bob_task) = start_background(&d, bob).await;
    let (url, token) = task_secret(&d, &bob_id);
    let bob_net = d.task_netns(&bob_id);
    // One task of alice's opens 300 connections at a time, and 32 more
    // open 12 each: more than 8 of every task's, and more than the 256
    // that the endpoint once served at most in all.
    let mut alice = vec![start_background(&d, boto("alice", &hog(300))).await];
    for _ in 0..32 {
        alice.push(start_background(&d, boto("alice", &hog(12))).await);
    }
    for (id, _) in &alice {
        assert!(
            eventually(Duration::from_secs(20), || d.in_task(id, "ready").exists()).await,
            "a task of alice's never opened its connections"
        );
    }
    // While alice holds as many connections as she can, bob is served
    // every time: each of her tasks gets MAX_PER_TASK connections.
    for _ in 0..5 {
        assert_eq!(fetch_from(Some(&bob_net), &url, &token), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The endpoint closed what it would not serve: of the 300, at most 8
    // stayed open, give or take those it had yet to accept (without the
    // bound, nearly all 300).
    for (_, task) in alice {
        let out = task.await.unwrap();
        let kept: usize = out.stdout().trim().parse().unwrap_or(usize::MAX);
        assert!(
            kept < 50,
            "{kept} connections of one task stayed open: {:?}",
            out.exited
        );
    }
    d.client()
        .await
        .cancel_task(CancelTaskRequest { task_id: bob_id })
        .await
        .unwrap();
    bob_task.await.unwrap();
}

#[tokio::test]
async fn token_dies_with_the_task_however_it_ends() {
    if !ready() {
        return;
    }
    let mut d = Creds::on(moto()).daemon();
    for end in ["completed", "timeout", "cancel", "restart", "shutdown"] {
        let code = if end == "completed" {
            "import time; time.sleep(3)"
        } else {
            "import time; time.sleep(60)"
        };
        let mut req = boto("alice", code);
        if end == "timeout" {
            req.timeout_ms = 4000;
        }
        let (id, task) = start_background(&d, req).await;
        let (url, token) = task_secret(&d, &id);
        let net = d.task_netns(&id);
        assert_eq!(
            fetch_from(Some(&net), &url, &token),
            200,
            "{end}: live token refused"
        );
        // The token file is in the task's scratch tmpfs, reached through a
        // process of the task; it must go with the task.
        let token_file = d.in_task(&id, ".airlock/token");
        assert!(token_file.exists(), "{end}: no token file in the task");
        match end {
            "cancel" => {
                d.client()
                    .await
                    .cancel_task(CancelTaskRequest {
                        task_id: id.clone(),
                    })
                    .await
                    .unwrap();
            }
            "restart" => {
                d.crash();
                d.restart();
                // The old endpoint died with the old process.
                assert!(!listening(&url), "{end}: old endpoint still listens");
                let new_url = task_secret_url(&d, &id);
                assert_ne!(
                    fetch_from(Some(&net), &new_url, &token),
                    200,
                    "{end}: new endpoint took the old token"
                );
                assert!(!token_file.exists(), "{end}: token file left");
                drop(task);
                continue;
            }
            "shutdown" => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(d.pid()),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .unwrap();
                let _ = task.await;
                assert!(!token_file.exists(), "{end}: token file left");
                assert!(
                    eventually(Duration::from_secs(15), || !listening(&url)).await,
                    "{end}: the endpoint outlived airlockd"
                );
                continue;
            }
            _ => {}
        }
        let out = task.await.unwrap();
        let want = match end {
            "completed" => ExitReason::Completed,
            "timeout" => ExitReason::Timeout,
            _ => ExitReason::Cancelled,
        };
        assert_eq!(out.reason(), want, "{end}");
        assert_ne!(
            fetch_from(Some(&net), &url, &token),
            200,
            "{end}: token outlived the task"
        );
        assert!(!token_file.exists(), "{end}: token file left");
    }
}

/// The endpoint URL of task `id` on the current airlockd.
fn task_secret_url(d: &Daemon, id: &str) -> String {
    let port = d
        .log()
        .lines()
        .rev()
        .filter(|l| l.contains("serving task credentials"))
        .find_map(|l| {
            let digits: String = l
                .split("port=")
                .nth(1)?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u16>().ok()
        })
        .expect("endpoint port in airlockd's log");
    format!("http://169.254.170.2:{port}/v1/credentials/{id}")
}

#[tokio::test]
async fn long_task_keeps_working_across_a_refresh() {
    if !ready() {
        return;
    }
    // STS's shortest session is 15 minutes; a margin of 14m56s makes the
    // endpoint refresh a session 4 seconds after getting it.
    let mut creds = Creds::on(moto());
    creds.duration = "\"15m\"";
    creds.refresh_margin = "896";
    let d = creds.daemon();
    let code = r#"
import json, os, time, urllib.request, boto3
s3 = boto3.client("s3")
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = open(os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read()
keys, reads = [], []
for _ in range(4):
    body = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": token})))
    keys.append(body["AccessKeyId"])
    reads.append(s3.get_object(Bucket="alice-bucket", Key="hello.txt")["Body"].read().decode())
    time.sleep(4.5)
print(json.dumps({"keys": keys, "reads": reads, "expiration": body["Expiration"]}))
"#;
    let out = d.run(boto("alice", code)).await.json();
    let keys: std::collections::BTreeSet<&str> = out["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(keys.len() >= 2, "served keys never changed: {out}");
    assert!(
        out["reads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r == "alice data"),
        "{out}"
    );
    assert!(out["expiration"].as_str().unwrap().ends_with('Z'), "{out}");
    let records = issued(&d);
    assert!(records.iter().any(|r| r["refresh"] == true), "{records:?}");
}

#[tokio::test]
async fn overlapping_tasks_of_one_user_and_role_share_one_assume_role() {
    if !ready() {
        return;
    }
    let d = Creds::on(moto()).daemon();
    let code = r#"
import boto3, time
print(boto3.client("s3").get_object(Bucket="alice-bucket", Key="hello.txt")["Body"].read().decode())
time.sleep(3)
"#;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(start_background(&d, boto("alice", code)).await.1);
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().ok().stdout(), "alice data\n");
    }
    let records = issued(&d);
    assert_eq!(records.len(), 1, "{records:?}");
    // The session went with the last task: the next task gets a new one.
    d.run(boto("alice", "print(1)")).await.ok();
    assert_eq!(issued(&d).len(), 2);
}

#[tokio::test]
async fn task_without_network_gets_a_credentials_file() {
    if !ready() {
        return;
    }
    let mut creds = Creds::on(moto());
    creds.network = "none";
    let d = creds.daemon();
    let code = r#"
import json, os, boto3
path = os.environ["AWS_SHARED_CREDENTIALS_FILE"]
c = boto3.Session().get_credentials()
print(json.dumps({"method": c.method, "mode": oct(os.stat(path).st_mode & 0o777), "path": path,
    "container": [k for k in os.environ if k.startswith("AWS_CONTAINER")]}))
"#;
    let out = d.run(boto("alice", code)).await.json();
    assert_eq!(out["method"], "shared-credentials-file", "{out}");
    assert_eq!(out["mode"], "0o400");
    assert_eq!(out["container"], serde_json::json!([]));
    assert!(!std::path::Path::new(out["path"].as_str().unwrap()).exists());
}

/// Standard base64, enough for test assertions.
mod base64_lite {
    pub fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
