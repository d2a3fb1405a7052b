//! A typed async client of the CodeBeaker server, in two shapes over one connection
//! code: the E2B-shaped [`Sandbox`], whose names are the Python and TypeScript SDKs'
//! (snake_case, as in Python), and the protocol-shaped [`Client`], a method per
//! JSON-RPC method of `docs/protocol.md` over the SDK's own types.
//!
//! ```no_run
//! # async fn demo() -> codebeaker_client::Result<()> {
//! use codebeaker_client::{ClientError, CreateOptions, Sandbox};
//!
//! let sb = Sandbox::create(CreateOptions::new("python").url("ws://127.0.0.1:5000")).await?;
//! let execution = sb.run_code("x = 41\nprint('hello')\nx + 1").await?;
//! println!("{:?} {:?} {:?}", execution.text(), execution.logs.stdout, execution.error);
//! sb.files().write("data.bin", [0u8, 1]).await?;
//! assert_eq!(sb.files().read_bytes("data.bin").await?, [0, 1]);
//! match sb.commands().run("ls -l | wc -l").await {
//!     Ok(done) => print!("{}", done.stdout),
//!     Err(ClientError::CommandExit { exit_code, stderr, .. }) => eprintln!("exit {exit_code}: {stderr}"),
//!     Err(error) if error.is_timeout() => eprintln!("too slow: {error}"),
//!     Err(error) => return Err(error),
//! }
//! let server = sb.commands().run_background("python3 -m http.server 8000").await?;
//! server.kill().await?;
//! sb.close().await?;
//! # Ok(()) }
//! ```
//!
//! The server's URL comes from [`CreateOptions::url`] or `CODEBEAKER_URL` (default
//! `ws://127.0.0.1:5000`), its token from [`CreateOptions::token`] or `CODEBEAKER_TOKEN`.
//! See the [`sandbox`] module for the SDKs' calls and their names here, and [`error`]
//! for the SDKs' error classes: `CodeBeakerError` is [`ClientError`], `TimeoutError`
//! [`ClientError::is_timeout`] (a client-side wait: [`ClientError::Timeout`]),
//! `SessionNotFoundError` [`ClientError::is_session_not_found`], `AuthenticationError`
//! [`ClientError::Authentication`], `RateLimitedError` [`ClientError::is_rate_limited`]
//! (with [`ClientError::retry_after`]), `CommandExitError` [`ClientError::CommandExit`].
//!
//! The protocol-shaped client: [`SessionConfig`] and [`Command`] in,
//! [`CommandOutcome`](codebeaker::CommandOutcome) and [`SessionInfo`] out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), codebeaker_client::ClientError> {
//! use codebeaker::{Command, Language, SessionConfig};
//! use codebeaker_client::{Client, OutputEvent};
//! use futures::StreamExt as _;
//!
//! let client = Client::connect("ws://127.0.0.1:5000/ws/jsonrpc").token("secret").await?;
//! let session = client.create(SessionConfig::new(Language::TypeScript)).await?;
//! let outcome = session.execute(Command::code("console.log(6 * 7)")).await?;
//! assert_eq!(outcome.output(), Some("42"));
//!
//! let mut events = session.execute_stream(Command::code("console.log('a'); console.log('b')")).await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         OutputEvent::Output(chunk) => print!("{}", chunk.data),
//!         OutputEvent::Finished(outcome) => println!("done: {}", outcome?.is_success()),
//!     }
//! }
//! session.close().await?;
//! # Ok(()) }
//! ```
//!
//! **Background processes.** [`RemoteSession::start_process`] starts one and returns a
//! [`RemoteProcess`] reading its output as it comes; after a lost connection,
//! [`RemoteSession::attach_process`] reads on from the offset where the reader stopped
//! (the server keeps the newest output of each process). A [`CommandHandle`] does that
//! by itself.
//!
//! **Reconnects.** A lost connection fails the calls waiting on it with
//! [`ClientError::Disconnected`] (they may have run); the next call opens a new
//! connection, retrying with exponential backoff. Sessions live on the server, so a
//! [`RemoteSession`] (and a [`Sandbox`]) keeps working across reconnects (until closed
//! or expired).

#![warn(missing_docs)]

mod batch;
mod connection;
pub mod error;
mod process;
pub mod sandbox;
mod session;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Command, SessionConfig, SessionId, SessionInfo};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

