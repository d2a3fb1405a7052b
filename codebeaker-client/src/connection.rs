//! One WebSocket to the server: requests out, and a reader task that hands each answer
//! (and each `session.output` notification) to the call waiting for it, and each
//! `process.output`/`process.exit` notification to the process handle reading it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{ClientError, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Who waits for the answer to one request id.
pub(crate) enum Waiter {
    /// A plain call: the response object.
    Response(oneshot::Sender<Value>),
    /// A streamed call: its `session.output` notifications' params, then the response.
    Stream(mpsc::UnboundedSender<Value>),
    /// A call that attaches this connection to a process (`process.start`,
    /// `process.attach`): the response, and where that process's notifications go. The
    /// reader registers the process as it routes the response, before it reads on, and
    /// the server sends no notification of it before the response: none is missed.
    Attach {
        /// The process's session.
        session: String,
        /// The response.
        response: oneshot::Sender<Value>,
        /// The process's notifications' params (method name added as `method`).
        events: mpsc::UnboundedSender<Value>,
    },
}

/// The requests of a connection still waiting for their answers.
#[derive(Default)]
struct Pending {
    /// Set once the reader ended: nothing will be answered any more.
    closed: bool,
    waiters: HashMap<u64, Waiter>,
    /// The processes this connection is attached to, by session and pid.
    processes: HashMap<(String, u64), mpsc::UnboundedSender<Value>>,
}

/// An open WebSocket to the server.
pub(crate) struct Connection {
    sink: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    pending: Arc<Mutex<Pending>>,
    reader: JoinHandle<()>,
}

impl Connection {
    /// Opens the WebSocket at `url`, with `token` as a bearer token.
    pub(crate) async fn open(url: &str, token: Option<&str>) -> Result<Connection> {
        let connect_error = |source: tungstenite::Error| match &source {
            tungstenite::Error::Http(response)
                if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) =>
            {
                ClientError::Authentication
            }
            _ => ClientError::Connect { url: url.to_owned(), source: Box::new(source) },
        };
        let mut request = url.into_client_request().map_err(connect_error)?;
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::Protocol("the token is not a valid HTTP header value".into()))?;
            request.headers_mut().insert("Authorization", value);
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await.map_err(connect_error)?;
        let (sink, stream) = socket.split();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let reader = tokio::spawn(read(stream, pending.clone()));
        Ok(Connection { sink: tokio::sync::Mutex::new(sink), pending, reader })
    }

    /// Whether the socket is still open (as far as the reader has seen).
    pub(crate) fn is_open(&self) -> bool {
        !lock(&self.pending).closed
    }

    /// Sends `message` (a request or a batch) once `waiters` are registered for its ids.
    pub(crate) async fn send(&self, message: &Value, waiters: Vec<(u64, Waiter)>) -> Result<()> {
        let ids: Vec<u64> = waiters.iter().map(|(id, _)| *id).collect();
        {
            let mut pending = lock(&self.pending);
            if pending.closed {
                return Err(ClientError::Disconnected);
            }
            pending.waiters.extend(waiters);
        }
        let sent = self.sink.lock().await.send(Message::text(message.to_string())).await;
        if sent.is_err() {
            let mut pending = lock(&self.pending);
            for id in ids {
                pending.waiters.remove(&id);
            }
            return Err(ClientError::Disconnected);
        }
        Ok(())
    }

    /// Forgets the waiter of `id` (its caller gave up).
    pub(crate) fn forget(&self, id: u64) {
        lock(&self.pending).waiters.remove(&id);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the socket until it ends, handing every answer to its waiter; then fails the
/// waiters left (dropping their senders is what tells them).
async fn read(mut stream: SplitStream<Socket>, pending: Arc<Mutex<Pending>>) {
    while let Some(message) = stream.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                tracing::debug!(?frame, "the server closed the connection");
                break;
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "the connection failed");
                break;
            }
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(answers)) => answers.into_iter().for_each(|answer| route(&pending, answer)),
            Ok(answer) => route(&pending, answer),
            Err(error) => tracing::warn!(%error, "the server sent a frame that is not JSON"),
        }
    }
    let mut pending = lock(&pending);
    pending.closed = true;
    pending.waiters.clear();
    pending.processes.clear();
}

/// The session and pid a process notification is about.
fn process_key(params: &Value) -> Option<(String, u64)> {
    Some((params.get("sessionId")?.as_str()?.to_owned(), params.get("pid")?.as_u64()?))
}

/// Hands one response or notification to whoever waits for it.
fn route(pending: &Mutex<Pending>, answer: Value) {
    if answer.get("method").and_then(Value::as_str) == Some("session.output") {
        let Some(params) = answer.get("params") else { return };
        let Some(id) = params.get("requestId").and_then(Value::as_u64) else { return };
        if let Some(Waiter::Stream(events)) = lock(pending).waiters.get(&id) {
            let _ = events.send(params.clone());
        }
        return;
    }
    if let Some(method @ ("process.output" | "process.exit")) = answer.get("method").and_then(Value::as_str) {
        let Some(mut params) = answer.get("params").cloned() else { return };
        let key = process_key(&params);
        params["method"] = Value::String(method.to_owned());
        let mut pending = lock(pending);
        if let Some(events) = key.as_ref().and_then(|key| pending.processes.get(key)) {
            if events.send(params).is_err() || method == "process.exit" {
                // Its reader is gone, or this was the last event.
                key.map(|key| pending.processes.remove(&key));
            }
        }
        return;
    }
    let Some(id) = answer.get("id").and_then(Value::as_u64) else {
        tracing::warn!(%answer, "the server sent an answer to no request of ours");
        return;
    };
    let mut pending = lock(pending);
    match pending.waiters.remove(&id) {
        Some(Waiter::Response(waiter)) => {
            let _ = waiter.send(answer);
        }
        Some(Waiter::Stream(events)) => {
            let _ = events.send(answer);
        }
        Some(Waiter::Attach { session, response, events }) => {
            if let Some(pid) = answer.get("result").and_then(|result| result.get("pid")).and_then(Value::as_u64) {
                pending.processes.insert((session, pid), events);
            }
            let _ = response.send(answer);
        }
        None => tracing::debug!(id, "an answer came for a request nobody waits for any more"),
    }
}
