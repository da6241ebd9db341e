//! Admit: validate the request's shape, ask the policy, audit the decision,
//! then reserve what the task needs: its id in the registry, a uid from the
//! pool, and for a task without network an empty network namespace. (Its
//! scratch dir is a tmpfs its init mounts; nothing is made on the host.)

use std::path::PathBuf;
use std::sync::Arc;

use airlock_policy::{
    Decision, Limits, Policy, RequestShape, RequestedLimits, RoleDecision, RoleRequest, TaskRequest,
};
use airlock_protocol::v1::{ExplainTaskResponse, RunTaskRequest};
use tokio_util::sync::CancellationToken;

use crate::audit::AuditEvent;
use crate::supervisor::{LoadedPolicy, Supervisor};

/// Why a task was not admitted; `service` maps each to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The request is malformed.
    #[error(transparent)]
    Invalid(#[from] airlock_policy::RequestError),
    /// The policy denies it.
    #[error("{0}")]
    Denied(String),
    /// A live task already has this id.
    #[error("task id {0} is already in use by a live task; choose another or omit it")]
    Duplicate(String),
    /// Every uid of the pool is in use.
    #[error("all {0} task uids of this worker are in use; retry when a task ends")]
    PoolExhausted(usize),
    /// The role ARN is malformed.
    #[error("role {0:?} is not an IAM role ARN: write one like arn:aws:iam::123456789012:role/data-reader")]
    RoleArn(String),
    /// The SAML assertion cannot be used.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    /// No network namespace could be made for the task.
    #[error("could not create a network namespace for the task: {0}; the worker may be out of memory or namespaces (see /proc/sys/user/max_net_namespaces), or see airlockd's log")]
    Netns(#[source] std::io::Error),
}

/// An admitted task, with everything reserved for it.
pub struct Admitted {
    /// The task id.
    pub id: String,
    /// The request (program, args, env, stdin, ...).
    pub request: RunTaskRequest,
    /// Effective limits; `wall_time_ms` is the deadline.
    pub limits: Limits,
    /// The per-task uid.
    pub uid: u32,
    /// The scratch dir.
    pub scratch: PathBuf,
    /// Cancels the task.
    pub cancel: CancellationToken,
    /// The policy the task was admitted under.
    pub policy: Arc<LoadedPolicy>,
    /// Start time, Unix ms.
    pub started_at_ms: u64,
    /// When admission began ([`crate::sys::monotonic_ns`]): the first point
    /// of the task's [`crate::run::Timeline`].
    pub received_ns: u64,
    /// The AWS role the task gets credentials for, if any.
    pub grant: Option<crate::credentials::Grant>,
    /// The task's own network namespace (empty in network mode `none`,
    /// wired to the worker in mode `host`), leased until its processes are
    /// gone.
    pub netns: Option<crate::netns::NetnsLease>,
}

/// What the policy says about a well-formed request: the same answer for
/// `RunTask` and for `ExplainTask`.
pub struct Decided {
    /// The program decision.
    pub decision: Decision,
    /// The role the task would get credentials for.
    pub grant: Option<crate::credentials::Grant>,
    /// Why the role was refused, when it was (the program was allowed).
    pub role_denial: Option<String>,
}

impl Decided {
    /// The effective limits when the task may run.
    pub fn limits(&self) -> Option<Limits> {
        match (&self.decision, &self.role_denial) {
            (Decision::Allow(a), None) => Some(a.limits),
            _ => None,
        }
    }

    /// The reason a task is denied: the program's, else the role's.
    pub fn reason(&self) -> Option<&str> {
        match &self.decision {
            Decision::Deny(d) => Some(d.reason.as_str()),
            Decision::Allow(_) => self.role_denial.as_deref(),
        }
    }
}

/// Validates the request's shape and asks `policy` about it. Pure apart
/// from parsing a SAML assertion: nothing is reserved or recorded.
pub fn decide(policy: &Policy, req: &RunTaskRequest) -> Result<Decided, AdmitError> {
    let env: Vec<(String, String)> = req
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    airlock_policy::validate_request(&RequestShape {
        task_id: &req.task_id,
        user: &req.user,
        groups: &req.groups,
        program: &req.program,
        args: &req.args,
        env: &env,
        stdin_len: req.stdin.len(),
    })?;
    let requested = requested_limits(req);
    let decision = policy.decide(&TaskRequest {
        user: &req.user,
        groups: &req.groups,
        program: &req.program,
        timeout_ms: req.timeout_ms,
        limits: &requested,
    });
    let (grant, role_denial) = decide_role(policy, req)?;
    Ok(Decided {
        decision,
        grant,
        role_denial,
    })
}

/// `ExplainTask`: the decision on `req` and the rule behind it, as text
/// for people and as fields. A denial's text is the message `RunTask`'s
/// denial carries.
pub fn explain(
    policy: &Policy,
    policy_sha256: &str,
    req: &RunTaskRequest,
) -> Result<ExplainTaskResponse, AdmitError> {
    let decided = decide(policy, req)?;
    let mut out = ExplainTaskResponse {
        policy_sha256: policy_sha256.to_string(),
        ..Default::default()
    };
    match (&decided.decision, decided.reason()) {
        (Decision::Allow(a), None) => {
            out.allowed = true;
            out.program_rule = u32::try_from(a.rule + 1).unwrap_or(u32::MAX);
            out.limits = Some(crate::run::wire_limits(&a.limits));
            let credentials = match &decided.grant {
                None => "none: the task gets no AWS credentials".to_string(),
                Some(g) if g.saml.is_some() => {
                    format!("role {} (granted by the SAML assertion)", g.role_arn)
                }
                Some(g) => format!("role {} (granted by the policy's entitlements)", g.role_arn),
            };
            out.role_arn = decided
                .grant
                .as_ref()
                .map(|g| g.role_arn.clone())
                .unwrap_or_default();
            out.text = format!(
                "{}\ncredentials: {credentials}",
                policy.explain_admission(a)
            );
        }
        (_, reason) => {
            out.reason = reason.unwrap_or_default().to_string();
            out.text = format!("denied: {}", out.reason);
        }
    }
    Ok(out)
}

/// Admits `req` or says why not.
pub fn admit(
    sup: &Supervisor,
    mut req: RunTaskRequest,
    driver: &crate::audit::Driver,
) -> Result<Admitted, AdmitError> {
    let received_ns = crate::sys::monotonic_ns();
    let policy = sup.policy();
    let decided = decide(&policy.policy, &req);
    // The assertion is a bearer credential: parsed, it is held only as a
    // secret (in the grant), not in the request kept for the task's life.
    zeroize::Zeroize::zeroize(&mut req.saml_assertion);
    let Decided {
        decision,
        grant,
        role_denial,
    } = decided?;
    let id = if req.task_id.is_empty() {
        new_task_id()
    } else {
        req.task_id.clone()
    };
    let (limits, reason) = match &decision {
        Decision::Allow(a) => (Some(a.limits), None),
        Decision::Deny(d) => (None, Some(d.reason.as_str())),
    };
    let (limits, reason) = match &role_denial {
        Some(denial) if limits.is_some() => (None, Some(denial.as_str())),
        _ => (limits, reason),
    };
    let role_arn = match &grant {
        Some(g) => Some(g.role_arn.as_str()),
        None => Some(req.role_arn.as_str()).filter(|r| !r.is_empty()),
    };
    // Recorded once the outcome is known: an allowed task that could not
    // be started (a duplicate id, no free uid, no network namespace) is
    // "refused", not "allow".
    let env_names = crate::audit::EnvNames::of(req.env.keys());
    let record = |decision: &'static str, reason: Option<&str>| {
        sup.audit.record(&AuditEvent::Admission {
            task_id: &id,
            user: &req.user,
            groups: &req.groups,
            program: &req.program,
            arg_count: req.args.len(),
            env_count: req.env.len(),
            env_names: &env_names.shown,
            env_names_abridged: env_names.sha256.is_some(),
            env_names_sha256: env_names.sha256.as_deref(),
            decision,
            reason,
            driver,
            role_arn,
            policy_sha256: &policy.sha256,
        })
    };
    let Some(limits) = limits else {
        record("deny", reason);
        return Err(AdmitError::Denied(reason.unwrap_or_default().to_string()));
    };
    let reserved = reserve(sup, &policy, &req, &id);
    let (uid, cancel, started_at_ms, netns) = match reserved {
        Ok(reserved) => {
            record("allow", None);
            reserved
        }
        Err(err) => {
            record("refused", Some(&err.to_string()));
            return Err(err);
        }
    };
    // The task's init mounts a tmpfs of its own here; nothing is made on
    // the host.
    let scratch = policy.policy.scratch_root.join(&id);
    Ok(Admitted {
        id,
        request: req,
        limits,
        uid,
        scratch,
        cancel,
        policy,
        started_at_ms,
        received_ns,
        grant,
        netns,
    })
}

