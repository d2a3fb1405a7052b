//! [`CommandHandle`]: a background command or a terminal, its output gathered as it
//! comes (by a task of its own), and what a client may do to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use codebeaker::{ProcessEvent, ProcessExit, ProcessOutput, ProcessSignal, ProcessStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::models::CommandResult;
use super::options::Handlers;
use crate::error::{codes, ClientError, Result};
use crate::process::Controls;
use crate::{RemoteProcess, RemoteSession};

/// Reattaches in a row that brought no event before a handle gives its process up.
const FRUITLESS_REATTACHES: u32 = 5;

/// A background command ([`Commands::run_background`](super::Commands::run_background))
/// or a terminal ([`Pty::create`](super::Pty::create)).
///
/// A task of the handle reads the process's output as it comes, hands it to the output
/// handlers and keeps it ([`CommandHandle::stdout`], [`CommandHandle::stderr`]); after a
/// lost connection it attaches again from where it stopped. The process runs on when
/// the handle is dropped or [disconnected](CommandHandle::disconnect): reach it again
/// with [`Commands::connect`](super::Commands::connect). Keep one handle per process
/// and sandbox: a second one attached over the same connection takes the output from
/// the first.
#[derive(Debug)]
pub struct CommandHandle {
    controls: Controls,
    progress: watch::Receiver<Progress>,
    /// Why the reader gave the process up, for the first wait to report.
    lost: Arc<Mutex<Option<ClientError>>>,
    reader: JoinHandle<()>,
}

/// What the reader has seen of the process so far.
#[derive(Debug, Default)]
struct Progress {
    stdout: String,
    stderr: String,
    exit: Option<ProcessExit>,
    /// The reader gave the process up before its exit.
    lost: bool,
}

impl CommandHandle {
    /// A handle reading `process` of `session`, handing its output to `handlers`.
    pub(crate) fn spawn(session: RemoteSession, process: RemoteProcess, handlers: Handlers) -> Self {
        let controls = process.controls();
        let (sender, progress) = watch::channel(Progress::default());
        let lost = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(read(session, process, handlers, sender, lost.clone()));
        CommandHandle { controls, progress, lost, reader }
    }

    /// Its pid in the sandbox.
    pub fn pid(&self) -> u32 {
        self.controls.pid()
    }

    /// Its standard output so far (a terminal's output, for a pty).
    pub fn stdout(&self) -> String {
        self.progress.borrow().stdout.clone()
    }

    /// Its standard error so far.
    pub fn stderr(&self) -> String {
        self.progress.borrow().stderr.clone()
    }

    /// Its exit code, once it ended (`-1` when its end is unknown).
    pub fn exit_code(&self) -> Option<i64> {
        self.progress.borrow().exit.as_ref().map(|exit| exit.exit_code.unwrap_or(-1))
    }

    /// Waits for its end: its [`CommandResult`], or [`ClientError::CommandExit`] for a
    /// non-zero exit.
    pub async fn wait(&self) -> Result<CommandResult> {
        let mut progress = self.progress.clone();
        let result = match progress.wait_for(|p| p.exit.is_some() || p.lost).await {
            Ok(ended) => ended.exit.as_ref().map(|exit| CommandResult {
                exit_code: exit.exit_code.unwrap_or(-1),
                stdout: ended.stdout.clone(),
                stderr: ended.stderr.clone(),
                error: exit.reason.clone(),
            }),
            // The reader stopped without a word: an output handler panicked.
            Err(_) => None,
        };
        match result {
            Some(result) => result.ended(),
            None => {
                Err(self.lost.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or(ClientError::Disconnected))
            }
        }
    }

    /// [`CommandHandle::wait`] for at most `timeout`; past it [`ClientError::Timeout`]
    /// (the process runs on).
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<CommandResult> {
        tokio::time::timeout(timeout, self.wait()).await.unwrap_or_else(|_| {
            Err(ClientError::Timeout(format!("process {} did not end within {timeout:?}", self.pid())))
        })
    }

