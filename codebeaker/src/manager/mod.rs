//! [`SessionManager`]: routes languages to backends, owns the session registry, and
//! applies the limits every backend shares (max sessions, command timeouts, output caps,
//! idle and lifetime expiry) in one place.

mod expiry;
mod files;
mod handle;
mod lifecycle;
mod processes;
mod registry;
mod routes;
mod run;
mod session;
mod stream;
mod turns;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::backend::{Backend, BackendHealth, OutputSink, DEFAULT_OUTPUT_LIMIT};
use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::observer::{CloseReason, SessionObserver};
use crate::policy::Policy;
use crate::result::{CommandOutcome, CommandResult};
use crate::session_id::SessionId;
use crate::snapshot::SnapshotStore;

pub use self::files::{Download, STALL_TIMEOUT};
pub use self::handle::{Process, Session};
pub use self::lifecycle::Forked;
use self::registry::{Caps, Registry, Reservation};
pub use self::routes::{Route, Routes};
use self::run::{elapsed_ms, guarded};
use self::session::Session as OpenSession;
pub use self::session::{SessionInfo, SessionState};
pub use self::stream::{ExecEvent, ExecutionStream};

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

/// The backend name reported to the observer when no backend runs the language asked for.
const NO_BACKEND: &str = "none";

/// Limits and timings of a [`SessionManager`].
#[derive(Clone)]
pub struct ManagerConfig {
    /// Most sessions open at once (one-shot runs count while they run).
    pub max_sessions: usize,
    /// How often expired sessions are looked for.
    pub sweep_interval: Duration,
    /// Cap of each output stream of one command, in bytes.
    pub output_limit: usize,
    /// The operator's caps on what sessions may ask for, and the limits backends
    /// enforce (longest command timeout, stop grace, memory, CPU, workspace…).
    pub policy: Policy,
    /// Which backend serves each language when a session names none (see [`Routes`]).
    pub routes: Routes,
    /// Told of every session and command event (metrics, audit); `None` by default.
    pub observer: Option<Arc<dyn SessionObserver>>,
    /// Where `session.snapshot` keeps snapshots; `None` (the default): snapshots are
    /// refused.
    pub snapshots: Option<SnapshotStore>,
    /// The name of this manager's node in a cluster (its URL), which every
    /// [`SessionInfo::node`] then carries; `None` (the default) outside a cluster.
    pub node: Option<Arc<str>>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            max_sessions: 100,
            sweep_interval: Duration::from_secs(1),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            policy: Policy::default(),
            routes: Routes::default(),
            observer: None,
            snapshots: None,
            node: None,
        }
    }
}

impl std::fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("max_sessions", &self.max_sessions)
            .field("sweep_interval", &self.sweep_interval)
            .field("output_limit", &self.output_limit)
            .field("policy", &self.policy)
            .field("routes", &self.routes)
            .field("observer", &self.observer.is_some())
            .field("snapshots", &self.snapshots)
            .field("node", &self.node)
            .finish()
    }
}

/// How one command runs, beyond the command itself.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Wall-clock limit; the session's `defaultTimeoutMs` when `None`.
    pub timeout: Option<Duration>,
    /// Where to stream output chunks while the command runs.
    pub output: Option<OutputSink>,
}

/// The sessions of one process, over any number of backends. Cheap to clone (a handle).
///
/// Commands on one session run one at a time in the order they were submitted;
/// different sessions run in parallel. A background task closes sessions past their
/// idle timeout or max lifetime; [`SessionManager::shutdown`] closes everything.
///
/// # Tenants
///
/// Every operation has a `*_as` form taking the tenant that asks. `None` is the operator
/// (an SDK user, a single-tenant server): it sees and acts on every session, and the
/// plain methods (`create`, `execute`, …) are this case. `Some(tenant)` sees only the
/// sessions it created; any other session id answers [`ErrorKind::SessionNotFound`](crate::ErrorKind::SessionNotFound) exactly
/// as an unknown id does. Each tenant may hold at most
/// [`Policy::sessions_per_tenant`] sessions beside the global `max_sessions` (by default a
/// quarter of it). The operator is not a tenant: its own cap is the global one.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    backends: Vec<Arc<dyn Backend>>,
    config: ManagerConfig,
    registry: Arc<Mutex<Registry>>,
    shutdown: CancellationToken,
}

