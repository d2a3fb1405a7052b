//! The agent: serves the protocol on one byte stream (the container's stdin and stdout)
//! and performs what the host asks inside the container.
//!
//! [`serve`] reads frames and starts a task per request, so several run at once; all
//! replies go through one outbox to a single writer, which keeps every frame whole.
//! Modules: [`files`] (file operations beneath the workspace), `process` (commands and
//! killing what they started), `pty` (terminals of commands that run on one), `interp`
//! (persistent interpreters), `reaper` (waiting for every child and adopted orphan),
//! `proxy` (the egress proxy), `sys` (raw calls).

pub mod files;
mod interp;
mod process;
mod proxy;
mod pty;
mod reaper;
mod sys;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};

use crate::protocol::{
    AgentHello, AgentMessage, ErrorKind, ErrorReply, Frame, FrameKind, FsRequest, HostMessage, ProtocolError,
    DEFAULT_MAX_FRAME, PROTOCOL_VERSION,
};
use crate::transport::{FrameReader, FrameWriter};

pub use files::Workspace;

/// The uid and gid commands run as when the agent starts as root and is given no
/// `--user` (the Docker backend always gives one: a uid of the sandbox's own).
pub const COMMAND_USER: (u32, u32) = (1000, 1000);

/// File operations running at once; more wait (each holds a blocking thread).
pub const MAX_PARALLEL_FS: usize = 16;

/// Most tasks (threads) the agent itself runs: its main thread and one blocking thread
/// per file operation. A container's pids limit less this, as the guest's
/// `RLIMIT_NPROC` ([`crate::protocol::Rlimits::nproc`]), keeps room for the agent to
/// kill a fork bomb and answer.
pub const AGENT_TASKS: u64 = 1 + MAX_PARALLEL_FS as u64;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The directory standing for `/workspace`.
    pub workspace: PathBuf,
    /// The (uid, gid) commands, interpreters and file operations run as; `None` runs
    /// them as the agent's own user.
    pub user: Option<(u32, u32)>,
    /// Largest frame body accepted or sent.
    pub max_frame: u32,
    /// The python interpreter (looked up on `PATH`).
    pub python: String,
    /// The node interpreter (looked up on `PATH`).
    pub node: String,
    /// Environment every command and interpreter starts with (requests add to it).
    pub base_env: Vec<(String, String)>,
    /// Where the egress proxy listens (the container's loopback); `None`: no proxy.
    pub proxy: Option<std::net::SocketAddr>,
}

impl AgentConfig {
    /// The configuration for `workspace`: commands as [`COMMAND_USER`] when the agent is
    /// root, the agent's environment as the base with `HOME` set to the workspace and
    /// `MPLBACKEND=Agg`.
    pub fn new(workspace: PathBuf) -> AgentConfig {
        // SAFETY: geteuid has no failure modes.
        let root = unsafe { libc::geteuid() } == 0;
        let mut base_env: Vec<(String, String)> = std::env::vars()
            .filter(|(key, _)| {
                !matches!(key.as_str(), "HOME" | "MPLBACKEND" | "RUST_LOG") && !key.starts_with("CODEBEAKER_AGENT")
            })
            .collect();
        base_env.push(("HOME".to_owned(), workspace.display().to_string()));
        base_env.push(("MPLBACKEND".to_owned(), "Agg".to_owned()));
        if !base_env.iter().any(|(key, _)| key == "PATH") {
            base_env
                .push(("PATH".to_owned(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()));
        }
        AgentConfig {
            workspace,
            user: root.then_some(COMMAND_USER),
            max_frame: DEFAULT_MAX_FRAME,
            python: "python3".to_owned(),
            node: "node".to_owned(),
            base_env,
            proxy: Some(std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_PROXY_PORT))),
        }
    }
}

