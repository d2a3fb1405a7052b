//! What commands give back: a typed result per command type, and the
//! `{success, result, error, durationMs}` envelope every `session.execute` answers with.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// `write_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteFileResult {
    /// The absolute workspace path written.
    pub path: String,
    /// Bytes written by this command.
    pub bytes: u64,
}

/// `read_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadFileResult {
    /// The content, as text or base64 per the command's `encoding`.
    pub content: String,
    /// Bytes read (the whole file when no range was asked for).
    pub bytes: u64,
    /// Size of the whole file in bytes (extension).
    pub size: u64,
    /// Whether the read reached the end of the file (extension): `false` means more
    /// remains after `offset + bytes`.
    pub eof: bool,
}

impl ReadFileResult {
    /// The result of reading `bytes` at `offset` of a file of `size` bytes, encoded as
    /// `encoding` asks (`path` names the file in the error when the bytes are not text).
    pub fn encoded(
        bytes: Vec<u8>,
        offset: u64,
        size: u64,
        encoding: crate::command::Encoding,
        path: &str,
    ) -> crate::Result<Self> {
        let read = bytes.len() as u64;
        let eof = offset.saturating_add(read) >= size;
        Ok(ReadFileResult { content: encoding.encode(bytes, path)?, bytes: read, size, eof })
    }
}

/// What one command cost, measured by the sandbox (extension `usage`; the same shape
/// from every backend that reports it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RichOutput {
    /// The MIME type (`image/png`, `text/html`, `image/svg+xml`, `text/plain`).
    pub mime: String,
    /// The content: base64 for binary types, text otherwise.
    pub data: String,
}

/// What a session's sandbox can do, as the session info reports it (extension
/// `capabilities`); the conformance suite reads it rather than being told.
///
/// Non-exhaustive: capabilities are added without a breaking change, each `false` by
/// default. Outside this crate, build it from [`Capabilities::default`] with the `with_*`
/// methods (or by setting fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
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
    /// Background processes (`process.start` and the other `process.*` methods).
    #[serde(default)]
    pub processes: bool,
    /// Background processes on a terminal (`process.start` with `pty`, `process.resize`).
    #[serde(default)]
    pub pty: bool,
    /// `session.pause` and `session.resume`.
    #[serde(default)]
    pub pause: bool,
    /// `session.snapshot` and `session.create` with `fromSnapshot` (and forks of the
    /// files).
    #[serde(default)]
    pub snapshots: bool,
    /// `session.fork` keeps the interpreter's state (a live copy of the sandbox).
    #[serde(default)]
    pub live_fork: bool,
}

impl Capabilities {
    /// With `persistent_state` declared.
    pub fn with_persistent_state(mut self) -> Self {
        self.persistent_state = true;
        self
    }

    /// With `stdin` declared.
    pub fn with_stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    /// With `streaming` declared.
    pub fn with_streaming(mut self) -> Self {
        self.streaming = true;
        self
    }

    /// With `rich_outputs` declared.
    pub fn with_rich_outputs(mut self) -> Self {
        self.rich_outputs = true;
        self
    }

    /// With `shell` declared.
    pub fn with_shell(mut self) -> Self {
        self.shell = true;
        self
    }

    /// With `processes` declared.
    pub fn with_processes(mut self) -> Self {
        self.processes = true;
        self
    }

    /// With `pause` declared.
    pub fn with_pause(mut self) -> Self {
        self.pause = true;
        self
    }

    /// With `snapshots` declared.
    pub fn with_snapshots(mut self) -> Self {
        self.snapshots = true;
        self
    }

    /// With `live_fork` declared.
    pub fn with_live_fork(mut self) -> Self {
        self.live_fork = true;
        self
    }

    /// With `pty` (and `processes`) declared.
    pub fn with_pty(mut self) -> Self {
        self.processes = true;
        self.pty = true;
        self
    }
}

