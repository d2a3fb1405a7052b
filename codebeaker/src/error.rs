//! The one error type of the SDK: a stable [`ErrorKind`], a user-facing message, and the
//! lower error that caused it.
//!
//! - The **kind** is what code decides on: retry later ([`ErrorKind::BackendUnavailable`],
//!   [`ErrorKind::LimitReached`]), fix the request ([`ErrorKind::InvalidInput`],
//!   [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`]), give up on a session
//!   ([`ErrorKind::SessionNotFound`], [`ErrorKind::SandboxFailed`]). The server derives
//!   its wire codes from it and from nothing else; its [`ErrorKind::name`] is stable.
//! - The **message** (the error's `Display`) names the input that failed, because it travels
//!   verbatim to agents and their developers. It is for people: no code branches on it.
//! - The **source** is the lower error (an I/O error, an engine's reply, a broken agent
//!   link) kept for diagnosis and reachable through [`std::error::Error::source`]; it never
//!   changes the message or the kind.
//!
//! An [`Error`] is built with the constructor of its kind, each of which words the message
//! the same way everywhere (`Error::not_found(path)` is `File not found: {path}`), and
//! given its cause with [`Error::with_source`]. It is not `Clone` (a source need not be):
//! code that must hand one failure to several waiters shares it behind an `Arc` or
//! rebuilds it with [`Error::new`] from its kind and message.

use std::fmt;
use std::time::Duration;

/// Result alias used throughout the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A lower error kept as the cause of an [`Error`].
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an [`Error`] is: the part of an error code may decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or directory the command names does not exist.
    NotFound,
    /// The target exists already where the command needs it absent (or of another kind).
    AlreadyExists,
    /// The sandbox's rules forbid the operation (path outside the workspace, symlink
    /// escape, a Deno permission that was not granted, …).
    PermissionDenied,
    /// The command ran past its wall-clock limit and was stopped.
    TimedOut,
    /// A backend cannot serve requests right now (e.g. the Docker engine is down).
    BackendUnavailable,
    /// The request is malformed or out of range.
    InvalidInput,
    /// The backend does not offer this operation (e.g. `execute_shell` in a Deno session).
    Unsupported,
    /// No open session has this id (never existed, closed, or expired).
    SessionNotFound,
    /// The session was closed while this request waited for its turn.
    SessionClosed,
    /// A configured limit (sessions, output, connections…) was reached.
    LimitReached,
    /// The program ran and failed: a thrown error or a non-zero exit of `execute_code`.
    ProgramFailed,
    /// The sandbox itself failed (OOM-killed, killed from outside, engine restarted).
    /// The session it belonged to is closed.
    SandboxFailed,
    /// Something went wrong inside CodeBeaker or its backend.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied,
        ErrorKind::TimedOut,
        ErrorKind::BackendUnavailable,
        ErrorKind::InvalidInput,
        ErrorKind::Unsupported,
        ErrorKind::SessionNotFound,
        ErrorKind::SessionClosed,
        ErrorKind::LimitReached,
        ErrorKind::ProgramFailed,
        ErrorKind::SandboxFailed,
        ErrorKind::Internal,
    ];

    /// The kind's stable snake_case name (`not_found`, `timed_out`, …), for logs and wires.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::BackendUnavailable => "backend_unavailable",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::SessionNotFound => "session_not_found",
            ErrorKind::SessionClosed => "session_closed",
            ErrorKind::LimitReached => "limit_reached",
            ErrorKind::ProgramFailed => "program_failed",
            ErrorKind::SandboxFailed => "sandbox_failed",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether an error of this kind is the outcome of a command inside a healthy session
    /// (reported as `success: false` in the result envelope) rather than a failure to run
    /// it at all.
    pub const fn is_command_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::NotFound
                | ErrorKind::AlreadyExists
                | ErrorKind::PermissionDenied
                | ErrorKind::TimedOut
                | ErrorKind::InvalidInput
                | ErrorKind::Unsupported
                | ErrorKind::ProgramFailed
                | ErrorKind::SandboxFailed
        )
    }
}

impl ErrorKind {
    /// The kind whose [`name`](ErrorKind::name) is `name`; `None` for a name this version
    /// does not know (a newer peer's kind).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// On the wire a kind is its [`name`](ErrorKind::name).
impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl schemars::JsonSchema for ErrorKind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ErrorKind".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.name()).collect();
        schemars::json_schema!({
            "description": "What kind of failure an error is; clients decide on this, never on the message. New kinds may be added.",
            "type": "string",
            "enum": names,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong between a caller and a sandbox: its [`ErrorKind`], its
/// message (the `Display`), and the lower error that caused it, if any (the `source`).
///
/// Two errors are equal when they say the same thing to a caller (same kind, same
/// message); their sources are diagnostics and not compared.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Source>,
}

impl Error {
    /// An error of `kind` whose whole message is `message`, as another error of that kind
    /// said it (e.g. rebuilt from a peer's reply). Prefer the constructor of the kind,
    /// which words the message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    /// [`ErrorKind::NotFound`]: `File not found: {path}`.
    pub fn not_found(path: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, format!("File not found: {}", path.into()))
    }

    /// [`ErrorKind::AlreadyExists`]: `Already exists: {path}`.
    pub fn already_exists(path: impl Into<String>) -> Error {
        Error::new(ErrorKind::AlreadyExists, format!("Already exists: {}", path.into()))
    }

    /// [`ErrorKind::PermissionDenied`]: `Permission denied: {reason}`.
    pub fn permission_denied(reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::PermissionDenied, format!("Permission denied: {}", reason.into()))
    }

