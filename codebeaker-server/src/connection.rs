//! One WebSocket connection: a read loop that parses each text frame and starts its
//! requests, and a writer task that sends responses and notifications as they are ready.
//!
//! Requests run concurrently (each in a task of its own) and are answered by id in
//! whatever order they finish; per-connection semaphores cap how many requests and how
//! many request bytes are in flight. Everything a connection sends goes through its
//! [`Outbox`], whose bytes are counted: a client that stops reading first stops being
//! read from, then is closed (1008) once the limit is reached; nobody else notices.
//!
//! A connection idle for [`crate::Limits::connection_idle`] (no frame from the client,
//! pings included, no request running and nothing left to write) is closed (1001).
//!
//! The connection owns no session: when it ends, abruptly or not, running commands go on
//! to their end (their responses are dropped) and sessions stay open for a reconnect.
//! Commands still waiting for their turn are given up: nobody is left to read their
//! answers, and a client must not be able to queue work and leave.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, Message, Utf8Bytes, WebSocket};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, Instrument as _};

use crate::api::Caller;
use crate::cluster::link::Forwarder;
use crate::metrics::RefusalKind;
use crate::outbox::{self, Outbox, Outgoing};
use crate::processes::{Attachments, Peer};
use crate::rpc::{self, Incoming, Response, RpcError};
use crate::server::Shared;
use crate::telemetry;

/// How long a closing connection waits for the client's close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The state of one connection's read loop.
struct Connection {
    shared: Arc<Shared>,
    caller: Caller,
    outbox: Outbox,
    /// One permit per request being handled.
    in_flight: Arc<Semaphore>,
    /// One permit per KiB of request frames being handled.
    in_flight_kib: Arc<Semaphore>,
    /// Cancelled when the connection has ended: requests still waiting are dropped.
    ended: CancellationToken,
    /// The processes whose output this connection receives.
    attachments: Attachments,
    /// Its forwarding to other nodes (a client connection of a cluster node; a link's
    /// requests, [`Caller::forwarded`], are served here).
    forwarder: Option<Arc<Forwarder>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A process outlives its connection; the forwarding to it does not.
        self.attachments.end_all();
    }
}

/// The places one frame's requests hold until they are answered.
struct InFlight {
    _requests: OwnedSemaphorePermit,
    _kib: OwnedSemaphorePermit,
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

/// Why the read loop ended with a close frame to send.
type Close = (u16, String);

/// Serves one upgraded connection for `caller` until the client leaves or `shutdown`
/// fires.
pub(crate) async fn serve(ws: WebSocket, shared: Arc<Shared>, caller: Caller, shutdown: CancellationToken) {
    let (mut sink, mut stream) = ws.split();
    let (outbox, mut inbox) = outbox::channel(shared.limits.max_outbound_bytes);
    let writer = tokio::spawn(async move {
        while let Some(Outgoing { message, bytes }) = inbox.recv().await {
            let closing = matches!(message, Message::Close(_));
            if inbox.is_overflowed() && !closing {
                inbox.written(bytes);
                continue;
            }
            let fed = sink.feed(message).await;
            inbox.written(bytes);
            if fed.is_err() {
                return;
            }
            // One flush per burst: responses that finished together share a write.
            if (closing || inbox.is_empty()) && sink.flush().await.is_err() {
                return;
            }
            if closing {
                return;
            }
        }
    });
    let limits = &shared.limits;
    let max_in_flight = limits.max_in_flight;
    let budget = limits.max_in_flight_bytes.max(limits.max_message_bytes);
    let idle = limits.connection_idle;
    let forwarder = match shared.api.cluster() {
        Some(cluster) if !caller.forwarded => Some(Forwarder::new(cluster.clone(), caller.clone(), outbox.clone())),
        _ => None,
    };
    let connection = Connection {
        shared: shared.clone(),
        caller,
        outbox,
        forwarder,
        in_flight: Arc::new(Semaphore::new(max_in_flight)),
        in_flight_kib: Arc::new(Semaphore::new(kib(budget))),
        ended: CancellationToken::new(),
        attachments: Attachments::default(),
    };
    let _end_requests = connection.ended.clone().drop_guard();
    let outbox = &connection.outbox;
    // Past this many bytes waiting to be written, no new request is read.
    let high_water = outbox.max() / 2;

    let mut deadline = Instant::now() + idle;
    let close = loop {
        if outbox.queued() > high_water {
            tokio::select! {
                _ = shutdown.cancelled() => break Some(going_away()),
                _ = outbox.overflowed() => break Some(connection.overflow()),
                _ = outbox.drained(high_water) => {
                    deadline = Instant::now() + idle;
                    continue;
                }
            }
        }
        let message = tokio::select! {
            _ = shutdown.cancelled() => break Some(going_away()),
            _ = outbox.overflowed() => break Some(connection.overflow()),
            _ = tokio::time::sleep_until(deadline) => {
                if connection.busy() {
                    deadline = Instant::now() + idle;
                    continue;
                }
                break Some((close_code::AWAY, format!(
                    "closing an idle connection: no message for {} s and no request running (the server's connection-idle-secs)",
                    idle.as_secs_f64()
                )));
            }
            message = stream.next() => message,
        };
        deadline = Instant::now() + idle;
        // Handling waits while the outbox is full; a shutdown or an overflow must not
        // wait for that.
        let handled = match message {
            // tungstenite answers a close frame itself, on the next read: keep reading
            // until it reports the end.
            None => break None,
            Some(Ok(Message::Text(text))) => connection.handle_text(text).boxed(),
            Some(Ok(Message::Binary(_))) => {
                let error = RpcError::invalid_request(
                    "binary frames are not supported; send each JSON-RPC message as a text frame",
                );
                connection.reply(Response::error(Value::Null, error)).boxed()
            }
            Some(Ok(_)) => continue, // ping, pong (answered by tungstenite), close
            Some(Err(error)) => match too_large(error) {
                Ok(detail) => {
                    let limit = connection.shared.limits.max_message_bytes;
                    break Some((close_code::SIZE, format!("{detail}; the limit is {limit} bytes")));
                }
                Err(error) => {
                    debug!(%error, "connection ended abruptly");
                    break None;
                }
            },
        };
        tokio::select! {
            _ = shutdown.cancelled() => break Some(going_away()),
            _ = outbox.overflowed() => break Some(connection.overflow()),
            _ = handled => {}
        }
    };

    let Some((code, reason)) = close else {
        // The client is gone: running requests finish on their own, their answers dropped.
        return;
    };
    debug!(code, %reason, "closing the connection");
    if shutdown.is_cancelled() {
        // Let running requests answer first (sessions are being closed, so they end soon).
        let grace = connection.shared.limits.shutdown_grace;
        let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(grace, connection.in_flight.acquire_many(all)).await;
    }
    // A client that stopped reading cannot hold the connection open past the timeout.
    let writer_abort = writer.abort_handle();
    let closed = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
        connection.outbox.close(code, reason).await;
        drop(connection);
        let _ = writer.await;
        // Read until the client's close frame (or anything else) ends the stream.
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    if closed.is_err() {
        writer_abort.abort();
    }
}

/// The detail of a message-too-large error, or the error itself if it is another.
fn too_large(error: axum::Error) -> Result<String, axum::Error> {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(capacity)) => Ok(capacity.to_string()),
        _ => Err(axum::Error::new(inner)),
    }
}

