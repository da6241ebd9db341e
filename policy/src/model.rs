//! The validated policy: what the rest of Airlock reads once a policy file
//! has been parsed and checked.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the audit log goes when the policy does not say.
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/airlock/audit.jsonl";

/// One cluster's policy, validated: every path is absolute and normalized,
/// every name well-formed, every limit non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Cluster name, `[A-Za-z0-9._-]{1,64}`.
    pub cluster: String,
    /// Whether the cluster serves many users or is assigned to one.
    pub mode: ClusterMode,
    /// The uids (each task's gid equals its uid) tasks run as.
    pub uid_pool: UidPool,
    /// Absolute directory under which each task gets its scratch directory.
    pub scratch_root: PathBuf,
    /// Absolute path of the audit log (JSON lines).
    pub audit_log: PathBuf,
    /// Absolute paths tasks may read and traverse.
    pub read_only: Vec<PathBuf>,
    /// Sandbox layers the operator allows to be missing on a host.
    pub best_effort: Vec<Layer>,
    /// What network tasks get.
    pub network: Network,
    /// Upper bounds for every task; also the defaults.
    pub limits: Limits,
    /// The program allowlist, in file order.
    pub programs: Vec<ProgramRule>,
    /// How tasks get AWS credentials; `None`: they get none.
    pub credentials: Option<CredentialsConfig>,
    /// Who may assume which role (`[[entitlement]]`), in file order.
    pub entitlements: Vec<Entitlement>,
    /// Per-role settings (`[[role]]`), in file order.
    pub roles: Vec<RoleRule>,
}

/// The `[credentials]` section: where STS is and how long sessions last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsConfig {
    /// AWS region for STS and for tasks (`AWS_REGION`).
    pub region: String,
    /// STS endpoint URL; `None`: AWS's regional endpoint.
    pub sts_endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL` for tasks (S3-compatible stores), when set.
    pub task_endpoint_url: Option<String>,
    /// Session duration in seconds, 900 to 3600 (STS's minimum and the
    /// limit of chained roles).
    pub duration_secs: u32,
    /// Served credentials are refreshed this many seconds before they
    /// expire; below `duration_secs`.
    pub refresh_margin_secs: u32,
}

/// One `[[entitlement]]`: users and groups, and the roles they may assume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// Users it applies to.
    pub users: Vec<String>,
    /// Groups whose members it applies to.
    pub groups: Vec<String>,
    /// IAM role ARNs they may assume.
    pub roles: Vec<String>,
    /// The role a task gets when it asks for none; one of `roles`.
    pub default_role: Option<String>,
}

/// One `[[role]]`: settings for assuming a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRule {
    /// The IAM role ARN.
    pub arn: String,
    /// An IAM policy (JSON object) passed as the session policy, scoping
    /// every session of the role down.
    pub session_policy: Option<String>,
}

/// Who may run tasks on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMode {
    /// Any user the program rules allow.
    Shared,
    /// Only `user`, whatever the program rules say.
    SingleUser {
        /// The one user assigned to the cluster.
        user: String,
    },
}

/// A contiguous range of uids, `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidPool {
    /// First uid of the pool, at least 1000.
    pub first: u32,
    /// Number of uids, `1..=1_000_000`; `first + count <= 2^31`.
    pub count: u32,
}

impl UidPool {
    /// Whether `uid` is one of the pool's.
    pub fn contains(&self, uid: u32) -> bool {
        uid >= self.first && uid - self.first < self.count
    }
}

/// A sandbox layer that a host may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Landlock filesystem rules (`landlock-fs`).
    LandlockFs,
    /// Landlock TCP connect/bind rules (`landlock-net`).
    LandlockNet,
    /// Landlock abstract-socket and signal scoping (`landlock-scope`).
    LandlockScope,
    /// The seccomp filter (`seccomp`).
    Seccomp,
}

impl Layer {
    /// Every layer, in declaration order.
    pub const ALL: [Layer; 4] = [
        Layer::LandlockFs,
        Layer::LandlockNet,
        Layer::LandlockScope,
        Layer::Seccomp,
    ];

