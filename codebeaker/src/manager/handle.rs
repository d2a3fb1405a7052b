//! [`Session`]: a handle on one open session, with typed methods for what agents do
//! most; dropped without [`Session::close`], it closes its session in the background.

use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::manager::{ExecOptions, SessionInfo, SessionManager};
use crate::process::{ProcessAttachment, ProcessExit, ProcessInfo, ProcessSignal, ProcessSpec, PtySize};
use crate::result::{
    CodeResult, CommandOutcome, CommandResult, ListDirectoryResult, ReadFileResult, ShellResult, WriteFileResult,
};
use crate::session_id::SessionId;

/// An open session of a [`SessionManager`], from [`SessionManager::open`].
///
/// Methods run one command each and return its typed result. A program that ran and
/// failed is still `Ok` for [`Session::run_code`] and [`Session::exec`] (its result says
/// how: [`CodeResult::succeeded`], an exit code); file methods answer `Err` with what
/// went wrong. Commands on one session run one at a time, in the order they were called.
///
/// Dropping the handle without [`Session::close`] closes the session in the background
/// (on the current Tokio runtime; with none, the session's idle timeout closes it).
pub struct Session {
    manager: SessionManager,
    id: SessionId,
    tenant: Option<String>,
    /// `false` once the session was closed through the handle (nothing left to do on drop).
    open: bool,
}

impl SessionManager {
    /// Creates a session as the operator and returns a handle on it.
    pub async fn open(&self, config: SessionConfig) -> Result<Session> {
        self.open_as(None, config).await
    }

    /// Creates a session owned by `tenant` (see [`SessionManager::create_as`]) and
    /// returns a handle that acts as that tenant.
    pub async fn open_as(&self, tenant: Option<&str>, config: SessionConfig) -> Result<Session> {
        let info = self.create_as(tenant, config).await?;
        Ok(Session { manager: self.clone(), id: info.session_id, tenant: tenant.map(str::to_owned), open: true })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).field("tenant", &self.tenant).field("open", &self.open).finish()
    }
}

impl Session {
    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// A snapshot of the session; [`ErrorKind::SessionNotFound`](crate::ErrorKind::SessionNotFound) once it is closed (or
    /// expired).
    pub fn info(&self) -> Result<SessionInfo> {
        self.manager.info_as(self.tenant.as_deref(), &self.id)
    }

    /// Runs any command with the session's default timeout and returns its envelope.
    pub async fn execute(&self, command: Command) -> Result<CommandOutcome> {
        self.execute_with(command, ExecOptions::default()).await
    }

    /// Runs any command with `options` (timeout, output streaming).
    pub async fn execute_with(&self, command: Command, options: ExecOptions) -> Result<CommandOutcome> {
        self.manager.execute_as(self.tenant.as_deref(), &self.id, command, options).await
    }

    /// Runs `code` in the session's language (`execute_code`). `Ok` whenever the program
    /// ran, even if it threw, exited non-zero or timed out: see
    /// [`CodeResult::succeeded`], [`CodeResult::error`], [`CodeResult::timed_out`].
    pub async fn run_code(&self, code: impl Into<String>) -> Result<CodeResult> {
        ran(self.execute(Command::code(code)).await?, CommandResult::into_code)
    }

