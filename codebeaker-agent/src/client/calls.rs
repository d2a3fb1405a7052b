//! Streaming calls: a process ([`ExecStream`]) and code in the interpreter
//! ([`CodeStream`]), each readable event by event or collected into one output.
//!
//! A call's deadline is its own timeout plus the client's `reply_grace` (none for a
//! `timeout_ms` of `u64::MAX`), and nothing else: the agent kills on time when healthy,
//! and when it is not the host still answers, with [`AgentError::TimedOut`], after asking
//! the agent to cancel. Collected output is capped
//! on the host too, whatever the agent claims.

use std::time::Duration;

use tokio::time::Instant;

use crate::client::{AgentClient, AgentError, Inbound, InboundQueue};
use crate::protocol::{
    AgentMessage, CodeDone, ExecExited, ExecRequest, Frame, FrameKind, FsReply, FsRequest, HostMessage, RunCodeRequest,
};

/// One event of a running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// The process started with this pid (its process group id too).
    Started {
        /// The pid inside the container.
        pid: u32,
    },
    /// Bytes from stdout.
    Stdout(Vec<u8>),
    /// Bytes from stderr.
    Stderr(Vec<u8>),
    /// The process ended; the last event.
    Exited(ExecExited),
}

/// A process's whole output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its pid.
    pub pid: Option<u32>,
    /// Standard output, at most the request's `output_cap` bytes.
    pub stdout: Vec<u8>,
    /// Standard error, at most the request's `output_cap` bytes.
    pub stderr: Vec<u8>,
    /// How it ended (`truncated` also set when the host cut the output).
    pub exited: ExecExited,
}

/// What a `run_code` printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeOutput {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Both, interleaved in the order the agent read them.
    pub output: Vec<u8>,
    /// How it ended (`truncated` also set when the host cut the output).
    pub done: CodeDone,
}

/// The shared part of a streaming call: id, receiver, deadline, cancel on drop.
struct Call {
    client: AgentClient,
    id: u64,
    rx: InboundQueue,
    deadline: Instant,
    budget: Duration,
    finished: bool,
}

impl Call {
    async fn open(client: &AgentClient, message: &HostMessage, timeout_ms: u64) -> Result<Call, AgentError> {
        let budget = Duration::from_millis(timeout_ms).saturating_add(client.config().reply_grace);
        let (id, rx) = client.request(message).await?;
        let deadline = Instant::now().checked_add(budget).unwrap_or_else(far_future);
        Ok(Call { client: client.clone(), id, rx, deadline, budget, finished: false })
    }

