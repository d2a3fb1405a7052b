//! [`DockerError`]: an engine call that failed, typed; it becomes the source of the SDK's
//! [`codebeaker::Error`] it maps to. Callers decide on the variant, never on
//! message text.

use codebeaker::Error;

use crate::container::{is_transport, BACKEND};

/// A failure of an engine call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    /// The engine refused or failed a request.
    #[error("cannot {doing}")]
    Engine {
        doing: String,
        #[source]
        source: bollard::errors::Error,
    },
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
        let mapped = match &err {
            DockerError::Engine { source, .. } if is_transport(source) => Error::backend_unavailable(BACKEND, message),
            DockerError::Engine { .. } => Error::internal(message),
        };
        mapped.with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codebeaker::ErrorKind;

    #[test]
    fn the_cause_is_kept_in_the_message_and_as_the_source() {
        let refused = bollard::errors::Error::DockerResponseServerError { status_code: 409, message: "busy".into() };
        let err: Error = DockerError::engine("attach to container abc", refused).into();
        assert!(
            err.kind() == ErrorKind::Internal
                && err.message().starts_with("Internal error: cannot attach to container abc: "),
            "{err}"
        );
        assert!(err.to_string().contains("busy"), "{err}");
        let engine = std::error::Error::source(&err)
            .and_then(|docker| docker.source())
            .and_then(|e| e.downcast_ref::<bollard::errors::Error>());
        assert!(
            matches!(engine, Some(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })),
            "the engine's reply is kept as the source: {err:?}"
        );
    }
}
