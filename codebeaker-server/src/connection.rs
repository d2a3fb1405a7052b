//! One WebSocket connection: a read loop that parses each text frame and starts its
//! requests, and a writer task that sends responses and notifications as they are ready.
//!
//! Requests run concurrently (each in a task of its own) and are answered by id in
//! whatever order they finish; a per-connection semaphore caps how many are in flight.
//! Everything a connection sends goes through one bounded [`Outbox`], so a client that
//! stops reading slows its own tasks down and nobody else's.
//!
//! The connection owns no session: when it ends, abruptly or not, running commands go on
//! to their end (their responses are dropped) and sessions stay open for a reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::rpc::{self, Incoming, Response, RpcError};
use crate::server::Shared;

/// Messages queued for the writer at most; past it, senders wait.
const OUTBOX_CAPACITY: usize = 256;
/// How long a closing connection waits for the client's close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The sending side of a connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Message>,
}

impl Outbox {
    /// Queues a text frame; `false` when the connection is gone.
    pub(crate) async fn send_text(&self, text: String) -> bool {
        self.tx.send(Message::text(text)).await.is_ok()
    }

    async fn close(&self, code: CloseCode, reason: String) {
        let _ = self.tx.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    }
}

/// The state of one connection's read loop.
struct Connection {
    shared: Arc<Shared>,
    outbox: Outbox,
    /// One permit per request being handled.
    in_flight: Arc<Semaphore>,
    /// One permit per KiB of request frames being handled.
    in_flight_kib: Arc<Semaphore>,
}

/// The places one frame's requests hold until they are answered.
struct InFlight {
    _requests: OwnedSemaphorePermit,
    _kib: OwnedSemaphorePermit,
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

/// Serves one upgraded connection until the client leaves or `shutdown` fires.
pub(crate) async fn serve<S>(ws: WebSocketStream<S>, shared: Arc<Shared>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(OUTBOX_CAPACITY);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.feed(message).await.is_err() {
                return;
            }
            // One flush per burst: responses that finished together share a write.
            if (closing || rx.is_empty()) && sink.flush().await.is_err() {
                return;
            }
            if closing {
                return;
            }
        }
    });
    let max_in_flight = shared.limits.max_in_flight;
    let budget = shared.limits.max_in_flight_bytes.max(shared.limits.max_message_bytes);
    let connection = Connection {
        shared,
        outbox: Outbox { tx },
        in_flight: Arc::new(Semaphore::new(max_in_flight)),
        in_flight_kib: Arc::new(Semaphore::new(kib(budget))),
    };

    let close = loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break Some(going_away()),
            message = stream.next() => message,
        };
        // Handling waits while the outbox is full (a client that does not read its
        // answers); a shutdown must not wait for that.
        match message {
            // tungstenite answers a close frame itself, on the next read: keep reading
            // until it reports the end.
            None => break None,
            Some(Ok(Message::Text(text))) => tokio::select! {
                _ = shutdown.cancelled() => break Some(going_away()),
                _ = connection.handle_text(&text) => {}
            },
            Some(Ok(Message::Binary(_))) => {
                let error = RpcError::invalid_request(
                    "binary frames are not supported; send each JSON-RPC message as a text frame",
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break Some(going_away()),
                    _ = connection.reply(Response::error(Value::Null, error)) => {}
                }
            }
            Some(Ok(_)) => {} // ping, pong (answered by tungstenite), close
            Some(Err(WsError::Capacity(error))) => {
                let limit = connection.shared.limits.max_message_bytes;
                break Some((CloseCode::Size, format!("{error}; the limit is {limit} bytes")));
            }
            Some(Err(error)) => {
                debug!(%error, "connection ended abruptly");
                break None;
            }
        }
    };

    let Some((code, reason)) = close else {
        // The client is gone: running requests finish on their own, their answers dropped.
        return;
    };
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

fn going_away() -> (CloseCode, String) {
    (CloseCode::Away, "server shutting down".to_owned())
}

impl Connection {
    /// Queues a response.
    async fn reply(&self, response: Response) {
        self.outbox.send_text(response.to_text()).await;
    }

    /// Takes places for `count` requests that arrived in a frame of `bytes` bytes, or
    /// says which per-connection limit is in the way.
    fn permit(&self, count: usize, bytes: usize) -> Result<InFlight, RpcError> {
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

    /// Parses one text frame and starts its requests.
    async fn handle_text(&self, text: &str) {
        match rpc::parse(text, &self.shared.limits) {
            Incoming::Rejected(response) => self.reply(response).await,
            Incoming::Single(Err(response)) => self.reply(*response).await,
            Incoming::Single(Ok(request)) => {
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
                let reply = self.shared.methods.call(request, &self.outbox);
                let outbox = self.outbox.clone();
                tokio::spawn(async move {
                    let outcome = reply.await;
                    if let Some(id) = id {
                        outbox.send_text(Response { id, outcome }.to_text()).await;
                    }
                    drop(permit);
                });
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
                let replies: Vec<_> = items
                    .into_iter()
                    .map(|item| -> futures::future::BoxFuture<'static, Option<Response>> {
                        match item {
                            Err(response) => Box::pin(futures::future::ready(Some(*response))),
                            Ok(request) => {
                                let id = request.id.clone();
                                let reply = self.shared.methods.call(request, &self.outbox);
                                Box::pin(async move {
                                    let outcome = reply.await;
                                    id.map(|id| Response { id, outcome })
                                })
                            }
                        }
                    })
                    .collect();
                let outbox = self.outbox.clone();
                tokio::spawn(async move {
                    let responses: Vec<Response> =
                        futures::future::join_all(replies).await.into_iter().flatten().collect();
                    // A batch of notifications only is answered with nothing at all.
                    if !responses.is_empty() {
                        outbox.send_text(rpc::to_text(&responses)).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}
