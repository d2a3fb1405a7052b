//! The traits a sandbox backend implements: [`Backend`] makes sandboxes, [`Sandbox`] runs
//! commands in one. The [`SessionManager`](crate::SessionManager) owns sessions,
//! timeouts and limits; a backend only has to run what it is given, safely.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::Result;
use crate::language::Language;
use crate::policy::SessionLimits;
use crate::result::{Capabilities, CommandResult};

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
    /// Short lowercase name, used in logs, errors and `/health` (`docker`, `deno`).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
