//! Prometheus metrics of one server, rendered at `GET /metrics` in the OpenMetrics text
//! format (`prometheus-client`).
//!
//! Session and command metrics come from the session manager through
//! [`SessionObserver`], so they count what happened whichever transport asked for it
//! (JSON-RPC, MCP, an embedding program). Transport metrics (connections, refusals) are
//! counted by the server at the one place each happens. The endpoint may require its
//! own bearer token (`--metrics-token`), so scrapers need no tenant key.
//!
//! Every label value is bounded: backends, languages, command types, outcomes, close
//! reasons and refusal reasons are fixed sets, so no client can grow the registry.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use codebeaker::{CloseReason, CommandOutcome, Error, ErrorKind, SessionInfo, SessionManager, SessionObserver};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The path of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `{backend, language}` of a session.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    backend: String,
    language: String,
}

/// `{backend, language, reason}` of a closed session.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    backend: String,
    language: String,
    reason: String,
}

/// `{backend}` of a failed creation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

/// `{command, backend, outcome}` of a finished command.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
    backend: String,
    outcome: String,
}

/// `{command, backend}` of a command's duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    command: String,
    backend: String,
}

/// `{transport}` of a client connection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: String,
}

/// `{reason}` of a refused request.
/// A cluster node (its URL).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: String,
}

/// Why the server refused a request before it reached the session manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No valid token.
    Auth,
    /// A browser `Origin` that is not allowed.
    Origin,
    /// A server limit (connections, message size, batch, in-flight requests, bytes).
    Limit,
    /// The caller's request rate is over `--rate-limit`.
    Rate,
    /// A `Host` a loopback server does not answer (DNS rebinding).
    Host,
}

impl RefusalKind {
    /// The label value (`auth`, `origin`, `limit`, `rate`, `host`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Auth => "auth",
            RefusalKind::Origin => "origin",
            RefusalKind::Limit => "limit",
            RefusalKind::Rate => "rate",
            RefusalKind::Host => "host",
        }
    }

    /// Every reason, in label order.
    const ALL: [RefusalKind; 5] =
        [RefusalKind::Auth, RefusalKind::Origin, RefusalKind::Limit, RefusalKind::Rate, RefusalKind::Host];
}

/// A transport clients connect over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The JSON-RPC WebSocket at `/ws/jsonrpc`.
    WebSocket,
    /// An MCP session (streamable HTTP at `/mcp`, or stdio).
    Mcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Mcp => "mcp",
        }
    }
}

