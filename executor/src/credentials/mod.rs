//! Credentials: each task gets its user's own short-lived AWS credentials,
//! only while it runs.
//!
//! - [`saml`] reads the roles and session name out of a user's SAML
//!   assertion (admission uses them as the user's entitlements).
//! - [`broker`] gets sessions from STS (`AssumeRole` from the worker's own
//!   identity, or `AssumeRoleWithSAML`) and shares one session among the
//!   overlapping tasks of one user, role and session policy, refreshing it
//!   before it expires and dropping it (zeroized) when the last such task
//!   ends.
//! - [`endpoint`] serves them to tasks over the container-credentials
//!   protocol on 169.254.170.2, each task authenticated by its own token
//!   and by the address of its own network namespace.
//!
//! A task's credentials live from [`CredentialService::prepare`] (before the
//! launcher starts) to [`CredentialService::revoke`], the first step of its
//! purge, and [`CredentialService::release`], after its scratch dir is gone.
//!
//! # Secrets
//!
//! Keys, session tokens, task tokens and SAML assertions are held in
//! [`Secret`], which zeroizes its memory when dropped and has neither
//! `Debug` nor `Display`, so it can reach no log by accident. They never go
//! to argv, to airlockd's own environment or to the audit log, and never to
//! the host's disk: the token file (or the credentials file of a task
//! without network) travels in the launch plan ([`ScratchFile`], whose
//! `Debug` shows no contents) over the plan socket, and the task's init
//! writes it into the task's scratch tmpfs, which dies with the task's mount
//! namespace (torn down by its spawner within milliseconds of the task's
//! end; no process can enter it meanwhile). Copies inside the AWS
//! SDK's response buffers are outside our control and are freed, not
//! zeroized.
//!
//! # Test strategy
//!
//! Session-name mapping, SAML parsing and the endpoint's request parsing are
//! unit-tested here; everything else runs end to end in
//! `tests/suite/credentials.rs` against a real `moto_server` (STS, IAM with
//! enforcement on, S3) and stock boto3 inside real sandboxed tasks.

pub mod broker;
pub mod endpoint;
pub mod saml;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use airlock_policy::{CredentialsConfig, NetworkMode};
use airlock_protocol::v1::{ExitReason, Exited, Started};
use zeroize::Zeroizing;

use crate::admit::Admitted;
use crate::audit::AuditLog;
use crate::launch::plan::{PlanSecret, ScratchFile};
use crate::netns::host::ENDPOINT_ADDR;
use crate::supervisor::Supervisor;
use broker::{Attribution, Broker, Entry, LeaseKey, Source};

/// A secret string: zeroized on drop, never printed.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes ownership of `s` (no copy is made).
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret's text, for the few places that must send or write it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a task gets no credentials. Each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// STS refused (HTTP 403 or `AccessDenied`).
    #[error("STS denied access to role {role_arn}: check that the role's trust policy lets {who} assume it, and that the user is entitled to the role")]
    AccessDenied {
        /// The role asked for.
        role_arn: String,
        /// Who asked: the worker's identity or the SAML provider.
        who: &'static str,
    },
    /// STS rejected the SAML assertion.
    #[error("STS rejected the SAML assertion ({code}: {detail}): check that it is fresh (assertions expire within minutes), signed by the identity provider that the role's trust policy names, and issued for AWS")]
    InvalidIdentityToken {
        /// STS's error code.
        code: String,
        /// STS's message, clipped.
        detail: String,
    },
    /// STS found the request invalid.
    #[error("STS rejected the request for role {role_arn} as invalid ({detail}): check the role ARN, credentials.duration (the role's maximum session duration may be lower) and the role's session_policy")]
    Validation {
        /// The role asked for.
        role_arn: String,
        /// STS's message, clipped.
        detail: String,
    },
    /// A `Role` attribute of the SAML assertion is not `role_arn,provider_arn`.
    #[error("the SAML assertion's Role attribute {value:?} is malformed: each value must be \"arn:aws:iam::<account>:role/<name>,arn:aws:iam::<account>:saml-provider/<name>\" (in either order); ask your identity provider's administrator")]
    MalformedRoleAttribute {
        /// The value, clipped.
        value: String,
    },
    /// The SAML assertion cannot be read at all.
    #[error("the SAML assertion is malformed: {reason}; pass the base64 SAMLResponse exactly as the identity provider issued it")]
    MalformedAssertion {
        /// What is wrong.
        reason: String,
    },
    /// STS could not be reached.
    #[error("could not reach STS at {endpoint}: {detail}; check credentials.sts_endpoint and the worker's network")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// Any other STS failure.
    #[error("STS failed for role {role_arn} ({code}: {detail})")]
    Sts {
        /// The role asked for.
        role_arn: String,
        /// STS's error code, or the HTTP status.
        code: String,
        /// STS's message, clipped.
        detail: String,
    },
    /// Making the task's token failed (getrandom).
    #[error("could not create the task's {what}")]
    Files {
        /// Which file.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The policy asked for credentials this worker cannot give.
    #[error("this worker has no credentials service: its policy has no [credentials] section")]
    NotConfigured,
    /// The task holding them has ended (a request that raced its end).
    #[error("the task's credentials were released: the task has ended")]
    Released,
}