impl SessionManager {
    /// A manager over `backends`, routed by [`ManagerConfig::routes`]. Must be called
    /// inside a Tokio runtime: it starts the expiry task.
    pub fn new(backends: Vec<Arc<dyn Backend>>, config: ManagerConfig) -> Self {
        let inner = Arc::new(Inner { backends, config, registry: Arc::default(), shutdown: CancellationToken::new() });
        expiry::spawn(Arc::downgrade(&inner), inner.config.sweep_interval, inner.shutdown.clone());
        SessionManager { inner }
    }

    /// The manager's limits.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// The backends.
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.inner.backends
    }

    /// Each backend's name and health.
    pub async fn health(&self) -> Vec<(&'static str, BackendHealth)> {
        let checks = self.inner.backends.iter().map(|b| async move { (b.name(), b.health().await) });
        futures::future::join_all(checks).await
    }

    /// Creates a session as the operator; see [`SessionManager::create_as`].
    pub async fn create(&self, config: SessionConfig) -> Result<SessionInfo> {
        self.create_as(None, config).await
    }

    /// Creates a session owned by `tenant`. The sandbox is created in a task of its own,
    /// so a caller that gives up half-way leaves a registered session (closed by its idle
    /// timeout), never an orphaned sandbox.
    pub async fn create_as(&self, tenant: Option<&str>, mut config: SessionConfig) -> Result<SessionInfo> {
        // The operator's default timeout, unless the session chose its own.
        config.default_timeout_ms.get_or_insert(self.inner.config.policy.default_command_timeout_ms);
        let backend = match self.inner.backend_for(&mut config) {
            Ok(backend) => backend,
            Err(error) => {
                self.inner.observe(|o| o.session_create_failed(NO_BACKEND, &error));
                return Err(error);
            }
        };
        let checked = self.inner.config.policy.limits_for(&config);
        let reserved = checked.and_then(|limits| Ok((limits, self.inner.reserve(tenant)?)));
        let (limits, reservation) = match reserved {
            Ok(reserved) => reserved,
            Err(error) => {
                self.inner.observe(|o| o.session_create_failed(backend.name(), &error));
                return Err(error);
            }
        };
        if let Err(error) = self.inner.snapshot_for(tenant, &config, backend.name()) {
            self.inner.observe(|o| o.session_create_failed(backend.name(), &error));
            return Err(error);
        }
        let inner = self.inner.clone();
        let task = async move {
            let span = tracing::info_span!("session.create", language = %config.language, backend = backend.name());
            let started = Instant::now();
            let sandbox = match backend.create_sandbox(&config, &limits).instrument(span.clone()).await {
                Ok(sandbox) => sandbox,
                Err(error) => {
                    inner.observe(|o| o.session_create_failed(backend.name(), &error));
                    return Err(error);
                }
            };
            if let Some(snapshot) = config.from_snapshot.clone() {
                let restored =
                    inner.restore(sandbox.as_ref(), reservation.tenant(), &snapshot).instrument(span.clone());
                if let Err(error) = restored.await {
                    if let Err(close) = sandbox.close().await {
                        tracing::warn!(%close, "a sandbox whose snapshot failed to restore could not be removed");
                    }
                    inner.observe(|o| o.session_create_failed(backend.name(), &error));
                    return Err(error);
                }
            }
            inner.admit(reservation, config, &backend, sandbox, span, started).await
        };
        // In the caller's span, so the manager's spans nest beneath the request's.
        let task = tokio::spawn(task.in_current_span());
        task.await.map_err(|e| Error::internal(format!("session creation task failed: {e}")).with_source(e))?
    }

    /// Runs `command` on a session as the operator; see [`SessionManager::execute_as`].
    pub fn execute(
        &self,
        session_id: &str,
        command: Command,
        options: ExecOptions,
    ) -> impl Future<Output = Result<CommandOutcome>> + Send + 'static {
        self.execute_as(None, session_id, command, options)
    }

    /// Runs `command` on a session `tenant` may see. The command's place in the session's
    /// queue is taken when this method is called, not when the future is first polled.
    ///
    /// Drop-safe: the command runs in a task of its own. Dropping the future before the
    /// command's turn gives its place up (it never runs); dropping it once the command
    /// runs lets the command finish in the background, so the sandbox is never stopped
    /// half-way and the session never stays marked busy.
    ///
    /// `Err` means the command did not run (unknown session, a timeout outside
    /// [`Policy::command_timeout`], session closed while waiting); a command that ran and
    /// failed is `Ok` with `success: false`.
    pub fn execute_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        command: Command,
        options: ExecOptions,
    ) -> impl Future<Output = Result<CommandOutcome>> + Send + 'static {
        let policy = &self.inner.config.policy;
        let checked = options.timeout.map(|asked| policy.command_timeout("timeoutMs", millis(asked))).transpose();
        let queued = checked.and_then(|_| self.inner.session(tenant, session_id)).map(|session| {
            let ticket = session.turns.ticket();
            (session, ticket)
        });
        let inner = self.inner.clone();
        async move {
            let (session, ticket) = queued?;
            let abandoned = CancellationToken::new();
            let _abandon_when_dropped = abandoned.clone().drop_guard();
            // In the caller's span: the command's span nests beneath the request's.
            let task = tokio::spawn(inner.run(session, ticket, command, options, abandoned).in_current_span());
            task.await.map_err(|e| Error::internal(format!("command task failed: {e}")).with_source(e))?
        }
    }

    /// Runs `command` as the operator and streams its output; see
    /// [`SessionManager::execute_stream_as`].
    pub fn execute_stream(&self, session_id: &str, command: Command, timeout: Option<Duration>) -> ExecutionStream {
        self.execute_stream_as(None, session_id, command, timeout)
    }

    /// Runs `command` on a session `tenant` may see and streams its output:
    /// [`ExecEvent::Output`] chunks while it runs, then one [`ExecEvent::Finished`]. The
    /// command keeps running if the stream is dropped early.
    pub fn execute_stream_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        command: Command,
        timeout: Option<Duration>,
    ) -> ExecutionStream {
        let (sink, chunks) = OutputSink::channel();
        let run = self.execute_as(tenant, session_id, command, ExecOptions { timeout, output: Some(sink) });
        ExecutionStream::new(chunks, tokio::spawn(run))
    }

    /// Closes a session as the operator; see [`SessionManager::close_as`].
    pub async fn close(&self, session_id: &str) -> Result<()> {
        self.close_as(None, session_id).await
    }

    /// Closes a session `tenant` may see and removes its sandbox. Closing an unknown,
    /// already closed or invisible session is [`ErrorKind::SessionNotFound`](crate::ErrorKind::SessionNotFound).
    pub async fn close_as(&self, tenant: Option<&str>, session_id: &str) -> Result<()> {
        let session = self.inner.registry().remove_visible(tenant, session_id)?;
        self.inner.retire(&session, CloseReason::Client).await;
        Ok(())
    }

    /// A snapshot of one session, as the operator sees it.
    pub fn info(&self, session_id: &str) -> Result<SessionInfo> {
        self.info_as(None, session_id)
    }

    /// A snapshot of one session `tenant` may see.
    pub fn info_as(&self, tenant: Option<&str>, session_id: &str) -> Result<SessionInfo> {
        Ok(self.inner.session(tenant, session_id)?.info())
    }

    /// Snapshots of every open session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.list_as(None)
    }

    /// Snapshots of the sessions `tenant` may see (its own; every session for `None`),
    /// oldest first.
    pub fn list_as(&self, tenant: Option<&str>) -> Vec<SessionInfo> {
        let sessions = self.inner.registry().visible(tenant);
        let mut infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.session_id.cmp(&b.session_id)));
        infos
    }

    /// How many sessions are open.
    pub fn count(&self) -> usize {
        self.inner.registry().len()
    }

    /// Runs `code` once as the operator; see [`SessionManager::run_once_as`].
    pub async fn run_once(
        &self,
        config: impl Into<SessionConfig>,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutcome> {
        self.run_once_as(None, config, code, timeout).await
    }

    /// Runs `code` once in a fresh sandbox that is removed afterwards (`execution.run`),
    /// counted against `tenant`'s session cap while it runs. `config` is a language
    /// (every setting at its default) or a whole [`SessionConfig`], routed like a
    /// session. The result is shaped like `execute_shell`'s:
    /// `{exitCode, stdout, stderr, durationMs}`.
    pub async fn run_once_as(
        &self,
        tenant: Option<&str>,
        config: impl Into<SessionConfig>,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutcome> {
        let policy = &self.inner.config.policy;
        let timeout = timeout.unwrap_or_else(|| policy.default_command_timeout());
        let mut config = config.into();
        let backend = self.inner.backend_for(&mut config)?;
        let limits = policy.limits_for(&config)?;
        let reservation = self.inner.reserve(tenant)?;
        let context = self.inner.context(&config, Some(timeout), None)?;
        let grace = self.inner.config.policy.stop_grace();
        // A task of its own: the sandbox is removed even if the caller goes away.
        let task = async move {
            let _reservation = reservation;
            let started = Instant::now();
            let limit = context.timeout;
            let sandbox = backend.create_sandbox(&config, &limits).await?;
            let ran = guarded(sandbox.as_ref(), Command::code(code), context, grace).await;
            if let Err(error) = sandbox.close().await {
                tracing::warn!(sandbox = %sandbox.id(), %error, "one-shot sandbox could not be removed");
            }
            let result = match ran {
                Ok(CommandResult::ExecuteCode(code)) => Ok(CommandResult::ExecuteShell(code.into_shell_result())),
                Ok(other) => Err(Error::internal(format!("backend answered execute_code with {other:?}"))),
                Err(error) => Err(error),
            };
            Ok(CommandOutcome::from_run(result, elapsed_ms(started), limit))
        };
        // In the caller's span, so the manager's spans nest beneath the request's.
        let task = tokio::spawn(task.in_current_span());
        task.await.map_err(|e| Error::internal(format!("one-shot run failed: {e}")).with_source(e))?
    }

    /// Closes every session, then lets each backend remove what it still holds. New
    /// sessions are refused from the moment this is called.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let sessions = self.inner.registry().drain();
        tracing::info!(sessions = sessions.len(), "shutting down: closing every session");
        futures::future::join_all(sessions.iter().map(|s| self.inner.retire(s, CloseReason::Shutdown))).await;
        for backend in &self.inner.backends {
            if let Err(error) = backend.shutdown().await {
                tracing::warn!(backend = backend.name(), %error, "backend shutdown failed");
            }
        }
    }
}

