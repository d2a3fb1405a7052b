//! The traits a sandbox backend implements: [`Backend`] makes sandboxes, [`Sandbox`] runs
//! commands in one. The [`SessionManager`](crate::SessionManager) owns sessions,
//! timeouts and limits; a backend only has to run what it is given, safely.
//!
//! # What a backend owns
//!
//! - Its **name** ([`Backend::name`]): what sessions name in `backend`, what the
//!   operator's routing table ([`crate::Routes`]) names, and the key of its options and
//!   policy table.
//! - Its **options**: a session's `backendOptions.<name>`, which only the serving backend
//!   may receive ([`SessionConfig::options_for`] parses them into the backend's own type,
//!   refusing unknown keys), and its **policy** table, `[backends.<name>]` of the
//!   operator's policy ([`SessionLimits::backend_policy`]). Core carries both opaquely.
//! - Its **registration**: a [`BackendFactory`](crate::BackendFactory) that starts it from
//!   the operator's configuration, registered in a program's
//!   [`BackendRegistry`](crate::BackendRegistry).
//!
//! # Growing by capability
//!
//! [`Sandbox`] requires only what every backend has: [`Sandbox::execute`] and
//! [`Sandbox::close`]. Anything more is an **extension**: a trait of its own here, reached
//! through an accessor on [`Sandbox`] that returns `Option<&dyn Extension>` and is `None`
//! by default, with the flag in [`Capabilities`] that declares it per session.
//! [`FileStreams`] ([`Sandbox::file_streams`]) is the first. Adding one (processes,
//! snapshots…) is: the trait, its defaulted accessor, its capability flag, and the
//! manager's method that calls it in the session's turn; a backend that offers it
//! overrides the accessor, and every other backend compiles and behaves as before.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::Result;
use crate::language::Language;
use crate::policy::SessionLimits;
use crate::process::{ProcessSignal, ProcessSink, ProcessSpec, PtySize};
use crate::result::{Capabilities, CommandResult};
use crate::workspace::{FileDownload, UploadBody, WorkspacePath};

/// Default cap of each output stream of one command (1 MiB).
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;

/// Whether a backend can take work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendHealth {
    /// Ready.
    Ok,
    /// Not usable now; the reason says what to fix (e.g. "no Docker engine answers at
    /// unix:///var/run/docker.sock").
    Unavailable(String),
}

impl BackendHealth {
    /// The health as `/health` reports it: `ok` or `unavailable: <reason>`.
    pub fn describe(&self) -> String {
        match self {
            BackendHealth::Ok => "ok".into(),
            BackendHealth::Unavailable(reason) => format!("unavailable: {reason}"),
        }
    }
}

/// A source of sandboxes for some languages (Docker containers, Deno isolates…).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short lowercase name (`docker`, `deno`): how sessions (`backend`) and the routing
    /// table choose this backend, the key of its options and policy table, and its name
    /// in logs, errors, metrics and `/health`. Unique among a program's backends.
    fn name(&self) -> &'static str;

    /// The languages this backend runs.
    fn languages(&self) -> &[Language];

    /// Creates and starts a sandbox for a session. `config` has been validated and
    /// `limits` is what the operator's [`Policy`](crate::Policy) grants it: the backend
    /// enforces those limits and no others of its own.
    async fn create_sandbox(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<Box<dyn Sandbox>>;

    /// What this backend's sandboxes for `language` can do (reported in session info).
    fn capabilities(&self, language: Language) -> Capabilities;

    /// Whether the backend can create sandboxes now.
    async fn health(&self) -> BackendHealth;

    /// Ids of the sandboxes this backend created for sessions that are still alive
    /// (warm-pool spares excluded); what leak checks compare against.
    async fn live_sandboxes(&self) -> Result<Vec<String>>;

    /// Removes everything the backend still holds (spares, leftovers). Called once at
    /// shutdown, after every session was closed.
    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    /// Ready sandboxes waiting in the backend's warm pool, per language (reported by the
    /// server's metrics). Empty for a backend without a pool, or one that does not say.
    fn warm_pool(&self) -> Vec<(Language, usize)> {
        Vec::new()
    }
}

