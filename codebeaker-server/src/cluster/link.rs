//! Forwarding a client connection's requests to the nodes holding their sessions.
//!
//! Each client connection of a node has a [`Forwarder`]: one task that takes the
//! connection's forwarded requests in the order they arrived, finds each one's node, and
//! sends it on that node's link, a WebSocket to the node's [`super::LINK_PATH`] opened
//! for this connection the first time it needs it (and again after it closes). A link
//! speaks the protocol itself, acting for the connection's caller: requests go out with
//! the client's own ids, so responses and `session.output` notifications come back
//! needing no translation. Responses answer the waiting request; notifications go
//! straight to the client's outbox, after the response they follow.
//!
//! A link that closes, or whose node is declared lost, answers every request still
//! waiting on it with `-32003` naming the node; nothing waits for an answer that cannot
//! come.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::header::{HeaderName, HeaderValue, InvalidHeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Cluster, LINK_PATH};
use crate::api::Caller;
use crate::methods::Reply;
use crate::outbox::Outbox;
use crate::processes::Answered;
use crate::rpc::{self, Request, RpcError};
use crate::telemetry;

/// The header naming the tenant a link acts for.
pub const TENANT_HEADER: &str = "x-codebeaker-tenant";
/// The header naming the client's address.
pub const REMOTE_HEADER: &str = "x-codebeaker-remote";
/// The header saying whether the client presented a token (`1`) or not (`0`).
pub const AUTHENTICATED_HEADER: &str = "x-codebeaker-authenticated";

/// How long opening a link may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a link waits for the client's response to be queued before relaying the
/// notifications that follow it.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Where a forwarded request goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// The node holding this session (found in the registry).
    Session(String),
    /// This node.
    Node(String),
}

/// What a connection's forwarding task does, in arrival order.
enum Item {
    /// Send a request to a node.
    Forward(Forward),
    /// Count a request against the cluster-wide rate, then start it.
    Admit(Admission),
}

/// A request waiting for its place in the cluster-wide rate.
struct Admission {
    check: BoxFuture<'static, Result<(), RpcError>>,
    start: Box<dyn FnOnce() -> Reply + Send>,
    reply: oneshot::Sender<Result<Value, RpcError>>,
}

/// A request on its way to a node.
struct Forward {
    request: Request,
    target: Target,
    answered: Option<Answered>,
    reply: oneshot::Sender<Result<Value, RpcError>>,
}

/// The forwarding of one client connection (see the module docs). Dropping it (with
/// the connection) closes its links.
pub struct Forwarder {
    cluster: Cluster,
    queue: mpsc::UnboundedSender<Item>,
    ended: CancellationToken,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.ended.cancel();
    }
}

impl Forwarder {
    /// The forwarder of a connection of `caller` whose notifications go to `outbox`.
    pub(crate) fn new(cluster: Cluster, caller: Caller, outbox: Outbox) -> Arc<Forwarder> {
        // Unbounded, yet bounded: every queued request holds one of the connection's
        // in-flight places until it is answered.
        let (queue, requests) = mpsc::unbounded_channel();
        let ended = CancellationToken::new();
        let links = Links { cluster: cluster.clone(), caller, outbox, ended: ended.clone(), open: HashMap::new() };
        tokio::spawn(links.run(requests));
        Arc::new(Forwarder { cluster, queue, ended })
    }

    /// The cluster this connection's node belongs to.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Forwards `request` to `target`; its answer is the node's. `answered` (the
    /// client's response is queued) orders the notifications that follow the response.
    pub(crate) fn forward(&self, mut request: Request, target: Target, answered: Option<Answered>) -> Reply {
        // The node's spans join the client's trace (the caller's `_meta` was taken out).
        if let (Some(context), Some(Value::Object(params))) = (telemetry::current_context(), request.params.as_mut()) {
            params.insert("_meta".into(), json!(context));
        }
        self.enqueue(|reply| Item::Forward(Forward { request, target, answered, reply }))
    }

    /// Starts a request once `check` (its place in the cluster-wide rate) passes: checks
    /// run one at a time in arrival order, and each request starts (`start`, which takes
    /// a command's place in its session's queue) right after its own, so requests sent
    /// back to back still run in the order they were sent.
    pub(crate) fn admit(
        &self,
        check: BoxFuture<'static, Result<(), RpcError>>,
        start: Box<dyn FnOnce() -> Reply + Send>,
    ) -> Reply {
        self.enqueue(|reply| Item::Admit(Admission { check, start, reply }))
    }

    /// Queues the item `make` builds around its reply for the connection's task; the
    /// reply, or an error when the connection is closing (the task has ended).
    fn enqueue(&self, make: impl FnOnce(oneshot::Sender<Result<Value, RpcError>>) -> Item) -> Reply {
        let (reply, answer) = oneshot::channel();
        let queued = self.queue.send(make(reply)).is_ok();
        Box::pin(async move {
            let closing = || Err(RpcError::new(rpc::INTERNAL_ERROR, "the connection is closing"));
            if !queued {
                return closing();
            }
            answer.await.unwrap_or_else(|_| closing())
        })
    }
}

type LinkSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type LinkStream = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// A request sent on a link, waiting for its response.
struct Waiting {
    reply: oneshot::Sender<Result<Value, RpcError>>,
    answered: Option<Answered>,
    sent: Instant,
    /// The session it is about, if any (forgotten when the node does not hold it).
    session: Option<String>,
}

type WaitingMap = Arc<Mutex<HashMap<String, Waiting>>>;

/// One open link.
struct Link {
    sink: LinkSink,
    waiting: WaitingMap,
    closed: CancellationToken,
}

/// The links of one connection, owned by its forwarding task.
struct Links {
    cluster: Cluster,
    caller: Caller,
    outbox: Outbox,
    ended: CancellationToken,
    open: HashMap<String, Link>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Links {
    /// Sends each request in turn until the connection ends.
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Item>) {
        loop {
            let item = tokio::select! {
                _ = self.ended.cancelled() => break,
                item = requests.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
            };
            match item {
                Item::Forward(forward) => self.send(forward).await,
                Item::Admit(Admission { check, start, reply }) => match check.await {
                    Ok(()) => {
                        let started = start();
                        tokio::spawn(async move {
                            let _ = reply.send(started.await);
                        });
                    }
                    Err(refused) => {
                        let _ = reply.send(Err(refused));
                    }
                },
            }
        }
        for link in self.open.values() {
            link.closed.cancel();
        }
    }

    async fn send(&mut self, forward: Forward) {
        let Forward { request, target, answered, reply } = forward;
        let (url, session) = match target {
            Target::Node(url) => (url, None),
            Target::Session(id) => match self.cluster.holder(&id, self.caller.tenant.as_deref()).await {
                Ok(url) => (url, Some(id)),
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                    return;
                }
            },
        };
        if self.open.get(&url).is_none_or(|link| link.closed.is_cancelled()) {
            match self.connect(&url).await {
                Ok(link) => {
                    self.open.insert(url.clone(), link);
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                    return;
                }
            }
        }
        let Some(link) = self.open.get_mut(&url) else { return };
        let frame = frame(&request);
        let key = request.id.as_ref().map(Value::to_string);
        if let Some(key) = &key {
            let duplicate = {
                let mut waiting = lock(&link.waiting);
                match waiting.entry(key.clone()) {
                    std::collections::hash_map::Entry::Occupied(_) => Some(reply),
                    std::collections::hash_map::Entry::Vacant(place) => {
                        place.insert(Waiting { reply, answered, sent: Instant::now(), session });
                        None
                    }
                }
            };
            if let Some(reply) = duplicate {
                let _ = reply.send(Err(RpcError::invalid_request(format!(
                    "request id {key} is already in flight on this connection; ids must be unique among unanswered requests"
                ))));
                return;
            }
            if let Err(error) = link.sink.send(Message::text(frame)).await {
                link.closed.cancel();
                if let Some(entry) = lock(&link.waiting).remove(key) {
                    let why = format!("cannot be reached: the link failed ({error})");
                    let _ = entry.reply.send(Err(self.cluster.node_error(&url, &why).into()));
                }
            }
        } else {
            // A notification: no answer comes, none is awaited.
            let sent = link.sink.send(Message::text(frame)).await;
            if sent.is_err() {
                link.closed.cancel();
            }
            let _ = reply.send(Ok(Value::Null));
        }
    }

    /// Opens a link to `url` for this connection's caller.
    async fn connect(&self, url: &str) -> Result<Link, RpcError> {
        let unreachable = |why: String| RpcError::from(self.cluster.cannot_reach(url, why));
        let endpoint = format!("{}{LINK_PATH}", url.trim_end_matches('/'));
        let mut request = endpoint.as_str().into_client_request().map_err(|e| unreachable(e.to_string()))?;
        let headers = caller_headers(&self.cluster, &self.caller).map_err(|e| unreachable(e.to_string()))?;
        request.headers_mut().extend(headers);
        let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
        let (socket, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => return Err(unreachable(error.to_string())),
            Err(_) => return Err(unreachable(format!("no link within {} s", CONNECT_TIMEOUT.as_secs()))),
        };
        debug!(node = url, "cluster link open");
        let (sink, stream) = socket.split();
        let waiting: WaitingMap = Arc::default();
        let closed = self.ended.child_token();
        let reader = Reader {
            cluster: self.cluster.clone(),
            url: url.to_owned(),
            outbox: self.outbox.clone(),
            waiting: waiting.clone(),
            closed: closed.clone(),
        };
        tokio::spawn(reader.run(stream));
        Ok(Link { sink, waiting, closed })
    }
}

