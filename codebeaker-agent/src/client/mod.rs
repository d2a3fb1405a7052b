//! The host side: [`AgentClient`] talks to one agent over one byte stream.
//!
//! A reader task routes every incoming frame by id to the request waiting for it; a
//! writer task serialises outgoing frames. The agent is untrusted (guest code can kill,
//! starve or impersonate it), so: frames for ids nobody waits for are dropped, every call
//! has a deadline, a frame that breaks the protocol closes the channel with a reason
//! every waiting call receives, and no call can hang once the channel is gone.

mod calls;
mod tunnel;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use calls::{CodeEvent, CodeOutput, CodeStream, ExecEvent, ExecOutput, ExecStream};

use crate::protocol::{
    AgentHello, AgentMessage, ErrorReply, Frame, FrameKind, FsReply, FsRequest, HostMessage, ProtocolError,
    TunnelReply, AGENT_ID_BIT, DEFAULT_MAX_FRAME, PROTOCOL_VERSION,
};
use crate::transport::{FrameReader, FrameWriter, Transport};

/// Tuning of an [`AgentClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Largest frame body accepted or sent.
    pub max_frame: u32,
    /// Deadline of calls without their own timeout (handshake, ping, file operations).
    pub call_timeout: Duration,
    /// Time an exec or run_code may take beyond its own timeout before the call gives up
    /// on the agent (the agent answers within its timeout + 1 s when healthy).
    pub reply_grace: Duration,
    /// Frames buffered per call before the reader waits for the caller to consume them.
    pub call_queue: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_frame: DEFAULT_MAX_FRAME,
            call_timeout: Duration::from_secs(30),
            reply_grace: Duration::from_secs(3),
            call_queue: 256,
        }
    }
}

/// Why a call to the agent failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent refused or failed the request (a typed, user-facing error).
    #[error(transparent)]
    Remote(#[from] ErrorReply),
    /// The channel to the agent is gone (agent dead, stream closed, protocol broken).
    #[error("agent channel closed: {0}")]
    Closed(String),
    /// The agent did not answer in time.
    #[error("agent did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The agent answered with a message that does not fit the request.
    #[error("agent answered out of protocol: {0}")]
    Unexpected(String),
    /// The request could not be encoded or sent.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl From<AgentError> for codebeaker::Error {
    fn from(err: AgentError) -> Self {
        match err {
            AgentError::Remote(reply) => reply.into(),
            AgentError::Closed(reason) => codebeaker::Error::SandboxFailed(format!("agent channel closed: {reason}")),
            other => codebeaker::Error::SandboxFailed(other.to_string()),
        }
    }
}

/// One item a call (or an accepted tunnel) receives from the agent.
#[derive(Debug)]
pub enum Inbound {
    /// A message under the call's id.
    Message(AgentMessage),
    /// Data under the call's id.
    Data {
        /// `Stdout`, `Stderr` or `TunnelData`.
        kind: FrameKind,
        /// The bytes.
        bytes: Vec<u8>,
        /// The last data of its stream (`FLAG_END`).
        end: bool,
    },
}

/// What a caller gets back from [`AgentClient::take_tunnel_requests`]: a connection the
/// agent's proxy asked for, to accept or refuse.
#[derive(Debug)]
pub struct TunnelRequest {
    /// The tunnel's id (agent-assigned).
    pub id: u64,
    /// Where the program wants to go.
    pub open: crate::protocol::TunnelOpen,
}

struct Shared {
    config: ClientConfig,
    outgoing: mpsc::Sender<Frame>,
    pending: Mutex<HashMap<u64, mpsc::Sender<Inbound>>>,
    closed: Mutex<Option<String>>,
    next_id: AtomicU64,
    tunnels: Mutex<Option<mpsc::Sender<TunnelRequest>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

/// A connection to one agent. Cheap to clone; the reader and writer tasks stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct AgentClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").field("closed", &self.closed_reason()).finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Starts the client on a bidirectional stream and performs the handshake.
    pub async fn connect<T: Transport>(
        stream: T,
        config: ClientConfig,
    ) -> Result<(AgentClient, AgentHello), AgentError> {
        let (reader, writer) = tokio::io::split(stream);
        Self::connect_split(reader, writer, config).await
    }

