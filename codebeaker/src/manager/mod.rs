//! [`SessionManager`]: routes languages to backends, owns the session registry, and
//! applies the limits every backend shares (max sessions, command timeouts, output caps,
//! idle and lifetime expiry) in one place.

mod expiry;
mod session;
mod stream;
mod turns;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::backend::{Backend, BackendHealth, ExecContext, OutputSink, Sandbox, DEFAULT_OUTPUT_LIMIT};
use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::language::Language;
use crate::observer::SessionObserver;
use crate::policy::Policy;
use crate::result::{CommandOutcome, CommandResult};
use crate::workspace::WorkspacePath;

use self::session::Session;
pub use self::session::{SessionInfo, SessionState};
pub use self::stream::{ExecEvent, ExecutionStream};
use self::turns::Ticket;

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
    /// Told of every session and command event (metrics, audit); `None` by default.
    pub observer: Option<Arc<dyn SessionObserver>>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            max_sessions: 100,
            sweep_interval: Duration::from_secs(1),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            policy: Policy::default(),
            observer: None,
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
            .field("observer", &self.observer.is_some())
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
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    backends: Vec<Arc<dyn Backend>>,
    config: ManagerConfig,
    registry: Mutex<Registry>,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct Registry {
    sessions: HashMap<String, Arc<Session>>,
    /// Sandboxes being created or running one-shot code: they count against the limit.
    reserved: usize,
}

/// A counted place under `max_sessions`, given back on drop unless a registered
/// session takes it over.
struct Reservation {
    inner: Arc<Inner>,
    held: bool,
}

impl Reservation {
    /// Hands the place to a session being registered under the same registry lock.
    fn into_session(mut self, registry: &mut Registry) {
        registry.reserved -= 1;
        self.held = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            self.inner.registry().reserved -= 1;
        }
    }
}

impl SessionManager {
    /// A manager over `backends` (the first that runs a language serves it). Must be
    /// called inside a Tokio runtime: it starts the expiry task.
    pub fn new(backends: Vec<Arc<dyn Backend>>, config: ManagerConfig) -> Self {
        let inner =
            Arc::new(Inner { backends, config, registry: Mutex::default(), shutdown: CancellationToken::new() });
        expiry::spawn(Arc::downgrade(&inner), inner.config.sweep_interval, inner.shutdown.clone());
        SessionManager { inner }
    }

