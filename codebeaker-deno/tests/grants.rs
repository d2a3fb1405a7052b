//! Path grants are the operator's to give: a session's `allowRead`/`allowWrite` may name
//! its own workspace, or paths beneath the policy's `grantable_paths`; anything else is
//! refused at `session.create`, before any runtime gets the grant.

mod common;

use codebeaker::{ErrorKind, Language, Policy, SessionConfig};
use codebeaker_deno::DenoIsolation;
use codebeaker_deno::{DenoOptions, DenoPermissions};
use common::*;

fn grants(read: &[&str], write: &[&str]) -> SessionConfig {
    let permissions = DenoPermissions {
        allow_read: read.iter().map(|p| p.to_string()).collect(),
        allow_write: write.iter().map(|p| p.to_string()).collect(),
        ..DenoPermissions::default()
    };
    DenoOptions { permissions }.apply(SessionConfig::new(Language::TypeScript)).expect("options")
}

async fn host_paths_are_refused_by_default(isolation: DenoIsolation) {
    let (_root, backend, manager) = manager_in(isolation);
    for (read, write) in [
        (&["/"][..], &[][..]),
        (&[], &["/"]),
        (&["/etc"], &[]),
        (&[], &["/tmp"]),
        (&["../"], &[]),
        (&["/workspace/../etc"], &[]),
        (&["/workspace", "/root"], &["/workspace"]),
    ] {
        let refused = manager.create(grants(read, write)).await.err();
        let Some(message) = refused.filter(|e| e.kind() == ErrorKind::InvalidInput).map(|e| e.to_string()) else {
            panic!("{read:?} {write:?} was not refused as invalid input")
        };
        let list = if write.iter().any(|p| *p != "/workspace") { "allowWrite" } else { "allowRead" };
        assert!(message.contains(list) && message.contains("grantable-paths"), "{message}");
    }
    assert!(codebeaker::Backend::live_sandboxes(&*backend).await.unwrap().is_empty(), "nothing was created");
    assert!(std::fs::read_dir(backend.workspaces_dir()).unwrap().next().is_none(), "no workspace was made");
    // The workspace itself, and paths in it, may always be named.
    let ok = manager.create(grants(&["/workspace", "/workspace/data", "notes"], &["/workspace/out"])).await.unwrap();
    manager.close(&ok.session_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn host_paths_are_refused_by_default_in_a_worker_process() {
    host_paths_are_refused_by_default(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_paths_are_refused_by_default_in_a_thread() {
    host_paths_are_refused_by_default(DenoIsolation::Thread).await;
}

async fn the_operator_can_make_host_paths_grantable(isolation: DenoIsolation) {
    let shared = passable_tempdir();
    std::fs::create_dir(shared.path().join("data")).unwrap();
    std::fs::write(shared.path().join("data/input.csv"), "a,b").unwrap();
    std::os::unix::fs::symlink("/etc", shared.path().join("data/etc")).unwrap();
    let data = shared.path().join("data");
    let policy = Policy {
        backends: [("deno".into(), serde_json::json!({"grantable-paths": vec![data.clone()]}))].into(),
        ..Policy::default()
    };
    let (_root, _backend, manager) = manager_with_policy_in(isolation, policy);
    let shown = data.display().to_string();
    let id = manager.create(grants(&[&shown], &[])).await.unwrap().session_id;
    assert_eq!(
        output(&manager, &id, &format!("console.log(await Deno.readTextFile('{shown}/input.csv'))")).await,
        "a,b"
    );
    manager.close(&id).await.unwrap();
    for escape in [format!("{shown}/.."), format!("{shown}/etc"), format!("{shown}/etc/passwd"), "/".to_owned()] {
        let refused = manager.create(grants(&[&escape], &[])).await.err();
        let Some(message) = refused.filter(|e| e.kind() == ErrorKind::InvalidInput).map(|e| e.to_string()) else {
            panic!("{escape}: not refused as invalid input")
        };
        assert!(message.contains(&shown), "the policy is named: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_can_make_host_paths_grantable_in_a_worker_process() {
    the_operator_can_make_host_paths_grantable(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_can_make_host_paths_grantable_in_a_thread() {
    the_operator_can_make_host_paths_grantable(DenoIsolation::Thread).await;
}
