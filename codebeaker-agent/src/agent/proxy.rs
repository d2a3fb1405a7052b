//! The egress proxy on the container's loopback: programs reach the network only through
//! it (`HTTP_PROXY`/`HTTPS_PROXY` point here), and each connection they ask for (a
//! `CONNECT host:port`, or a plain HTTP request with an absolute URL) is carried to the
//! host as a tunnel. The host alone decides and connects; the agent never opens a
//! connection itself. A refusal becomes `403` with the host's message as the body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use crate::agent::Outbox;
use crate::protocol::{AgentMessage, Frame, FrameKind, TunnelOpen, TunnelReply, AGENT_ID_BIT, MAX_DATA_CHUNK};

/// Largest request head (request line and headers) the proxy reads.
const MAX_HEAD: usize = 16 * 1024;

/// Proxy connections open at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;

/// What the host sends about one tunnel.
#[derive(Debug)]
pub(crate) enum TunnelEvent {
    /// Its verdict.
    Reply(TunnelReply),
    /// Bytes from the destination; `true` when it half-closed.
    Data(Vec<u8>, bool),
    /// It closed the tunnel.
    Close(Option<String>),
}

/// The open tunnels, by id, and how long a decision on one may take.
pub(crate) struct Tunnels {
    next: AtomicU64,
    open: Mutex<HashMap<u64, mpsc::UnboundedSender<TunnelEvent>>>,
    /// How long the host may take to decide on a tunnel, and a client to send its head,
    /// in ms: the host's `tunnel_decision_ms` of its hello.
    decision_ms: AtomicU64,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            next: AtomicU64::new(0),
            open: Mutex::default(),
            decision_ms: AtomicU64::new(codebeaker::policy::DEFAULT_TUNNEL_DECISION_MS),
        }
    }
}

impl Tunnels {
    /// Sets how long a decision may take (from the host's hello).
    pub(crate) fn set_decision_timeout(&self, timeout: Duration) {
        self.decision_ms.store(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn decision_timeout(&self) -> Duration {
        Duration::from_millis(self.decision_ms.load(Ordering::Relaxed))
    }

    fn open(&self) -> (u64, mpsc::UnboundedReceiver<TunnelEvent>) {
        let id = AGENT_ID_BIT | (self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = mpsc::unbounded_channel();
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
        (id, rx)
    }

    fn forget(&self, id: u64) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// Hands an event from the host to its tunnel (dropped when the tunnel is gone).
    pub(crate) fn route(&self, id: u64, event: TunnelEvent) {
        if let Some(tx) = self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&id) {
            let _ = tx.send(event);
        }
    }
}

/// The environment that points programs at the proxy.
pub(crate) fn proxy_env(addr: SocketAddr) -> Vec<(String, String)> {
    let url = format!("http://{addr}");
    let mut env = Vec::new();
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy", "npm_config_https_proxy"]
    {
        env.push((key.to_owned(), url.clone()));
    }
    for key in ["NO_PROXY", "no_proxy"] {
        env.push((key.to_owned(), "localhost,127.0.0.1,::1".to_owned()));
    }
    env
}

/// Accepts proxy connections until the agent ends.
pub(crate) async fn serve(listener: TcpListener, tunnels: Arc<Tunnels>, out: Outbox) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Ok((conn, _)) = listener.accept().await else { continue };
        let (tunnels, out) = (tunnels.clone(), out.clone());
        tokio::spawn(async move {
            handle(conn, &tunnels, &out).await;
            drop(slot);
        });
    }
}

/// What a program asked for.
struct Ask {
    host: String,
    port: u16,
    /// For plain HTTP: the request rewritten for the destination (and any body bytes).
    preamble: Option<Vec<u8>>,
}