    /// Runs `program` with `args` (`execute_shell`). `Ok` whenever it ran: a non-zero
    /// exit code is the answer, not an error.
    pub async fn exec<I, S>(&self, program: impl Into<String>, args: I) -> Result<ShellResult>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ran(self.execute(Command::shell(program, args)).await?, CommandResult::into_shell)
    }

    /// Writes `content` (text) to `path` in the workspace, replacing the file.
    pub async fn write_file(&self, path: &str, content: impl Into<String>) -> Result<WriteFileResult> {
        succeeded(self.execute(Command::write_file(path, content)?).await?, CommandResult::into_write_file)
    }

    /// Reads the text file at `path` in the workspace.
    pub async fn read_file(&self, path: &str) -> Result<ReadFileResult> {
        succeeded(self.execute(Command::read_file(path)?).await?, CommandResult::into_read_file)
    }

    /// Lists the directory at `path` in the workspace, entries sorted by name.
    pub async fn list_directory(&self, path: &str) -> Result<ListDirectoryResult> {
        succeeded(self.execute(Command::list_directory(path)?).await?, CommandResult::into_list_directory)
    }

    /// Starts a background process (see [`crate::process`]); a handle on it once it
    /// runs.
    pub async fn spawn(&self, spec: ProcessSpec) -> Result<Process> {
        let info = self.manager.start_process_as(self.tenant.as_deref(), &self.id, spec).await?;
        Ok(self.process(info.pid))
    }

    /// A handle on the session's background process `pid` (one started earlier, e.g.
    /// by another connection); the calls on it answer [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when
    /// there is none.
    pub fn process(&self, pid: u32) -> Process {
        Process { manager: self.manager.clone(), session: self.id.clone(), tenant: self.tenant.clone(), pid }
    }

    /// The session's background processes, oldest first.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>> {
        self.manager.list_processes_as(self.tenant.as_deref(), &self.id)
    }

    /// Pauses the session (see [`SessionManager::pause_as`]).
    pub async fn pause(&self) -> Result<SessionInfo> {
        self.manager.pause_as(self.tenant.as_deref(), &self.id).await
    }

    /// Resumes the paused session.
    pub async fn resume(&self) -> Result<SessionInfo> {
        self.manager.resume_as(self.tenant.as_deref(), &self.id).await
    }

    /// Keeps the session's workspace as a snapshot (see [`SessionManager::snapshot_as`]).
    pub async fn snapshot(&self) -> Result<crate::snapshot::SnapshotInfo> {
        self.manager.snapshot_as(self.tenant.as_deref(), &self.id).await
    }

    /// A new session that starts as this one is (see [`SessionManager::fork_as`]), and
    /// whether only its files were carried.
    pub async fn fork(&self) -> Result<(Session, bool)> {
        let forked = self.manager.fork_as(self.tenant.as_deref(), &self.id).await?;
        let session = Session {
            manager: self.manager.clone(),
            id: forked.info.session_id,
            tenant: self.tenant.clone(),
            open: true,
        };
        Ok((session, forked.state_reset))
    }

    /// Closes the session and removes its sandbox; [`ErrorKind::SessionNotFound`](crate::ErrorKind::SessionNotFound) if it was
    /// closed already (by expiry, or by another caller).
    pub async fn close(mut self) -> Result<()> {
        self.open = false;
        self.manager.close_as(self.tenant.as_deref(), &self.id).await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(session = %self.id, "session handle dropped outside a runtime: its idle timeout will close it");
            return;
        };
        let (manager, id, tenant) = (self.manager.clone(), self.id.clone(), self.tenant.take());
        runtime.spawn(async move {
            match manager.close_as(tenant.as_deref(), &id).await {
                Ok(()) => tracing::debug!(session = %id, "session handle dropped: session closed"),
                Err(error) => tracing::debug!(session = %id, %error, "session handle dropped: session was not open"),
            }
        });
    }
}

/// A background process of a [`Session`], from [`Session::spawn`] or [`Session::process`].
/// It outlives the handle (dropping it leaves the process running) but never its session.
#[derive(Clone)]
pub struct Process {
    manager: SessionManager,
    session: SessionId,
    tenant: Option<String>,
    pid: u32,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("session", &self.session).field("pid", &self.pid).finish()
    }
}

impl Process {
    /// Its pid in the sandbox.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A reader of its output from `from_offset` (of each stream) on: what is retained,
    /// then what comes, then its exit.
    pub fn attach(&self, from_offset: u64) -> Result<ProcessAttachment> {
        self.manager.attach_process_as(self.tenant.as_deref(), &self.session, self.pid, from_offset)
    }

    /// Writes `data` to its stdin (its terminal's input).
    pub async fn write(&self, data: impl Into<Vec<u8>>) -> Result<()> {
        self.manager.write_process_as(self.tenant.as_deref(), &self.session, self.pid, data.into()).await
    }

    /// Closes its stdin.
    pub async fn close_stdin(&self) -> Result<()> {
        self.manager.close_process_stdin_as(self.tenant.as_deref(), &self.session, self.pid).await
    }

    /// Resizes its terminal to `cols` x `rows`.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let size = PtySize { cols, rows };
        self.manager.resize_process_as(self.tenant.as_deref(), &self.session, self.pid, size).await
    }

    /// Sends it `signal`.
    pub async fn signal(&self, signal: ProcessSignal) -> Result<()> {
        self.manager.signal_process_as(self.tenant.as_deref(), &self.session, self.pid, signal).await
    }

    /// Waits at most `timeout` for it to end.
    pub async fn wait(&self, timeout: std::time::Duration) -> Result<ProcessExit> {
        self.manager.wait_process_as(self.tenant.as_deref(), &self.session, self.pid, timeout).await
    }
}

/// The result of a program that ran (whether or not it succeeded), or why it did not run.
fn ran<T>(outcome: CommandOutcome, into: fn(CommandResult) -> Option<T>) -> Result<T> {
    match (outcome.result, outcome.error) {
        (Some(result), _) => typed(result, into),
        (None, Some(error)) => Err(error),
        (None, None) => Err(Error::internal("the command answered neither a result nor an error")),
    }
}

/// The result of a command that succeeded, or what went wrong.
fn succeeded<T>(outcome: CommandOutcome, into: fn(CommandResult) -> Option<T>) -> Result<T> {
    typed(outcome.into_result()?, into)
}

/// The result as the type the command gives, or an error naming the type it has.
fn typed<T>(result: CommandResult, into: fn(CommandResult) -> Option<T>) -> Result<T> {
    let kind = result.command_type();
    into(result).ok_or_else(|| Error::internal(format!("the backend answered with a {kind} result")))
}
