//! The admission decision: may this user run this program with these
//! limits, and if so with which effective limits.

use std::fmt;
use std::path::PathBuf;

use crate::model::{ClusterMode, Limits, Policy, ProgramRule, RequestedLimits};
use crate::units::{fmt_bytes, fmt_ms};

/// A request the policy decides on; validate its shape first with
/// [`crate::validate_request`].
#[derive(Debug, Clone, Copy)]
pub struct TaskRequest<'a> {
    /// The user the task runs for.
    pub user: &'a str,
    /// That user's groups.
    pub groups: &'a [String],
    /// Absolute, normalized program path.
    pub program: &'a str,
    /// Deadline in milliseconds; 0 takes the policy's wall time.
    pub timeout_ms: u64,
    /// Limits the caller asks for.
    pub limits: &'a RequestedLimits,
}

/// The policy's answer. `Deny` orders above `Allow`, so when several
/// decisions apply the strictest wins through `max()`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    /// The task may run.
    Allow(Admission),
    /// The task may not run.
    Deny(Denial),
}

/// What an allowed task gets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Admission {
    /// The allowlisted program.
    pub program: PathBuf,
    /// Index of the matching rule in [`Policy::programs`], from 0
    /// (messages call it `program rule {rule + 1}`, as operators count).
    pub rule: usize,
    /// The limits that apply: requested where given, else the policy's.
    pub limits: Limits,
}

/// Why a task may not run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Denial {
    /// A sentence a person can act on, naming the rule or setting that decided.
    pub reason: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// How a limit's values are shown in messages.
#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Count,
    Seconds,
}

impl Unit {
    fn show(self, n: u64) -> String {
        match self {
            Unit::Bytes => fmt_bytes(n),
            Unit::Count => n.to_string(),
            Unit::Seconds => fmt_ms(n.saturating_mul(1000)),
        }
    }
}

impl Policy {
    /// Decides whether a request may run and with which limits.
    pub fn decide(&self, req: &TaskRequest<'_>) -> Decision {
        match self.admit(req) {
            Ok(admission) => Decision::Allow(admission),
            Err(reason) => Decision::Deny(Denial { reason }),
        }
    }

    fn admit(&self, req: &TaskRequest<'_>) -> Result<Admission, String> {
        let cluster = &self.cluster;
        if let ClusterMode::SingleUser { user } = &self.mode {
            if req.user != user {
                return Err(format!(
                    "this is a single-user cluster assigned to {user}; {} may not run tasks on it",
                    req.user
                ));
            }
        }
        let Some((rule, found)) = self
            .programs
            .iter()
            .enumerate()
            .find(|(_, r)| r.path.as_os_str() == req.program)
        else {
            return Err(format!(
                "{} is not on cluster {cluster}'s program allowlist (allowed: {})",
                req.program,
                self.allowlist()
            ));
        };
        if !found.admits(req.user, req.groups) {
            return Err(format!(
                "user {} may not run {}: program rule {} allows {}",
                req.user,
                req.program,
                rule + 1,
                who(found)
            ));
        }

        let policy = &self.limits;
        let wall_time_ms = match req.timeout_ms {
            0 => policy.wall_time_ms,
            t if t > policy.wall_time_ms => {
                let max = fmt_ms(policy.wall_time_ms);
                return Err(format!(
                    "requested timeout {} is above cluster {cluster}'s wall time limit of {max} \
                     (limits.wall_time); ask for at most {max}, or for none to get {max}",
                    fmt_ms(t)
                ));
            }
            t => t,
        };
        let pick = |requested: Option<u64>, max: u64, name: &str, unit: Unit| match requested {
            None => Ok(max),
            Some(0) => Err(format!(
                "requested {name} 0 is not a usable limit; leave it unset to get cluster \
                 {cluster}'s {}",
                unit.show(max)
            )),
            Some(n) if n > max => Err(format!(
                "requested {name} {} is above cluster {cluster}'s limit of {} (limits.{name}); \
                 ask for at most {}",
                unit.show(n),
                unit.show(max),
                unit.show(max)
            )),
            Some(n) => Ok(n),
        };
        let (a, p) = (req.limits, policy);
        let limits = Limits {
            memory_bytes: pick(a.memory_bytes, p.memory_bytes, "memory", Unit::Bytes)?,
            processes: pick(a.processes, p.processes, "processes", Unit::Count)?,
            open_files: pick(a.open_files, p.open_files, "open_files", Unit::Count)?,
            file_size_bytes: pick(
                a.file_size_bytes,
                p.file_size_bytes,
                "file_size",
                Unit::Bytes,
            )?,
            cpu_seconds: pick(a.cpu_seconds, p.cpu_seconds, "cpu_seconds", Unit::Seconds)?,
            wall_time_ms,
            output_bytes: pick(a.output_bytes, p.output_bytes, "output", Unit::Bytes)?,
            tmp_bytes: p.tmp_bytes,
            scratch_bytes: pick(a.scratch_bytes, p.scratch_bytes, "scratch", Unit::Bytes)?,
        };
        Ok(Admission {
            program: found.path.clone(),
            rule,
            limits,
        })
    }

    /// The allowlisted paths for a message, at most ten of them.
    fn allowlist(&self) -> String {
        const SHOWN: usize = 10;
        let mut list: Vec<String> = self
            .programs
            .iter()
            .take(SHOWN)
            .map(|r| r.path.display().to_string())
            .collect();
        if self.programs.len() > SHOWN {
            list.push(format!("and {} more", self.programs.len() - SHOWN));
        }
        list.join(", ")
    }
}

/// Empty `users` and `groups` admit everyone; otherwise a listed user or a
/// member of a listed group.
/// "users [alice] and groups [ds]", leaving out an empty list.
fn who(rule: &ProgramRule) -> String {
    let users = format!("users [{}]", rule.users.join(", "));
    let groups = format!("groups [{}]", rule.groups.join(", "));
    match (rule.users.is_empty(), rule.groups.is_empty()) {
        (false, false) => format!("{users} and {groups}"),
        (false, true) => users,
        _ => groups,
    }
}

impl Policy {
    /// Which rule admitted a task and what it gets, for people (`airlock
    /// policy explain`): the rule's number and path, whom it allows, its pin,
    /// and the effective limits.
    pub fn explain_admission(&self, a: &Admission) -> String {
        let Some(rule) = self.programs.get(a.rule) else {
            return format!("allowed: {}", a.program.display());
        };
        let whom = if rule.users.is_empty() && rule.groups.is_empty() {
            "everyone".to_string()
        } else {
            who(rule)
        };
        let pin = match &rule.sha256 {
            Some(d) => format!(", pinned to sha256 {d}"),
            None => String::new(),
        };
        let mode = match &self.mode {
            ClusterMode::Shared => "shared cluster".to_string(),
            ClusterMode::SingleUser { user } => format!("single-user cluster assigned to {user}"),
        };
        let l = &a.limits;
        format!(
            "allowed: program rule {} ({}) allows {whom}{pin}, on {mode} {}\n\
             limits: memory {}, processes {}, open_files {}, file_size {}, cpu_seconds {}, \
             wall_time {}, output {}, tmp {}, scratch {}",
            a.rule + 1,
            rule.path.display(),
            self.cluster,
            fmt_bytes(l.memory_bytes),
            l.processes,
            l.open_files,
            fmt_bytes(l.file_size_bytes),
            l.cpu_seconds,
            fmt_ms(l.wall_time_ms),
            fmt_bytes(l.output_bytes),
            fmt_bytes(l.tmp_bytes),
            fmt_bytes(l.scratch_bytes),
        )
    }
}
