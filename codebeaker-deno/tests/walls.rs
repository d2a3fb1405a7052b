//! The kernel's walls hold even where the permission checks are bypassed: the worker's
//! test hooks (feature `test-hooks`) touch the host directly, without asking the ops, and
//! Landlock, seccomp and the rlimits still refuse.

mod common;

use codebeaker::{Allowlist, ManagerConfig, Policy, SessionManager};
use codebeaker_deno::DenoPermissions;
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
    let workspace = backend.workspace_of(&info.container_id).expect("the session has a workspace");
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
    let shared = passable_tempdir();
    let (_root, backend) = backend();
    let policy = Policy {
        backends: [("deno".into(), serde_json::json!({"grantable-paths": vec![shared.path().to_path_buf()]}))].into(),
        ..Policy::default()
    };
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

#[tokio::test(flavor = "multi_thread")]
async fn system_calls_off_the_allowlist_are_refused_with_and_without_net() {
    let (_root, _backend, manager) = manager();
    let offline = session(&manager).await;
    let online =
        session_with(&manager, DenoPermissions { allow_net: Allowlist::All, ..DenoPermissions::default() }).await;
    for id in [&offline, &online] {
        // io_uring would carry socket operations past the socket rule; the others reach
        // the kernel's most exposed interfaces or the worker's identity.
        // `unshare` of a user namespace and `clone` of a live fork's copy pass the lock to
        // the fork gate, where the host refuses them at once when it is not forking.
        for call in ["io_uring_setup", "bpf", "unshare", "perf_event_open", "keyctl", "setuid", "clone_parent"] {
            let answer = hook(&manager, id, &format!("syscall {call}")).await;
            assert!(answer.ends_with("(errno 1)"), "{call} must fail with EPERM inside the worker, got {answer:?}");
        }
        // A new namespace through clone; clone3, whose flags a filter cannot read, gets
        // ENOSYS so that the C library falls back to clone.
        let cloned = hook(&manager, id, "syscall clone_newuser").await;
        assert!(cloned.ends_with("(errno 1)"), "clone(CLONE_NEWUSER), got {cloned:?}");
        let cloned3 = hook(&manager, id, "syscall clone3").await;
        assert!(cloned3.ends_with("(errno 38)"), "clone3 must fail with ENOSYS, got {cloned3:?}");
        // Still a working session.
        assert_eq!(output(&manager, id, "console.log(1 + 1)").await, "2");
    }
    for id in [offline, online] {
        manager.close(&id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn landlock_limits_tcp_connect_to_the_ports_allow_net_names_and_no_worker_listens() {
    let named = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unnamed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (named, unnamed) = (named.local_addr().unwrap(), unnamed.local_addr().unwrap());
    let (_root, _backend, manager) = manager();
    // The seccomp filter lets this session make internet sockets: Landlock alone decides.
    let ports = session_with(
        &manager,
        DenoPermissions { allow_net: Allowlist::Only(vec![named.to_string()]), ..DenoPermissions::default() },
    )
    .await;
    assert_eq!(hook(&manager, &ports, &format!("connect {named}")).await, "ok");
    let landlocked = hook(&manager, &ports, &format!("connect {unnamed}")).await;
    assert!(landlocked.ends_with("(errno 13)"), "a port allowNet does not name, got {landlocked:?}");
    // Any port: connect is open, listening is not.
    let any = session_with(&manager, DenoPermissions { allow_net: Allowlist::All, ..DenoPermissions::default() }).await;
    assert_eq!(hook(&manager, &any, &format!("connect {unnamed}")).await, "ok");
    for id in [&ports, &any] {
        // `bind` is off the seccomp allowlist (EPERM) before Landlock would refuse it (EACCES).
        refused(&hook(&manager, id, "bind").await, "bind");
    }
    for id in [ports, any] {
        manager.close(&id).await.unwrap();
    }
}
