//! Snapshots and forks through the session manager on the temp-dir test backend (host
//! workspaces): a snapshot keeps the files as they were, sessions are created from it
//! (also by a new manager over the same store, as after a restart), tenants own their
//! snapshots, the quota holds, and a fork of the files counts toward the caps.

use std::sync::Arc;

use codebeaker::snapshot::SnapshotStore;
use codebeaker::testing::TempDirBackend;
use codebeaker::{Backend, ErrorKind, Language, ManagerConfig, SessionConfig, SessionManager};

fn manager(backend: &Arc<TempDirBackend>, store: &SnapshotStore, max_sessions: usize) -> SessionManager {
    let config = ManagerConfig { snapshots: Some(store.clone()), max_sessions, ..ManagerConfig::default() };
    SessionManager::new(vec![backend.clone() as Arc<dyn Backend>], config)
}

#[tokio::test]
async fn a_snapshot_keeps_the_files_as_they_were_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 10 << 20).unwrap();
    let backend = TempDirBackend::new(&[Language::Python]);
    let manager = manager(&backend, &store, 10);
    let session = manager.open_as(Some("alice"), SessionConfig::new(Language::Python)).await.unwrap();
    session.write_file("notes/a.txt", "as it was").await.unwrap();
    let snapshot = session.snapshot().await.unwrap();
    assert!(snapshot.bytes > 0);
    session.write_file("notes/a.txt", "changed").await.unwrap();

    let mut config = SessionConfig::new(Language::Python);
    config.from_snapshot = Some(snapshot.snapshot_id.clone());
    let restored = manager.open_as(Some("alice"), config.clone()).await.unwrap();
    assert_eq!(restored.read_file("notes/a.txt").await.unwrap().content, "as it was");
    // Another tenant neither sees nor uses it.
    assert!(manager.snapshots_as(Some("bob")).is_empty());
    let refused = manager.open_as(Some("bob"), config.clone()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{refused}");
    assert_eq!(manager.snapshots_as(Some("alice")), vec![snapshot.clone()]);

    // A new manager over the same directory (a restarted server) still has it.
    drop(manager);
    let store = SnapshotStore::open(dir.path(), 10 << 20).unwrap();
    let restarted = self::manager(&backend, &store, 10);
    let again = restarted.open_as(Some("alice"), config).await.unwrap();
    assert_eq!(again.read_file("notes/a.txt").await.unwrap().content, "as it was");
    restarted.delete_snapshot_as(Some("alice"), &snapshot.snapshot_id).unwrap();
    assert!(restarted.snapshots_as(Some("alice")).is_empty());
    let gone = restarted.delete_snapshot_as(Some("alice"), &snapshot.snapshot_id).unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::InvalidInput);
    let bad_id = restarted.delete_snapshot_as(Some("alice"), "../../etc/passwd").unwrap_err();
    assert_eq!(bad_id.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn the_quota_bounds_a_tenants_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 64 * 1024).unwrap();
    let backend = TempDirBackend::new(&[Language::Python]);
    let manager = manager(&backend, &store, 10);
    let session = manager.open_as(Some("alice"), SessionConfig::new(Language::Python)).await.unwrap();
    session.write_file("small.txt", "x".repeat(10_000)).await.unwrap();
    session.snapshot().await.unwrap();
    session.write_file("big.txt", "y".repeat(100_000)).await.unwrap();
    let refused = session.snapshot().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LimitReached, "{refused}");
    assert_eq!(manager.snapshots_as(Some("alice")).len(), 1, "nothing of the refused snapshot is kept");
    let partials: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.ends_with(".partial")).collect();
    assert!(partials.is_empty(), "{partials:?}");
}

#[tokio::test]
async fn snapshots_taken_at_once_share_one_quota_and_a_tenant_keeps_a_bounded_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 64 * 1024).unwrap();
    let backend = TempDirBackend::new(&[Language::Python]);
    let manager = manager(&backend, &store, 10);
    let (first, second) = (
        manager.open_as(Some("alice"), SessionConfig::new(Language::Python)).await.unwrap(),
        manager.open_as(Some("alice"), SessionConfig::new(Language::Python)).await.unwrap(),
    );
    first.write_file("a.bin", "a".repeat(40_000)).await.unwrap();
    second.write_file("b.bin", "b".repeat(40_000)).await.unwrap();
    // Either fits the quota alone, not both: taken at once, one of them is refused.
    let (a, b) = tokio::join!(first.snapshot(), second.snapshot());
    let refused: Vec<_> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].kind(), ErrorKind::LimitReached, "{}", refused[0]);
    let kept = manager.snapshots_as(Some("alice"));
    assert_eq!(kept.len(), 1);
    assert!(kept[0].bytes <= 64 * 1024, "{kept:?}");

    // The count is bounded too, however small each snapshot is.
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 10 << 20).unwrap().with_max_count(2);
    let manager = self::manager(&backend, &store, 10);
    let session = manager.open_as(Some("alice"), SessionConfig::new(Language::Python)).await.unwrap();
    session.snapshot().await.unwrap();
    session.snapshot().await.unwrap();
    let refused = session.snapshot().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LimitReached, "{refused}");
    assert!(refused.to_string().contains("snapshot.delete"), "the error says what to do: {refused}");
    assert_eq!(manager.snapshots_as(Some("alice")).len(), 2);
    // Another tenant has a count of its own.
    let other = manager.open_as(Some("bob"), SessionConfig::new(Language::Python)).await.unwrap();
    other.snapshot().await.unwrap();
}

#[tokio::test]
async fn a_fork_copies_the_files_and_counts_toward_the_caps() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 10 << 20).unwrap();
    let backend = TempDirBackend::new(&[Language::Python]);
    let manager = manager(&backend, &store, 3);
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    session.write_file("a.txt", "before").await.unwrap();
    let (fork, state_reset) = session.fork().await.unwrap();
    assert!(state_reset, "the temp-dir backend copies files only");
    assert_eq!(fork.read_file("a.txt").await.unwrap().content, "before");
    fork.write_file("a.txt", "fork's").await.unwrap();
    assert_eq!(session.read_file("a.txt").await.unwrap().content, "before", "they diverge");
    // A fork bomb meets the session cap with a clear error.
    let (_third, _) = fork.fork().await.unwrap();
    let refused = fork.fork().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LimitReached, "{refused}");
    assert_eq!(manager.count(), 3);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}
