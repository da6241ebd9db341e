//! Policy files: TOML into raw `*File` structs (unknown keys rejected), then
//! validation into [`Policy`] that reports every problem with its line,
//! column and dotted key. Indices in keys count from 1, as an operator counts
//! `[[program]]` tables: `program[2].path` is the second program's path.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::{Spanned, Value};

use crate::model::{
    ClusterMode, CredentialsConfig, Entitlement, Layer, Limits, Network, NetworkMode, Policy,
    ProgramRule, RoleRule, UidPool, DEFAULT_AUDIT_LOG,
};
use crate::request::{check_abs_path, clip, is_cluster_name, is_user_name};
use crate::roles::{is_role_arn, MAX_SESSION_POLICY_CHARS};
use crate::units::{parse_duration_ms, parse_size};

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file name given to [`Policy::parse`].
    pub origin: String,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// Dotted key, e.g. `limits.memory` or `program[2].path`; empty for syntax errors.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Every problem found in a policy file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyError {
    /// `{origin}:{line}:{column}: {key}: {message}`, without the key when it is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}
impl std::error::Error for PolicyErrors {}

impl fmt::Display for PolicyErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    cluster: Spanned<String>,
    mode: Spanned<String>,
    assigned_user: Option<Spanned<String>>,
    sandbox: SandboxFile,
    network: NetworkFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    program: Vec<ProgramFile>,
    credentials: Option<CredentialsFile>,
    #[serde(default)]
    entitlement: Vec<EntitlementFile>,
    #[serde(default)]
    role: Vec<RoleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    region: Spanned<String>,
    sts_endpoint: Option<Spanned<String>>,
    task_endpoint_url: Option<Spanned<String>>,
    duration: Option<Spanned<Value>>,
    refresh_margin: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitlementFile {
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    roles: Vec<Spanned<String>>,
    default_role: Option<Spanned<String>>,
    justification: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    arn: Spanned<String>,
    session_policy: Option<Spanned<String>>,
    justification: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxFile {
    uid_first: Spanned<i64>,
    uid_count: Spanned<i64>,
    scratch_root: Spanned<String>,
    audit_log: Option<Spanned<String>>,
    read_only: Vec<Spanned<String>>,
    #[serde(default)]
    best_effort: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    mode: Spanned<String>,
    #[serde(default)]
    connect_tcp: Vec<Spanned<i64>>,
    udp: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    memory: Option<Spanned<Value>>,
    processes: Option<Spanned<Value>>,
    open_files: Option<Spanned<Value>>,
    file_size: Option<Spanned<Value>>,
    cpu_seconds: Option<Spanned<Value>>,
    wall_time: Option<Spanned<Value>>,
    output: Option<Spanned<Value>>,
    tmp: Option<Spanned<Value>>,
    scratch: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramFile {
    path: Spanned<String>,
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    justification: Option<String>,
    sha256: Option<Spanned<String>>,
}

/// A problem located by byte span, before line and column are known.
struct Issue {
    span: Range<usize>,
    key: String,
    message: String,
}

impl Issue {
    fn new(span: Option<Range<usize>>, key: impl Into<String>, message: impl Into<String>) -> Self {
        let (key, message) = (key.into(), message.into());
        Issue {
            span: span.unwrap_or(0..0),
            key,
            message,
        }
    }
}

impl Policy {
    /// Parses and validates a policy file. `origin` is the file name used in
    /// error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyErrors> {
        let locate = |issues: Vec<Issue>| {
            PolicyErrors(
                issues
                    .into_iter()
                    .map(|i| locate(text, origin, i))
                    .collect(),
            )
        };
        let (_, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let issue = |e: &toml::de::Error| {
                let key = line_key(text, e.span().map_or(0, |s| s.start));
                Issue::new(e.span(), key, e.message())
            };
            return Err(locate(syntax.iter().map(issue).collect()));
        }
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = match missing_field(e.message()) {
                // The span is the table that lacks the field.
                Some(field) => match key_at(text, &|r| *r == span) {
                    Some(table) => format!("{table}.{field}"),
                    None => field.to_owned(),
                },
                None => key_at(text, &|r| r.contains(&span.start)).unwrap_or_default(),
            };
            // serde names Rust types; operators write TOML.
            let message = e.message().replace("expected i64", "expected an integer");
            locate(vec![Issue::new(Some(span), key, message)])
        })?;
        let mut check = Check::default();
        let policy = check.policy(file);
        if check.issues.is_empty() {
            Ok(policy)
        } else {
            check.issues.sort_by_key(|i| i.span.start);
            Err(locate(check.issues))
        }
    }
}

