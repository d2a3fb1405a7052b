//! The input of each MCP tool: typed structs whose doc comments become the input schemas'
//! descriptions. Languages are plain strings checked by the tool itself, so a wrong one
//! is a tool error naming the choices, not an opaque schema rejection.

use schemars::JsonSchema;
use serde::Deserialize;

/// Where a file or shell tool acts: an explicit session, or this MCP session's session
/// for a language.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct Target {
    /// The session to act in (from `create_session`, `list_sessions` or an earlier result).
    /// When absent, the session this MCP connection uses for `language` (created on first use).
    #[serde(default)]
    pub session_id: Option<String>,
    /// The language whose session to use when no `session_id` is given: python, javascript,
    /// typescript (deno), go or csharp. When both are absent and this connection has exactly
    /// one session, that one.
    #[serde(default)]
    pub language: Option<String>,
}

/// `run_code` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct RunCode {
    /// The language of the code: python, javascript (Node.js), typescript (Deno, also runs
    /// JavaScript), go or csharp.
    pub language: String,
    /// The source code to run. Sessions that keep state (typescript, and python/javascript
    /// where the backend supports it) remember variables and functions between calls.
    pub code: String,
    /// Run in this session instead of this connection's session for the language.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Wall-clock limit in milliseconds (default: the server's command timeout).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `run_shell` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct RunShell {
    /// A shell command line, run with `sh -c` in the session's workspace (`/workspace`).
    /// Needs a container session (python, javascript, go, csharp); typescript (Deno)
    /// sessions have no shell.
    pub command: String,
    /// Directory to run in, absolute under /workspace or relative to it (default /workspace).
    #[serde(default)]
    pub working_directory: Option<String>,
    /// Text fed to the command's standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Wall-clock limit in milliseconds (default: the server's command timeout).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Which session (default: this connection's python session).
    #[serde(flatten)]
    pub target: Target,
}

/// `write_file` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct WriteFile {
    /// The file to write, absolute under /workspace or relative to it; parents must exist
    /// (`run_shell mkdir -p` or a code call can create them).
    pub path: String,
    /// The content (text; base64 when `base64` is true).
    pub content: String,
    /// Append instead of replacing the file.
    #[serde(default)]
    pub append: bool,
    /// `content` is base64 of binary data.
    #[serde(default)]
    pub base64: bool,
    /// Which session.
    #[serde(flatten)]
    pub target: Target,
}

/// `read_file` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ReadFile {
    /// The file to read, absolute under /workspace or relative to it.
    pub path: String,
    /// Return the content as base64 (for binary files).
    #[serde(default)]
    pub base64: bool,
    /// First byte to read (default 0), for reading a large file in pieces.
    #[serde(default)]
    pub offset: u64,
    /// Most bytes to read (default: the rest of the file; at most 16 MiB).
    #[serde(default)]
    pub length: Option<u64>,
    /// Which session.
    #[serde(flatten)]
    pub target: Target,
}

/// `list_directory` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ListDirectory {
    /// The directory to list, absolute under /workspace or relative to it (default: the
    /// workspace itself).
    #[serde(default)]
    pub path: Option<String>,
    /// Which session.
    #[serde(flatten)]
    pub target: Target,
}

/// `create_session` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct CreateSession {
    /// The session's language: python, javascript, typescript (deno), go or csharp.
    pub language: String,
    /// Memory limit of the sandbox in MiB (default 512, capped by the operator).
    #[serde(default)]
    pub memory_limit_mb: Option<u64>,
    /// Close the session after this many minutes without a command (default 30).
    #[serde(default)]
    pub idle_timeout_minutes: Option<f64>,
    /// Per-command wall-clock limit in milliseconds for this session (default: the server's).
    #[serde(default)]
    pub default_timeout_ms: Option<u64>,
    /// Start with the files of this snapshot (a snapshotId from snapshot_session).
    #[serde(default)]
    pub from_snapshot: Option<String>,
}

/// `close_session` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct CloseSession {
    /// The session to close; its sandbox and files are removed.
    pub session_id: String,
}

/// `start_process` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct StartProcess {
    /// The program to run (looked up on PATH; e.g. `python3`, `bash`, `npm`).
    pub command_name: String,
    /// Its arguments (no shell expansion; use `bash -c "..."` for a command line).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Directory to run in, absolute under /workspace or relative to it (default /workspace).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Run on a terminal of this size (an interactive shell, a REPL); pipes when absent.
    #[serde(default)]
    pub pty: Option<codebeaker::PtySize>,
    /// Kill it after this many milliseconds (default: it runs until it ends or the session closes).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Which session (default: this connection's python session).
    #[serde(flatten)]
    pub target: Target,
}

/// `read_process_output` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ReadProcessOutput {
    /// The process's session.
    pub session_id: String,
    /// The process (from `start_process`).
    pub pid: u32,
    /// Read from this offset of each stream (default 0); pass the previous answer's
    /// `nextOffset` to get only what is new.
    #[serde(default)]
    pub from_offset: u64,
    /// When nothing new is there yet, wait up to this many milliseconds for output or the
    /// exit (default 0, at most 30000).
    #[serde(default)]
    pub wait_ms: u64,
}

/// `write_process_input` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct WriteProcessInput {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
    /// Text for its stdin (on a terminal: `\r` is Enter, `\u0003` Ctrl-C).
    #[serde(default)]
    pub data: String,
    /// Close its stdin after the data (end of input).
    #[serde(default)]
    pub close_stdin: bool,
}

/// `kill_process` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct KillProcess {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
    /// The signal: TERM, KILL (default), INT or HUP.
    #[serde(default)]
    pub signal: Option<codebeaker::ProcessSignal>,
}

/// `snapshot_session` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SnapshotSession {
    /// The session whose workspace (files and installed packages) to keep.
    pub session_id: String,
}

/// `fork_session` input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ForkSession {
    /// The session to copy into a new one.
    pub session_id: String,
}
