//! The launch plan: everything the launcher needs to start one task, decided
//! by the supervisor and sent over the inherited socket (fd 3), never argv,
//! which every process can read in `/proc/*/cmdline`.
//!
//! The launcher (the task's init) answers on the same socket with
//! [`Report`]s, one JSON line each: `Ready` just before the program's exec
//! (or `Failed` instead), from the launcher, then `Exited` when the task has
//! ended, from the spawner.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The inherited socket's fd number in the launcher.
pub const PLAN_FD: i32 = 3;

/// Largest plan the launcher reads (arguments and env are bounded far below).
pub const MAX_PLAN_BYTES: u32 = 16 << 20;

/// One task's sandbox, fully decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchPlan {
    /// The task id, for the hostname and error reports.
    pub task_id: String,
    /// The per-task uid from the policy's pool; the gid is the same number.
    pub uid: u32,
    /// The task's scratch dir: cwd, `HOME`, and the only writable place that
    /// lasts the task's whole life. The init mounts a tmpfs of its own there
    /// (0700, owned by `uid`, `scratch_bytes` large); nothing of it is on the
    /// host's disk.
    pub scratch: PathBuf,
    /// Size of the scratch tmpfs.
    pub scratch_bytes: u64,
    /// Files the init writes into the scratch tmpfs before the uid switch:
    /// the credential token or credentials file (0400, owned by `uid`, in a
    /// 0500 dir).
    pub scratch_files: Vec<ScratchFile>,
    /// The program to exec; must also be in `executables`.
    pub program: PathBuf,
    /// The program's pinned SHA-256 (64 lower-case hex digits): the launcher
    /// hashes the file it opened and executes it only if this matches.
    #[serde(default)]
    pub program_sha256: Option<String>,
    /// Full argv, argv[0] included.
    pub argv: Vec<String>,
    /// The whole environment of the task.
    pub env: Vec<(String, String)>,
    /// Paths the task may read and list (Landlock READ_FILE|READ_DIR).
    pub read_only: Vec<PathBuf>,
    /// Files the task may execute: allowlisted programs and the interpreters
    /// they need (Landlock READ_FILE|EXECUTE).
    pub executables: Vec<PathBuf>,
    /// Network mode.
    pub network: NetPlan,
    /// The task's own network namespace, leased by airlockd: a path that
    /// opens it, e.g. `/proc/PID/fd/N`.
    pub netns: PathBuf,
    /// Resource limits, set while still root.
    pub rlimits: Rlimits,
    /// Size of the private tmpfs on /tmp and on /dev/shm.
    pub tmp_bytes: u64,
    /// The Landlock ABI to build the ruleset for (probed by the supervisor,
    /// which refused to start if a required feature is missing).
    pub landlock_abi: i32,
    /// The seccomp filters, by name in the profile, installed in order (none
    /// only on a host without seccomp whose policy allows that). The
    /// strictest verdict of all of them wins.
    pub seccomp: Vec<String>,
}

/// A file the init writes into the task's scratch tmpfs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScratchFile {
    /// Relative to the scratch dir; plain components only (checked).
    pub path: PathBuf,
    /// The contents, a secret.
    pub contents: PlanSecret,
}

/// A secret in the plan: zeroized when dropped, never shown by `Debug`, so
/// a logged plan cannot leak it. It travels only over the plan socket, as
/// hex: JSON escapes no hex digit, so the spawner's parser takes it
/// straight from the plan buffer, which is zeroized, instead of building
/// it in a scratch buffer of its own that it frees unzeroed (the
/// credentials file's newlines are escaped in JSON).
#[derive(Clone)]
pub struct PlanSecret(pub zeroize::Zeroizing<String>);

impl Serialize for PlanSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write;
        // Sized up front: a growing string would leave copies behind.
        let mut hex = zeroize::Zeroizing::new(String::with_capacity(2 * self.0.len()));
        for byte in self.0.as_bytes() {
            let _ = write!(hex, "{byte:02x}");
        }
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for PlanSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = PlanSecret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret as hex")
            }
            fn visit_str<E: serde::de::Error>(self, hex: &str) -> Result<PlanSecret, E> {
                PlanSecret::from_hex(hex).ok_or_else(|| E::custom("a plan secret is not hex"))
            }
        }
        d.deserialize_str(Hex)
    }
}

