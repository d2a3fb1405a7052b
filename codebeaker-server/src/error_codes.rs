//! The one mapping from an SDK error's [`ErrorKind`] to what each wire shows of it: the
//! JSON-RPC code (and the MCP error built from it), the file routes' HTTP status and
//! `error.code`, and the audit log's `outcome`. Nothing else decides these, and nothing
//! here reads an error's message: the message travels verbatim beside the code.

use axum::http::StatusCode;
use codebeaker::ErrorKind;

use crate::rpc::{
    BACKEND_UNAVAILABLE, INTERNAL_ERROR, INVALID_PARAMS, LIMIT_REACHED, SESSION_CLOSED, SESSION_NOT_FOUND,
};

/// What the wires say about an error of one kind (see `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireCodes {
    /// The JSON-RPC error code.
    pub rpc: i64,
    /// The HTTP status of the file routes.
    pub http_status: StatusCode,
    /// The `error.code` of the file routes' JSON body.
    pub http_code: &'static str,
    /// The audit log's `outcome` of a request that did not run.
    pub audit: &'static str,
}

/// The wire codes of an error of `kind`.
pub fn wire_codes(kind: ErrorKind) -> WireCodes {
    let (rpc, http_status, http_code, audit) = match kind {
        // Another tenant's session answers exactly as an unknown one.
        ErrorKind::SessionNotFound => {
            (SESSION_NOT_FOUND, StatusCode::NOT_FOUND, "session_not_found", "session_not_found")
        }
        ErrorKind::SessionClosed => (SESSION_CLOSED, StatusCode::CONFLICT, "session_closed", "session_closed"),
        ErrorKind::LimitReached => (LIMIT_REACHED, StatusCode::PAYLOAD_TOO_LARGE, "limit_reached", "limit_reached"),
        ErrorKind::BackendUnavailable => {
            (BACKEND_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable", "backend_unavailable")
        }
        ErrorKind::InvalidInput => (INVALID_PARAMS, StatusCode::BAD_REQUEST, "invalid_input", "invalid_params"),
        ErrorKind::Unsupported => (INVALID_PARAMS, StatusCode::NOT_IMPLEMENTED, "unsupported", "invalid_params"),
        ErrorKind::NotFound => (INTERNAL_ERROR, StatusCode::NOT_FOUND, "not_found", "internal_error"),
        ErrorKind::AlreadyExists => (INTERNAL_ERROR, StatusCode::CONFLICT, "already_exists", "internal_error"),
        ErrorKind::PermissionDenied => (INTERNAL_ERROR, StatusCode::BAD_REQUEST, "permission_denied", "internal_error"),
        ErrorKind::TimedOut => (INTERNAL_ERROR, StatusCode::REQUEST_TIMEOUT, "timed_out", "timeout"),
        _ => (INTERNAL_ERROR, StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal_error"),
    };
    WireCodes { rpc, http_status, http_code, audit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_documented_codes() {
        let expected = [
            (ErrorKind::NotFound, INTERNAL_ERROR, 404, "not_found", "internal_error"),
            (ErrorKind::AlreadyExists, INTERNAL_ERROR, 409, "already_exists", "internal_error"),
            (ErrorKind::PermissionDenied, INTERNAL_ERROR, 400, "permission_denied", "internal_error"),
            (ErrorKind::TimedOut, INTERNAL_ERROR, 408, "timed_out", "timeout"),
            (ErrorKind::BackendUnavailable, -32003, 503, "backend_unavailable", "backend_unavailable"),
            (ErrorKind::InvalidInput, -32602, 400, "invalid_input", "invalid_params"),
            (ErrorKind::Unsupported, -32602, 501, "unsupported", "invalid_params"),
            (ErrorKind::SessionNotFound, -32001, 404, "session_not_found", "session_not_found"),
            (ErrorKind::SessionClosed, -32004, 409, "session_closed", "session_closed"),
            (ErrorKind::LimitReached, -32002, 413, "limit_reached", "limit_reached"),
            (ErrorKind::ProgramFailed, INTERNAL_ERROR, 500, "internal_error", "internal_error"),
            (ErrorKind::SandboxFailed, INTERNAL_ERROR, 500, "internal_error", "internal_error"),
            (ErrorKind::Internal, -32603, 500, "internal_error", "internal_error"),
        ];
        assert_eq!(expected.len(), ErrorKind::ALL.len(), "every kind is listed");
        for (kind, rpc, status, http_code, audit) in expected {
            let codes = wire_codes(kind);
            assert_eq!(
                (codes.rpc, codes.http_status.as_u16(), codes.http_code, codes.audit),
                (rpc, status, http_code, audit),
                "{kind}"
            );
        }
    }
}
