//! The one error type of the SDK.
//!
//! Variants are the decisions a caller makes: retry later ([`Error::BackendUnavailable`],
//! [`Error::LimitReached`]), fix the request ([`Error::InvalidInput`],
//! [`Error::NotFound`], [`Error::PermissionDenied`]), give up on a session
//! ([`Error::SessionNotFound`], [`Error::SandboxFailed`]). Messages name the input that
//! failed, because they travel verbatim to agents and their developers.

use std::time::Duration;

/// Result alias used throughout the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a caller and a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory the command names does not exist.
    #[error("File not found: {path}")]
    NotFound {
        /// The workspace path that was looked up.
        path: String,
    },
    /// The target exists already where the command needs it absent (or of another kind).
    #[error("Already exists: {path}")]
    AlreadyExists {
        /// The workspace path in the way.
        path: String,
    },
    /// The sandbox's rules forbid the operation (path outside the workspace, symlink
    /// escape, a Deno permission that was not granted, …).
    #[error("Permission denied: {0}")]
    PermissionDenied(String),
    /// The command ran past its wall-clock limit and was stopped.
    #[error("Command timed out after {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// A backend cannot serve requests right now (e.g. the Docker engine is down).
    #[error("Backend unavailable: {backend}: {reason}")]
    BackendUnavailable {
        /// The backend's name, such as `docker`.
        backend: String,
        /// Why it is unavailable, in words a user can act on.
        reason: String,
    },
    /// The request is malformed or out of range.
    #[error("Invalid input: {0}")]
    InvalidInput(String),
    /// The backend does not offer this operation (e.g. `execute_shell` in a Deno session).
    #[error("Not supported: {0}")]
    Unsupported(String),
    /// No open session has this id (never existed, closed, or expired).
    #[error("Session not found: {0}")]
    SessionNotFound(String),
    /// The session was closed while this request waited for its turn.
    #[error("Session closed while the request waited: {0}")]
    SessionClosed(String),
    /// A configured limit (sessions, output, connections…) was reached.
    #[error("Limit reached: {0}")]
    LimitReached(String),
    /// The program ran and failed: a thrown error or a non-zero exit of `execute_code`.
    /// The message is the program's own (e.g. `ReferenceError: x is not defined`).
    #[error("{0}")]
    ProgramFailed(String),
    /// The sandbox itself failed (OOM-killed, killed from outside, engine restarted).
    /// The session it belonged to is closed.
    #[error("Sandbox failed: {0}")]
    SandboxFailed(String),
    /// Something went wrong inside CodeBeaker or its backend; details are in the message.
    #[error("Internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether this error is the outcome of a command inside a healthy session (reported as
    /// `success: false` in the result envelope) rather than a failure to run it at all.
    pub fn is_command_failure(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. }
                | Error::AlreadyExists { .. }
                | Error::PermissionDenied(_)
                | Error::TimedOut(_)
                | Error::InvalidInput(_)
                | Error::Unsupported(_)
                | Error::ProgramFailed(_)
                | Error::SandboxFailed(_)
        )
    }

    /// Maps an I/O error that happened at `path` to the variant a caller can act on.
    pub fn from_io(path: &str, err: &std::io::Error) -> Error {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::NotFound => Error::NotFound { path: path.to_owned() },
            ErrorKind::AlreadyExists => Error::AlreadyExists { path: path.to_owned() },
            ErrorKind::PermissionDenied => Error::PermissionDenied(format!("{path}: {err}")),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                Error::LimitReached(format!("no space left for {path}"))
            }
            ErrorKind::IsADirectory => Error::InvalidInput(format!("{path} is a directory")),
            ErrorKind::NotADirectory => Error::InvalidInput(format!("{path} is not a directory")),
            ErrorKind::DirectoryNotEmpty => Error::InvalidInput(format!("{path} is a directory that is not empty")),
            _ => Error::Internal(format!("{path}: {err}")),
        }
    }
}