/// The span of one request, beneath its connection's: the manager's session and command
/// spans nest beneath it. Takes the request's `_meta` out of its params (no method reads
/// it): where traces are exported, its `traceparent` and `tracestate` make the client's
/// span the parent of this one (see [`crate::telemetry`]).
fn request_span(request: &mut rpc::Request) -> tracing::Span {
    let id = request.id.as_ref().map(|id| id.to_string()).unwrap_or_default();
    // Client-chosen strings: bounded before they reach the logs.
    let method: String = request.method.chars().take(64).collect();
    let id: String = id.chars().take(64).collect();
    let span = info_span!("request", id = %id, method = %method, "rpc.system" = "jsonrpc", "rpc.method" = %method);
    let meta = match request.params.as_mut() {
        Some(Value::Object(params)) => params.remove("_meta"),
        _ => None,
    };
    let field = |name: &str| meta.as_ref().and_then(|meta| meta.get(name)).and_then(Value::as_str);
    telemetry::adopt(&span, field("traceparent"), field("tracestate"));
    span
}

fn going_away() -> Close {
    (close_code::AWAY, "server shutting down".to_owned())
}

impl Connection {
    /// Whether a request is running or output is waiting: the connection is not idle.
    fn busy(&self) -> bool {
        self.in_flight.available_permits() < self.shared.limits.max_in_flight || self.outbox.queued() > 0
    }

    /// The close owed to a client that let too many bytes pile up.
    fn overflow(&self) -> Close {
        let max = self.outbox.max();
        (
            close_code::POLICY,
            format!(
                "the client does not read its responses: more than {max} bytes of them are waiting to be written, \
                 the server's max-outbound-bytes; closing"
            ),
        )
    }

    /// Queues a response.
    async fn reply(&self, response: Response) {
        self.outbox.send_text(response.to_text()).await;
    }

    /// Takes places for `count` requests that arrived in a frame of `bytes` bytes, or
    /// says which per-connection limit is in the way.
    fn permit(&self, count: usize, bytes: usize) -> Result<InFlight, RpcError> {
        let permit = self.try_permit(count, bytes);
        if permit.is_err() {
            self.shared.metrics.refused(RefusalKind::Limit);
        }
        permit
    }

