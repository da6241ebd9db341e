//! Who may drive airlockd: the Unix socket is root's (0660), TCP needs a
//! client certificate of the configured CA, plaintext TCP only on loopback.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use airlock_executor::client::{connect, Endpoint, TlsFiles};
use airlock_protocol::v1::airlock_client::AirlockClient;
use airlock_protocol::v1::ListTasksRequest;
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::harness::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (v3:
/// webpki refuses v1 certificates).
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=airlock-test-ca",
            "-days",
            "2",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

#[tokio::test]
async fn tcp_requires_a_client_certificate() {
    if !privileged() {
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let d = Daemon::start(Opts {
        tcp_listen: true,
        tls_dir: Some(pki.path().into()),
        ..Opts::default()
    });
    let uri = format!("https://127.0.0.1:{}", d.tcp_port.unwrap());

    let files = TlsFiles {
        ca: pki.path().join("ca.pem"),
        cert: pki.path().join("client.pem"),
        key: pki.path().join("client.key"),
    };
    let channel = connect(&Endpoint::Https { uri: uri.clone() }, Some(&files))
        .await
        .unwrap();
    AirlockClient::new(channel.clone())
        .list_tasks(ListTasksRequest::default())
        .await
        .expect("a client with a certificate is served");
    // Its tasks' admissions name it by its certificate's SHA-256.
    let mut stream = AirlockClient::new(channel)
        .run_task(python("alice", "print(1)"))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
    openssl(
        pki.path(),
        &[
            "x509",
            "-in",
            "client.pem",
            "-outform",
            "DER",
            "-out",
            "client.der",
        ],
    );
    let digest = Command::new("sha256sum")
        .arg(pki.path().join("client.der"))
        .output()
        .unwrap();
    let digest = String::from_utf8_lossy(&digest.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let admission = d
        .audit()
        .into_iter()
        .find(|r| r["event"] == "admission")
        .unwrap();
    assert_eq!(
        admission["driver_cert_sha256"],
        digest.as_str(),
        "{admission}"
    );

    let ca = Certificate::from_pem(std::fs::read(pki.path().join("ca.pem")).unwrap());
    let anonymous = tonic::transport::Endpoint::from_shared(uri)
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(ca))
        .unwrap();
    let refused = match anonymous.connect().await {
        Ok(channel) => AirlockClient::new(channel)
            .list_tasks(ListTasksRequest::default())
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate was served");

    // A peer that connects and never starts its handshake is cut off (10 s
    // here), instead of holding a descriptor of airlockd's for ever.
    use tokio::io::AsyncReadExt;
    let mut quiet = tokio::net::TcpStream::connect(("127.0.0.1", d.tcp_port.unwrap()))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(20), quiet.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a connection that never sent a TLS hello was kept: {read:?}"
    );
}

#[tokio::test]
async fn unix_socket_is_root_only_and_plaintext_tcp_is_loopback_only() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);

    let out = Command::new(bin_dir().join("airlockd"))
        .arg("--config")
        .arg(&d.config)
        .args(["--listen", "tcp:0.0.0.0:1", "--insecure-loopback"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only loopback"), "{err}");

    let out = Command::new(bin_dir().join("airlockd"))
        .arg("--config")
        .arg(&d.config)
        .args(["--listen", "tcp:127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mTLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A socket in a directory another user could write is refused (they
    // could put their own socket in its place), and a file at the socket's
    // path that is not a socket is left alone.
    let mut d = d;
    d.crash();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = d.dir.path().join("not-a-socket");
    std::fs::write(&file, "keep").unwrap();
    // And a policy file that another user could rewrite is refused.
    let writable = d.dir.path().join("writable-policy.toml");
    std::fs::copy(&d.config, &writable).unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let socket = d.dir.path().join("other.sock");
    for (config, listen, why) in [
        (&d.config, open.path().join("airlockd.sock"), "is not safe"),
        (&d.config, file.clone(), "is not a socket"),
        (&writable, socket, "the policy file"),
    ] {
        let err = airlockd_refuses(config, &listen).await;
        assert!(err.contains(why), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
}

#[tokio::test]
async fn health_and_reflection_are_served_for_generic_clients() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let channel = connect(&Endpoint::Unix(d.socket.clone()), None)
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "airlock.v1.Airlock".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"airlock.v1.Airlock"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}
