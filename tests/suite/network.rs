//! TCP connect is limited to the policy's ports; tasks without network have
//! none; socket families are restricted.

use std::net::TcpListener;

use crate::harness::*;

const NET_ATTACKS: &str = r#"
import json, socket, sys
def connect(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.close()
        return "connected"
    except Exception as e:
        return type(e).__name__
def bind():
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        return "bound"
    except Exception as e:
        return type(e).__name__
def family_proto(f, t, p):
    try:
        socket.socket(f, t, p).close()
        return "ok"
    except Exception as e:
        return type(e).__name__
def family(f, t):
    try:
        socket.socket(f, t).close()
        return "ok"
    except Exception as e:
        return type(e).__name__
def mptcp(port):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        return "connected"
    except Exception as e:
        return type(e).__name__
def fastopen(port):
    try:
        s = socket.socket()
        s.settimeout(5)
        s.sendto(b"x", 0x20000000, ("127.0.0.1", port))
        s.recv(1)
        return "connected"
    except Exception as e:
        return type(e).__name__
allowed, other, api = (int(a) for a in sys.argv[1:4])
print(json.dumps({
  "allowed_port": connect(allowed), "other_port": connect(other), "supervisor_api": connect(api),
  "bind": bind(),
  "mptcp_other_port": mptcp(other), "fastopen_other_port": fastopen(other),
  "sctp": family_proto(socket.AF_INET, socket.SOCK_STREAM, 132),
  "netlink": family(socket.AF_NETLINK, socket.SOCK_RAW),
  "packet": family(socket.AF_PACKET, socket.SOCK_RAW),
}))
"#;

fn net_attack(d: &Daemon, allowed: u16, other: u16) -> airlock_protocol::v1::RunTaskRequest {
    let mut req = python("alice", NET_ATTACKS);
    req.args.extend([
        allowed.to_string(),
        other.to_string(),
        d.tcp_port.unwrap_or(1).to_string(),
    ]);
    req
}

#[tokio::test]
async fn tcp_connect_only_to_policy_ports() {
    if !privileged() {
        return;
    }
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let d = Daemon::start(Opts {
        connect_tcp: vec![allowed_port],
        tcp_listen: true,
        ..Opts::default()
    });
    let v = d
        .run(net_attack(
            &d,
            allowed_port,
            other.local_addr().unwrap().port(),
        ))
        .await
        .json();
    assert_eq!(
        v["allowed_port"], "connected",
        "positive control: the listed port works"
    );
    assert_eq!(
        v["other_port"], "PermissionError",
        "Landlock denies unlisted ports"
    );
    assert_eq!(
        v["supervisor_api"], "PermissionError",
        "the supervisor's API is out of reach"
    );
    assert_eq!(v["bind"], "PermissionError", "tasks cannot listen on TCP");
    // Landlock's TCP rules do not cover MPTCP or TCP Fast Open; seccomp
    // refuses both (found by the red-team review: both reached port 80).
    assert_eq!(
        v["mptcp_other_port"], "PermissionError",
        "MPTCP must not reach an unlisted port"
    );
    assert_eq!(
        v["fastopen_other_port"], "PermissionError",
        "TCP Fast Open must not reach an unlisted port"
    );
    assert_eq!(v["sctp"], "PermissionError");
    assert_eq!(
        v["netlink"], "OSError",
        "seccomp allows only unix and inet sockets"
    );
    assert_eq!(v["packet"], "OSError");
}

#[tokio::test]
async fn task_without_network_reaches_nothing() {
    if !privileged() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let d = Daemon::start(Opts {
        network: "none",
        ..Opts::default()
    });
    let out = d.run(net_attack(&d, port, port)).await;
    let v = out.json();
    assert_ne!(v["allowed_port"], "connected");
    assert!(out
        .started
        .as_ref()
        .unwrap()
        .layers
        .iter()
        .any(|l| l == "net-ns"));
    assert_eq!(v["netlink"], "OSError");
    let ifaces = d
        .python(
            "alice",
            "import json; print(json.dumps(sorted(l.split(':')[0].strip() for l in open('/proc/self/net/dev').readlines()[2:])))",
        )
        .await
        .json();
    assert_eq!(
        ifaces,
        serde_json::json!(["lo"]),
        "only the empty namespace's loopback"
    );
}
