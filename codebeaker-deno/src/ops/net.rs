//! `fetch`: a real HTTP request, only where both the session's `allowNet` and the
//! operator's network policy ([`EgressRules`], the same code that judges Docker egress)
//! allow it.
//!
//! Every hop is judged: the URL's host and port by name before anything is looked up
//! (IP literals included), then every address a name resolves to (the rules are the
//! client's DNS resolver, so a redirect to a name that resolves to a loopback, private,
//! link-local or metadata address is refused too), and each redirect's target by the
//! redirect policy before it is followed. Requests never go through a proxy from the
//! environment. Per session, `net.max-connections` requests may be open at once (idle
//! connections are not kept, so each open request is at most one connection) and
//! `net.max-bytes` may move in all; bodies are charged to the op-buffer budget as they
//! arrive.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use codebeaker::egress::{EgressDenied, EgressRules};
use codebeaker::{Language, NetPolicy};
use deno_core::{JsBuffer, OpState, ToJsBuffer};
use deno_error::JsErrorBox;
use serde::Serialize;

use super::{session, session_mut};
use crate::permissions::Permissions;

/// Largest response body `fetch` buffers (the body is handed to JS in one piece).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Most redirects followed, as browsers and Deno do.
const MAX_REDIRECTS: usize = 20;

/// What the JS `Response` is built from.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FetchResponse {
    status: u16,
    status_text: String,
    url: String,
    headers: Vec<(String, String)>,
    body: ToJsBuffer,
}

/// The network side of one session: its egress rules and the caps its requests share.
pub(crate) struct NetState {
    rules: EgressRules,
    /// The port each host was last asked for: the resolver is given names only, and the
    /// rules judge a name with its port.
    ports: Arc<Mutex<HashMap<String, u16>>>,
    open: Arc<AtomicUsize>,
    max_connections: usize,
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
    ca_bundle: Option<std::path::PathBuf>,
}

impl NetState {
    /// Destinations refused since the last call (see [`EgressRules::take_refused`]).
    pub fn take_refused(&self) -> u64 {
        self.rules.take_refused()
    }

    /// The network state of a session with `permissions` under the operator's `net`.
    pub fn new(permissions: &Permissions, net: &NetPolicy) -> Self {
        NetState {
            rules: EgressRules::for_session(net, Language::TypeScript, Some(permissions.net_allowlist())),
            ports: Arc::default(),
            open: Arc::default(),
            max_connections: net.max_connections,
            bytes: Arc::default(),
            max_bytes: net.max_bytes,
            ca_bundle: net.ca_bundle.clone(),
        }
    }
}

