//! The HTTP side of the port: reading the request head, routing it (`GET /health`, the
//! WebSocket upgrade on `/ws/jsonrpc`), the bearer-token check, and the few plain
//! responses the server ever writes.
//!
//! The head is read by hand (bounded in size and time) rather than by tungstenite's
//! handshake, because the same port must also answer `/health` and refuse bad tokens
//! with a proper HTTP status before anything WebSocket starts.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The WebSocket endpoint.
pub const WS_PATH: &str = "/ws/jsonrpc";
/// The health endpoint.
pub const HEALTH_PATH: &str = "/health";
/// Most headers parsed in a request head.
const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    /// Names lowercased.
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("the request head is larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    #[error("the connection closed before the request head ended")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads a request head of at most `max` bytes; also returns the bytes read past it
/// (a client may send its first frame right behind the upgrade request).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, max: usize) -> Result<(Head, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let searched = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = searched + end + 4;
            if end > max {
                return Err(HeadError::TooLarge(max));
            }
            let head = parse_head(&buf[..end])?;
            return Ok((head, buf.split_off(end)));
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge(max));
        }
    }
}

fn parse_head(bytes: &[u8]) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed("incomplete head".into())),
        Err(error) => return Err(HeadError::Malformed(error.to_string())),
    }
    let target = request.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    Ok(Head {
        method: request.method.unwrap_or("").to_owned(),
        path,
        query,
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_owned()))
            .collect(),
    })
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Answer `GET /health`.
    Health,
    /// Switch to WebSocket; `accept` is the `Sec-WebSocket-Accept` value.
    Upgrade { accept: String },
    /// Refuse with a status and a plain-text reason.
    Refuse { status: u16, reason: String },
}

/// Routes a head. `token`, when set, must come with the upgrade request.
pub(crate) fn route(head: &Head, token: Option<&str>) -> Route {
    let refuse = |status: u16, reason: &str| Route::Refuse { status, reason: reason.to_owned() };
    match head.path.as_str() {
        HEALTH_PATH if head.method == "GET" || head.method == "HEAD" => Route::Health,
        HEALTH_PATH => refuse(405, "use GET /health"),
        WS_PATH => {
            if let Some(token) = token {
                if !presents_token(head, token) {
                    return refuse(
                        401,
                        "a valid token is required: send \"Authorization: Bearer TOKEN\" or ?token=TOKEN",
                    );
                }
            }
            if head.method != "GET" {
                return refuse(405, "the WebSocket upgrade must be a GET request");
            }
            let key = head.header("sec-websocket-key");
            let upgrade =
                head.header_has_token("upgrade", "websocket") && head.header_has_token("connection", "upgrade");
            match key {
                Some(key) if upgrade && head.header("sec-websocket-version") == Some("13") => {
                    Route::Upgrade { accept: derive_accept_key(key.as_bytes()) }
                }
                _ => refuse(426, "this endpoint speaks WebSocket (version 13) only"),
            }
        }
        _ => refuse(404, "not found: the endpoints are GET /health and the WebSocket /ws/jsonrpc"),
    }
}

/// Whether the request carries `token` in an `Authorization: Bearer` header or a `token`
/// query parameter.
fn presents_token(head: &Head, token: &str) -> bool {
    let from_header = head.headers.iter().filter(|(n, _)| n == "authorization").filter_map(|(_, value)| {
        let (scheme, credentials) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
    });
    let from_query = head.query.iter().flat_map(|q| q.split('&')).filter_map(|pair| pair.strip_prefix("token="));
    from_header.chain(from_query).any(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// Compares secrets in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes the `101 Switching Protocols` answer to an upgrade.
pub(crate) async fn write_upgrade<S: AsyncWrite + Unpin>(stream: &mut S, accept: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

/// Writes a complete response and asks the client to close the connection.
pub(crate) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    body: &str,
    include_body: bool,
) -> io::Result<()> {
    let extra = if status == 401 { "WWW-Authenticate: Bearer\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if include_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap()
    }

    const UPGRADE: &str = "GET /ws/jsonrpc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn upgrade_uses_the_rfc_accept_key() {
        let route = route(&head(&format!("{UPGRADE}\r\n")), None);
        assert_eq!(route, Route::Upgrade { accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into() });
    }

    #[test]
    fn token_is_required_in_header_or_query() {
        let refused = route(&head(&format!("{UPGRADE}\r\n")), Some("s3cret"));
        assert!(matches!(refused, Route::Refuse { status: 401, .. }), "{refused:?}");
        let wrong = route(&head(&format!("{UPGRADE}Authorization: Bearer nope\r\n\r\n")), Some("s3cret"));
        assert!(matches!(wrong, Route::Refuse { status: 401, .. }));
        let header = route(&head(&format!("{UPGRADE}Authorization: bearer s3cret\r\n\r\n")), Some("s3cret"));
        assert!(matches!(header, Route::Upgrade { .. }), "{header:?}");
        let query = head(&format!("{}\r\n", UPGRADE.replace("/ws/jsonrpc", "/ws/jsonrpc?a=1&token=s3cret")));
        assert!(matches!(route(&query, Some("s3cret")), Route::Upgrade { .. }));
    }

    #[test]
    fn other_requests_are_routed_or_refused() {
        assert_eq!(route(&head("GET /health HTTP/1.1\r\n\r\n"), Some("t")), Route::Health);
        assert!(matches!(route(&head("GET /ws/jsonrpc HTTP/1.1\r\n\r\n"), None), Route::Refuse { status: 426, .. }));
        assert!(matches!(route(&head("GET /nope HTTP/1.1\r\n\r\n"), None), Route::Refuse { status: 404, .. }));
        assert!(matches!(route(&head("POST /health HTTP/1.1\r\n\r\n"), None), Route::Refuse { status: 405, .. }));
    }

    #[tokio::test]
    async fn heads_are_bounded_and_leftovers_kept() {
        let mut input: &[u8] = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\nEXTRA";
        let (head, rest) = read_head(&mut input, 1024).await.unwrap();
        assert_eq!((head.path.as_str(), rest.as_slice()), ("/health", &b"EXTRA"[..]));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(5000));
        assert!(matches!(read_head(&mut big.as_bytes(), 1024).await, Err(HeadError::TooLarge(1024))));
        assert!(matches!(read_head(&mut &b"GARBAGE\r\n\r\n"[..], 1024).await, Err(HeadError::Malformed(_))));
    }
}