    /// The manager's limits.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// The backends, in routing order.
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.inner.backends
    }

    /// Each backend's name and health.
    pub async fn health(&self) -> Vec<(&'static str, BackendHealth)> {
        let checks = self.inner.backends.iter().map(|b| async move { (b.name(), b.health().await) });
        futures::future::join_all(checks).await
    }

    /// Creates a session. The sandbox is created in a task of its own, so a caller that
    /// gives up half-way leaves a registered session (closed by its idle timeout), never
    /// an orphaned sandbox.
    pub async fn create(&self, config: SessionConfig) -> Result<SessionInfo> {
        let limits = self.inner.config.policy.limits_for(&config)?;
        let backend = self.inner.backend_for(config.language)?;
        let reservation = self.inner.reserve()?;
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let span = tracing::info_span!("session.create", language = %config.language, backend = backend.name());
            let started = Instant::now();
            let sandbox = backend.create_sandbox(&config, &limits).instrument(span.clone()).await?;
            let id = uuid::Uuid::new_v4().to_string();
            let session = Arc::new(Session::new(id.clone(), config, backend.as_ref(), sandbox, None));
            {
                let mut registry = inner.registry();
                if !inner.shutdown.is_cancelled() {
                    registry.sessions.insert(id.clone(), session.clone());
                    reservation.into_session(&mut registry);
                    let mut info = session.info();
                    info.state = SessionState::Active;
                    span.in_scope(|| tracing::info!(session = %id, sandbox = %info.container_id, elapsed_ms = started.elapsed().as_millis() as u64, "session created"));
                    return Ok(info);
                }
            }
            session.close("manager shut down during creation").await;
            Err(shutting_down())
        });
        task.await.map_err(|e| Error::Internal(format!("session creation task failed: {e}")))?
    }

    /// Runs `command` on a session. The command's place in the session's queue is taken
    /// when this method is called, not when the future is first polled.
    ///
    /// `Err` means the command did not run (unknown session, session closed while
    /// waiting); a command that ran and failed is `Ok` with `success: false`.
    pub fn execute(
        &self,
        session_id: &str,
        command: Command,
        options: ExecOptions,
    ) -> impl Future<Output = Result<CommandOutcome>> + Send + 'static {
        let queued = self.inner.session(session_id).map(|session| {
            let ticket = session.turns.ticket();
            (session, ticket)
        });
        let inner = self.inner.clone();
        async move {
            let (session, ticket) = queued?;
            inner.run(session, ticket, command, options).await
        }
    }

    /// Runs `command` and streams its output: [`ExecEvent::Output`] chunks while it runs,
    /// then one [`ExecEvent::Finished`]. The command keeps running if the stream is
    /// dropped early.
    pub fn execute_stream(&self, session_id: &str, command: Command, timeout: Option<Duration>) -> ExecutionStream {
        let (sink, chunks) = OutputSink::channel();
        let run = self.execute(session_id, command, ExecOptions { timeout, output: Some(sink) });
        ExecutionStream::new(chunks, tokio::spawn(run))
    }

    /// Closes a session and removes its sandbox. Closing an unknown or already closed
    /// session is [`Error::SessionNotFound`].
    pub async fn close(&self, session_id: &str) -> Result<()> {
        let session = self
            .inner
            .registry()
            .sessions
            .remove(session_id)
            .ok_or_else(|| Error::SessionNotFound(session_id.to_owned()))?;
        session.close("closed by request").await;
        Ok(())
    }

    /// A snapshot of one session.
    pub fn info(&self, session_id: &str) -> Result<SessionInfo> {
        Ok(self.inner.session(session_id)?.info())
    }

    /// Snapshots of every open session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> = self.inner.registry().sessions.values().cloned().collect();
        let mut infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.session_id.cmp(&b.session_id)));
        infos
    }

    /// How many sessions are open.
    pub fn count(&self) -> usize {
        self.inner.registry().sessions.len()
    }

    /// Runs `code` once in a fresh sandbox that is removed afterwards (`execution.run`).
    /// The result is shaped like `execute_shell`'s: `{exitCode, stdout, stderr, durationMs}`.
    pub async fn run_once(
        &self,
        language: Language,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutcome> {
        let config = SessionConfig::new(language);
        let limits = self.inner.config.policy.limits_for(&config)?;
        let backend = self.inner.backend_for(language)?;
        let reservation = self.inner.reserve()?;
        let context = self.inner.context(&config, timeout, None)?;
        let grace = self.inner.config.policy.stop_grace();
        // A task of its own: the sandbox is removed even if the caller goes away.
        let task = tokio::spawn(async move {
            let _reservation = reservation;
            let started = Instant::now();
            let sandbox = backend.create_sandbox(&config, &limits).await?;
            let ran = guarded(sandbox.as_ref(), Command::code(code), context, grace).await;
            if let Err(error) = sandbox.close().await {
                tracing::warn!(sandbox = %sandbox.id(), %error, "one-shot sandbox could not be removed");
            }
            let result = match ran {
                Ok(CommandResult::ExecuteCode(code)) => Ok(CommandResult::ExecuteShell(code.into_shell_result())),
                Ok(other) => Err(Error::Internal(format!("backend answered execute_code with {other:?}"))),
                Err(error) => Err(error),
            };
            Ok(CommandOutcome::from_result(result, elapsed_ms(started)))
        });
        task.await.map_err(|e| Error::Internal(format!("one-shot run failed: {e}")))?
    }

    /// Closes every session, then lets each backend remove what it still holds. New
    /// sessions are refused from the moment this is called.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let sessions: Vec<Arc<Session>> = self.inner.registry().sessions.drain().map(|(_, s)| s).collect();
        tracing::info!(sessions = sessions.len(), "shutting down: closing every session");
        futures::future::join_all(sessions.iter().map(|s| s.close("server shutdown"))).await;
        for backend in &self.inner.backends {
            if let Err(error) = backend.shutdown().await {
                tracing::warn!(backend = backend.name(), %error, "backend shutdown failed");
            }
        }
    }
}

impl Inner {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the map half-updated (single
        // insert/remove calls), so a poisoned lock is still usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, id: &str) -> Result<Arc<Session>> {
        self.registry().sessions.get(id).cloned().ok_or_else(|| Error::SessionNotFound(id.to_owned()))
    }

