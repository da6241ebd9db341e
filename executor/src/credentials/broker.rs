//! The broker: STS sessions for tasks, one per (user, role, session policy)
//! while tasks hold it.
//!
//! airlockd's own identity is the worker's *meta* identity from the default
//! credential chain (the instance profile in production; keys in airlockd's
//! environment in tests, which tasks never see: their environment is built
//! from scratch). From it the broker calls `AssumeRole` into the *data*
//! role, with RoleSessionName and SourceIdentity carrying the user
//! ([`super::sts_name`]), so CloudTrail attributes every access; or
//! `AssumeRoleWithSAML` with the user's assertion.
//!
//! Sharing: overlapping tasks of one user and role share one session (one
//! STS call): the first task's `acquire` calls STS while holding the
//! entry's lock, the others wait for it and reuse the result. The entry is
//! dropped, and its keys zeroized, when the last task holding it releases
//! it. While held, a session is refreshed from STS on use once it is within
//! `credentials.refresh_margin` of its expiry.
//!
//! Every STS call is counted and audited (`credentials_issued`), never with
//! keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use airlock_policy::CredentialsConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::primitives::{DateTime, DateTimeFormat};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{clip, CredentialError, Secret};
use crate::audit::{AuditEvent, AuditLog};

/// What one cached session is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    /// The user.
    pub user: String,
    /// The role.
    pub role_arn: String,
    /// The session policy.
    pub session_policy: Option<String>,
    /// For a session from the user's SAML assertion, whom the assertion
    /// names (provider ARN, RoleSessionName, SourceIdentity): two people
    /// submitting tasks as one user with their own assertions get
    /// sessions of their own, each attributed to them.
    pub saml: Option<String>,
}

/// How the session is obtained.
pub enum Source {
    /// `AssumeRole` from airlockd's own identity.
    AssumeRole {
        /// RoleSessionName.
        session_name: String,
        /// SourceIdentity.
        source_identity: String,
    },
    /// `AssumeRoleWithSAML`.
    Saml {
        /// The base64 SAMLResponse.
        assertion: Secret,
        /// The SAML provider ARN paired with the role.
        principal_arn: String,
        /// The assertion's RoleSessionName, as our parse found it (what
        /// is recorded comes from STS's answer).
        session_name: String,
    },
}

/// Which session a task got: what CloudTrail will show. No secrets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Attribution {
    /// The role asked for.
    pub role_arn: String,
    /// The STS assumed-role ARN.
    pub assumed_role_arn: String,
    /// RoleSessionName.
    pub session_name: String,
    /// SourceIdentity (empty when none).
    pub source_identity: String,
}

/// One STS session's keys.
struct Session {
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Secret,
    expiration: DateTime,
    attribution: Attribution,
}

