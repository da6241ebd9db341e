//! The container-credentials endpoint: what AWS SDKs call when a task's
//! environment has `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
//!
//! A deliberately small HTTP/1.1 responder on 169.254.170.2 (SDKs accept
//! plain http only to loopback and to that address, which ECS uses; a
//! task's loopback is its own), reached by tasks on the network through
//! their namespace's route to the worker ([`crate::netns::host`]): one
//! `GET /v1/credentials/<task_id>` per connection, request line and headers
//! at most 8 KiB, read within 2 seconds, at most 8 connections of one task
//! at once ([`MAX_PER_TASK`]) and no bound on all of them together, which
//! the tasks of one user could fill to keep every other task's SDK out:
//! the live tasks bound them (8 each). A connection from an address that
//! is no live task's is closed unread.
//! It answers 200 with `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`
//! only when
//!
//! 1. the path names a live task,
//! 2. the `Authorization` header equals that task's token (compared in
//!    constant time): the token is the secret, readable only by the task's
//!    uid (file 0400 in its 0700 scratch dir), and
//! 3. the connection comes from the task's own address. Every task on the
//!    network has a network namespace of its own, with one address that it
//!    cannot change (no capability) and cannot forge (no raw sockets; the
//!    kernel does not route from a foreign address bound with
//!    `IP_FREEBIND`; and a forged TCP handshake's answer would go to the
//!    address's owner). So a token that leaked to another tenant is still refused
//!    to it: only the task's own processes can use it.
//!
//! Anything else gets 403, or 400 when the request is not a `GET` of a
//! task's path with one `Authorization` header, without detail.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::supervisor::Supervisor;

/// Largest request head read.
pub const MAX_REQUEST_BYTES: usize = 8 << 10;
/// Most connections of one task served at once: no task can take the
/// others' slots. (Connections from anything but a live task's address are
/// closed at once, unread.)
pub const MAX_PER_TASK: usize = 8;
/// Time a client gets to send its request (SDKs send it at once).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
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
    let per_task: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let refusals = Arc::new(RefusalLog::default());
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
        let ip = peer.ip();
        let is_task = sup.credentials.as_ref().is_some_and(|c| c.is_task_addr(ip));
        if !is_task || !take_slot(&per_task, ip) {
            drop(stream); // not a task, or over its bound: refuse, unread
            continue;
        }
        let (sup, per_task, refusals) = (sup.clone(), per_task.clone(), refusals.clone());
        tokio::spawn(async move {
            answer(&sup, stream, peer, &refusals).await;
            give_slot(&per_task, ip);
        });
    }
}

/// Counts a connection of `ip`; false when it already has
/// [`MAX_PER_TASK`].
fn take_slot(per_task: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr) -> bool {
    let mut map = per_task.lock().unwrap_or_else(|p| p.into_inner());
    let n = map.entry(ip).or_insert(0);
    if *n >= MAX_PER_TASK {
        return false;
    }
    *n += 1;
    true
}

fn give_slot(per_task: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr) {
    let mut map = per_task.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

/// Logs refused requests at most once a second, with how many were not
/// logged: a task cannot flood airlockd's log with them.
#[derive(Default)]
struct RefusalLog {
    last_s: AtomicU64,
    unlogged: AtomicU64,
}

impl RefusalLog {
    fn refused(&self, task_id: &str, peer: IpAddr) {
        let now = crate::now_ms() / 1000;
        if self.last_s.swap(now, Ordering::Relaxed) == now {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(task_id, %peer, unlogged, "credentials request refused");
    }
}

async fn answer(sup: &Supervisor, mut stream: TcpStream, peer: SocketAddr, refusals: &RefusalLog) {
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
    let Some(entry) = creds.authorize(req.task_id, req.authorization, peer.ip()) else {
        refusals.refused(req.task_id, peer.ip());
        return respond(&mut stream, 403, b"").await;
    };
    match creds.broker.container_json(&sup.audit, &entry).await {
        Ok(body) => respond(&mut stream, 200, body.as_bytes()).await,
        // Authorised just before its task ended.
        Err(super::CredentialError::Released) => respond(&mut stream, 403, b"").await,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