    fn try_permit(&self, count: usize, bytes: usize) -> Result<InFlight, RpcError> {
        let limits = &self.shared.limits;
        let requests = u32::try_from(count).ok().and_then(|n| self.in_flight.clone().try_acquire_many_owned(n).ok());
        let Some(requests) = requests else {
            return Err(RpcError::limit_reached(format!(
                "{} requests are in flight on this connection, the maximum; wait for some answers first",
                limits.max_in_flight
            )));
        };
        let kib =
            u32::try_from(kib(bytes)).ok().and_then(|n| self.in_flight_kib.clone().try_acquire_many_owned(n).ok());
        let Some(kib) = kib else {
            return Err(RpcError::limit_reached(format!(
                "the requests in flight on this connection hold {} bytes or more, the maximum; wait for some answers first",
                limits.max_in_flight_bytes.max(limits.max_message_bytes)
            )));
        };
        Ok(InFlight { _requests: requests, _kib: kib })
    }

    /// What a request gets of this connection, and the sender to fire once its
    /// response is queued.
    fn peer(&self) -> (oneshot::Sender<()>, Peer) {
        let (sent, answered) = oneshot::channel();
        let peer = Peer {
            outbox: self.outbox.clone(),
            attachments: self.attachments.clone(),
            answered,
            forwarder: self.forwarder.clone(),
        };
        (sent, peer)
    }

    /// Parses one text frame and starts its requests.
    async fn handle_text(&self, text: Utf8Bytes) {
        let text = text.as_str();
        match rpc::parse(text, &self.shared.limits) {
            Incoming::Rejected(response) => {
                if response.outcome.as_ref().is_err_and(|error| error.code == rpc::LIMIT_REACHED) {
                    self.shared.metrics.refused(RefusalKind::Limit);
                }
                self.reply(response).await
            }
            Incoming::Single(Err(response)) => self.reply(*response).await,
            Incoming::Single(Ok(mut request)) => {
                let permit = match self.permit(1, text.len()) {
                    Ok(permit) => permit,
                    Err(busy) => {
                        match request.id {
                            Some(id) => self.reply(Response::error(id, busy)).await,
                            None => debug!(method = %request.method, "notification dropped: {busy:?}"),
                        }
                        return;
                    }
                };
                let id = request.id.clone();
                let span = request_span(&mut request);
                let (answered, peer) = self.peer();
                let reply = span.in_scope(|| self.shared.methods.call(request, &self.caller, peer));
                let (outbox, ended) = (self.outbox.clone(), self.ended.clone());
                tokio::spawn(
                    async move {
                        let Some(outcome) = ended.run_until_cancelled(reply).await else { return };
                        match id {
                            Some(id) if !outbox.is_gone() => {
                                outbox.send_text(Response { id, outcome }.to_text()).await;
                            }
                            _ => {}
                        }
                        let _ = answered.send(());
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Incoming::Batch(items) => {
                let permit = match self.permit(items.len(), text.len()) {
                    Ok(permit) => permit,
                    Err(busy) => {
                        let responses: Vec<Response> = items
                            .into_iter()
                            .filter_map(|item| match item {
                                Err(response) => Some(*response),
                                Ok(request) => request.id.map(|id| Response::error(id, busy.clone())),
                            })
                            .collect();
                        if !responses.is_empty() {
                            self.outbox.send_text(rpc::to_text(&responses)).await;
                        }
                        return;
                    }
                };
                // Started in order (tickets are taken now), answered together.
                let mut answered = Vec::new();
                let replies: Vec<_> = items
                    .into_iter()
                    .map(|item| -> futures::future::BoxFuture<'static, Option<Response>> {
                        match item {
                            Err(response) => Box::pin(futures::future::ready(Some(*response))),
                            Ok(mut request) => {
                                let id = request.id.clone();
                                let span = request_span(&mut request);
                                let (sent, peer) = self.peer();
                                answered.push(sent);
                                let reply = span.in_scope(|| self.shared.methods.call(request, &self.caller, peer));
                                Box::pin(
                                    async move {
                                        let outcome = reply.await;
                                        id.map(|id| Response { id, outcome })
                                    }
                                    .instrument(span),
                                )
                            }
                        }
                    })
                    .collect();
                let (outbox, ended) = (self.outbox.clone(), self.ended.clone());
                tokio::spawn(
                    async move {
                        let Some(responses) = ended.run_until_cancelled(futures::future::join_all(replies)).await
                        else {
                            return;
                        };
                        let responses: Vec<Response> = responses.into_iter().flatten().collect();
                        // A batch of notifications only is answered with nothing at all.
                        if !responses.is_empty() && !outbox.is_gone() {
                            outbox.send_text(rpc::to_text(&responses)).await;
                        }
                        for sent in answered {
                            let _ = sent.send(());
                        }
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
        }
    }
}
