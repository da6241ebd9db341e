//! Connecting to `airlockd` from a client (the `airlock` CLI, a driver).
//!
//! Where the supervisor listens is an [`Endpoint`]: its Unix socket (the
//! default, [`DEFAULT_SOCKET`]), `https://` with mutual TLS, or plaintext
//! `http://` on loopback only. Plaintext to any other host is refused when the
//! endpoint is parsed, so a typo cannot send a task's request (user, groups,
//! environment, stdin) over the network in the clear.
//!
//! Every [`ClientError`] says what to do next, because the person reading it
//! is usually at a shell prompt: which flag to pass, which group to join.
//!
//! Test strategy: endpoint parsing is pure and unit-tested here, as are the
//! connection errors that can be produced without a daemon (missing socket,
//! socket nobody listens on). Talking to a real `airlockd` is left to the
//! end-to-end suite in `tests/`.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Uri};

/// Where `airlockd` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/airlock/airlockd.sock";

/// The environment variable consulted when no `--endpoint` is given.
pub const ENDPOINT_ENV: &str = "AIRLOCK_ENDPOINT";

/// How long to wait for a TCP (and TLS) connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to reach `airlockd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Its Unix socket, authorized by the socket's owner, group and mode.
    Unix(PathBuf),
    /// TCP with mutual TLS (`https://host:port`).
    Https {
        /// The URI as given, e.g. `https://worker-7:7443`.
        uri: String,
    },
    /// Plaintext TCP to a loopback address (`http://127.0.0.1:port`,
    /// `http://[::1]:port`, `http://localhost:port`), e.g. through an SSH
    /// tunnel. Never anything else.
    InsecureLoopback {
        /// The URI as given.
        uri: String,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Https { uri } | Endpoint::InsecureLoopback { uri } => f.write_str(uri),
        }
    }
}

/// The files for mutual TLS: the client's own certificate and key, and the
/// CA that must have signed the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificate(s) that verify the server.
    pub ca: PathBuf,
    /// PEM client certificate (chain) presented to the server.
    pub cert: PathBuf,
    /// PEM private key of the client certificate.
    pub key: PathBuf,
}

/// Why a client could not reach `airlockd`. Each message ends in what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint string does not parse.
    #[error(
        "invalid endpoint {input:?}: {reason} (expected unix:/abs/path, https://HOST:PORT or \
         http://127.0.0.1:PORT)"
    )]
    InvalidEndpoint {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Plaintext `http://` to a host that is not loopback.
    #[error(
        "refusing plaintext http to non-loopback host {host:?} in {input:?}: use \
         https://{host}:PORT with mTLS (--tls-ca, --tls-cert, --tls-key)"
    )]
    PlaintextNotLoopback {
        /// What was given.
        input: String,
        /// The offending host.
        host: String,
    },
    /// `AIRLOCK_ENDPOINT` is set but unusable.
    #[error("{ENDPOINT_ENV} is set but unusable (unset it or pass --endpoint)")]
    EnvEndpoint {
        /// Why it is unusable.
        #[source]
        source: Box<ClientError>,
    },
    /// An https endpoint without the files for mutual TLS.
    #[error(
        "{endpoint} needs mutual TLS: pass --tls-ca, --tls-cert and --tls-key (or set \
         AIRLOCK_TLS_CA, AIRLOCK_TLS_CERT and AIRLOCK_TLS_KEY)"
    )]
    MissingTls {
        /// The https endpoint.
        endpoint: String,
    },
    /// A TLS file could not be read.
    #[error("cannot read the TLS {what} file {}", path.display())]
    ReadTls {
        /// "CA", "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// tonic refused the endpoint or TLS configuration.
    #[error("cannot set up the connection to {endpoint}")]
    Setup {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The Unix socket does not exist.
    #[error(
        "cannot connect to airlockd at {endpoint}: no such file (is airlockd running? pass \
         --endpoint or set {ENDPOINT_ENV})"
    )]
    SocketMissing {
        /// The endpoint.
        endpoint: String,
    },
    /// The caller may not open the Unix socket (or search its directory).
    #[error(
        "cannot connect to airlockd at {endpoint}: permission denied ({detail}; run as root or a \
         member of airlockd's --socket-group)"
    )]
    PermissionDenied {
        /// The endpoint.
        endpoint: String,
        /// What we could see of the socket's ownership, e.g.
        /// "the socket is root:airlock 0660".
        detail: String,
    },
    /// Nothing accepts connections there.
    #[error("cannot connect to airlockd at {endpoint}: connection refused ({hint})")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// What that usually means for this kind of endpoint.
        hint: &'static str,
    },
    /// Any other failure to connect (DNS, TLS handshake, timeout).
    #[error("cannot connect to airlockd at {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