pub use crate::batch::{Batch, BatchReply};
use crate::connection::{Connection, Waiter};
pub use crate::error::{ClientError, Result};
pub use crate::process::RemoteProcess;
pub use crate::sandbox::{
    CommandHandle, CommandResult, ConnectOptions, CreateOptions, EntryInfo, Execution, ExecutionError, Logs,
    OutputOptions, PtyOptions, RunOptions, Sandbox,
};
pub use crate::session::{CreatedSession, ForkedSession, OutputEvent, OutputEvents, RemoteSession};

/// How often and how patiently a lost connection is opened again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts before a call gives up with [`ClientError::Connect`] (at least 1).
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub initial: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { attempts: 5, initial: Duration::from_millis(100), max: Duration::from_secs(2) }
    }
}

/// A connection to a CodeBeaker server. Cheap to clone; clones share the connection.
/// Requests run concurrently over it and are matched to their answers by id.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    token: Option<String>,
    backoff: Backoff,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    next_id: AtomicU64,
}

/// The settings of a [`Client`] to connect; `.await` it to connect.
#[derive(Debug, Clone)]
#[must_use = "a ClientBuilder connects only when awaited"]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    backoff: Backoff,
}

impl ClientBuilder {
    /// Presents `token` as `Authorization: Bearer TOKEN` (the server's `--token`, or a
    /// tenant's key).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How a lost connection is opened again (and the first one, too).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Opens the connection. A refused token is [`ClientError::Authentication`] at once.
    pub async fn connect(self) -> Result<Client> {
        let client = Client {
            inner: Arc::new(Inner {
                url: self.url,
                token: self.token,
                backoff: self.backoff,
                connection: tokio::sync::Mutex::new(None),
                next_id: AtomicU64::new(1),
            }),
        };
        client.connection().await?;
        Ok(client)
    }
}

impl IntoFuture for ClientBuilder {
    type Output = Result<Client>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Client>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.connect())
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.inner.url).finish_non_exhaustive()
    }
}

/// `session.list`'s result.
#[derive(Deserialize)]
struct Listed {
    sessions: Vec<SessionInfo>,
}

impl Client {
    /// A client of the server at `url` (`ws://host:port/ws/jsonrpc`): set a token or a
    /// backoff on the builder, then `.await` it.
    pub fn connect(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder { url: url.into(), token: None, backoff: Backoff::default() }
    }

    /// Creates a session (`session.create`). Only the settings that differ from
    /// [`SessionConfig::new`]'s defaults are sent, so the server's own defaults (its
    /// command timeout) apply to the rest.
    pub async fn create(&self, config: SessionConfig) -> Result<RemoteSession> {
        let created = self.call("session.create", create_params(&config)?).await?;
        Ok(RemoteSession::new(self.clone(), serde_json::from_value(created)?))
    }

    /// A handle on an existing session by id (one created earlier, or by another client
    /// with the same token). Nothing is asked of the server until it is used.
    pub fn session(&self, id: SessionId) -> RemoteSession {
        RemoteSession::attach(self.clone(), id)
    }

    /// The open sessions this client may see (`session.list`), oldest first.
    pub async fn list(&self) -> Result<Vec<SessionInfo>> {
        let listed: Listed = serde_json::from_value(self.call("session.list", json!({})).await?)?;
        Ok(listed.sessions)
    }

    /// Closes the session `id` (`session.close`).
    pub async fn close_session(&self, id: &SessionId) -> Result<()> {
        self.call("session.close", json!({"sessionId": id})).await.map(drop)
    }

    /// Runs `code` once in a fresh sandbox of `language` (`execution.run`).
    pub async fn run_once(
        &self,
        language: codebeaker::Language,
        code: impl Into<String>,
    ) -> Result<codebeaker::CommandOutcome> {
        let outcome = self.call("execution.run", json!({"language": language, "code": code.into()})).await?;
        Ok(serde_json::from_value(outcome)?)
    }

    /// The snapshots this client's tenant owns (`snapshot.list`), oldest first.
    pub async fn snapshots(&self) -> Result<Vec<codebeaker::snapshot::SnapshotInfo>> {
        Ok(serde_json::from_value(self.call("snapshot.list", json!({})).await?)?)
    }

