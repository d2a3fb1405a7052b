//! [`DenoSandbox`]: one session: a runtime thread and a host workspace directory.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use codebeaker::{Command, CommandResult, Error, ExecContext, HostWorkspace, Result, Sandbox};
use tokio::sync::Mutex;

use crate::backend::LiveSandboxes;
use crate::engine::Run;
use crate::runtime_thread::{Interrupter, RuntimeThread};

/// How long `close` waits for the runtime thread to drop its engine.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A Deno session's sandbox.
pub(crate) struct DenoSandbox {
    id: String,
    workspace: Arc<HostWorkspace>,
    /// `None` once closed. Held for the whole of an `execute_code`.
    runtime: Mutex<Option<RuntimeThread>>,
    /// Reaches the runtime while a command holds the lock above.
    interrupter: Interrupter,
    live: LiveSandboxes,
}

impl DenoSandbox {
    pub fn new(id: String, workspace: Arc<HostWorkspace>, runtime: RuntimeThread, live: LiveSandboxes) -> Self {
        let interrupter = runtime.interrupter();
        DenoSandbox { id, workspace, runtime: Mutex::new(Some(runtime)), interrupter, live }
    }

    async fn execute_code(&self, code: String, context: ExecContext) -> Result<CommandResult> {
        let run = Run { code, timeout: context.timeout, output_limit: context.output_limit, output: context.output };
        let runtime = self.runtime.lock().await;
        let runtime = runtime.as_ref().ok_or_else(|| Error::SessionClosed(self.id.clone()))?;
        Ok(CommandResult::ExecuteCode(runtime.run(run).await?))
    }

    async fn execute_command(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        match command {
            Command::ExecuteCode(code) => self.execute_code(code.code, context).await,
            Command::ExecuteShell(shell) => Err(Error::Unsupported(format!(
                "execute_shell is not supported in deno sessions (asked to run {:?}); run JavaScript or TypeScript with execute_code",
                shell.command_name
            ))),
            file_command => {
                let workspace = self.workspace.clone();
                tokio::task::spawn_blocking(move || workspace.execute(&file_command))
                    .await
                    .map_err(|e| Error::Internal(format!("file command task failed: {e}")))?
                    .unwrap_or_else(|| Err(Error::Internal("not a file command".into())))
            }
        }
    }
}

#[async_trait]
impl Sandbox for DenoSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn execute(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        use tracing::Instrument as _;
        let span = tracing::debug_span!("deno.execute", sandbox = %self.id, command = command.kind());
        async move { self.execute_command(command, context).await }.instrument(span).await
    }

    async fn close(&self) -> Result<()> {
        // Stop running JS first: the command holding the lock then ends promptly.
        self.interrupter.interrupt();
        let runtime = self.runtime.lock().await.take();
        let Some(runtime) = runtime else { return Ok(()) };
        runtime.close(CLOSE_WAIT).await;
        let root = self.workspace.root().to_path_buf();
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await;
        self.live.remove(&self.id);
        match removed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Internal(format!("cannot remove the workspace of {}: {e}", self.id))),
            Err(e) => Err(Error::Internal(format!("workspace removal task failed: {e}"))),
        }
    }
}