/// One isolated environment running one session's commands.
///
/// The manager calls [`Sandbox::execute`] one command at a time per sandbox, and calls
/// [`Sandbox::close`] once (possibly while a command runs, which must then end promptly).
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// The backend's id of this sandbox (container id, isolate id).
    fn id(&self) -> &str;

    /// Runs one command. Paths in `command` have been checked by [`crate::WorkspacePath`];
    /// parse them again with it to use them. The sandbox enforces `context.timeout`
    /// itself (killing what runs), caps output at `context.output_limit` per stream, and
    /// sends output chunks to `context.output` while the program runs.
    async fn execute(&self, command: Command, context: ExecContext) -> Result<CommandResult>;

    /// Stops everything running and removes the sandbox and its files.
    async fn close(&self) -> Result<()>;

    /// Streamed file transfers, when the backend offers them (the HTTP file routes);
    /// `None` by default. The manager calls them in the session's turn, like commands.
    /// An extension (see the [module docs](self)).
    fn file_streams(&self) -> Option<&dyn FileStreams> {
        None
    }

    /// Background processes and terminals, when the backend offers them
    /// (`process.start`…); `None` by default. The manager calls them outside the
    /// session's turn: a process runs beside the session's commands. An extension (see
    /// the [module docs](self)).
    fn processes(&self) -> Option<&dyn Processes> {
        None
    }

    /// Pausing and resuming (`session.pause`/`session.resume`), when the backend offers
    /// it; `None` by default. An extension (see the [module docs](self)).
    fn pausing(&self) -> Option<&dyn Pausing> {
        None
    }

    /// The workspace as a tar archive, out and in (snapshots, forks), when the backend
    /// offers it; `None` by default. An extension (see the [module docs](self)).
    fn archives(&self) -> Option<&dyn Archives> {
        None
    }

    /// A live copy of the running sandbox, memory included (`session.fork` with state
    /// kept), when the backend offers it; `None` by default (a fork then carries the
    /// files only, through [`Sandbox::archives`]). An extension (see the [module docs](self)).
    fn forking(&self) -> Option<&dyn Forking> {
        None
    }
}

/// The optional capability of stopping a sandbox's use of CPU while keeping its memory
/// (see [`Sandbox::pausing`]), declared by [`Capabilities::pause`].
#[async_trait]
pub trait Pausing: Send + Sync {
    /// Stops everything of the sandbox from running (Docker: the engine's pause, a
    /// frozen cgroup; Deno: the worker stopped); its memory stays. Pausing a paused
    /// sandbox does nothing.
    async fn pause(&self) -> Result<()>;

    /// Lets it run again where it was. Resuming a running sandbox does nothing.
    async fn resume(&self) -> Result<()>;
}

/// The optional capability of copying a sandbox's workspace out and in as a tar archive
/// (see [`Sandbox::archives`]), declared by [`Capabilities::snapshots`]: the files a
/// session made and the packages it installed (they live beneath the workspace).
#[async_trait]
pub trait Archives: Send + Sync {
    /// A tar archive (ustar/GNU, paths relative to the workspace root) of the whole
    /// workspace: directories, regular files and symbolic links (as links, never
    /// followed); fifos, sockets and devices are left out. Fails with
    /// [`ErrorKind::LimitReached`](crate::ErrorKind::LimitReached) once it would exceed
    /// `limit` bytes (the reader then ends with an error).
    async fn export(&self, limit: u64) -> Result<FileDownload>;

    /// Extracts `archive` into the workspace, beneath it only: an entry whose path
    /// leaves the workspace (absolute, `..`, through a symbolic link), a hard link, a
    /// device or a fifo is refused with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// and nothing of the archive remains; the workspace's quota applies. Returns the
    /// bytes of file content written.
    async fn import(&self, archive: UploadBody) -> Result<u64>;
}

/// The optional capability of copying a running sandbox whole, memory included (see
/// [`Sandbox::forking`]), declared by [`Capabilities::live_fork`].
#[async_trait]
pub trait Forking: Send + Sync {
    /// A new sandbox that starts as this one is now (its interpreter state, globals,
    /// module state, timers, and a copy of its workspace) and goes on independently.
    /// `limits` are the new session's. A sandbox that cannot be copied live now answers
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported): the fork then carries
    /// its files only, through [`Sandbox::archives`] (`stateReset`).
    async fn fork(&self, limits: &SessionLimits) -> Result<Box<dyn Sandbox>>;
}

