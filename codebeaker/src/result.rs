//! What commands give back: a typed result per command type, and the
//! `{success, result, error, durationMs}` envelope every `session.execute` answers with.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// `write_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteFileResult {
    /// The absolute workspace path written.
    pub path: String,
    /// Bytes written by this command.
    pub bytes: u64,
}

/// `read_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadFileResult {
    /// The content, as text or base64 per the command's `encoding`.
    pub content: String,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// What one command cost, measured by the sandbox (extension `usage`; the same shape
/// from every backend that reports it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPU time (user + system) of the command's processes or of its JS execution, in ms.
    pub cpu_ms: u64,
    /// Peak resident memory of the process that ran it, in KiB.
    pub max_rss_kb: u64,
    /// Bytes of output the command produced (before any truncation).
    pub output_bytes: u64,
    /// Network destinations the egress policy refused while the command ran (or, for a
    /// background process, since the session's previous command); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_refused: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A rich result of running code (extension `outputs`): a PNG of a figure, the HTML of
/// a table… `data` is base64 for binary types (`image/png`), text otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RichOutput {
    /// The MIME type (`image/png`, `text/html`, `image/svg+xml`, `text/plain`).
    pub mime: String,
    /// The content: base64 for binary types, text otherwise.
    pub data: String,
}

/// What a session's sandbox can do, as the session info reports it (extension
/// `capabilities`); the conformance suite reads it rather than being told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// `execute_code` keeps variables, imports and functions across commands.
    pub persistent_state: bool,
    /// `execute_shell` takes standard input.
    pub stdin: bool,
    /// Output streams while the command runs (`session.output`).
    pub streaming: bool,
    /// `execute_code` may return rich `outputs` (images, HTML).
    pub rich_outputs: bool,
    /// `execute_shell` is available.
    pub shell: bool,
}

/// `execute_shell` result (also the result of one-shot `execution.run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellResult {
    /// The program's exit code (`-1` when it was killed before exiting on its own).
    pub exit_code: i64,
    /// Standard output (lossy UTF-8), cut at the output limit.
    pub stdout: String,
    /// Standard error (lossy UTF-8), cut at the output limit.
    pub stderr: String,
    /// How long the program ran.
    pub duration_ms: u64,
    /// The program hit the command's wall-clock limit and was killed (extension).
    #[serde(default)]
    pub timed_out: bool,
    /// stdout or stderr was cut at the output limit (extension).
    #[serde(default)]
    pub truncated: bool,
    /// What the command cost, where the backend measures it (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// `execute_code` result. On the wire its success value is just [`CodeResult::output`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeResult {
    /// Everything the program printed, stdout and stderr interleaved in the order they were
    /// written, with the trailing newline removed.
    pub output: String,
    /// Standard output alone.
    pub stdout: String,
    /// Standard error alone.
    pub stderr: String,
    /// Exit code (0 when the program finished normally).
    pub exit_code: i64,
    /// Why the program failed (thrown error, non-zero exit), when it did.
    pub error: Option<String>,
    /// The program hit the command's wall-clock limit and was stopped.
    pub timed_out: bool,
    /// Output was cut at the output limit.
    pub truncated: bool,
    /// How long the program ran.
    pub duration_ms: u64,
    /// What the command cost, where the backend measures it (extension `usage`).
    pub usage: Option<Usage>,
    /// Rich results (figures, HTML) beside the text (extension `outputs`).
    pub outputs: Vec<RichOutput>,
    /// The session's interpreter state was lost and started afresh during this command
    /// (a timeout that had to kill, a memory-limit failure, a crash); workspace files are
    /// kept (extension `stateReset`).
    pub state_reset: bool,
}

impl CodeResult {
    /// The same run in the shape of `execution.run` results.
    pub fn into_shell_result(self) -> ShellResult {
        ShellResult {
            exit_code: self.exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            duration_ms: self.duration_ms,
            timed_out: self.timed_out,
            truncated: self.truncated,
            usage: self.usage,
        }
    }
}

/// `create_directory` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDirectoryResult {
    /// The absolute workspace path of the directory.
    pub path: String,
}

/// `copy_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyFileResult {
    /// The absolute workspace path copied from.
    pub source_path: String,
    /// The absolute workspace path copied to.
    pub destination_path: String,
    /// Bytes copied.
    pub bytes: u64,
}

/// `delete_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFileResult {
    /// The absolute workspace path deleted.
    pub path: String,
    /// Always `true` (a missing file is a `NotFound` error instead).
    pub deleted: bool,
}

/// The kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (not followed).
    Symlink,
}

/// One entry of a `list_directory` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirEntry {
    /// File name (no directory part).
    pub name: String,
    /// File, directory or symlink.
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    /// Size in bytes (0 for directories).
    pub size: u64,
}

/// `list_directory` result; entries sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDirectoryResult {
    /// The absolute workspace path listed.
    pub path: String,
    /// The directory's entries, sorted by name.
    pub entries: Vec<DirEntry>,
}

/// The typed result of a command that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandResult {
    /// Result of `write_file`.
    WriteFile(WriteFileResult),
    /// Result of `read_file`.
    ReadFile(ReadFileResult),
    /// Result of `execute_shell`.
    ExecuteShell(ShellResult),
    /// Result of `execute_code`.
    ExecuteCode(CodeResult),
    /// Result of `create_directory`.
    CreateDirectory(CreateDirectoryResult),
    /// Result of `copy_file`.
    CopyFile(CopyFileResult),
    /// Result of `delete_file`.
    DeleteFile(DeleteFileResult),
    /// Result of `list_directory`.
    ListDirectory(ListDirectoryResult),
}

