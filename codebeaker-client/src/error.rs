//! [`ClientError`]: everything a call to the server can end in besides its answer.
//!
//! The Python and TypeScript SDKs raise one class per kind of failure; here one enum
//! carries them all, told apart by variant or by a method:
//!
//! | SDK class | here |
//! |---|---|
//! | `CodeBeakerError` | [`ClientError`] (every variant) |
//! | `TimeoutError` | [`ClientError::is_timeout`] (the server's `timed_out`, or [`ClientError::Timeout`] for a client-side wait) |
//! | `SessionNotFoundError` | [`ClientError::is_session_not_found`] |
//! | `AuthenticationError` | [`ClientError::Authentication`] |
//! | `RateLimitedError` | [`ClientError::is_rate_limited`], with [`ClientError::retry_after`] |
//! | `CommandExitError` | [`ClientError::CommandExit`] |

use std::time::Duration;

use serde_json::Value;
use tokio_tungstenite::tungstenite;

/// Result alias of the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// JSON-RPC error codes of the CodeBeaker server (see `docs/protocol.md`).
pub use codebeaker::rpc_codes as codes;

/// What went wrong with a call. With the protocol-shaped [`Client`](crate::Client), a
/// command that ran and failed in the sandbox is not an error: it is a
/// [`codebeaker::CommandOutcome`] with `success: false`. The E2B-shaped
/// [`Sandbox`](crate::Sandbox) turns such failures into [`ClientError::Failed`] (and a
/// non-zero exit of a foreground command into [`ClientError::CommandExit`]), except a
/// program's own error, which is [`Execution::error`](crate::Execution::error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a JSON-RPC error; its code, message, data and kind are
    /// kept.
    #[error("{message} ({code}){}", data_suffix(.data))]
    Rpc {
        /// The JSON-RPC error code (see [`codes`]).
        code: i64,
        /// The code's short standard message.
        message: String,
        /// The server's detail, naming the input that was wrong (boxed: a JSON value is
        /// large, and errors should be small).
        data: Option<Box<Value>>,
        /// What kind of failure it is, finer than the code (`rate_limited`,
        /// `timed_out`, `session_not_found`…; see the protocol's "Error codes"); `None`
        /// from a server that does not say.
        kind: Option<String>,
        /// With `rate_limited`: how long until a request would be admitted, in ms.
        retry_after_ms: Option<u64>,
    },
    /// The server refused the token (HTTP 401), or asked for one that was not given, or
    /// refused the connection's origin (HTTP 403).
    #[error("the server refused the connection: a missing or wrong token (HTTP 401) or origin (HTTP 403)")]
    Authentication,
    /// The WebSocket could not be opened (after every reconnect attempt).
    #[error("could not connect to {url}")]
    Connect {
        /// The server's URL.
        url: String,
        /// Why the last attempt failed.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The connection was lost before the answer came. The request may have run: the
    /// next call reconnects, and sessions live on the server, so their ids stay valid.
    #[error("the connection to the server was lost before the answer came")]
    Disconnected,
    /// The server's answer does not follow the protocol.
    #[error("the server's answer does not follow the protocol: {0}")]
    Protocol(String),
    /// A command could not do what it asked, for another reason than the program's own
    /// failure: the envelope's `success: false` with its kind (a timeout, a missing
    /// file, a command the session does not offer), or an input the client refused
    /// before sending it (an unknown language, a path outside `/workspace`).
    #[error(transparent)]
    Failed(codebeaker::Error),
    /// A wait on the client's side ran out (e.g. [`CommandHandle::wait_timeout`](crate::CommandHandle::wait_timeout)).
    #[error("{0}")]
    Timeout(String),
    /// A foreground command exited with a non-zero code; what it printed is kept.
    #[error("command exited with code {exit_code}: {}", tail(.stderr))]
    CommandExit {
        /// Its exit code (`-1` when its end is unknown).
        exit_code: i64,
        /// Its standard output.
        stdout: String,
        /// Its standard error.
        stderr: String,
    },
}

impl ClientError {
    /// The JSON-RPC error code, when the server answered with an error.
    pub fn code(&self) -> Option<i64> {
        match self {
            ClientError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The server's detail of a JSON-RPC error, as text when it is a string.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ClientError::Rpc { data: Some(data), .. } => data.as_str(),
            _ => None,
        }
    }

    /// The kind of failure: a JSON-RPC error's `kind`, or the kind of a command's
    /// failure ([`ClientError::Failed`]), e.g. `rate_limited`, `timed_out`, `not_found`.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Rpc { kind, .. } => kind.as_deref(),
            ClientError::Failed(error) => Some(error.kind().name()),
            _ => None,
        }
    }

    /// The session does not exist (never did, closed, expired, or another tenant's).
    pub fn is_session_not_found(&self) -> bool {
        self.code() == Some(codes::SESSION_NOT_FOUND) || self.kind() == Some("session_not_found")
    }

    /// The request was over the tenant's request rate (`-32002` of kind `rate_limited`);
    /// [`ClientError::retry_after`] says when to try again.
    pub fn is_rate_limited(&self) -> bool {
        self.kind() == Some("rate_limited")
    }

    /// A command or a wait outlived its timeout: on the server (kind `timed_out`) or on
    /// the client ([`ClientError::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout(_)) || self.kind() == Some("timed_out")
    }

    /// With a rate limit: how long until a request would be admitted.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Rpc { retry_after_ms: Some(ms), .. } => Some(Duration::from_millis(*ms)),
            _ => None,
        }
    }

    /// The error of a JSON-RPC error object.
    pub(crate) fn from_rpc(error: &Value) -> ClientError {
        match (error.get("code").and_then(Value::as_i64), error.get("message").and_then(Value::as_str)) {
            (Some(code), Some(message)) => ClientError::Rpc {
                code,
                message: message.to_owned(),
                data: error.get("data").filter(|d| !d.is_null()).cloned().map(Box::new),
                kind: error.get("kind").and_then(Value::as_str).map(str::to_owned),
                retry_after_ms: error.get("retryAfterMs").and_then(Value::as_u64),
            },
            _ => ClientError::Protocol(format!("an error object without code or message: {error}")),
        }
    }

    /// The error the server gives for an unknown session, for a session the client
    /// found missing itself (in `session.list`).
    pub(crate) fn session_not_found(id: &codebeaker::SessionId) -> ClientError {
        ClientError::Rpc {
            code: codes::SESSION_NOT_FOUND,
            message: "Session not found".into(),
            data: Some(Box::new(Value::String(format!("no open session {id}")))),
            kind: Some("session_not_found".into()),
            retry_after_ms: None,
        }
    }
}

fn data_suffix(data: &Option<Box<Value>>) -> String {
    match data.as_deref() {
        Some(Value::String(text)) => format!(": {text}"),
        Some(other) => format!(": {other}"),
        None => String::new(),
    }
}

/// The end of a command's stderr, for its error's message (as the SDKs word it).
fn tail(stderr: &str) -> &str {
    let stderr = stderr.trim();
    let start = stderr.char_indices().rev().nth(499).map_or(0, |(at, _)| at);
    &stderr[start..]
}

impl From<serde_json::Error> for ClientError {
    fn from(error: serde_json::Error) -> Self {
        ClientError::Protocol(error.to_string())
    }
}
