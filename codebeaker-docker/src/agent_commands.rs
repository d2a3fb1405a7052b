//! Commands through the in-container agent: programs (argv, env, working directory,
//! stdin, streaming, rlimits, usage), code in the persistent python or node interpreter
//! (state kept, rich outputs, `stateReset` after a forced restart), and every file command
//! (resolved beneath `/workspace` by the agent, sizes checked while reading).
//!
//! The host still checks what it can before asking (paths parse as [`WorkspacePath`],
//! sizes against the transfer cap) and caps what comes back (the client caps output per
//! stream; [`OutputCollector`] caps again); what the agent answers is mapped to the SDK's
//! errors by kind, never by message text.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use codebeaker::command::{CopyFile, CreateDirectory, DeleteFile, ListDirectory, ReadFile, WriteFile};
use codebeaker::result::{
    CopyFileResult, CreateDirectoryResult, DeleteFileResult, DirEntry, ListDirectoryResult, ReadFileResult,
    WriteFileResult,
};
use codebeaker::workspace::MAX_TRANSFER_BYTES;
use codebeaker::{CodeResult, Error, ExecContext, OutputCollector, OutputStream, Result, WorkspacePath, WriteMode};
use codebeaker_agent::client::{AgentClient, CodeEvent, ExecEvent};
use codebeaker_agent::protocol::{
    Base64Bytes, CodeLanguage, ErrorKind, ExecCommand, ExecRequest as AgentExec, FsReply, FsRequest, Rlimits,
    RunCodeRequest,
};

use crate::agent_link::AgentLink;
use crate::exec::{ExecOutcome, ExecRequest};

/// Most open files of one command's processes.
const NOFILE: u64 = 4096;

/// The rlimits of every command in a sandbox whose workspace holds `workspace_bytes`.
pub(crate) fn rlimits(workspace_bytes: u64) -> Rlimits {
    Rlimits { fsize: Some(workspace_bytes), nofile: Some(NOFILE), nproc: None }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Extra pids granted while a timed-out command is being killed (see
/// [`AgentLink::set_pids_limit`]).
const KILL_ROOM_PIDS: i64 = 64;

/// Runs a program through the agent; its output goes to `output` as it arrives. If the
/// program outlives its timeout, the container's pids limit (`pids_limit`) is raised
/// until it ends, so that the agent has room to kill a fork bomb and answer.
pub(crate) async fn exec(
    link: &AgentLink,
    request: &ExecRequest,
    output: &mut OutputCollector,
    output_cap: usize,
    timeout: Duration,
    rlimits: Rlimits,
    pids_limit: i64,
) -> Result<ExecOutcome> {
    let mut raised = false;
    let result = exec_events(link, request, output, output_cap, timeout, rlimits, pids_limit, &mut raised).await;
    if raised {
        link.set_pids_limit(pids_limit).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn exec_events(
    link: &AgentLink,
    request: &ExecRequest,
    output: &mut OutputCollector,
    output_cap: usize,
    timeout: Duration,
    rlimits: Rlimits,
    pids_limit: i64,
    raised: &mut bool,
) -> Result<ExecOutcome> {
    let client = link.client().await?;
    let cwd = WorkspacePath::parse(&request.working_dir)?;
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
    call.rlimits = rlimits;
    let started_at = SystemTime::now();
    let start = Instant::now();
    let program = request.argv.first().cloned().unwrap_or_default();
    let mut stream = match client.exec(call).await {
        Ok(stream) => stream,
        Err(e) => return Err(link.explain(e).await),
    };
    let overdue = tokio::time::sleep(timeout + Duration::from_millis(100));
    tokio::pin!(overdue);
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            () = &mut overdue, if !*raised => {
                *raised = true;
                link.set_pids_limit(pids_limit + KILL_ROOM_PIDS).await;
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
                    started_at,
                    duration: start.elapsed(),
                    truncated: false,
                    usage: None,
                });
            }
            Some(Err(e)) => return Err(link.explain(e).await),
            None => return Err(Error::SandboxFailed("the sandbox's agent ended a command without its exit".into())),
        }
    }
}

