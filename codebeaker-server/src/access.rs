//! Who may use the server's acting endpoints: the `Host` check, the browser `Origin`
//! check and token authentication with tenants, as one axum middleware ([`guard`]) that
//! every such endpoint is wrapped in (`/ws/jsonrpc`, `/mcp`, `/metrics`). A request that
//! passes lets its socket in: it is no longer pending (see the `pending` module).
//!
//! Security decisions:
//! - DNS rebinding: a web page can point its own host name at 127.0.0.1 and then read
//!   plain HTTP answers of a loopback server as same-origin, without any `Origin`
//!   header. So the HTTP endpoints of a server listening on loopback (`/mcp`,
//!   `/metrics`: [`HostCheck::Loopback`]) answer only requests whose `Host` is
//!   `localhost`, `127.0.0.1` or `[::1]` (any port), and refuse others with 403. A
//!   server deployed beyond loopback is reached by names only the operator knows, and
//!   relies on tokens. (The WebSocket needs no such check: browsers always send `Origin`
//!   with an upgrade.)
//! - A browser always sends `Origin` with a WebSocket upgrade or a cross-site request, and
//!   a page cannot forge it. A request whose `Origin` is present and not listed in
//!   `--allowed-origins` is refused with 403, so a web page the operator merely visits
//!   cannot drive a local server. Clients without `Origin` (SDKs, agents, curl) are not
//!   browsers and are unaffected.
//! - Tokens come from `Authorization: Bearer` or a percent-decoded `?token=` query
//!   parameter, and are compared in time that does not depend on where they differ.
//!   Every configured key is compared, so the time does not tell which tenant matched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::debug;

use crate::api::Caller;
use crate::metrics::RefusalKind;
use crate::pending::PendingSocket;

/// The tenants' tokens: from `--api-keys FILE` (one `tenant token` per line) and/or the
/// single-tenant `--token`.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

#[derive(Clone)]
struct ApiKey {
    /// `None`: the single-tenant `--token`, which acts as the operator (sees every
    /// session).
    tenant: Option<String>,
    token: Vec<u8>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        let tenants: Vec<&str> = self.keys.iter().map(|k| k.tenant.as_deref().unwrap_or("(token)")).collect();
        f.debug_struct("ApiKeys").field("tenants", &tenants).finish()
    }
}

/// An `--api-keys` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeysError {
    /// The file cannot be read.
    #[error("cannot read the API keys file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `tenant token`.
    #[error("API keys file {path}, line {line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl ApiKeys {
    /// No authentication: every client is let in as the operator.
    pub fn none() -> Self {
        ApiKeys::default()
    }

    /// The single-tenant shorthand (`--token`): whoever presents it acts as the operator.
    pub fn single(token: impl Into<String>) -> Self {
        ApiKeys { keys: vec![ApiKey { tenant: None, token: token.into().into_bytes() }] }
    }

    /// Adds a tenant's token.
    pub fn with_tenant(mut self, tenant: impl Into<String>, token: impl Into<String>) -> Self {
        self.keys.push(ApiKey { tenant: Some(tenant.into()), token: token.into().into_bytes() });
        self
    }

    /// Whether any token is required.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// How many tenants' keys there are (the `--token` key not counted).
    pub fn tenant_keys(&self) -> usize {
        self.keys.iter().filter(|k| k.tenant.is_some()).count()
    }

    /// Reads an `--api-keys` file: one `tenant token` per line (separated by spaces or
    /// tabs); blank lines and lines starting with `#` are ignored.
    pub fn load(path: &Path) -> Result<Self, ApiKeysError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ApiKeysError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|(line, reason)| ApiKeysError::Malformed { path: path.to_owned(), line, reason })
    }

    /// Parses the content of an `--api-keys` file; the error is `(line, reason)`.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut keys = ApiKeys::none();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(tenant), Some(token), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err((line_no, "expected two fields, \"tenant token\"".into()));
            };
            if !is_tenant_name(tenant) {
                return Err((line_no, format!("tenant name {tenant:?} may hold only letters, digits and -_.@")));
            }
            if token.len() < 8 {
                return Err((line_no, format!("the token of tenant {tenant} is shorter than 8 characters")));
            }
            if keys.keys.iter().any(|k| k.token == token.as_bytes()) {
                return Err((line_no, format!("the token of tenant {tenant} is used by another line")));
            }
            keys = keys.with_tenant(tenant, token);
        }
        if keys.keys.is_empty() {
            return Err((0, "the file holds no key".into()));
        }
        Ok(keys)
    }

    /// The key matching one of `presented`: `Some(tenant)` (`None` inside for the
    /// `--token` key), or `None` when nothing matches.
    pub(crate) fn matching(&self, presented: &[Vec<u8>]) -> Option<Option<String>> {
        let mut found = None;
        for given in presented {
            for key in &self.keys {
                // No early exit: every key is compared whatever matched before.
                if constant_time_eq(given, &key.token) && found.is_none() {
                    found = Some(key.tenant.clone());
                }
            }
        }
        found
    }
}

