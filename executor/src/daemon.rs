//! `airlockd`: start-up (policy, probes, clean-up), serving, shutdown.
//!
//! Start-up order: load and validate the policy; check this host has every
//! sandbox layer the policy requires (refuse to start otherwise, naming the
//! layer); compile seccomp; in network mode host set the host up for
//! tasks' networks ([`crate::netns::host`]); make tasks' network namespaces
//! ahead; kill what a crashed run left (processes of pool uids,
//! scratch dirs); start the spawner ([`crate::spawner`]); then serve. On SIGHUP: reload the policy file
//! ([`crate::reload`]). On SIGTERM/SIGINT: health goes NOT_SERVING,
//! every task is cancelled and purged, then the process exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_policy::{Layer, Policy};
use airlock_protocol::v1::airlock_server::AirlockServer;
use anyhow::{bail, Context};
use clap::Parser;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::audit::{AuditEvent, AuditLog};
use crate::service::AirlockService;
use crate::supervisor::{HostFacts, LoadedPolicy, Registry, Supervisor};

/// airlockd: runs every task in its own sandbox.
#[derive(Parser, Debug)]
#[command(name = "airlockd", version)]
pub struct Args {
    /// The cluster's policy file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Where to serve: `unix:/path` (default unix:/run/airlock/airlockd.sock),
    /// or `tcp:HOST:PORT` (needs --tls-cert, --tls-key, --tls-client-ca, or
    /// --insecure-loopback for a loopback address in tests). Repeatable.
    #[arg(long = "listen", value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// Group that may use the Unix socket (mode 0660, owner root).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Server certificate (PEM) for tcp listeners.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Server key (PEM) for tcp listeners.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to (mTLS).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Allow plaintext tcp listeners on loopback addresses. For tests only:
    /// anyone on this host who can connect can run tasks as any user.
    #[arg(long)]
    pub insecure_loopback: bool,
    /// The launcher binary (default: airlock-launch beside airlockd).
    #[arg(long, value_name = "FILE")]
    pub launcher: Option<PathBuf>,
}

/// Runs airlockd; errors are printed by the caller.
pub fn main(args: Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("airlockd must run as root: it switches every task to its own uid and builds namespaces");
    }
    // Check the listen arguments before anything changes on the host.
    for listen in &args.listen {
        if let Listen::Tcp(addr) = parse_listen(listen)? {
            tls_config(&args, addr)?;
        }
    }
    // Each live task holds a pidfd, its pipes and its report socket here.
    crate::sys::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let prepared = runtime.block_on(prepare(&args.config, args.launcher.as_deref()))?;
    let result = runtime.block_on(serve(prepared.sup.clone(), &args));
    drop(prepared);
    result
}

/// A supervisor ready to run tasks, and what must live as long as it.
pub struct Prepared {
    /// The supervisor.
    pub sup: Arc<Supervisor>,
    _locks: (nix::fcntl::Flock<std::fs::File>, std::fs::File),
}