async fn handle(mut conn: TcpStream, tunnels: &Tunnels, out: &Outbox) {
    let ask = match tokio::time::timeout(tunnels.decision_timeout(), read_ask(&mut conn)).await {
        Ok(Ok(ask)) => ask,
        Ok(Err(message)) => return answer(&mut conn, "400 Bad Request", &message).await,
        Err(_) => return answer(&mut conn, "408 Request Timeout", "no request head arrived in time").await,
    };
    let (id, mut events) = tunnels.open();
    let open = AgentMessage::TunnelOpen(TunnelOpen { host: ask.host.clone(), port: ask.port });
    let Ok(frame) = Frame::message(id, &open) else { return tunnels.forget(id) };
    if out.send(frame).await.is_err() {
        return tunnels.forget(id);
    }
    let verdict = tokio::time::timeout(tunnels.decision_timeout(), async {
        loop {
            match events.recv().await {
                Some(TunnelEvent::Reply(reply)) => return Some(reply),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    let target = format!("{}:{}", ask.host, ask.port);
    match verdict {
        Ok(Some(TunnelReply { accepted: true, .. })) => {}
        Ok(Some(TunnelReply { message, .. })) => {
            tunnels.forget(id);
            let message = message.unwrap_or_else(|| format!("egress to {target} is not allowed by policy"));
            return answer(&mut conn, "403 Forbidden", &message).await;
        }
        Ok(None) | Err(_) => {
            tunnels.forget(id);
            return answer(&mut conn, "504 Gateway Timeout", &format!("the host did not answer for {target}")).await;
        }
    }
    let reason = match ask.preamble {
        None => match conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await {
            Ok(()) => relay(&mut conn, id, &mut events, out).await,
            Err(_) => Some("the program went away".to_owned()),
        },
        Some(preamble) => match out.send(Frame::data(FrameKind::TunnelData, id, preamble, false)).await {
            Ok(()) => relay(&mut conn, id, &mut events, out).await,
            Err(_) => None,
        },
    };
    tunnels.forget(id);
    if let Ok(frame) = Frame::message(id, &AgentMessage::TunnelClose { reason }) {
        let _ = out.send(frame).await;
    }
}

/// Moves bytes both ways until both ends finished or the host closed; the reason the
/// agent ended it, if it did.
async fn relay(
    conn: &mut TcpStream,
    id: u64,
    events: &mut mpsc::UnboundedReceiver<TunnelEvent>,
    out: &Outbox,
) -> Option<String> {
    let (mut read, mut write) = conn.split();
    let mut buffer = vec![0u8; MAX_DATA_CHUNK];
    let (mut program_open, mut host_open) = (true, true);
    while program_open || host_open {
        tokio::select! {
            n = read.read(&mut buffer), if program_open => {
                let n = n.unwrap_or(0);
                program_open = n > 0;
                let frame = Frame::data(FrameKind::TunnelData, id, buffer[..n].to_vec(), n == 0);
                if out.send(frame).await.is_err() {
                    return None;
                }
            }
            event = events.recv(), if host_open => match event {
                Some(TunnelEvent::Data(bytes, end)) => {
                    if write.write_all(&bytes).await.is_err() {
                        return Some("the program closed the connection".to_owned());
                    }
                    if end {
                        host_open = false;
                        let _ = write.shutdown().await;
                    }
                }
                Some(TunnelEvent::Close(reason)) => {
                    tracing::debug!(id, ?reason, "the host closed a tunnel");
                    return None;
                }
                None => return None,
                Some(TunnelEvent::Reply(_)) => {}
            },
        }
    }
    None
}

async fn answer(conn: &mut TcpStream, status: &str, message: &str) {
    let body = format!("{message}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Reads the request head and says where it goes.
async fn read_ask(conn: &mut TcpStream) -> Result<Ask, String> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > MAX_HEAD {
            return Err(format!("request head larger than {MAX_HEAD} bytes"));
        }
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before a request head".to_owned());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let body = head.split_off(end);
    let text = String::from_utf8(head).map_err(|_| "the request head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed request line: {request_line}"));
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = authority(target, None)?;
        return Ok(Ask { host, port, preamble: None });
    }
    let Some(rest) = target.strip_prefix("http://") else {
        return Err("this proxy takes CONNECT host:port and absolute http:// URLs".to_owned());
    };
    let (authority_part, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = authority(authority_part, Some(80))?;
    let mut rewritten = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(name.as_str(), "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    // One destination per proxy connection: the tunnel ends with this exchange.
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut preamble = rewritten.into_bytes();
    preamble.extend_from_slice(&body);
    Ok(Ask { host, port, preamble: Some(preamble) })
}

/// `host:port` (or `[v6]:port`); `default` when the port is absent.
fn authority(text: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let invalid = || format!("invalid destination {text:?}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(port) => port.parse::<u16>().map_err(|_| invalid())?,
        None => default.ok_or_else(invalid)?,
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !valid || port == 0 {
        return Err(invalid());
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn destinations_are_parsed_strictly() {
        assert_eq!(authority("PyPI.org:443", None), Ok(("pypi.org".to_owned(), 443)));
        assert_eq!(authority("[::1]:8080", None), Ok(("::1".to_owned(), 8080)));
        assert_eq!(authority("example.org", Some(80)), Ok(("example.org".to_owned(), 80)));
        for bad in ["example.org", ":443", "a b:1", "host:0", "host:99999", "h/x:1"] {
            assert!(authority(bad, None).is_err(), "{bad}");
        }
    }
}
