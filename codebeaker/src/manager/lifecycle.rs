//! A session's life beyond commands: pausing and resuming it, snapshotting its
//! workspace (and creating sessions from a snapshot), and forking it. Each runs in the
//! session's turn, between commands, so it sees the session at rest.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument as _;

use super::session::Session;
use super::{Inner, SessionInfo, SessionManager};
use crate::backend::{Archives, Backend, Pausing};
use crate::config::SessionConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::{SnapshotInfo, SnapshotStore};

/// A session made by [`SessionManager::fork_as`].
#[derive(Debug, Clone, PartialEq)]
pub struct Forked {
    /// The new session.
    pub info: SessionInfo,
    /// `true` when only the files were carried (the backend cannot copy a running
    /// sandbox): the new session's interpreter starts afresh.
    pub state_reset: bool,
}

impl SessionManager {
    /// Pauses a session `tenant` may see, after the command running now (if any): its
    /// sandbox stops using CPU and keeps its memory; its idle clock stands still.
    pub async fn pause_as(&self, tenant: Option<&str>, session_id: &str) -> Result<SessionInfo> {
        let session = self.inner.session(tenant, session_id)?;
        let pausing = pausing(&session)?;
        let _turn = self.inner.turn(&session, session.turns.ticket()).await?;
        if !session.is_paused() {
            pausing.pause().await?;
            session.paused.store(true, Ordering::SeqCst);
            tracing::info!(session = %session.id, "session paused");
        }
        Ok(session.info())
    }

    /// Resumes a paused session `tenant` may see where it was.
    pub async fn resume_as(&self, tenant: Option<&str>, session_id: &str) -> Result<SessionInfo> {
        let session = self.inner.session(tenant, session_id)?;
        let _turn = self.inner.turn(&session, session.turns.ticket()).await?;
        self.inner.resume(&session).await?;
        Ok(session.info())
    }

    /// Keeps a session's workspace (its files and the packages installed beneath it) as
    /// a snapshot owned by `tenant`, within its quota.
    pub async fn snapshot_as(&self, tenant: Option<&str>, session_id: &str) -> Result<SnapshotInfo> {
        let session = self.inner.session(tenant, session_id)?;
        let store = self.inner.store()?;
        let archives = archives(&session)?;
        let _turn = self.inner.turn(&session, session.turns.ticket()).await?;
        let slot = store.reserve(tenant).await?;
        let archive = archives.export(slot.room().saturating_add(1)).await?;
        let info = slot.save(session.config.language, session.backend, archive.reader).await?;
        tracing::info!(session = %session.id, snapshot = %info.snapshot_id, bytes = info.bytes, "snapshot taken");
        Ok(info)
    }

    /// The snapshots `tenant` owns, oldest first (none without a store).
    pub fn snapshots_as(&self, tenant: Option<&str>) -> Vec<SnapshotInfo> {
        self.inner.config.snapshots.as_ref().map(|store| store.list(tenant)).unwrap_or_default()
    }

    /// Deletes a snapshot `tenant` owns.
    pub fn delete_snapshot_as(&self, tenant: Option<&str>, snapshot_id: &str) -> Result<()> {
        self.inner.store()?.delete(tenant, snapshot_id)
    }

    /// A new session of `tenant` that starts as the session `session_id` is now: a live
    /// copy where the backend can make one, else a copy of its files
    /// ([`Forked::state_reset`]). It counts toward every cap like a created session.
    pub async fn fork_as(&self, tenant: Option<&str>, session_id: &str) -> Result<Forked> {
        let session = self.inner.session(tenant, session_id)?;
        let backend = self.inner.backend_named(session.backend)?;
        let mut config = session.config.clone();
        config.from_snapshot = None;
        let limits = self.inner.config.policy.limits_for(&config)?;
        // Files are what every fork may need to carry (a live one may be declined).
        archives(&session)?;
        let reservation = self.inner.reserve(tenant)?;
        let inner = self.inner.clone();
        let span = tracing::info_span!("session.fork", session = %session.id, backend = backend.name());
        let task = async move {
            let started = Instant::now();
            let turn = inner.turn(&session, session.turns.ticket()).await?;
            if session.is_paused() {
                return Err(Error::invalid_input(format!(
                    "session {} is paused; session.resume it before forking it",
                    session.id
                )));
            }
            let live = match session.sandbox.forking() {
                Some(forking) => match forking.fork(&limits).await {
                    Ok(sandbox) => Some(sandbox),
                    // This sandbox cannot be copied live now: its files are.
                    Err(error) if error.kind() == ErrorKind::Unsupported => {
                        tracing::info!(session = %session.id, %error, "no live fork; the fork carries the files");
                        None
                    }
                    Err(error) => return Err(error),
                },
                None => None,
            };
            let (sandbox, state_reset) = match live {
                Some(sandbox) => (sandbox, false),
                None => {
                    let sandbox = backend.create_sandbox(&config, &limits).await?;
                    let copied = copy_files(archives(&session)?, sandbox.as_ref(), limits.workspace_bytes).await;
                    if let Err(error) = copied {
                        let _ = sandbox.close().await;
                        return Err(error);
                    }
                    (sandbox, true)
                }
            };
            drop(turn);
            let info = inner.admit(reservation, config, &backend, sandbox, tracing::Span::current(), started).await?;
            tracing::info!(fork = %info.session_id, state_reset, "session forked");
            Ok(Forked { info, state_reset })
        };
        tokio::spawn(task.instrument(span))
            .await
            .map_err(|e| Error::internal(format!("fork task failed: {e}")).with_source(e))?
    }
}

