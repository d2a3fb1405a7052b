//! [`DockerError`]: what can go wrong inside this backend, typed and with its cause kept
//! (the engine's error, an I/O error) until it crosses into the SDK's
//! [`codebeaker::Error`] at the command boundary. Callers inside the crate decide on the
//! variant, never on message text.

use codebeaker::workspace::MAX_TRANSFER_BYTES;
use codebeaker::{Error, WORKSPACE_ROOT};

use crate::container::{is_transport, BACKEND};

/// A failure of a file command or an engine call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    /// The path does not exist.
    #[error("File not found: {path}")]
    NotFound { path: String },
    /// A directory where a file is needed.
    #[error("{path} is a directory")]
    IsADirectory { path: String },
    /// Something else where a directory is needed.
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    /// A regular file was needed (a device, socket or fifo was found).
    #[error("{path} is not a regular file")]
    NotARegularFile { path: String },
    /// The file is larger than a file command may move. `size` is known when the engine
    /// reported it; a stream cut at the cap has none.
    #[error("{path}: file too large ({}; file commands move at most {MAX_TRANSFER_BYTES} bytes at once)",
        size.map_or_else(|| "more than that".to_owned(), |s| format!("{s} bytes")))]
    TooLarge { path: String, size: Option<u64> },
    /// A symlink on the path leads out of the workspace.
    #[error("{path}: {link} is a symlink to {target}, outside {WORKSPACE_ROOT}")]
    Escapes { path: String, link: String, target: String },
    /// A symlink leads to another symlink.
    #[error("{path}: too many levels of symbolic links")]
    LinkLoop { path: String },
    /// The workspace has no room left.
    #[error("the workspace is full; cannot write {path}")]
    NoSpace {
        path: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine refused or failed a request.
    #[error("cannot {doing}")]
    Engine {
        doing: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// A downloaded archive could not be read.
    #[error("cannot read the archive of {path}")]
    Archive {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An error that is already the SDK's (bad path, program failure…).
    #[error(transparent)]
    Sdk(#[from] Error),
}

impl DockerError {
    /// An engine failure while doing `doing`.
    pub(crate) fn engine(doing: impl Into<String>, source: bollard::errors::Error) -> Self {
        DockerError::Engine { doing: doing.into(), source }
    }
}

/// `err` and the chain of its causes, as one line.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<DockerError> for Error {
    fn from(err: DockerError) -> Error {
        let message = with_causes(&err);
        match err {
            DockerError::NotFound { path } => Error::NotFound { path },
            DockerError::IsADirectory { .. }
            | DockerError::NotADirectory { .. }
            | DockerError::NotARegularFile { .. }
            | DockerError::LinkLoop { .. } => Error::InvalidInput(message),
            DockerError::TooLarge { .. } | DockerError::NoSpace { .. } => Error::LimitReached(message),
            DockerError::Escapes { .. } => Error::PermissionDenied(message),
            DockerError::Engine { ref source, .. } if is_transport(source) => {
                Error::BackendUnavailable { backend: BACKEND.into(), reason: message }
            }
            DockerError::Engine { .. } | DockerError::Archive { .. } => Error::Internal(message),
            DockerError::Sdk(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_map_to_what_a_caller_acts_on() {
        let too_large: Error = DockerError::TooLarge { path: "/workspace/huge".into(), size: Some(1 << 50) }.into();
        assert!(matches!(&too_large, Error::LimitReached(m) if m.contains("file too large")), "{too_large}");
        let escape: Error =
            DockerError::Escapes { path: "/workspace/l/x".into(), link: "/workspace/l".into(), target: "/etc".into() }
                .into();
        assert!(matches!(escape, Error::PermissionDenied(_)));
        let missing: Error = DockerError::NotFound { path: "/workspace/x".into() }.into();
        assert_eq!(missing, Error::NotFound { path: "/workspace/x".into() });
    }

    #[test]
    fn the_cause_is_kept_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "archive ended early");
        let err: Error = DockerError::Archive { path: "/workspace/f".into(), source: io }.into();
        assert_eq!(err, Error::Internal("cannot read the archive of /workspace/f: archive ended early".into()));
    }
}