/// The port of the egress proxy on the container's loopback.
pub const DEFAULT_PROXY_PORT: u16 = 3128;

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The host's bytes broke the protocol (garbage on stdin).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The `SIGCHLD` handler of the reaper could not be installed.
    #[error("cannot wait for child processes: {0}")]
    Reaper(#[source] std::io::Error),
    /// The workspace could not be opened.
    #[error("cannot open the workspace {path}: {source}")]
    Workspace {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a running request accepts while it runs.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stop (kill the process group, interrupt the code).
    Cancel,
    /// Bytes of the request's input: a process's stdin, an upload's file data; `true`
    /// ends it.
    Input(Vec<u8>, bool),
    /// Send this signal (already checked to be in `1..=64`) to a process's group.
    Signal(i32),
    /// Set the size of a process's terminal: columns, rows.
    Resize(u16, u16),
}

/// The instant `duration` from now; far in the future when that is not representable
/// (a request's `u64::MAX` ms means "no limit").
pub(crate) fn instant_after(duration: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(duration).unwrap_or_else(|| now + codebeaker::policy::NO_DEADLINE)
}

/// Frames on their way to the host.
pub(crate) type Outbox = mpsc::Sender<Frame>;

/// What request tasks share.
pub(crate) struct Runtime {
    pub(crate) workspace: Workspace,
    pub(crate) user: Option<(u32, u32)>,
    pub(crate) base_env: Vec<(String, String)>,
    pub(crate) interpreters: interp::Interpreters,
    pub(crate) reaper: Arc<reaper::Reaper>,
}

/// Serves the protocol until the host closes the stream (`Ok`) or breaks the protocol.
pub async fn serve<R, W>(reader: R, writer: W, config: AgentConfig) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let workspace = Workspace::open(&config.workspace, config.user)
        .map_err(|source| ServeError::Workspace { path: config.workspace.clone(), source })?;
    let mut base_env = config.base_env.clone();
    let listener = match config.proxy {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(%addr, "egress proxy not started: {e}");
                None
            }
        },
        None => None,
    };
    if let Some(addr) = listener.as_ref().and_then(|l| l.local_addr().ok()) {
        base_env.retain(|(key, _)| !key.to_ascii_lowercase().ends_with("_proxy"));
        base_env.extend(proxy::proxy_env(addr));
    }
    let proxied = listener.is_some();
    let reaper = reaper::Reaper::start().map_err(ServeError::Reaper)?;
    let runtime = Arc::new(Runtime {
        workspace,
        user: config.user,
        base_env,
        interpreters: interp::Interpreters::new(&config),
        reaper,
    });
    let (out, outgoing) = mpsc::channel::<Frame>(256);
    let tunnels = Arc::new(proxy::Tunnels::default());
    let proxy_task = listener.map(|listener| tokio::spawn(proxy::serve(listener, tunnels.clone(), out.clone())));
    let writer_task = tokio::spawn(write_loop(FrameWriter::new(writer, config.max_frame), outgoing, config.max_frame));
    let mut frames = FrameReader::new(reader, config.max_frame);
    let running: Arc<Mutex<HashMap<u64, mpsc::Sender<Control>>>> = Arc::default();
    let fs_slots = Arc::new(Semaphore::new(MAX_PARALLEL_FS));
    let result = loop {
        let frame = match frames.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(ServeError::Protocol(e)),
        };
        match frame.kind {
            FrameKind::Message => {
                let message = match frame.parse::<HostMessage>() {
                    Ok(message) => message,
                    Err(e) => {
                        let reply =
                            ErrorReply::new(ErrorKind::Unsupported, format!("unknown or malformed request: {e}"));
                        reply_to(&out, frame.id, AgentMessage::Error(reply)).await;
                        continue;
                    }
                };
                if let HostMessage::Hello { tunnel_decision_ms, .. } = &message {
                    tunnels.set_decision_timeout(Duration::from_millis(*tunnel_decision_ms));
                }
                match message {
                    HostMessage::TunnelReply(reply) => tunnels.route(frame.id, proxy::TunnelEvent::Reply(reply)),
                    HostMessage::TunnelClose { reason } => tunnels.route(frame.id, proxy::TunnelEvent::Close(reason)),
                    message => dispatch(&runtime, &out, &running, &fs_slots, proxied, frame.id, message).await,
                }
            }
            FrameKind::Stdin | FrameKind::FileData => {
                let control = running.lock().unwrap_or_else(PoisonError::into_inner).get(&frame.id).cloned();
                if let Some(control) = control {
                    let end = frame.is_end();
                    let _ = control.send(Control::Input(frame.body, end)).await;
                }
            }
            FrameKind::TunnelData => {
                let end = frame.is_end();
                tunnels.route(frame.id, proxy::TunnelEvent::Data(frame.body, end));
            }
            other => tracing::warn!(id = frame.id, kind = ?other, "ignored a frame only the agent sends"),
        }
    };
    runtime.interpreters.shutdown();
    if let Some(task) = proxy_task {
        task.abort();
    }
    drop(out);
    let _ = writer_task.await;
    result
}