/// Copies the workspace of one sandbox into another (whose archives take it).
async fn copy_files(from: &dyn Archives, to: &dyn crate::backend::Sandbox, workspace_bytes: u64) -> Result<()> {
    let into = to.archives().ok_or_else(|| Error::unsupported("copying files into this backend's sandboxes"))?;
    // An archive's headers add to its files: room for them beyond the workspace.
    let archive = from.export(workspace_bytes.saturating_mul(2).saturating_add(1 << 20)).await?;
    into.import(archive.reader).await.map(drop)
}

impl Inner {
    /// Lets a command through a paused session: resumed first where the operator's
    /// policy says so, else refused with an error saying it is paused.
    pub(super) async fn unpaused(&self, session: &Session) -> Result<()> {
        if !session.is_paused() {
            return Ok(());
        }
        if self.config.policy.resume_on_command {
            return self.resume(session).await;
        }
        Err(Error::invalid_input(format!(
            "session {} is paused; session.resume it first (or set the operator's resume-on-command)",
            session.id
        )))
    }

    /// Resumes `session` if it is paused (in its turn).
    async fn resume(&self, session: &Session) -> Result<()> {
        if session.is_paused() {
            pausing(session)?.resume().await?;
            session.paused.store(false, Ordering::SeqCst);
            session.touch();
            tracing::info!(session = %session.id, "session resumed");
        }
        Ok(())
    }

    fn store(&self) -> Result<&SnapshotStore> {
        self.config
            .snapshots
            .as_ref()
            .ok_or_else(|| Error::unsupported("snapshots on this server (it has no snapshot directory)"))
    }

    /// Checks that `config.from_snapshot`, if set, names a snapshot `tenant` owns of
    /// the same language and backend.
    pub(super) fn snapshot_for(&self, tenant: Option<&str>, config: &SessionConfig, backend: &str) -> Result<()> {
        let Some(id) = &config.from_snapshot else { return Ok(()) };
        let info = self.store()?.get(tenant, id)?;
        if info.language != config.language || info.backend != backend {
            return Err(Error::invalid_input(format!(
                "snapshot {id} is of a {} session on {}; this session is {} on {backend}",
                info.language, info.backend, config.language
            )));
        }
        Ok(())
    }

    /// Fills a new sandbox's workspace from snapshot `id`.
    pub(super) async fn restore(
        &self,
        sandbox: &dyn crate::backend::Sandbox,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<()> {
        let into = sandbox.archives().ok_or_else(|| Error::unsupported("snapshots in this backend's sessions"))?;
        let (_, archive) = self.store()?.open_archive(tenant, id).await?;
        into.import(archive).await.map(drop)
    }

    fn backend_named(&self, name: &str) -> Result<Arc<dyn Backend>> {
        self.backends
            .iter()
            .find(|backend| backend.name() == name)
            .cloned()
            .ok_or_else(|| Error::internal(format!("the session's backend {name} is gone")))
    }
}

fn pausing(session: &Session) -> Result<&dyn Pausing> {
    session.extension(session.sandbox.pausing(), session.capabilities.pause, "pausing")
}

fn archives(session: &Session) -> Result<&dyn Archives> {
    session.extension(session.sandbox.archives(), session.capabilities.snapshots, "snapshots and forks of")
}
