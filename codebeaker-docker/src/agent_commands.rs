//! Commands through the in-container agent: programs (argv, env, working directory,
//! stdin, streaming, rlimits, usage), code in the persistent python or node interpreter
//! (state kept, rich outputs, `stateReset` after a forced restart), and every file command
//! (resolved beneath `/workspace` by the agent, sizes checked while reading).
//!
//! Paths arrive typed ([`WorkspacePath`], checked where the request entered) and go to
//! the agent as their normalised relative form, which it resolves beneath its workspace
//! handle (`openat2`, `RESOLVE_BENEATH`: the kernel's wall against symlinks out). The
//! host still checks sizes against the transfer cap before asking and caps what comes
//! back (the client caps output per stream; [`OutputCollector`] caps again); what the
//! agent answers is mapped to the SDK's errors by kind, never by message text.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use codebeaker::command::{CopyFile, CreateDirectory, DeleteFile, ListDirectory, ReadFile, WriteFile};
use codebeaker::result::{
    CopyFileResult, CreateDirectoryResult, DeleteFileResult, DirEntry, ListDirectoryResult, ReadFileResult,
    WriteFileResult,
};
use codebeaker::workspace::{read_chunk, read_span, FileDownload, UploadBody, MAX_TRANSFER_BYTES};
use codebeaker::{
    CodeResult, Error, ExecContext, FileStreams, OutputCollector, OutputStream, Result, WorkspacePath, WriteMode,
};
use codebeaker_agent::client::{AgentClient, CodeEvent, ExecEvent};
use codebeaker_agent::protocol::{
    Base64Bytes, CodeLanguage, ErrorKind, ExecCommand, ExecRequest as AgentExec, FsReply, FsRequest, Rlimits,
    RunCodeRequest, FILE_DATA_CHUNK,
};

use crate::agent_link::AgentLink;

/// Most open files of one command's processes.
const NOFILE: u64 = 4096;

/// The rlimits of every command in a sandbox whose workspace holds `workspace_bytes`
/// and whose container holds at most `pids_limit` tasks: no file beyond the workspace,
/// and (the guest's uid being the sandbox's own) no more processes than leave the agent
/// its [`AGENT_TASKS`](codebeaker_agent::agent::AGENT_TASKS), so that it can always
/// kill a fork bomb and answer.
pub(crate) fn rlimits(workspace_bytes: u64, pids_limit: i64) -> Rlimits {
    let guest_tasks = u64::try_from(pids_limit).unwrap_or(0).saturating_sub(codebeaker_agent::agent::AGENT_TASKS);
    Rlimits { fsize: Some(workspace_bytes), nofile: Some(NOFILE), nproc: Some(guest_tasks.max(1)) }
}

/// One program to run.
#[derive(Debug, Clone)]
pub(crate) struct ExecRequest {
    /// Program and arguments, run directly (no shell).
    pub argv: Vec<String>,
    /// `NAME=value` entries added to the agent's base environment.
    pub env: Vec<String>,
    /// Working directory, beneath the workspace.
    pub working_dir: WorkspacePath,
    /// Bytes for standard input; without them stdin is empty.
    pub stdin: Option<Vec<u8>>,
}

/// How a program ended.
#[derive(Debug)]
pub(crate) struct ExecOutcome {
    /// Exit code (`128 + n` for signal n); `None` when it was killed for the timeout.
    pub exit_code: Option<i64>,
    /// It ran past the timeout and was killed.
    pub timed_out: bool,
    /// What its end says about a signal ([`ExecExited::signal_note`](codebeaker_agent::protocol::ExecExited::signal_note)).
    pub signal_note: Option<String>,
    /// When it started, for the OOM event query.
    pub started_at: SystemTime,
    /// Wall-clock time from start to end.
    pub duration: Duration,
    /// Output was cut before it reached the host (the agent's per-stream cap).
    pub truncated: bool,
    /// What the program cost.
    pub usage: Option<codebeaker::Usage>,
}