    /// Starts the client on separate read and write halves (a Docker attach's output and
    /// input) and performs the handshake.
    pub async fn connect_split<R, W>(
        reader: R,
        writer: W,
        config: ClientConfig,
    ) -> Result<(AgentClient, AgentHello), AgentError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let client = Self::start(reader, writer, config);
        let hello = client.hello().await?;
        Ok((client, hello))
    }

    /// Starts the reader and writer tasks without a handshake.
    pub fn start<R, W>(reader: R, writer: W, config: ClientConfig) -> AgentClient
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (outgoing, outgoing_rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            outgoing,
            pending: Mutex::new(HashMap::new()),
            closed: Mutex::new(None),
            next_id: AtomicU64::new(1),
            tunnels: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            config,
        });
        let max_frame = shared.config.max_frame;
        let weak = Arc::downgrade(&shared);
        let write_task = tokio::spawn(write_loop(FrameWriter::new(writer, max_frame), outgoing_rx, weak.clone()));
        let read_task = tokio::spawn(read_loop(FrameReader::new(reader, max_frame), weak));
        shared.tasks.lock().unwrap_or_else(PoisonError::into_inner).extend([write_task, read_task]);
        AgentClient { shared }
    }

    /// Performs the version handshake.
    pub async fn hello(&self) -> Result<AgentHello, AgentError> {
        let message = HostMessage::Hello { protocol: PROTOCOL_VERSION, host: env!("CARGO_PKG_VERSION").to_owned() };
        match self.unary(&message).await? {
            AgentMessage::Hello(hello) if hello.protocol == PROTOCOL_VERSION => Ok(hello),
            AgentMessage::Hello(hello) => Err(AgentError::Protocol(ProtocolError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: hello.protocol,
            })),
            other => Err(unexpected("hello", &other)),
        }
    }

    /// A liveness check: the round trip's duration.
    pub async fn ping(&self) -> Result<Duration, AgentError> {
        let started = std::time::Instant::now();
        match self.unary(&HostMessage::Ping).await? {
            AgentMessage::Pong => Ok(started.elapsed()),
            other => Err(unexpected("ping", &other)),
        }
    }

    /// A file operation.
    pub async fn fs(&self, request: FsRequest) -> Result<FsReply, AgentError> {
        match self.unary(&HostMessage::Fs(request)).await? {
            AgentMessage::Fs(reply) => Ok(reply),
            other => Err(unexpected("fs", &other)),
        }
    }

    /// Why the channel closed, once it has.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.closed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Receives the agent's egress tunnel requests from now on. Until this is called (or
    /// after the receiver is dropped) every tunnel is refused as egress being off.
    pub fn take_tunnel_requests(&self) -> mpsc::Receiver<TunnelRequest> {
        let (tx, rx) = mpsc::channel(64);
        *self.shared.tunnels.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Accepts a tunnel request: the returned receiver gets the tunnel's data
    /// (`TunnelData`) and the agent's `tunnel_close`.
    pub async fn accept_tunnel(&self, id: u64) -> Result<mpsc::Receiver<Inbound>, AgentError> {
        let (_, rx) = self.register(id)?;
        let reply = TunnelReply { accepted: true, message: None };
        self.send(Frame::message(id, &HostMessage::TunnelReply(reply))?).await?;
        Ok(rx)
    }

    /// Refuses a tunnel request; `message` is what the program is told.
    pub async fn refuse_tunnel(&self, id: u64, message: String) -> Result<(), AgentError> {
        let reply = TunnelReply { accepted: false, message: Some(message) };
        self.send(Frame::message(id, &HostMessage::TunnelReply(reply))?).await
    }

    /// Sends tunnel bytes to the agent (`end` half-closes).
    pub async fn send_tunnel_data(&self, id: u64, bytes: Vec<u8>, end: bool) -> Result<(), AgentError> {
        self.send(Frame::data(FrameKind::TunnelData, id, bytes, end)).await
    }

    /// Closes a tunnel from the host side.
    pub async fn close_tunnel(&self, id: u64, reason: Option<String>) -> Result<(), AgentError> {
        self.unregister(id);
        self.send(Frame::message(id, &HostMessage::TunnelClose { reason })?).await
    }

    /// Asks the agent to stop request `id` (kill its process group or interrupt code).
    pub async fn cancel(&self, id: u64) -> Result<(), AgentError> {
        self.send(Frame::message(id, &HostMessage::Cancel)?).await
    }

    /// Sends bytes to a running exec's stdin (`end` closes it).
    pub async fn send_stdin(&self, id: u64, bytes: Vec<u8>, end: bool) -> Result<(), AgentError> {
        self.send(Frame::data(FrameKind::Stdin, id, bytes, end)).await
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// Sends a request and waits for its one terminal reply (errors become `Remote`).
    async fn unary(&self, message: &HostMessage) -> Result<AgentMessage, AgentError> {
        let (id, mut rx) = self.request(message).await?;
        let timeout = self.shared.config.call_timeout;
        let reply = tokio::time::timeout(timeout, async {
            loop {
                match rx.recv().await {
                    Some(Inbound::Message(message)) if message.is_terminal() => return Ok(message),
                    Some(_) => continue,
                    None => return Err(self.closed_error()),
                }
            }
        })
        .await;
        self.unregister(id);
        match reply.map_err(|_| AgentError::TimedOut(timeout))?? {
            AgentMessage::Error(reply) => Err(AgentError::Remote(reply)),
            message => Ok(message),
        }
    }

    /// Registers a fresh id and sends `message` under it.
    pub(crate) async fn request(&self, message: &HostMessage) -> Result<(u64, mpsc::Receiver<Inbound>), AgentError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed) & !AGENT_ID_BIT;
        let (_, rx) = self.register(id)?;
        let frame = Frame::message(id, message)?;
        if let Err(e) = self.send(frame).await {
            self.unregister(id);
            return Err(e);
        }
        Ok((id, rx))
    }

    fn register(&self, id: u64) -> Result<(mpsc::Sender<Inbound>, mpsc::Receiver<Inbound>), AgentError> {
        let (tx, rx) = mpsc::channel(self.shared.config.call_queue);
        // Checked under the pending lock: the reader clears the map under the same lock
        // after recording the reason, so a call can't register into a dead channel.
        let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reason) = self.closed_reason() {
            return Err(AgentError::Closed(reason));
        }
        pending.insert(id, tx.clone());
        Ok((tx, rx))
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    pub(crate) fn try_send(&self, frame: Frame) {
        // Best effort from synchronous contexts (a dropped call's cancel).
        let _ = self.shared.outgoing.try_send(frame);
    }

    pub(crate) async fn send(&self, frame: Frame) -> Result<(), AgentError> {
        self.shared.outgoing.send(frame).await.map_err(|_| self.closed_error())
    }

    pub(crate) fn closed_error(&self) -> AgentError {
        AgentError::Closed(self.closed_reason().unwrap_or_else(|| "the agent stopped answering".to_owned()))
    }
}