/// Everything before serving: loads the policy at `config`, checks the
/// host's layers, compiles seccomp, makes tasks' network namespaces,
/// cleans up after a crashed run, and starts the spawner (`launcher`, by
/// default airlock-launch beside this binary). The benchmark uses it to run
/// tasks in-process, without gRPC.
pub async fn prepare(config: &Path, launcher: Option<&Path>) -> anyhow::Result<Prepared> {
    let origin = config.display().to_string();
    // Whoever can write the policy decides who runs what as whom.
    crate::sys::check_root_only(config, "the policy file")?;
    let text = std::fs::read_to_string(config).with_context(|| format!("read policy {origin}"))?;
    let policy =
        Policy::parse(&text, &origin).map_err(|errs| anyhow::anyhow!("invalid policy:\n{errs}"))?;
    let policy_sha256 = crate::pin::sha256_hex(text.as_bytes())?;
    let layers = check_layers(&policy)?;
    let seccomp = crate::seccomp_profile::compile()?;
    // Every task gets a network namespace of its own from this pool; made
    // ahead, so that the spawn path only joins one. Tasks on the network
    // need the host set up for them first.
    let ahead = (policy.uid_pool.count as usize).min(crate::netns::AHEAD);
    let (empty, wired) = match policy.network.mode {
        airlock_policy::NetworkMode::None => (ahead, 0),
        airlock_policy::NetworkMode::Host => {
            crate::netns::host::setup()
                .map_err(anyhow::Error::msg)
                .context("set up the host for network mode host")?;
            (0, ahead)
        }
    };
    let netns = crate::netns::NetnsPool::new(empty, wired, policy.uid_pool.count as usize)
        .context("create the tasks' network namespaces")?;
    let launcher = match launcher {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("airlock-launch"))
            .context("locate airlock-launch")?,
    };
    if !launcher.is_file() {
        bail!(
            "launcher {} not found (build it with the workspace, or pass --launcher)",
            launcher.display()
        );
    }
    // Start-up kills every process of the uid pool and removes what it
    // finds in the scratch root: both must be this airlockd's alone.
    let uid_lock = crate::claim::lock_uid_pool(policy.uid_pool)?;
    crate::claim::check_no_account_in(policy.uid_pool)?;
    crate::claim::check_no_subordinate_uids_in(policy.uid_pool)?;
    crate::claim::check_scratch_root(&policy.scratch_root, policy.uid_pool)?;
    prepare_scratch_root(&policy.scratch_root)?;
    let lock = lock_scratch_root(&policy.scratch_root)?;
    let audit = AuditLog::open(&policy.audit_log)?;
    let leftovers = crate::purge::startup_cleanup(policy.uid_pool, &policy.scratch_root);
    audit.record(&AuditEvent::Start {
        cluster: &policy.cluster,
        killed_processes: leftovers.killed,
        removed_scratch_dirs: leftovers.removed,
        policy_sha256: &policy_sha256,
    });
    if leftovers.killed + leftovers.removed > 0 {
        tracing::warn!(
            killed = leftovers.killed,
            removed = leftovers.removed,
            "cleaned up after a previous run"
        );
    }
    for uid in &leftovers.stuck_uids {
        tracing::error!(
            uid,
            "a process or scratch dir of this uid survives clean-up; the uid is not handed out"
        );
    }
    let mut loaded = LoadedPolicy::new(policy)
        .with_context(|| format!("policy {origin}: load the programs (program.path)"))?;
    loaded.sha256 = policy_sha256;
    let credentials = match &loaded.policy.credentials {
        Some(config) => Some(Arc::new(
            crate::credentials::CredentialService::new(config.clone())
                .await
                .context("start the credentials endpoint")?,
        )),
        None => None,
    };
    let sup = Arc::new(Supervisor {
        uids: {
            let pool = crate::uids::UidPool::new(
                loaded.policy.uid_pool.first,
                loaded.policy.uid_pool.count,
            );
            leftovers
                .stuck_uids
                .iter()
                .for_each(|uid| pool.quarantine(*uid));
            pool
        },
        policy: std::sync::RwLock::new(Arc::new(loaded)),
        config: config.to_path_buf(),
        reloading: std::sync::Mutex::new(()),
        audit,
        seccomp,
        host: HostFacts {
            landlock_abi: layers.landlock_abi,
            seccomp: layers.seccomp,
        },
        tasks: std::sync::Mutex::new(Registry::default()),
        netns: Arc::new(netns),
        shutdown: CancellationToken::new(),
        credentials,
        spawner: crate::spawner::Spawner::new(launcher.clone()),
    });
    sup.spawner
        .check()
        .await
        .with_context(|| format!("start the launcher {}", launcher.display()))?;
    // Tasks reach it however they were started (gRPC or in-process).
    if let Some(credentials) = &sup.credentials {
        if let Some(listener) = credentials.take_listener() {
            tracing::info!(
                port = credentials.port(),
                "serving task credentials on 169.254.170.2"
            );
            tokio::spawn(crate::credentials::endpoint::serve(sup.clone(), listener));
        }
    }
    Ok(Prepared {
        sup,
        _locks: (lock, uid_lock),
    })
}

/// Probes Landlock and seccomp and checks them against the policy.
fn check_layers(policy: &Policy) -> anyhow::Result<Layers> {
    let abi = crate::sys::landlock_abi();
    let seccomp = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.contains("\nSeccomp_filters:"));
    let layers = layers_to_use(&policy.best_effort, abi, seccomp).map_err(anyhow::Error::msg)?;
    for layer in &layers.missing {
        tracing::warn!(%layer, "sandbox layer unavailable on this host; running without it as the policy's best_effort allows");
    }
    tracing::info!(landlock_abi = abi, seccomp, "sandbox layers available");
    Ok(layers)
}

/// What the sandbox will use on this host.
#[derive(Debug, PartialEq, Eq)]
pub struct Layers {
    /// The Landlock ABI to build rulesets for; 0: no Landlock.
    pub landlock_abi: i32,
    /// Whether to install seccomp filters.
    pub seccomp: bool,
    /// Layers missing here that the policy allows to be missing.
    pub missing: Vec<Layer>,
}

