//! The two message envelopes and the handshake.
//!
//! A [`HostMessage`] travels host to agent, an [`AgentMessage`] agent to host, each as
//! the JSON body of a [`FrameKind::Message`](crate::protocol::FrameKind::Message) frame
//! whose id names the request it belongs to. Every request ends with exactly one terminal
//! reply ([`AgentMessage::is_terminal`]); stream data in between comes as data frames.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::code::{CodeDone, RunCodeRequest};
use crate::protocol::exec::{ExecExited, ExecRequest};
use crate::protocol::fs::{FsReply, FsRequest};
use crate::protocol::tunnel::{TunnelOpen, TunnelReply};

/// What the host sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostMessage {
    /// Opens the conversation: the agent answers [`AgentMessage::Hello`] or an error.
    Hello {
        /// The protocol version the host speaks.
        protocol: u32,
        /// The host's build, for logs.
        host: String,
        /// How long the agent's egress proxy waits for a program's request head and for
        /// the host's verdict on it (the operator's `tunnel-decision-ms`; absent from
        /// older hosts: its default).
        #[serde(default = "default_tunnel_decision_ms")]
        tunnel_decision_ms: u64,
    },
    /// Run a process; replies `started`, stdout/stderr data, then `exited`.
    Exec(ExecRequest),
    /// A file operation beneath the workspace; replies `fs`.
    Fs(FsRequest),
    /// Run code in the session's persistent interpreter; replies stdout/stderr data, then
    /// `code_done`.
    RunCode(RunCodeRequest),
    /// Stop the request with this frame's id (a process is killed, code interrupted).
    /// Fire and forget: the request still ends with its own terminal reply.
    Cancel,
    /// Send `signal` to the process group of the exec with this frame's id. Fire and
    /// forget, like `cancel`; an unknown id, or a number outside `1..=64`, is ignored.
    Signal {
        /// The signal number (Linux numbering: 2 is `SIGINT`, 15 `SIGTERM`).
        signal: i32,
    },
    /// Change the terminal size of the exec with this frame's id (its foreground process
    /// group gets `SIGWINCH`). Fire and forget; ignored for an exec without a terminal.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Liveness check; replies `pong`.
    Ping,
    /// The session is closing: kill every guest process, round after round until none is
    /// left, and accept no further request (every later `exec`, `run_code` and `fs` is
    /// refused). Replies `stopped` once nothing of the guest runs, or an error when some
    /// process outlived the agent's bound on killing (the host then stops the container
    /// itself). An agent older than this message answers an `unsupported` error.
    Shutdown {
        /// How long the agent keeps killing before it answers that some process outlived
        /// it (the operator's `close-kill-ms`; absent from older hosts: its default).
        #[serde(default = "default_close_kill_ms")]
        kill_ms: u64,
    },
    /// The host's verdict on a tunnel the agent asked for (frame id = the tunnel's id).
    TunnelReply(TunnelReply),
    /// The host closed a tunnel (frame id = the tunnel's id).
    TunnelClose {
        /// Why, for the program's error message.
        reason: Option<String>,
    },
}

fn default_tunnel_decision_ms() -> u64 {
    codebeaker::policy::DEFAULT_TUNNEL_DECISION_MS
}

fn default_close_kill_ms() -> u64 {
    codebeaker::policy::DEFAULT_CLOSE_KILL_MS
}

/// What the agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentMessage {
    /// The answer to [`HostMessage::Hello`].
    Hello(AgentHello),
    /// A process started (exec).
    Started {
        /// Its pid inside the container (also its process group id).
        pid: u32,
    },
    /// A process ended (terminal for exec).
    Exited(ExecExited),
    /// A file operation's result (terminal for fs).
    Fs(FsReply),
    /// Code finished, failed or timed out (terminal for run_code).
    CodeDone(CodeDone),
    /// The answer to ping (terminal).
    Pong,
    /// The answer to shutdown (terminal): no guest process runs any more.
    Stopped {
        /// How many processes were killed.
        killed: u32,
    },
    /// The request failed (terminal for any request).
    Error(ErrorReply),
    /// A program asked the agent's proxy for a connection (frame id = a new tunnel id with
    /// [`AGENT_ID_BIT`](crate::protocol::AGENT_ID_BIT) set).
    TunnelOpen(TunnelOpen),
    /// The agent closed a tunnel.
    TunnelClose {
        /// Why, for logs.
        reason: Option<String>,
    },
}