    /// [`ErrorKind::TimedOut`]: `Command timed out after {ms} ms`, with the limit (not the
    /// elapsed time).
    pub fn timed_out(limit: Duration) -> Error {
        Error::new(ErrorKind::TimedOut, format!("Command timed out after {} ms", limit.as_millis()))
    }

    /// [`ErrorKind::BackendUnavailable`]: `Backend unavailable: {backend}: {reason}`, the
    /// reason in words a user can act on.
    pub fn backend_unavailable(backend: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::BackendUnavailable, format!("Backend unavailable: {}: {}", backend.into(), reason.into()))
    }

    /// [`ErrorKind::InvalidInput`]: `Invalid input: {reason}`.
    pub fn invalid_input(reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, format!("Invalid input: {}", reason.into()))
    }

    /// [`ErrorKind::Unsupported`]: `Not supported: {what}`.
    pub fn unsupported(what: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsupported, format!("Not supported: {}", what.into()))
    }

    /// [`ErrorKind::SessionNotFound`]: `Session not found: {id}`.
    pub fn session_not_found(id: impl Into<String>) -> Error {
        Error::new(ErrorKind::SessionNotFound, format!("Session not found: {}", id.into()))
    }

    /// [`ErrorKind::SessionClosed`]: `Session closed while the request waited: {id}`.
    pub fn session_closed(id: impl Into<String>) -> Error {
        Error::new(ErrorKind::SessionClosed, format!("Session closed while the request waited: {}", id.into()))
    }

    /// [`ErrorKind::LimitReached`]: `Limit reached: {what}`.
    pub fn limit_reached(what: impl Into<String>) -> Error {
        Error::new(ErrorKind::LimitReached, format!("Limit reached: {}", what.into()))
    }

    /// [`ErrorKind::ProgramFailed`]: the program's own message, unchanged (e.g.
    /// `ReferenceError: x is not defined`).
    pub fn program_failed(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::ProgramFailed, message)
    }

    /// [`ErrorKind::SandboxFailed`]: `Sandbox failed: {reason}`.
    pub fn sandbox_failed(reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::SandboxFailed, format!("Sandbox failed: {}", reason.into()))
    }

    /// [`ErrorKind::Internal`]: `Internal error: {details}`.
    pub fn internal(details: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, format!("Internal error: {}", details.into()))
    }

    /// This error, caused by `source` (reachable through [`std::error::Error::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Source>) -> Error {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The user-facing message (the same text as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this error is the outcome of a command inside a healthy session (reported as
    /// `success: false` in the result envelope) rather than a failure to run it at all.
    pub fn is_command_failure(&self) -> bool {
        self.kind.is_command_failure()
    }

    /// Maps an I/O error that happened at `path` to the kind a caller can act on, keeping
    /// it as the source.
    pub fn from_io(path: &str, err: std::io::Error) -> Error {
        use std::io::ErrorKind as Io;
        let mapped = match err.kind() {
            Io::NotFound => Error::not_found(path),
            Io::AlreadyExists => Error::already_exists(path),
            Io::PermissionDenied => Error::permission_denied(format!("{path}: {err}")),
            Io::StorageFull | Io::QuotaExceeded => Error::limit_reached(format!("no space left for {path}")),
            Io::IsADirectory => Error::invalid_input(format!("{path} is a directory")),
            Io::NotADirectory => Error::invalid_input(format!("{path} is not a directory")),
            Io::DirectoryNotEmpty => Error::invalid_input(format!("{path} is a directory that is not empty")),
            _ => Error::internal(format!("{path}: {err}")),
        };
        mapped.with_source(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_is_kept_as_the_source_of_the_kind_it_maps_to() {
        use std::error::Error as _;
        let err = Error::from_io("/workspace/a", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.to_string(), "File not found: /workspace/a");
        let source = err.source().expect("the io error is the source");
        assert_eq!(source.downcast_ref::<std::io::Error>().map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
    }

    #[test]
    fn kind_names_are_distinct_snake_case() {
        let names: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')), "{names:?}");
    }

    #[test]
    fn messages_keep_their_wording() {
        assert_eq!(Error::timed_out(Duration::from_secs(2)).to_string(), "Command timed out after 2000 ms");
        assert_eq!(Error::backend_unavailable("docker", "down").to_string(), "Backend unavailable: docker: down");
        assert_eq!(Error::program_failed("ReferenceError: x").to_string(), "ReferenceError: x");
        assert_eq!(Error::session_closed("s").to_string(), "Session closed while the request waited: s");
    }
}
