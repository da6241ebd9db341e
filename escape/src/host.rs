//! The tool's side on the host: its work dir with planted files, the
//! listeners that stand in for other tenants' services and the metadata
//! service, and what it learns about the host (the supervisor's pid, the
//! victim's host pid, the host's init).

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("read /dev/urandom")?;
    Ok(hex(&buf))
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a listener saw: one line per contact.
pub type Log = Arc<Mutex<Vec<String>>>;

fn log_push(log: &Log, line: String) {
    if let Ok(mut v) = log.lock() {
        v.push(line);
    }
}

/// Whether any logged contact contains `needle`.
pub fn log_contains(log: &Log, needle: &str) -> bool {
    log.lock()
        .map(|v| v.iter().any(|l| l.contains(needle)))
        .unwrap_or(false)
}

/// The tool's directory under /var/tmp, removed on drop.
pub struct Workspace {
    /// The dir itself, 0755.
    pub root: PathBuf,
    /// A 0644 file outside any policy path.
    pub world_file: PathBuf,
    /// A 0600 root file in a 0700 root dir.
    pub root_file: PathBuf,
    /// A 0777 dir.
    pub drop_dir: PathBuf,
    /// A 0666 unix socket the tool listens on.
    pub unix_socket: PathBuf,
    /// A 0755 dir holding `bait.txt` ([`BAIT`]), for purge probes.
    pub bait_dir: PathBuf,
}

/// The content of the purge bait file.
pub const BAIT: &str = "airlock-escape bait: the supervisor's purge must not touch this\n";

impl Workspace {
    /// Creates the dir and plants the host secrets.
    pub fn create(world_secret: &str, root_secret: &str) -> Result<Self> {
        let root = PathBuf::from(format!(
            "/var/tmp/airlock-escape-{}-{}",
            std::process::id(),
            random_hex(4)?
        ));
        std::fs::create_dir(&root).with_context(|| format!("create {}", root.display()))?;
        set_mode(&root, 0o755)?;
        let world_file = root.join("host-world-readable.txt");
        write_mode(&world_file, world_secret, 0o644)?;
        let private = root.join("private");
        std::fs::create_dir(&private)?;
        set_mode(&private, 0o700)?;
        let root_file = private.join("host-root-only.txt");
        write_mode(&root_file, root_secret, 0o600)?;
        let drop_dir = root.join("drop");
        std::fs::create_dir(&drop_dir)?;
        set_mode(&drop_dir, 0o777)?;
        let unix_socket = root.join("host-service.sock");
        let bait_dir = root.join("bait");
        std::fs::create_dir(&bait_dir)?;
        set_mode(&bait_dir, 0o755)?;
        write_mode(&bait_dir.join("bait.txt"), BAIT, 0o644)?;
        Ok(Self {
            bait_dir,
            root,
            world_file,
            root_file,
            drop_dir,
            unix_socket,
        })
    }

