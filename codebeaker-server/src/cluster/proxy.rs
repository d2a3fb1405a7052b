//! The file routes of a session held by another node: the HTTP request goes on to that
//! node as it came (streamed both ways, never buffered whole), presenting the cluster's
//! secret and naming the client, and its answer comes back as the node gave it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use codebeaker::Error;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::link::caller_headers;
use super::Cluster;
use crate::api::Caller;

/// How long connecting to the node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `request` (a file route's) to node `url` for `caller`; its response.
pub(crate) async fn forward(
    cluster: &Cluster,
    url: &str,
    caller: &Caller,
    request: Request,
) -> Result<Response, Error> {
    let unreachable = |why: String| cluster.cannot_reach(url, why);
    let authority = url.strip_prefix("ws://").unwrap_or(url).trim_end_matches('/').to_owned();
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(unreachable(error.to_string())),
        Err(_) => return Err(unreachable(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()))),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "a forwarded file request's connection ended with an error");
        }
    });
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    parts.uri = path.parse().map_err(|e: axum::http::uri::InvalidUri| unreachable(e.to_string()))?;
    let headers = &mut parts.headers;
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::ORIGIN);
    let host = HeaderValue::from_str(&authority).map_err(|e| unreachable(e.to_string()))?;
    headers.insert(header::HOST, host);
    for (name, value) in caller_headers(cluster, caller).map_err(|e| unreachable(e.to_string()))? {
        headers.insert(name, value);
    }
    let sent = std::time::Instant::now();
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| cluster.node_error(url, &format!("failed the forwarded request: {e}")))?;
    cluster.metrics().forwarded(url, sent.elapsed());
    Ok(response.map(Body::new))
}