async fn dispatch(
    runtime: &Arc<Runtime>,
    out: &Outbox,
    running: &Arc<Mutex<HashMap<u64, mpsc::Sender<Control>>>>,
    fs_slots: &Arc<Semaphore>,
    proxied: bool,
    id: u64,
    message: HostMessage,
) {
    match message {
        HostMessage::Hello { protocol, host, .. } => {
            tracing::info!(%host, protocol, "host connected");
            let reply = if protocol == PROTOCOL_VERSION {
                AgentMessage::Hello(AgentHello {
                    protocol: PROTOCOL_VERSION,
                    agent: env!("CARGO_PKG_VERSION").to_owned(),
                    capabilities: [
                        "exec",
                        "fs",
                        "fs_stream",
                        "python",
                        "javascript",
                        "shutdown",
                        "pty",
                        "signal",
                        "egress_proxy",
                        "archive",
                    ]
                    .into_iter()
                    .filter(|c| proxied || *c != "egress_proxy")
                    .map(str::to_owned)
                    .collect(),
                })
            } else {
                AgentMessage::Error(ErrorReply::new(
                    ErrorKind::Unsupported,
                    format!("protocol version {protocol} is not supported (this agent speaks {PROTOCOL_VERSION})"),
                ))
            };
            reply_to(out, id, reply).await;
        }
        HostMessage::Ping => reply_to(out, id, AgentMessage::Pong).await,
        HostMessage::Shutdown { kill_ms } => {
            // No process starts from here on; then everything of the guest goes.
            runtime.reaper.close();
            let (runtime, out) = (runtime.clone(), out.clone());
            tokio::spawn(async move {
                let reply = match process::kill_all(&runtime, Duration::from_millis(kill_ms)).await {
                    Ok(killed) => AgentMessage::Stopped { killed },
                    Err(error) => AgentMessage::Error(error),
                };
                runtime.interpreters.shutdown();
                reply_to(&out, id, reply).await;
            });
        }
        HostMessage::Exec(_) | HostMessage::RunCode(_) | HostMessage::Fs(_) if runtime.reaper.is_closed() => {
            let reply = ErrorReply::new(ErrorKind::Unsupported, "the sandbox is closed");
            reply_to(out, id, AgentMessage::Error(reply)).await;
        }
        HostMessage::Exec(request) => {
            let control = register(running, id);
            let (runtime, out, running) = (runtime.clone(), out.clone(), running.clone());
            tokio::spawn(async move {
                process::run(runtime, id, request, out, control).await;
                running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            });
        }
        HostMessage::RunCode(request) => {
            let control = register(running, id);
            let (runtime, out, running) = (runtime.clone(), out.clone(), running.clone());
            tokio::spawn(async move {
                interp::run(&runtime, id, request, &out, control).await;
                running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            });
        }
        HostMessage::Fs(FsRequest::Download { path, offset }) => {
            let control = register(running, id);
            let (runtime, out, running, slots) = (runtime.clone(), out.clone(), running.clone(), fs_slots.clone());
            tokio::spawn(async move {
                if let Ok(_slot) = slots.acquire_owned().await {
                    files::serve_download(runtime, id, path, offset, out, control).await;
                }
                running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            });
        }
        HostMessage::Fs(FsRequest::Upload { path, append }) => {
            let control = register(running, id);
            let (runtime, out, running, slots) = (runtime.clone(), out.clone(), running.clone(), fs_slots.clone());
            tokio::spawn(async move {
                if let Ok(_slot) = slots.acquire_owned().await {
                    files::serve_upload(runtime, id, path, append, out, control).await;
                }
                running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            });
        }
        HostMessage::Fs(FsRequest::Archive { limit }) => {
            let control = register(running, id);
            let (runtime, out, running, slots) = (runtime.clone(), out.clone(), running.clone(), fs_slots.clone());
            tokio::spawn(async move {
                if let Ok(_slot) = slots.acquire_owned().await {
                    files::serve_archive(runtime, id, limit, out, control).await;
                }
                running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            });
        }
        HostMessage::Fs(FsRequest::Unarchive) => {
            let control = register(running, id);
            let (runtime, out, running, slots) = (runtime.clone(), out.clone(), running.clone(), fs_slots.clone());
            tokio::spawn(async move {
                if let Ok(_slot) = slots.acquire_owned().await {
                    files::serve_unarchive(runtime, id, out, control).await;
                }
                running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            });
        }
        HostMessage::Fs(request) => {
            let (runtime, out, slots) = (runtime.clone(), out.clone(), fs_slots.clone());
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else { return };
                let handled = tokio::task::spawn_blocking(move || runtime.workspace.handle(request)).await;
                let reply = match handled {
                    Ok(Ok(reply)) => AgentMessage::Fs(reply),
                    Ok(Err(error)) => AgentMessage::Error(error),
                    Err(e) => {
                        AgentMessage::Error(ErrorReply::new(ErrorKind::Internal, format!("file operation failed: {e}")))
                    }
                };
                reply_to(&out, id, reply).await;
            });
        }
        HostMessage::Cancel => notify(running, id, Control::Cancel),
        HostMessage::Signal { signal } if (1..=64).contains(&signal) => notify(running, id, Control::Signal(signal)),
        HostMessage::Signal { signal } => tracing::warn!(id, signal, "ignored a signal number out of range"),
        HostMessage::Resize { cols, rows } => notify(running, id, Control::Resize(cols, rows)),
        HostMessage::TunnelReply(_) | HostMessage::TunnelClose { .. } => {}
    }
}

