//! [`Sandbox`]: the E2B-shaped face of the client, with the Python and TypeScript SDKs'
//! names (snake_case here as in Python), over the protocol-shaped [`Client`](crate::Client),
//! [`RemoteSession`] and [`RemoteProcess`](crate::RemoteProcess).
//!
//! | SDKs | here |
//! |---|---|
//! | `Sandbox.create(language=…, url=…, token=…, timeout=…, backend=…)` | [`Sandbox::create`] with [`CreateOptions`] |
//! | `Sandbox.connect(session_id, url=…, token=…)` | [`Sandbox::connect`] with [`ConnectOptions`] |
//! | `sb.run_code(code, on_stdout=…, on_stderr=…, timeout=…)` | [`Sandbox::run_code`], [`Sandbox::run_code_with`] with [`OutputOptions`] |
//! | `sb.commands.run(cmd, …)` / `run(cmd, background=True)` | [`Commands::run`] / [`Commands::run_background`] ([`RunOptions`]) |
//! | `sb.commands.connect`, `list`, `kill` | [`Commands::connect`], [`Commands::list`], [`Commands::kill`] |
//! | `sb.pty.create(cols, rows, …)` | [`Pty::create`] with a [`PtySize`](codebeaker::PtySize) ([`PtyOptions`]) |
//! | `sb.files.write`, `read`, `list`, `exists`, `make_dir`, `remove`, `upload`, `download` | the same on [`Files`] (`read(format="bytes")` is [`Files::read_bytes`]) |
//! | `sb.close()`, `sb.is_running()` | [`Sandbox::close`], [`Sandbox::is_running`] |
//!
//! Times are [`Duration`]s; handlers are boxed closures ([`OutputHandler`]). What the
//! facade does not cover (pause, snapshots, forks, batches) is on the
//! [`RemoteSession`] of [`Sandbox::session`].

mod commands;
mod files;
mod handle;
mod models;
mod options;
mod pty;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use codebeaker::{Command, CommandOutcome, Language, OutputStream, ProcessSpec, SessionConfig, SessionId};
use futures::StreamExt as _;

pub use self::commands::Commands;
pub use self::files::Files;
pub use self::handle::CommandHandle;
pub use self::models::{CommandResult, EntryInfo, Execution, ExecutionError, Logs, Result};
use self::options::Handlers;
pub use self::options::{
    ConnectOptions, CreateOptions, DataHandler, OutputHandler, OutputOptions, PtyOptions, RunOptions, DEFAULT_URL,
};
pub use self::pty::Pty;
use crate::error::ClientError;
use crate::{OutputEvent, RemoteSession};

/// A session on a CodeBeaker server, E2B-shaped: create one with [`Sandbox::create`] (or
/// reattach with [`Sandbox::connect`]), run code, commands and files through it, and
/// [`close`](Sandbox::close) it. Dropping it leaves the session open (for
/// [`Sandbox::connect`], until it expires).
#[derive(Debug)]
pub struct Sandbox {
    session: RemoteSession,
    language: String,
    backend: String,
    node: Option<String>,
    /// The commands' default limit, as created.
    timeout: Option<Duration>,
    executions: AtomicU64,
}

impl Sandbox {
    /// A new session of [`CreateOptions`]'s language, over a new connection.
    pub async fn create(options: CreateOptions) -> crate::Result<Sandbox> {
        let CreateOptions { language, connect, timeout, backend } = options;
        let (language, implied) = Language::parse_with_backend(&language).map_err(ClientError::Failed)?;
        let mut config = SessionConfig::new(language);
        config.backend = backend.or(implied.map(str::to_owned));
        config.default_timeout_ms = timeout.map(|limit| limit.as_millis().max(1) as u64);
        let session = connect.client().await?.create(config).await?;
        let created =
            session.created().ok_or_else(|| ClientError::Protocol("session.create gave no session".into()))?;
        Ok(Sandbox {
            language: created.language.as_str().to_owned(),
            backend: created.backend.clone(),
            node: created.node.clone(),
            timeout,
            executions: AtomicU64::new(0),
            session,
        })
    }

