//! [`DenoSandbox`]: one session in thread isolation: a runtime thread of this process and
//! a host workspace directory. Also the parts both isolations share (file commands, close).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use codebeaker::command::ExecuteShell;
use codebeaker::{Command, CommandResult, Error, ExecContext, FileStreams, HostWorkspace, Result, Sandbox};
use tokio::sync::Mutex;

use crate::backend::LiveSandboxes;
use crate::engine::{Run, SessionSetup};
use crate::pool::WarmPool;
use crate::runtime_thread::{Interrupter, RuntimeThread};

/// What every reset of a session's JavaScript state says, after what caused it.
pub(crate) const STATE_RESET: &str =
    "the session's JavaScript state was reset (globals and imports are lost; workspace files are kept)";

/// How long `close` waits for the runtime thread to drop its engine.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A Deno session's sandbox in thread isolation.
pub(crate) struct DenoSandbox {
    id: String,
    workspace: Arc<HostWorkspace>,
    /// `None` once closed. Held for the whole of an `execute_code`.
    runtime: Mutex<Option<RuntimeThread>>,
    /// Reaches the runtime while a command holds the lock above.
    interrupter: std::sync::Mutex<Interrupter>,
    /// Where a replacement runtime comes from, and what it is told.
    pool: Arc<WarmPool>,
    setup: SessionSetup,
    live: LiveSandboxes,
}

/// What a new thread sandbox is made of.
pub(crate) struct DenoSandboxParts {
    pub id: String,
    pub workspace: Arc<HostWorkspace>,
    pub runtime: RuntimeThread,
    pub pool: Arc<WarmPool>,
    pub setup: SessionSetup,
    pub live: LiveSandboxes,
}

/// One command of a Deno session, in either isolation: code goes to `execute_code`, file
/// commands to the workspace, shell commands are refused.
pub(crate) async fn dispatch<F, Fut>(
    id: &str,
    workspace: &Arc<HostWorkspace>,
    command: Command,
    execute_code: F,
) -> Result<CommandResult>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<CommandResult>>,
{
    use tracing::Instrument as _;
    let span = tracing::info_span!("deno.execute", sandbox = %id, command = command.kind());
    async move {
        match command {
            Command::ExecuteCode(code) => execute_code(code.code).await,
            Command::ExecuteShell(shell) => Err(unsupported_shell(&shell)),
            file => file_command(workspace.clone(), file).await,
        }
    }
    .instrument(span)
    .await
}

/// The answer to `execute_shell` in a Deno session.
fn unsupported_shell(shell: &ExecuteShell) -> Error {
    Error::unsupported(format!(
        "execute_shell is not supported in deno sessions (asked to run {:?}); run JavaScript or TypeScript with execute_code",
        shell.command_name
    ))
}

/// Runs a file command on the session's workspace, off the async threads (with the file
/// rights of the session's workers when they have a uid of their own: see
/// [`HostWorkspace::acting_as`]).
async fn file_command(workspace: Arc<HostWorkspace>, command: Command) -> Result<CommandResult> {
    tokio::task::spawn_blocking(move || workspace.execute(&command))
        .await
        .map_err(|e| Error::internal(format!("file command task failed: {e}")).with_source(e))?
        .unwrap_or_else(|| Err(Error::internal("not a file command")))
}

/// Removes a closed session's workspace and forgets the sandbox.
pub(crate) async fn close_workspace(id: &str, workspace: &HostWorkspace, live: &LiveSandboxes) -> Result<()> {
    let root = workspace.root().to_path_buf();
    let removed = tokio::task::spawn_blocking(move || crate::workspaces::remove_session(&root)).await;
    live.remove(id);
    match removed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::internal(format!("cannot remove the workspace of {id}: {e}")).with_source(e)),
        Err(e) => Err(Error::internal(format!("workspace removal task failed: {e}")).with_source(e)),
    }
}

impl DenoSandbox {
    pub fn new(parts: DenoSandboxParts) -> Self {
        let interrupter = std::sync::Mutex::new(parts.runtime.interrupter());
        DenoSandbox {
            id: parts.id,
            workspace: parts.workspace,
            runtime: Mutex::new(Some(parts.runtime)),
            interrupter,
            pool: parts.pool,
            setup: parts.setup,
            live: parts.live,
        }
    }

    fn interrupter(&self) -> std::sync::MutexGuard<'_, Interrupter> {
        self.interrupter.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn execute_code(&self, code: String, context: ExecContext) -> Result<CommandResult> {
        let run = Run { code, timeout: context.timeout, output_limit: context.output_limit, output: context.output };
        let mut slot = self.runtime.lock().await;
        let runtime = slot.as_ref().ok_or_else(|| Error::session_closed(self.id.clone()))?;
        let mut ran = runtime.run(run).await?;
        if ran.memory_exceeded {
            // Globals may hold the heap at its limit: start the session's JS afresh.
            let fresh = self.pool.take().await;
            self.pool.refill();
            let fresh = match fresh {
                Ok(fresh) => fresh.assign(self.setup.clone()).await.map(|()| fresh),
                Err(e) => Err(e),
            };
            if let Some(old) = slot.take() {
                old.close(CLOSE_WAIT).await;
            }
            let fresh = fresh?;
            *self.interrupter() = fresh.interrupter();
            *slot = Some(fresh);
            let result = &mut ran.result;
            let message = result.error.take().unwrap_or_default();
            result.error = Some(format!("{message}; {STATE_RESET}"));
            result.state_reset = true;
        }
        Ok(CommandResult::ExecuteCode(ran.result))
    }
}

#[async_trait]
impl Sandbox for DenoSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn execute(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        dispatch(&self.id, &self.workspace, command, |code| self.execute_code(code, context)).await
    }

    fn file_streams(&self) -> Option<&dyn FileStreams> {
        // The workspace lives on the host: the server streams it directly, under its quota.
        Some(self.workspace.as_ref())
    }

    fn archives(&self) -> Option<&dyn codebeaker::Archives> {
        // The same host workspace, archived under its owner's rights and quota.
        Some(self.workspace.as_ref())
    }

    async fn close(&self) -> Result<()> {
        // Stop running JS first: the command holding the lock then ends promptly.
        self.interrupter().interrupt();
        let runtime = self.runtime.lock().await.take();
        let Some(runtime) = runtime else { return Ok(()) };
        runtime.close(CLOSE_WAIT).await;
        close_workspace(&self.id, &self.workspace, &self.live).await
    }
}
