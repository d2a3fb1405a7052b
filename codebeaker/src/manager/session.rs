//! One open session as the manager holds it, and [`SessionInfo`], what callers see of it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Sandbox};
use crate::config::SessionConfig;
use crate::language::Language;
use crate::manager::turns::TurnQueue;
use crate::observer::CloseReason;
use crate::result::Capabilities;

/// Whether a session is running a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SessionState {
    /// Running a command (and, in the answer to `session.create`, just created).
    Active,
    /// Waiting for a command.
    Idle,
}

/// A snapshot of a session, as `session.list` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The session's id.
    pub session_id: String,
    /// The backend's sandbox id (Docker container id, Deno isolate id).
    pub container_id: String,
    /// The session's language.
    pub language: Language,
    /// When the session was created.
    pub created_at: DateTime<Utc>,
    /// When the last command started or finished.
    pub last_activity: DateTime<Utc>,
    /// Active while a command runs (and right after creation), Idle otherwise.
    pub state: SessionState,
    /// Commands run so far.
    pub execution_count: u64,
    /// Minutes since the last activity.
    pub idle_minutes: f64,
    /// Minutes since creation.
    pub lifetime_minutes: f64,
    /// What the session's sandbox can do (extension).
    pub capabilities: Capabilities,
    /// The tenant that owns the session (`None`: created without a tenant, e.g. by an
    /// SDK user or a single-tenant server).
    #[serde(skip)]
    pub tenant: Option<String>,
    /// The settings the session was created with.
    #[serde(skip)]
    pub config: SessionConfig,
    /// The backend serving the session (`docker`, `deno`).
    #[serde(skip)]
    pub backend: &'static str,
}

#[derive(Debug)]
struct Activity {
    last: Instant,
    last_wall: DateTime<Utc>,
    executions: u64,
    running: bool,
}

/// A session in the registry.
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) config: SessionConfig,
    pub(crate) backend: &'static str,
    pub(crate) sandbox: Box<dyn Sandbox>,
    pub(crate) capabilities: Capabilities,
    pub(crate) tenant: Option<String>,
    pub(crate) turns: Arc<TurnQueue>,
    /// Fires when the session starts closing: waiting and running commands give up.
    pub(crate) closing: CancellationToken,
    closed: OnceCell<()>,
    created: Instant,
    created_wall: DateTime<Utc>,
    activity: Mutex<Activity>,
}

impl Session {
    pub(crate) fn new(
        id: String,
        config: SessionConfig,
        backend: &dyn Backend,
        sandbox: Box<dyn Sandbox>,
        tenant: Option<String>,
    ) -> Self {
        let capabilities = backend.capabilities(config.language);
        let backend = backend.name();
        let now = Instant::now();
        let wall = Utc::now();
        Session {
            id,
            config,
            backend,
            sandbox,
            capabilities,
            tenant,
            turns: TurnQueue::new(),
            closing: CancellationToken::new(),
            closed: OnceCell::new(),
            created: now,
            created_wall: wall,
            activity: Mutex::new(Activity { last: now, last_wall: wall, executions: 0, running: false }),
        }
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a command as running until the returned mark is dropped, so no way out of
    /// a command (an error, a panic, a cancelled task) can leave the session busy.
    pub(crate) fn busy(&self) -> BusyMark<'_> {
        let mut activity = self.activity();
        activity.last = Instant::now();
        activity.last_wall = Utc::now();
        activity.running = true;
        BusyMark { session: self }
    }

    /// Why the session should be closed now, if it should.
    pub(crate) fn expiry(&self, now: Instant) -> Option<CloseReason> {
        if now.duration_since(self.created) >= self.config.max_lifetime() {
            return Some(CloseReason::Lifetime);
        }
        let activity = self.activity();
        (!activity.running && now.duration_since(activity.last) >= self.config.idle_timeout())
            .then_some(CloseReason::Idle)
    }

    /// Stops what runs and removes the sandbox; later calls return at once.
    pub(crate) async fn close(&self, reason: CloseReason) {
        self.closing.cancel();
        let reason = reason.as_str();
        self.closed
            .get_or_init(|| async {
                match self.sandbox.close().await {
                    Ok(()) => tracing::info!(session = %self.id, sandbox = %self.sandbox.id(), reason, "session closed"),
                    // The registry has forgotten the session either way; the backend's
                    // start-up sweep removes sandboxes it could not remove now.
                    Err(error) => tracing::warn!(session = %self.id, sandbox = %self.sandbox.id(), reason, %error, "session closed but its sandbox could not be removed"),
                }
            })
            .await;
    }

    pub(crate) fn info(&self) -> SessionInfo {
        let now = Instant::now();
        let activity = self.activity();
        SessionInfo {
            session_id: self.id.clone(),
            container_id: self.sandbox.id().to_owned(),
            language: self.config.language,
            created_at: self.created_wall,
            last_activity: activity.last_wall,
            state: if activity.running { SessionState::Active } else { SessionState::Idle },
            execution_count: activity.executions,
            idle_minutes: minutes(now.duration_since(activity.last)),
            lifetime_minutes: minutes(now.duration_since(self.created)),
            capabilities: self.capabilities,
            tenant: self.tenant.clone(),
            config: self.config.clone(),
            backend: self.backend,
        }
    }
}

/// A running command's mark on its session; see [`Session::busy`].
pub(crate) struct BusyMark<'a> {
    session: &'a Session,
}

impl Drop for BusyMark<'_> {
    fn drop(&mut self) {
        let mut activity = self.session.activity();
        activity.last = Instant::now();
        activity.last_wall = Utc::now();
        activity.running = false;
        activity.executions += 1;
    }
}

fn minutes(duration: std::time::Duration) -> f64 {
    // Two decimals, as the guide shows them (2.5, 15.5).
    (duration.as_secs_f64() / 60.0 * 100.0).round() / 100.0
}