    /// The next item, `Err` once the deadline passed or the channel closed.
    async fn next(&mut self) -> Result<Inbound, AgentError> {
        match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
            Ok(Some(item)) => Ok(item),
            Ok(None) => {
                self.finished = true;
                Err(self.client.closed_error())
            }

            Err(_) => {
                self.finish();
                Err(AgentError::TimedOut(self.budget))
            }
        }
    }

    /// Done with the call: stop routing, and cancel it on the agent unless it ended.
    fn finish(&mut self) {
        self.client.unregister(self.id);
        if !self.finished {
            self.finished = true;
            if let Ok(frame) = Frame::message(self.id, &HostMessage::Cancel) {
                self.client.try_send(frame);
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Call {
    /// Opens a streamed transfer: a call (its queue bounded in bytes like every call) whose every step (not the
    /// whole transfer) has the client's call timeout, answered first by `opened`.
    async fn open_transfer(client: &AgentClient, request: FsRequest) -> Result<(Call, u64), AgentError> {
        let (id, rx) = client.request(&HostMessage::Fs(request)).await?;
        let budget = client.config().call_timeout;
        let mut call = Call { client: client.clone(), id, rx, deadline: far_future(), budget, finished: false };
        match call.step().await? {
            Inbound::Message(AgentMessage::Fs(FsReply::Opened { size })) => Ok((call, size)),
            Inbound::Message(AgentMessage::Error(reply)) => {
                call.finished = true;
                Err(AgentError::Remote(reply))
            }
            other => Err(AgentError::Unexpected(format!("a transfer was opened with {other:?}"))),
        }
    }

    /// The next item of a transfer, within one call timeout.
    async fn step(&mut self) -> Result<Inbound, AgentError> {
        self.deadline = Instant::now() + self.budget;
        self.next().await
    }
}

/// A file streaming out of the agent ([`AgentClient::download`]).
pub struct FileDownload {
    call: Call,
    size: u64,
    left: u64,
    done: bool,
}

impl FileDownload {
    /// Size of the whole file, as the agent found it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next chunk; `None` once every byte came. Never more bytes in all than the
    /// file had from the offset, whatever the agent sends.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, AgentError> {
        if self.done {
            return Ok(None);
        }
        let item = self.call.step().await;
        let outcome = match item {
            Ok(Inbound::Data { kind: FrameKind::FileData, bytes }) if bytes.len() as u64 <= self.left => {
                self.left -= bytes.len() as u64;
                return Ok(Some(bytes));
            }
            Ok(Inbound::Data { kind: FrameKind::FileData, .. }) => {
                Err(AgentError::Unexpected("the agent sent more bytes than the file has".to_owned()))
            }
            Ok(Inbound::Message(AgentMessage::Fs(FsReply::Sent { .. }))) => {
                self.call.finished = true;
                Ok(None)
            }
            Ok(Inbound::Message(AgentMessage::Error(reply))) => {
                self.call.finished = true;
                Err(AgentError::Remote(reply))
            }
            Ok(other) => Err(AgentError::Unexpected(format!("a download was answered with {other:?}"))),
            Err(e) => Err(e),
        };
        self.done = true;
        self.call.finish();
        outcome
    }
}

/// A file streaming into the agent ([`AgentClient::upload`]). Dropped before
/// [`FileUpload::finish`], the upload is cancelled and the agent undoes it.
pub struct FileUpload {
    call: Call,
    start: u64,
}

impl FileUpload {
    /// The length the file starts from (its old length when appending, else 0).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Sends the next piece (at most [`FILE_DATA_CHUNK`](crate::protocol::FILE_DATA_CHUNK)
    /// bytes); fails as soon as the agent has given up (e.g. the workspace is full).
    pub async fn send(&mut self, bytes: Vec<u8>) -> Result<(), AgentError> {
        if let Some(item) = self.call.rx.try_recv() {
            return Err(self.early(item));
        }
        self.call.client.send(Frame::data(FrameKind::FileData, self.call.id, bytes, false)).await
    }

    /// Ends the upload; the bytes the agent wrote.
    pub async fn finish(mut self) -> Result<u64, AgentError> {
        self.call.client.send(Frame::data(FrameKind::FileData, self.call.id, Vec::new(), true)).await?;
        match self.call.step().await? {
            Inbound::Message(AgentMessage::Fs(FsReply::Written { bytes })) => {
                self.call.finished = true;
                Ok(bytes)
            }
            other => Err(self.early(other)),
        }
    }

    /// What an answer before the end means.
    fn early(&mut self, item: Inbound) -> AgentError {
        match item {
            Inbound::Message(AgentMessage::Error(reply)) => {
                self.call.finished = true;
                AgentError::Remote(reply)
            }
            other => AgentError::Unexpected(format!("an upload was answered with {other:?}")),
        }
    }
}

/// What a call without a limit of its own waits for: 30 years (as tokio's own far future),
/// so an exec whose `timeout_ms` is `u64::MAX` (a background process) is read for as
/// long as it runs.
fn far_future() -> Instant {
    Instant::now() + codebeaker::policy::NO_DEADLINE
}

/// A running process: read its events, feed its stdin, cancel it.
pub struct ExecStream {
    call: Call,
    done: bool,
}

/// What steers a running process from anywhere ([`ExecStream::control`]): its stdin,
/// cancel, signals and its terminal's size. Each is fire and forget: the process's
/// stream tells what came of it; once the process ended they reach nothing.
#[derive(Clone)]
pub struct ExecControl {
    client: AgentClient,
    id: u64,
}

impl ExecControl {
    /// The request id of the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Writes to the process's stdin (requests with `stdin_stream`); `end` closes it, or
    /// on a terminal types its EOF character (`^D`).
    pub async fn write_stdin(&self, bytes: Vec<u8>, end: bool) -> Result<(), AgentError> {
        self.client.send_stdin(self.id, bytes, end).await
    }

    /// Kills the process group; the stream still ends with `Exited`.
    pub async fn cancel(&self) -> Result<(), AgentError> {
        self.client.cancel(self.id).await
    }

    /// Sends `signal` to the process group (the agent ignores numbers outside `1..=64`).
    pub async fn signal(&self, signal: i32) -> Result<(), AgentError> {
        self.client.send(Frame::message(self.id, &HostMessage::Signal { signal })?).await
    }

    /// Sets the size of the process's terminal (ignored for a process on pipes).
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), AgentError> {
        self.client.send(Frame::message(self.id, &HostMessage::Resize { cols, rows })?).await
    }
}

impl std::fmt::Debug for ExecControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecControl").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ExecStream {
    /// The request id (what [`AgentClient::cancel`] takes).
    pub fn id(&self) -> u64 {
        self.call.id
    }

    /// A handle that steers this process while the stream is read elsewhere.
    pub fn control(&self) -> ExecControl {
        ExecControl { client: self.call.client.clone(), id: self.call.id }
    }

    /// The next event; `None` after [`ExecEvent::Exited`] or an error.
    pub async fn next(&mut self) -> Option<Result<ExecEvent, AgentError>> {
        if self.done {
            return None;
        }
        let event = loop {
            match self.call.next().await {
                Ok(Inbound::Data { kind: FrameKind::Stdout, bytes }) => break Ok(ExecEvent::Stdout(bytes)),
                Ok(Inbound::Data { kind: FrameKind::Stderr, bytes }) => break Ok(ExecEvent::Stderr(bytes)),
                Ok(Inbound::Data { .. }) => continue,
                Ok(Inbound::Cut(reason)) => break Err(AgentError::Closed(reason)),
                Ok(Inbound::Message(AgentMessage::Started { pid })) => break Ok(ExecEvent::Started { pid }),
                Ok(Inbound::Message(AgentMessage::Exited(exited))) => {
                    self.call.finished = true;
                    break Ok(ExecEvent::Exited(exited));
                }
                Ok(Inbound::Message(AgentMessage::Error(reply))) => {
                    self.call.finished = true;
                    break Err(AgentError::Remote(reply));
                }
                Ok(Inbound::Message(other)) => {
                    break Err(AgentError::Unexpected(format!("exec was answered with {other:?}")));
                }
                Err(e) => break Err(e),
            }
        };
        if !matches!(event, Ok(ExecEvent::Started { .. } | ExecEvent::Stdout(_) | ExecEvent::Stderr(_))) {
            self.done = true;
            self.call.finish();
        }
        Some(event)
    }

    /// Writes to the process's stdin (see [`ExecControl::write_stdin`]).
    pub async fn write_stdin(&self, bytes: Vec<u8>, end: bool) -> Result<(), AgentError> {
        self.control().write_stdin(bytes, end).await
    }

    /// Kills the process group; the stream still ends with `Exited`.
    pub async fn cancel(&self) -> Result<(), AgentError> {
        self.control().cancel().await
    }

    /// Reads to the end, keeping at most `cap` bytes of each stream.
    pub async fn collect(mut self, cap: u64) -> Result<ExecOutput, AgentError> {
        let mut output = ExecOutput { pid: None, stdout: Vec::new(), stderr: Vec::new(), exited: empty_exit() };
        let mut cut = false;
        while let Some(event) = self.next().await {
            match event? {
                ExecEvent::Started { pid } => output.pid = Some(pid),
                ExecEvent::Stdout(bytes) => cut |= append_capped(&mut output.stdout, &bytes, cap),
                ExecEvent::Stderr(bytes) => cut |= append_capped(&mut output.stderr, &bytes, cap),
                ExecEvent::Exited(exited) => {
                    output.exited = exited;
                    output.exited.truncated |= cut;
                    return Ok(output);
                }
            }
        }
        Err(AgentError::Unexpected("exec ended without an exit".to_owned()))
    }
}