    /// Kills it (`SIGKILL` to its process group): `true`, or `false` when it had ended.
    pub async fn kill(&self) -> Result<bool> {
        kill(&self.controls).await
    }

    /// Writes `data` to its stdin (or its terminal).
    pub async fn send_stdin(&self, data: impl Into<String>) -> Result<()> {
        self.controls.write(data.into()).await
    }

    /// Closes its stdin.
    pub async fn close_stdin(&self) -> Result<()> {
        self.controls.close_stdin().await
    }

    /// Resizes its terminal.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.controls.resize(cols, rows).await
    }

    /// Stops receiving its output; it runs on (as dropping the handle does).
    pub fn disconnect(self) {}
}

impl Drop for CommandHandle {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Kills the process of `controls`: `true`, or `false` when it had ended (or never was).
pub(crate) async fn kill(controls: &Controls) -> Result<bool> {
    match controls.signal(ProcessSignal::Kill).await {
        Ok(()) => Ok(true),
        Err(error) if error.code() == Some(codes::INVALID_PARAMS) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Reads `process` to its exit, attaching again after a lost connection.
async fn read(
    session: RemoteSession,
    mut process: RemoteProcess,
    mut handlers: Handlers,
    progress: watch::Sender<Progress>,
    lost: Arc<Mutex<Option<ClientError>>>,
) {
    let mut offsets = Offsets::default();
    let mut fruitless = 0;
    let ended = loop {
        match process.next().await {
            Some(ProcessEvent::Output(chunk)) => {
                fruitless = 0;
                let Some(data) = offsets.unread(&chunk) else { continue };
                let stderr = chunk.stream == ProcessStream::Stderr;
                progress.send_modify(|p| if stderr { &mut p.stderr } else { &mut p.stdout }.push_str(data));
                handlers.deliver(stderr, data);
            }
            Some(ProcessEvent::Exit(exit)) => break Ok(exit),
            None if fruitless == FRUITLESS_REATTACHES => break Err(ClientError::Disconnected),
            // The connection was lost before the exit: attach again where reading stopped.
            None => {
                fruitless += 1;
                offsets.replaying = true;
                match session.attach_process(process.pid(), offsets.resume()).await {
                    Ok(again) => process = again,
                    Err(error) => break Err(error),
                }
            }
        }
    };
    match ended {
        Ok(exit) => progress.send_modify(|p| p.exit = Some(exit)),
        Err(error) => {
            *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
            progress.send_modify(|p| p.lost = true);
        }
    }
}

/// The offset after the last byte read of each stream (stdout, stderr, pty).
#[derive(Debug, Default)]
struct Offsets {
    next: [u64; 3],
    /// Attached again: chunks may repeat what was read.
    replaying: bool,
}

impl Offsets {
    fn index(stream: ProcessStream) -> usize {
        match stream {
            ProcessStream::Stdout => 0,
            ProcessStream::Stderr => 1,
            _ => 2,
        }
    }

    /// What of `chunk` was not read yet (all of it, unless attached again).
    fn unread<'a>(&mut self, chunk: &'a ProcessOutput) -> Option<&'a str> {
        let next = &mut self.next[Self::index(chunk.stream)];
        let end = chunk.offset + chunk.data.len() as u64;
        let skip = if self.replaying { next.saturating_sub(chunk.offset) } else { 0 };
        *next = end.max(*next);
        chunk.data.get(usize::try_from(skip).ok()?..).filter(|data| !data.is_empty())
    }

    /// Where to attach again from: nothing missed, on any stream (a process writes to a
    /// terminal, or to stdout and stderr).
    fn resume(&self) -> u64 {
        let [stdout, stderr, pty] = self.next;
        if pty > 0 {
            pty
        } else {
            stdout.min(stderr)
        }
    }
}
