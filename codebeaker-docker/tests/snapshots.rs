//! Snapshots and forks of real containers through the session manager: a package
//! installed for the user (beneath /workspace, where `pip install --user` puts it) and the
//! files come back in a session made from the snapshot, also after the backend restarts;
//! a fork carries files and packages and starts a fresh interpreter (`stateReset`).

mod common;

use std::sync::Arc;

use codebeaker::snapshot::SnapshotStore;
use codebeaker::{Backend, Language, ManagerConfig, SessionConfig, SessionManager};
use common::{agent_backend, finish, sh, shell};

fn manager(backend: &Arc<codebeaker_docker::DockerBackend>, store: &SnapshotStore) -> SessionManager {
    let config = ManagerConfig { snapshots: Some(store.clone()), ..ManagerConfig::default() };
    SessionManager::new(vec![backend.clone() as Arc<dyn Backend>], config)
}

/// Installs a package `kept_pkg` the way `pip install --user` lays one out: in the user
/// site directory, which lives beneath /workspace.
const INSTALL: &str = r#"
site=$(python3 -m site --user-site)
case "$site" in /workspace/*) ;; *) echo "user site outside the workspace: $site"; exit 1;; esac
mkdir -p "$site/kept_pkg" && echo 'ANSWER = 42' > "$site/kept_pkg/__init__.py"
echo first > notes.txt
"#;

#[tokio::test]
async fn a_snapshot_carries_files_and_user_packages_into_new_sessions() {
    let Some(backend) = agent_backend("snapshots", 0).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 256 << 20).unwrap();
    let manager = manager(&backend, &store);
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    assert!(session.info().unwrap().capabilities.snapshots);
    let installed = session.execute(sh(INSTALL)).await.unwrap();
    assert_eq!(shell(&installed).exit_code, 0, "{installed:?}");
    let snapshot = session.snapshot().await.unwrap();
    session.execute(sh("echo second > notes.txt")).await.unwrap();

    let mut config = SessionConfig::new(Language::Python);
    config.from_snapshot = Some(snapshot.snapshot_id.clone());
    let restored = manager.open(config.clone()).await.unwrap();
    assert_eq!(restored.read_file("notes.txt").await.unwrap().content, "first\n");
    let imported = restored.run_code("import kept_pkg\nprint(kept_pkg.ANSWER)").await.unwrap();
    assert_eq!(imported.output(), "42", "{imported:?}");
    let owner = restored.exec("sh", ["-c", "touch notes.txt && echo writable"]).await.unwrap();
    assert_eq!(owner.stdout, "writable\n", "restored files belong to the session's user: {owner:?}");

    // The fork: files and packages, a fresh interpreter.
    assert!(session.run_code("y = 7").await.unwrap().succeeded());
    let (fork, state_reset) = session.fork().await.unwrap();
    assert!(state_reset);
    assert_eq!(fork.read_file("notes.txt").await.unwrap().content, "second\n");
    let fresh = fork.run_code("import kept_pkg\nprint(kept_pkg.ANSWER, 'y' in globals())").await.unwrap();
    assert_eq!(fresh.output(), "42 False", "{fresh:?}");
    for s in [session, restored, fork] {
        s.close().await.unwrap();
    }
    drop(manager);

    // A restarted backend and manager over the same store.
    finish(backend).await;
    let Some(backend) = agent_backend("snapshots", 0).await else { return };
    let manager = self::manager(&backend, &SnapshotStore::open(dir.path(), 256 << 20).unwrap());
    let again = manager.open(config).await.unwrap();
    assert_eq!(again.read_file("notes.txt").await.unwrap().content, "first\n");
    again.close().await.unwrap();
    finish(backend).await;
}