fn empty_exit() -> ExecExited {
    ExecExited { code: None, signal: None, timed_out: false, truncated: false, usage: Default::default() }
}

/// Appends up to `cap` bytes in total; true when something was cut.
fn append_capped(buffer: &mut Vec<u8>, bytes: &[u8], cap: u64) -> bool {
    let room = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(buffer.len());
    let take = bytes.len().min(room);
    buffer.extend_from_slice(&bytes[..take]);
    take < bytes.len()
}

/// Code running in the persistent interpreter.
pub struct CodeStream {
    call: Call,
    done: bool,
}

/// One event of running code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeEvent {
    /// Bytes the code wrote to stdout.
    Stdout(Vec<u8>),
    /// Bytes the code wrote to stderr.
    Stderr(Vec<u8>),
    /// The run ended; the last event.
    Done(CodeDone),
}

impl CodeStream {
    /// The request id.
    pub fn id(&self) -> u64 {
        self.call.id
    }

    /// The next event; `None` after [`CodeEvent::Done`] or an error.
    pub async fn next(&mut self) -> Option<Result<CodeEvent, AgentError>> {
        if self.done {
            return None;
        }
        let event = loop {
            match self.call.next().await {
                Ok(Inbound::Data { kind: FrameKind::Stdout, bytes }) => break Ok(CodeEvent::Stdout(bytes)),
                Ok(Inbound::Data { kind: FrameKind::Stderr, bytes }) => break Ok(CodeEvent::Stderr(bytes)),
                Ok(Inbound::Data { .. }) => continue,
                Ok(Inbound::Cut(reason)) => break Err(AgentError::Closed(reason)),
                Ok(Inbound::Message(AgentMessage::CodeDone(done))) => {
                    self.call.finished = true;
                    break Ok(CodeEvent::Done(done));
                }
                Ok(Inbound::Message(AgentMessage::Error(reply))) => {
                    self.call.finished = true;
                    break Err(AgentError::Remote(reply));
                }
                Ok(Inbound::Message(other)) => {
                    break Err(AgentError::Unexpected(format!("run_code was answered with {other:?}")));
                }
                Err(e) => break Err(e),
            }
        };
        if !matches!(event, Ok(CodeEvent::Stdout(_) | CodeEvent::Stderr(_))) {
            self.done = true;
            self.call.finish();
        }
        Some(event)
    }

