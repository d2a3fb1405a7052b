//! The typed params, results and notifications of the JSON-RPC methods: one type per
//! shape on the wire, which every transport answers with (the MCP tools return the same
//! replies as JSON), and from which [`crate::schema`] generates `docs/schema/`.
//!
//! Commands, the result envelope and the session settings a client sends are the core
//! crate's types ([`Command`], [`codebeaker::CommandOutcome`], [`SessionConfig`]); this
//! module holds what only the protocol has.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use codebeaker::snapshot::SnapshotInfo;
use codebeaker::{Capabilities, Command, Language, OutputStream, SessionConfig, SessionInfo};
use codebeaker::{OutputChunk, SessionState};
use codebeaker::{
    ProcessCommand, ProcessExit, ProcessInfo, ProcessOutput, ProcessSignal, ProcessSpec, ProcessState, ProcessStream,
    PtySize,
};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `session.execute` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteParams {
    /// The session to run the command in.
    pub session_id: String,
    /// The command.
    pub command: Command,
    /// This command's wall-clock limit in ms, 1…`max-command-timeout-ms` (extension;
    /// default: the session's `defaultTimeoutMs`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Stream the output as `session.output` notifications while the command runs
    /// (extension; requests with an `id` only).
    #[serde(default)]
    pub stream: bool,
    /// Answer with the envelope's `errorKind` and `exitCode` (extension; off by default,
    /// which keeps the guide's envelope).
    #[serde(default)]
    pub error_kinds: bool,
}

/// `session.list` params: none. Also accepted: no `params` at all, or `[]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {}

/// `session.close` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloseParams {
    /// The session to close.
    pub session_id: String,
}

/// `execution.run` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunParams {
    /// The code's language (`deno` also names the `deno` backend).
    #[schemars(with = "Language")]
    pub language: String,
    /// The backend that must run it (a registered backend's name); absent: the
    /// operator's routing table decides.
    #[serde(default)]
    pub backend: Option<String>,
    /// The code to run in a fresh sandbox, removed afterwards.
    pub code: String,
    /// The run's wall-clock limit in ms, 1…`max-command-timeout-ms` (extension; default:
    /// the server's `--command-timeout-ms`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `session.create` result (and the MCP `create_session` tool's): the new session.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreated {
    /// The session's id, for every later request.
    pub session_id: codebeaker::SessionId,
    /// The backend's sandbox id (Docker container id, Deno isolate or worker id).
    pub container_id: String,
    /// The session's language (its canonical name).
    pub language: Language,
    /// The backend serving the session (`docker`, `deno`, …).
    pub backend: String,
    /// When the session was created (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// `Active` right after creation.
    pub state: SessionState,
    /// The settings the session runs with, defaults filled in.
    pub config: SessionSettings,
    /// What the session's sandbox can do (extension).
    pub capabilities: Capabilities,
    /// The cluster node holding the session (its URL), on a node of a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<&SessionInfo> for SessionCreated {
    fn from(info: &SessionInfo) -> Self {
        SessionCreated {
            session_id: info.session_id.clone(),
            container_id: info.container_id.clone(),
            language: info.language,
            backend: info.backend.clone(),
            created_at: info.created_at,
            state: info.state,
            config: SessionSettings::from(&info.config),
            capabilities: info.capabilities,
            node: info.node.clone(),
        }
    }
}

/// A session's settings as `session.create` answers them: its `SessionConfig` without
/// the language (named beside it), with `permissions` for Deno sessions only (other
/// sessions would only show defaults that do not apply to them).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSettings {
    /// Close after this many minutes without a command.
    #[serde(serialize_with = "codebeaker::config::serialize_minutes")]
    pub idle_timeout_minutes: f64,
    /// Close this many minutes after creation, busy or not.
    #[serde(serialize_with = "codebeaker::config::serialize_minutes")]
    pub max_lifetime_minutes: f64,
    /// Memory limit of the sandbox, in MiB.
    #[serde(rename = "memoryLimitMB")]
    pub memory_limit_mb: u64,
    /// Relative CPU weight (Docker).
    pub cpu_shares: u64,
    /// The options the session gave its backend, one object per backend name (e.g.
    /// `{"docker": {"image": "…"}}`, `{"deno": {"permissions": {…}}}`); absent when none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub backend_options: BTreeMap<String, serde_json::Value>,
    /// Wall-clock limit of each command unless the request gives its own (the session's,
    /// or the operator's default filled in at creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_timeout_ms: Option<u64>,
}

