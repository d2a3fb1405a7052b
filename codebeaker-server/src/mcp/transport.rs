//! The two ways agents reach [`McpTools`]: stdio for hosts that spawn the server as a
//! tool process (`codebeaker-server mcp`), and streamable HTTP at `/mcp` on the server's
//! port (mounted by the router behind the access guard and the rate limit).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
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
use crate::metrics::{Metrics, Transport};
use crate::rate::{RateKey, RequestRateLimiter};

/// The path of the streamable HTTP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// An MCP session over HTTP with no request for this long ends (and closes the sandbox
/// sessions it created); the same as a sandbox session's default idle timeout.
const HTTP_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

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

/// The streamable HTTP service for `/mcp`: one [`McpTools`] per MCP session. The
/// request's [`Caller`] comes from the access guard in front of it. `loopback_only`
/// keeps the SDK's Host check (DNS-rebinding defence) for a server listening on loopback;
/// a server deployed beyond it relies on tokens. `stop` ends every MCP session.
pub fn http_service(
    api: Api,
    metrics: Arc<Metrics>,
    loopback_only: bool,
    stop: CancellationToken,
) -> StreamableHttpService<McpTools, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(stop);
    if !loopback_only {
        config = config.disable_allowed_hosts();
    }
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(HTTP_SESSION_IDLE);
    StreamableHttpService::new(
        move || Ok(McpTools::new(api.clone(), Caller::default(), Some(metrics.connection(Transport::Mcp)))),
        Arc::new(sessions),
        config,
    )
}

/// `/mcp` as an axum router: the access guard (origin, token, tenant) first, then the rate
/// limit (429 with `Retry-After`), then the MCP service.
pub fn router(
    service: StreamableHttpService<McpTools, LocalSessionManager>,
    access: Arc<Access>,
    rate: Option<Arc<RequestRateLimiter>>,
) -> Router {
    let mut router = Router::new().nest_service(MCP_PATH, service);
    if let Some(rate) = rate {
        router = router.layer(middleware::from_fn_with_state(rate, limit_rate));
    }
    router.layer(middleware::from_fn_with_state(access, access::guard))
}

/// Counts the request against its tenant (or, without tenants, its remote address: HTTP
/// clients open connections at will, so the address is the client).
async fn limit_rate(State(rate): State<Arc<RequestRateLimiter>>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned().unwrap_or_default();
    let key = match caller.tenant {
        Some(tenant) => RateKey::Tenant(tenant),
        None => RateKey::Connection(caller.remote.map(|addr| addr.ip().to_string()).unwrap_or_default()),
    };
    match rate.check(&key) {
        Ok(()) => next.run(request).await,
        Err(limited) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, limited.to_string()).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
            response
        }
    }
}