impl FromStr for Endpoint {
    type Err = ClientError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ClientError::InvalidEndpoint {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = input.strip_prefix("unix:") {
            // `unix:///p` is the URI form with an empty authority; `unix://host/p`
            // names a host, which a Unix socket cannot have.
            let path = match rest.strip_prefix("//") {
                Some(after) if after.starts_with('/') => after,
                Some(_) => return Err(invalid("a unix endpoint cannot name a host")),
                None => rest,
            };
            if !path.starts_with('/') {
                return Err(invalid("the socket path must be absolute"));
            }
            if path.len() == 1 || path.ends_with('/') {
                return Err(invalid("the socket path names a directory"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }

        let uri: Uri = input
            .parse()
            .map_err(|e: tonic::codegen::http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = uri.scheme_str().ok_or_else(|| invalid("no scheme"))?;
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information is not supported"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("a gRPC endpoint has no path or query"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        match scheme {
            "https" => Ok(Endpoint::Https {
                uri: input.to_owned(),
            }),
            "http" => {
                if !is_loopback_host(host) {
                    return Err(ClientError::PlaintextNotLoopback {
                        input: input.to_owned(),
                        host: host.to_owned(),
                    });
                }
                if authority.port_u16().is_none() {
                    return Err(invalid("give the port airlockd listens on"));
                }
                Ok(Endpoint::InsecureLoopback {
                    uri: input.to_owned(),
                })
            }
            _ => Err(invalid("unsupported scheme")),
        }
    }
}

/// Whether `host` (as it appears in a URI, IPv6 in brackets) is loopback.
/// Only literal loopback addresses and `localhost` count; any other name
/// could resolve anywhere.
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The endpoint to use: `flag` if given, else `$AIRLOCK_ENDPOINT` if set and
/// non-empty, else `unix:` + [`DEFAULT_SOCKET`].
pub fn resolve_endpoint(flag: Option<&str>) -> Result<Endpoint, ClientError> {
    let env = std::env::var(ENDPOINT_ENV).ok();
    resolve_endpoint_from(flag, env.as_deref())
}

/// [`resolve_endpoint`] with the environment passed in.
fn resolve_endpoint_from(flag: Option<&str>, env: Option<&str>) -> Result<Endpoint, ClientError> {
    if let Some(flag) = flag {
        return flag.parse();
    }
    match env {
        Some(value) if !value.is_empty() => value.parse().map_err(|e| ClientError::EnvEndpoint {
            source: Box::new(e),
        }),
        _ => Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET))),
    }
}