impl CommandResult {
    /// What running code or a shell command cost, when measured (extension `usage`).
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            CommandResult::ExecuteCode(code) => code.usage.as_ref(),
            CommandResult::ExecuteShell(shell) => shell.usage.as_ref(),
            _ => None,
        }
    }

    /// Adds `refused` egress refusals to the usage of a code or shell result (a file
    /// command has no usage: its refusals wait for the session's next run).
    pub fn count_egress_refused(&mut self, refused: u64) {
        if refused == 0 {
            return;
        }
        let usage = match self {
            CommandResult::ExecuteCode(code) => &mut code.usage,
            CommandResult::ExecuteShell(shell) => &mut shell.usage,
            _ => return,
        };
        usage.get_or_insert_with(Usage::default).egress_refused += refused;
    }

    /// The JSON value of the envelope's `result` field.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            CommandResult::WriteFile(r) => serde_json::to_value(r),
            CommandResult::ReadFile(r) => serde_json::to_value(r),
            CommandResult::ExecuteShell(r) => serde_json::to_value(r),
            CommandResult::ExecuteCode(r) => Ok(serde_json::Value::String(r.output.clone())),
            CommandResult::CreateDirectory(r) => serde_json::to_value(r),
            CommandResult::CopyFile(r) => serde_json::to_value(r),
            CommandResult::DeleteFile(r) => serde_json::to_value(r),
            CommandResult::ListDirectory(r) => serde_json::to_value(r),
        };
        // These are plain structs of strings and numbers: serializing them cannot fail.
        value.unwrap_or(serde_json::Value::Null)
    }

    /// Why a command that ran to the end still counts as failed: a timeout (reported
    /// with the command's `limit`, not the time it took), or for `execute_code` a thrown
    /// error or non-zero exit. A non-zero exit of `execute_shell` is not a failure (the
    /// exit code is the answer).
    pub fn failure(&self, limit: Duration) -> Option<Error> {
        match self {
            CommandResult::ExecuteShell(r) if r.timed_out => Some(Error::TimedOut(limit)),
            CommandResult::ExecuteCode(r) if r.timed_out => Some(Error::TimedOut(limit)),
            CommandResult::ExecuteCode(r) => match &r.error {
                Some(message) => Some(Error::ProgramFailed(message.clone())),
                None if r.exit_code != 0 => {
                    Some(Error::ProgramFailed(format!("Program exited with code {}", r.exit_code)))
                }
                None => None,
            },
            _ => None,
        }
    }
}

/// The result envelope of `session.execute`: `{success, result, error, durationMs}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    /// Whether the command did what it was asked.
    pub success: bool,
    /// The typed result; also present on some failures (a timed-out program's partial
    /// output, the output printed before a thrown error).
    pub result: Option<CommandResult>,
    /// What went wrong, when `success` is false.
    pub error: Option<Error>,
    /// Wall-clock time of the whole command, including sandbox overhead.
    pub duration_ms: u64,
}

impl CommandOutcome {
    /// Builds the envelope of a command that ran with the wall-clock `limit`: a timeout
    /// is reported as `Command timed out after <limit> ms`.
    pub fn from_run(result: Result<CommandResult, Error>, duration_ms: u64, limit: Duration) -> Self {
        match result {
            Ok(result) => {
                let error = result.failure(limit);
                CommandOutcome { success: error.is_none(), result: Some(result), error, duration_ms }
            }
            Err(error) => CommandOutcome { success: false, result: None, error: Some(error), duration_ms },
        }
    }

    /// Builds the envelope of a finished command whose limit is not known (a timeout is
    /// then reported with the elapsed time); prefer [`CommandOutcome::from_run`].
    pub fn from_result(result: Result<CommandResult, Error>, duration_ms: u64) -> Self {
        Self::from_run(result, duration_ms, Duration::from_millis(duration_ms))
    }

    /// What the command cost, when it ran code or a shell command on a backend that
    /// measures it (extension `usage`).
    pub fn usage(&self) -> Option<&Usage> {
        self.result.as_ref().and_then(CommandResult::usage)
    }

    /// The envelope as wire JSON, with the extensions `usage`, `outputs` and
    /// `stateReset` where the result has them.
    pub fn to_json(&self) -> serde_json::Value {
        let mut envelope = serde_json::json!({
            "success": self.success,
            "result": self.result.as_ref().map(CommandResult::to_json),
            "error": self.error.as_ref().map(Error::to_string),
            "durationMs": self.duration_ms,
        });
        let (outputs, state_reset) = match &self.result {
            Some(CommandResult::ExecuteCode(code)) => (code.outputs.as_slice(), code.state_reset),
            _ => (&[][..], false),
        };
        if let Some(usage) = self.usage() {
            envelope["usage"] = serde_json::to_value(usage).unwrap_or_default();
        }
        if !outputs.is_empty() {
            envelope["outputs"] = serde_json::to_value(outputs).unwrap_or_default();
        }
        if state_reset {
            envelope["stateReset"] = serde_json::Value::Bool(true);
        }
        envelope
    }
}