fn locate(text: &str, origin: &str, issue: Issue) -> PolicyError {
    let before = text.get(..issue.span.start).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    PolicyError {
        origin: origin.to_owned(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        key: issue.key,
        message: issue.message,
    }
}

/// Line and column (from 1, columns in characters) of the value of a dotted
/// key such as `program[2].path` or `network.connect_tcp[1]` (the keys of
/// [`PolicyError`] and [`crate::PolicyWarning`]), when `text` has it.
pub fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut span = None;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, Some(rest.strip_suffix(']')?.parse::<usize>().ok()?)),
            None => (part, None),
        };
        let (_, value) = table.iter().find(|(k, _)| k.get_ref() == name)?;
        let mut value = value;
        if let Some(i) = index {
            let DeValue::Array(items) = value.get_ref() else {
                return None;
            };
            value = items.get(i.checked_sub(1)?)?;
        }
        span = Some(value.span());
        if parts.peek().is_some() {
            let DeValue::Table(inner) = value.get_ref() else {
                return None;
            };
            table = inner;
        }
    }
    let error = locate(text, "", Issue::new(span, "", ""));
    Some((error.line, error.column))
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Spans of keys or values: which one a toml error points at.
type Hit<'a> = &'a dyn Fn(&Range<usize>) -> bool;

/// The dotted key whose name or value `hit` accepts, deepest first.
/// For a syntax error at byte `pos`, which leaves no table to search: the
/// dotted key of its line (`limits.processes`, `program[2].path`), from
/// the line's `KEY =` and the table header above it; empty for a line
/// without one.
fn line_key(text: &str, pos: usize) -> String {
    let pos = pos.min(text.len());
    let start = text
        .get(..pos)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = match line.split_once('=') {
        Some((key, _)) => key.trim().trim_matches('"'),
        None => return String::new(),
    };
    if key.is_empty() || key.starts_with(['[', '#']) {
        return String::new();
    }
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<&str, usize> = Default::default();
    for header in text[..start].lines() {
        let header = header.split('#').next().unwrap_or("").trim();
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
            let n = arrays.entry(name.trim()).or_default();
            *n += 1;
            table = format!("{}[{n}]", name.trim());
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = name.trim().to_owned();
        }
    }
    match table.is_empty() {
        true => key.to_owned(),
        false => format!("{table}.{key}"),
    }
}

fn key_at(text: &str, hit: Hit<'_>) -> Option<String> {
    DeTable::parse(text)
        .ok()
        .and_then(|doc| key_in_table(doc.get_ref(), hit))
}

fn key_in_table(table: &DeTable<'_>, hit: Hit<'_>) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let inner = key_in_value(v.get_ref(), hit);
        if inner.is_none() && !hit(&k.span()) && !hit(&v.span()) {
            return None;
        }
        let sep = if inner.as_deref().is_some_and(|s| !s.starts_with('[')) {
            "."
        } else {
            ""
        };
        Some(format!("{}{sep}{}", k.get_ref(), inner.unwrap_or_default()))
    })
}

fn key_in_value(value: &DeValue<'_>, hit: Hit<'_>) -> Option<String> {
    match value {
        DeValue::Table(table) => key_in_table(table, hit),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| match key_in_value(item.get_ref(), hit) {
                Some(inner) => Some(format!("[{}].{inner}", i + 1)),
                None => hit(&item.span()).then(|| format!("[{}]", i + 1)),
            }),
        _ => None,
    }
}

/// Collects every problem while building a [`Policy`]; the value built is
/// only returned when no problem was found.
#[derive(Default)]
struct Check {
    issues: Vec<Issue>,
}

