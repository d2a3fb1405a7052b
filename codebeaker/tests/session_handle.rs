//! The `Session` handle on the temp-dir test backend: typed methods, close, and the
//! session closed in the background when a handle is dropped without closing.

use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{Error, Language, ManagerConfig, SessionConfig, SessionManager};

fn manager() -> SessionManager {
    SessionManager::new(vec![TempDirBackend::new(&[Language::Python])], ManagerConfig::default())
}

/// Waits (a bounded while) until the manager holds no session.
async fn until_empty(manager: &SessionManager) {
    for _ in 0..200 {
        if manager.list().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sessions still open: {:?}", manager.list());
}

#[tokio::test]
async fn each_method_returns_its_typed_result() {
    let manager = manager();
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    assert_eq!(session.info().unwrap().session_id, *session.id());

    let code = session.run_code("print 6\nwarn 7").await.unwrap();
    assert!(code.succeeded());
    assert_eq!((code.output(), code.stdout(), code.stderr()), ("6\n7", "6\n", "7\n"));

    let thrown = session.run_code("print before\nthrow boom").await.unwrap();
    assert!(!thrown.succeeded());
    assert_eq!((thrown.output(), thrown.error()), ("before", Some("Error: boom")));

    assert_eq!(session.write_file("notes/a.txt", "abc").await.unwrap().bytes, 3);
    assert_eq!(session.read_file("notes/a.txt").await.unwrap().content, "abc");
    let listed = session.list_directory("notes").await.unwrap();
    assert_eq!(listed.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a.txt"]);
    assert_eq!(session.read_file("missing.txt").await.unwrap_err(), Error::not_found("/workspace/missing.txt"));
    // The test backend has no shell, like a Deno session.
    assert!(matches!(session.exec("ls", ["-l"]).await, Err(ref e) if e.kind() == codebeaker::ErrorKind::Unsupported));
    assert_eq!(session.info().unwrap().execution_count, 7);

    let id = session.id().clone();
    session.close().await.unwrap();
    assert!(matches!(manager.info(&id), Err(ref e) if e.kind() == codebeaker::ErrorKind::SessionNotFound));
}

#[tokio::test]
async fn a_dropped_handle_closes_its_session_in_the_background() {
    let manager = manager();
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let other = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    session.write_file("a.txt", "x").await.unwrap();
    drop(session);
    drop(other);
    until_empty(&manager).await;
}

#[tokio::test]
async fn a_handle_whose_session_expired_or_was_closed_answers_session_not_found() {
    let manager = manager();
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    manager.close(session.id()).await.unwrap();
    assert!(
        matches!(session.run_code("print x").await, Err(ref e) if e.kind() == codebeaker::ErrorKind::SessionNotFound)
    );
    assert!(matches!(session.info(), Err(ref e) if e.kind() == codebeaker::ErrorKind::SessionNotFound));
    assert!(matches!(session.close().await, Err(ref e) if e.kind() == codebeaker::ErrorKind::SessionNotFound));
}

#[test]
fn a_handle_dropped_outside_a_runtime_does_not_panic() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let manager = runtime.block_on(async { manager() });
    let session = runtime.block_on(manager.open(SessionConfig::new(Language::Python))).unwrap();
    drop(session);
    // Nothing closed it: the session waits for its idle timeout.
    assert_eq!(manager.count(), 1);
    runtime.block_on(manager.shutdown());
}

#[tokio::test]
async fn tenant_handles_act_as_their_tenant() {
    let manager = manager();
    let session = manager.open_as(Some("alice"), SessionConfig::new(Language::Python)).await.unwrap();
    assert_eq!(session.run_code("print hi").await.unwrap().output(), "hi");
    assert!(manager.list_as(Some("bob")).is_empty());
    assert_eq!(manager.list_as(Some("alice")).len(), 1);
    session.close().await.unwrap();
    assert_eq!(manager.count(), 0);
}
