//! The HTTP endpoints, as an axum [`Router`]: `GET /health`, and the WebSocket upgrade
//! on `/ws/jsonrpc` behind the [`access::guard`] (origin and token). Other endpoints
//! (`/metrics`, `/mcp`) are merged in with [`crate::Server::merge`].

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument as _};

use crate::access;
use crate::api::{Caller, HealthStatus};
use crate::metrics::{RefusalKind, Transport};
use crate::rpc::{Response as RpcResponse, RpcError};
use crate::server::Shared;

/// The WebSocket endpoint.
pub const WS_PATH: &str = "/ws/jsonrpc";
/// The health endpoint.
pub const HEALTH_PATH: &str = "/health";

/// How long a refused connection waits for the client's close frame.
const REFUSAL_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) shared: Arc<Shared>,
    /// Cancelled at shutdown: WebSocket connections close.
    pub(crate) stop: CancellationToken,
    /// Tracks WebSocket connections, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
}

/// The server's own routes.
pub(crate) fn router(state: AppState) -> Router {
    let ws = Router::new()
        .route(WS_PATH, get(upgrade))
        .route_layer(middleware::from_fn_with_state(state.shared.access.clone(), access::guard));
    Router::new()
        .route(HEALTH_PATH, get(health))
        .route(crate::cluster::LINK_PATH, get(crate::cluster::serve::upgrade))
        .merge(ws)
        .merge(crate::files_http::router(state.shared.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn(close_after_response))
        .with_state(state)
}

/// `GET /health`: 200 with `ok` or `degraded`, 503 with `down`.
async fn health(State(state): State<AppState>) -> Response {
    let health = state.shared.api.health().await;
    let status = match health.status {
        HealthStatus::Down => StatusCode::SERVICE_UNAVAILABLE,
        HealthStatus::Ok | HealthStatus::Degraded => StatusCode::OK,
    };
    (status, Json(health)).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found: the endpoints are GET /health, the WebSocket /ws/jsonrpc and GET/PUT /v1/sessions/{sessionId}/files/{path}").into_response()
}

/// Plain answers of these endpoints close their connection: clients of `/health` and
/// refused upgrades are one-request clients, and a closed socket frees its place at once.
async fn close_after_response(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The WebSocket upgrade: refused with 426 unless it is one; past a connection cap (the
/// server's, the caller's tenant's or address's share, see [`crate::shares`]) it is
/// accepted only to say which in a `-32002` error and a close frame (1013).
async fn upgrade(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            debug!(%rejection, "not a WebSocket upgrade");
            return (StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket (version 13) only").into_response();
        }
    };
    let AppState { shared, stop, tracker } = state;
    let limits = &shared.limits;
    let place = shared.connections.take(&caller);
    let span = tracing::Span::current();
    if let Some(tenant) = &caller.tenant {
        span.record("tenant", tenant.as_str());
    }
    // Counted as a task of the server from now on: shutdown waits for it.
    let tracked = tracker.token();
    ws.max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_failed_upgrade(|error| debug!(%error, "the WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            async move {
                let _tracked = tracked;
                let _place = match place {
                    Ok(place) => place,
                    Err(full) => {
                        shared.metrics.refused(RefusalKind::Limit);
                        return refuse(socket, full.to_string()).await;
                    }
                };
                let _counted = shared.metrics.connection(Transport::WebSocket);
                debug!("connection open");
                crate::connection::serve(socket, shared.clone(), caller, stop).await;
                debug!("connection closed");
            }
            .instrument(span)
        })
}

/// Over a connection cap: one `-32002` error, then a close frame saying the same.
async fn refuse(mut ws: WebSocket, detail: String) {
    warn!("connection refused: {detail}");
    let error = RpcResponse::error(Value::Null, RpcError::limit_reached(detail.clone()));
    let _ = ws.send(Message::text(error.to_text())).await;
    let _ = ws.send(Message::Close(Some(CloseFrame { code: close_code::AGAIN, reason: detail.into() }))).await;
    let _ = tokio::time::timeout(REFUSAL_CLOSE_TIMEOUT, async { while let Some(Ok(_)) = ws.recv().await {} }).await;
}
