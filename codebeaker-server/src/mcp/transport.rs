//! The two ways agents reach [`McpTools`]: stdio for hosts that spawn the server as a
//! tool process (`codebeaker-server mcp`), and streamable HTTP at `/mcp` on the server's
//! port (mounted by the router behind the access guard, the rate limit and the MCP
//! session caps).
//!
//! MCP sessions over HTTP are a resource clients create at will (one `initialize` each),
//! so they are capped like connections ([`crate::shares`]: globally, per tenant, per
//! address) and end after [`crate::Limits::mcp_session_idle`] without a request. An
//! `initialize` over a cap is answered 503 (the server is full) or 429 (the caller holds
//! its share) with a JSON-RPC `-32002` error naming the cap; the place it takes is held by the MCP
//! session and given back when the session ends (deleted, expired, server shutdown).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;
use tokio_util::sync::CancellationToken;

use super::McpTools;
use crate::access::{self, Access};
use crate::api::{Api, Caller};
use crate::metrics::{Metrics, RefusalKind, Transport};
use crate::rate::{RateKey, RequestRateLimiter};
use crate::rpc;
use crate::shares::{Place, Shares};

/// The path of the streamable HTTP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// The header naming the MCP session of a request (none on `initialize`).
const SESSION_HEADER: &str = "mcp-session-id";

/// The MCP stdio server could not run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// The `initialize` handshake failed.
    #[error("MCP handshake over stdio failed: {0}")]
    Handshake(#[source] Box<rmcp::service::ServerInitializeError>),
    /// The session's task failed.
    #[error("MCP session over stdio failed: {0}")]
    Session(#[source] tokio::task::JoinError),
}

/// Serves one MCP session over this process's stdin and stdout until the client closes
/// stdin or `stop` fires; sessions it created are closed when it returns. Logs must go to
/// stderr meanwhile (stdout carries the protocol).
pub async fn serve_stdio(api: Api, metrics: Option<Arc<Metrics>>, stop: CancellationToken) -> Result<(), StdioError> {
    let connection = metrics.map(|metrics| metrics.connection(Transport::Mcp));
    let tools = McpTools::new(api, Caller::default(), connection);
    let running = tools
        .serve_with_ct(rmcp::transport::stdio(), stop)
        .await
        .map_err(|error| StdioError::Handshake(Box::new(error)))?;
    let reason = running.waiting().await.map_err(StdioError::Session)?;
    tracing::info!(?reason, "MCP stdio session ended");
    Ok(())
}

/// The streamable HTTP service for `/mcp`: one [`McpTools`] per MCP session, ended after
/// `idle` without a request. The request's [`Caller`] comes from the access guard in
/// front of it, which also checks `Host` (the SDK's own check is off: one check, in
/// [`crate::access`], for `/mcp` and `/metrics`). `stop` ends every MCP session.
pub fn http_service(
    api: Api,
    metrics: Arc<Metrics>,
    idle: Duration,
    stop: CancellationToken,
) -> StreamableHttpService<McpTools, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default().with_cancellation_token(stop).disable_allowed_hosts();
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(idle);
    StreamableHttpService::new(
        move || Ok(McpTools::new(api.clone(), Caller::default(), Some(metrics.connection(Transport::Mcp)))),
        Arc::new(sessions),
        config,
    )
}

/// `/mcp` as an axum router: the access guard (host, origin, token, tenant) first, then the
/// rate limit (429 with `Retry-After`), then the MCP session caps of `sessions`, then the
/// MCP service.
pub fn router(
    service: StreamableHttpService<McpTools, LocalSessionManager>,
    access: Arc<Access>,
    rate: Option<Arc<RequestRateLimiter>>,
    sessions: Arc<Shares>,
) -> Router {
    let mut router = Router::new()
        .nest_service(MCP_PATH, service)
        .layer(middleware::from_fn_with_state(sessions, take_session_place));
    if let Some(rate) = rate {
        router = router.layer(middleware::from_fn_with_state(rate, limit_rate));
    }
    router
        .layer(middleware::from_fn_with_state(access, access::guard))
        .layer(middleware::from_fn(crate::telemetry::http_span))
}

/// Counts the request against its caller's rate ([`RateKey::of`]: its tenant, the
/// `--token` holder, or its address without auth: the same key as over the WebSocket).
async fn limit_rate(State(rate): State<Arc<RequestRateLimiter>>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned().unwrap_or_default();
    match rate.check_everywhere(&RateKey::of(&caller)).await {
        Ok(()) => next.run(request).await,
        Err(limited) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, limited.to_string()).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
            response
        }
    }
}

/// The place an MCP session holds under the caps, from the `initialize` request that
/// took it to the [`McpTools`] of the session it creates (which keeps it until the
/// session ends). Cloned with the request's parts; a request that creates no session
/// drops the place with its last clone.
#[derive(Debug, Clone)]
pub(crate) struct SessionPlace(Arc<Mutex<Option<Place>>>);

impl SessionPlace {
    /// Takes the place out (once).
    pub(crate) fn take(&self) -> Option<Place> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

/// A POST without an MCP session id may create a session (`initialize`): it needs a place
/// under the caps, or is refused with 503 (the server is full) or 429 (the caller holds
/// its share) and a JSON-RPC `-32002` error whose `data` names the cap.
async fn take_session_place(State(sessions): State<Arc<Shares>>, mut request: Request, next: Next) -> Response {
    if request.method() != Method::POST || request.headers().contains_key(SESSION_HEADER) {
        return next.run(request).await;
    }
    let caller = request.extensions().get::<Caller>().cloned().unwrap_or_default();
    match sessions.take(&caller) {
        Ok(place) => {
            request.extensions_mut().insert(SessionPlace(Arc::new(Mutex::new(Some(place)))));
            next.run(request).await
        }
        Err(full) => {
            tracing::warn!("MCP session refused: {full}");
            let status = if full.is_global() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::TOO_MANY_REQUESTS };
            // A JSON-RPC error body: MCP clients hand it to the agent as the answer to its
            // `initialize`, message and all.
            let error = rpc::Response::error(serde_json::Value::Null, rpc::RpcError::limit_reached(full.to_string()));
            let json = HeaderValue::from_static("application/json");
            let mut response = (status, [(header::CONTENT_TYPE, json)], error.to_text()).into_response();
            response.extensions_mut().insert(RefusalKind::Limit);
            response
        }
    }
}