/// Opens a channel to `airlockd`. `tls` is required for https and ignored
/// otherwise (the Unix socket is authorized by its permissions; loopback
/// plaintext is for tunnels that already encrypt).
pub async fn connect(ep: &Endpoint, tls: Option<&TlsFiles>) -> Result<Channel, ClientError> {
    let endpoint = ep.to_string();
    let setup = |source| ClientError::Setup {
        endpoint: endpoint.clone(),
        source,
    };
    match ep {
        Endpoint::Unix(path) => {
            // The URI is a placeholder that tonic requires; the connector
            // ignores it and dials the socket.
            let path = path.clone();
            let result = tonic::transport::Endpoint::try_from("http://[::]:50051")
                .map_err(setup)?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await;
            result.map_err(|source| classify_unix(ep, source))
        }
        Endpoint::Https { uri } => {
            let files = tls.ok_or_else(|| ClientError::MissingTls {
                endpoint: endpoint.clone(),
            })?;
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read_tls("CA", &files.ca)?))
                .identity(Identity::from_pem(
                    read_tls("certificate", &files.cert)?,
                    read_tls("key", &files.key)?,
                ));
            let result = tonic::transport::Endpoint::from_shared(uri.clone())
                .map_err(setup)?
                .connect_timeout(CONNECT_TIMEOUT)
                .tls_config(config)
                .map_err(setup)?
                .connect()
                .await;
            result.map_err(|source| classify_tcp(ep, source))
        }
        Endpoint::InsecureLoopback { uri } => {
            let result = tonic::transport::Endpoint::from_shared(uri.clone())
                .map_err(setup)?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect()
                .await;
            result.map_err(|source| classify_tcp(ep, source))
        }
    }
}

