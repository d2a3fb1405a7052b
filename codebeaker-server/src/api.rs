//! [`Api`]: the typed operations every transport of the server calls (the JSON-RPC
//! methods over WebSocket, the MCP tools), so each behaviour (timeouts, tenants, caps,
//! health) lives in exactly one place over the [`SessionManager`].
//!
//! Every operation takes the [`Caller`] it acts for: its tenant scopes which sessions it
//! sees (another tenant's session is [`codebeaker::Error::SessionNotFound`], worded
//! exactly like an unknown id), its remote address is for logs and audit.
//!
//! Every operation is written to the audit log when there is one ([`Api::with_audit`]),
//! and [`Api::admit`] is the one rate check of every transport ([`Api::with_rate_limit`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use codebeaker::{
    BackendHealth, Command, CommandOutcome, ExecOptions, Language, OutputSink, SessionConfig, SessionInfo,
    SessionManager,
};
use serde::Serialize;

use crate::audit::{self, AuditEntry, AuditLog};
use crate::rate::{RateKey, RateLimited, RequestRateLimiter};

/// Who a request acts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The tenant whose token authenticated the request; `None` without `--api-keys`
    /// (a single-tenant server: the caller sees every session).
    pub tenant: Option<String>,
    /// The peer's address, when the transport has one.
    pub remote: Option<SocketAddr>,
}

/// Why an operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The SDK refused or failed the operation; its message is the one clients see.
    #[error(transparent)]
    Sdk(#[from] codebeaker::Error),
    /// The caller is over the request rate (`--rate-limit`).
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
}

impl ApiError {
    /// The audit log's `outcome` for this error.
    fn audit_outcome(&self) -> &'static str {
        match self {
            ApiError::Sdk(error) => audit::error_outcome(error),
            ApiError::RateLimited(_) => "rate_limited",
        }
    }
}

/// The typed operations of the server. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    manager: SessionManager,
    /// Per-command timeout of sessions and one-shot runs that do not set their own.
    command_timeout: Duration,
    /// `(name, reason)` of backends that did not start (see [`crate::Backends`]).
    backends_off: Arc<Vec<(String, String)>>,
    audit: Option<AuditLog>,
    rate: Option<Arc<RequestRateLimiter>>,
}

impl Api {
    /// The operations over `manager`; `command_timeout` is the server's default per-command
    /// timeout, `backends_off` the backends that did not start and why.
    pub fn new(manager: SessionManager, command_timeout: Duration, backends_off: Vec<(String, String)>) -> Self {
        Api { manager, command_timeout, backends_off: Arc::new(backends_off), audit: None, rate: None }
    }

    /// Writes every operation to `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Limits each caller's request rate with `rate` (see [`Api::admit`]).
    pub fn with_rate_limit(mut self, rate: Arc<RequestRateLimiter>) -> Self {
        self.rate = Some(rate);
        self
    }

    /// The rate limiter, when requests are limited (the MCP endpoint shares it).
    pub fn rate_limiter(&self) -> Option<Arc<RequestRateLimiter>> {
        self.rate.clone()
    }

    /// Counts one request of `caller` against its rate: per tenant, or per connection
    /// (`connection` names it) without tenants. A refusal is audited as `method`.
    pub fn admit(&self, caller: &Caller, connection: &str, method: &str) -> Result<(), ApiError> {
        let Some(rate) = &self.rate else { return Ok(()) };
        let key = match &caller.tenant {
            Some(tenant) => RateKey::Tenant(tenant.clone()),
            None => RateKey::Connection(connection.to_owned()),
        };
        rate.check(&key).map_err(|limited| {
            let error = ApiError::from(limited);
            if let Some(entry) = self.audit(caller, audit::method_name(method), None, None) {
                entry.finish(None, error.audit_outcome());
            }
            error
        })
    }

    /// Starts the audit record of one operation, when there is an audit log.
    fn audit(
        &self,
        caller: &Caller,
        method: &'static str,
        session: Option<&str>,
        command: Option<&Command>,
    ) -> Option<AuditEntry> {
        self.audit.as_ref().map(|log| log.begin(caller.tenant.clone(), caller.remote, method, session, command))
    }

    /// The session manager behind the operations.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The server's default per-command timeout.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// A session configuration for `language` with the server's defaults (its default
    /// command timeout rather than the SDK's).
    pub fn default_config(&self, language: Language) -> SessionConfig {
        let mut config = SessionConfig::new(language);
        config.default_timeout_ms = millis(self.command_timeout);
        config
    }

    /// Creates a session owned by the caller's tenant. Requests over the operator's caps
    /// are [`codebeaker::Error::InvalidInput`] naming the cap and its value.
    pub async fn create(&self, caller: &Caller, config: SessionConfig) -> Result<SessionInfo, ApiError> {
        let entry = self.audit(caller, "session.create", None, None);
        let created = self.create_unaudited(caller, config).await;
        if let Some(entry) = entry {
            match &created {
                Ok(info) => entry.finish(Some(info.session_id.clone()), "ok"),
                Err(error) => entry.finish(None, error.audit_outcome()),
            }
        }
        created
    }