/// Decides which layers to use given what the kernel has: an error naming
/// every missing layer the policy requires, with what it needs.
pub fn layers_to_use(best_effort: &[Layer], abi: i32, seccomp: bool) -> Result<Layers, String> {
    let needs = [
        (
            Layer::LandlockFs,
            abi >= 1,
            "Landlock (Linux 5.13+, enabled in the kernel's lsm= list)",
        ),
        (
            Layer::LandlockNet,
            abi >= 4,
            "Landlock ABI 4 (Linux 6.7+) for TCP port rules",
        ),
        (
            Layer::LandlockScope,
            abi >= 6,
            "Landlock ABI 6 (Linux 6.12+) for signal and abstract-socket scoping",
        ),
        (
            Layer::Seccomp,
            seccomp,
            "seccomp filters (CONFIG_SECCOMP_FILTER)",
        ),
    ];
    let mut required = Vec::new();
    let mut missing = Vec::new();
    for (layer, present, what) in needs {
        if present {
            continue;
        }
        if best_effort.contains(&layer) {
            missing.push(layer);
        } else {
            required.push(format!("  {layer}: needs {what}"));
        }
    }
    if !required.is_empty() {
        return Err(format!(
            "this host lacks sandbox layers the policy requires (kernel Landlock ABI {abi}):\n{}\n\
             Run on a newer kernel, or list the layer under [sandbox] best_effort in the policy to accept running without it.",
            required.join("\n")
        ));
    }
    Ok(Layers {
        landlock_abi: abi.max(0),
        seccomp,
        missing,
    })
}

/// The scratch root: root-owned 0711, so a task can reach its own dir by
/// name but cannot list the others.
fn prepare_scratch_root(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root)
        .with_context(|| format!("create scratch root {}", root.display()))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("chmod scratch root {}", root.display()))?;
    nix::unistd::chown(
        root,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(0)),
    )
    .with_context(|| format!("chown scratch root {}", root.display()))?;
    Ok(())
}

/// Holds an exclusive lock on `scratch_root/.airlockd.lock` for the life of
/// the daemon.
fn lock_scratch_root(root: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = root.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| errno)
        .with_context(|| {
            format!(
                "another airlockd already uses scratch root {}; stop it first, or give this one a scratch root of its own",
                root.display()
            )
        })
}

/// The lock file in the scratch root; task ids never start with '.'.
pub const LOCK_FILE: &str = ".airlockd.lock";