fn read_tls(what: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadTls {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The first `io::Error` in an error's source chain, if any: tonic wraps the
/// connector's error in its own and hyper's.
fn io_error_kind(err: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

fn classify_unix(ep: &Endpoint, source: tonic::transport::Error) -> ClientError {
    let endpoint = ep.to_string();
    match io_error_kind(&source) {
        Some(io::ErrorKind::NotFound) => ClientError::SocketMissing { endpoint },
        Some(io::ErrorKind::PermissionDenied) => {
            let detail = match ep {
                Endpoint::Unix(path) => socket_ownership(path),
                _ => String::from("the socket is root:GROUP 0660"),
            };
            ClientError::PermissionDenied { endpoint, detail }
        }
        Some(io::ErrorKind::ConnectionRefused) => ClientError::Refused {
            endpoint,
            hint: "the socket exists but nothing listens on it; is airlockd running?",
        },
        _ => ClientError::Connect { endpoint, source },
    }
}

fn classify_tcp(ep: &Endpoint, source: tonic::transport::Error) -> ClientError {
    let endpoint = ep.to_string();
    match io_error_kind(&source) {
        Some(io::ErrorKind::ConnectionRefused) => ClientError::Refused {
            endpoint,
            hint: "is airlockd listening on that address and port?",
        },
        _ => ClientError::Connect { endpoint, source },
    }
}

/// Describes who may open the socket, for a permission-denied message:
/// "the socket is root:airlock 0660", or, when even that cannot be seen,
/// that a directory above it is closed to us.
fn socket_ownership(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let uid = nix::unistd::Uid::from_raw(meta.uid());
            let gid = nix::unistd::Gid::from_raw(meta.gid());
            let user = nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name);
            let group = nix::unistd::Group::from_gid(gid)
                .ok()
                .flatten()
                .map_or_else(|| gid.to_string(), |g| g.name);
            format!("the socket is {user}:{group} {:04o}", meta.mode() & 0o7777)
        }
        Err(_) => String::from(
            "a directory above the socket is closed to you; the socket itself is root:GROUP 0660",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Endpoint, ClientError> {
        s.parse()
    }

    #[test]
    fn unix_endpoint_accepts_both_spellings() {
        assert_eq!(
            parse("unix:/run/airlock/airlockd.sock").unwrap(),
            Endpoint::Unix(PathBuf::from("/run/airlock/airlockd.sock"))
        );
        assert_eq!(
            parse("unix:///run/airlock/airlockd.sock").unwrap(),
            Endpoint::Unix(PathBuf::from("/run/airlock/airlockd.sock"))
        );
    }

    #[test]
    fn unix_endpoint_rejects_relative_host_and_directory() {
        for bad in [
            "unix:airlockd.sock",
            "unix://host/sock",
            "unix:/",
            "unix:/run/",
            "unix:",
        ] {
            assert!(
                matches!(parse(bad), Err(ClientError::InvalidEndpoint { .. })),
                "{bad} should be invalid"
            );
        }
    }

    #[test]
    fn https_endpoint_is_accepted_for_any_host() {
        assert_eq!(
            parse("https://worker-7.example:7443").unwrap(),
            Endpoint::Https {
                uri: "https://worker-7.example:7443".into()
            }
        );
    }

    #[test]
    fn plaintext_is_accepted_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:7000",
            "http://[::1]:7000",
            "http://localhost:7000",
            "http://LOCALHOST:7000/",
        ] {
            assert_eq!(
                parse(ok).unwrap(),
                Endpoint::InsecureLoopback { uri: ok.into() },
                "{ok}"
            );
        }
    }

    #[test]
    fn plaintext_to_non_loopback_is_refused_with_https_advice() {
        for bad in [
            "http://10.0.0.5:7000",
            "http://worker-7:7000",
            "http://[2001:db8::1]:7000",
            "http://0.0.0.0:7000",
            "http://localhost.evil.example:7000",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(err, ClientError::PlaintextNotLoopback { .. }),
                "{bad}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains("https"), "{msg}");
            assert!(msg.contains("--tls-cert"), "{msg}");
        }
    }

    #[test]
    fn other_malformed_endpoints_are_invalid() {
        for bad in [
            "",
            "/run/airlock/airlockd.sock",
            "ftp://127.0.0.1:21",
            "http://127.0.0.1",
            "http://127.0.0.1:7000/path",
            "http://u:p@127.0.0.1:7000",
            "https://host:7443?x=1",
        ] {
            assert!(
                matches!(parse(bad), Err(ClientError::InvalidEndpoint { .. })),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn endpoint_displays_as_it_parses() {
        for s in [
            "unix:/run/airlock/airlockd.sock",
            "https://h:1",
            "http://[::1]:2",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn resolve_prefers_flag_then_env_then_default() {
        assert_eq!(
            resolve_endpoint_from(Some("unix:/a.sock"), Some("unix:/b.sock")).unwrap(),
            Endpoint::Unix("/a.sock".into())
        );
        assert_eq!(
            resolve_endpoint_from(None, Some("unix:/b.sock")).unwrap(),
            Endpoint::Unix("/b.sock".into())
        );
        assert_eq!(
            resolve_endpoint_from(None, None).unwrap(),
            Endpoint::Unix(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            resolve_endpoint_from(None, Some("")).unwrap(),
            Endpoint::Unix(DEFAULT_SOCKET.into())
        );
    }

    #[test]
    fn resolve_names_the_env_var_when_it_is_bad() {
        let err = resolve_endpoint_from(None, Some("http://10.1.1.1:7")).unwrap_err();
        assert!(err.to_string().contains(ENDPOINT_ENV), "{err}");
    }

    fn scratch_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("airlock-client-test-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn missing_socket_says_is_airlockd_running() {
        let ep = Endpoint::Unix(scratch_path("missing.sock"));
        let err = connect(&ep, None).await.unwrap_err();
        assert!(matches!(err, ClientError::SocketMissing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("no such file (is airlockd running?"), "{msg}");
    }

    #[tokio::test]
    async fn socket_without_listener_is_refused() {
        let path = scratch_path("stale.sock");
        let _ = std::fs::remove_file(&path);
        // Binding and dropping leaves the socket file with nobody listening,
        // as a crashed daemon would.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = connect(&Endpoint::Unix(path.clone()), None)
            .await
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn https_without_tls_files_names_the_flags() {
        let ep = parse("https://127.0.0.1:1").unwrap();
        let err = connect(&ep, None).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("--tls-ca, --tls-cert and --tls-key"), "{msg}");
    }

    #[tokio::test]
    async fn unreadable_tls_file_names_the_file() {
        let ep = parse("https://127.0.0.1:1").unwrap();
        let files = TlsFiles {
            ca: scratch_path("no-ca.pem"),
            cert: scratch_path("no-cert.pem"),
            key: scratch_path("no-key.pem"),
        };
        let err = connect(&ep, Some(&files)).await.unwrap_err();
        assert!(
            matches!(err, ClientError::ReadTls { what: "CA", .. }),
            "{err:?}"
        );
    }
}
