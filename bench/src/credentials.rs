//! Credentials on: STS calls per task, and how long a task's SDK waits for
//! its first credentials from a warm cache. Against a real `moto_server`
//! from the test venv (`scripts/moto --install`), with an in-process
//! supervisor whose tasks run `/usr/bin/true` or stock boto3.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_executor::supervisor::Supervisor;
use airlock_protocol::v1::RunTaskRequest;
use anyhow::{bail, Context};

const FIXTURES: &str = include_str!("../../scripts/moto-fixtures.py");
const ROLE: &str = "arn:aws:iam::123456789012:role/alice-data";

/// moto_server with the fixtures loaded; killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    venv: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto from `venv` and sets this process's AWS identity to the
    /// fixtures' meta user. Call before any thread exists (it sets the
    /// environment, which the in-process supervisor's STS client reads).
    pub fn start(venv: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(venv.join("bin/moto_server"))
            // Every address: tasks reach the worker at 10.213.0.1.
            .args(["-H", "0.0.0.0", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start moto_server from {}", venv.display()))?;
        let moto = Self {
            child,
            port,
            venv: venv.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("moto_server did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = Command::new(venv.join("bin/python3"))
            .args(["-c", FIXTURES, &format!("http://127.0.0.1:{port}")])
            .output()?;
        if !out.status.success() {
            bail!("moto fixtures: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8(out.stdout)?;
        let field = |name: &str| -> anyhow::Result<String> {
            let start = text
                .find(&format!("\"{name}\": \""))
                .context("fixtures' key")?
                + name.len()
                + 5;
            let len = text[start..].find('"').context("fixtures' key")?;
            Ok(text[start..start + len].to_string())
        };
        // Edition 2021, and no other thread exists yet (see above).
        std::env::set_var("AWS_ACCESS_KEY_ID", field("id")?);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", field("secret")?);
        Ok(moto)
    }

    /// The bench policy with `[credentials]` against this moto, tasks on the
    /// host network (they reach the credential endpoint on loopback).
    pub fn policy(&self, dir: &Path) -> anyhow::Result<String> {
        let site = site_packages(&self.venv)?;
        let base = crate::bench_policy(
            dir,
            950000,
            200,
            &format!("mode = \"host\"\nconnect_tcp = [{}]", self.port),
            &format!(", \"{}\"", site.display()),
        );
        Ok(format!(
            r#"{base}[credentials]
region = "us-east-1"
sts_endpoint = "http://127.0.0.1:{port}"
task_endpoint_url = "http://10.213.0.1:{port}"
[[entitlement]]
users = ["alice"]
roles = ["{ROLE}"]
default_role = "{ROLE}"
"#,
            port = self.port,
        ))
    }

    /// Measures and prints the credential figures.
    pub async fn report(&self, sup: &Arc<Supervisor>, tasks: usize) -> anyhow::Result<()> {
        let service = sup
            .credentials
            .as_ref()
            .context("the policy has no [credentials]")?;
        let calls = || service.broker.sts_calls();
        let dropped = || service.broker.sessions_dropped();
        println!("\nCredentials on (moto_server as STS; user alice, one data role):\n");
        println!("| tasks of one (user, role) | tasks | STS AssumeRole calls | per task | sessions dropped: no task held them |");
        println!("|---|---|---|---|---|");
        for (label, c) in [("one after another", 1usize), ("8 at a time", 8)] {
            let before = calls();
            let dropped_before = dropped();
            let n = tasks / 4;
            let mut workers = Vec::new();
            for w in 0..c {
                let sup = sup.clone();
                workers.push(tokio::spawn(async move {
                    let mut i = w;
                    while i < n {
                        run(&sup, request("/usr/bin/true", &[], None)).await?;
                        i += c;
                    }
                    anyhow::Ok(())
                }));
            }
            for w in workers {
                w.await??;
            }
            let made = calls() - before;
            println!(
                "| {label} | {n} | {made} | {:.3} | {} |",
                made as f64 / n as f64,
                dropped() - dropped_before
            );
        }
        // A warm cache: one live task of alice holds the session while the
        // measured tasks start.
        let holder = {
            let sup = sup.clone();
            tokio::spawn(async move { run(&sup, request("/usr/bin/sleep", &["30"], None)).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let site = site_packages(&self.venv)?;
        let mut waits = Vec::new();
        let mut endpoint = Vec::new();
        // boto3's wait, then (after it, so as not to warm anything of
        // boto3's) airlockd's share: one GET on a fresh connection, from
        // connect to the whole answer, without an SDK.
        let code = "import os, socket, time, boto3\n\
            s = boto3.Session()\n\
            t = time.perf_counter()\n\
            c = s.get_credentials().get_frozen_credentials()\n\
            assert c.access_key and c.token\n\
            sdk = (time.perf_counter() - t) * 1000\n\
            url = os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI']\n\
            host, port = url.split('/')[2].rsplit(':', 1)\n\
            path = '/' + url.split('/', 3)[3]\n\
            token = open(os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE']).read().strip()\n\
            ask = f'GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nAuthorization: {token}\\r\\nConnection: close\\r\\n\\r\\n'.encode()\n\
            t = time.perf_counter()\n\
            with socket.create_connection((host, int(port))) as conn:\n \
              conn.sendall(ask)\n \
              answer = b''.join(iter(lambda: conn.recv(65536), b''))\n\
            endpoint = (time.perf_counter() - t) * 1000\n\
            assert answer.startswith(b'HTTP/1.1 200'), answer[:40]\n\
            print(sdk, endpoint)\n";
        let before = calls();
        for _ in 0..20 {
            let out = run(sup, request("/usr/bin/python3", &["-c", code], Some(&site))).await?;
            let mut times = out.split_whitespace().map(str::parse::<f64>);
            let mut next = || {
                times
                    .next()
                    .and_then(Result::ok)
                    .context("the task's timing")
            };
            waits.push(next()?);
            endpoint.push(next()?);
        }
        let made = calls() - before;
        waits.sort_by(f64::total_cmp);
        endpoint.sort_by(f64::total_cmp);
        println!(
            "\nFirst credentials inside a task, warm cache (boto3's `get_credentials()` through the container-credentials endpoint): median {:.2} ms, max {:.2} ms over {} tasks; STS calls during them: {made}. Of that, airlockd's endpoint (one GET on a new connection from inside the task, connect to the last byte, no SDK): median {:.2} ms, max {:.2} ms",
            waits[waits.len() / 2],
            waits[waits.len() - 1],
            waits.len(),
            endpoint[endpoint.len() / 2],
            endpoint[endpoint.len() - 1],
        );
        holder.abort();
        Ok(())
    }
}

fn request(program: &str, args: &[&str], site: Option<&Path>) -> RunTaskRequest {
    let mut env = std::collections::HashMap::new();
    if let Some(site) = site {
        env.insert("PYTHONPATH".to_string(), site.display().to_string());
    }
    RunTaskRequest {
        user: "alice".into(),
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        role_arn: ROLE.into(),
        env,
        ..Default::default()
    }
}

/// Runs a task in-process; its stdout, or an error unless it exited 0.
async fn run(sup: &Arc<Supervisor>, req: RunTaskRequest) -> anyhow::Result<String> {
    let done = airlock_executor::run::run_in_process(sup, req).await?;
    if done.exited.exit_code != Some(0) {
        bail!(
            "task ended: {:?}; stderr: {}",
            done.exited,
            String::from_utf8_lossy(&done.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&done.stdout).into_owned())
}

fn site_packages(venv: &Path) -> anyhow::Result<PathBuf> {
    std::fs::read_dir(venv.join("lib"))?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .with_context(|| format!("no site-packages in {}", venv.display()))
}
