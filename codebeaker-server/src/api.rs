//! [`Api`]: the typed operations every transport of the server calls (the JSON-RPC
//! methods over WebSocket, the MCP tools), so each behaviour (timeouts, tenants, caps,
//! health) lives in exactly one place over the [`SessionManager`].
//!
//! Every operation takes the [`Caller`] it acts for: its tenant scopes which sessions it
//! sees (another tenant's session is [`codebeaker::ErrorKind::SessionNotFound`], worded
//! exactly like an unknown id), its remote address is for logs and audit.
//!
//! Every operation is written to the audit log when there is one ([`Api::with_audit`]),
//! and [`Api::admit`] is the one rate check of every transport ([`Api::with_rate_limit`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use codebeaker::manager::Forked;
use codebeaker::snapshot::SnapshotInfo;
use codebeaker::{
    BackendHealth, Command, CommandOutcome, ExecOptions, OutputSink, ProcessAttachment, ProcessExit, ProcessInfo,
    ProcessSignal, ProcessSpec, PtySize, SessionConfig, SessionInfo, SessionManager,
};
use serde::Serialize;

use crate::audit::{self, AuditEntry, AuditLog};
use crate::backends::BackendState;
use crate::cluster::{Cluster, ClusterHealth};
use crate::rate::{RateKey, RateLimited, RequestRateLimiter};

/// Who a request acts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The tenant whose token authenticated the request; `None` without `--api-keys`
    /// (a single-tenant server: the caller sees every session).
    pub tenant: Option<String>,
    /// The peer's address, when the transport has one.
    pub remote: Option<SocketAddr>,
    /// Whether the request presented a valid token: `false` on a server without auth,
    /// where every client is the operator and only its address tells clients apart.
    pub authenticated: bool,
    /// Whether another node of the cluster forwarded the request here (over a link): it
    /// is served by this node and never forwarded again.
    pub forwarded: bool,
}

/// What [`Api::control_process`] does to a process.
#[derive(Debug, Clone)]
pub enum ProcessAction {
    /// Write to its stdin.
    Write(Vec<u8>),
    /// Close its stdin.
    CloseStdin,
    /// Resize its terminal.
    Resize(PtySize),
    /// Signal its process group.
    Signal(ProcessSignal),
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
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
    /// `(name, reason)` of backends that did not start (see [`crate::Backends`]).
    backends_off: Arc<Vec<(String, String)>>,
    audit: Option<AuditLog>,
    rate: Option<Arc<RequestRateLimiter>>,
    cluster: Option<Cluster>,
}

