//! One open session as the manager holds it, and [`SessionInfo`], what callers see of it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Sandbox};
use crate::config::SessionConfig;
use crate::error::Result;
use crate::language::Language;
use crate::manager::turns::TurnQueue;
use crate::observer::CloseReason;
use crate::process::{ProcessLimits, ProcessTable};
use crate::result::Capabilities;
use crate::session_id::SessionId;

/// Whether a session is running a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionState {
    /// Running a command (and, in the answer to `session.create`, just created).
    Active,
    /// Waiting for a command.
    Idle,
    /// Paused (`session.pause`): using no CPU, its memory kept, until `session.resume`.
    Paused,
}

/// A snapshot of a session, as `session.list` reports it.
///
/// Deserializes from an entry of `session.list`; what the wire does not carry (the
/// tenant, the settings beyond the language) is then absent: no tenant, and the
/// language's default [`SessionConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The session's id.
    pub session_id: SessionId,
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
    /// The backend serving the session (`docker`, `deno`, or a third backend's name):
    /// the one it named, or the one the operator's routing table chose.
    pub backend: String,
    /// The cluster node holding the session (its `--node-url`), on a server that is a
    /// node of a cluster ([`crate::ManagerConfig::node`]); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A `session.list` entry as it travels.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSessionInfo {
    session_id: SessionId,
    container_id: String,
    language: Language,
    created_at: DateTime<Utc>,
    last_activity: DateTime<Utc>,
    state: SessionState,
    execution_count: u64,
    idle_minutes: f64,
    lifetime_minutes: f64,
    #[serde(default)]
    capabilities: Capabilities,
    #[serde(default)]
    backend: String,
    #[serde(default)]
    node: Option<String>,
}

impl<'de> Deserialize<'de> for SessionInfo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        WireSessionInfo::deserialize(deserializer).map(SessionInfo::from)
    }
}

impl From<WireSessionInfo> for SessionInfo {
    fn from(wire: WireSessionInfo) -> Self {
        SessionInfo {
            session_id: wire.session_id,
            container_id: wire.container_id,
            language: wire.language,
            created_at: wire.created_at,
            last_activity: wire.last_activity,
            state: wire.state,
            execution_count: wire.execution_count,
            idle_minutes: wire.idle_minutes,
            lifetime_minutes: wire.lifetime_minutes,
            capabilities: wire.capabilities,
            tenant: None,
            config: SessionConfig::new(wire.language),
            backend: wire.backend,
            node: wire.node,
        }
    }
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
    pub(crate) id: SessionId,
    pub(crate) config: SessionConfig,
    pub(crate) backend: &'static str,
    pub(crate) sandbox: Box<dyn Sandbox>,
    pub(crate) capabilities: Capabilities,
    pub(crate) tenant: Option<String>,
    /// The cluster node holding it, if any ([`crate::ManagerConfig::node`]).
    node: Option<Arc<str>>,
    pub(crate) turns: Arc<TurnQueue>,
    /// Its background processes.
    pub(crate) processes: ProcessTable,
    /// Whether it is paused (`session.pause`), changed in the session's turn only.
    pub(crate) paused: std::sync::atomic::AtomicBool,
    /// Fires when the session starts closing: waiting and running commands give up.
    pub(crate) closing: CancellationToken,
    closed: OnceCell<()>,
    created: Instant,
    created_wall: DateTime<Utc>,
    activity: Mutex<Activity>,
}

impl Session {
    pub(crate) fn new(
        id: SessionId,
        config: SessionConfig,
        backend: &dyn Backend,
        sandbox: Box<dyn Sandbox>,
        tenant: Option<String>,
        node: Option<Arc<str>>,
        process_limits: ProcessLimits,
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
            node,
            turns: TurnQueue::new(),
            processes: ProcessTable::new(process_limits),
            paused: std::sync::atomic::AtomicBool::new(false),
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
        // A background process at work keeps the session from idling, and a paused
        // session's idle clock stands still (its lifetime still bounds both).
        let idle = !activity.running && now.duration_since(activity.last) >= self.config.idle_timeout();
        drop(activity);
        (idle && !self.is_paused() && !self.processes.any_running()).then_some(CloseReason::Idle)
    }

    /// Stops what runs and removes the sandbox; later calls return at once.
    pub(crate) async fn close(&self, reason: CloseReason) {
        self.closing.cancel();
        self.processes.close("the session closed");
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

    /// A sandbox extension the session's capabilities declare, or
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) naming `what` (`pausing`
    /// → "pausing deno sessions").
    pub(crate) fn extension<'a, T: ?Sized>(&self, found: Option<&'a T>, declared: bool, what: &str) -> Result<&'a T> {
        found
            .filter(|_| declared)
            .ok_or_else(|| crate::error::Error::unsupported(format!("{what} {} sessions", self.backend)))
    }

    /// Whether the session is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Restarts the idle clock (a resume counts as activity).
    pub(crate) fn touch(&self) {
        let mut activity = self.activity();
        activity.last = Instant::now();
        activity.last_wall = Utc::now();
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
            state: match (self.is_paused(), activity.running) {
                (true, _) => SessionState::Paused,
                (false, true) => SessionState::Active,
                (false, false) => SessionState::Idle,
            },
            execution_count: activity.executions,
            idle_minutes: minutes(now.duration_since(activity.last)),
            lifetime_minutes: minutes(now.duration_since(self.created)),
            capabilities: self.capabilities,
            tenant: self.tenant.clone(),
            config: self.config.clone(),
            backend: self.backend.to_owned(),
            node: self.node.as_deref().map(str::to_owned),
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