impl Check {
    fn push(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::new(Some(span), key, message));
    }

    fn policy(&mut self, f: PolicyFile) -> Policy {
        if !is_cluster_name(f.cluster.get_ref()) {
            self.push(
                f.cluster.span(),
                "cluster",
                format!(
                    "{:?} is not a cluster name: use 1 to 64 of A-Z a-z 0-9 . _ -",
                    clip(f.cluster.get_ref())
                ),
            );
        }
        let sandbox = &f.sandbox;
        let scratch_root = self.scratch_root(&sandbox.scratch_root);
        Policy {
            cluster: f.cluster.get_ref().clone(),
            mode: self.mode(&f.mode, f.assigned_user.as_ref()),
            uid_pool: self.uid_pool(&sandbox.uid_first, &sandbox.uid_count),
            audit_log: match &sandbox.audit_log {
                Some(path) => self.path(path, "sandbox.audit_log"),
                None => PathBuf::from(DEFAULT_AUDIT_LOG),
            },
            read_only: (sandbox.read_only.iter().enumerate())
                .map(|(i, p)| self.read_only(p, i, &scratch_root))
                .collect(),
            scratch_root: scratch_root.clone(),
            best_effort: self.layers(&sandbox.best_effort),
            network: self.network(&f.network),
            limits: self.limits(&f.limits),
            programs: self.programs(&f.program, &scratch_root),
            credentials: f.credentials.as_ref().map(|c| self.credentials(c)),
            entitlements: self.entitlements(&f.entitlement, f.credentials.is_some()),
            roles: self.roles(&f.role),
        }
    }

    fn credentials(&mut self, c: &CredentialsFile) -> CredentialsConfig {
        let region = c.region.get_ref();
        let region_ok = (1..=32).contains(&region.len())
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            let msg = format!(
                "{:?} is not an AWS region: write one like \"us-east-1\"",
                clip(region)
            );
            self.push(c.region.span(), "credentials.region", msg);
        }
        let sts_endpoint = c
            .sts_endpoint
            .as_ref()
            .map(|u| self.url(u, "credentials.sts_endpoint"));
        let task_endpoint_url =
            (c.task_endpoint_url.as_ref()).map(|u| self.url(u, "credentials.task_endpoint_url"));
        let duration = self.seconds(&c.duration, "duration", 3600);
        if !(900..=3600).contains(&duration.0) {
            let msg = format!(
                "{} s is outside STS's range for these sessions: use 15m (STS's minimum) to 1h \
                 (the limit for a role assumed from the worker's own role session)",
                duration.0
            );
            self.push(duration.1, "credentials.duration", msg);
        }
        let margin = self.seconds(&c.refresh_margin, "refresh_margin", 300);
        if margin.0 >= duration.0 {
            let msg = format!(
                "a refresh margin of {} s is not below the session duration of {} s: every \
                 request would call STS again; use a smaller margin",
                margin.0, duration.0
            );
            self.push(margin.1, "credentials.refresh_margin", msg);
        }
        CredentialsConfig {
            region: region.clone(),
            sts_endpoint,
            task_endpoint_url,
            duration_secs: u32::try_from(duration.0).unwrap_or(3600),
            refresh_margin_secs: u32::try_from(margin.0).unwrap_or(0),
        }
    }

    /// Seconds from an integer or a duration string, with the value's span.
    fn seconds(
        &mut self,
        v: &Option<Spanned<Value>>,
        name: &str,
        default: u64,
    ) -> (u64, Range<usize>) {
        let Some(v) = v else { return (default, 0..0) };
        let key = format!("credentials.{name}");
        let parsed = match v.get_ref() {
            Value::Integer(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
            Value::String(s) => parse_duration_ms(s).map(|ms| ms / 1000),
            other => Err(format!(
                "expected an integer number of seconds or a string like \"15m\", found a {}",
                other.type_str()
            )),
        };
        match parsed {
            Ok(n) => (n, v.span()),
            Err(msg) => {
                self.push(v.span(), key, msg);
                (default, v.span())
            }
        }
    }

    fn url(&mut self, url: &Spanned<String>, key: &str) -> String {
        let u = url.get_ref();
        let ok = (u.starts_with("https://") || u.starts_with("http://"))
            && u.len() <= 2048
            && u.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            let msg = format!(
                "{:?} is not a URL: write one like \"https://sts.us-east-1.amazonaws.com\"",
                clip(u)
            );
            self.push(url.span(), key.to_owned(), msg);
        }
        u.clone()
    }

    fn role_arn(&mut self, arn: &Spanned<String>, key: String) {
        if !is_role_arn(arn.get_ref()) {
            let msg = format!(
                "{:?} is not an IAM role ARN: write one like \
                 \"arn:aws:iam::123456789012:role/data-reader\"",
                clip(arn.get_ref())
            );
            self.push(arn.span(), key, msg);
        }
    }

    fn entitlements(&mut self, files: &[EntitlementFile], configured: bool) -> Vec<Entitlement> {
        let mut out = Vec::new();
        for (i, e) in files.iter().enumerate() {
            let key = format!("entitlement[{}]", i + 1);
            if i == 0 && !configured {
                let span = e.roles.first().map_or(0..0, |r| r.span());
                let msg = "entitlements need a [credentials] section (region, duration) to be used: add one";
                self.push(span, key.clone(), msg);
            }
            for (j, user) in e.users.iter().enumerate() {
                self.user_name(user, format!("{key}.users[{}]", j + 1));
            }
            for (j, group) in e.groups.iter().enumerate() {
                self.user_name(group, format!("{key}.groups[{}]", j + 1));
            }
            if e.users.is_empty() && e.groups.is_empty() {
                let span = e.roles.first().map_or(0..0, |r| r.span());
                let msg = "this entitlement applies to nobody: list users or groups";
                self.push(span, format!("{key}.users"), msg);
            }
            if e.roles.is_empty() {
                self.push(0..0, format!("{key}.roles"), "list at least one role ARN");
            }
            for (j, role) in e.roles.iter().enumerate() {
                self.role_arn(role, format!("{key}.roles[{}]", j + 1));
            }
            if let Some(d) = &e.default_role {
                if !e.roles.iter().any(|r| r.get_ref() == d.get_ref()) {
                    let msg = format!(
                        "default role {} is not one of this entitlement's roles: add it to roles",
                        clip(d.get_ref())
                    );
                    self.push(d.span(), format!("{key}.default_role"), msg);
                }
            }
            let _ = &e.justification;
            out.push(Entitlement {
                users: e.users.iter().map(|u| u.get_ref().clone()).collect(),
                groups: e.groups.iter().map(|g| g.get_ref().clone()).collect(),
                roles: e.roles.iter().map(|r| r.get_ref().clone()).collect(),
                default_role: e.default_role.as_ref().map(|d| d.get_ref().clone()),
            });
        }
        out
    }

    fn roles(&mut self, files: &[RoleFile]) -> Vec<RoleRule> {
        let mut out: Vec<RoleRule> = Vec::new();
        for (i, r) in files.iter().enumerate() {
            let key = format!("role[{}]", i + 1);
            self.role_arn(&r.arn, format!("{key}.arn"));
            if out.iter().any(|o| o.arn == *r.arn.get_ref()) {
                let msg = format!("role {} is listed twice: merge the two", r.arn.get_ref());
                self.push(r.arn.span(), format!("{key}.arn"), msg);
            }
            if let Some(p) = &r.session_policy {
                if let Err(msg) = check_session_policy(p.get_ref()) {
                    self.push(p.span(), format!("{key}.session_policy"), msg);
                }
            }
            let _ = &r.justification;
            out.push(RoleRule {
                arn: r.arn.get_ref().clone(),
                session_policy: r.session_policy.as_ref().map(|p| p.get_ref().clone()),
            });
        }
        out
    }

    fn mode(&mut self, mode: &Spanned<String>, user: Option<&Spanned<String>>) -> ClusterMode {
        match (mode.get_ref().as_str(), user) {
            ("shared", None) => return ClusterMode::Shared,
            ("shared", Some(user)) => self.push(
                user.span(),
                "assigned_user",
                "assigned_user only applies to mode = \"single-user\": remove it or change mode",
            ),
            ("single-user", None) => self.push(
                mode.span(),
                "assigned_user",
                "mode = \"single-user\" needs assigned_user = \"<name>\", the one user who may run tasks",
            ),
            ("single-user", Some(user)) => {
                self.user_name(user, "assigned_user");
                return ClusterMode::SingleUser { user: user.get_ref().clone() };
            }
            (other, _) => self.push(
                mode.span(),
                "mode",
                format!("unknown mode {:?}: expected \"shared\" or \"single-user\"", clip(other)),
            ),
        }
        ClusterMode::Shared
    }

    fn uid_pool(&mut self, first: &Spanned<i64>, count: &Spanned<i64>) -> UidPool {
        let (f, c) = (*first.get_ref(), *count.get_ref());
        let first_ok = (1000..1 << 31).contains(&f);
        let count_ok = (1..=1_000_000).contains(&c);
        if !first_ok {
            let msg = format!("{f} is out of range: use at least 1000, so tasks never share a uid with a system account, and below 2^31");
            self.push(first.span(), "sandbox.uid_first", msg);
        }
        if !count_ok {
            self.push(
                count.span(),
                "sandbox.uid_count",
                format!("{c} is out of range: use 1 to 1000000"),
            );
        }
        if first_ok && count_ok {
            let end = f + c;
            if end > 1 << 31 {
                let msg = format!(
                    "uids {f}..{end} end above 2^31 (2147483648): lower uid_first or uid_count"
                );
                self.push(count.span(), "sandbox.uid_count", msg);
            } else if (f..end).contains(&65534) {
                let msg = format!("uids {f}..{end} include 65534 (nobody): start the pool above 65534 or end it below");
                self.push(first.span(), "sandbox.uid_first", msg);
            }
        }
        UidPool {
            first: u32::try_from(f).unwrap_or(0),
            count: u32::try_from(c).unwrap_or(0),
        }
    }

    fn path(&mut self, path: &Spanned<String>, key: impl Into<String>) -> PathBuf {
        if let Err(problem) = check_abs_path(path.get_ref()) {
            self.push(
                path.span(),
                key,
                format!("{:?} {}", clip(path.get_ref()), problem.explain()),
            );
        }
        PathBuf::from(path.get_ref())
    }

    /// A read-only path must not contain the scratch root: each task's
    /// scratch dir is a tmpfs mounted at its path inside the task's root,
    /// which cannot lie inside a read-only bind of a host directory.
    fn read_only(&mut self, path: &Spanned<String>, i: usize, scratch_root: &Path) -> PathBuf {
        let key = format!("sandbox.read_only[{}]", i + 1);
        let ro = self.path(path, key.clone());
        self.not_hidden(path, &key, &ro, scratch_root);
        if ro.is_absolute() && scratch_root.starts_with(&ro) {
            self.push(
                path.span(),
                key,
                format!(
                    "{} contains the scratch root {}: every task's scratch dir is a tmpfs mounted below it, which a read-only bind cannot hold; list narrower paths, or move sandbox.scratch_root out of it",
                    ro.display(),
                    scratch_root.display()
                ),
            );
        }
        ro
    }

    /// A path a task could never see: each task gets its own /proc (which
    /// it may read), and fresh, empty tmpfs on /tmp, /dev/shm and the
    /// scratch root, mounted over whatever the policy would put there.
    fn not_hidden(&mut self, path: &Spanned<String>, key: &str, p: &Path, scratch_root: &Path) {
        let why = if p.starts_with("/proc") {
            "/proc, which every task gets its own of (it may read that already): remove it"
                .to_string()
        } else if let Some(m) = ["/tmp", "/dev/shm"].iter().find(|m| p.starts_with(m)) {
            format!("{m}, which every task gets a private, empty mount of: move it elsewhere")
        } else if scratch_root.is_absolute() && p.starts_with(scratch_root) {
            format!(
                "the scratch root {}, where every task gets a private, empty mount: move it elsewhere",
                scratch_root.display()
            )
        } else {
            return;
        };
        let msg = format!("{} is under {why}", clip(path.get_ref()));
        self.push(path.span(), key.to_string(), msg);
    }

    /// The scratch root must survive the task's private mounts: a task gets
    /// fresh /tmp, /dev/shm and /proc, which would hide a root below them.
    fn scratch_root(&mut self, path: &Spanned<String>) -> PathBuf {
        let root = self.path(path, "sandbox.scratch_root");
        let hidden = ["/tmp", "/dev/shm", "/proc", "/dev", "/run"]
            .iter()
            .find(|m| root.starts_with(m));
        if let Some(mount) = hidden {
            self.push(
                path.span(),
                "sandbox.scratch_root",
                format!("{:?} is under {mount}, which every task gets a private mount of: use a directory such as /var/lib/airlock/tasks", clip(path.get_ref())),
            );
        } else if root == Path::new("/") {
            self.push(
                path.span(),
                "sandbox.scratch_root",
                "\"/\" cannot be the scratch root: use a directory such as /var/lib/airlock/tasks",
            );
        }
        root
    }

    fn user_name(&mut self, name: &Spanned<String>, key: impl Into<String>) {
        if !is_user_name(name.get_ref()) {
            let msg = format!(
                "{:?} is not a user or group name: use a lower-case ASCII letter or _ then up to 63 of a-z 0-9 _ . -",
                clip(name.get_ref())
            );
            self.push(name.span(), key, msg);
        }
    }

    fn layers(&mut self, names: &[Spanned<String>]) -> Vec<Layer> {
        let mut layers = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let key = format!("sandbox.best_effort[{}]", i + 1);
            match name.get_ref().parse::<Layer>() {
                Ok(layer) if layers.contains(&layer) => {
                    self.push(name.span(), key, format!("{layer} is listed twice"))
                }
                Ok(layer) => layers.push(layer),
                Err(e) => self.push(name.span(), key, e.to_string()),
            }
        }
        layers
    }

    fn network(&mut self, net: &NetworkFile) -> Network {
        let mode = match net.mode.get_ref().as_str() {
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            other => {
                let msg = format!(
                    "unknown network mode {:?}: expected \"host\" or \"none\"",
                    clip(other)
                );
                self.push(net.mode.span(), "network.mode", msg);
                NetworkMode::None
            }
        };
        let mut connect_tcp = Vec::new();
        for (i, port) in net.connect_tcp.iter().enumerate() {
            let key = format!("network.connect_tcp[{}]", i + 1);
            match u16::try_from(*port.get_ref()) {
                Ok(0) | Err(_) => self.push(
                    port.span(),
                    key,
                    format!("{} is not a TCP port: use 1 to 65535", port.get_ref()),
                ),
                Ok(p) if connect_tcp.contains(&p) => {
                    self.push(port.span(), key, format!("port {p} is listed twice"))
                }
                Ok(p) => connect_tcp.push(p),
            }
        }
        if let (NetworkMode::None, Some(first)) = (mode, net.connect_tcp.first()) {
            let msg = "tasks have no network with mode = \"none\": remove connect_tcp or use mode = \"host\"";
            self.push(first.span(), "network.connect_tcp", msg);
        }
        let udp = match (&net.udp, mode) {
            (Some(udp), NetworkMode::None) if *udp.get_ref() => {
                let msg =
                    "tasks have no network with mode = \"none\": remove udp or use mode = \"host\"";
                self.push(udp.span(), "network.udp", msg);
                false
            }
            (Some(udp), _) => *udp.get_ref(),
            (None, _) => false,
        };
        Network {
            mode,
            connect_tcp,
            udp,
        }
    }

    fn limits(&mut self, l: &LimitsFile) -> Limits {
        let d = Limits::default();
        Limits {
            memory_bytes: self.limit(&l.memory, "memory", d.memory_bytes, Kind::Size),
            processes: self.limit(&l.processes, "processes", d.processes, Kind::Count),
            open_files: self.limit(&l.open_files, "open_files", d.open_files, Kind::Count),
            file_size_bytes: self.limit(&l.file_size, "file_size", d.file_size_bytes, Kind::Size),
            cpu_seconds: self.limit(&l.cpu_seconds, "cpu_seconds", d.cpu_seconds, Kind::Count),
            wall_time_ms: self.limit(&l.wall_time, "wall_time", d.wall_time_ms, Kind::Duration),
            output_bytes: self.limit(&l.output, "output", d.output_bytes, Kind::Size),
            tmp_bytes: self.limit(&l.tmp, "tmp", d.tmp_bytes, Kind::Size),
            scratch_bytes: self.limit(&l.scratch, "scratch", d.scratch_bytes, Kind::Size),
        }
    }

    fn limit(
        &mut self,
        value: &Option<Spanned<Value>>,
        name: &str,
        default: u64,
        kind: Kind,
    ) -> u64 {
        let Some(value) = value else { return default };
        let parsed = match (value.get_ref(), kind) {
            (Value::Integer(n), Kind::Duration) => u64::try_from(*n)
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .ok_or_else(|| format!("{n} is not a number of seconds")),
            (Value::Integer(n), _) => {
                u64::try_from(*n).map_err(|_| format!("{n} is negative: limits are positive"))
            }
            (Value::String(s), Kind::Size) => parse_size(s),
            (Value::String(s), Kind::Duration) => parse_duration_ms(s),
            (other, kind) => Err(format!(
                "expected {}, found a {}",
                kind.expected(),
                other.type_str()
            )),
        };
        match parsed {
            Ok(0) => self.push(
                value.span(),
                format!("limits.{name}"),
                format!("a zero {name} limit would stop every task: use a positive value or leave it out for the default"),
            ),
            Ok(n) => return n,
            Err(msg) => self.push(value.span(), format!("limits.{name}"), msg),
        }
        default
    }

    fn programs(&mut self, files: &[ProgramFile], scratch_root: &Path) -> Vec<ProgramRule> {
        if files.is_empty() {
            let msg = "no program is allowed: add a [[program]] table with the path of a program tasks may run";
            self.push(0..0, "program", msg);
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut rules = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let key = format!("program[{}]", i + 1);
            let path = self.path(&file.path, format!("{key}.path"));
            self.not_hidden(&file.path, &format!("{key}.path"), &path, scratch_root);
            if let Some(first) = seen.insert(file.path.get_ref(), i + 1) {
                let msg = format!(
                    "{} is already allowed by program[{first}]: merge the two rules",
                    file.path.get_ref()
                );
                self.push(file.path.span(), format!("{key}.path"), msg);
            }
            for (j, user) in file.users.iter().enumerate() {
                self.user_name(user, format!("{key}.users[{}]", j + 1));
            }
            for (j, group) in file.groups.iter().enumerate() {
                self.user_name(group, format!("{key}.groups[{}]", j + 1));
            }
            let sha256 = file.sha256.as_ref().map(|digest| {
                let d = digest.get_ref();
                if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let msg = format!(
                        "{:?} is not a SHA-256 digest: write the 64 hex digits that \
                         `sha256sum {}` prints",
                        clip(d),
                        file.path.get_ref()
                    );
                    self.push(digest.span(), format!("{key}.sha256"), msg);
                }
                d.to_ascii_lowercase()
            });
            rules.push(ProgramRule {
                path,
                users: file.users.iter().map(|u| u.get_ref().clone()).collect(),
                groups: file.groups.iter().map(|g| g.get_ref().clone()).collect(),
                justification: file.justification.clone(),
                sha256,
            });
        }
        rules
    }
}

/// A session policy must be a JSON object within STS's size limit.
fn check_session_policy(text: &str) -> Result<(), String> {
    let chars = text.chars().count();
    if chars > MAX_SESSION_POLICY_CHARS {
        return Err(format!(
            "the session policy is {chars} characters long: STS accepts at most {MAX_SESSION_POLICY_CHARS}"
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err("a session policy is a JSON object like {\"Version\": \"2012-10-17\", \"Statement\": [...]}".into()),
        Err(e) => Err(format!("the session policy is not valid JSON: {e}")),
    }
}

/// How a `[limits]` value is written.
#[derive(Clone, Copy)]
enum Kind {
    Size,
    Count,
    Duration,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Size => "an integer number of bytes or a string like \"512MiB\"",
            Kind::Count => "a positive integer",
            Kind::Duration => "an integer number of seconds or a string like \"10m\"",
        }
    }
}