/// The optional capability of running programs in the background (see
/// [`Sandbox::processes`]), declared by [`Capabilities::processes`] (and
/// [`Capabilities::pty`] for terminals).
#[async_trait]
pub trait Processes: Send + Sync {
    /// Starts `spec` and returns its pid and control once it runs. Its output goes to
    /// `sink` as it comes, then how it ended ([`ProcessSink::exit`], exactly once, also
    /// when it is killed or the sandbox goes away). `spec.command.cwd` has been checked
    /// by [`WorkspacePath`]. The process runs until it ends, its `timeout_ms` passes, or
    /// the sandbox closes ([`Sandbox::close`] kills it). A `pty` the backend cannot give
    /// is [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    async fn spawn(&self, spec: &ProcessSpec, sink: ProcessSink) -> Result<SpawnedProcess>;
}

/// A process [`Processes::spawn`] started.
pub struct SpawnedProcess {
    /// Its pid in the sandbox.
    pub pid: u32,
    /// How to feed it, resize its terminal and signal it.
    pub control: Box<dyn ProcessControl>,
}

impl std::fmt::Debug for SpawnedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedProcess").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// What a client may do to a running background process. Each call returns once the
/// backend has passed it on; what the process makes of it shows in its output and exit.
#[async_trait]
pub trait ProcessControl: Send + Sync {
    /// Writes `data` to its stdin (its terminal's input, with a pty).
    async fn write(&self, data: Vec<u8>) -> Result<()>;

    /// Closes its stdin (with a pty: sends the terminal's end-of-file character).
    async fn close_stdin(&self) -> Result<()>;

    /// Resizes its terminal (the kernel tells it with `SIGWINCH`);
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) without one.
    async fn resize(&self, size: PtySize) -> Result<()>;

    /// Sends `signal` to its process group.
    async fn signal(&self, signal: ProcessSignal) -> Result<()>;
}

/// The optional capability of streaming files of any size in and out of a sandbox's
/// workspace in bounded memory (see [`Sandbox::file_streams`]). Paths have been checked
/// by [`WorkspacePath`]; the backend resolves them beneath the workspace as it does for
/// file commands, and enforces the workspace's size limit on uploads.
#[async_trait]
pub trait FileStreams: Send + Sync {
    /// Opens `path` for reading from `offset` (past the end: no bytes). The reader may
    /// be read after this call returns, while the manager holds the session's turn.
    async fn download(&self, path: &WorkspacePath, offset: u64) -> Result<FileDownload>;

    /// Writes `body` to `path`, replacing it or appending; the bytes written. When it
    /// fails, nothing of the upload remains (a replaced file is removed, an appended
    /// one cut back to its previous length).
    async fn upload(&self, path: &WorkspacePath, append: bool, body: UploadBody) -> Result<u64>;
}

/// How one command is to run.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// Wall-clock limit of the command.
    pub timeout: Duration,
    /// Cap, in bytes, of each output stream (stdout, stderr) kept in the result.
    pub output_limit: usize,
    /// Where to send output while the program runs, when the caller streams.
    pub output: Option<OutputSink>,
}

impl ExecContext {
    /// A context with `timeout`, the default output limit, and no streaming.
    pub fn new(timeout: Duration) -> Self {
        ExecContext { timeout, output_limit: DEFAULT_OUTPUT_LIMIT, output: None }
    }

    /// Sends a chunk to the streaming caller, if there is one.
    pub fn emit(&self, stream: OutputStream, data: impl Into<String>) {
        if let Some(sink) = &self.output {
            sink.emit(stream, data);
        }
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output (Deno: `console.log`, `console.info`).
    Stdout,
    /// Standard error (Deno: `console.warn`, `console.error`).
    Stderr,
}

/// A piece of output produced while a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// The stream it was written to.
    pub stream: OutputStream,
    /// The text (lossy UTF-8).
    pub data: String,
}

/// The sending half of a command's output stream. Cheap to clone; usable from any thread
/// (including a JS runtime's own); sending never blocks, and a receiver that went away is
/// ignored. Backends stop sending at the output limit, which bounds what it buffers.
#[derive(Debug, Clone)]
pub struct OutputSink {
    tx: mpsc::UnboundedSender<OutputChunk>,
}

impl OutputSink {
    /// A sink and the receiver of its chunks.
    pub fn channel() -> (OutputSink, mpsc::UnboundedReceiver<OutputChunk>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (OutputSink { tx }, rx)
    }

    /// Sends a chunk; empty chunks are dropped.
    pub fn emit(&self, stream: OutputStream, data: impl Into<String>) {
        let data = data.into();
        if !data.is_empty() {
            // A closed receiver means nobody streams any more; the result still carries all.
            let _ = self.tx.send(OutputChunk { stream, data });
        }
    }
}