/// The server's metrics. Cheap to share (`Arc<Metrics>`); every method is lock-free or
/// takes only the metric family's short lock.
pub struct Metrics {
    registry: Registry,
    sessions_open: Family<SessionLabels, Gauge>,
    sessions_created: Family<SessionLabels, Counter>,
    session_create_failures: Family<BackendLabels, Counter>,
    sessions_closed: Family<ClosedLabels, Counter>,
    commands: Family<CommandLabels, Counter>,
    command_duration: Family<DurationLabels, Histogram>,
    warm_pool: Family<SessionLabels, Gauge>,
    connections: Family<TransportLabels, Gauge>,
    refused: Family<RefusedLabels, Counter>,
    egress_refused: Family<BackendLabels, Counter>,
    audit_dropped: Counter,
    audit_write_errors: Counter,
    cluster_redis_up: Gauge,
    cluster_node_up: Family<NodeLabels, Gauge>,
    cluster_node_sessions: Family<NodeLabels, Gauge>,
    cluster_forwarded: Family<NodeLabels, Counter>,
    cluster_forward_duration: Family<NodeLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of the server, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("codebeaker");
        registry.register(
            "trace_spans_dropped",
            "Finished spans dropped because the trace export queue was full (with --otlp-endpoint)",
            crate::telemetry::DROPPED_SPANS.clone(),
        );
        let sessions_open = Family::default();
        registry.register("sessions_open", "Sessions open now, by backend and language", Family::clone(&sessions_open));
        let sessions_created = Family::default();
        registry.register(
            "sessions_created",
            "Sessions created, by backend and language",
            Family::clone(&sessions_created),
        );
        let session_create_failures = Family::default();
        registry.register(
            "session_create_failures",
            "Session creations that failed in the backend, by backend",
            Family::clone(&session_create_failures),
        );
        let sessions_closed = Family::default();
        registry.register(
            "sessions_closed",
            "Sessions closed, by backend, language and reason (client, idle, lifetime, failed, shutdown)",
            Family::clone(&sessions_closed),
        );
        let commands = Family::default();
        registry.register(
            "commands",
            "Commands that ran, by command type, backend and outcome (ok, error, timeout)",
            Family::clone(&commands),
        );
        // 1 ms to ~65 s: from a Deno hello to a long compile.
        let command_duration = Family::<DurationLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 17))) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "command_duration",
            "Wall-clock time of commands, by command type and backend",
            prometheus_client::registry::Unit::Seconds,
            command_duration.clone(),
        );
        let warm_pool = Family::default();
        registry.register(
            "warm_pool_size",
            "Ready sandboxes waiting in a backend's warm pool, by backend and language",
            Family::clone(&warm_pool),
        );
        let connections = Family::default();
        registry.register(
            "connections",
            "Client connections open now, by transport (websocket, mcp)",
            Family::clone(&connections),
        );
        let refused = Family::default();
        registry.register(
            "requests_refused",
            "Requests refused before reaching a session, by reason (auth, origin, limit, rate, host)",
            Family::clone(&refused),
        );
        let egress_refused = Family::default();
        registry.register(
            "egress_refused",
            "Network destinations of sandboxed programs the egress policy refused, by backend",
            Family::clone(&egress_refused),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_records_dropped",
            "Audit records dropped because the audit writer's queue was full",
            audit_dropped.clone(),
        );
        let audit_write_errors = Counter::default();
        registry.register(
            "audit_write_errors",
            "Audit records lost because the audit log could not be opened or written (full disk, read-only directory)",
            audit_write_errors.clone(),
        );
        let cluster_redis_up = Gauge::default();
        registry.register(
            "cluster_redis_up",
            "Whether this cluster node reached the cluster's Redis at its last look (1) or not (0); 0 outside a cluster",
            cluster_redis_up.clone(),
        );
        let cluster_node_up = Family::default();
        registry.register(
            "cluster_node_up",
            "Cluster nodes as this node sees them: 1 live, 0 lost, by node URL",
            Family::clone(&cluster_node_up),
        );
        let cluster_node_sessions = Family::default();
        registry.register(
            "cluster_node_sessions",
            "Sessions each cluster node holds as of its last heartbeat, by node URL",
            Family::clone(&cluster_node_sessions),
        );
        let cluster_forwarded = Family::default();
        registry.register(
            "cluster_forwarded_requests",
            "Requests this node forwarded to the cluster node holding their session, by node URL",
            Family::clone(&cluster_forwarded),
        );
        // 100 µs to ~6.5 s: a loopback hop to a long command.
        let cluster_forward_duration = Family::<NodeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0001, 2.0, 17))) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "cluster_forward_duration",
            "Time from forwarding a request to its answer from the node holding the session, by node URL",
            prometheus_client::registry::Unit::Seconds,
            cluster_forward_duration.clone(),
        );
        let metrics = Metrics {
            registry,
            sessions_open,
            sessions_created,
            session_create_failures,
            sessions_closed,
            commands,
            command_duration,
            warm_pool,
            connections,
            refused,
            egress_refused,
            audit_dropped,
            audit_write_errors,
            cluster_redis_up,
            cluster_node_up,
            cluster_node_sessions,
            cluster_forwarded,
            cluster_forward_duration,
        };
        // Every refusal reason shows from the start, so a scraper sees zeros, not gaps.
        for reason in RefusalKind::ALL {
            let _ = metrics.refused.get_or_create(&RefusedLabels { reason: reason.as_str().into() });
        }
        for transport in [Transport::WebSocket, Transport::Mcp] {
            let _ = metrics.connections.get_or_create(&TransportLabels { transport: transport.as_str().into() });
        }
        metrics
    }

    /// The registry in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a request refused for `reason`.
    pub fn refused(&self, reason: RefusalKind) {
        self.refused.get_or_create(&RefusedLabels { reason: reason.as_str().into() }).inc();
    }

    /// Counts a client connection open until the guard is dropped.
    pub fn connection(self: &Arc<Self>, transport: Transport) -> ConnectionGuard {
        self.connections.get_or_create(&TransportLabels { transport: transport.as_str().into() }).inc();
        ConnectionGuard { metrics: self.clone(), transport }
    }

    /// Sets the number of ready sandboxes in a backend's warm pool for a language.
    pub fn set_warm_pool(&self, backend: &str, language: &str, size: usize) {
        let labels = SessionLabels { backend: backend.into(), language: language.into() };
        self.warm_pool.get_or_create(&labels).set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// Sets whether the cluster's Redis answered this node's last look.
    pub fn cluster_redis_up(&self, up: bool) {
        self.cluster_redis_up.set(i64::from(up));
    }

    /// Sets the cluster's nodes as this node sees them.
    pub fn cluster_nodes(&self, nodes: &[crate::cluster::NodeView]) {
        for node in nodes {
            let labels = NodeLabels { node: node.url.clone() };
            let live = node.state == crate::cluster::NodeState::Live;
            self.cluster_node_up.get_or_create(&labels).set(i64::from(live));
            self.cluster_node_sessions.get_or_create(&labels).set(i64::try_from(node.sessions).unwrap_or(i64::MAX));
        }
    }

    /// Counts a request forwarded to `node`, answered after `elapsed`.
    pub fn forwarded(&self, node: &str, elapsed: Duration) {
        let labels = NodeLabels { node: node.to_owned() };
        self.cluster_forwarded.get_or_create(&labels).inc();
        self.cluster_forward_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// The counter of requests refused for their rate (for the rate limiter).
    pub(crate) fn rate_refusals(&self) -> Counter {
        self.refused.get_or_create(&RefusedLabels { reason: RefusalKind::Rate.as_str().into() }).clone()
    }

    /// The counter of audit records dropped on a full queue.
    pub(crate) fn audit_dropped(&self) -> Counter {
        self.audit_dropped.clone()
    }

    /// The counter of audit records lost to write errors.
    pub(crate) fn audit_write_errors(&self) -> Counter {
        self.audit_write_errors.clone()
    }
}

/// What `GET /metrics` needs.
#[derive(Clone)]
struct Endpoint {
    metrics: Arc<Metrics>,
    manager: SessionManager,
}

/// `GET /metrics` behind `access` (host and origin checks, and the metrics token when
/// there is one: scrapers need no tenant key). Each answer closes its connection: a
/// scraper reconnects at its next scrape, and no socket lingers between scrapes.
pub fn router(metrics: Arc<Metrics>, manager: SessionManager, access: Arc<crate::access::Access>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(scrape))
        .with_state(Endpoint { metrics, manager })
        .route_layer(middleware::from_fn_with_state(access, crate::access::guard))
}

