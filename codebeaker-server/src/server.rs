//! [`Server`]: the listening socket, the accept loop, hyper's HTTP/1 connections serving
//! the axum router of [`crate::routes`], and the orderly shutdown described in
//! [`crate::shutdown`].
//!
//! The accept loop never waits for a permit: every socket is accepted at once and is
//! *pending* (see the `pending` module) until a request of it passes an access guard.
//! Pending sockets are capped per address and in all by closing the oldest, and closed
//! at their deadline, so idle or half-sent sockets, however many, cannot keep `/health`
//! or a real client from being answered. Sockets let in are bounded where they hold
//! something: WebSocket connections and MCP sessions by their [`crate::shares`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use codebeaker::SessionManager;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{debug, info, info_span, warn, Instrument as _};

use crate::access::{Access, ApiKeys, HostCheck};
use crate::api::Api;
use crate::audit::AuditLog;
use crate::backends::Backends;
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::limits::Limits;
use crate::mcp;
use crate::methods::Methods;
use crate::metrics::{Metrics, RefusalKind};
use crate::pending::PendingSockets;
use crate::rate::RequestRateLimiter;
use crate::routes::{self, AppState};
use crate::shares::Shares;

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) api: Api,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) methods: Methods,
    pub(crate) limits: Limits,
    pub(crate) access: Arc<Access>,
    /// The places of open WebSocket connections (global, per tenant, per address).
    pub(crate) connections: Arc<Shares>,
}

/// The typed API with what watches it (metrics, audit log, rate limit), as a
/// [`ServerConfig`] describes it: what both the HTTP server and the MCP stdio server
/// (`codebeaker-server mcp`) serve.
pub struct Services {
    /// The operations every transport calls.
    pub api: Api,
    /// The server's metrics (also the session manager's observer).
    pub metrics: Arc<Metrics>,
}

impl Services {
    /// Starts the session manager over `backends`, with the metrics as its observer (unless
    /// the configuration brings its own), the audit log and the rate limit. Must be called
    /// inside a Tokio runtime.
    pub fn start(config: &ServerConfig, backends: Backends) -> Services {
        let metrics = Arc::new(Metrics::new());
        let mut manager_config = config.manager.clone();
        if manager_config.observer.is_none() {
            manager_config.observer = Some(metrics.clone());
        }
        // A cluster node's sessions name it.
        if let Some(cluster) = &config.cluster {
            manager_config.node = Some(cluster.node_url.as_str().into());
        }
        let Backends { enabled, disabled } = backends;
        let manager = SessionManager::new(enabled, manager_config);
        let mut api = Api::new(manager.clone(), disabled);
        if let Some(path) = &config.audit_log {
            let mut log = AuditLog::start(
                path.clone(),
                config.audit_payloads,
                metrics.audit_dropped(),
                metrics.audit_write_errors(),
            );
            if let Some(cluster) = &config.cluster {
                log = log.with_node(cluster.node_url.as_str().into());
            }
            api = api.with_audit(log);
        }
        let mut cluster = None;
        if let Some(config) = &config.cluster {
            match Cluster::start(config.clone(), manager, metrics.clone()) {
                Ok(started) => {
                    api = api.with_cluster(started.clone());
                    cluster = Some(started);
                }
                // A validated configuration (see `Cli::server_config`) does not get here.
                Err(error) => tracing::error!(%error, "cannot join the cluster; serving as a single node"),
            }
        }
        if let Some(rate) = config.rate_limit {
            let mut limiter = RequestRateLimiter::new(rate, metrics.rate_refusals());
            if let Some(cluster) = cluster {
                limiter = limiter.with_cluster(cluster);
            }
            api = api.with_rate_limit(Arc::new(limiter));
        }
        Services { api, metrics }
    }
}

