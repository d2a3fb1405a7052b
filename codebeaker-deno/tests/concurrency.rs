//! Many sessions at once: each has its own globals and its own workspace.

mod common;

use std::sync::Arc;

use codebeaker::{Command, ManagerConfig, SessionManager};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn hundred_sessions_run_concurrently_in_isolation() {
    let (_root, backend) = backend();
    let config = ManagerConfig { max_sessions: 200, ..ManagerConfig::default() };
    let manager = Arc::new(SessionManager::new(vec![backend.clone()], config));
    let mut tasks = Vec::new();
    for n in 0..100 {
        let manager = manager.clone();
        tasks.push(tokio::spawn(async move {
            let id = session(&manager).await;
            output(&manager, &id, &format!("globalThis.mine = {n}; await Deno.writeTextFile('who.txt', '{n}');")).await;
            tokio::task::yield_now().await;
            let seen = output(&manager, &id, "let s = 0; for (let i = 0; i < 10000; i++) s += i; console.log(mine, await Deno.readTextFile('who.txt'), typeof other)").await;
            assert_eq!(seen, format!("{n} {n} undefined"), "session {n} saw another session's state");
            let listing = command(&manager, &id, Command::list_directory("/workspace").unwrap()).await;
            assert_eq!(listing.to_json()["result"]["entries"].as_array().map(Vec::len), Some(1), "{:?}", listing.to_json());
            id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("session task"));
    }
    assert_eq!(codebeaker::Backend::live_sandboxes(&*backend).await.unwrap().len(), 100);
    for id in ids {
        manager.close(&id).await.unwrap();
    }
    assert!(codebeaker::Backend::live_sandboxes(&*backend).await.unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(backend.workspaces_dir()).unwrap().collect();
    assert!(left.is_empty(), "closed sessions left workspaces behind: {left:?}");
}