async fn scrape(State(endpoint): State<Endpoint>) -> Response {
    for backend in endpoint.manager.backends() {
        for (language, size) in backend.warm_pool() {
            endpoint.metrics.set_warm_pool(backend.name(), language.as_str(), size);
        }
    }
    let mut response = endpoint.metrics.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A layer over every HTTP route that counts refused requests by the [`RefusalKind`] their
/// response carries (the access guard's and the MCP session caps' refusals carry one).
/// Rate refusals are counted by the rate limiter itself.
pub fn count_refusals(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(middleware::from_fn_with_state(metrics, refusal_counter))
}

async fn refusal_counter(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(&kind) = response.extensions().get::<RefusalKind>() {
        metrics.refused(kind);
    }
    response
}

/// Keeps a connection counted in `codebeaker_connections` while it lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    transport: Transport,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let labels = TransportLabels { transport: self.transport.as_str().into() };
        self.metrics.connections.get_or_create(&labels).dec();
    }
}

fn session_labels(session: &SessionInfo) -> SessionLabels {
    SessionLabels { backend: session.backend.clone(), language: session.language.as_str().into() }
}

/// `ok`, `timeout` or `error`.
fn outcome_label(outcome: &CommandOutcome) -> &'static str {
    match &outcome.error {
        None if outcome.success => "ok",
        Some(error) if error.kind() == ErrorKind::TimedOut => "timeout",
        _ => "error",
    }
}

impl SessionObserver for Metrics {
    fn session_created(&self, session: &SessionInfo) {
        let labels = session_labels(session);
        self.sessions_created.get_or_create(&labels).inc();
        self.sessions_open.get_or_create(&labels).inc();
    }

    fn session_create_failed(&self, backend: &str, _error: &Error) {
        self.session_create_failures.get_or_create(&BackendLabels { backend: backend.into() }).inc();
    }

    fn session_closed(&self, session: &SessionInfo, reason: CloseReason) {
        let labels = session_labels(session);
        self.sessions_open.get_or_create(&labels).dec();
        let closed =
            ClosedLabels { backend: labels.backend, language: labels.language, reason: reason.as_str().into() };
        self.sessions_closed.get_or_create(&closed).inc();
    }

    fn command_finished(&self, session: &SessionInfo, kind: &str, outcome: &CommandOutcome, elapsed: Duration) {
        let labels = CommandLabels {
            command: kind.into(),
            backend: session.backend.clone(),
            outcome: outcome_label(outcome).into(),
        };
        self.commands.get_or_create(&labels).inc();
        let refused = outcome.usage().map_or(0, |usage| usage.egress_refused);
        if refused > 0 {
            self.egress_refused.get_or_create(&BackendLabels { backend: session.backend.clone() }).inc_by(refused);
        }
        let duration = DurationLabels { command: kind.into(), backend: session.backend.clone() };
        self.command_duration.get_or_create(&duration).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_connections_render_from_zero() {
        let metrics = Arc::new(Metrics::new());
        let text = metrics.render();
        assert!(text.contains("codebeaker_requests_refused_total{reason=\"rate\"} 0"), "{text}");
        metrics.refused(RefusalKind::Rate);
        let guard = metrics.connection(Transport::WebSocket);
        let text = metrics.render();
        assert!(text.contains("codebeaker_requests_refused_total{reason=\"rate\"} 1"), "{text}");
        assert!(text.contains("codebeaker_connections{transport=\"websocket\"} 1"), "{text}");
        drop(guard);
        assert!(metrics.render().contains("codebeaker_connections{transport=\"websocket\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