/// `execute_shell` result (also the result of one-shot `execution.run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// Everything the program printed, stdout and stderr interleaved as written (the
    /// wire's `result` of `execute_code`).
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Standard output alone. Empty in a result read back from the wire, which carries
    /// only the interleaved [`CodeResult::output`].
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Standard error alone. Empty in a result read back from the wire, which carries
    /// only the interleaved [`CodeResult::output`].
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// The exit code (0 when the program finished normally). The wire carries it only in
    /// the error `Program exited with code N`: a result read back from the wire has that
    /// `N`, and 0 otherwise.
    pub fn exit_code(&self) -> i64 {
        self.exit_code
    }

    /// Whether the program finished normally: no thrown error, exit code 0, in time.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.exit_code == 0 && !self.timed_out
    }

    /// The program hit the command's wall-clock limit and was stopped.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Why the program failed (a thrown error), when it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Rich results (figures, HTML) beside the text.
    pub fn outputs(&self) -> &[RichOutput] {
        &self.outputs
    }

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

impl ShellResult {
    /// The program's exit code (`-1` when it was killed before exiting on its own).
    pub fn exit_code(&self) -> i64 {
        self.exit_code
    }

    /// Standard output (lossy UTF-8), cut at the output limit.
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Standard error (lossy UTF-8), cut at the output limit.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }
}

/// `create_directory` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateDirectoryResult {
    /// The absolute workspace path of the directory.
    pub path: String,
}

/// `copy_file` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFileResult {
    /// The absolute workspace path deleted.
    pub path: String,
    /// Always `true` (a missing file is a `NotFound` error instead).
    pub deleted: bool,
}

/// The kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListDirectoryResult {
    /// The absolute workspace path listed.
    pub path: String,
    /// The directory's entries, sorted by name.
    pub entries: Vec<DirEntry>,
}

/// The typed result of a command that ran. On the wire (the envelope's `result`) it is
/// the result's own object, or for `execute_code` the program's output as one string;
/// deserializing tells the command from the result's shape (a string is `execute_code`'s
/// output, an object with `exitCode` is `execute_shell`'s…), so results read back from
/// the wire are typed again.
///
/// Non-exhaustive, like [`crate::Command`]: a new command kind brings a new result kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum CommandResult {
    /// Result of `write_file`.
    WriteFile(WriteFileResult),
    /// Result of `read_file`.
    ReadFile(ReadFileResult),
    /// Result of `execute_shell`.
    ExecuteShell(ShellResult),
    /// Result of `execute_code`: on the wire, the program's output.
    #[serde(serialize_with = "code_output")]
    #[schemars(with = "String")]
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

/// `as_*` (borrow) and `into_*` (take) accessors of one [`CommandResult`] variant.
macro_rules! variant_accessors {
    ($($variant:ident($ty:ty): $as:ident, $into:ident, $what:literal;)*) => {
        impl CommandResult {
            $(
                #[doc = concat!("The result of `", $what, "`, if this is one.")]
                pub fn $as(&self) -> Option<&$ty> {
                    match self {
                        CommandResult::$variant(result) => Some(result),
                        _ => None,
                    }
                }

                #[doc = concat!("The result of `", $what, "`, if this is one, taken out.")]
                pub fn $into(self) -> Option<$ty> {
                    match self {
                        CommandResult::$variant(result) => Some(result),
                        _ => None,
                    }
                }
            )*
        }
    };
}

variant_accessors! {
    WriteFile(WriteFileResult): as_write_file, into_write_file, "write_file";
    ReadFile(ReadFileResult): as_read_file, into_read_file, "read_file";
    ExecuteShell(ShellResult): as_shell, into_shell, "execute_shell";
    ExecuteCode(CodeResult): as_code, into_code, "execute_code";
    CreateDirectory(CreateDirectoryResult): as_create_directory, into_create_directory, "create_directory";
    CopyFile(CopyFileResult): as_copy_file, into_copy_file, "copy_file";
    DeleteFile(DeleteFileResult): as_delete_file, into_delete_file, "delete_file";
    ListDirectory(ListDirectoryResult): as_list_directory, into_list_directory, "list_directory";
}