/// A parsed `--listen` value.
enum Listen {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

fn parse_listen(s: &str) -> anyhow::Result<Listen> {
    if let Some(path) = s.strip_prefix("unix:") {
        let path = PathBuf::from(path.trim_start_matches("//"));
        if !path.is_absolute() {
            bail!("--listen {s}: the socket path must be absolute");
        }
        return Ok(Listen::Unix(path));
    }
    if let Some(addr) = s.strip_prefix("tcp:").map(|a| a.trim_start_matches("//")) {
        let addr = addr
            .parse()
            .with_context(|| format!("--listen {s}: expected tcp:HOST:PORT with an IP address"))?;
        return Ok(Listen::Tcp(addr));
    }
    bail!("--listen {s}: expected unix:/path or tcp:HOST:PORT")
}

async fn serve(sup: Arc<Supervisor>, args: &Args) -> anyhow::Result<()> {
    // Before any listener exists: once a client can connect, SIGHUP reloads
    // (its default action would end airlockd).
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("handle SIGHUP")?;
    let listens = if args.listen.is_empty() {
        vec![format!("unix:{}", crate::client::DEFAULT_SOCKET)]
    } else {
        args.listen.clone()
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AirlockServer<AirlockService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(airlock_protocol::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let service = AirlockServer::new(AirlockService::new(sup.clone()));
    let stop = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    let mut socket_paths = Vec::new();
    for listen in &listens {
        let listen = parse_listen(listen)?;
        // A peer that connects and goes quiet (no TLS hello, no HTTP/2
        // frames) must not hold a descriptor for ever: descriptors are
        // what every task's start needs.
        let mut builder = Server::builder()
            .tcp_keepalive(Some(std::time::Duration::from_secs(60)))
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
        if let Listen::Tcp(addr) = &listen {
            if let Some(tls) = tls_config(args, *addr)? {
                builder = builder.tls_config(tls)?;
            }
        }
        let router = builder
            .add_service(health_service.clone())
            .add_service(reflection.clone())
            .add_service(service.clone());
        let shutdown = stop.clone().cancelled_owned();
        match listen {
            Listen::Unix(path) => {
                let listener = bind_unix(&path, args.socket_group.as_deref())?;
                tracing::info!(socket = %path.display(), "serving");
                socket_paths.push(path);
                servers.spawn(async move {
                    router
                        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                        .await
                });
            }
            Listen::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("bind {addr}"))?;
                tracing::info!(%addr, "serving");
                servers.spawn(async move {
                    router
                        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                        .await
                });
            }
        }
    }
    tokio::spawn(reload_on_sighup(sup.clone(), hup));
    wait_for_signal().await;
    tracing::info!("shutting down: cancelling every task");
    health_reporter
        .set_not_serving::<AirlockServer<AirlockService>>()
        .await;
    sup.shutdown.cancel();
    // Wait for every task to be purged (bounded: the kill path is bounded).
    for _ in 0..200 {
        if sup.registry().live.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Every task has been purged (or the wait gave up): no token may
    // outlive the supervisor, no session its memory.
    if let Some(credentials) = &sup.credentials {
        credentials.purge_all();
    }
    stop.cancel();
    // Idle client connections would hold a graceful shutdown open forever:
    // give them a moment, then close them.
    let drained = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(res) = servers.join_next().await {
            if let Ok(Err(err)) = res {
                tracing::error!(?err, "server ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        servers.abort_all();
    }
    for path in socket_paths {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// How long a TCP peer has to finish its TLS handshake (certificate
/// included): without a bound, connections that never send a hello held a
/// descriptor each, for ever, and anyone who could reach the port could
/// exhaust them.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn tls_config(args: &Args, addr: std::net::SocketAddr) -> anyhow::Result<Option<ServerTlsConfig>> {
    match (&args.tls_cert, &args.tls_key, &args.tls_client_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            let identity = Identity::from_pem(std::fs::read(cert)?, std::fs::read(key)?);
            let ca = Certificate::from_pem(std::fs::read(ca)?);
            Ok(Some(
                ServerTlsConfig::new()
                    .identity(identity)
                    .client_ca_root(ca)
                    .timeout(TLS_HANDSHAKE_TIMEOUT),
            ))
        }
        (None, None, None) if args.insecure_loopback && addr.ip().is_loopback() => {
            tracing::warn!(%addr, "serving plaintext on loopback (--insecure-loopback): for tests only");
            Ok(None)
        }
        (None, None, None) if args.insecure_loopback => {
            bail!("--insecure-loopback allows only loopback addresses, not {addr}")
        }
        _ => bail!(
            "tcp:{addr} needs mTLS: pass --tls-cert, --tls-key and --tls-client-ca (or --insecure-loopback on 127.0.0.1 for tests)"
        ),
    }
}

/// Binds the socket root:GROUP 0660, replacing a stale socket file. Its
/// directory, and every one above it, must be root's and writable by no
/// one else (a sticky one above it, such as /tmp, is fine): whoever could
/// write it could put a socket of their own in its place, which drivers
/// would send their tasks' environment, stdin and SAML assertions to.
fn bind_unix(path: &Path, group: Option<&str>) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .with_context(|| format!("--listen unix:{}: give an absolute path", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    crate::sys::check_root_only(dir, "the socket's directory")?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("remove stale socket {}", path.display()))?,
        Ok(_) => bail!(
            "{} exists and is not a socket: refusing to replace it (remove it, or listen elsewhere)",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("inspect {}", path.display())),
    }
    // Nobody may connect before the mode below is set, whatever our umask.
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(umask);
    let listener = bound.with_context(|| format!("bind {}", path.display()))?;
    let gid = match group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)?
                .with_context(|| format!("--socket-group {name}: no such group"))?
                .gid,
        ),
        None => None,
    };
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), gid)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Reloads the policy on every SIGHUP (see [`crate::reload`]); a rejected
/// file is logged and audited there, and the old policy stays.
async fn reload_on_sighup(sup: Arc<Supervisor>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        let sup = sup.clone();
        let _ =
            tokio::task::spawn_blocking(move || crate::reload::reload(&sup, "sighup", None)).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_start_naming_each_missing_required_layer() {
        let err = layers_to_use(&[], 3, false).unwrap_err();
        assert!(err.contains("landlock-net: needs Landlock ABI 4"), "{err}");
        assert!(
            err.contains("landlock-scope: needs Landlock ABI 6"),
            "{err}"
        );
        assert!(err.contains("seccomp: needs seccomp filters"), "{err}");
        assert!(!err.contains("landlock-fs"), "{err}");
        assert!(err.contains("best_effort"), "{err}");
    }

    #[test]
    fn best_effort_layers_may_be_missing() {
        let layers = layers_to_use(&[Layer::LandlockNet, Layer::LandlockScope], 3, true);
        assert_eq!(
            layers,
            Ok(Layers {
                landlock_abi: 3,
                seccomp: true,
                missing: vec![Layer::LandlockNet, Layer::LandlockScope]
            })
        );
        let none = layers_to_use(
            &[Layer::LandlockFs, Layer::LandlockNet, Layer::LandlockScope],
            0,
            true,
        );
        assert_eq!(none.map(|l| l.landlock_abi), Ok(0));
    }

    #[test]
    fn every_layer_present_is_used() {
        assert_eq!(
            layers_to_use(&[], 7, true),
            Ok(Layers {
                landlock_abi: 7,
                seccomp: true,
                missing: vec![]
            })
        );
    }
}