/// Runs `code` in the session's persistent interpreter.
pub(crate) async fn code(
    link: &AgentLink,
    language: CodeLanguage,
    code: String,
    context: &ExecContext,
    rlimits: Rlimits,
) -> Result<CodeResult> {
    let client = link.client().await?;
    let request = RunCodeRequest {
        language,
        code,
        timeout_ms: millis(context.timeout),
        output_cap: context.output_limit as u64,
        rlimits,
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
                result.state_reset = done.state_reset;
                result.usage = done.usage.map(Into::into);
                return Ok(result);
            }
            Some(Err(e)) => return Err(link.explain(e).await),
            None => return Err(Error::SandboxFailed("the sandbox's agent ended a run without its result".into())),
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
    Error::SandboxFailed(format!("the sandbox's agent answered {what} with {reply:?}"))
}

fn check_size(path: &WorkspacePath, bytes: u64) -> Result<()> {
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Error::LimitReached(format!(
            "{path}: file too large ({bytes} bytes; file commands move at most {MAX_TRANSFER_BYTES} bytes at once)"
        )));
    }
    Ok(())
}

/// `write_file`.
pub(crate) async fn write_file(link: &AgentLink, command: &WriteFile) -> Result<WriteFileResult> {
    let path = WorkspacePath::parse(&command.path)?;
    let bytes = command.decoded_content()?;
    let size = bytes.len() as u64;
    check_size(&path, size)?;
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

/// `read_file`.
pub(crate) async fn read_file(link: &AgentLink, command: &ReadFile) -> Result<ReadFileResult> {
    let path = WorkspacePath::parse(&command.path)?;
    let client = link.client().await?;
    let request = FsRequest::Read { path: path.relative().to_owned(), max_bytes: MAX_TRANSFER_BYTES };
    match fs(link, &client, request).await? {
        FsReply::Read { data } => {
            // Whatever the agent claims, no more than the cap comes back.
            check_size(&path, data.0.len() as u64)?;
            let bytes = data.0.len() as u64;
            Ok(ReadFileResult { content: command.encoding.encode(data.0, &path.to_string())?, bytes })
        }
        other => Err(unexpected("read_file", &other)),
    }
}

/// `create_directory`.
pub(crate) async fn create_directory(link: &AgentLink, command: &CreateDirectory) -> Result<CreateDirectoryResult> {
    let path = WorkspacePath::parse(&command.path)?;
    let client = link.client().await?;
    match fs(link, &client, FsRequest::Mkdir { path: path.relative().to_owned() }).await? {
        FsReply::Made => Ok(CreateDirectoryResult { path: path.to_string() }),
        other => Err(unexpected("create_directory", &other)),
    }
}

/// `copy_file`.
pub(crate) async fn copy_file(link: &AgentLink, command: &CopyFile) -> Result<CopyFileResult> {
    let source = WorkspacePath::parse(&command.source_path)?;
    let destination = WorkspacePath::parse(&command.destination_path)?;
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
    let path = WorkspacePath::parse(&command.path)?;
    if path.is_root() {
        return Err(Error::InvalidInput(format!("{path} is the workspace root and cannot be deleted")));
    }
    let client = link.client().await?;
    match fs(link, &client, FsRequest::Delete { path: path.relative().to_owned() }).await? {
        FsReply::Deleted => Ok(DeleteFileResult { path: path.to_string(), deleted: true }),
        other => Err(unexpected("delete_file", &other)),
    }
}

/// `list_directory`: entries sorted by name; symlinks reported, not followed.
pub(crate) async fn list_directory(link: &AgentLink, command: &ListDirectory) -> Result<ListDirectoryResult> {
    let path = WorkspacePath::parse(&command.path)?;
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