impl CommandResult {
    /// The command type (`execute_code`, `read_file`…) this is the result of.
    pub fn command_type(&self) -> &'static str {
        match self {
            CommandResult::WriteFile(_) => "write_file",
            CommandResult::ReadFile(_) => "read_file",
            CommandResult::ExecuteShell(_) => "execute_shell",
            CommandResult::ExecuteCode(_) => "execute_code",
            CommandResult::CreateDirectory(_) => "create_directory",
            CommandResult::CopyFile(_) => "copy_file",
            CommandResult::DeleteFile(_) => "delete_file",
            CommandResult::ListDirectory(_) => "list_directory",
        }
    }

    /// Reads the envelope's `result` back, telling the command from its shape. An
    /// `execute_code` result is its output alone (see [`CodeResult::stdout`]).
    pub fn from_json(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        use serde_json::from_value;
        let object = match value {
            serde_json::Value::String(output) => {
                return Ok(CommandResult::ExecuteCode(CodeResult { output, ..CodeResult::default() }))
            }
            serde_json::Value::Object(object) => object,
            other => {
                return Err(serde_json::Error::custom(format!(
                    "a command result is a string or an object, not {other}"
                )))
            }
        };
        let has = |key: &str| object.contains_key(key);
        let shape = (has("exitCode"), has("content"), has("entries"), has("sourcePath"), has("deleted"), has("bytes"));
        let value = serde_json::Value::Object(object);
        Ok(match shape {
            (true, ..) => CommandResult::ExecuteShell(from_value(value)?),
            (_, true, ..) => CommandResult::ReadFile(from_value(value)?),
            (_, _, true, ..) => CommandResult::ListDirectory(from_value(value)?),
            (_, _, _, true, ..) => CommandResult::CopyFile(from_value(value)?),
            (_, _, _, _, true, _) => CommandResult::DeleteFile(from_value(value)?),
            (_, _, _, _, _, true) => CommandResult::WriteFile(from_value(value)?),
            _ => CommandResult::CreateDirectory(from_value(value)?),
        })
    }

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
        // Plain structs of strings and numbers: serializing them cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Why a command that ran to the end still counts as failed: a timeout (reported
    /// with the command's `limit`, not the time it took), or for `execute_code` a thrown
    /// error or non-zero exit. A non-zero exit of `execute_shell` is not a failure (the
    /// exit code is the answer).
    pub fn failure(&self, limit: Duration) -> Option<Error> {
        match self {
            CommandResult::ExecuteShell(r) if r.timed_out => Some(Error::timed_out(limit)),
            CommandResult::ExecuteCode(r) if r.timed_out => Some(Error::timed_out(limit)),
            CommandResult::ExecuteCode(r) => match &r.error {
                Some(message) => Some(Error::program_failed(message.clone())),
                None if r.exit_code != 0 => {
                    Some(Error::program_failed(format!("Program exited with code {}", r.exit_code)))
                }
                None => None,
            },
            _ => None,
        }
    }
}

/// `execute_code`'s wire result: the program's output.
fn code_output<S: serde::Serializer>(code: &CodeResult, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&code.output)
}

impl<'de> Deserialize<'de> for CommandResult {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        CommandResult::from_json(value).map_err(serde::de::Error::custom)
    }
}