/// Passes `control` to running request `id`, if there is one (fire and forget: dropped
/// when its queue is full).
fn notify(running: &Mutex<HashMap<u64, mpsc::Sender<Control>>>, id: u64, control: Control) {
    let sender = running.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned();
    if let Some(sender) = sender {
        let _ = sender.try_send(control);
    }
}

fn register(running: &Mutex<HashMap<u64, mpsc::Sender<Control>>>, id: u64) -> mpsc::Receiver<Control> {
    let (tx, rx) = mpsc::channel(64);
    running.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
    rx
}

/// Sends one message answering request `id` (logged when it cannot be encoded).
pub(crate) async fn reply_to(out: &Outbox, id: u64, message: AgentMessage) {
    match Frame::message(id, &message) {
        Ok(frame) => {
            let _ = out.send(frame).await;
        }
        Err(e) => tracing::error!(id, "reply not encodable: {e}"),
    }
}

/// Writes frames as they come, several per flush when they queue up.
/// A reply too large for a frame becomes an error reply instead of breaking the stream.
async fn write_loop<W: AsyncWrite + Unpin>(mut writer: FrameWriter<W>, mut frames: mpsc::Receiver<Frame>, max: u32) {
    let fit = |frame: Frame| {
        if frame.body.len() as u64 <= u64::from(max) {
            return frame;
        }
        let message = format!("the reply of {} bytes exceeds the frame cap of {max} bytes", frame.body.len());
        let reply = AgentMessage::Error(ErrorReply::new(ErrorKind::TooLarge, message));
        Frame::message(frame.id, &reply).unwrap_or_else(|_| Frame::data(FrameKind::Stderr, frame.id, Vec::new(), false))
    };
    let mut batch = Vec::new();
    while let Some(frame) = frames.recv().await {
        batch.push(fit(frame));
        while batch.len() < 64 {
            match frames.try_recv() {
                Ok(frame) => batch.push(fit(frame)),
                Err(_) => break,
            }
        }
        if let Err(e) = writer.send_all(&batch).await {
            tracing::error!("writing to the host failed: {e}");
            return;
        }
        batch.clear();
    }
}