fn unexpected(call: &str, message: &AgentMessage) -> AgentError {
    AgentError::Unexpected(format!("{call} was answered with {message:?}"))
}

/// Records why the channel closed and wakes every waiting call.
fn close(shared: &Shared, reason: String) {
    let mut pending = shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
    let mut closed = shared.closed.lock().unwrap_or_else(PoisonError::into_inner);
    if closed.is_none() {
        tracing::warn!(%reason, "agent channel closed");
        *closed = Some(reason);
    }
    pending.clear();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FrameWriter<W>,
    mut frames: mpsc::Receiver<Frame>,
    shared: std::sync::Weak<Shared>,
) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = writer.send(&frame).await {
            if let Some(shared) = shared.upgrade() {
                close(&shared, format!("writing to the agent failed: {e}"));
            }
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: FrameReader<R>, shared: std::sync::Weak<Shared>) {
    let reason = loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break "the agent closed its stream".to_owned(),
            Err(e) => break format!("the agent broke the protocol: {e}"),
        };
        let Some(shared) = shared.upgrade() else { return };
        let incoming = if frame.kind == FrameKind::Message {
            match frame.parse::<AgentMessage>() {
                Ok(AgentMessage::TunnelOpen(open)) if frame.id & AGENT_ID_BIT != 0 => {
                    offer_tunnel(&shared, frame.id, open);
                    continue;
                }
                Ok(message) => Inbound::Message(message),
                Err(e) => break format!("the agent broke the protocol: {e}"),
            }
        } else if matches!(frame.kind, FrameKind::Stdout | FrameKind::Stderr | FrameKind::TunnelData) {
            Inbound::Data { kind: frame.kind, end: frame.is_end(), bytes: frame.body }
        } else {
            break format!("the agent sent a {:?} frame, which only the host sends", frame.kind);
        };
        let sender = shared.pending.lock().unwrap_or_else(PoisonError::into_inner).get(&frame.id).cloned();
        match sender {
            // Waits when the caller is slow: backpressure on the agent, not a growing heap.
            Some(sender) => {
                if sender.send(incoming).await.is_err() {
                    shared.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&frame.id);
                }
            }
            None => tracing::debug!(id = frame.id, "dropped an agent frame for no pending request"),
        }
    };
    if let Some(shared) = shared.upgrade() {
        close(&shared, reason);
    }
}

/// Hands a tunnel request to whoever took the receiver, or refuses it as egress off.
fn offer_tunnel(shared: &Shared, id: u64, open: crate::protocol::TunnelOpen) {
    let target = format!("{}:{}", open.host, open.port);
    let handler = shared.tunnels.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let offered = handler.is_some_and(|tx| tx.try_send(TunnelRequest { id, open }).is_ok());
    if !offered {
        let reply = TunnelReply {
            accepted: false,
            message: Some(format!("egress to {target} is not allowed: egress is off for this session")),
        };
        if let Ok(frame) = Frame::message(id, &HostMessage::TunnelReply(reply)) {
            let _ = shared.outgoing.try_send(frame);
        }
    }
}