/// The result envelope of `session.execute`: `{success, result, error, durationMs}`.
///
/// Serializes as [`CommandOutcome::to_json`] and deserializes from it, so a client reads
/// the server's answers back into the same types. The error comes back with the kind
/// the envelope's `errorKind` names and its message; an envelope without one (an older
/// server) gives [`ErrorKind::ProgramFailed`].
#[derive(Debug, PartialEq)]
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

    /// Whether the command did what it was asked.
    pub fn is_success(&self) -> bool {
        self.success
    }

    /// The typed result, when there is one (also on some failures: output printed
    /// before an error, partial output of a timed-out program).
    pub fn result(&self) -> Option<&CommandResult> {
        self.result.as_ref()
    }

    /// What went wrong, when the command failed.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// What went wrong, in the words the wire's `error` carries.
    pub fn error_message(&self) -> Option<String> {
        self.error.as_ref().map(Error::to_string)
    }

    /// The result of a command that succeeded, or what went wrong.
    pub fn into_result(self) -> Result<CommandResult, Error> {
        match (self.success, self.result, self.error) {
            (true, Some(result), _) => Ok(result),
            (_, _, Some(error)) => Err(error),
            (success, _, None) => Err(Error::internal(format!(
                "the envelope says success: {success} without a {}",
                if success { "result" } else { "error" }
            ))),
        }
    }

    /// The output of `execute_code` (the wire's `result` string), when there is one.
    pub fn output(&self) -> Option<&str> {
        self.result.as_ref().and_then(CommandResult::as_code).map(CodeResult::output)
    }

    /// The envelope as wire JSON, with the extensions `usage`, `outputs` and
    /// `stateReset` where the result has them.
    pub fn to_json(&self) -> serde_json::Value {
        // Strings, numbers and the plain result structs: serializing cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The envelope with the extensions `errorKind` and `exitCode`, for clients that ask
    /// for them (`"errorKinds": true` in `session.execute`); the plain serialization keeps
    /// the guide's shape. [`CommandOutcome`]'s `Deserialize` reads either.
    pub fn with_kinds(&self) -> impl Serialize + '_ {
        self.envelope(true)
    }

    /// The envelope as it travels; `kinds`: with `errorKind` and `exitCode`.
    fn envelope(&self, kinds: bool) -> Envelope<'_> {
        let (outputs, state_reset) = match &self.result {
            Some(CommandResult::ExecuteCode(code)) => (code.outputs.as_slice(), code.state_reset),
            _ => (&[][..], false),
        };
        let exit_code = match &self.result {
            Some(CommandResult::ExecuteCode(code)) if kinds && code.exit_code != 0 => Some(code.exit_code),
            _ => None,
        };
        Envelope {
            success: self.success,
            result: self.result.as_ref(),
            error: self.error.as_ref().map(Error::to_string),
            error_kind: self.error.as_ref().filter(|_| kinds).map(Error::kind),
            exit_code,
            duration_ms: self.duration_ms,
            usage: self.usage(),
            outputs,
            state_reset,
        }
    }
}

impl Serialize for CommandOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.envelope(false).serialize(serializer)
    }
}

impl JsonSchema for CommandOutcome {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CommandOutcome".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Envelope::json_schema(generator)
    }
}

/// The result envelope of a command, `{success, result, error, durationMs}`, with the
/// extensions `usage`, `outputs` and `stateReset` where they apply.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    /// Whether the command did what it was asked.
    success: bool,
    /// The command's result, or `null`; also present on some failures (the output printed
    /// before an error, a timed-out program's partial output).
    result: Option<&'a CommandResult>,
    /// `null`, or what went wrong (e.g. `File not found: /workspace/missing.py`).
    error: Option<String>,
    /// With `error`, when the request asked for `errorKinds`: the error's kind, the part
    /// clients decide on (extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<ErrorKind>,
    /// `execute_code` whose program exited with a non-zero code, when the request asked
    /// for `errorKinds`: that code (extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    /// Wall-clock time of the whole command, sandbox overhead included.
    duration_ms: u64,
    /// What the command cost, where the backend measures it (extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
    /// Rich results of `execute_code` beside the text (extension).
    #[serde(skip_serializing_if = "<[RichOutput]>::is_empty")]
    outputs: &'a [RichOutput],
    /// `true` when the session's interpreter state was lost during this command (extension).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    state_reset: bool,
}

/// The envelope as it travels, before the result is typed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOutcome {
    success: bool,
    #[serde(default)]
    result: Option<CommandResult>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_kind: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
    duration_ms: u64,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    outputs: Vec<RichOutput>,
    #[serde(default)]
    state_reset: bool,
}