impl PlanSecret {
    /// Decodes `hex` into a buffer sized up front, which becomes the
    /// secret's string without a copy.
    fn from_hex(hex: &str) -> Option<Self> {
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(hex.len() / 2));
        for pair in hex.as_bytes().chunks(2) {
            let pair = std::str::from_utf8(pair).ok()?;
            bytes.push(u8::from_str_radix(pair, 16).ok()?);
        }
        let text = String::from_utf8(std::mem::take(&mut *bytes))
            .map_err(|err| zeroize::Zeroizing::new(err.into_bytes()))
            .ok()?;
        Some(PlanSecret(zeroize::Zeroizing::new(text)))
    }
}

impl std::fmt::Debug for PlanSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlanSecret({} bytes, redacted)", self.0.len())
    }
}

/// Whether the task reaches the worker's network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum NetPlan {
    /// Its namespace is wired to the worker's network; Landlock allows TCP
    /// connect only to these ports and no TCP bind.
    Host {
        /// Ports the task may connect to.
        connect_tcp: Vec<u16>,
    },
    /// Its namespace is empty (only a down loopback).
    None,
}

/// Resource limits applied with `setrlimit` (soft = hard, except CPU).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rlimits {
    /// RLIMIT_AS.
    pub memory_bytes: u64,
    /// RLIMIT_NPROC, per uid: with a per-task uid it covers just this task.
    pub processes: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// RLIMIT_FSIZE.
    pub file_size_bytes: u64,
    /// RLIMIT_CPU soft limit (SIGXCPU); the hard limit is one second more.
    pub cpu_seconds: u64,
}

/// What the launcher tells the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Report {
    /// Every layer is in place; the next step is the exec.
    Ready {
        /// Layers applied, in order.
        layers: Vec<String>,
        /// The Landlock ABI enforced.
        landlock_abi: i32,
        /// When each setup step ended, on the clock the supervisor shares,
        /// so it can tell what each stage cost.
        #[serde(default)]
        stages: Timeline,
    },
    /// A setup step failed; the program was not executed.
    Failed {
        /// The step, e.g. "mount /proc".
        step: String,
        /// The error, for people.
        error: String,
    },
    /// The program ended, and with it every process of its namespace
    /// (sent by the spawner, which reaps it).
    Exited {
        /// Exit code, when it exited.
        code: Option<i32>,
        /// Signal number, when it was killed.
        signal: Option<i32>,
        /// CPU time (user and system) of the program and the children it
        /// waited for.
        #[serde(default)]
        cpu_ms: Option<u64>,
    },
}

/// When each stage of one task's life ended: the stage's name and the
/// CLOCK_MONOTONIC time in ns ([`crate::sys::monotonic_ns`]), one clock for
/// the supervisor and the launcher. The launcher's stages come in
/// [`Report::Ready`]; the supervisor's wrap them (`run::run`), and
/// `scripts/bench` reports the median of each.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timeline(pub Vec<(String, u64)>);

impl Timeline {
    /// Records that `stage` ended now.
    pub fn mark(&mut self, stage: &str) {
        self.0.push((stage.to_string(), crate::sys::monotonic_ns()));
    }

    /// Each stage and how long it took after the one before, in µs.
    pub fn durations_us(&self) -> Vec<(String, f64)> {
        self.0
            .windows(2)
            .map(|w| {
                (
                    w[1].0.clone(),
                    w[1].1.saturating_sub(w[0].1) as f64 / 1000.0,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_secrets_never_reach_debug_output_and_travel_as_hex() {
        let file = ScratchFile {
            path: ".airlock/token".into(),
            contents: PlanSecret(zeroize::Zeroizing::new("s3cr3t-token".into())),
        };
        let shown = format!("{file:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let json = serde_json::to_string(&file).unwrap_or_default();
        assert!(!json.contains("s3cr3t"), "{json}");
        // The credentials file has newlines, which JSON would escape.
        let text = "[default]\naws_secret_access_key = s3cr3t\n";
        let file = ScratchFile {
            path: ".airlock/credentials".into(),
            contents: PlanSecret(zeroize::Zeroizing::new(text.into())),
        };
        let json = serde_json::to_string(&file).unwrap_or_default();
        assert!(!json.contains('\\'), "nothing to unescape: {json}");
        let back = serde_json::from_str::<ScratchFile>(&json).map(|f| f.contents.0.to_string());
        assert_eq!(back.ok().as_deref(), Some(text));
        assert!(serde_json::from_str::<ScratchFile>(r#"{"path":"t","contents":"7g"}"#).is_err());
    }
}
