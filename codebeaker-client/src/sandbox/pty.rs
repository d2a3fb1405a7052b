//! [`Pty`]: interactive terminals (`process.start` with `pty`).

use codebeaker::{IntoWorkspacePath as _, ProcessCommand, ProcessSpec, PtySize};

use super::handle::CommandHandle;
use super::options::{Handlers, OutputHandler, PtyOptions};
use super::Sandbox;
use crate::error::{ClientError, Result};

/// `sandbox.pty()`: programs on a terminal. Sessions whose capabilities say `pty`
/// (Docker) have them; elsewhere [`Pty::create`] answers `-32602`.
#[derive(Debug, Clone, Copy)]
pub struct Pty<'a> {
    pub(crate) sandbox: &'a Sandbox,
}

impl Pty<'_> {
    /// Starts `bash` on a terminal of `size`; what it shows is the handle's
    /// [`stdout`](CommandHandle::stdout), and [`CommandHandle::send_stdin`] types into it.
    pub async fn create(&self, size: PtySize) -> Result<CommandHandle> {
        self.create_with(size, PtyOptions::default()).await
    }

    /// [`Pty::create`] of another program, with an environment, a working directory or
    /// a handler of what it shows.
    pub async fn create_with(&self, size: PtySize, options: PtyOptions) -> Result<CommandHandle> {
        let PtyOptions { cmd, envs, cwd, on_data } = options;
        let mut command = ProcessCommand::new(cmd, Vec::<String>::new());
        command.env = envs;
        if let Some(cwd) = cwd {
            command.cwd = cwd.into_workspace_path().map_err(ClientError::Failed)?;
        }
        let spec = ProcessSpec::new(command).with_pty(size.cols, size.rows);
        let on_stdout =
            on_data.map(|mut on_data| -> OutputHandler { Box::new(move |text: &str| on_data(text.as_bytes())) });
        self.sandbox.start(&spec, Handlers { on_stdout, on_stderr: None }).await
    }
}