/// The limits every command of a sandbox runs under, as the agent takes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Its rlimits ([`rlimits`]).
    pub rlimits: Rlimits,
    /// The operator's timings: the interrupt grace and the drains go to the agent with
    /// each request.
    pub graces: codebeaker::Graces,
    /// The container's pids limit.
    pub pids_limit: i64,
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Extra pids granted while a timed-out command is being killed (see
/// [`AgentLink::set_pids_limit`]).
const KILL_ROOM_PIDS: i64 = 64;

/// Runs a program through the agent; its output goes to `output` as it arrives. If the
/// program outlives its timeout, the container's pids limit is raised until it ends:
/// a second wall beside the guest's `RLIMIT_NPROC`, so that the agent has room to kill
/// a fork bomb and answer.
pub(crate) async fn exec(
    link: &AgentLink,
    request: &ExecRequest,
    output: &mut OutputCollector,
    output_cap: usize,
    timeout: Duration,
    limits: Limits,
) -> Result<ExecOutcome> {
    let mut raised = false;
    let result = exec_events(link, request, output, output_cap, timeout, limits, &mut raised).await;
    if raised {
        link.set_pids_limit(limits.pids_limit).await;
    }
    result
}

async fn exec_events(
    link: &AgentLink,
    request: &ExecRequest,
    output: &mut OutputCollector,
    output_cap: usize,
    timeout: Duration,
    limits: Limits,
    raised: &mut bool,
) -> Result<ExecOutcome> {
    let client = link.client().await?;
    let cwd = &request.working_dir;
    let env: BTreeMap<String, String> = request
        .env
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let mut call = AgentExec::new(ExecCommand::Argv(request.argv.clone()), millis(timeout), output_cap as u64);
    call.env = env;
    call.cwd = Some(cwd.relative().to_owned());
    call.stdin = request.stdin.clone().map(Base64Bytes);
    call.rlimits = limits.rlimits;
    call.grace_ms = millis(limits.graces.interrupt);
    call.drain_ms = millis(limits.graces.output_drain);
    let started_at = SystemTime::now();
    let start = Instant::now();
    let program = request.argv.first().cloned().unwrap_or_default();
    let mut stream = match client.exec(call).await {
        Ok(stream) => stream,
        Err(e) => return Err(link.explain(e).await),
    };
    // From its timeout on, the agent is killing what the program started.
    let overdue = tokio::time::sleep(timeout);
    tokio::pin!(overdue);
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            () = &mut overdue, if !*raised => {
                *raised = true;
                link.set_pids_limit(limits.pids_limit + KILL_ROOM_PIDS).await;
                continue;
            }
        };
        match event {
            Some(Ok(ExecEvent::Started { .. })) => {}
            Some(Ok(ExecEvent::Stdout(bytes))) => output.push(OutputStream::Stdout, &bytes),
            Some(Ok(ExecEvent::Stderr(bytes))) => output.push(OutputStream::Stderr, &bytes),
            Some(Ok(ExecEvent::Exited(exited))) => {
                return Ok(ExecOutcome {
                    exit_code: if exited.timed_out { None } else { Some(exited.exit_code()) },
                    timed_out: exited.timed_out,
                    signal_note: exited.signal_note(),
                    started_at,
                    duration: start.elapsed(),
                    truncated: exited.truncated,
                    usage: Some(exited.usage.into()),
                });
            }
            Some(Err(codebeaker_agent::client::AgentError::Remote(reply))) => {
                // The program could not start: say it the way a shell would.
                let (code, message) = match (reply.kind, &reply.path) {
                    (ErrorKind::NotFound, None) => (127, format!("{program}: command not found ({reply})")),
                    (ErrorKind::NotFound, Some(_)) => {
                        (126, format!("cannot run {program}: working directory {cwd} does not exist ({reply})"))
                    }
                    (ErrorKind::PermissionDenied, _) => (126, format!("{program}: permission denied ({reply})")),
                    _ => return Err(reply.into()),
                };
                output.push(OutputStream::Stderr, format!("{message}\n").as_bytes());
                return Ok(ExecOutcome {
                    exit_code: Some(code),
                    timed_out: false,
                    signal_note: None,
                    started_at,
                    duration: start.elapsed(),
                    truncated: false,
                    usage: None,
                });
            }
            Some(Err(e)) => return Err(link.explain(e).await),
            None => return Err(Error::sandbox_failed("the sandbox's agent ended a command without its exit")),
        }
    }
}

/// Runs `code` in the session's persistent interpreter.
pub(crate) async fn code(
    link: &AgentLink,
    language: CodeLanguage,
    code: String,
    context: &ExecContext,
    limits: Limits,
) -> Result<CodeResult> {
    let client = link.client().await?;
    let request = RunCodeRequest {
        language,
        code,
        timeout_ms: millis(context.timeout),
        grace_ms: millis(limits.graces.interrupt),
        drain_ms: millis(limits.graces.interpreter_drain),
        output_cap: context.output_limit as u64,
        rlimits: limits.rlimits,
    };
    let start = Instant::now();
    let mut output = OutputCollector::new(context.output_limit, context.output.clone());
    let mut stream = match client.run_code(request).await {
        Ok(stream) => stream,
        Err(e) => return Err(link.explain(e).await),
    };
    loop {
        match stream.next().await {
            Some(Ok(CodeEvent::Stdout(bytes))) => output.push(OutputStream::Stdout, &bytes),
            Some(Ok(CodeEvent::Stderr(bytes))) => output.push(OutputStream::Stderr, &bytes),
            Some(Ok(CodeEvent::Done(done))) => {
                let failed = done.error.is_some() || done.timed_out;
                let error = if done.timed_out { None } else { done.error.as_ref().map(|e| e.summary()) };
                let exit_code = if done.timed_out {
                    -1
                } else if failed {
                    1
                } else {
                    0
                };
                let mut result = output.into_code_result(exit_code, error, millis(start.elapsed()), done.timed_out);
                result.truncated |= done.truncated;
                result.outputs = done.outputs.into_iter().map(Into::into).collect();
                if let Some(value) = done.result {
                    // The trailing expression's value as text, last (after its rich forms
                    // and the figures), as a notebook's execute_result carries it.
                    result.outputs.push(codebeaker::result::RichOutput { mime: "text/plain".to_owned(), data: value });
                }
                result.state_reset = done.state_reset;
                result.usage = done.usage.map(Into::into);
                return Ok(result);
            }
            Some(Err(e)) => return Err(link.explain(e).await),
            None => return Err(Error::sandbox_failed("the sandbox's agent ended a run without its result")),
        }
    }
}

