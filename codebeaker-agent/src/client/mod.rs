//! The host side: [`AgentClient`] talks to one agent over one byte stream.
//!
//! A reader task routes every incoming frame by id to the request waiting for it; a
//! writer task serialises outgoing frames. The agent is untrusted (guest code can kill,
//! starve or impersonate it), so: frames for ids nobody waits for are dropped, every call
//! has a deadline, what the host holds of the agent's frames is bounded in bytes per
//! call, per tunnel, per session and per server (`buffers`), a frame that breaks the
//! protocol closes the channel with a reason every waiting call receives, and no call
//! can hang once the channel is gone.

mod buffers;
mod calls;
mod tunnel;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use buffers::{BufferPool, InboundQueue, DEFAULT_SERVER_BUFFER};
pub use calls::{
    CodeEvent, CodeOutput, CodeStream, ExecControl, ExecEvent, ExecOutput, ExecStream, FileDownload, FileUpload,
};
pub use tunnel::{Charge, Relay};

use buffers::Queued;

use crate::protocol::{
    AgentHello, AgentMessage, ErrorReply, Frame, FrameKind, FsReply, FsRequest, HostMessage, ProtocolError,
    TunnelReply, AGENT_ID_BIT, DEFAULT_MAX_FRAME, MAX_DATA_CHUNK, PROTOCOL_VERSION,
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
    /// Bytes of the agent's frames held for one call before the reader waits for the
    /// caller to take them.
    pub call_buffer: u32,
    /// Bytes held for one tunnel that its destination has not taken yet; more cuts the
    /// tunnel.
    pub tunnel_buffer: u32,
    /// Bytes held for all calls and tunnels of this client (one session) together.
    pub session_buffer: u32,
    /// The pool every client of the server draws from (by default the process's).
    pub server_buffer: BufferPool,
    /// How long one write of a tunnel's relay may wait for the destination or the agent
    /// to take the bytes before the tunnel is closed.
    pub write_timeout: Duration,
    /// Join a stream mid-way: skip whatever precedes the agent's answer to the
    /// handshake (for re-attaching to a running agent, whose output while nobody listened
    /// may have been cut anywhere). At most this many bytes are skipped; `None` for a
    /// fresh agent, whose first byte must start a frame.
    pub resync: Option<usize>,
    /// How long the agent's egress proxy waits for a program's request head and for the
    /// verdict on it: the operator's `tunnel-decision-ms`, told to the agent in the hello.
    pub tunnel_decision: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_frame: DEFAULT_MAX_FRAME,
            call_timeout: Duration::from_secs(30),
            reply_grace: Duration::from_secs(3),
            call_buffer: 8 * 1024 * 1024,
            tunnel_buffer: 1024 * 1024,
            session_buffer: 32 * 1024 * 1024,
            server_buffer: BufferPool::process(),
            write_timeout: Duration::from_secs(30),
            resync: None,
            tunnel_decision: Duration::from_millis(codebeaker::policy::DEFAULT_TUNNEL_DECISION_MS),
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
            // The failure of the link is the source of the sandbox's failure.
            other => codebeaker::Error::sandbox_failed(other.to_string()).with_source(other),
        }
    }
}

