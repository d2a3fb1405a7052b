//! [`Commands`]: shell command lines in the foreground (`execute_shell`) or the
//! background (`process.start`), and the session's background processes.

use codebeaker::command::ExecuteShell;
use codebeaker::{Command, IntoWorkspacePath as _, ProcessCommand, ProcessInfo, ProcessSpec};

use super::handle::{self, CommandHandle};
use super::models::CommandResult;
use super::options::{OutputOptions, RunOptions};
use super::Sandbox;
use crate::error::{ClientError, Result};

/// `sandbox.commands()`: shell command lines, run with `sh -c`.
///
/// E2B and the Python SDK choose the background with `run(cmd, background=True)`; here
/// it is a method of its own, [`Commands::run_background`], since it returns another
/// type (a [`CommandHandle`] rather than a [`CommandResult`]).
#[derive(Debug, Clone, Copy)]
pub struct Commands<'a> {
    pub(crate) sandbox: &'a Sandbox,
}

impl Commands<'_> {
    /// Runs `cmd` with `sh -c` in the foreground: its [`CommandResult`], or
    /// [`ClientError::CommandExit`] for a non-zero exit. A session without a shell (Deno)
    /// answers [`ClientError::Failed`] of kind `unsupported`.
    pub async fn run(&self, cmd: &str) -> Result<CommandResult> {
        self.run_with(cmd, RunOptions::default()).await
    }

    /// [`Commands::run`] with output handlers, a limit, environment variables or a
    /// working directory.
    pub async fn run_with(&self, cmd: &str, options: RunOptions) -> Result<CommandResult> {
        let RunOptions { output, envs, cwd } = options;
        let (mut handlers, timeout) = output.into_parts();
        let mut shell = ExecuteShell::new("sh", ["-c", cmd]);
        shell.env = envs;
        if let Some(cwd) = cwd {
            shell.working_directory = cwd.into_workspace_path().map_err(ClientError::Failed)?;
        }
        let outcome = self
            .sandbox
            .execute_streamed(Command::ExecuteShell(shell), timeout, |stderr, data| handlers.deliver(stderr, data))
            .await?;
        let result = outcome.into_result().map_err(ClientError::Failed)?;
        let shell = result
            .into_shell()
            .ok_or_else(|| ClientError::Protocol("execute_shell's result is not a shell result".into()))?;
        CommandResult { exit_code: shell.exit_code, stdout: shell.stdout, stderr: shell.stderr, error: None }.ended()
    }

    /// Starts `cmd` with `sh -c` in the background (E2B's `run(cmd, background=True)`):
    /// its [`CommandHandle`] at once. A session without background processes (Deno)
    /// answers [`ClientError::Rpc`] `-32602` naming the capability.
    pub async fn run_background(&self, cmd: &str) -> Result<CommandHandle> {
        self.run_background_with(cmd, RunOptions::default()).await
    }

    /// [`Commands::run_background`] with output handlers, a limit (the process is killed
    /// past it), environment variables or a working directory.
    pub async fn run_background_with(&self, cmd: &str, options: RunOptions) -> Result<CommandHandle> {
        let RunOptions { output, envs, cwd } = options;
        let (handlers, timeout) = output.into_parts();
        let mut command = ProcessCommand::new("sh", ["-c", cmd]);
        command.env = envs;
        if let Some(cwd) = cwd {
            command.cwd = cwd.into_workspace_path().map_err(ClientError::Failed)?;
        }
        let mut spec = ProcessSpec::new(command);
        spec.timeout_ms = timeout.map(|limit| limit.as_millis().max(1) as u64);
        self.sandbox.start(&spec, handlers).await
    }

    /// A handle on the background process `pid` (its output replayed from the start).
    pub async fn connect(&self, pid: u32) -> Result<CommandHandle> {
        self.connect_with(pid, OutputOptions::default()).await
    }

    /// [`Commands::connect`] with output handlers (the replayed output included); the
    /// options' `timeout` is not used: a process's limit was set when it started.
    pub async fn connect_with(&self, pid: u32, options: OutputOptions) -> Result<CommandHandle> {
        let (handlers, _) = options.into_parts();
        let session = self.sandbox.session();
        let process = session.attach_process(pid, 0).await?;
        Ok(CommandHandle::spawn(session.clone(), process, handlers))
    }

    /// The session's background processes, running or ended, oldest first.
    pub async fn list(&self) -> Result<Vec<ProcessInfo>> {
        self.sandbox.session().processes().await
    }

    /// Kills the background process `pid`: `true`, or `false` when it had ended.
    pub async fn kill(&self, pid: u32) -> Result<bool> {
        handle::kill(&self.sandbox.session().process_controls(pid)).await
    }
}