/// What admission granted: a role, and how to assume it.
pub struct Grant {
    /// The role.
    pub role_arn: String,
    /// The `[[role]]` session policy.
    pub session_policy: Option<String>,
    /// The user's SAML assertion, when the request carried one.
    pub saml: Option<saml::SamlAssertion>,
}

/// A task's credentials while it runs.
pub struct TaskCredentials {
    /// Which session the task got, for `Started` and the audit log.
    pub attribution: Attribution,
    /// The AWS variables of the task's environment (no secrets: paths, URL,
    /// region).
    pub env: Vec<(String, String)>,
    /// The endpoint's port, for the task's Landlock connect rules; `None`
    /// for tasks without network (they get a credentials file).
    pub endpoint_port: Option<u16>,
    /// The token file or credentials file, for the launch plan: the init
    /// writes it into the task's scratch tmpfs.
    pub files: Vec<ScratchFile>,
    entry: Arc<Entry>,
}

/// The live token of one task.
struct TokenSlot {
    token: Secret,
    /// The task's address: only connections from its own network namespace
    /// get its credentials.
    addr: Ipv4Addr,
    entry: Arc<Entry>,
}

/// The broker, the endpoint's port and the live tokens.
pub struct CredentialService {
    /// STS sessions.
    pub broker: Broker,
    config: CredentialsConfig,
    port: u16,
    listener: Mutex<Option<std::net::TcpListener>>,
    tokens: Mutex<HashMap<String, TokenSlot>>,
}

/// The token file's path inside a scratch dir.
pub const TOKEN_FILE: &str = ".airlock/token";
/// The credentials file's path inside a scratch dir (tasks without network).
pub const CREDENTIALS_FILE: &str = ".aws/credentials";

