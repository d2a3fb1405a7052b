//! The node-to-node link endpoint ([`super::LINK_PATH`]): another node of the cluster
//! forwards one client connection's requests here, acting for that client.
//!
//! A link must present the cluster's secret as a bearer token (compared in constant
//! time); anything else is refused with 401 before the upgrade. The caller it acts for
//! comes from its headers (tenant, address, whether the client authenticated): the
//! forwarding node checked the client's token, and the secret says it is a node. A link
//! is a protocol connection like a client's, with two differences: its requests are
//! served here and never forwarded again, and its requests are not counted against a
//! rate (the node the client reached counted them).

use std::net::SocketAddr;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn, Instrument as _};

use super::link::{AUTHENTICATED_HEADER, REMOTE_HEADER, TENANT_HEADER};
use crate::access::{bearer_tokens, is_tenant_name, ApiKeys};
use crate::api::Caller;
use crate::pending::PendingSocket;
use crate::routes::AppState;

/// `GET /cluster/link`: the upgrade of a node-to-node link.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    pending: Option<Extension<PendingSocket>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(cluster) = state.shared.api.cluster().cloned() else {
        return (StatusCode::NOT_FOUND, "this server is not a node of a cluster").into_response();
    };
    let caller = match node_caller(&headers, &cluster.config().secret) {
        Some(Ok(caller)) => caller,
        Some(Err(reason)) => return (StatusCode::BAD_REQUEST, reason).into_response(),
        None => {
            debug!("a cluster link without the cluster's secret was refused");
            return (StatusCode::UNAUTHORIZED, "a cluster link must present the cluster's secret").into_response();
        }
    };
    if let Some(Extension(socket)) = pending {
        socket.let_in();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return not_an_upgrade(rejection),
    };
    let AppState { shared, stop, tracker } = state;
    let tracked = tracker.token();
    let span = tracing::info_span!("cluster.link", tenant = caller.tenant.as_deref().unwrap_or_default());
    ws.max_message_size(shared.limits.max_message_bytes)
        .max_frame_size(shared.limits.max_message_bytes)
        .on_failed_upgrade(|error| warn!(%error, "a cluster link upgrade failed"))
        .on_upgrade(move |socket| {
            async move {
                let _tracked = tracked;
                debug!("cluster link open");
                crate::connection::serve(socket, shared, caller, stop).await;
                debug!("cluster link closed");
            }
            .instrument(span)
        })
}

fn not_an_upgrade(rejection: WebSocketUpgradeRejection) -> Response {
    debug!(%rejection, "not a WebSocket upgrade");
    (StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket (version 13) only").into_response()
}

/// Whether `headers` carry `Authorization: Bearer <secret>`.
fn presents_secret(headers: &HeaderMap, secret: &str) -> bool {
    ApiKeys::single(secret.trim()).matching(&bearer_tokens(headers)).is_some()
}

/// The caller a request of another node acts for: `None` unless it presents the
/// cluster's `secret`, else the caller its headers name (or why they cannot).
pub(crate) fn node_caller(headers: &HeaderMap, secret: &str) -> Option<Result<Caller, String>> {
    presents_secret(headers, secret).then(|| caller_of(headers))
}

/// The caller a link acts for, from its headers.
fn caller_of(headers: &HeaderMap) -> Result<Caller, String> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let tenant = text(TENANT_HEADER).map(str::to_owned);
    if tenant.as_deref().is_some_and(|t| !is_tenant_name(t)) {
        return Err("the link's tenant header is not a tenant name".into());
    }
    let remote = match text(REMOTE_HEADER) {
        Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|e| format!("the link's remote header: {e}"))?),
        None => None,
    };
    let authenticated = text(AUTHENTICATED_HEADER) == Some("1");
    Ok(Caller { tenant, remote, authenticated, forwarded: true })
}