impl Api {
    /// The operations over `manager` (whose policy holds every timeout: the default one,
    /// the range, the graces); `backends_off` the backends that did not start and why.
    pub fn new(manager: SessionManager, backends_off: Vec<(String, String)>) -> Self {
        Api { manager, backends_off: Arc::new(backends_off), audit: None, rate: None, cluster: None }
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

    /// Makes this server a node of `cluster`: its sessions are recorded there, and each
    /// tenant's cap holds across the cluster.
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster this server is a node of, if any.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// The rate limiter, when requests are limited (the MCP endpoint shares it).
    pub fn rate_limiter(&self) -> Option<Arc<RequestRateLimiter>> {
        self.rate.clone()
    }

    /// Counts one request of `caller` against its rate ([`RateKey::of`]: its tenant, the
    /// `--token` holder, or its address without auth). A refusal is audited as `method`.
    pub fn admit(&self, caller: &Caller, method: &str) -> Result<(), ApiError> {
        let Some(rate) = &self.rate else { return Ok(()) };
        self.refused(caller, method, rate.check(&RateKey::of(caller)))
    }

    /// [`Api::admit`] against the cluster-wide rate on a cluster node (see
    /// [`RequestRateLimiter::check_everywhere`]).
    pub async fn admit_everywhere(&self, caller: &Caller, method: &str) -> Result<(), ApiError> {
        let Some(rate) = &self.rate else { return Ok(()) };
        self.refused(caller, method, rate.check_everywhere(&RateKey::of(caller)).await)
    }

    /// A rate check's outcome, a refusal audited as `method`.
    fn refused(&self, caller: &Caller, method: &str, checked: Result<(), RateLimited>) -> Result<(), ApiError> {
        checked.map_err(|limited| {
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

    /// Creates a session owned by the caller's tenant. Requests over the operator's caps
    /// are [`codebeaker::ErrorKind::InvalidInput`] naming the cap and its value.
    pub async fn create(&self, caller: &Caller, config: SessionConfig) -> Result<SessionInfo, ApiError> {
        let entry = self.audit(caller, "session.create", None, None);
        let created = self.create_unaudited(caller, config).await;
        if let Some(entry) = entry {
            match &created {
                Ok(info) => entry.finish(Some(info.session_id.to_string()), "ok"),
                Err(error) => entry.finish(None, error.audit_outcome()),
            }
        }
        created
    }

    async fn create_unaudited(&self, caller: &Caller, config: SessionConfig) -> Result<SessionInfo, ApiError> {
        let tenant = caller.tenant.as_deref();
        self.recorded(tenant, |info: &SessionInfo| info.session_id.as_str(), self.manager.create_as(tenant, config))
            .await
    }

    /// Runs `create` (which makes a session, `id` of its result) as a session of a
    /// cluster node: the tenant's place across the cluster is reserved first and the
    /// session recorded before the caller hears of it.
    async fn recorded<T>(
        &self,
        tenant: Option<&str>,
        id: impl FnOnce(&T) -> &str,
        create: impl Future<Output = codebeaker::Result<T>>,
    ) -> Result<T, ApiError> {
        let Some(cluster) = &self.cluster else { return Ok(create.await?) };
        let reservation = cluster.reserve(tenant).await?;
        let created = create.await?;
        reservation.settle(Some(id(&created))).await;
        Ok(created)
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
        if let Some(cluster) = self.cluster_for(caller, session_id) {
            // Held by another node (or nowhere): it runs the command (and audits it).
            let (caller, session_id) = (caller.clone(), session_id.to_owned());
            let params = serde_json::json!({
                "sessionId": session_id,
                "command": command,
                "timeoutMs": timeout.map(|t| t.as_millis() as u64),
                "errorKinds": true,
            });
            return futures::future::Either::Left(async move {
                remote(&cluster, &caller, &session_id, "session.execute", params).await
            });
        }
        let entry = self.audit(caller, "session.execute", Some(session_id), Some(&command));
        let tenant = caller.tenant.as_deref();
        // The manager checks the timeout (the one check every entry point shares).
        let run = self.manager.execute_as(tenant, session_id, command, ExecOptions { timeout, output });
        futures::future::Either::Right(async move {
            let outcome = run.await.map_err(ApiError::from);
            if let Some(entry) = entry {
                entry.finish_command(outcome.as_ref().map_err(ApiError::audit_outcome));
            }
            outcome
        })
    }

    /// On a cluster node, the cluster when `session_id` is not one of this node's
    /// sessions: the typed operations then ask the node holding it (unless another node
    /// sent the request here: one hop at most).
    pub(crate) fn cluster_for(&self, caller: &Caller, session_id: &str) -> Option<Cluster> {
        let elsewhere = !caller.forwarded && self.manager.info(session_id).is_err();
        self.cluster.as_ref().filter(|_| elsewhere).cloned()
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
        if let Some(cluster) = self.cluster_for(caller, session_id) {
            let params = serde_json::json!({"sessionId": session_id});
            return remote::<serde::de::IgnoredAny>(&cluster, caller, session_id, "session.close", params)
                .await
                .map(drop);
        }
        let entry = self.audit(caller, "session.close", Some(session_id), None);
        let closed = self.manager.close_as(caller.tenant.as_deref(), session_id).await.map_err(ApiError::from);
        if let (Ok(()), Some(cluster)) = (&closed, &self.cluster) {
            cluster.forget(session_id);
        }
        if let Some(entry) = entry {
            entry.finish(None, closed.as_ref().map_or_else(ApiError::audit_outcome, |()| "ok"));
        }
        closed
    }

    /// Starts a streamed download of a file of one of the caller's sessions, from
    /// `offset` (`GET /v1/sessions/{sessionId}/files/{path}`); audited as `files.get`.
    pub async fn download(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &str,
        offset: u64,
    ) -> Result<codebeaker::Download, ApiError> {
        let opened = self.manager.download_as(caller.tenant.as_deref(), session_id, path, offset);
        self.audited(caller, "files.get", session_id, opened).await
    }

    /// Streams `body` into a file of one of the caller's sessions, replacing it or
    /// appending (`PUT /v1/sessions/{sessionId}/files/{path}`); audited as `files.put`.
    pub async fn upload(
        &self,
        caller: &Caller,
        session_id: &str,
        path: &str,
        append: bool,
        body: codebeaker::workspace::UploadBody,
    ) -> Result<u64, ApiError> {
        let written = self.manager.upload_as(caller.tenant.as_deref(), session_id, path, append, body);
        self.audited(caller, "files.put", session_id, written).await
    }

    /// Starts a background process in one of the caller's sessions (`process.start`).
    pub async fn start_process(
        &self,
        caller: &Caller,
        session_id: &str,
        spec: ProcessSpec,
    ) -> Result<ProcessInfo, ApiError> {
        let started = self.manager.start_process_as(caller.tenant.as_deref(), session_id, spec);
        self.audited(caller, "process.start", session_id, started).await
    }

    /// The background processes of one of the caller's sessions (`process.list`).
    pub fn list_processes(&self, caller: &Caller, session_id: &str) -> Result<Vec<ProcessInfo>, ApiError> {
        Ok(self.manager.list_processes_as(caller.tenant.as_deref(), session_id)?)
    }

    /// A reader of a process's output from `from_offset` (`process.attach`).
    pub async fn attach_process(
        &self,
        caller: &Caller,
        session_id: &str,
        pid: u32,
        from_offset: u64,
    ) -> Result<ProcessAttachment, ApiError> {
        let attached = self.manager.attach_process_as(caller.tenant.as_deref(), session_id, pid, from_offset);
        self.audited(caller, "process.attach", session_id, std::future::ready(attached)).await
    }

    /// Does `action` to a running process (`process.write`, `process.closeStdin`,
    /// `process.resize`, `process.signal`), audited as `method`.
    pub async fn control_process(
        &self,
        caller: &Caller,
        method: &'static str,
        session_id: &str,
        pid: u32,
        action: ProcessAction,
    ) -> Result<(), ApiError> {
        let (manager, tenant) = (&self.manager, caller.tenant.as_deref());
        let done = async move {
            match action {
                ProcessAction::Write(data) => manager.write_process_as(tenant, session_id, pid, data).await,
                ProcessAction::CloseStdin => manager.close_process_stdin_as(tenant, session_id, pid).await,
                ProcessAction::Resize(size) => manager.resize_process_as(tenant, session_id, pid, size).await,
                ProcessAction::Signal(signal) => manager.signal_process_as(tenant, session_id, pid, signal).await,
            }
        };
        self.audited(caller, method, session_id, done).await
    }

    /// Waits at most `timeout` for a process to end (`process.wait`).
    pub async fn wait_process(
        &self,
        caller: &Caller,
        session_id: &str,
        pid: u32,
        timeout: Duration,
    ) -> Result<ProcessExit, ApiError> {
        Ok(self.manager.wait_process_as(caller.tenant.as_deref(), session_id, pid, timeout).await?)
    }

    /// Pauses (`pause`) or resumes one of the caller's sessions (`session.pause`,
    /// `session.resume`).
    pub async fn set_paused(&self, caller: &Caller, session_id: &str, pause: bool) -> Result<SessionInfo, ApiError> {
        let tenant = caller.tenant.as_deref();
        if pause {
            self.audited(caller, "session.pause", session_id, self.manager.pause_as(tenant, session_id)).await
        } else {
            self.audited(caller, "session.resume", session_id, self.manager.resume_as(tenant, session_id)).await
        }
    }

    /// Snapshots one of the caller's sessions (`session.snapshot`).
    pub async fn snapshot(&self, caller: &Caller, session_id: &str) -> Result<SnapshotInfo, ApiError> {
        if let Some(cluster) = self.cluster_for(caller, session_id) {
            let params = serde_json::json!({"sessionId": session_id});
            return remote(&cluster, caller, session_id, "session.snapshot", params).await;
        }
        let taken = async {
            let snapshot = self.manager.snapshot_as(caller.tenant.as_deref(), session_id).await?;
            if let Some(cluster) = &self.cluster {
                // The snapshot is taken: a record Redis cannot take now only hides it from
                // other nodes (this node still lists and restores it).
                if let Err(error) = cluster.record_snapshot(&snapshot.snapshot_id).await {
                    tracing::warn!(%error, snapshot = %snapshot.snapshot_id, "the cluster cannot be told of a snapshot");
                }
            }
            Ok(snapshot)
        };
        self.audited(caller, "session.snapshot", session_id, taken).await
    }

    /// The caller's snapshots (`snapshot.list`).
    pub fn snapshots(&self, caller: &Caller) -> Vec<SnapshotInfo> {
        self.manager.snapshots_as(caller.tenant.as_deref())
    }

    /// Deletes one of the caller's snapshots (`snapshot.delete`).
    pub async fn delete_snapshot(&self, caller: &Caller, snapshot_id: &str) -> Result<(), ApiError> {
        let deleted = async {
            self.manager.delete_snapshot_as(caller.tenant.as_deref(), snapshot_id)?;
            if let Some(cluster) = &self.cluster {
                if let Err(error) = cluster.forget_snapshot(snapshot_id).await {
                    tracing::warn!(%error, snapshot = %snapshot_id, "the cluster cannot be told a snapshot is gone");
                }
            }
            Ok(())
        };
        self.audited(caller, "snapshot.delete", snapshot_id, deleted).await
    }

    /// Forks one of the caller's sessions (`session.fork`).
    pub async fn fork(&self, caller: &Caller, session_id: &str) -> Result<Forked, ApiError> {
        let tenant = caller.tenant.as_deref();
        let forked = self.recorded(
            tenant,
            |forked: &Forked| forked.info.session_id.as_str(),
            self.manager.fork_as(tenant, session_id),
        );
        let entry = self.audit(caller, "session.fork", Some(session_id), None);
        let outcome = forked.await;
        if let Some(entry) = entry {
            entry.finish(None, outcome.as_ref().map_or_else(ApiError::audit_outcome, |_| "ok"));
        }
        outcome
    }

    /// Runs an operation on `session_id` as audit line `method`.
    async fn audited<T>(
        &self,
        caller: &Caller,
        method: &'static str,
        session_id: &str,
        transfer: impl std::future::Future<Output = codebeaker::Result<T>>,
    ) -> Result<T, ApiError> {
        let entry = self.audit(caller, method, Some(session_id), None);
        let outcome = transfer.await.map_err(ApiError::from);
        if let Some(entry) = entry {
            entry.finish(None, outcome.as_ref().map_or_else(ApiError::audit_outcome, |_| "ok"));
        }
        outcome
    }

    /// Runs `code` once in a fresh sandbox (`execution.run`) for `config` (a language,
    /// or settings with a `backend`), with the operator's default timeout unless
    /// `timeout` is given.
    pub async fn run(
        &self,
        caller: &Caller,
        config: impl Into<SessionConfig>,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutcome, ApiError> {
        let command = self.audit.is_some().then(|| Command::code(code.as_str()));
        let entry = self.audit(caller, "execution.run", None, command.as_ref());
        let outcome = self.run_unaudited(caller, config.into(), code, timeout).await;
        if let Some(entry) = entry {
            entry.finish_command(outcome.as_ref().map_err(ApiError::audit_outcome));
        }
        outcome
    }

    async fn run_unaudited(
        &self,
        caller: &Caller,
        config: SessionConfig,
        code: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutcome, ApiError> {
        Ok(self.manager.run_once_as(caller.tenant.as_deref(), config, code, timeout).await?)
    }

    /// The state of the server and of each backend (see [`Health`]).
    pub async fn health(&self) -> Health {
        let mut backends: BTreeMap<String, String> = BTreeMap::new();
        let mut details: BTreeMap<String, BackendState> = BTreeMap::new();
        let mut usable = 0usize;
        let mut down = 0usize;
        for (name, reason) in self.backends_off.iter() {
            // A backend the operator did not select is not missing; one that failed to
            // start is.
            if reason != crate::backends::NOT_SELECTED {
                down += 1;
            }
            backends.insert(name.clone(), format!("unavailable: {reason}"));
            details.insert(name.clone(), BackendState::disabled(reason));
        }
        for (name, state) in self.manager.health().await {
            match state {
                BackendHealth::Ok => usable += 1,
                BackendHealth::Unavailable(_) => down += 1,
            }
            backends.insert(name.to_owned(), state.describe());
            details.insert(name.to_owned(), BackendState::of(&state));
        }
        let status = match (usable, down) {
            (0, _) => HealthStatus::Down,
            (_, 0) => HealthStatus::Ok,
            _ => HealthStatus::Degraded,
        };
        let cluster = self.cluster.as_ref().map(Cluster::health);
        Health { status, sessions: self.manager.count(), backends, details, cluster }
    }
}

/// Sends `method` about `session_id` to the node holding it and reads its result as a
/// `T`: `-32001` when no node holds it, `-32003` naming the node when it is lost or
/// unreachable.
async fn remote<T: serde::de::DeserializeOwned>(
    cluster: &Cluster,
    caller: &Caller,
    session_id: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<T, ApiError> {
    let url = cluster.holder(session_id, caller.tenant.as_deref()).await?;
    let answer = cluster.call(&url, caller, method, params).await?;
    serde_json::from_value(answer).map_err(|error| {
        codebeaker::Error::internal(format!("node {url} answered {method} with an unreadable result: {error}")).into()
    })
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
    /// Each backend's state with the reason and the command that fixes it, apart.
    pub details: BTreeMap<String, BackendState>,
    /// On a cluster node: this node, its Redis, and the nodes as it sees them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
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