    /// Interrupts the code (state kept when the interpreter survives).
    pub async fn cancel(&self) -> Result<(), AgentError> {
        self.call.client.cancel(self.call.id).await
    }

    /// Reads to the end, keeping at most `cap` bytes of each stream.
    pub async fn collect(mut self, cap: u64) -> Result<CodeOutput, AgentError> {
        let mut out =
            CodeOutput { stdout: Vec::new(), stderr: Vec::new(), output: Vec::new(), done: CodeDone::default() };
        let mut cut = false;
        while let Some(event) = self.next().await {
            match event? {
                CodeEvent::Stdout(bytes) => {
                    cut |= append_capped(&mut out.stdout, &bytes, cap);
                    append_capped(&mut out.output, &bytes, cap.saturating_mul(2));
                }
                CodeEvent::Stderr(bytes) => {
                    cut |= append_capped(&mut out.stderr, &bytes, cap);
                    append_capped(&mut out.output, &bytes, cap.saturating_mul(2));
                }
                CodeEvent::Done(done) => {
                    out.done = done;
                    out.done.truncated |= cut;
                    return Ok(out);
                }
            }
        }
        Err(AgentError::Unexpected("run_code ended without a result".to_owned()))
    }
}

impl AgentClient {
    /// Starts a process.
    pub async fn exec(&self, request: ExecRequest) -> Result<ExecStream, AgentError> {
        let timeout_ms = request.timeout_ms;
        let call = Call::open(self, &HostMessage::Exec(request), timeout_ms).await?;
        Ok(ExecStream { call, done: false })
    }

    /// Runs a process to its end and collects its output.
    pub async fn exec_collect(&self, request: ExecRequest) -> Result<ExecOutput, AgentError> {
        let cap = request.output_cap;
        self.exec(request).await?.collect(cap).await
    }

    /// Starts code in the session's persistent interpreter.
    pub async fn run_code(&self, request: RunCodeRequest) -> Result<CodeStream, AgentError> {
        let timeout_ms = request.timeout_ms;
        let call = Call::open(self, &HostMessage::RunCode(request), timeout_ms).await?;
        Ok(CodeStream { call, done: false })
    }

    /// Streams a file out from `offset`.
    pub async fn download(&self, path: String, offset: u64) -> Result<FileDownload, AgentError> {
        let (call, size) = Call::open_transfer(self, FsRequest::Download { path, offset }).await?;
        Ok(FileDownload { call, size, left: size.saturating_sub(offset), done: false })
    }

    /// Streams the whole workspace as a tar archive ([`FsRequest::Archive`]): a
    /// [`FileDownload`] of size 0 (not known ahead) that never yields more than `limit`
    /// bytes; it ends with a `too_large` error once the archive would pass `limit`.
    pub async fn archive(&self, limit: u64) -> Result<FileDownload, AgentError> {
        let (call, _) = Call::open_transfer(self, FsRequest::Archive { limit }).await?;
        Ok(FileDownload { call, size: 0, left: limit, done: false })
    }

    /// Streams a tar archive into the workspace ([`FsRequest::Unarchive`]): send its
    /// bytes through the [`FileUpload`] and [`FileUpload::finish`] it for the bytes of
    /// file content written. Dropped unfinished, the agent undoes the extraction.
    pub async fn unarchive(&self) -> Result<FileUpload, AgentError> {
        let (call, start) = Call::open_transfer(self, FsRequest::Unarchive).await?;
        Ok(FileUpload { call, start })
    }

    /// Streams a file in (replacing it, or appending).
    pub async fn upload(&self, path: String, append: bool) -> Result<FileUpload, AgentError> {
        let (call, start) = Call::open_transfer(self, FsRequest::Upload { path, append }).await?;
        Ok(FileUpload { call, start })
    }

    /// Runs code to its end and collects its output.
    pub async fn run_code_collect(&self, request: RunCodeRequest) -> Result<CodeOutput, AgentError> {
        let cap = request.output_cap;
        self.run_code(request).await?.collect(cap).await
    }
}