impl From<&SessionConfig> for SessionSettings {
    fn from(config: &SessionConfig) -> Self {
        SessionSettings {
            idle_timeout_minutes: config.idle_timeout_minutes,
            max_lifetime_minutes: config.max_lifetime_minutes,
            memory_limit_mb: config.memory_limit_mb,
            cpu_shares: config.cpu_shares,
            backend_options: config.backend_options.clone(),
            default_timeout_ms: config.default_timeout_ms,
        }
    }
}

/// `session.list` result (and the MCP `list_sessions` tool's): the caller's open
/// sessions, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    /// How many sessions follow.
    pub count: usize,
    /// The sessions.
    pub sessions: Vec<SessionInfo>,
}

impl From<Vec<SessionInfo>> for SessionList {
    fn from(sessions: Vec<SessionInfo>) -> Self {
        SessionList { count: sessions.len(), sessions }
    }
}

/// `session.close` result (and the MCP `close_session` tool's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionClosed {
    /// The closed session.
    pub session_id: String,
    /// Always `true` (a session that cannot be closed is an error instead).
    #[schemars(extend("const" = true))]
    pub closed: bool,
}

impl SessionClosed {
    /// The reply for closing `session_id`.
    pub fn new(session_id: impl Into<String>) -> Self {
        SessionClosed { session_id: session_id.into(), closed: true }
    }
}

/// `session.output` notification params: a piece of a streamed command's output.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputNotification {
    /// The session running the command.
    pub session_id: String,
    /// The `id` of the `session.execute` request whose output this is.
    #[schemars(schema_with = "request_id")]
    pub request_id: Value,
    /// `stdout` or `stderr`.
    pub stream: OutputStream,
    /// The text; a chunk never splits a multi-byte UTF-8 character.
    pub data: String,
}

impl OutputNotification {
    /// The notification of `chunk` of the command that request `request_id` runs in
    /// `session_id`.
    pub fn new(session_id: &str, request_id: &Value, chunk: OutputChunk) -> Self {
        OutputNotification {
            session_id: session_id.to_owned(),
            request_id: request_id.clone(),
            stream: chunk.stream,
            data: chunk.data,
        }
    }
}

/// A JSON-RPC request id: a string, a number or `null`.
fn request_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "number", "null"]})
}

/// `process.start` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessStartParams {
    /// The session to run the process in.
    pub session_id: String,
    /// What to run.
    pub command: ProcessCommand,
    /// Run it on a terminal of this size (its output is then the `pty` stream); pipes
    /// when absent.
    #[serde(default)]
    pub pty: Option<PtySize>,
    /// Kill it after this many ms; absent or 0: it runs until it ends or its session
    /// does.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl ProcessStartParams {
    /// The process to start.
    pub fn spec(&self) -> ProcessSpec {
        ProcessSpec { command: self.command.clone(), pty: self.pty, timeout_ms: self.timeout_ms }
    }
}

/// `process.start` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessStarted {
    /// The new process's pid in the sandbox.
    pub pid: u32,
}

/// `process.list` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessListParams {
    /// The session whose processes to list.
    pub session_id: String,
}

/// `process.list` result: the session's processes, oldest first (ended ones stay until
/// newer ones need their place).
pub type ProcessList = Vec<ProcessInfo>;

/// Params naming one process: `process.closeStdin`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessParams {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
}

/// `process.attach` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessAttachParams {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
    /// Replay retained output from this offset of each stream (default 0: everything
    /// retained).
    #[serde(default)]
    pub from_offset: u64,
}

/// `process.attach` result; the replay and live output follow as `process.output`
/// notifications, then one `process.exit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessAttached {
    /// The process.
    pub pid: u32,
    /// Bytes from `fromOffset` on that were discarded before the attach (older than the
    /// retention); 0 when the replay is complete.
    pub dropped: u64,
}

/// `process.write` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessWriteParams {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
    /// Text for its stdin (its terminal's input: `\r` is Enter, `\u0003` Ctrl-C).
    pub data: String,
}

