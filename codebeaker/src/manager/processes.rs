//! Background processes (`process.*`): started, fed, signalled and read through the
//! same tenant check as commands, but outside the session's turn (a process runs beside
//! the session's commands, for as long as the session lives).

use std::time::Duration;

use tracing::Instrument as _;

use super::session::Session;
use super::SessionManager;
use crate::backend::Processes;
use crate::error::{Error, ErrorKind, Result};
use crate::process::{ProcessAttachment, ProcessExit, ProcessInfo, ProcessSignal, ProcessSpec, PtySize};

impl SessionManager {
    /// Starts a background process in a session `tenant` may see; its info once it
    /// runs. The start runs in a task of its own: a caller that gives up half-way leaves
    /// a listed process (ended by the session's close), never an unlisted one.
    pub async fn start_process_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        mut spec: ProcessSpec,
    ) -> Result<ProcessInfo> {
        let session = self.inner.session(tenant, session_id)?;
        if spec.command.command_name.is_empty() {
            return Err(Error::invalid_input("process.start needs a commandName"));
        }
        if let Some(size) = spec.pty {
            size.check()?;
            if !session.capabilities.pty {
                return Err(Error::unsupported(format!("terminals (pty) in {} sessions", session.backend)));
            }
        }
        spec.timeout_ms = spec.timeout_ms.filter(|ms| *ms > 0);
        processes(&session)?;
        let span = tracing::info_span!("process.start", session = %session.id, command = %spec.command.command_name);
        let task = async move {
            let reservation = session.processes.reserve(session.id.as_str())?;
            let spawned = tokio::select! {
                _ = session.closing.cancelled() => return Err(Error::session_closed(session.id.to_string())),
                spawned = processes(&session)?.spawn(&spec, reservation.sink()) => spawned?,
            };
            let info = session.processes.insert(reservation, &spec, spawned);
            tracing::info!(pid = info.pid, pty = info.pty, "process started");
            Ok(info)
        };
        tokio::spawn(task.instrument(span))
            .await
            .map_err(|e| Error::internal(format!("process start task failed: {e}")).with_source(e))?
    }

    /// The background processes of a session `tenant` may see, oldest first.
    pub fn list_processes_as(&self, tenant: Option<&str>, session_id: &str) -> Result<Vec<ProcessInfo>> {
        Ok(self.inner.session(tenant, session_id)?.processes.list())
    }

    /// A reader of process `pid`'s output from `from_offset` (of each stream) on: the
    /// retained output, then what comes, then the exit.
    pub fn attach_process_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        pid: u32,
        from_offset: u64,
    ) -> Result<ProcessAttachment> {
        self.inner.session(tenant, session_id)?.processes.attach(pid, from_offset)
    }

    /// Writes `data` to process `pid`'s stdin (its terminal's input).
    pub async fn write_process_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        pid: u32,
        data: Vec<u8>,
    ) -> Result<()> {
        let control = self.inner.session(tenant, session_id)?.processes.control(pid)?;
        control.write(data).await
    }

    /// Closes process `pid`'s stdin.
    pub async fn close_process_stdin_as(&self, tenant: Option<&str>, session_id: &str, pid: u32) -> Result<()> {
        let control = self.inner.session(tenant, session_id)?.processes.control(pid)?;
        control.close_stdin().await
    }

    /// Resizes process `pid`'s terminal.
    pub async fn resize_process_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        pid: u32,
        size: PtySize,
    ) -> Result<()> {
        let size = size.check()?;
        let control = self.inner.session(tenant, session_id)?.processes.control(pid)?;
        control.resize(size).await
    }

    /// Sends `signal` to process `pid` (its process group).
    pub async fn signal_process_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        pid: u32,
        signal: ProcessSignal,
    ) -> Result<()> {
        let control = self.inner.session(tenant, session_id)?.processes.control(pid)?;
        control.signal(signal).await
    }

    /// Waits at most `timeout` (capped by the operator's longest command timeout) for
    /// process `pid` to end; how it ended, or [`ErrorKind::TimedOut`] while it runs.
    pub async fn wait_process_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        pid: u32,
        timeout: Duration,
    ) -> Result<ProcessExit> {
        let session = self.inner.session(tenant, session_id)?;
        let timeout = timeout.min(self.inner.config.policy.max_command_timeout());
        match tokio::time::timeout(timeout, session.processes.wait(pid)).await {
            Ok(exit) => exit,
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                format!("process {pid} still runs after {} ms", timeout.as_millis()),
            )),
        }
    }
}

/// The session's backend's processes, or why there are none.
fn processes(session: &Session) -> Result<&dyn Processes> {
    session.extension(session.sandbox.processes(), session.capabilities.processes, "background processes in")
}