impl AgentMessage {
    /// Whether this message ends the request it answers.
    pub fn is_terminal(&self) -> bool {
        match self {
            // A streamed transfer's `opened` is followed by data and a final reply.
            AgentMessage::Fs(reply) => !matches!(reply, FsReply::Opened { .. }),
            other => matches!(
                other,
                AgentMessage::Hello(_)
                    | AgentMessage::Exited(_)
                    | AgentMessage::CodeDone(_)
                    | AgentMessage::Pong
                    | AgentMessage::Stopped { .. }
                    | AgentMessage::Error(_)
            ),
        }
    }
}

/// The agent's side of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHello {
    /// The protocol version the agent speaks.
    pub protocol: u32,
    /// The agent's build (crate version).
    pub agent: String,
    /// What this agent offers: `exec`, `fs`, `python`, `javascript`, `tunnel`, `pty`
    /// (execs on a terminal, `resize`), `signal` (the `signal` message).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Why a request failed, in a shape that maps 1:1 onto `codebeaker::Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorReply {
    /// The class of failure.
    pub kind: ErrorKind,
    /// The full message a user sees (`/workspace/a is a directory`).
    pub message: String,
    /// The workspace path concerned (`/workspace/a`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ErrorReply {
    /// An error with no path.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
        ErrorReply { kind, message: message.into(), path: None }
    }

    /// An error about a workspace path.
    pub fn at(kind: ErrorKind, path: impl Into<String>, message: impl Into<String>) -> ErrorReply {
        ErrorReply { kind, message: message.into(), path: Some(path.into()) }
    }
}

impl From<ErrorReply> for codebeaker::Error {
    fn from(reply: ErrorReply) -> codebeaker::Error {
        use codebeaker::Error;
        let path = reply.path.unwrap_or_default();
        match reply.kind {
            ErrorKind::NotFound => Error::not_found(path),
            ErrorKind::AlreadyExists => Error::already_exists(path),
            ErrorKind::PermissionDenied => Error::permission_denied(reply.message),
            ErrorKind::IsADirectory
            | ErrorKind::NotADirectory
            | ErrorKind::DirectoryNotEmpty
            | ErrorKind::InvalidInput => Error::invalid_input(reply.message),
            ErrorKind::TooLarge | ErrorKind::NoSpace => Error::limit_reached(reply.message),
            ErrorKind::Unsupported => Error::unsupported(reply.message),
            ErrorKind::Internal | ErrorKind::Unknown => Error::internal(reply.message),
        }
    }
}

/// Classes of failure. Unknown kinds from a newer peer decode as [`ErrorKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The path does not exist.
    NotFound,
    /// The path exists where it must not.
    AlreadyExists,
    /// The path resolves outside the workspace, through a link out, or is not accessible.
    PermissionDenied,
    /// A directory where a file was needed.
    IsADirectory,
    /// A file where a directory was needed.
    NotADirectory,
    /// A non-empty directory where an empty one was needed.
    DirectoryNotEmpty,
    /// The file is larger than the request allows.
    TooLarge,
    /// The workspace (or the file size limit) is full.
    NoSpace,
    /// The request is malformed.
    InvalidInput,
    /// The agent does not offer this (a language without an interpreter, an old agent).
    Unsupported,
    /// The agent failed.
    Internal,
    /// A kind this build does not know.
    #[serde(other)]
    Unknown,
}

/// Bytes carried inside a JSON message, as a base64 string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Base64Bytes(pub Vec<u8>);

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text).map(Base64Bytes).map_err(serde::de::Error::custom)
    }
}

impl From<Vec<u8>> for Base64Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Base64Bytes(bytes)
    }
}