impl<'de> Deserialize<'de> for CommandOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireOutcome::deserialize(deserializer)?;
        // A kind this version does not know (a newer server's) reads as the program's
        // own failure: the message is kept word for word either way.
        let kind = wire.error_kind.as_deref().and_then(ErrorKind::from_name).unwrap_or(ErrorKind::ProgramFailed);
        let error = wire.error.map(|message| Error::new(kind, message));
        let mut result = wire.result;
        match &mut result {
            Some(CommandResult::ExecuteCode(code)) => {
                code.usage = wire.usage;
                code.outputs = wire.outputs;
                code.state_reset = wire.state_reset;
                code.timed_out = kind == ErrorKind::TimedOut && error.is_some();
                code.exit_code = wire.exit_code.unwrap_or(0);
                code.error = error.as_ref().filter(|e| e.kind() == ErrorKind::ProgramFailed).map(Error::to_string);
            }
            Some(CommandResult::ExecuteShell(shell)) if shell.usage.is_none() => shell.usage = wire.usage,
            _ => {}
        }
        Ok(CommandOutcome { success: wire.success, result, error, duration_ms: wire.duration_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{DirEntry, EntryType};

    /// Serializes `outcome` as a client that asked for `errorKinds` gets it, reads it
    /// back, and checks both the JSON (either shape) and the types. JSON is compared as
    /// values: whether objects keep their keys' order depends on serde_json's features,
    /// which other crates of a build may turn on.
    fn round_trip(outcome: &CommandOutcome) -> CommandOutcome {
        let json = serde_json::to_string(&outcome.with_kinds()).unwrap();
        let back: CommandOutcome = serde_json::from_str(&json).unwrap();
        let sent: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_value(back.with_kinds()).unwrap(), sent, "JSON of {json}");
        assert_eq!(back.to_json(), outcome.to_json(), "the guide's shape of {json}");
        back
    }

    fn usage() -> Usage {
        Usage { cpu_ms: 12, max_rss_kb: 3000, output_bytes: 6, egress_refused: 1 }
    }

    #[test]
    fn code_outcomes_read_back_with_output_usage_rich_outputs_and_state_reset() {
        let code = CodeResult {
            output: "42".into(),
            stdout: "42\n".into(),
            exit_code: 0,
            duration_ms: 5,
            usage: Some(usage()),
            outputs: vec![RichOutput { mime: "image/png".into(), data: "iVBO".into() }],
            state_reset: true,
            ..CodeResult::default()
        };
        let outcome = CommandOutcome::from_run(Ok(CommandResult::ExecuteCode(code)), 7, Duration::from_secs(1));
        let back = round_trip(&outcome);
        assert!(back.is_success());
        assert_eq!(back.output(), Some("42"));
        let code = back.result().and_then(CommandResult::as_code).unwrap();
        assert_eq!(code.usage, Some(usage()));
        assert_eq!(code.outputs(), &[RichOutput { mime: "image/png".into(), data: "iVBO".into() }]);
        assert!(code.state_reset);
        assert_eq!(back.duration_ms, 7);
    }

    #[test]
    fn failures_read_back_as_the_error_variant_their_message_names() {
        let failed =
            CodeResult { output: "before".into(), error: Some("ReferenceError: x".into()), ..CodeResult::default() };
        let outcome = CommandOutcome::from_run(Ok(CommandResult::ExecuteCode(failed)), 3, Duration::from_secs(1));
        let back = round_trip(&outcome);
        assert!(!back.is_success());
        assert_eq!(back.error(), Some(&Error::program_failed("ReferenceError: x")));
        assert_eq!(
            back.result().and_then(CommandResult::as_code).and_then(CodeResult::error),
            Some("ReferenceError: x")
        );

        let exited = CodeResult { exit_code: 3, ..CodeResult::default() };
        let outcome = CommandOutcome::from_run(Ok(CommandResult::ExecuteCode(exited)), 3, Duration::from_secs(1));
        let back = round_trip(&outcome);
        assert_eq!(back.result().and_then(CommandResult::as_code).map(CodeResult::exit_code), Some(3));

        let errors = [
            Error::not_found("/workspace/a: b"),
            Error::already_exists("/workspace/d"),
            Error::timed_out(Duration::from_millis(2000)),
            Error::backend_unavailable("docker", "engine down: refused"),
            Error::permission_denied("../x"),
            Error::invalid_input("bad"),
            Error::unsupported("execute_shell in Deno sessions"),
            Error::session_not_found("abc"),
            Error::session_closed("abc"),
            Error::limit_reached("16 MiB"),
            Error::sandbox_failed("OOM"),
            Error::internal("oops"),
            Error::program_failed("Program exited with code 3"),
        ];
        for error in errors {
            let copy = Error::new(error.kind(), error.message());
            let outcome = CommandOutcome::from_run(Err(error), 1, Duration::from_secs(1));
            let back = round_trip(&outcome).into_result().unwrap_err();
            assert_eq!((back.kind(), back.message()), (copy.kind(), copy.message()), "kind and message read back");
        }
    }

    #[test]
    fn a_timed_out_program_reads_back_as_timed_out_with_its_partial_output() {
        let code = CodeResult { output: "partial".into(), timed_out: true, ..CodeResult::default() };
        let outcome = CommandOutcome::from_run(Ok(CommandResult::ExecuteCode(code)), 2100, Duration::from_secs(2));
        let back = round_trip(&outcome);
        assert_eq!(back.error(), Some(&Error::timed_out(Duration::from_secs(2))));
        let code = back.result().and_then(CommandResult::as_code).unwrap();
        assert!(code.timed_out);
        assert_eq!(code.output(), "partial");
    }

    #[test]
    fn every_other_result_reads_back_as_the_same_typed_value() {
        let shell = ShellResult {
            exit_code: 3,
            stdout: "out".into(),
            stderr: "err".into(),
            duration_ms: 4,
            timed_out: false,
            truncated: true,
            usage: Some(usage()),
        };
        let results = [
            CommandResult::ExecuteShell(shell),
            CommandResult::WriteFile(WriteFileResult { path: "/workspace/a".into(), bytes: 3 }),
            CommandResult::ReadFile(ReadFileResult { content: "".into(), bytes: 0, size: 10, eof: true }),
            CommandResult::CreateDirectory(CreateDirectoryResult { path: "/workspace/d".into() }),
            CommandResult::CopyFile(CopyFileResult {
                source_path: "/workspace/a".into(),
                destination_path: "/workspace/b".into(),
                bytes: 3,
            }),
            CommandResult::DeleteFile(DeleteFileResult { path: "/workspace/a".into(), deleted: true }),
            CommandResult::ListDirectory(ListDirectoryResult {
                path: "/workspace".into(),
                entries: vec![DirEntry { name: "a".into(), entry_type: EntryType::File, size: 3 }],
            }),
        ];
        for result in results {
            let outcome = CommandOutcome::from_run(Ok(result.clone()), 9, Duration::from_secs(1));
            let back = round_trip(&outcome);
            assert_eq!(back, outcome);
            assert_eq!(back.into_result(), Ok(result.clone()));
            let alone: CommandResult = serde_json::from_value(result.to_json()).unwrap();
            assert_eq!(alone, result);
        }
    }

    #[test]
    fn accessors_borrow_and_take_the_variant_asked_for() {
        let result =
            CommandResult::ExecuteShell(ShellResult { exit_code: 2, stdout: "o".into(), ..ShellResult::default() });
        assert_eq!(result.as_shell().map(ShellResult::exit_code), Some(2));
        assert!(result.as_code().is_none());
        assert_eq!(result.command_type(), "execute_shell");
        assert!(result.clone().into_code().is_none());
        assert_eq!(result.into_shell().map(|s| s.stdout), Some("o".to_owned()));
    }

    #[test]
    fn a_result_of_neither_string_nor_object_is_refused() {
        let error = serde_json::from_value::<CommandResult>(serde_json::json!(42)).unwrap_err();
        assert!(error.to_string().contains("a string or an object"), "{error}");
    }
}