/// `process.resize` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessResizeParams {
    /// The process's session.
    pub session_id: String,
    /// The process (started with `pty`).
    pub pid: u32,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// `process.signal` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessSignalParams {
    /// The process's session.
    pub session_id: String,
    /// The process (the signal goes to its process group).
    pub pid: u32,
    /// `TERM`, `KILL`, `INT` or `HUP`.
    pub signal: ProcessSignal,
}

/// `process.wait` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessWaitParams {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
    /// Longest wait in ms (at most `max-command-timeout-ms`, also the default); a
    /// process still running then answers a `timed_out` error.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The result of `process.write`, `process.closeStdin`, `process.resize` and
/// `process.signal`: an empty object once the request was passed on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessDone {}

/// `process.output` notification params: a piece of an attached process's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessOutputNotification {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
    /// `stdout`, `stderr`, or `pty` for a terminal.
    pub stream: ProcessStream,
    /// The text; a chunk never splits a multi-byte UTF-8 character.
    pub data: String,
    /// Bytes of this stream before this chunk.
    pub offset: u64,
    /// Bytes this connection missed just before this chunk (it read too slowly and the
    /// retention discarded them); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

impl ProcessOutputNotification {
    /// The notification of `output` of process `pid` in `session_id`.
    pub fn new(session_id: &str, pid: u32, output: ProcessOutput) -> Self {
        ProcessOutputNotification {
            session_id: session_id.to_owned(),
            pid,
            stream: output.stream,
            data: output.data,
            offset: output.offset,
            dropped: output.dropped,
        }
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// `process.exit` notification params (and, without `sessionId` and `pid`, the
/// `process.wait` result): how an attached process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessExitNotification {
    /// The process's session.
    pub session_id: String,
    /// The process.
    pub pid: u32,
    /// How it ended.
    #[serde(flatten)]
    pub exit: ProcessExit,
}

/// The MCP tool `read_process_output`'s reply: what a process wrote from an offset (at
/// most [`crate::mcp::READ_OUTPUT_BYTES`] per call), and whether it still runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessOutputRead {
    /// The process.
    pub pid: u32,
    /// `running` or `exited`.
    pub state: ProcessState,
    /// The output read, chunk by chunk.
    pub chunks: Vec<ProcessChunk>,
    /// Pass as `fromOffset` to read on: the largest stream offset read up to.
    pub next_offset: u64,
    /// Bytes from `fromOffset` on that were discarded before this read (older than the
    /// retention).
    pub dropped: u64,
    /// How it ended, once it did and everything before was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ProcessExit>,
}

/// A chunk of a [`ProcessOutputRead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessChunk {
    /// `stdout`, `stderr` or `pty`.
    pub stream: ProcessStream,
    /// Bytes of that stream before it.
    pub offset: u64,
    /// The text.
    pub data: String,
}

/// Params naming one session: `session.pause`, `session.resume`, `session.snapshot`,
/// `session.fork`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionParams {
    /// The session.
    pub session_id: String,
}

/// `session.pause` and `session.resume` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionPaused {
    /// The session.
    pub session_id: String,
    /// Whether it is paused now.
    pub paused: bool,
}

/// `session.snapshot` result (and each entry of `snapshot.list`'s).
pub type SnapshotTaken = SnapshotInfo;

/// `snapshot.list` params: none.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotListParams {}

/// `snapshot.list` result: the caller's snapshots, oldest first.
pub type SnapshotList = Vec<SnapshotInfo>;

/// `snapshot.delete` params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotDeleteParams {
    /// The snapshot.
    pub snapshot_id: String,
}

/// `snapshot.delete` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotDeleted {
    /// The snapshot.
    pub snapshot_id: String,
    /// Always `true`.
    pub deleted: bool,
}

/// `session.fork` result: the new session, shaped like `session.create`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionForked {
    /// The new session.
    #[serde(flatten)]
    pub session: SessionCreated,
    /// The session it was forked from.
    pub forked_from: String,
    /// `true` when only the files (and installed packages) were carried: the new
    /// session's interpreter starts afresh. `false`: a live copy (variables, module
    /// state and timers kept).
    pub state_reset: bool,
}