/// Registers the admitted task under `id` and gives it a uid and a
/// network namespace: its uid, cancel token, start time and lease.
fn reserve(
    sup: &Supervisor,
    policy: &crate::supervisor::LoadedPolicy,
    req: &RunTaskRequest,
    id: &str,
) -> Result<
    (
        u32,
        tokio_util::sync::CancellationToken,
        u64,
        Option<crate::netns::NetnsLease>,
    ),
    AdmitError,
> {
    let cancel = sup.shutdown.child_token();
    let started_at_ms = crate::now_ms();
    let uid;
    {
        let mut registry = sup.registry();
        if registry.live.contains_key(id) {
            return Err(AdmitError::Duplicate(id.to_string()));
        }
        uid = sup.uids.allocate().ok_or(AdmitError::PoolExhausted(
            policy.policy.uid_pool.count as usize,
        ))?;
        registry.insert(
            crate::supervisor::task_info(id, req, uid, started_at_ms),
            cancel.clone(),
        );
    }
    let lease = match policy.policy.network.mode {
        airlock_policy::NetworkMode::None => sup.netns.take(),
        airlock_policy::NetworkMode::Host => sup.netns.take_wired(),
    };
    match lease {
        Ok(lease) => Ok((uid, cancel, started_at_ms, Some(lease))),
        Err(source) => {
            sup.registry().live.remove(id);
            sup.uids.release(uid);
            Err(AdmitError::Netns(source))
        }
    }
}