/// Which `Host` headers an endpoint answers (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostCheck {
    /// Any host (a server beyond loopback, or an endpoint browsers cannot read by DNS
    /// rebinding).
    #[default]
    Any,
    /// Only `localhost`, `127.0.0.1` and `[::1]`, with any port: the plain HTTP endpoints
    /// of a server listening on loopback.
    Loopback,
}

/// The host names a loopback server answers to.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Hosts, origins and keys: what [`guard`] checks.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Which `Host` headers are answered.
    pub hosts: HostCheck,
    /// Origins allowed to drive the server (`scheme://host[:port]`, compared
    /// case-insensitively; `null` for opaque origins).
    pub allowed_origins: Vec<String>,
    /// The accepted tokens.
    pub keys: ApiKeys,
    /// On a cluster node, the cluster's secret: a request presenting it comes from
    /// another node and acts for the caller its headers name (see
    /// the `cluster::serve` module).
    pub cluster_secret: Option<String>,
}

/// Why [`guard`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A browser page of an origin that is not allowed.
    #[error("origin {0} is not allowed; the operator can allow it with --allowed-origins")]
    Origin(String),
    /// No valid token.
    #[error("a valid token is required: send \"Authorization: Bearer TOKEN\" or ?token=TOKEN")]
    Token,
    /// A `Host` a loopback server does not answer (DNS rebinding).
    #[error(
        "host {0:?} is not allowed: this server listens on loopback and answers only Host localhost, 127.0.0.1 \
         or [::1] (a defence against DNS rebinding)"
    )]
    Host(String),
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Origin(_) | Refusal::Host(_) => StatusCode::FORBIDDEN,
            Refusal::Token => StatusCode::UNAUTHORIZED,
        }
    }

    /// What the metrics count it as.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Origin(_) => RefusalKind::Origin,
            Refusal::Token => RefusalKind::Auth,
            Refusal::Host(_) => RefusalKind::Host,
        }
    }

    /// Short label for logs and metrics (`origin`, `auth`, `host`).
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.to_string()).into_response();
        response.extensions_mut().insert(self.kind());
        // A refused client has nothing more to ask on this socket: it does not linger.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        if self == Refusal::Token {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl Access {
    /// Checks a request's `Host`, `Origin` and token; the tenant it acts for on success.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, Refusal> {
        self.check_host(headers)?;
        self.check_origin(headers)?;
        self.authenticate(headers, query)
    }

    /// Under [`HostCheck::Loopback`], the `Host` header must name a loopback host (any
    /// port); a missing or malformed one is refused too.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.hosts == HostCheck::Any {
            return Ok(());
        }
        let given = headers.get(header::HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
        let host = given
            .as_deref()
            .and_then(|h| axum::http::uri::Authority::try_from(h).ok())
            .map(|authority| authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase());
        match host {
            Some(host) if LOOPBACK_HOSTS.contains(&host.as_str()) => Ok(()),
            _ => Err(Refusal::Host(given.unwrap_or_default().chars().take(200).collect())),
        }
    }

    /// A present `Origin` header must be allowed (every one, if several are sent).
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        for origin in headers.get_all(header::ORIGIN) {
            let text = String::from_utf8_lossy(origin.as_bytes());
            let wanted = normalize_origin(&text);
            if !self.allowed_origins.iter().any(|allowed| normalize_origin(allowed) == wanted) {
                return Err(Refusal::Origin(text.chars().take(200).collect()));
            }
        }
        Ok(())
    }

    /// The tenant whose token the request presents (`None`: no keys are configured, or
    /// the `--token` key).
    pub fn authenticate(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, Refusal> {
        if !self.keys.required() {
            return Ok(None);
        }
        let mut presented = bearer_tokens(headers);
        presented.extend(
            query.iter().flat_map(|q| q.split('&')).filter_map(|pair| pair.strip_prefix("token=")).map(percent_decode),
        );
        self.keys.matching(&presented).ok_or(Refusal::Token)
    }
}

/// The tokens of a request's `Authorization: Bearer` headers.
pub(crate) fn bearer_tokens(headers: &HeaderMap) -> Vec<Vec<u8>> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| {
            let (scheme, credentials) = value.to_str().ok()?.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim().as_bytes().to_vec())
        })
        .collect()
}