/// The headers of a request one node sends another for `caller`: the cluster's secret
/// and who the client is (see [`super::serve::node_caller`]).
pub(crate) fn caller_headers(
    cluster: &Cluster,
    caller: &Caller,
) -> Result<Vec<(HeaderName, HeaderValue)>, InvalidHeaderValue> {
    let mut headers = vec![
        (
            HeaderName::from_static("authorization"),
            HeaderValue::from_str(&format!("Bearer {}", cluster.config().secret.trim()))?,
        ),
        (
            HeaderName::from_static(AUTHENTICATED_HEADER),
            HeaderValue::from_static(if caller.authenticated { "1" } else { "0" }),
        ),
    ];
    if let Some(tenant) = &caller.tenant {
        headers.push((HeaderName::from_static(TENANT_HEADER), HeaderValue::from_str(tenant)?));
    }
    if let Some(remote) = caller.remote {
        headers.push((HeaderName::from_static(REMOTE_HEADER), HeaderValue::from_str(&remote.to_string())?));
    }
    Ok(headers)
}

/// The request as it goes on a link: the client's id, method and params.
fn frame(request: &Request) -> String {
    let mut message = json!({"jsonrpc": "2.0", "method": request.method});
    if let Some(id) = &request.id {
        message["id"] = id.clone();
    }
    if let Some(params) = &request.params {
        message["params"] = params.clone();
    }
    rpc::to_text(&message)
}

/// Reads one link: responses answer their requests, notifications go to the client.
struct Reader {
    cluster: Cluster,
    url: String,
    outbox: Outbox,
    waiting: WaitingMap,
    closed: CancellationToken,
}

impl Reader {
    async fn run(self, mut stream: LinkStream) {
        let mut table = self.cluster.watch();
        // Responses handed over whose client-side answer may not be queued yet.
        let mut unanswered: Vec<Answered> = Vec::new();
        let why = loop {
            tokio::select! {
                _ = self.closed.cancelled() => break "closed the link".to_owned(),
                changed = table.changed() => {
                    if changed.is_err() {
                        break "closed the link".to_owned();
                    }
                    let lost = table.borrow_and_update().get(&self.url).is_none_or(|node| node.state == super::NodeState::Lost);
                    if lost {
                        break "is lost (no heartbeat): its sessions cannot be reached".to_owned();
                    }
                }
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.relay(text.as_str(), &mut unanswered).await,
                    Some(Ok(Message::Close(close))) => {
                        break format!("closed the link ({})", close.map(|c| c.reason.to_string()).unwrap_or_default());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break format!("closed the link ({error})"),
                    None => break "closed the link".to_owned(),
                },
            }
        };
        self.closed.cancel();
        debug!(node = %self.url, %why, "cluster link closed");
        let waiting: Vec<Waiting> = lock(&self.waiting).drain().map(|(_, waiting)| waiting).collect();
        for entry in waiting {
            let _ = entry.reply.send(Err(self.cluster.node_error(&self.url, &why).into()));
        }
    }

    /// One frame from the node. A notification goes out only once the responses handed
    /// over before it are queued to the client (a process's output after its `pid`);
    /// responses never wait (the requests of one batch are answered together).
    async fn relay(&self, text: &str, unanswered: &mut Vec<Answered>) {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
            debug!(node = %self.url, "a link frame that is not a JSON-RPC object; ignored");
            return;
        };
        if message.contains_key("method") {
            for answered in unanswered.drain(..) {
                let _ = tokio::time::timeout(ANSWER_WAIT, answered).await;
            }
            self.outbox.send_text(text.to_owned()).await;
            return;
        }
        let Some(key) = message.get("id").map(Value::to_string) else { return };
        let Some(entry) = lock(&self.waiting).remove(&key) else { return };
        self.cluster.metrics().forwarded(&self.url, entry.sent.elapsed());
        let outcome = match (message.get("result"), message.get("error")) {
            (Some(result), _) => Ok(result.clone()),
            (None, Some(error)) => {
                let code = error.get("code").and_then(Value::as_i64).unwrap_or(rpc::INTERNAL_ERROR);
                let data =
                    error.get("data").and_then(Value::as_str).or_else(|| error.get("message").and_then(Value::as_str));
                if code == rpc::SESSION_NOT_FOUND {
                    if let Some(session) = &entry.session {
                        self.cluster.forget_location(session);
                    }
                }
                let mut refused = RpcError::new(code, data.unwrap_or_default())
                    .with_kind(error.get("kind").and_then(Value::as_str).unwrap_or_default());
                refused.retry_after_ms = error.get("retryAfterMs").and_then(Value::as_u64);
                Err(refused)
            }
            (None, None) => Err(RpcError::new(
                rpc::INTERNAL_ERROR,
                format!("node {} answered neither a result nor an error", self.url),
            )),
        };
        if entry.reply.send(outcome).is_ok() {
            unanswered.extend(entry.answered);
        }
        // Answers already queued need no waiting for.
        unanswered.retain_mut(|answered| matches!(answered.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
    }
}