    /// The open session `session_id`, over a new connection; an error for which
    /// [`ClientError::is_session_not_found`] holds when there is none.
    pub async fn connect(session_id: impl Into<SessionId>, options: ConnectOptions) -> crate::Result<Sandbox> {
        let session = options.client().await?.session(session_id.into());
        let info = session.info().await?;
        Ok(Sandbox {
            language: info.language.as_str().to_owned(),
            backend: info.backend,
            node: info.node,
            timeout: None,
            executions: AtomicU64::new(info.execution_count),
            session,
        })
    }

    /// The session's id.
    pub fn session_id(&self) -> &SessionId {
        self.session.id()
    }

    /// The session's language (its canonical name: `python`, `typescript`…).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The backend serving the session (`docker`, `deno`…).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The cluster node holding the session (its URL), on a server that is a node of a
    /// cluster.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The protocol-shaped handle on the same session, for what this one does not offer.
    pub fn session(&self) -> &RemoteSession {
        &self.session
    }

    /// Shell command lines and background processes.
    pub fn commands(&self) -> Commands<'_> {
        Commands { sandbox: self }
    }

    /// The session's files.
    pub fn files(&self) -> Files<'_> {
        Files { sandbox: self }
    }

    /// Terminals.
    pub fn pty(&self) -> Pty<'_> {
        Pty { sandbox: self }
    }

    /// Runs `code` in the session's interpreter (state kept between runs where the
    /// session's capabilities say `persistentState`). The program's own error is
    /// [`Execution::error`]; any other failure (a timeout: [`ClientError::is_timeout`])
    /// is `Err`.
    pub async fn run_code(&self, code: impl Into<String>) -> crate::Result<Execution> {
        self.run_code_with(code, OutputOptions::default()).await
    }

    /// [`Sandbox::run_code`] with output handlers or a limit of its own.
    pub async fn run_code_with(&self, code: impl Into<String>, options: OutputOptions) -> crate::Result<Execution> {
        let (mut handlers, timeout) = options.into_parts();
        let mut logs = Logs::default();
        let outcome = self
            .execute_streamed(Command::code(code), timeout, |stderr, data| {
                if stderr { &mut logs.stderr } else { &mut logs.stdout }.push(data.to_owned());
                handlers.deliver(stderr, data);
            })
            .await?;
        let execution_count = self.executions.fetch_add(1, Ordering::Relaxed) + 1;
        Execution::from_outcome(outcome, logs, execution_count)
    }

    /// Whether the session is still open.
    pub async fn is_running(&self) -> crate::Result<bool> {
        match self.session.info().await {
            Ok(_) => Ok(true),
            Err(error) if error.is_session_not_found() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Closes the session (its sandbox, files and processes go); a session already gone
    /// is not an error.
    pub async fn close(self) -> crate::Result<()> {
        match self.session.close().await {
            Err(error) if error.is_session_not_found() => Ok(()),
            closed => closed,
        }
    }

    /// The same as [`Sandbox::close`] (E2B's name).
    pub async fn kill(self) -> crate::Result<()> {
        self.close().await
    }

    /// Runs `command` with its output streamed to `sink` (`true` for standard error)
    /// under `timeout` (the sandbox's default otherwise): its envelope.
    async fn execute_streamed(
        &self,
        command: Command,
        timeout: Option<Duration>,
        mut sink: impl FnMut(bool, &str),
    ) -> crate::Result<CommandOutcome> {
        let mut events = self.session.execute_stream_with_timeout(command, timeout.or(self.timeout)).await?;
        while let Some(event) = events.next().await {
            match event {
                OutputEvent::Output(chunk) => sink(chunk.stream == OutputStream::Stderr, &chunk.data),
                OutputEvent::Finished(outcome) => return outcome,
            }
        }
        Err(ClientError::Disconnected)
    }

    /// Starts the background process `spec`: its handle, its output to `handlers`.
    async fn start(&self, spec: &ProcessSpec, handlers: Handlers) -> crate::Result<CommandHandle> {
        let process = self.session.start_process(spec).await?;
        Ok(CommandHandle::spawn(self.session.clone(), process, handlers))
    }
}
