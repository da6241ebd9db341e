//! The container-credentials endpoint: what AWS SDKs call when a task's
//! environment has `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
//!
//! A deliberately small HTTP/1.1 responder on 127.0.0.1 (SDKs accept plain
//! http only to loopback): one `GET /v1/credentials/<task_id>` per
//! connection, request line and headers at most 8 KiB, read within 5
//! seconds, at most 256 connections at once. It answers 200 with
//! `{"AccessKeyId","SecretAccessKey","Token","Expiration"}` only when
//!
//! 1. the path names a live task,
//! 2. the `Authorization` header equals that task's token (compared in
//!    constant time): the token is the secret, readable only by the task's
//!    uid (file 0400 in its 0700 scratch dir), and
//! 3. the connecting socket belongs to that task's uid. TCP has no
//!    `SO_PEERCRED`, but the kernel records each socket's owner: the
//!    client's socket is found in `/proc/net/tcp` by its address and port
//!    and its uid compared. So a token that leaked to another tenant is
//!    still refused to it; only the task's own uid (and root) can use it.
//!
//! Anything else gets 403, or 400 when the request is not a `GET` of a
//! task's path with one `Authorization` header, without detail. Tasks share the host's network namespace in
//! `host` mode, so `/proc/net/tcp` of airlockd's namespace shows their
//! sockets.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::supervisor::Supervisor;

/// Largest request head read.
pub const MAX_REQUEST_BYTES: usize = 8 << 10;
/// Most connections served at once.
const MAX_CONNECTIONS: usize = 256;
/// Time a client gets to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The path prefix; the task id follows.
pub const PATH_PREFIX: &str = "/v1/credentials/";

/// Serves the endpoint until airlockd shuts down.
pub async fn serve(sup: Arc<Supervisor>, listener: std::net::TcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(err) => {
            tracing::error!(?err, "cannot serve the credentials endpoint");
            return;
        }
    };
    let local = listener.local_addr().ok();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = sup.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(err) => {
                tracing::warn!(?err, "credentials endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream); // over the bound: refuse rather than queue
            continue;
        };
        let sup = sup.clone();
        tokio::spawn(async move {
            answer(&sup, stream, peer, local).await;
            drop(permit);
        });
    }
}

async fn answer(
    sup: &Supervisor,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return respond(&mut stream, 400, b"").await,
    };
    let Some(req) = parse_request(&head) else {
        return respond(&mut stream, 400, b"").await;
    };
    let Some(creds) = &sup.credentials else {
        return respond(&mut stream, 404, b"").await;
    };
    let peer_uid = match (peer, local) {
        (SocketAddr::V4(peer), Some(SocketAddr::V4(local))) => socket_uid(peer, local),
        _ => None,
    };
    let Some(entry) = creds.authorize(req.task_id, req.authorization, peer_uid) else {
        tracing::warn!(task_id = %req.task_id, ?peer_uid, "credentials request refused");
        return respond(&mut stream, 403, b"").await;
    };
    match creds.broker.container_json(&sup.audit, &entry).await {
        Ok(body) => respond(&mut stream, 200, body.as_bytes()).await,
        Err(err) => {
            tracing::error!(task_id = %req.task_id, %err, "cannot serve credentials");
            respond(&mut stream, 503, b"").await
        }
    }
}

/// Reads until the blank line ending the headers, at most
/// [`MAX_REQUEST_BYTES`]; `None` if it is longer or the peer closes first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            buf.truncate(end);
            return Some(buf);
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a request the endpoint looks at.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    task_id: &'a str,
    authorization: &'a [u8],
}

/// `GET /v1/credentials/<task_id> HTTP/1.x` with an `Authorization`
/// header; anything else is `None`.
fn parse_request(head: &[u8]) -> Option<Request<'_>> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method != "GET" || !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let task_id = target.strip_prefix(PATH_PREFIX)?;
    let task_id_ok = (1..=64).contains(&task_id.len())
        && task_id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
    if !task_id_ok {
        return None;
    }
    let mut authorization = None;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"authorization") {
            if authorization.is_some() {
                return None; // two tokens: refuse rather than pick one
            }
            authorization = Some(line[colon + 1..].trim_ascii());
        }
    }
    Some(Request {
        task_id,
        authorization: authorization?,
    })
}

async fn respond(stream: &mut TcpStream, status: u16, body: &[u8]) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // Failure means the client left; nothing to do.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// The owner uid of the loopback TCP socket at `peer` connected to
/// `local`. Asked of the kernel by its four addresses (sock_diag(7), one
/// hash lookup); if that fails, found in `/proc/net/tcp`, which costs ~2 ms
/// (reading it walks the whole TCP hash table). Either as an IPv4 socket or
/// as a dual-stack one, whose addresses are IPv4-mapped
/// (`::ffff:127.0.0.1`).
fn socket_uid(peer: SocketAddrV4, local: SocketAddrV4) -> Option<u32> {
    [false, true]
        .into_iter()
        .find_map(|v6| diag_uid(peer, local, v6).ok().flatten())
        .or_else(|| proc_uid(peer, local))
}

