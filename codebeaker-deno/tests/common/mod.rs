//! Helpers shared by the Deno backend's behaviour tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Command, CommandOutcome, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_deno::{DenoBackend, DenoConfig, DenoIsolation, DenoOptions, DenoPermissions};

/// A fresh temporary directory that workers of other uids may pass through (a root server's
/// workers run as uids of their own; `tempfile` makes directories 0700).
pub fn passable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod the temp dir");
    dir
}

/// A backend in `isolation` with a small pool, workspaces under a fresh temporary directory (a new
/// directory in it: the backend creates its root private, and refuses an open one).
pub fn backend_in(isolation: DenoIsolation) -> (tempfile::TempDir, Arc<DenoBackend>) {
    let root = passable_tempdir();
    let workspace_root = root.path().join("deno");
    let config = DenoConfig { pool_size: 2, workspace_root, isolation, ..DenoConfig::default() };
    (root, DenoBackend::new(config).expect("deno backend"))
}

/// A backend in the default (process) isolation.
pub fn backend() -> (tempfile::TempDir, Arc<DenoBackend>) {
    backend_in(DenoIsolation::default())
}

/// A manager over a fresh backend in `isolation`.
pub fn manager_in(isolation: DenoIsolation) -> (tempfile::TempDir, Arc<DenoBackend>, SessionManager) {
    let (root, backend) = backend_in(isolation);
    let manager = SessionManager::new(vec![backend.clone()], ManagerConfig::default());
    (root, backend, manager)
}

/// A manager over a fresh backend in the default (process) isolation.
pub fn manager() -> (tempfile::TempDir, Arc<DenoBackend>, SessionManager) {
    manager_in(DenoIsolation::default())
}

/// Opens a Deno session with `permissions`.
pub async fn session_with(manager: &SessionManager, permissions: DenoPermissions) -> String {
    let config = SessionConfig::new(Language::TypeScript);
    let config = DenoOptions { permissions }.apply(config).expect("options");
    manager.create(config).await.expect("create a deno session").session_id.into()
}

/// Opens a Deno session with the default permissions.
pub async fn session(manager: &SessionManager) -> String {
    session_with(manager, DenoPermissions::default()).await
}

/// Runs any command.
pub async fn command(manager: &SessionManager, id: &str, command: Command) -> CommandOutcome {
    manager.execute(id, command, ExecOptions::default()).await.expect("the command ran")
}

/// Runs `code` with `execute_code`.
pub async fn run(manager: &SessionManager, id: &str, code: &str) -> CommandOutcome {
    command(manager, id, Command::code(code)).await
}

/// Runs `code` with a timeout.
pub async fn run_for(manager: &SessionManager, id: &str, code: &str, timeout: Duration) -> CommandOutcome {
    let options = ExecOptions { timeout: Some(timeout), output: None };
    manager.execute(id, Command::code(code), options).await.expect("the command ran")
}

/// The output of code that must succeed.
pub async fn output(manager: &SessionManager, id: &str, code: &str) -> String {
    let outcome = run(manager, id, code).await;
    assert!(outcome.success, "expected success for {code:?}: {:?}", outcome.to_json());
    outcome.to_json()["result"].as_str().unwrap_or_default().to_owned()
}

/// The error message of code that must fail.
pub async fn error(manager: &SessionManager, id: &str, code: &str) -> String {
    let outcome = run(manager, id, code).await;
    assert!(!outcome.success, "expected failure for {code:?}: {:?}", outcome.to_json());
    outcome.to_json()["error"].as_str().unwrap_or_default().to_owned()
}

/// A manager over a fresh backend in the default (process) isolation whose sessions get
/// `policy`'s limits.
pub fn manager_with_policy(policy: codebeaker::Policy) -> (tempfile::TempDir, Arc<DenoBackend>, SessionManager) {
    manager_with_policy_in(DenoIsolation::default(), policy)
}

/// A manager over a fresh backend in `isolation` whose sessions get `policy`'s limits.
pub fn manager_with_policy_in(
    isolation: DenoIsolation,
    policy: codebeaker::Policy,
) -> (tempfile::TempDir, Arc<DenoBackend>, SessionManager) {
    let (root, backend) = backend_in(isolation);
    let manager = SessionManager::new(vec![backend.clone()], ManagerConfig { policy, ..ManagerConfig::default() });
    (root, backend, manager)
}

/// The host directory of session `id`'s workspace.
pub fn workspace_of(backend: &DenoBackend, manager: &SessionManager, id: &str) -> std::path::PathBuf {
    let sandbox = manager.list().into_iter().find(|s| s.session_id == id).expect("the session is listed").container_id;
    backend.workspace_of(&sandbox).expect("the session has a workspace")
}