    /// Deletes a snapshot (`snapshot.delete`).
    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.call("snapshot.delete", json!({"snapshotId": snapshot_id})).await.map(drop)
    }

    /// A batch of requests sent as one message (a JSON-RPC batch).
    pub fn batch(&self) -> Batch {
        Batch::new(self.clone())
    }

    /// The `result` of one call, or its error.
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id();
        let (sender, receiver) = oneshot::channel();
        let connection = self.connection().await?;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        connection.send(&request, vec![(id, Waiter::Response(sender))]).await?;
        let _forget = Forget { connection: &connection, id };
        result_of(receiver.await.map_err(|_| ClientError::Disconnected)?)
    }

    /// Sends a streamed call; its notifications' params and then its response arrive on
    /// the returned channel.
    pub(crate) async fn call_streamed(&self, method: &str, params: Value) -> Result<mpsc::UnboundedReceiver<Value>> {
        let id = self.next_id();
        let (sender, receiver) = mpsc::unbounded_channel();
        let connection = self.connection().await?;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        connection.send(&request, vec![(id, Waiter::Stream(sender))]).await?;
        Ok(receiver)
    }

    /// Sends a call that attaches this connection to a process (`process.start`,
    /// `process.attach`) of `session`: its result, and the process's notifications.
    pub(crate) async fn call_attaching(
        &self,
        method: &str,
        session: &SessionId,
        params: Value,
    ) -> Result<(Value, mpsc::UnboundedReceiver<Value>)> {
        let id = self.next_id();
        let (response, receiver) = oneshot::channel();
        let (events, notifications) = mpsc::unbounded_channel();
        let connection = self.connection().await?;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let waiter = Waiter::Attach { session: session.to_string(), response, events };
        connection.send(&request, vec![(id, waiter)]).await?;
        let _forget = Forget { connection: &connection, id };
        let result = result_of(receiver.await.map_err(|_| ClientError::Disconnected)?)?;
        Ok((result, notifications))
    }

    /// Sends `requests` (method and params) as one batch; the responses in their order.
    pub(crate) async fn call_batch(&self, requests: Vec<(&'static str, Value)>) -> Result<Vec<Result<Value>>> {
        let connection = self.connection().await?;
        let mut waiters = Vec::with_capacity(requests.len());
        let mut receivers = Vec::with_capacity(requests.len());
        let mut message = Vec::with_capacity(requests.len());
        for (method, params) in requests {
            let id = self.next_id();
            let (sender, receiver) = oneshot::channel();
            waiters.push((id, Waiter::Response(sender)));
            receivers.push(receiver);
            message.push(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        }
        connection.send(&Value::Array(message), waiters).await?;
        let mut results = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            results.push(receiver.await.map_err(|_| ClientError::Disconnected).and_then(result_of));
        }
        Ok(results)
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The open connection, opened again (with backoff) when the last one was lost.
    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.is_open()) {
            return Ok(connection.clone());
        }
        let backoff = self.inner.backoff;
        let mut wait = backoff.initial;
        let mut attempt = 1;
        let connection = loop {
            match Connection::open(&self.inner.url, self.inner.token.as_deref()).await {
                Ok(connection) => break Arc::new(connection),
                Err(ClientError::Connect { url, source }) if attempt < backoff.attempts => {
                    tracing::debug!(%url, attempt, error = %source, "connecting failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(backoff.max);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// Forgets a call's waiter when the call ends, also when it is dropped before its answer.
struct Forget<'a> {
    connection: &'a Connection,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.connection.forget(self.id);
    }
}

/// The `result` of a response, or its error.
pub(crate) fn result_of(mut response: Value) -> Result<Value> {
    if let Some(error) = response.get("error") {
        return Err(ClientError::from_rpc(error));
    }
    match response.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(ClientError::Protocol(format!("a response with neither result nor error: {response}"))),
    }
}

/// `session.create` params: the language, and the settings that differ from its defaults.
pub(crate) fn create_params(config: &SessionConfig) -> Result<Value> {
    let defaults = serde_json::to_value(SessionConfig::new(config.language))?;
    let mut params = serde_json::to_value(config)?;
    if let (Some(params), Some(defaults)) = (params.as_object_mut(), defaults.as_object()) {
        params.retain(|key, value| key == "language" || defaults.get(key) != Some(value));
    }
    Ok(params)
}

/// `session.execute` params.
pub(crate) fn execute_params(id: &SessionId, command: &Command, timeout: Option<Duration>, stream: bool) -> Value {
    // Typed outcomes: the error's kind travels beside its message.
    let mut params = json!({"sessionId": id, "command": command, "errorKinds": true});
    if let Some(timeout) = timeout {
        params["timeoutMs"] = json!(timeout.as_millis() as u64);
    }
    if stream {
        params["stream"] = json!(true);
    }
    params
}