/// The role the task gets: from the SAML assertion's roles when the request
/// carries one, else from the policy's entitlements. A denial is a reason.
fn decide_role(
    policy: &Policy,
    req: &RunTaskRequest,
) -> Result<(Option<crate::credentials::Grant>, Option<String>), AdmitError> {
    if !req.role_arn.is_empty() && !airlock_policy::is_role_arn(&req.role_arn) {
        let clipped: String = req.role_arn.chars().take(64).collect();
        return Err(AdmitError::RoleArn(clipped));
    }
    let saml = match req.saml_assertion.is_empty() {
        true => None,
        false => Some(crate::credentials::saml::SamlAssertion::parse(
            &req.saml_assertion,
        )?),
    };
    let saml_roles = saml.as_ref().map(|s| s.role_arns());
    let decision = policy.decide_role(&RoleRequest {
        user: &req.user,
        groups: &req.groups,
        role: Some(req.role_arn.as_str()).filter(|r| !r.is_empty()),
        saml_roles: saml_roles.as_deref(),
    });
    Ok(match decision {
        RoleDecision::NoCredentials => (None, None),
        RoleDecision::Assume {
            role_arn,
            session_policy,
        } => (
            Some(crate::credentials::Grant {
                role_arn,
                session_policy,
                saml,
            }),
            None,
        ),
        RoleDecision::Deny(denial) => (None, Some(denial.reason)),
    })
}

fn requested_limits(req: &RunTaskRequest) -> RequestedLimits {
    let l = req.limits.unwrap_or_default();
    RequestedLimits {
        memory_bytes: l.memory_bytes,
        processes: l.processes,
        open_files: l.open_files,
        file_size_bytes: l.file_size_bytes,
        cpu_seconds: l.cpu_seconds,
        output_bytes: l.output_bytes,
        scratch_bytes: l.scratch_bytes,
    }
}

/// A random task id: `t-` and 16 hex digits.
fn new_task_id() -> String {
    let mut bytes = [0u8; 8];
    if crate::sys::random_bytes(&mut bytes).is_err() {
        bytes = crate::now_ms().to_le_bytes();
    }
    format!("t-{:016x}", u64::from_le_bytes(bytes))
}