/// Whether `name` may name a tenant: at most 128 of letters, digits and `-_.@`.
pub(crate) fn is_tenant_name(name: &str) -> bool {
    name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// The middleware of every acting endpoint: refuses foreign hosts and bad origins (403)
/// and missing or wrong tokens (401); otherwise lets the request's socket in (it is no
/// longer pending) and puts the request's [`Caller`] into its extensions.
pub async fn guard(State(access): State<Arc<Access>>, mut request: Request, next: Next) -> Response {
    let remote = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr);
    let node = access
        .cluster_secret
        .as_deref()
        .and_then(|secret| crate::cluster::serve::node_caller(request.headers(), secret));
    if let Some(caller) = node {
        // Another node of the cluster, forwarding a client's request.
        let caller = match caller {
            Ok(caller) => caller,
            Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
        };
        if let Some(socket) = request.extensions().get::<PendingSocket>() {
            socket.let_in();
        }
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    match access.check(request.headers(), request.uri().query()) {
        Ok(tenant) => {
            if let Some(socket) = request.extensions().get::<PendingSocket>() {
                socket.let_in();
            }
            request.extensions_mut().insert(Caller {
                tenant,
                remote,
                authenticated: access.keys.required(),
                forwarded: false,
            });
            next.run(request).await
        }
        Err(refusal) => {
            debug!(path = %request.uri().path(), reason = refusal.reason(), "request refused: {refusal}");
            refusal.into_response()
        }
    }
}

/// `scheme://host[:port]` lowercased, without a trailing slash.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Decodes `%XX` escapes (a `+` stays a `+`: tokens are often base64).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Compares a presented token with a secret in time that depends on the secret's length
/// only (not on the presented length nor on where they differ).
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = given.len() ^ secret.len();
    for (i, &byte) in secret.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(other ^ byte);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn origins_are_refused_unless_allowed() {
        let access = Access { allowed_origins: vec!["https://app.example.com/".into()], ..Access::default() };
        assert_eq!(access.check(&headers(&[]), None), Ok(None));
        assert_eq!(access.check(&headers(&[("origin", "HTTPS://APP.example.com")]), None), Ok(None));
        let refused = access.check(&headers(&[("origin", "https://evil.example")]), None).unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.to_string().contains("https://evil.example"), "{refused}");
        assert!(Access::default().check(&headers(&[("origin", "null")]), None).is_err());
    }

    #[test]
    fn loopback_servers_answer_loopback_hosts_only() {
        let access = Access { hosts: HostCheck::Loopback, ..Access::default() };
        for host in ["localhost", "127.0.0.1:5000", "[::1]:80", "LOCALHOST:1"] {
            assert_eq!(access.check(&headers(&[("host", host)]), None), Ok(None), "{host}");
        }
        for host in ["evil.example", "evil.example:5000", "127.0.0.1.evil.example", "localhost@evil", ""] {
            let refused = access.check(&headers(&[("host", host)]), None).unwrap_err();
            assert_eq!((refused.status(), refused.reason()), (StatusCode::FORBIDDEN, "host"), "{host}");
        }
        assert!(access.check(&headers(&[]), None).is_err());
        assert_eq!(Access::default().check(&headers(&[("host", "evil.example")]), None), Ok(None));
    }

    #[test]
    fn tokens_select_their_tenant() {
        let keys = ApiKeys::parse("# comment\nalice  alice-token-1\n\nbob\tbob-token-22\n").unwrap();
        let access = Access { keys: keys.clone(), ..Access::default() };
        let bearer = headers(&[("authorization", "Bearer bob-token-22")]);
        assert_eq!(access.check(&bearer, None), Ok(Some("bob".into())));
        assert_eq!(access.check(&headers(&[]), Some("x=1&token=alice%2Dtoken%2D1")), Ok(Some("alice".into())));
        assert_eq!(access.check(&headers(&[]), Some("token=alice-token-")), Err(Refusal::Token));
        assert_eq!(access.check(&headers(&[]), None), Err(Refusal::Token));
        let single = Access { keys: ApiKeys::single("s3cret"), ..Access::default() };
        assert_eq!(single.check(&headers(&[("authorization", "bearer s3cret")]), None), Ok(None));
    }

    #[test]
    fn malformed_key_files_name_the_line() {
        assert_eq!(ApiKeys::parse("alice token-aaaa\nbob\n").unwrap_err().0, 2);
        assert_eq!(ApiKeys::parse("alice short\n").unwrap_err().0, 1);
        assert_eq!(ApiKeys::parse("a token-aaaa\nb token-aaaa\n").unwrap_err().0, 2);
        assert_eq!(ApiKeys::parse("al/ice token-aaaa\n").unwrap_err().0, 1);
        assert!(ApiKeys::parse("# nothing\n").is_err());
        assert!(!format!("{:?}", ApiKeys::parse("alice token-aaaa").unwrap()).contains("token-aaaa"));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert_eq!(percent_decode("a%20b+%zz%4"), b"a b+%zz%4");
    }
}