/// sock_diag's exact lookup (`SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`):
/// `Ok(None)` when there is no such socket.
fn diag_uid(peer: SocketAddrV4, local: SocketAddrV4, v6: bool) -> nix::Result<Option<u32>> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    let addr = |a: &SocketAddrV4| -> [u8; 16] {
        let mut out = [0u8; 16];
        if v6 {
            out[10] = 0xff;
            out[11] = 0xff;
            out[12..].copy_from_slice(&a.ip().octets());
        } else {
            out[..4].copy_from_slice(&a.ip().octets());
        }
        out
    };
    let mut req = Vec::with_capacity(72);
    req.extend(72u32.to_ne_bytes()); // nlmsghdr: length
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend(NLM_F_REQUEST.to_ne_bytes());
    req.extend([0u8; 8]); // sequence, port id
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    req.extend([family, libc::IPPROTO_TCP as u8, 0, 0]); // inet_diag_req_v2
    req.extend(u32::MAX.to_ne_bytes()); // every state
    req.extend(peer.port().to_be_bytes()); // inet_diag_sockid: source port
    req.extend(local.port().to_be_bytes());
    req.extend(addr(&peer));
    req.extend(addr(&local));
    req.extend(0u32.to_ne_bytes()); // any interface
    req.extend([0xffu8; 8]); // INET_DIAG_NOCOOKIE
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = [0u8; 512];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    // nlmsghdr (16) + inet_diag_msg: family, state, timer, retrans (4),
    // sockid (48), expires, rqueue, wqueue (12), then the uid.
    if kind == NLMSG_ERROR || n < 84 {
        return Ok(None);
    }
    Ok(Some(u32::from_ne_bytes([
        buf[80], buf[81], buf[82], buf[83],
    ])))
}

/// The same from `/proc/net/tcp` (columns: sl, local, remote, st, ...,
/// uid at index 7; addresses are hex `IP:PORT`, each 32-bit word of the IP
/// in host byte order), or `/proc/net/tcp6`.
fn proc_uid(peer: SocketAddrV4, local: SocketAddrV4) -> Option<u32> {
    [("/proc/net/tcp", false), ("/proc/net/tcp6", true)]
        .into_iter()
        .find_map(|(path, v6)| {
            let table = std::fs::read_to_string(path).ok()?;
            find_socket_uid(&table, peer, local, v6)
        })
}

fn find_socket_uid(table: &str, peer: SocketAddrV4, local: SocketAddrV4, v6: bool) -> Option<u32> {
    let hex = |a: SocketAddrV4| {
        let ip = format!("{:08X}", u32::from_ne_bytes(a.ip().octets()));
        let mapped = format!(
            "0000000000000000{:08X}{ip}",
            u32::from_ne_bytes([0, 0, 0xff, 0xff])
        );
        format!("{}:{:04X}", if v6 { mapped } else { ip }, a.port())
    };
    let (want_local, want_remote) = (hex(peer), hex(local));
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(1) == Some(&want_local.as_str()) && cols.get(2) == Some(&want_remote.as_str()))
            .then(|| cols.get(7)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn only_get_of_a_task_path_with_a_token_parses() {
        let ok =
            b"GET /v1/credentials/t-1 HTTP/1.1\r\nHost: x\r\nauthorization:  abc \r\nUser-Agent: y";
        assert_eq!(
            parse_request(ok),
            Some(Request {
                task_id: "t-1",
                authorization: b"abc"
            })
        );
        for bad in [
            &b"POST /v1/credentials/t-1 HTTP/1.1\r\nAuthorization: abc"[..],
            b"GET /v1/credentials/t-1 HTTP/1.1\r\nHost: x",
            b"GET /v1/credentials/../x HTTP/1.1\r\nAuthorization: abc",
            b"GET /v1/credentials/ HTTP/1.1\r\nAuthorization: abc",
            b"GET /other HTTP/1.1\r\nAuthorization: abc",
            b"GET /v1/credentials/t-1 HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b",
        ] {
            assert_eq!(parse_request(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn sock_diag_finds_the_owner_of_a_live_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let (SocketAddr::V4(peer), SocketAddr::V4(local)) =
            (client.local_addr().unwrap(), client.peer_addr().unwrap())
        else {
            panic!("IPv4 loopback");
        };
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(diag_uid(peer, local, false).unwrap(), Some(me));
        assert_eq!(socket_uid(peer, local), Some(me));
        assert_eq!(proc_uid(peer, local), Some(me), "both ways agree");
        let gone = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        assert_eq!(diag_uid(gone, local, false).unwrap(), None);
    }

    #[test]
    fn socket_owner_is_found_by_both_ends() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 300017        0 1 1 0000000000000000 20 4 30 10 -1\n   1: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1\n";
        let peer = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0xA000);
        let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0x1F90);
        assert_eq!(find_socket_uid(table, peer, local, false), Some(300017));
        assert_eq!(find_socket_uid(table, local, peer, false), Some(0));
        let other = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0xA001);
        assert_eq!(find_socket_uid(table, other, local, false), None);
        let table6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0000000000000000FFFF00000100007F:A000 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000 300018        0 1 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(find_socket_uid(table6, peer, local, true), Some(300018));
    }
}