/// A bound CodeBeaker server, ready to [`run`](Server::run).
///
/// ```no_run
/// use codebeaker_server::{Backends, BackendOptions, Server, ServerConfig};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let backends = Backends::start(BackendOptions::default()).await?;
/// let server = Server::bind(ServerConfig::ephemeral(), backends).await?;
/// println!("listening on ws://{}/ws/jsonrpc", server.local_addr());
/// let handle = server.spawn();
/// // … talk to it …
/// handle.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    router: Router,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// Binds `config.listen` and creates the session manager over `backends`. Must be
    /// called inside a Tokio runtime.
    pub async fn bind(config: ServerConfig, backends: Backends) -> io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let access = Arc::new(config.access());
        let Services { api, metrics } = Services::start(&config, backends);
        let shared = Arc::new(Shared {
            methods: Methods::new(api.clone(), metrics.clone()),
            api: api.clone(),
            metrics: metrics.clone(),
            connections: Shares::new(config.limits.connection_caps()),
            limits: config.limits.clone(),
            access: access.clone(),
        });
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let router = routes::router(AppState { shared: shared.clone(), stop: stop.clone(), tracker: tracker.clone() });
        // The plain HTTP endpoints of a loopback server answer loopback hosts only (DNS
        // rebinding); the WebSocket has its Origin check.
        let hosts = if config.listen.ip().is_loopback() { HostCheck::Loopback } else { HostCheck::Any };
        // Scrapers present the metrics token (when there is one), not a tenant's key.
        let scrape_access = Access {
            hosts,
            allowed_origins: config.allowed_origins.clone(),
            keys: config.metrics_token.clone().map(ApiKeys::single).unwrap_or_default(),
            cluster_secret: None,
        };
        let mcp_access = Access { hosts, ..(*access).clone() };
        let mcp_sessions = Shares::new(config.limits.mcp_session_caps());
        let mcp = mcp::transport::http_service(
            api.clone(),
            metrics.clone(),
            config.limits.mcp_session_idle,
            stop.child_token(),
        );
        // One budget per tenant across both transports.
        let rate = api.rate_limiter();
        let router = router
            .merge(crate::metrics::router(metrics.clone(), api.manager().clone(), Arc::new(scrape_access)))
            .merge(mcp::transport::router(mcp, Arc::new(mcp_access), rate, mcp_sessions));
        let router = crate::metrics::count_refusals(router, metrics);
        Ok(Server { listener, shared, router, stop, tracker })
    }

    /// Adds routes (e.g. `/metrics`, `/mcp`) beside the server's own. Wrap those that act
    /// in [`crate::access::guard`] with [`Server::access`] as its state.
    pub fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The session manager behind the server.
    pub fn manager(&self) -> &SessionManager {
        self.shared.api.manager()
    }

    /// The typed operations the server's transports call.
    pub fn api(&self) -> Api {
        self.shared.api.clone()
    }

    /// The origin and token rules of the server's acting endpoints.
    pub fn access(&self) -> Arc<Access> {
        self.shared.access.clone()
    }

    /// The server's limits.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Serves until `shutdown` completes, then shuts down gracefully (see
    /// [`crate::shutdown`]): every session is closed before this returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, shared, router, stop, tracker } = self;
        let limits = &shared.limits;
        let pending =
            PendingSockets::new(limits.max_pending_connections, limits.pending_per_address(), limits.http_head_timeout);
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.http_head_timeout)
            .max_buf_size(limits.max_http_head_bytes.max(8192));
        tokio::pin!(shutdown);
        let addr = listener.local_addr().ok();
        info!(addr = %addr.map(|a| a.to_string()).unwrap_or_default(), "listening");
        if addr.is_some_and(|a| !a.ip().is_loopback()) && !shared.access.keys.required() {
            warn!(
                "listening beyond loopback without --token or --api-keys: anyone who can reach this address can run \
                 code here"
            );
        }
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: free one held by a socket
                        // nobody let in, and wait rather than spin.
                        warn!(%error, "accept failed");
                        if pending.evict_oldest() {
                            shared.metrics.refused(RefusalKind::Limit);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (ticket, evicted) = pending.admit(peer.ip());
            for _ in 0..evicted {
                shared.metrics.refused(RefusalKind::Limit);
            }
            // Small frames go out at once: round trips matter more than packet counts here.
            let _ = socket.set_nodelay(true);
            let in_requests = ticket.clone();
            let service =
                TowerToHyperService::new(router.clone().map_request(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.extensions_mut().insert(in_requests.clone());
                    request
                }));
            let connection = http.serve_connection(TokioIo::new(socket), service).with_upgrades();
            let stop = stop.clone();
            let span = info_span!("connection", %peer, tenant = tracing::field::Empty);
            tracker.spawn(
                async move {
                    tokio::pin!(connection);
                    let ended = tokio::select! {
                        ended = connection.as_mut() => ended,
                        // Dropping the connection closes the socket.
                        _ = ticket.dismissed() => return,
                        _ = stop.cancelled() => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(error) = ended {
                        debug!(%error, "HTTP connection ended with an error");
                    }
                }
                .instrument(span),
            );
        }
        drop(listener);
        info!(sessions = shared.api.manager().count(), "shutting down");
        stop.cancel();
        tracker.close();
        let connections = async {
            let limit = shared.limits.shutdown_grace + Duration::from_secs(5);
            if tokio::time::timeout(limit, tracker.wait()).await.is_err() {
                warn!("some connections did not close in time");
            }
        };
        tokio::join!(shared.api.manager().shutdown(), connections);
        if let Some(cluster) = shared.api.cluster() {
            cluster.leave().await;
        }
        info!("shut down: every session closed");
    }

    /// Runs the server in a task of its own; the handle shuts it down.
    pub fn spawn(self) -> ServerHandle {
        let addr = self.local_addr();
        let manager = self.shared.api.manager().clone();
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(self.run(async move { signal.cancelled().await }));
        ServerHandle { addr, manager, stop, task }
    }
}

/// A server running in the background (see [`Server::spawn`]).
pub struct ServerHandle {
    addr: SocketAddr,
    manager: SessionManager,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/ws/jsonrpc`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, routes::WS_PATH)
    }

    /// The session manager behind the server.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// Shuts the server down gracefully and waits until it has.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            warn!(%error, "the server task failed");
        }
    }
}
