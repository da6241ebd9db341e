//! Warnings: a valid policy that is probably not what the operator meant, or
//! that weakens the sandbox. `airlock policy check` prints them (and fails
//! on them with `--deny-warnings`); airlockd loads such a policy anyway.
//!
//! Pure, like the rest of this crate: what the host has (which paths
//! exist, which programs are executable files, their digests) comes in as [`HostFacts`], gathered by the caller
//! for the paths [`Policy::host_paths`] names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::{ClusterMode, Policy};

/// What the host says about the paths of [`Policy::host_paths`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Each path probed, and whether it exists on this host.
    pub exists: BTreeMap<PathBuf, bool>,
    /// The SHA-256 (64 lower-case hex digits) of each pinned program that
    /// could be read.
    pub sha256: BTreeMap<PathBuf, String>,
    /// Programs that exist but are not a regular file that others (the
    /// tasks' uids) may execute: a directory, a data file, a program only
    /// its owner or group may run.
    pub not_executable: BTreeSet<PathBuf>,
}

/// One warning, with the dotted key of the entry it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWarning {
    /// Dotted key, e.g. `program[2].path` or `network.connect_tcp[1]`.
    pub key: String,
    /// What is risky and what to do instead.
    pub message: String,
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Programs that run code they read: an allowlisted interpreter runs
/// whatever file it is pointed at, so what it can read matters.
const INTERPRETERS: [&str; 24] = [
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "python", "pypy",
    "perl", "ruby", "node", "nodejs", "deno", "bun", "php", "lua", "luajit", "tclsh", "Rscript",
    "julia",
];

/// Places anyone on the host can write that a task still sees if the
/// policy lists them (a task's /tmp, /dev/shm and scratch root are its
/// own, and the policy refuses read-only paths under them).
const WRITABLE: [&str; 1] = ["/var/tmp"];

/// Directories full of executables: with the dynamic loader allowlisted (it
/// is, for every dynamically linked program), `ld.so FILE` runs any ELF file
/// a task can read, so reading these is running them.
const EXECUTABLE_DIRS: [&str; 8] = [
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/libexec",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// The port of the cloud metadata service (169.254.169.254:80).
const METADATA_PORT: u16 = 80;

/// Whether `program` names an interpreter or shell: `python3.11`, `bash`.
pub fn is_interpreter(program: &Path) -> bool {
    let Some(name) = program.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    INTERPRETERS.iter().any(|i| {
        name.strip_prefix(i).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        })
    })
}

impl Policy {
    /// The paths whose existence (and, for programs, whether they are
    /// executable files, and for pinned ones, digest) [`Policy::warnings`]
    /// needs in its [`HostFacts`]: the programs and the read-only paths.
    pub fn host_paths(&self) -> Vec<PathBuf> {
        let programs = self.programs.iter().map(|r| r.path.clone());
        programs.chain(self.read_only.iter().cloned()).collect()
    }

    /// Every warning about this policy on a host described by `host`, in
    /// file order of the sections: sandbox, network, programs.
    pub fn warnings(&self, host: &HostFacts) -> Vec<PolicyWarning> {
        let mut out = Vec::new();
        let mut warn = |key: String, message: String| out.push(PolicyWarning { key, message });
        let mut code_dirs = Vec::new();
        for (i, ro) in self.read_only.iter().enumerate() {
            let key = format!("sandbox.read_only[{}]", i + 1);
            if host.exists.get(ro) == Some(&false) {
                warn(
                    key.clone(),
                    format!(
                        "{} does not exist on this host: airlockd skips it, and tasks do not see it",
                        ro.display()
                    ),
                );
            }
            if let Some(w) = WRITABLE.iter().find(|w| ro.starts_with(w)) {
                code_dirs.push((key.clone(), ro, *w));
            }
            if let Some(dir) = EXECUTABLE_DIRS
                .iter()
                .find(|d| Path::new(d).starts_with(ro))
            {
                let what = if Path::new(dir) == ro.as_path() {
                    format!("{} is a directory of executables", ro.display())
                } else {
                    format!(
                        "{} contains {dir}, a directory of executables",
                        ro.display()
                    )
                };
                warn(
                    key,
                    format!(
                        "{what}: through the dynamic loader (ld.so FILE), which every \
                         dynamically linked program needs, a task can run every ELF file it can \
                         read there, not only the allowlist; list the library directories the \
                         programs need instead"
                    ),
                );
            }
        }
        for (i, port) in self.network.connect_tcp.iter().enumerate() {
            if *port == METADATA_PORT {
                warn(
                    format!("network.connect_tcp[{}]", i + 1),
                    "port 80 is the cloud metadata service's (169.254.169.254:80), which hands \
                     out the worker's own credentials (its meta role); tasks get their \
                     credentials from Airlock, so remove 80 unless tasks must reach plain HTTP"
                        .into(),
                );
            }
        }
        for (i, rule) in self.programs.iter().enumerate() {
            let key = format!("program[{}]", i + 1);
            if host.exists.get(&rule.path) == Some(&false) {
                warn(
                    format!("{key}.path"),
                    format!(
                        "{} does not exist on this host: airlockd refuses to load a policy \
                         whose program it cannot read",
                        rule.path.display()
                    ),
                );
            }
            if host.not_executable.contains(&rule.path) {
                warn(
                    format!("{key}.path"),
                    format!(
                        "{} is not a file that tasks may execute (a directory, or a file \
                         without execute permission for others, which tasks' uids are): airlockd \
                         refuses to load a policy whose program is a directory, and a task of a \
                         file it cannot execute fails to start",
                        rule.path.display()
                    ),
                );
            }
            if let ClusterMode::SingleUser { user } = &self.mode {
                if rule.groups.is_empty() && !rule.admits(user, &[]) {
                    warn(
                        format!("{key}.users"),
                        format!(
                            "the cluster's one user, {user} (mode single-user), is not among \
                             the users allowed {}: no task can run it",
                            rule.path.display()
                        ),
                    );
                }
            }
            if let (Some(pinned), Some(actual)) = (&rule.sha256, host.sha256.get(&rule.path)) {
                if pinned != actual {
                    warn(
                        format!("{key}.sha256"),
                        format!(
                            "{} has sha256 {actual} on this host, not the pinned {pinned}: \
                             airlockd refuses to load this policy here",
                            rule.path.display()
                        ),
                    );
                }
            }
            if is_interpreter(&rule.path) {
                for (ro_key, ro, w) in &code_dirs {
                    warn(
                        format!("{key}.path"),
                        format!(
                            "{} runs code it reads, and {ro_key} ({}) lies under {w}, which \
                             anyone on the host can write: one host user could plant code there \
                             that a tenant's {} then loads; keep read-only paths out of writable \
                             places",
                            rule.path.display(),
                            ro.display(),
                            rule.path.file_name().map_or_else(
                                || rule.path.display().to_string(),
                                |n| n.to_string_lossy().into_owned()
                            ),
                        ),
                    );
                }
            }
        }
        out
    }
}
