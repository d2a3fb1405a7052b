//! Errors keep their cause: a failed file command's error is of a stable kind, says what
//! it always said, and hands the I/O error that caused it to whoever asks
//! (`std::error::Error::source`), through the public API of the session manager.

use std::error::Error as _;

use codebeaker::testing::TempDirBackend;
use codebeaker::{Command, Error, ErrorKind, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};

#[tokio::test]
async fn a_missing_file_is_not_found_and_keeps_the_io_error() {
    let backend = TempDirBackend::new(&[Language::Python]);
    let manager = SessionManager::new(vec![backend], ManagerConfig::default());
    let id = manager.create(SessionConfig::new(Language::Python)).await.expect("a session").session_id;
    let outcome =
        manager.execute(&id, Command::read_file("missing.txt").unwrap(), ExecOptions::default()).await.expect("it ran");
    assert!(!outcome.success);
    let error = outcome.error.as_ref().expect("an error");
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert_eq!(error.to_string(), "File not found: /workspace/missing.txt");
    assert_eq!(outcome.to_json()["error"], "File not found: /workspace/missing.txt", "the wire shows the message");
    let io = error.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the io error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    manager.close(&id).await.expect("close");
}

#[tokio::test]
async fn errors_without_a_cause_have_no_source_and_compare_by_kind_and_message() {
    let manager = SessionManager::new(vec![TempDirBackend::new(&[Language::Python])], ManagerConfig::default());
    let missing = manager.close("no-such-session").await.expect_err("unknown session");
    assert_eq!(missing.kind(), ErrorKind::SessionNotFound);
    assert!(missing.source().is_none(), "{missing:?}");
    assert_eq!(missing, Error::session_not_found("no-such-session"));
    let rebuilt = Error::new(missing.kind(), missing.to_string());
    assert_eq!(rebuilt, missing, "kind and message rebuild an error a second receiver can own");
    assert_eq!(missing.kind().name(), "session_not_found");
}
