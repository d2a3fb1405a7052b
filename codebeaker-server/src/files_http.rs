//! The streamed file routes: `GET` and `PUT /v1/sessions/{sessionId}/files/{path}`, for
//! files of any size (the WebSocket's `read_file`/`write_file` move at most 16 MiB, as
//! JSON). Same guard as every acting endpoint (Origin 403, token 401), same tenant rule
//! (another tenant's session is 404, exactly like an unknown one), same rate limit, and
//! the session's turn like a command. Bodies stream through in bounded chunks, never
//! whole: memory stays flat whatever the file's size.
//!
//! `GET ?offset=N` answers the bytes from `N` (`Content-Length` = what follows,
//! `X-File-Size` = the whole file). `PUT` replaces the file (`?append=true` appends),
//! creating parent directories, and answers `{"path", "bytes"}`; over the workspace's
//! size it is 413 and nothing of the upload stays. Errors are JSON
//! `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::Uri;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use codebeaker::Error;
use futures::TryStreamExt as _;
use serde_json::json;

use crate::access;
use crate::api::{ApiError, Caller};
use crate::server::Shared;

/// The route of a session's file (`{path}` relative to `/workspace`).
pub const FILES_PATH: &str = "/v1/sessions/{session_id}/files/{*path}";

/// The response header carrying the whole file's size on a download.
pub const FILE_SIZE_HEADER: &str = "x-file-size";

/// The file routes, behind the access guard.
pub(crate) fn router(shared: Arc<Shared>) -> Router<crate::routes::AppState> {
    Router::new()
        .route(FILES_PATH, get(download).put(upload))
        .route_layer(middleware::from_fn_with_state(shared.access.clone(), access::guard))
        .route_layer(middleware::from_fn(crate::telemetry::http_span))
}

/// The value of `name` in the request's query (`None` when absent); the token and other
/// parameters are left alone.
fn query_value<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// `GET /v1/sessions/{sessionId}/files/{path}[?offset=N]`: the file streamed out from
/// `offset`, with its whole size in `X-File-Size`.
async fn download(
    State(state): State<crate::routes::AppState>,
    Extension(caller): Extension<Caller>,
    Path((session_id, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    let uri = request.uri().clone();
    let offset = match query_value(&uri, "offset").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "invalid_params", "offset must be a whole number of bytes".into())
        }
    };
    let api = &state.shared.api;
    if let Err(e) = api.admit_everywhere(&caller, "files.get").await {
        return api_error(e);
    }
    if let Some(cluster) = api.cluster_for(&caller, &session_id) {
        return elsewhere(&cluster, &caller, &session_id, request).await;
    }
    let download = match api.download(&caller, &session_id, &path, offset).await {
        Ok(download) => download,
        Err(e) => return api_error(e),
    };
    let length = download.size.saturating_sub(offset);
    let chunks = tokio_stream_from(download.chunks).map_ok(axum::body::Bytes::from);
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(FILE_SIZE_HEADER, HeaderValue::from(download.size));
    response
}

/// The chunks of a download as a stream.
fn tokio_stream_from(
    mut chunks: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::poll_fn(move |cx| chunks.poll_recv(cx))
}

async fn upload(
    State(state): State<crate::routes::AppState>,
    Extension(caller): Extension<Caller>,
    Path((session_id, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    let append = match query_value(request.uri(), "append") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return error(StatusCode::BAD_REQUEST, "invalid_params", "append must be true or false".into()),
    };
    let api = &state.shared.api;
    if let Err(e) = api.admit_everywhere(&caller, "files.put").await {
        return api_error(e);
    }
    if let Some(cluster) = api.cluster_for(&caller, &session_id) {
        return elsewhere(&cluster, &caller, &session_id, request).await;
    }
    let limit = api.manager().config().policy.workspace_mb.saturating_mul(1024 * 1024);
    if let Some(length) = content_length(request.headers()).filter(|length| *length > limit) {
        // Refused before a byte is read: it cannot fit whatever the workspace holds.
        let message = format!("the upload of {length} bytes exceeds the workspace size of {limit} bytes");
        return error(StatusCode::PAYLOAD_TOO_LARGE, "limit_reached", message);
    }
    let body = request.into_body().into_data_stream().map_err(std::io::Error::other);
    let body: codebeaker::workspace::UploadBody = Box::pin(tokio_util::io::StreamReader::new(body));
    match api.upload(&caller, &session_id, &path, append, body).await {
        Ok(bytes) => {
            let shown = codebeaker::WorkspacePath::parse(&path).map_or(path, |p| p.to_string());
            (StatusCode::OK, Json(json!({"path": shown, "bytes": bytes}))).into_response()
        }
        Err(e) => api_error(e),
    }
}

/// A file request for a session this cluster node does not hold: answered by the node
/// that does (`404` when none does, `503` naming the node when it is lost or unreachable).
async fn elsewhere(cluster: &crate::cluster::Cluster, caller: &Caller, session_id: &str, request: Request) -> Response {
    let node = match cluster.holder(session_id, caller.tenant.as_deref()).await {
        Ok(node) => node,
        Err(error) => return sdk_error(error),
    };
    match crate::cluster::proxy::forward(cluster, &node, caller, request).await {
        Ok(response) => response,
        Err(error) => sdk_error(error),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// An error as its HTTP status and a JSON body.
fn api_error(err: ApiError) -> Response {
    match err {
        ApiError::RateLimited(limited) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", limited.to_string());
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
            response
        }
        ApiError::Sdk(error) => sdk_error(error),
    }
}

fn sdk_error(err: Error) -> Response {
    let codes = crate::error_codes::wire_codes(err.kind());
    error(codes.http_status, codes.http_code, err.to_string())
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}
