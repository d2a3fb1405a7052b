//! Pausing, snapshots and forks as a session's capabilities declare them. Where `pause`
//! is declared, a paused session reports `Paused`, refuses a command (the default
//! policy) with an error that says it is paused, and once resumed runs again with its
//! files and, where `persistent_state` is declared, its interpreter state. Where
//! `snapshots` is declared, a snapshot keeps the files as they were, a session created
//! from it has them, and a fork has them and then diverges from its original. What is
//! not declared is refused with `Unsupported` at once, never a hang.

use std::future::Future;
use std::time::Duration;

use super::Suite;
use crate::error::{ErrorKind, Result};
use crate::manager::{ManagerConfig, SessionManager, SessionState};
use crate::snapshot::SnapshotStore;
use crate::{Session, SessionConfig};

/// Longest any step of these checks may take.
const STEP: Duration = Duration::from_secs(60);

/// `future`'s answer, or a panic naming `what` when it hangs.
async fn step<T>(what: &str, future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(STEP, future).await.unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

/// The kind of error `result` holds, or a panic saying `what` should have failed.
fn refused<T>(what: &str, result: Result<T>) -> ErrorKind {
    match result {
        Ok(_) => panic!("{what}: expected an error"),
        Err(e) => e.kind(),
    }
}

impl Suite {
    /// See the module docs.
    pub async fn pause_and_snapshots(&self) {
        let store_dir = tempfile::tempdir().expect("a directory for snapshots");
        let store = SnapshotStore::open(store_dir.path(), 256 << 20).expect("a snapshot store");
        let config = ManagerConfig { snapshots: Some(store), ..ManagerConfig::default() };
        let manager = SessionManager::new(vec![self.backend.clone()], config);
        let session = manager.open(SessionConfig::new(self.language)).await.expect("open");
        let declared = session.info().expect("info").capabilities;
        assert!(!declared.live_fork || declared.snapshots, "a live fork copies files too: {declared:?}");
        session.write_file("kept.txt", "as it was").await.expect("write");
        if declared.persistent_state {
            let defined = session.run_code(self.programs.define_state.as_str()).await.expect("define state");
            assert!(defined.succeeded(), "{defined:?}");
        }
        self.pausing(&session, declared.pause, declared.persistent_state).await;
        self.snapshots(&manager, &session, declared.snapshots).await;
        session.close().await.expect("close");
    }

    async fn pausing(&self, session: &Session, declared: bool, stateful: bool) {
        let paused = step("pause", session.pause()).await;
        if !declared {
            assert_eq!(refused("pause without `pause`", paused), ErrorKind::Unsupported);
            return;
        }
        assert_eq!(paused.expect("pause").state, SessionState::Paused, "a paused session says so");
        let command = step("a command while paused", session.read_file("kept.txt")).await;
        let error = command.expect_err("a paused session refuses commands under the default policy");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("paused"), "the error says why: {error}");
        let resumed = step("resume", session.resume()).await.expect("resume");
        assert_ne!(resumed.state, SessionState::Paused, "{resumed:?}");
        assert_eq!(session.read_file("kept.txt").await.expect("read").content, "as it was");
        if stateful && std::env::var("NOSTATE").is_err() {
            let used = session.run_code(self.programs.use_state.as_str()).await.expect("use state");
            assert_eq!(used.output.trim(), "42", "the interpreter's state outlives a pause: {used:?}");
        }
    }

    async fn snapshots(&self, manager: &SessionManager, session: &Session, declared: bool) {
        let taken = step("snapshot", session.snapshot()).await;
        if !declared {
            assert_eq!(refused("snapshot without `snapshots`", taken), ErrorKind::Unsupported);
            assert_eq!(refused("fork without `snapshots`", step("fork", session.fork()).await), ErrorKind::Unsupported);
            return;
        }
        let snapshot = taken.expect("snapshot");
        assert!(snapshot.bytes > 0, "{snapshot:?}");
        assert_eq!(snapshot.language, self.language);
        session.write_file("kept.txt", "changed").await.expect("write");
        let mut config = SessionConfig::new(self.language);
        config.from_snapshot = Some(snapshot.snapshot_id.clone());
        let restored = step("create from a snapshot", manager.open(config)).await.expect("from snapshot");
        assert_eq!(restored.read_file("kept.txt").await.expect("read").content, "as it was");
        restored.close().await.expect("close");

        let (fork, _state_reset) = step("fork", session.fork()).await.expect("fork");
        assert_eq!(fork.read_file("kept.txt").await.expect("read").content, "changed", "a fork has the files");
        fork.write_file("kept.txt", "the fork's").await.expect("write");
        assert_eq!(session.read_file("kept.txt").await.expect("read").content, "changed", "they diverge");
        fork.close().await.expect("close");
        manager.delete_snapshot_as(None, &snapshot.snapshot_id).expect("delete");
        assert!(manager.snapshots_as(None).is_empty());
    }
}