    /// The name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Layer::LandlockFs => "landlock-fs",
            Layer::LandlockNet => "landlock-net",
            Layer::LandlockScope => "landlock-scope",
            Layer::Seccomp => "seccomp",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layer name that is not one of [`Layer::ALL`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error(
    "unknown sandbox layer {name:?}: expected landlock-fs, landlock-net, landlock-scope or seccomp"
)]
pub struct ParseLayerError {
    /// The name given, clipped to 64 characters.
    pub name: String,
}

impl FromStr for Layer {
    type Err = ParseLayerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layer::ALL
            .into_iter()
            .find(|layer| layer.name() == s)
            .ok_or_else(|| ParseLayerError {
                name: crate::request::clip(s),
            })
    }
}

/// Network access for tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Host network or none.
    pub mode: NetworkMode,
    /// TCP ports tasks may connect to (host mode only), in file order.
    pub connect_tcp: Vec<u16>,
    /// Whether tasks on the host network may open UDP sockets (host mode
    /// only). Landlock has no UDP rules, so this gives up keeping tasks off
    /// every UDP service the worker can reach, other tenants' included.
    pub udp: bool,
}

/// Which network namespace a task runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The worker's network, narrowed by Landlock to `connect_tcp`.
    Host,
    /// An empty network namespace.
    None,
}

/// Resource limits of a task. As policy: the maximum a task may ask for
/// and what it gets when it asks for nothing. As an admission: what applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limits {
    /// Address space (`RLIMIT_AS`) and cgroup memory, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads of the task's uid (`RLIMIT_NPROC`).
    pub processes: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file the task may write (`RLIMIT_FSIZE`), in bytes.
    pub file_size_bytes: u64,
    /// CPU time (`RLIMIT_CPU`), in seconds.
    pub cpu_seconds: u64,
    /// Wall-clock deadline, in milliseconds.
    pub wall_time_ms: u64,
    /// stdout plus stderr streamed back, in bytes.
    pub output_bytes: u64,
    /// Size of the task's private `/tmp` and `/dev/shm` tmpfs, in bytes.
    pub tmp_bytes: u64,
    /// Size of the task's scratch dir, a tmpfs of its own, in bytes.
    pub scratch_bytes: u64,
}

const MIB: u64 = 1 << 20;

impl Default for Limits {
    /// The defaults a policy file gets for every key it leaves out.
    fn default() -> Self {
        Limits {
            memory_bytes: 1024 * MIB,
            processes: 64,
            open_files: 256,
            file_size_bytes: 256 * MIB,
            cpu_seconds: 300,
            wall_time_ms: 10 * 60 * 1000,
            output_bytes: 16 * MIB,
            tmp_bytes: 64 * MIB,
            scratch_bytes: 256 * MIB,
        }
    }
}

/// Limits a task asks for; `None` takes the policy's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedLimits {
    /// See [`Limits::memory_bytes`].
    pub memory_bytes: Option<u64>,
    /// See [`Limits::processes`].
    pub processes: Option<u64>,
    /// See [`Limits::open_files`].
    pub open_files: Option<u64>,
    /// See [`Limits::file_size_bytes`].
    pub file_size_bytes: Option<u64>,
    /// See [`Limits::cpu_seconds`].
    pub cpu_seconds: Option<u64>,
    /// See [`Limits::output_bytes`].
    pub output_bytes: Option<u64>,
    /// See [`Limits::scratch_bytes`].
    pub scratch_bytes: Option<u64>,
}

/// One `[[program]]` entry of the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRule {
    /// Absolute, normalized path of the program; requests must name it exactly.
    pub path: PathBuf,
    /// Users allowed to run it; with `groups` empty too, everyone may.
    pub users: Vec<String>,
    /// Groups whose members may run it.
    pub groups: Vec<String>,
    /// Why the operator allows it.
    pub justification: Option<String>,
    /// The program's pinned SHA-256 digest, 64 lower-case hex digits: the
    /// launcher hashes the file it opened and executes exactly that file,
    /// or refuses when the digest differs. `None`: not pinned.
    pub sha256: Option<String>,
}

impl ProgramRule {
    /// Whether `user` (with `groups`) may run this program: both lists
    /// empty admit everyone, else the user must be listed or be in a listed
    /// group.
    pub fn admits(&self, user: &str, groups: &[String]) -> bool {
        (self.users.is_empty() && self.groups.is_empty())
            || self.users.iter().any(|u| u == user)
            || groups.iter().any(|g| self.groups.contains(g))
    }
}