    async fn create_unaudited(&self, caller: &Caller, config: SessionConfig) -> Result<SessionInfo, ApiError> {
        self.check_timeout("defaultTimeoutMs", config.default_timeout_ms)?;
        Ok(self.manager.create_as(caller.tenant.as_deref(), config).await?)
    }

    /// Runs `command` in one of the caller's sessions. The command's place in the session's
    /// queue is taken now (commands sent back to back run in that order); the future
    /// waits for the outcome. `output` receives chunks while the command runs.
    pub fn execute(
        &self,
        caller: &Caller,
        session_id: &str,
        command: Command,
        timeout: Option<Duration>,
        output: Option<OutputSink>,
    ) -> impl Future<Output = Result<CommandOutcome, ApiError>> + Send + 'static {
        let checked = match timeout {
            Some(timeout) => self.check_timeout("timeoutMs", millis(timeout)).map(|_| ()),
            None => Ok(()),
        };
        let entry = self.audit(caller, "session.execute", Some(session_id), Some(&command));
        let tenant = caller.tenant.as_deref();
        let run =
            checked.map(|()| self.manager.execute_as(tenant, session_id, command, ExecOptions { timeout, output }));
        async move {
            let outcome = match run {
                Ok(run) => run.await.map_err(ApiError::from),
                Err(error) => Err(ApiError::from(error)),
            };
            if let Some(entry) = entry {
                entry.finish_command(outcome.as_ref().map_err(ApiError::audit_outcome));
            }
            outcome
        }
    }

    /// The caller's open sessions, oldest first.
    pub fn list(&self, caller: &Caller) -> Vec<SessionInfo> {
        let entry = self.audit(caller, "session.list", None, None);
        let sessions = self.manager.list_as(caller.tenant.as_deref());
        if let Some(entry) = entry {
            entry.finish(None, "ok");
        }
        sessions
    }

    /// Closes one of the caller's sessions.
    pub async fn close(&self, caller: &Caller, session_id: &str) -> Result<(), ApiError> {
        let entry = self.audit(caller, "session.close", Some(session_id), None);
        let closed = self.manager.close_as(caller.tenant.as_deref(), session_id).await.map_err(ApiError::from);
        if let Some(entry) = entry {
            entry.finish(None, closed.as_ref().map_or_else(ApiError::audit_outcome, |()| "ok"));
        }
        closed
    }

    /// Runs `code` once in a fresh sandbox (`execution.run`), with the server's default
    /// timeout unless `timeout` is given.
    pub async fn run(
        &self,
        caller: &Caller,
        language: Language,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutcome, ApiError> {
        let command = self.audit.is_some().then(|| Command::code(code.as_str()));
        let entry = self.audit(caller, "execution.run", None, command.as_ref());
        let outcome = self.run_unaudited(caller, language, code, timeout).await;
        if let Some(entry) = entry {
            entry.finish_command(outcome.as_ref().map_err(ApiError::audit_outcome));
        }
        outcome
    }

    async fn run_unaudited(
        &self,
        caller: &Caller,
        language: Language,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutcome, ApiError> {
        let timeout = timeout.unwrap_or(self.command_timeout);
        self.check_timeout("timeoutMs", millis(timeout))?;
        Ok(self.manager.run_once_as(caller.tenant.as_deref(), language, code, Some(timeout)).await?)
    }

    /// The state of the server and of each backend (see [`Health`]).
    pub async fn health(&self) -> Health {
        let mut backends: BTreeMap<String, String> = BTreeMap::new();
        let mut usable = 0usize;
        let mut down = 0usize;
        for (name, reason) in self.backends_off.iter() {
            // A backend the operator did not select is not missing; one that failed to
            // start is.
            if reason != crate::backends::NOT_SELECTED {
                down += 1;
            }
            backends.insert(name.clone(), format!("unavailable: {reason}"));
        }
        for (name, state) in self.manager.health().await {
            match state {
                BackendHealth::Ok => usable += 1,
                BackendHealth::Unavailable(_) => down += 1,
            }
            backends.insert(name.to_owned(), state.describe());
        }
        let status = match (usable, down) {
            (0, _) => HealthStatus::Down,
            (_, 0) => HealthStatus::Ok,
            _ => HealthStatus::Degraded,
        };
        Health { status, sessions: self.manager.count(), backends }
    }

    /// A timeout in milliseconds must be positive and within the operator's maximum.
    fn check_timeout(&self, field: &str, ms: u64) -> Result<u64, codebeaker::Error> {
        let max = self.manager.config().policy.max_command_timeout_ms;
        if ms == 0 || ms > max {
            return Err(codebeaker::Error::InvalidInput(format!(
                "{field} must be between 1 and {max} (the operator's max-command-timeout-ms), got {ms}"
            )));
        }
        Ok(ms)
    }
}

/// Whether the server can serve: the body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `ok`, `degraded` or `down`.
    pub status: HealthStatus,
    /// Open sessions.
    pub sessions: usize,
    /// Each backend's state: `ok` or `unavailable: <reason>`.
    pub backends: BTreeMap<String, String>,
}

/// The overall state in [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every backend that should run is usable.
    Ok,
    /// Some backends are usable, others (enabled, or failed at start) are not.
    Degraded,
    /// No backend is usable (HTTP 503).
    Down,
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}