impl Inner {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        registry::lock(&self.registry)
    }

    fn session(&self, tenant: Option<&str>, id: &str) -> Result<Arc<OpenSession>> {
        self.registry().get(tenant, id)
    }

    fn reserve(&self, tenant: Option<&str>) -> Result<Reservation> {
        let max_sessions = self.config.max_sessions;
        let caps = Caps { global: max_sessions, per_tenant: self.config.policy.sessions_per_tenant(max_sessions) };
        Reservation::take(&self.registry, caps, tenant)
    }

    /// Tells the observer, if there is one.
    fn observe(&self, event: impl FnOnce(&dyn SessionObserver)) {
        if let Some(observer) = &self.config.observer {
            event(observer.as_ref());
        }
    }

    /// Closes a session already removed from the registry and reports why. Only the
    /// caller that removed it gets here, so each session is reported closed once.
    /// Registers a new session over `sandbox` in the place `reservation` holds, and
    /// announces it; at shutdown the sandbox is closed instead.
    async fn admit(
        &self,
        reservation: Reservation,
        config: SessionConfig,
        backend: &Arc<dyn Backend>,
        sandbox: Box<dyn crate::backend::Sandbox>,
        span: tracing::Span,
        started: Instant,
    ) -> Result<SessionInfo> {
        let id = SessionId::random();
        let tenant = reservation.tenant().map(str::to_owned);
        let process_limits = self.config.policy.process_limits();
        let session = Arc::new(OpenSession::new(
            id.clone(),
            config,
            backend.as_ref(),
            sandbox,
            tenant,
            self.config.node.clone(),
            process_limits,
        ));
        {
            let mut registry = self.registry();
            if !self.shutdown.is_cancelled() {
                reservation.into_session(&mut registry, session.clone());
                drop(registry);
                let mut info = session.info();
                info.state = SessionState::Active;
                span.in_scope(|| tracing::info!(session = %id, sandbox = %info.container_id, elapsed_ms = started.elapsed().as_millis() as u64, "session created"));
                self.observe(|o| o.session_created(&info));
                return Ok(info);
            }
        }
        // Never announced as created, so not announced as closed either.
        session.close(CloseReason::Shutdown).await;
        let error = shutting_down();
        self.observe(|o| o.session_create_failed(backend.name(), &error));
        Err(error)
    }

    async fn retire(&self, session: &OpenSession, reason: CloseReason) {
        let info = session.info();
        session.close(reason).await;
        self.observe(|o| o.session_closed(&info, reason));
    }

    /// The backend that serves `config` (see [`Routes`]); records its name in
    /// `config.backend`. Options given for another backend are refused: they would be
    /// silently ignored.
    fn backend_for(&self, config: &mut SessionConfig) -> Result<Arc<dyn Backend>> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        let backend = self.config.routes.pick(&self.backends, config.language, config.backend.as_deref())?;
        if let Some(other) = config.backend_options.keys().find(|name| *name != backend.name()) {
            return Err(Error::invalid_input(format!(
                "backendOptions.{other} applies to the {other} backend, but this {} session runs on {}",
                config.language,
                backend.name()
            )));
        }
        config.backend = Some(backend.name().to_owned());
        Ok(backend)
    }
}

fn shutting_down() -> Error {
    Error::backend_unavailable("codebeaker", "the session manager is shutting down")
}