impl CredentialService {
    /// Builds the STS client from the default credential chain (the worker's
    /// own identity) and binds the endpoint on an ephemeral port of
    /// [`ENDPOINT_ADDR`], which tasks on the network reach through their
    /// namespace's route to the worker.
    pub async fn new(config: CredentialsConfig) -> std::io::Result<Self> {
        crate::netns::host::link().map_err(std::io::Error::other)?;
        let listener = std::net::TcpListener::bind((ENDPOINT_ADDR, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            broker: Broker::new(&config).await,
            config,
            port,
            listener: Mutex::new(Some(listener)),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The endpoint's port (on [`ENDPOINT_ADDR`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Gets the task's session and delivers it: a token file and the
    /// endpoint's URL for tasks with network, a credentials file for tasks
    /// without.
    pub async fn prepare(
        &self,
        audit: &AuditLog,
        task: &Admitted,
        grant: &Grant,
        network: bool,
    ) -> Result<TaskCredentials, CredentialError> {
        let (task_id, user) = (task.id.as_str(), task.request.user.as_str());
        let scratch = task.scratch.as_path();
        let (source, saml) = match &grant.saml {
            None => (
                Source::AssumeRole {
                    session_name: sts_name(user),
                    source_identity: sts_name(user),
                },
                None,
            ),
            Some(assertion) => {
                let (source, names) = assertion.source_for(&grant.role_arn)?;
                (source, Some(names))
            }
        };
        let key = LeaseKey {
            user: user.to_owned(),
            role_arn: grant.role_arn.clone(),
            session_policy: grant.session_policy.clone(),
            saml,
        };
        let (entry, attribution) = self.broker.acquire(audit, key, source).await?;
        let mut env = vec![
            ("AWS_REGION".to_owned(), self.config.region.clone()),
            ("AWS_DEFAULT_REGION".to_owned(), self.config.region.clone()),
            // Nothing in a task may reach the metadata service; tell SDKs
            // not to try.
            ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ];
        if let Some(url) = &self.config.task_endpoint_url {
            env.push(("AWS_ENDPOINT_URL".to_owned(), url.clone()));
        }
        let addr = task.netns.as_ref().and_then(|n| n.addr());
        let delivered = match addr {
            Some(addr) if network => self
                .deliver_token(task_id, addr, scratch, &entry, &mut env)
                .map(|file| (Some(self.port), file)),
            _ => self
                .deliver_file(audit, scratch, &entry, &mut env)
                .await
                .map(|file| (None, file)),
        };
        match delivered {
            Ok((endpoint_port, file)) => Ok(TaskCredentials {
                attribution,
                env,
                endpoint_port,
                files: vec![file],
                entry,
            }),
            Err(err) => {
                self.tokens_lock().remove(task_id);
                self.broker.release(entry);
                Err(err)
            }
        }
    }

    fn deliver_token(
        &self,
        task_id: &str,
        addr: Ipv4Addr,
        scratch: &Path,
        entry: &Arc<Entry>,
        env: &mut Vec<(String, String)>,
    ) -> Result<ScratchFile, CredentialError> {
        let token = random_token().map_err(|source| CredentialError::Files {
            what: "token",
            source,
        })?;
        let path = scratch.join(TOKEN_FILE);
        // No trailing newline: SDKs reject a token file that ends in one.
        let file = ScratchFile {
            path: TOKEN_FILE.into(),
            contents: PlanSecret(Zeroizing::new(token.expose().to_owned())),
        };
        self.tokens_lock().insert(
            task_id.to_owned(),
            TokenSlot {
                token,
                addr,
                entry: entry.clone(),
            },
        );
        env.push((
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(),
            format!(
                "http://{ENDPOINT_ADDR}:{}/v1/credentials/{task_id}",
                self.port
            ),
        ));
        env.push((
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_owned(),
            path.display().to_string(),
        ));
        Ok(file)
    }

    /// Tasks without network cannot reach the endpoint: they get the
    /// session's keys in a file instead. It is not refreshed, so such a task
    /// has them for one session (`credentials.duration`).
    async fn deliver_file(
        &self,
        audit: &AuditLog,
        scratch: &Path,
        entry: &Arc<Entry>,
        env: &mut Vec<(String, String)>,
    ) -> Result<ScratchFile, CredentialError> {
        let body = self.broker.credentials_file(audit, entry).await?;
        env.push((
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            scratch.join(CREDENTIALS_FILE).display().to_string(),
        ));
        Ok(ScratchFile {
            path: CREDENTIALS_FILE.into(),
            contents: PlanSecret(body),
        })
    }

    /// The first step of a task's purge: its token stops working at once
    /// (and is zeroized). Idempotent.
    pub fn revoke(&self, task_id: &str) {
        self.tokens_lock().remove(task_id);
    }

    /// The last step: the task no longer holds its session; the session is
    /// dropped and zeroized when no other task holds it.
    pub fn release(&self, creds: TaskCredentials) {
        self.broker.release(creds.entry);
    }

    /// Shutdown: every token stops working and every session is dropped.
    pub fn purge_all(&self) {
        self.tokens_lock().clear();
        self.broker.purge_all();
    }

    /// The endpoint's listener, once.
    pub fn take_listener(&self) -> Option<std::net::TcpListener> {
        match self.listener.lock() {
            Ok(mut l) => l.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    fn tokens_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TokenSlot>> {
        match self.tokens.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether `ip` is the address of a live task with a token.
    pub fn is_task_addr(&self, ip: IpAddr) -> bool {
        self.tokens_lock()
            .values()
            .any(|slot| IpAddr::V4(slot.addr) == ip)
    }

    /// The session of live task `task_id` when `token` is its token and
    /// `peer` its address; compared in constant time.
    fn authorize(&self, task_id: &str, token: &[u8], peer: IpAddr) -> Option<Arc<Entry>> {
        let tokens = self.tokens_lock();
        let slot = tokens.get(task_id)?;
        let token_ok = constant_time_eq(slot.token.expose().as_bytes(), token);
        (token_ok && peer == IpAddr::V4(slot.addr)).then(|| slot.entry.clone())
    }
}

/// Gets and delivers the credentials of an admitted task, if it was
/// granted a role.
pub async fn for_task(
    sup: &Supervisor,
    task: &Admitted,
) -> Result<Option<TaskCredentials>, CredentialError> {
    let Some(grant) = &task.grant else {
        return Ok(None);
    };
    let service = sup
        .credentials
        .as_ref()
        .ok_or(CredentialError::NotConfigured)?;
    let network = task.policy.policy.network.mode == NetworkMode::Host;
    let creds = service.prepare(&sup.audit, task, grant, network).await?;
    Ok(Some(creds))
}

/// The task's end when it got no credentials: it never ran.
pub fn spawn_failed(err: &CredentialError) -> Exited {
    tracing::warn!(%err, "task gets no AWS credentials");
    Exited {
        reason: ExitReason::SpawnFailed as i32,
        exit_code: None,
        signal: None,
        message: format!("could not get AWS credentials for the task: {err}"),
    }
}

/// Releases a task's session after its purge (its token was revoked
/// first); returns what the audit record shows.
pub fn finish(
    sup: &Supervisor,
    creds: Result<Option<TaskCredentials>, CredentialError>,
) -> Option<Attribution> {
    let creds = creds.ok()??;
    let attribution = creds.attribution.clone();
    if let Some(service) = &sup.credentials {
        service.release(creds);
    }
    Some(attribution)
}

/// The credential fields of `Started`.
pub fn started(creds: Option<&TaskCredentials>) -> Started {
    let a = creds.map(|c| c.attribution.clone()).unwrap_or_default();
    Started {
        role_arn: a.role_arn,
        assumed_role_arn: a.assumed_role_arn,
        session_name: a.session_name,
        source_identity: a.source_identity,
        ..Default::default()
    }
}

/// The ports a task may connect to: the policy's, plus the endpoint's when
/// the task has credentials.
pub fn connect_ports(policy: &[u16], creds: Option<&TaskCredentials>) -> Vec<u16> {
    let mut ports = policy.to_vec();
    if let Some(port) = creds.and_then(|c| c.endpoint_port) {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// STS's RoleSessionName and SourceIdentity from a user name: characters
/// outside `[A-Za-z0-9_+=,.@-]` become `_`, the result is cut to 64
/// characters, and a name shorter than STS's minimum of 2 gets a `=`
/// appended (`=` never occurs in a Unix user name, so the mapping stays
/// one-to-one for every user name Airlock accepts).
pub fn sts_name(user: &str) -> String {
    let mut name: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    while name.len() < 2 {
        name.push('=');
    }
    name
}

/// A fresh 256-bit token, hex.
fn random_token() -> std::io::Result<Secret> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    crate::sys::random_bytes(&mut *bytes)?;
    let mut hex = String::with_capacity(64);
    for b in bytes.iter() {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    Ok(Secret::new(hex))
}

/// Equal length and bytes, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Clips an STS message for an error.
fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_follow_sts_rules() {
        assert_eq!(sts_name("alice"), "alice");
        assert_eq!(sts_name("a"), "a=");
        assert_eq!(sts_name("svc.data-1_x"), "svc.data-1_x");
        assert_eq!(sts_name("a b:c"), "a_b_c");
        assert_eq!(sts_name(&"x".repeat(70)).len(), 64);
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
