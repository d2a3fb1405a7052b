//! The kernel's walls hold even where the permission checks are bypassed: the worker's
//! test hooks (feature `test-hooks`) touch the host directly, without asking the ops, and
//! Landlock, seccomp and the rlimits still refuse.

mod common;

use codebeaker::{Allowlist, DenoPermissions, ManagerConfig, Policy, SessionManager};
use common::*;

async fn hook(manager: &codebeaker::SessionManager, id: &str, what: &str) -> String {
    output(manager, id, &format!("//@cb-test {what}")).await
}

fn refused(answer: &str, what: &str) {
    assert!(
        answer.contains("errno 13") || answer.contains("errno 1)"),
        "{what} must fail with EACCES or EPERM inside the worker, got {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_outside_the_grant_processes_and_sockets_are_refused_by_the_kernel() {
    let (_root, backend, manager) = manager();
    let id = session(&manager).await;
    output(&manager, &id, "await Deno.writeTextFile('/workspace/mine.txt', 'x')").await;
    let info = manager.info(&id).unwrap();
    let workspace = backend.workspaces_dir().join(&info.container_id);
    assert_eq!(hook(&manager, &id, &format!("open {}", workspace.join("mine.txt").display())).await, "ok");
    assert_eq!(hook(&manager, &id, &format!("create {}", workspace.join("new.txt").display())).await, "ok");
    for path in ["/etc/passwd", "/proc/1/environ", backend.workspaces_dir().to_str().unwrap()] {
        refused(&hook(&manager, &id, &format!("open {path}")).await, path);
    }
    let outside = std::env::temp_dir().join(format!("cb-walls-{}", std::process::id()));
    refused(&hook(&manager, &id, &format!("create {}", outside.display())).await, "creating a file outside");
    assert!(!outside.exists());
    refused(&hook(&manager, &id, "socket").await, "a socket without allowNet");
    refused(&hook(&manager, &id, "fork").await, "fork");
    refused(&hook(&manager, &id, "exec").await, "exec");
    // The session is unharmed.
    assert_eq!(output(&manager, &id, "console.log(await Deno.readTextFile('/workspace/mine.txt'))").await, "x");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn granted_paths_and_network_open_their_walls_and_no_more() {
    let shared = tempfile::tempdir().unwrap();
    let (_root, backend) = backend();
    let policy = Policy { grantable_paths: vec![shared.path().to_path_buf()], ..Policy::default() };
    let manager = SessionManager::new(vec![backend], ManagerConfig { policy, ..ManagerConfig::default() });
    std::fs::write(shared.path().join("data.txt"), "shared").unwrap();
    let permissions = DenoPermissions {
        allow_read: vec![shared.path().display().to_string()],
        allow_net: Allowlist::All,
        ..DenoPermissions::default()
    };
    let id = session_with(&manager, permissions).await;
    assert_eq!(hook(&manager, &id, &format!("open {}", shared.path().join("data.txt").display())).await, "ok");
    // Read-only grant: no writing there.
    refused(
        &hook(&manager, &id, &format!("create {}", shared.path().join("new.txt").display())).await,
        "write in a read grant",
    );
    assert_eq!(hook(&manager, &id, "socket").await, "ok");
    refused(&hook(&manager, &id, "open /etc/shadow").await, "/etc/shadow");
    manager.close(&id).await.unwrap();
}