/// One file operation; the agent's typed error becomes the SDK's.
async fn fs(link: &AgentLink, client: &AgentClient, request: FsRequest) -> Result<FsReply> {
    match client.fs(request).await {
        Ok(reply) => Ok(reply),
        Err(e) => Err(link.explain(e).await),
    }
}

fn unexpected(what: &str, reply: &FsReply) -> Error {
    Error::sandbox_failed(format!("the sandbox's agent answered {what} with {reply:?}"))
}

fn check_size(path: &WorkspacePath, bytes: u64) -> Result<()> {
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Error::limit_reached(format!(
            "{path}: file too large ({bytes} bytes; file commands move at most {MAX_TRANSFER_BYTES} bytes at once)"
        )));
    }
    Ok(())
}

/// `write_file`.
pub(crate) async fn write_file(link: &AgentLink, command: &WriteFile) -> Result<WriteFileResult> {
    let path = &command.path;
    let bytes = command.decoded_content()?;
    let size = bytes.len() as u64;
    check_size(path, size)?;
    let client = link.client().await?;
    let request = FsRequest::Write {
        path: path.relative().to_owned(),
        data: Base64Bytes(bytes),
        append: command.mode == WriteMode::Append,
    };
    match fs(link, &client, request).await? {
        FsReply::Written { .. } => Ok(WriteFileResult { path: path.to_string(), bytes: size }),
        other => Err(unexpected("write_file", &other)),
    }
}

/// `read_file`: the whole file or a range of it.
pub(crate) async fn read_file(link: &AgentLink, command: &ReadFile) -> Result<ReadFileResult> {
    let path = &command.path;
    if let Some(length) = command.length {
        // Refused here, before asking, with the same words as every backend.
        read_span(path, u64::MAX, 0, Some(length))?;
    }
    let client = link.client().await?;
    let request = FsRequest::Read {
        path: path.relative().to_owned(),
        max_bytes: MAX_TRANSFER_BYTES,
        offset: command.offset,
        length: command.length,
    };
    match fs(link, &client, request).await? {
        FsReply::Read { data, size } => {
            // Whatever the agent claims, no more than was asked (and the cap) comes back.
            let most = read_span(path, size, command.offset, command.length)?;
            if data.0.len() as u64 > most {
                return Err(Error::sandbox_failed(format!(
                    "the sandbox's agent answered read_file of {path} with {} bytes where at most {most} fit",
                    data.0.len()
                )));
            }
            ReadFileResult::encoded(data.0, command.offset, size, command.encoding, &path.to_string())
        }
        other => Err(unexpected("read_file", &other)),
    }
}

/// Streamed transfers through the agent: file data frames of at most
/// [`FILE_DATA_CHUNK`] bytes, queued a few at a time on each side.
#[async_trait::async_trait]
impl FileStreams for AgentLink {
    async fn download(&self, path: &WorkspacePath, offset: u64) -> Result<FileDownload> {
        let client = self.client().await?;
        let download = match client.download(path.relative().to_owned(), offset).await {
            Ok(download) => download,
            Err(e) => return Err(self.explain(e).await),
        };
        Ok(streamed(download))
    }

    async fn upload(&self, path: &WorkspacePath, append: bool, body: UploadBody) -> Result<u64> {
        let client = self.client().await?;
        let upload = match client.upload(path.relative().to_owned(), append).await {
            Ok(upload) => upload,
            Err(e) => return Err(self.explain(e).await),
        };
        self.send_all(upload, body, &format!("the upload of {path}")).await
    }
}