    fn backend_for(&self, language: Language) -> Result<Arc<dyn Backend>> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        self.backends.iter().find(|b| b.languages().contains(&language)).cloned().ok_or_else(|| {
            let enabled: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
            Error::BackendUnavailable {
                backend: language.to_string(),
                reason: format!("no enabled backend runs {language} (enabled: {})", enabled.join(", ")),
            }
        })
    }

    fn reserve(self: &Arc<Self>) -> Result<Reservation> {
        let mut registry = self.registry();
        let used = registry.sessions.len() + registry.reserved;
        if used >= self.config.max_sessions {
            return Err(Error::LimitReached(format!(
                "{used} sessions are open, the maximum is {}; close one first",
                self.config.max_sessions
            )));
        }
        registry.reserved += 1;
        Ok(Reservation { inner: self.clone(), held: true })
    }

    fn timeout_for(&self, config: &SessionConfig, requested: Option<Duration>) -> Result<Duration> {
        let timeout = requested.unwrap_or_else(|| config.default_timeout());
        let max = self.config.policy.max_command_timeout();
        if timeout.is_zero() || timeout > max {
            return Err(Error::InvalidInput(format!(
                "timeoutMs must be between 1 and {}, got {}",
                max.as_millis(),
                timeout.as_millis()
            )));
        }
        Ok(timeout)
    }

    async fn run(
        self: Arc<Self>,
        session: Arc<Session>,
        ticket: Ticket,
        command: Command,
        options: ExecOptions,
    ) -> Result<CommandOutcome> {
        let span = tracing::info_span!("command", session = %session.id, kind = command.kind());
        async move {
            tokio::select! {
                biased;
                _ = session.closing.cancelled() => return Err(Error::SessionClosed(session.id.clone())),
                _ = ticket.wait() => {}
            }
            if session.closing.is_cancelled() {
                return Err(Error::SessionClosed(session.id.clone()));
            }
            let started = Instant::now();
            session.begin();
            let result = self.dispatch(&session, command, options).await;
            session.end();
            drop(ticket);
            let outcome = match result {
                Err(Error::SessionClosed(id)) => return Err(Error::SessionClosed(id)),
                other => CommandOutcome::from_result(other, elapsed_ms(started)),
            };
            if let Some(Error::SandboxFailed(reason)) = &outcome.error {
                // A dead sandbox cannot serve the session again: close it now, and say why.
                tracing::warn!(%reason, "sandbox failed; closing its session");
                self.forget(&session.id);
                session.close("sandbox failed").await;
            }
            tracing::debug!(success = outcome.success, duration_ms = outcome.duration_ms, "command finished");
            Ok(outcome)
        }
        .instrument(span)
        .await
    }

    async fn dispatch(&self, session: &Session, command: Command, options: ExecOptions) -> Result<CommandResult> {
        for path in command.paths() {
            WorkspacePath::parse(path)?;
        }
        let context = self.context(&session.config, options.timeout, options.output)?;
        tokio::select! {
            _ = session.closing.cancelled() => Err(Error::SessionClosed(session.id.clone())),
            ran = guarded(session.sandbox.as_ref(), command, context, self.config.policy.stop_grace()) => ran,
        }
    }

    /// How a command runs: its checked timeout, the output limit, and where to stream.
    fn context(
        &self,
        config: &SessionConfig,
        timeout: Option<Duration>,
        output: Option<OutputSink>,
    ) -> Result<ExecContext> {
        Ok(ExecContext { timeout: self.timeout_for(config, timeout)?, output_limit: self.config.output_limit, output })
    }

    fn forget(&self, id: &str) -> Option<Arc<Session>> {
        self.registry().sessions.remove(id)
    }
}

/// Runs a command with the manager's backstop: a sandbox that has not stopped the command
/// `grace` after its own timeout is taken for broken.
async fn guarded(
    sandbox: &dyn Sandbox,
    command: Command,
    context: ExecContext,
    grace: Duration,
) -> Result<CommandResult> {
    let timeout = context.timeout;
    match tokio::time::timeout(timeout + grace, sandbox.execute(command, context)).await {
        Ok(result) => result,
        Err(_) => Err(Error::SandboxFailed(format!(
            "the sandbox did not stop the command within {} ms of its {} ms timeout",
            grace.as_millis(),
            timeout.as_millis()
        ))),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

fn shutting_down() -> Error {
    Error::BackendUnavailable { backend: "codebeaker".into(), reason: "the session manager is shutting down".into() }
}