    /// A fresh dir for one baseline process, owned by `uid`, 0700.
    pub fn task_dir(&self, name: &str, uid: u32) -> Result<PathBuf> {
        let base = self.root.join("tasks");
        if !base.exists() {
            std::fs::create_dir(&base)?;
            set_mode(&base, 0o755)?;
        }
        let dir = base.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        nix::unistd::chown(
            &dir,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(uid)),
        )
        .with_context(|| format!("chown {}", dir.display()))?;
        set_mode(&dir, 0o700)?;
        Ok(dir)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn write_mode(path: &Path, content: &str, mode: u32) -> Result<()> {
    std::fs::write(path, content).with_context(|| format!("write {}", path.display()))?;
    set_mode(path, mode)
}

/// The listeners and what they saw.
pub struct Listeners {
    /// Stand-in for another tenant's TCP service, on every address of the
    /// worker (tasks on the network reach it at 10.213.0.1).
    pub tcp_service_port: u16,
    /// Fake metadata service, on every address of the worker.
    pub metadata_port: u16,
    /// Fake metadata service on [::1], when the host has IPv6 loopback.
    pub metadata_port_v6: Option<u16>,
    /// UDP listener, on every address of the worker.
    pub udp_port: u16,
    /// Every contact of any listener.
    pub log: Log,
}

impl Listeners {
    /// Binds everything and serves in background threads for the life of
    /// the process.
    pub fn start(
        service_secret: &str,
        metadata_secret: &str,
        unix_secret: &str,
        unix_path: &Path,
    ) -> Result<Self> {
        let log: Log = Arc::default();
        let service = TcpListener::bind("0.0.0.0:0").context("bind the stand-in service")?;
        let tcp_service_port = service.local_addr()?.port();
        serve_tcp(service, "tcp-service", log.clone(), {
            let reply = format!("{service_secret}\n");
            move |_| reply.clone()
        });
        let metadata_secret = metadata_secret.to_string();
        let metadata_reply = move |_: &[u8]| -> String {
            let body = format!(
                "{{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAFAKEMETADATA\",\"SecretAccessKey\":\"{metadata_secret}\",\"Token\":\"fake\"}}"
            );
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let metadata = TcpListener::bind("0.0.0.0:0").context("bind the fake metadata service")?;
        let metadata_port = metadata.local_addr()?.port();
        serve_tcp(metadata, "metadata", log.clone(), metadata_reply.clone());
        let metadata_port_v6 = match TcpListener::bind("[::1]:0") {
            Ok(l) => {
                let port = l.local_addr()?.port();
                serve_tcp(l, "metadata-v6", log.clone(), metadata_reply);
                Some(port)
            }
            Err(_) => None,
        };
        let udp = UdpSocket::bind("0.0.0.0:0").context("bind the UDP listener")?;
        let udp_port = udp.local_addr()?.port();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok((n, from)) = udp.recv_from(&mut buf) {
                    log_push(
                        &log,
                        format!("udp from {from}: {}", String::from_utf8_lossy(&buf[..n])),
                    );
                }
            });
        }
        let _ = std::fs::remove_file(unix_path);
        let unix = UnixListener::bind(unix_path).context("bind the host-service socket")?;
        set_mode(unix_path, 0o666)?;
        {
            let log = log.clone();
            let reply = format!("{unix_secret}\n");
            std::thread::spawn(move || {
                for mut conn in unix.incoming().flatten() {
                    log_push(&log, "unix host service: connection".into());
                    let _ = conn.write_all(reply.as_bytes());
                }
            });
        }
        Ok(Self {
            tcp_service_port,
            metadata_port,
            metadata_port_v6,
            udp_port,
            log,
        })
    }
}

fn serve_tcp<F>(listener: TcpListener, name: &'static str, log: Log, reply: F)
where
    F: Fn(&[u8]) -> String + Send + Clone + 'static,
{
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let log = log.clone();
            let reply = reply.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                let _ = conn.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = [0u8; 2048];
                let n = conn.read(&mut buf).unwrap_or(0);
                log_push(
                    &log,
                    format!("{name} from {peer}: {}", String::from_utf8_lossy(&buf[..n])),
                );
                let _ = conn.write_all(reply(&buf[..n]).as_bytes());
            });
        }
    });
}

/// Pids whose cmdline contains `needle` (other than this process).
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.windows(needle.len().max(1))
                        .any(|w| w == needle.as_bytes())
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The cmdline of `pid`, NULs kept.
pub fn cmdline(pid: i32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|c| String::from_utf8_lossy(&c).into_owned())
}

/// The pid of the process listening on the unix socket `path`, found
/// through /proc/net/unix and every process's fds (needs root).
pub fn socket_owner(path: &Path) -> Option<i32> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = path.to_str()?;
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[7] == want && f[5] == "01").then(|| f[6].to_string())
    })?;
    let link = format!("socket:[{inode}]");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// The device node of the root filesystem, e.g. /dev/vda.
pub fn root_block_device() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(format!("/dev/{name}"))
}

/// Sends SIGKILL to each pid (processes a probe of ours left behind).
pub fn kill_all(pids: &[i32]) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