/// A transfer out of the agent as a reader: its chunks in order, ending at the first
/// error, which the reader's `io::Error` carries (kind and message of the agent's reply).
fn streamed(download: codebeaker_agent::client::FileDownload) -> FileDownload {
    let size = download.size();
    let chunks = futures::stream::unfold(download, |mut download| async move {
        match download.next().await {
            Ok(Some(bytes)) => Some((Ok(bytes::Bytes::from(bytes)), download)),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(codebeaker::Error::from(e))), download)),
        }
    });
    // After an error the stream would go on asking: stop at the first one.
    let chunks = futures::StreamExt::scan(chunks, false, |failed, item| {
        let next = if *failed { None } else { Some(item) };
        *failed = matches!(next, Some(Err(_)));
        futures::future::ready(next)
    });
    FileDownload { size, reader: Box::pin(tokio_util::io::StreamReader::new(Box::pin(chunks))) }
}

impl AgentLink {
    /// Sends `body` through `upload` chunk by chunk and finishes it; `what` names the
    /// transfer when the body breaks off.
    async fn send_all(
        &self,
        mut upload: codebeaker_agent::client::FileUpload,
        mut body: UploadBody,
        what: &str,
    ) -> Result<u64> {
        loop {
            // Dropping `upload` on an error cancels it: the agent undoes what it wrote.
            match read_chunk(&mut body, FILE_DATA_CHUNK).await {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    if let Err(e) = upload.send(chunk).await {
                        return Err(self.explain(e).await);
                    }
                }
                Err(e) => return Err(Error::invalid_input(format!("{what} broke off: {e}")).with_source(e)),
            }
        }
        match upload.finish().await {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(self.explain(e).await),
        }
    }
}

/// Workspace archives through the agent (`archive`, `unarchive`): it builds and
/// extracts them beneath `/workspace` as the command user, so what a session installed
/// there (`pip install --user`, npm) travels with its files.
#[async_trait::async_trait]
impl codebeaker::Archives for AgentLink {
    async fn export(&self, limit: u64) -> Result<FileDownload> {
        let client = self.client().await?;
        match client.archive(limit).await {
            Ok(download) => Ok(streamed(download)),
            Err(e) => Err(self.explain(e).await),
        }
    }

    async fn import(&self, archive: UploadBody) -> Result<u64> {
        let client = self.client().await?;
        let upload = match client.unarchive().await {
            Ok(upload) => upload,
            Err(e) => return Err(self.explain(e).await),
        };
        self.send_all(upload, archive, "the workspace archive").await
    }
}

/// `create_directory`.
pub(crate) async fn create_directory(link: &AgentLink, command: &CreateDirectory) -> Result<CreateDirectoryResult> {
    let path = &command.path;
    let client = link.client().await?;
    match fs(link, &client, FsRequest::Mkdir { path: path.relative().to_owned() }).await? {
        FsReply::Made => Ok(CreateDirectoryResult { path: path.to_string() }),
        other => Err(unexpected("create_directory", &other)),
    }
}

/// `copy_file`.
pub(crate) async fn copy_file(link: &AgentLink, command: &CopyFile) -> Result<CopyFileResult> {
    let source = &command.source_path;
    let destination = &command.destination_path;
    let client = link.client().await?;
    let request = FsRequest::Copy {
        from: source.relative().to_owned(),
        to: destination.relative().to_owned(),
        max_bytes: MAX_TRANSFER_BYTES,
    };
    match fs(link, &client, request).await? {
        FsReply::Copied { bytes } => {
            Ok(CopyFileResult { source_path: source.to_string(), destination_path: destination.to_string(), bytes })
        }
        other => Err(unexpected("copy_file", &other)),
    }
}

/// `delete_file`.
pub(crate) async fn delete_file(link: &AgentLink, command: &DeleteFile) -> Result<DeleteFileResult> {
    let path = &command.path;
    if path.is_root() {
        return Err(Error::invalid_input(format!("{path} is the workspace root and cannot be deleted")));
    }
    let client = link.client().await?;
    match fs(link, &client, FsRequest::Delete { path: path.relative().to_owned() }).await? {
        FsReply::Deleted => Ok(DeleteFileResult { path: path.to_string(), deleted: true }),
        other => Err(unexpected("delete_file", &other)),
    }
}

/// `list_directory`: entries sorted by name; symlinks reported, not followed.
pub(crate) async fn list_directory(link: &AgentLink, command: &ListDirectory) -> Result<ListDirectoryResult> {
    let path = &command.path;
    let client = link.client().await?;
    match fs(link, &client, FsRequest::List { path: path.relative().to_owned() }).await? {
        FsReply::Listed { entries } => {
            let mut entries: Vec<DirEntry> = entries
                .into_iter()
                .map(|e| DirEntry { name: e.name, entry_type: e.kind.into(), size: e.size })
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(ListDirectoryResult { path: path.to_string(), entries })
        }
        other => Err(unexpected("list_directory", &other)),
    }
}
