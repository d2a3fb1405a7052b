//! [`ClientError`]: everything a call to the server can end in besides its answer.

use serde_json::Value;
use tokio_tungstenite::tungstenite;

/// Result alias of the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// JSON-RPC error codes of the CodeBeaker server (see `docs/protocol.md`).
pub use codebeaker::rpc_codes as codes;

/// What went wrong with a call. A command that ran and failed in the sandbox is not an
/// error: it is a [`codebeaker::CommandOutcome`] with `success: false`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a JSON-RPC error; its code, message and data are kept.
    #[error("{message} ({code}){}", data_suffix(.data))]
    Rpc {
        /// The JSON-RPC error code (see [`codes`]).
        code: i64,
        /// The code's short standard message.
        message: String,
        /// The server's detail, naming the input that was wrong.
        data: Option<Value>,
    },
    /// The server refused the token (HTTP 401), or asked for one that was not given.
    #[error("the server refused the connection's token (HTTP 401)")]
    Unauthorized,
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

    /// The session does not exist (never did, closed, expired, or another tenant's).
    pub fn is_session_not_found(&self) -> bool {
        self.code() == Some(codes::SESSION_NOT_FOUND)
    }

    /// The error of a JSON-RPC error object.
    pub(crate) fn from_rpc(error: &Value) -> ClientError {
        match (error.get("code").and_then(Value::as_i64), error.get("message").and_then(Value::as_str)) {
            (Some(code), Some(message)) => ClientError::Rpc {
                code,
                message: message.to_owned(),
                data: error.get("data").filter(|d| !d.is_null()).cloned(),
            },
            _ => ClientError::Protocol(format!("an error object without code or message: {error}")),
        }
    }
}

fn data_suffix(data: &Option<Value>) -> String {
    match data {
        Some(Value::String(text)) => format!(": {text}"),
        Some(other) => format!(": {other}"),
        None => String::new(),
    }
}

impl From<serde_json::Error> for ClientError {
    fn from(error: serde_json::Error) -> Self {
        ClientError::Protocol(error.to_string())
    }
}