/// A cached session and how to renew it.
pub struct Entry {
    key: LeaseKey,
    source: Source,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Its last holder let it go: no request may fetch it again (one
    /// authorised just before its task ended may still come).
    released: AtomicBool,
    /// When a refresh last failed (ms since the epoch; 0: never), so that
    /// STS is asked again only after [`REFRESH_RETRY`].
    refresh_failed_ms: AtomicU64,
}

/// After a failed refresh, how long the current session is served before
/// STS is asked again: otherwise every request of every task holding it
/// would call STS, and write an audit record, until it expired.
const REFRESH_RETRY: Duration = Duration::from_secs(30);

/// The STS client's HTTP client: rustls with ring.
fn https_client() -> aws_sdk_sts::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// STS client, cache and counter.
pub struct Broker {
    sts: aws_sdk_sts::Client,
    endpoint: String,
    duration_secs: i32,
    refresh_margin: Duration,
    cache: Mutex<HashMap<LeaseKey, (Arc<Entry>, usize)>>,
    sts_calls: AtomicU64,
    sessions_dropped: AtomicU64,
}

impl Broker {
    /// An STS client for `config`'s region and endpoint, over rustls with
    /// ring, signing with the default credential chain.
    pub async fn new(config: &CredentialsConfig) -> Self {
        let http = https_client();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .http_client(http)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(30))
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            )
            .load()
            .await;
        let mut sts = aws_sdk_sts::config::Builder::from(&sdk);
        if let Some(url) = &config.sts_endpoint {
            sts = sts.endpoint_url(url);
        }
        Self {
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            endpoint: config
                .sts_endpoint
                .clone()
                .unwrap_or_else(|| format!("sts.{}.amazonaws.com", config.region)),
            duration_secs: i32::try_from(config.duration_secs).unwrap_or(3600),
            refresh_margin: Duration::from_secs(u64::from(config.refresh_margin_secs)),
            cache: Mutex::new(HashMap::new()),
            sts_calls: AtomicU64::new(0),
            sessions_dropped: AtomicU64::new(0),
        }
    }

    /// STS calls made so far.
    pub fn sts_calls(&self) -> u64 {
        self.sts_calls.load(Ordering::Relaxed)
    }

    /// Sessions dropped so far because no task held them any more.
    pub fn sessions_dropped(&self) -> u64 {
        self.sessions_dropped.load(Ordering::Relaxed)
    }

    /// Holds the session for `key`, getting it from STS unless a task of
    /// the same user, role and session policy holds a fresh one.
    pub async fn acquire(
        &self,
        audit: &AuditLog,
        key: LeaseKey,
        source: Source,
    ) -> Result<(Arc<Entry>, Attribution), CredentialError> {
        let entry = {
            let mut cache = self.cache_lock();
            let slot = cache.entry(key.clone()).or_insert_with(|| {
                let entry = Entry {
                    key,
                    source,
                    session: tokio::sync::Mutex::new(None),
                    released: AtomicBool::new(false),
                    refresh_failed_ms: AtomicU64::new(0),
                };
                (Arc::new(entry), 0)
            });
            slot.1 += 1;
            slot.0.clone()
        };
        let attribution = {
            let mut session = entry.session.lock().await;
            self.fresh(audit, &entry, &mut session)
                .await
                .map(|s| s.attribution.clone())
        };
        match attribution {
            Ok(a) => Ok((entry, a)),
            Err(err) => {
                self.release(entry);
                Err(err)
            }
        }
    }

    /// Lets go of a session; the last holder drops it (zeroized).
    pub fn release(&self, entry: Arc<Entry>) {
        let mut cache = self.cache_lock();
        let last = match cache.get_mut(&entry.key) {
            Some(slot) if Arc::ptr_eq(&slot.0, &entry) => {
                slot.1 = slot.1.saturating_sub(1);
                slot.1 == 0
            }
            _ => false,
        };
        if last {
            entry.released.store(true, Ordering::Release);
            cache.remove(&entry.key);
            self.sessions_dropped.fetch_add(1, Ordering::Relaxed);
            // Zeroize now, unless a request being served still holds the
            // lock; then the keys go when it drops the entry.
            if let Ok(mut session) = entry.session.try_lock() {
                *session = None;
            }
        }
    }

    /// Drops every session (shutdown).
    pub fn purge_all(&self) {
        let drained: Vec<_> = self.cache_lock().drain().collect();
        for (_, (entry, _)) in drained {
            if let Ok(mut session) = entry.session.try_lock() {
                *session = None;
            }
        }
    }

    /// The container-credentials JSON for `entry`, refreshed if due.
    pub async fn container_json(
        &self,
        audit: &AuditLog,
        entry: &Entry,
    ) -> Result<Zeroizing<String>, CredentialError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            access_key_id: &'a str,
            secret_access_key: &'a str,
            token: &'a str,
            expiration: &'a str,
        }
        let mut guard = entry.session.lock().await;
        let s = self.fresh(audit, entry, &mut guard).await?;
        let expiration = rfc3339(&s.expiration);
        let body = Body {
            access_key_id: s.access_key_id.expose(),
            secret_access_key: s.secret_access_key.expose(),
            token: s.session_token.expose(),
            expiration: &expiration,
        };
        // Sized up front (the keys need no JSON escapes): a buffer that
        // grew would leave copies of them in memory freed unzeroed.
        let size = 128
            + [
                body.access_key_id,
                body.secret_access_key,
                body.token,
                &expiration,
            ]
            .iter()
            .map(|v| v.len())
            .sum::<usize>();
        let mut json = Zeroizing::new(Vec::with_capacity(size));
        serde_json::to_writer(&mut *json, &body).map_err(|e| CredentialError::Sts {
            role_arn: entry.key.role_arn.clone(),
            code: "serialize".into(),
            detail: e.to_string(),
        })?;
        let text =
            String::from_utf8(std::mem::take(&mut *json)).map_err(|_| CredentialError::Sts {
                role_arn: entry.key.role_arn.clone(),
                code: "serialize".into(),
                detail: "not UTF-8".into(),
            })?;
        Ok(Zeroizing::new(text))
    }

    /// A shared-credentials file (INI) for `entry`.
    pub async fn credentials_file(
        &self,
        audit: &AuditLog,
        entry: &Entry,
    ) -> Result<Zeroizing<String>, CredentialError> {
        use std::fmt::Write;
        let mut guard = entry.session.lock().await;
        let s = self.fresh(audit, entry, &mut guard).await?;
        let (id, key, token) = (
            s.access_key_id.expose(),
            s.secret_access_key.expose(),
            s.session_token.expose(),
        );
        // Sized up front, as in `container_json`.
        let mut file = Zeroizing::new(String::with_capacity(
            128 + id.len() + key.len() + token.len(),
        ));
        let _ = write!(
            file,
            "[default]\naws_access_key_id = {id}\naws_secret_access_key = {key}\naws_session_token = {token}\n"
        );
        Ok(file)
    }

    /// The session in `slot`, from STS when there is none or it is within
    /// the refresh margin of its expiry; none once the entry is released.
    /// A failed refresh keeps serving the old session until it expires,
    /// and STS is asked again only [`REFRESH_RETRY`] later.
    async fn fresh<'s>(
        &self,
        audit: &AuditLog,
        entry: &Entry,
        slot: &'s mut Option<Session>,
    ) -> Result<&'s Session, CredentialError> {
        if entry.released.load(Ordering::Acquire) {
            return Err(CredentialError::Released);
        }
        let now = SystemTime::now();
        let due = |s: &Session| {
            SystemTime::try_from(s.expiration).map_or(true, |exp| now + self.refresh_margin >= exp)
        };
        let expired =
            |s: &Session| SystemTime::try_from(s.expiration).map_or(true, |exp| now >= exp);
        let failed_ms = entry.refresh_failed_ms.load(Ordering::Relaxed);
        let backing_off = slot.as_ref().is_some_and(|s| !expired(s))
            && crate::now_ms().saturating_sub(failed_ms) < REFRESH_RETRY.as_millis() as u64;
        if slot.as_ref().is_none_or(due) && !backing_off {
            let refresh = slot.is_some();
            match self.call_sts(audit, entry, refresh).await {
                Ok(session) => {
                    entry.refresh_failed_ms.store(0, Ordering::Relaxed);
                    *slot = Some(session);
                }
                Err(err) => match slot {
                    Some(old) if !expired(old) => {
                        entry
                            .refresh_failed_ms
                            .store(crate::now_ms(), Ordering::Relaxed);
                        tracing::error!(role = %entry.key.role_arn, user = %entry.key.user, %err, "credential refresh failed; serving the current session until it expires, and asking STS again in 30 s");
                    }
                    _ => return Err(err),
                },
            }
        }
        slot.as_ref().ok_or(CredentialError::NotConfigured)
    }

    /// One STS call, audited whether it succeeds or not.
    async fn call_sts(
        &self,
        audit: &AuditLog,
        entry: &Entry,
        refresh: bool,
    ) -> Result<Session, CredentialError> {
        self.sts_calls.fetch_add(1, Ordering::Relaxed);
        let result = self.assume(audit, entry, refresh).await;
        if let Err(err) = &result {
            audit.record(&AuditEvent::CredentialsFailed {
                operation: match entry.source {
                    Source::AssumeRole { .. } => "AssumeRole",
                    Source::Saml { .. } => "AssumeRoleWithSAML",
                },
                refresh,
                user: &entry.key.user,
                role_arn: &entry.key.role_arn,
                error: &err.to_string(),
            });
        }
        result
    }

    async fn assume(
        &self,
        audit: &AuditLog,
        entry: &Entry,
        refresh: bool,
    ) -> Result<Session, CredentialError> {
        let key = &entry.key;
        let (operation, creds, assumed, session_name, source_identity) = match &entry.source {
            Source::AssumeRole {
                session_name,
                source_identity,
            } => {
                let out = self
                    .sts
                    .assume_role()
                    .role_arn(&key.role_arn)
                    .role_session_name(session_name)
                    .source_identity(source_identity)
                    .duration_seconds(self.duration_secs)
                    .set_policy(key.session_policy.clone())
                    .send()
                    .await
                    .map_err(|e| self.error(e, &key.role_arn, "this worker's identity"))?;
                (
                    "AssumeRole",
                    out.credentials,
                    out.assumed_role_user.map(|u| u.arn),
                    session_name.clone(),
                    out.source_identity
                        .unwrap_or_else(|| source_identity.clone()),
                )
            }
            Source::Saml {
                assertion,
                principal_arn,
                session_name,
            } => {
                let out = self
                    .sts
                    .assume_role_with_saml()
                    .role_arn(&key.role_arn)
                    .principal_arn(principal_arn)
                    .saml_assertion(assertion.expose())
                    .duration_seconds(self.duration_secs)
                    .set_policy(key.session_policy.clone())
                    .send()
                    .await
                    .map_err(|e| self.error(e, &key.role_arn, "the SAML provider"))?;
                // What STS took from the signed assertion, not what our
                // parse of the document (signed or not) found.
                let assumed = out.assumed_role_user.map(|u| u.arn);
                let named = assumed
                    .as_deref()
                    .and_then(|arn| arn.rsplit_once('/'))
                    .map(|(_, name)| name.to_owned());
                (
                    "AssumeRoleWithSAML",
                    out.credentials,
                    assumed,
                    named.unwrap_or_else(|| session_name.clone()),
                    out.source_identity.unwrap_or_default(),
                )
            }
        };
        let creds = creds.ok_or_else(|| CredentialError::Sts {
            role_arn: key.role_arn.clone(),
            code: "NoCredentials".into(),
            detail: "the answer carried no credentials".into(),
        })?;
        let attribution = Attribution {
            role_arn: key.role_arn.clone(),
            assumed_role_arn: assumed.unwrap_or_default(),
            session_name,
            source_identity,
        };
        audit.record(&AuditEvent::CredentialsIssued {
            operation,
            refresh,
            user: &key.user,
            attribution: &attribution,
            expiration: &rfc3339(&creds.expiration),
        });
        tracing::info!(user = %key.user, role = %key.role_arn, operation, refresh, "credentials issued");
        Ok(Session {
            access_key_id: Secret::new(creds.access_key_id),
            secret_access_key: Secret::new(creds.secret_access_key),
            session_token: Secret::new(creds.session_token),
            expiration: creds.expiration,
            attribution,
        })
    }

    /// An STS failure as the error a person can act on. The Rust SDK cannot
    /// parse every STS-compatible service's error body (moto's AccessDenied
    /// among them), so HTTP 403 counts as access denied whatever the body.
    fn error<E>(&self, err: SdkError<E>, role_arn: &str, who: &'static str) -> CredentialError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or_default().to_owned();
        let detail = clip(err.message().unwrap_or_default());
        let role_arn = role_arn.to_owned();
        match (code.as_str(), status) {
            ("AccessDenied" | "AccessDeniedException", _) | (_, Some(403)) => {
                CredentialError::AccessDenied { role_arn, who }
            }
            (
                "InvalidIdentityToken"
                | "IDPRejectedClaim"
                | "ExpiredToken"
                | "IDPCommunicationError",
                _,
            ) => CredentialError::InvalidIdentityToken { code, detail },
            ("ValidationError" | "MalformedPolicyDocument" | "PackedPolicyTooLarge", _) => {
                CredentialError::Validation { role_arn, detail }
            }
            _ => match err {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                    CredentialError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        detail: clip(&error_chain(&err)),
                    }
                }
                _ => CredentialError::Sts {
                    role_arn,
                    code: if code.is_empty() {
                        status.map_or_else(|| "unknown".to_owned(), |s| format!("HTTP {s}"))
                    } else {
                        code
                    },
                    detail,
                },
            },
        }
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseKey, (Arc<Entry>, usize)>> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The error and its sources, one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// RFC 3339 in UTC ending in `Z` (the Rust SDK rejects `+00:00`).
fn rfc3339(t: &DateTime) -> String {
    t.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker whose STS cannot be reached (nothing listens on port 9),
    /// signing with example keys, and an entry of alice's holding a
    /// session that expires in `expires_in`.
    fn broker_and_entry(expires_in: Duration) -> (Broker, Arc<Entry>) {
        let http = https_client();
        let config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .http_client(http)
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "test",
            ))
            .build();
        let broker = Broker {
            sts: aws_sdk_sts::Client::from_conf(config),
            endpoint: "http://127.0.0.1:9".into(),
            duration_secs: 900,
            refresh_margin: Duration::from_secs(300),
            cache: Mutex::new(HashMap::new()),
            sts_calls: AtomicU64::new(0),
            sessions_dropped: AtomicU64::new(0),
        };
        let key = LeaseKey {
            user: "alice".into(),
            role_arn: "arn:aws:iam::123456789012:role/alice-data".into(),
            session_policy: None,
            saml: None,
        };
        let session = Session {
            access_key_id: Secret::new("ASIAIOSFODNN7EXAMPLE".into()),
            secret_access_key: Secret::new("secret".into()),
            session_token: Secret::new("token".into()),
            expiration: DateTime::from(SystemTime::now() + expires_in),
            attribution: Attribution::default(),
        };
        let entry = Arc::new(Entry {
            key: key.clone(),
            source: Source::AssumeRole {
                session_name: "alice".into(),
                source_identity: "alice".into(),
            },
            session: tokio::sync::Mutex::new(Some(session)),
            released: AtomicBool::new(false),
            refresh_failed_ms: AtomicU64::new(0),
        });
        broker.cache_lock().insert(key, (entry.clone(), 1));
        (broker, entry)
    }

    fn audit_log(name: &str) -> (AuditLog, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "airlock-broker-test-{}-{name}.jsonl",
            std::process::id()
        ));
        let log = AuditLog::open(&path);
        assert!(log.is_ok(), "open {}", path.display());
        (log.unwrap_or_else(|_| unreachable!()), path)
    }

    /// A request that reaches a session after its last task let it go
    /// gets nothing, and no STS call is made for it.
    #[tokio::test]
    async fn a_released_session_is_never_fetched_again() {
        let (broker, entry) = broker_and_entry(Duration::from_secs(3600));
        let (audit, path) = audit_log("released");
        assert!(broker.container_json(&audit, &entry).await.is_ok());
        broker.release(entry.clone());
        let again = broker.container_json(&audit, &entry).await;
        assert!(matches!(again, Err(CredentialError::Released)));
        assert_eq!(broker.sts_calls(), 0);
        let _ = std::fs::remove_file(path);
    }

    /// A session due for refresh whose refresh fails is served until it
    /// expires, and STS is not asked again on every request.
    #[tokio::test]
    async fn a_failed_refresh_is_retried_only_after_a_while() {
        let (broker, entry) = broker_and_entry(Duration::from_secs(120));
        let (audit, path) = audit_log("retry");
        for _ in 0..3 {
            assert!(broker.container_json(&audit, &entry).await.is_ok());
        }
        assert_eq!(broker.sts_calls(), 1, "STS asked again at once");
        // Once the wait is over, STS is asked again.
        entry.refresh_failed_ms.store(
            crate::now_ms() - REFRESH_RETRY.as_millis() as u64,
            Ordering::Relaxed,
        );
        assert!(broker.container_json(&audit, &entry).await.is_ok());
        assert_eq!(broker.sts_calls(), 2);
        let _ = std::fs::remove_file(path);
    }
}