/// A refusal that travels through reqwest's errors (from the resolver or the redirect
/// policy) back to the op, which throws it with its class.
#[derive(Debug)]
struct Refusal {
    class: &'static str,
    message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for JsErrorBox {
    fn from(refusal: Refusal) -> Self {
        JsErrorBox::new(refusal.class, refusal.message)
    }
}

/// A refusal of the rules in Deno's words: `PermissionDenied: Requires net access to
/// "127.0.0.1:8080", refused by the operator's policy: …` (network failures of an allowed
/// destination are `TypeError`s, as Deno's `fetch` throws).
fn refusal(target: &str, denied: &EgressDenied) -> Refusal {
    if denied.is_policy() {
        Refusal {
            class: "PermissionDenied",
            message: format!("Requires net access to \"{target}\", refused by the operator's policy: {denied}"),
        }
    } else {
        Refusal { class: "TypeError", message: format!("error sending request: {denied}") }
    }
}

/// A URL's host (IPv6 without brackets) and port; only `http` and `https` are fetched.
fn host_and_port(url: &reqwest::Url) -> Result<(String, u16), Refusal> {
    let invalid = |message: String| Refusal { class: "TypeError", message };
    match url.scheme() {
        "http" | "https" => {}
        scheme => return Err(invalid(format!("scheme '{scheme}' is not supported by fetch"))),
    }
    let host = url.host_str().ok_or_else(|| invalid(format!("Invalid URL: '{url}'")))?;
    let port = url.port_or_known_default().ok_or_else(|| invalid(format!("Invalid URL: '{url}'")))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

/// Judges one hop by name: `allowNet` first (Deno's own refusal), then the operator's
/// rules (for an IP literal, its address too). Records the port for the resolver.
fn check_hop(
    permissions: &Permissions,
    rules: &EgressRules,
    ports: &Mutex<HashMap<String, u16>>,
    url: &reqwest::Url,
) -> Result<(), Refusal> {
    let (host, port) = host_and_port(url)?;
    permissions.check_net(&host, url.port()).map_err(|denied| {
        rules.record_refusal();
        Refusal { class: "PermissionDenied", message: denied.0 }
    })?;
    rules.check_name(&host, port).map_err(|denied| refusal(&format!("{host}:{port}"), &denied))?;
    ports.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(host.to_ascii_lowercase(), port);
    Ok(())
}

/// The client's DNS resolver: every address of a name is vetted by the rules.
struct VettingResolver {
    rules: EgressRules,
    ports: Arc<Mutex<HashMap<String, u16>>>,
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.rules.clone();
        let host = name.as_str().to_owned();
        let recorded = self.ports.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&host).copied();
        Box::pin(async move {
            // Every name reaches the resolver after `check_hop` judged and recorded it.
            let port = recorded.ok_or_else(|| {
                Box::new(Refusal { class: "PermissionDenied", message: format!("Requires net access to \"{host}\"") })
                    as Box<dyn std::error::Error + Send + Sync>
            })?;
            let addresses = rules.resolve(&host, port).await.map_err(|denied| {
                Box::new(refusal(&format!("{host}:{port}"), &denied)) as Box<dyn std::error::Error + Send + Sync>
            })?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The session's HTTP client, built on first use: the rules as its resolver, a redirect
/// policy that judges every hop like the first, no proxy, no idle connections.
fn client(state: &Rc<RefCell<OpState>>) -> Result<reqwest::Client, JsErrorBox> {
    let mut state = state.borrow_mut();
    let session = session_mut(&mut state)?;
    if let Some(client) = &session.http {
        return Ok(client.clone());
    }
    let permissions = Arc::new((*session.permissions).clone());
    let (rules, ports) = (session.net.rules.clone(), session.net.ports.clone());
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        match check_hop(&permissions, &rules, &ports, attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    });
    let resolver = VettingResolver { rules: session.net.rules.clone(), ports: session.net.ports.clone() };
    let mut builder = reqwest::Client::builder()
        .redirect(policy)
        .dns_resolver(Arc::new(resolver))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .user_agent(concat!("codebeaker-deno/", env!("CARGO_PKG_VERSION")));
    if let Some(bundle) = &session.net.ca_bundle {
        let pem = std::fs::read(bundle)
            .map_err(|e| JsErrorBox::generic(format!("cannot read the CA bundle {}: {e}", bundle.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| JsErrorBox::generic(format!("invalid CA bundle {}: {e}", bundle.display())))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let client = builder.build().map_err(|e| JsErrorBox::generic(format!("cannot start an HTTP client: {e}")))?;
    session.http = Some(client.clone());
    Ok(client)
}

/// One open request of a session, counted under `net.max-connections`.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The caps of one request: a connection slot, and the session's byte counter.
struct Metered {
    _slot: Slot,
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
    target: String,
    /// Where a cap's refusal is counted.
    rules: EgressRules,
}

impl Metered {
    fn open(net: &NetState, host: &str, port: u16) -> Result<Self, Refusal> {
        let target = format!("{host}:{port}");
        let taken = net
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < net.max_connections).then_some(open + 1));
        if taken.is_err() {
            net.rules.record_refusal();
            let denied = EgressDenied::ConnectionCap { host: host.to_owned(), port, limit: net.max_connections };
            return Err(refusal(&target, &denied));
        }
        let metered = Metered {
            _slot: Slot(net.open.clone()),
            bytes: net.bytes.clone(),
            max_bytes: net.max_bytes,
            target,
            rules: net.rules.clone(),
        };
        metered.charge(0, host, port)?;
        Ok(metered)
    }

    /// Counts `bytes` moved; past `net.max-bytes` the request is cut.
    fn charge(&self, bytes: u64, host: &str, port: u16) -> Result<(), Refusal> {
        let used = self.bytes.fetch_add(bytes, Ordering::AcqRel).saturating_add(bytes);
        if used > self.max_bytes || (bytes == 0 && used >= self.max_bytes) {
            self.rules.record_refusal();
            let denied = EgressDenied::ByteCap { host: host.to_owned(), port, limit: self.max_bytes };
            return Err(refusal(&self.target, &denied));
        }
        Ok(())
    }
}

/// A reqwest failure as `fetch` throws it: a refusal found in its causes keeps its class.
fn send_error(error: reqwest::Error, doing: &str) -> JsErrorBox {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<Refusal>() {
            return JsErrorBox::new(refused.class, refused.message.clone());
        }
        cause = current.source();
    }
    JsErrorBox::type_error(format!("{doing}: {error}"))
}

/// Performs `fetch(url, {method, headers, body})` where the rules allow it.
#[deno_core::op2]
#[serde]
pub(crate) async fn op_cb_fetch(
    state: Rc<RefCell<OpState>>,
    #[string] url: String,
    #[string] method: String,
    #[serde] headers: Vec<(String, String)>,
    #[buffer] body: JsBuffer,
    has_body: bool,
) -> Result<FetchResponse, JsErrorBox> {
    let url = reqwest::Url::parse(&url).map_err(|_| JsErrorBox::type_error(format!("Invalid URL: '{url}'")))?;
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| JsErrorBox::type_error(format!("'{method}' is not a valid HTTP method")))?;
    let (host, port) = host_and_port(&url)?;
    let (metered, budget) = {
        let state = state.borrow();
        let session = session(&state)?;
        check_hop(&session.permissions, &session.net.rules, &session.net.ports, &url)?;
        (Metered::open(&session.net, &host, port)?, session.buffers.clone())
    };
    let mut request = client(&state)?.request(method, url);
    let mut sent = 0u64;
    for (name, value) in headers {
        sent = sent.saturating_add((name.len() + value.len()) as u64);
        request = request.header(name, value);
    }
    let _request_grant = if has_body {
        let grant = budget.take(body.len() as u64, &format!("the body of a request to {host}:{port}"))?;
        sent = sent.saturating_add(body.len() as u64);
        request = request.body(body.to_vec());
        Some(grant)
    } else {
        None
    };
    metered.charge(sent, &host, port)?;
    let mut response = request.send().await.map_err(|e| send_error(e, "error sending request"))?;
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let received: u64 = headers.iter().map(|(name, value)| (name.len() + value.len()) as u64).sum();
    metered.charge(received, &host, port)?;
    let url = response.url().to_string();
    let what = format!("the response body of {url}");
    let mut grant = budget.take(0, &what)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| send_error(e, "error reading body"))? {
        let total = bytes.len() as u64 + chunk.len() as u64;
        if total > MAX_BODY_BYTES {
            return Err(JsErrorBox::range_error(format!("response body of {url} exceeds {MAX_BODY_BYTES} bytes")));
        }
        metered.charge(chunk.len() as u64, &host, port)?;
        if total > bytes.capacity() as u64 {
            // Grow by doubling (amortised), charging the whole new capacity first.
            let capacity = total.max(bytes.capacity() as u64 * 2).min(MAX_BODY_BYTES);
            grant.grow_to(capacity, &what)?;
            bytes.try_reserve_exact(capacity as usize - bytes.len()).map_err(|_| {
                JsErrorBox::range_error(format!("memory limit exceeded: {what} could not be allocated"))
            })?;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(FetchResponse {
        status: status.as_u16(),
        status_text: status.canonical_reason().unwrap_or_default().to_owned(),
        url,
        headers,
        body: bytes.into(),
    })
}
