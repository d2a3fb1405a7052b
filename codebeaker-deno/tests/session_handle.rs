//! The SDK's `Session` handle over a real Deno backend: each method, and a dropped
//! handle's session closed in the background.

mod common;

use std::time::Duration;

use codebeaker::{Language, SessionConfig};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_session_handle_runs_code_and_files_and_closes_when_dropped() {
    let (_root, _backend, manager) = manager();
    let session = manager.open(SessionConfig::new(Language::TypeScript)).await.unwrap();

    let code = session.run_code("const x: number = 6; console.log(x * 7)").await.unwrap();
    assert!(code.succeeded(), "{code:?}");
    assert_eq!(code.output(), "42");
    let thrown = session.run_code("console.log('before'); undefinedName").await.unwrap();
    assert!(!thrown.succeeded());
    assert_eq!(thrown.output(), "before");
    assert!(thrown.error().is_some_and(|e| e.contains("ReferenceError")), "{thrown:?}");

    assert_eq!(session.write_file("data/a.txt", "hello").await.unwrap().bytes, 5);
    assert_eq!(session.read_file("data/a.txt").await.unwrap().content, "hello");
    assert_eq!(session.run_code("console.log(await Deno.readTextFile('data/a.txt'))").await.unwrap().output(), "hello");
    let listed = session.list_directory("data").await.unwrap();
    assert_eq!(listed.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a.txt"]);
    assert!(
        matches!(session.exec("ls", ["-l"]).await, Err(ref e) if e.kind() == codebeaker::ErrorKind::Unsupported),
        "Deno sessions have no shell"
    );

    let id = session.id().clone();
    assert_eq!(manager.list().len(), 1);
    drop(session);
    for _ in 0..500 {
        if manager.list().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(manager.list().is_empty(), "the dropped handle's session is still open");
    assert!(matches!(manager.info(&id), Err(ref e) if e.kind() == codebeaker::ErrorKind::SessionNotFound));

    let closed = manager.open(SessionConfig::new(Language::TypeScript)).await.unwrap();
    closed.close().await.unwrap();
    assert_eq!(manager.count(), 0);
}