/// One item a call (or an accepted tunnel) receives from the agent.
#[derive(Debug)]
pub enum Inbound {
    /// The host stopped routing frames to this tunnel, and why (the agent sent more than
    /// its buffer holds, or more than the egress byte cap allows).
    Cut(String),
    /// A message under the call's id.
    Message(AgentMessage),
    /// Data under the call's id.
    Data {
        /// `Stdout`, `Stderr` or `TunnelData`.
        kind: FrameKind,
        /// The bytes. An empty chunk of `TunnelData` is the agent's half-close: the
        /// program finished sending (the frame carried `FLAG_END`).
        bytes: Vec<u8>,
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

/// Where the reader sends the frames of one id, and what bounds them.
#[derive(Clone)]
struct Route {
    tx: mpsc::UnboundedSender<Queued>,
    /// The call's or tunnel's own bytes.
    pool: BufferPool,
    kind: RouteKind,
    /// Set when the reader cut this route (a tunnel over its bounds): why.
    cut: Arc<watch::Sender<Option<String>>>,
}

/// What a route's frames are for.
#[derive(Clone)]
enum RouteKind {
    /// A call: when its bytes are full, the reader waits for the caller.
    Call,
    /// A tunnel: when its bytes are full it is cut; `charge` (the egress byte cap) is
    /// charged for each chunk toward the destination as it is queued.
    Tunnel { charge: Option<Charge> },
}

struct Shared {
    config: ClientConfig,
    outgoing: mpsc::Sender<Frame>,
    pending: Mutex<HashMap<u64, Route>>,
    /// The session's bytes: every route of this client draws from it.
    session_pool: BufferPool,
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
            session_pool: BufferPool::new(config.session_buffer),
            closed: Mutex::new(None),
            next_id: AtomicU64::new(first_id()),
            tunnels: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            config,
        });
        let max_frame = shared.config.max_frame;
        let resync = shared.config.resync;
        let weak = Arc::downgrade(&shared);
        let write_task = tokio::spawn(write_loop(FrameWriter::new(writer, max_frame), outgoing_rx, weak.clone()));
        let read_task = tokio::spawn(read_loop(FrameReader::new(reader, max_frame), weak, resync));
        shared.tasks.lock().unwrap_or_else(PoisonError::into_inner).extend([write_task, read_task]);
        AgentClient { shared }
    }

    /// Performs the version handshake.
    pub async fn hello(&self) -> Result<AgentHello, AgentError> {
        let tunnel_decision_ms = u64::try_from(self.config().tunnel_decision.as_millis()).unwrap_or(u64::MAX);
        let message = HostMessage::Hello {
            protocol: PROTOCOL_VERSION,
            host: env!("CARGO_PKG_VERSION").to_owned(),
            tunnel_decision_ms,
        };
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

    /// Ends the session's guest: the agent kills every guest process and refuses every
    /// later request, and answers (with how many processes it killed) once nothing of the
    /// guest runs, or says some process outlived `kill_for` of killing. At most `within`:
    /// an agent that does not answer by then (dead, stuck, or not knowing the request) is
    /// an error, and the caller must stop the guest itself.
    pub async fn shutdown(&self, within: Duration, kill_for: Duration) -> Result<u32, AgentError> {
        let kill_ms = u64::try_from(kill_for.as_millis()).unwrap_or(u64::MAX);
        match self.unary_within(&HostMessage::Shutdown { kill_ms }, within).await? {
            AgentMessage::Stopped { killed } => Ok(killed),
            other => Err(unexpected("shutdown", &other)),
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

    /// Bytes of the agent's frames this client holds now, waiting for their readers.
    pub fn buffered_bytes(&self) -> u64 {
        self.shared.session_pool.held()
    }

    /// Accepts a tunnel request: the returned queue gets the tunnel's data
    /// (`TunnelData`), the agent's `tunnel_close`, or [`Inbound::Cut`]. Each chunk toward
    /// the destination is passed to `charge` as it is queued (an error cuts the tunnel).
    pub async fn accept_tunnel(&self, id: u64, charge: Option<Charge>) -> Result<InboundQueue, AgentError> {
        let pool = BufferPool::new(self.shared.config.tunnel_buffer);
        let rx = self.register(id, pool, RouteKind::Tunnel { charge })?;
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
        self.unary_within(message, self.shared.config.call_timeout).await
    }

    /// [`AgentClient::unary`] with a deadline of its own.
    async fn unary_within(&self, message: &HostMessage, timeout: Duration) -> Result<AgentMessage, AgentError> {
        let (id, mut rx) = self.request(message).await?;
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
    pub(crate) async fn request(&self, message: &HostMessage) -> Result<(u64, InboundQueue), AgentError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed) & !AGENT_ID_BIT;
        let rx = self.register(id, BufferPool::new(self.shared.config.call_buffer), RouteKind::Call)?;
        let frame = Frame::message(id, message)?;
        if let Err(e) = self.send(frame).await {
            self.unregister(id);
            return Err(e);
        }
        Ok((id, rx))
    }

    fn register(&self, id: u64, pool: BufferPool, kind: RouteKind) -> Result<InboundQueue, AgentError> {
        // Unbounded in items, bounded in bytes: the reader takes each frame's size from
        // the pools before queueing it.
        let (tx, rx) = mpsc::unbounded_channel();
        let (cut, cut_rx) = watch::channel(None);
        // Checked under the pending lock: the reader clears the map under the same lock
        // after recording the reason, so a call can't register into a dead channel.
        let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reason) = self.closed_reason() {
            return Err(AgentError::Closed(reason));
        }
        pending.insert(id, Route { tx, pool, kind, cut: Arc::new(cut) });
        Ok(InboundQueue::new(rx, cut_rx))
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

/// Where this client's request ids start: apart from an earlier client's of the same
/// agent, so late frames for that client's requests cannot be taken for this one's.
fn first_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    ((nanos as u64) >> 8 & 0x00ff_ffff_ffff_0000) | 1
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

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    weak: std::sync::Weak<Shared>,
    resync: Option<usize>,
) {
    let mut first = match resync {
        Some(max_skip) => {
            let is_hello = |frame: &Frame| matches!(frame.parse::<AgentMessage>(), Ok(AgentMessage::Hello(_)));
            match reader.resync(max_skip, is_hello).await {
                Ok(frame) => Some(frame),
                Err(e) => {
                    if let Some(shared) = weak.upgrade() {
                        close(&shared, format!("re-attaching to the agent failed: {e}"));
                    }
                    return;
                }
            }
        }
        None => None,
    };
    let reason = loop {
        let next = match first.take() {
            Some(frame) => Ok(Some(frame)),
            None => reader.next().await,
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break "the agent closed its stream".to_owned(),
            Err(e) => break format!("the agent broke the protocol: {e}"),
        };
        let Some(shared) = weak.upgrade() else { return };
        // What the frame holds while queued: its body (a parsed message is about as large).
        let size = frame.body.len();
        let incoming = if frame.kind == FrameKind::Message {
            match frame.parse::<AgentMessage>() {
                Ok(AgentMessage::TunnelOpen(open)) if frame.id & AGENT_ID_BIT != 0 => {
                    offer_tunnel(&shared, frame.id, open);
                    continue;
                }
                Ok(message) => Inbound::Message(message),
                Err(e) => break format!("the agent broke the protocol: {e}"),
            }
        } else if matches!(
            frame.kind,
            FrameKind::Stdout | FrameKind::Stderr | FrameKind::TunnelData | FrameKind::FileData
        ) {
            Inbound::Data { kind: frame.kind, bytes: frame.body }
        } else {
            break format!("the agent sent a {:?} frame, which only the host sends", frame.kind);
        };
        let route = shared.pending.lock().unwrap_or_else(PoisonError::into_inner).get(&frame.id).cloned();
        let Some(route) = route else {
            tracing::debug!(id = frame.id, "dropped an agent frame for no pending request");
            continue;
        };
        let mut held = Vec::with_capacity(3);
        if let RouteKind::Tunnel { charge } = &route.kind {
            match admit_to_tunnel(&shared.config, &route, charge.as_ref(), &incoming, size) {
                Ok(permit) => held.push(permit),
                Err(reason) => {
                    // The relay sees why at once (even mid-write), closes the tunnel on
                    // both sides and lets go of what was queued; later frames for it are
                    // dropped.
                    shared.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&frame.id);
                    route.cut.send_replace(Some(reason));
                    continue;
                }
            }
        }
        let (session_pool, server_pool) = (shared.session_pool.clone(), shared.config.server_buffer.clone());
        // Waiting for bytes must not keep the client alive: its last user may be gone.
        drop(shared);
        // Waits when the caller is slow: backpressure on the agent, not a growing heap.
        if matches!(route.kind, RouteKind::Call) {
            held.push(route.pool.take(size).await);
        }
        held.push(session_pool.take(size).await);
        held.push(server_pool.take(size).await);
        if route.tx.send(Queued::new(incoming, held)).is_err() {
            if let Some(shared) = weak.upgrade() {
                shared.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&frame.id);
            }
        }
    };
    if let Some(shared) = weak.upgrade() {
        close(&shared, reason);
    }
}

/// Takes a tunnel frame's bytes from the tunnel's own pool and charges what goes toward
/// the destination; `Err` with the reason when the tunnel must be cut instead.
fn admit_to_tunnel(
    config: &ClientConfig,
    route: &Route,
    charge: Option<&Charge>,
    incoming: &Inbound,
    size: usize,
) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
    let is_data = matches!(incoming, Inbound::Data { kind: FrameKind::TunnelData, .. });
    if is_data && size > MAX_DATA_CHUNK {
        return Err(format!("the agent sent a tunnel frame of {size} bytes (at most {MAX_DATA_CHUNK} are allowed)"));
    }
    let Some(permit) = route.pool.try_take(size) else {
        return Err(format!(
            "the destination did not take the data: more than {} bytes were waiting for it",
            config.tunnel_buffer
        ));
    };
    if let Some(charge) = charge.filter(|_| is_data && size > 0) {
        charge(size as u64)?;
    }
    Ok(permit)
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
