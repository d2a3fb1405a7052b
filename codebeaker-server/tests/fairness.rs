//! Fairness over the real server: no tenant and no address can take every place.
//!
//! - sessions: a tenant's default cap is a quarter of `--max-sessions`, so a second tenant
//!   creates while the first holds its share (real Deno sessions);
//! - WebSocket connections: capped per tenant and per source address beside the global
//!   cap, refused with `-32002` and close code 1013 naming the cap;
//! - sockets nobody let in: 400 idle or half-sent sockets (from one address, or from many)
//!   do not keep `/health` or a WebSocket client from being answered at once;
//! - MCP sessions over HTTP: capped globally, per address and per tenant (HTTP 503/429
//!   with a JSON-RPC `-32002` naming the cap, also as the official Python SDK sees it),
//!   and ended after `--mcp-session-idle-secs` without a request, giving their place back;
//! - `/metrics` and `/mcp` of a loopback server answer loopback `Host`s only.
//!
//! Several loopback addresses (127.0.0.x) stand for several clients. Nothing leaves
//! loopback; every loop is bounded.

mod common;
mod mcp_support;

use std::time::{Duration, Instant};

use codebeaker_server::{ApiKeys, ServerConfig};
use common::{tempdir_server, Client};
use mcp_support::{connect_from, http, http_from, python_with, run_python, HttpResponse, Spawned};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const KEYS: &str = "alice alice-token-0001\nbob bob-token-0002\n";

/// An `--api-keys` file with alice and bob (kept alive by the returned directory).
fn keys_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keys");
    std::fs::write(&path, KEYS).expect("keys file");
    let path = path.to_str().expect("UTF-8 path").to_owned();
    (dir, path)
}

#[tokio::test]
async fn a_second_tenant_creates_while_the_first_holds_its_share() {
    let (_dir, keys) = keys_file();
    // 8 sessions in all: a tenant's default share is 2.
    let server = Spawned::start(&["--api-keys", &keys, "--max-sessions", "8"]).await;
    let mut alice = Client::connect(&format!("{}?token=alice-token-0001", server.ws_url())).await;
    let mut bob = Client::connect(&format!("{}?token=bob-token-0002", server.ws_url())).await;
    alice.create(json!({"language": "deno"})).await;
    alice.create(json!({"language": "deno"})).await;
    let (code, error) = alice.call_err("session.create", json!({"language": "deno"})).await;
    assert_eq!(code, -32002, "{error}");
    let data = error["data"].as_str().unwrap_or_default();
    assert!(data.contains("max-sessions-per-tenant") && data.contains("is 2"), "{error}");
    // Bob is not locked out by Alice, and his session runs code.
    let session = bob.create(json!({"language": "deno"})).await;
    let ran = bob.execute(&session, json!({"type": "execute_code", "code": "console.log(6 * 7)"})).await;
    assert_eq!(ran["result"], "42", "{ran}");
    server.stop().await;
}

/// A WebSocket client of `url` over a connection from `source`.
async fn ws_from(source: [u8; 4], server: &codebeaker_server::ServerHandle, query: &str) -> Client {
    let stream = connect_from(source, server.local_addr()).await.expect("connect");
    let url = format!("{}{query}", server.ws_url());
    let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .expect("WebSocket handshake");
    Client::from_stream(ws)
}

/// The connection was refused: one `-32002` error, then close code 1013 naming `cap`.
async fn assert_refused(client: &mut Client, cap: &str) {
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], -32002, "{error}");
    assert!(error["error"]["data"].as_str().unwrap_or_default().contains(cap), "{error}");
    match client.next_message().await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Again);
            assert!(frame.reason.contains(cap), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_are_capped_per_tenant_and_per_address() {
    let mut config = ServerConfig { api_keys: ApiKeys::parse(KEYS).unwrap(), ..ServerConfig::ephemeral() };
    config.limits.max_connections_per_tenant = Some(2);
    config.limits.max_connections_per_address = Some(2);
    let (server, _backend) = tempdir_server(config).await;
    let alice = "?token=alice-token-0001";
    let mut first = ws_from([127, 0, 0, 1], &server, alice).await;
    let second = ws_from([127, 0, 0, 2], &server, alice).await;
    // A tenant's share holds whatever address it connects from.
    let mut third = ws_from([127, 0, 0, 3], &server, alice).await;
    assert_refused(&mut third, "max-connections-per-tenant").await;
    // Another tenant is not locked out, until its address holds its share.
    let bob = "?token=bob-token-0002";
    let mut bob_home = ws_from([127, 0, 0, 1], &server, bob).await;
    assert_eq!(bob_home.call("session.list", json!({})).await["count"], 0);
    let mut bob_crowded = ws_from([127, 0, 0, 1], &server, bob).await;
    assert_refused(&mut bob_crowded, "max-connections-per-address").await;
    let mut bob_elsewhere = ws_from([127, 0, 0, 4], &server, bob).await;
    assert_eq!(bob_elsewhere.call("session.list", json!({})).await["count"], 0);
    // A connection that ends gives its places back.
    second.close().await;
    let mut again = None;
    for _ in 0..50 {
        let mut client = ws_from([127, 0, 0, 5], &server, alice).await;
        if client.recv_within(Duration::from_millis(100)).await.is_none() {
            again = Some(client);
            break;
        }
    }
    let mut again = again.expect("the tenant's place came back");
    assert_eq!(again.call("session.list", json!({})).await["count"], 0);
    assert_eq!(first.call("session.list", json!({})).await["count"], 0);
    server.shutdown().await;
}

/// Opens `count` sockets from `sources` (in turn) that never finish a request: every
/// third sends half a request line, the others nothing.
async fn idle_sockets(server: &Spawned, sources: &[[u8; 4]], count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let mut socket = connect_from(sources[i % sources.len()], server.addr).await.expect("connect");
        if i % 3 == 0 {
            socket.write_all(b"GET /hea").await.expect("write");
        }
        sockets.push(socket);
    }
    sockets
}

/// `/health` answers 200 within a second (five times in a row).
async fn health_answers_at_once(server: &Spawned) {
    for _ in 0..5 {
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(1), http(server.addr, "GET", "/health", &[], "")).await;
        let answer = answer.unwrap_or_else(|_| panic!("/health did not answer within 1 s")).expect("/health");
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

/// How many of `sockets` the server has closed (a read sees the end at once).
async fn closed_by_server(sockets: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for socket in sockets {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(5), socket.read(&mut byte)).await {
            closed += 1;
        }
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_at_once_under_400_idle_sockets() {
    let server = Spawned::start(&[]).await;
    // 400 idle sockets from the address the probes come from: the address's oldest
    // pending sockets make room for newer ones (128 pending per address by default).
    let mut same = idle_sockets(&server, &[[127, 0, 0, 1]], 400).await;
    health_answers_at_once(&server).await;
    let mut client = Client::connect(&server.ws_url()).await;
    assert_eq!(client.call("session.list", json!({})).await["count"], 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = closed_by_server(&mut same).await;
    assert!(closed >= 400 - 128, "only {closed} of 400 idle sockets were closed");

    // 400 more from eight other addresses: the server's oldest pending sockets make room
    // (256 pending in all by default).
    let others: Vec<[u8; 4]> = (2..10).map(|host| [127, 0, 0, host]).collect();
    let mut spread = idle_sockets(&server, &others, 400).await;
    health_answers_at_once(&server).await;
    assert_eq!(client.call("session.list", json!({})).await["count"], 0);
    let fresh = Client::connect(&server.ws_url()).await;
    fresh.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = closed_by_server(&mut spread).await;
    assert!(closed >= 400 - 256, "only {closed} of 400 idle sockets were closed");
    drop((same, spread));
    client.close().await;
    server.stop().await;
}

const MCP_HEADERS: [(&str, &str); 2] =
    [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fairness", "version": "1"}}})
    .to_string()
}

/// An MCP `initialize` from `source` (with `token`, if any).
async fn mcp_initialize(server: &Spawned, source: [u8; 4], token: Option<&str>) -> HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = MCP_HEADERS.to_vec();
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    http_from(source, server.addr, "POST", "/mcp", &headers, &initialize()).await.expect("POST /mcp")
}

/// The MCP session id of an accepted `initialize`.
fn session_id(response: &HttpResponse) -> String {
    assert_eq!(response.status, 200, "{response:?}");
    response.header("mcp-session-id").unwrap_or_else(|| panic!("no session id: {response:?}")).to_owned()
}

/// A refused `initialize`: `status`, and a JSON-RPC `-32002` error naming `cap`.
fn assert_mcp_refused(response: &HttpResponse, status: u16, cap: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert!(response.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{response:?}");
    let error: Value = serde_json::from_str(&response.body).unwrap_or_else(|e| panic!("{e}: {response:?}"));
    assert_eq!(error["error"]["code"], -32002, "{error}");
    assert!(error["error"]["data"].as_str().unwrap_or_default().contains(cap), "{error}");
}

#[tokio::test]
async fn mcp_sessions_are_capped_per_address_and_in_all() {
    let server = Spawned::start(&["--max-mcp-sessions", "4", "--max-mcp-sessions-per-address", "2"]).await;
    let home = [127, 0, 0, 1];
    let first = session_id(&mcp_initialize(&server, home, None).await);
    session_id(&mcp_initialize(&server, home, None).await);
    assert_mcp_refused(&mcp_initialize(&server, home, None).await, 429, "max-mcp-sessions-per-address");
    // Another address has its own share, until the server is full.
    session_id(&mcp_initialize(&server, [127, 0, 0, 2], None).await);
    session_id(&mcp_initialize(&server, [127, 0, 0, 2], None).await);
    assert_mcp_refused(&mcp_initialize(&server, [127, 0, 0, 3], None).await, 503, "max-mcp-sessions");

    // Ending a session gives its place back.
    let mut headers = MCP_HEADERS.to_vec();
    headers.push(("Mcp-Session-Id", &first));
    let deleted = http(server.addr, "DELETE", "/mcp", &headers, "").await.expect("DELETE /mcp");
    assert!(deleted.status < 300, "{deleted:?}");
    let mut again = None;
    for _ in 0..50 {
        let answer = mcp_initialize(&server, home, None).await;
        if answer.status == 200 {
            again = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    session_id(&again.expect("the deleted session's place came back"));
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.expect("scrape").body;
    assert!(!metrics.contains("codebeaker_requests_refused_total{reason=\"limit\"} 0"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn mcp_sessions_are_capped_per_tenant_by_default() {
    let (_dir, keys) = keys_file();
    // 8 MCP sessions in all: a tenant's default share is 2.
    let server = Spawned::start(&["--api-keys", &keys, "--max-mcp-sessions", "8"]).await;
    let home = [127, 0, 0, 1];
    session_id(&mcp_initialize(&server, home, Some("alice-token-0001")).await);
    session_id(&mcp_initialize(&server, [127, 0, 0, 2], Some("alice-token-0001")).await);
    let refused = mcp_initialize(&server, [127, 0, 0, 3], Some("alice-token-0001")).await;
    assert_mcp_refused(&refused, 429, "max-mcp-sessions-per-tenant");
    session_id(&mcp_initialize(&server, home, Some("bob-token-0002")).await);
    server.stop().await;
}

#[tokio::test]
async fn idle_mcp_sessions_end_and_give_their_place_back() {
    let server = Spawned::start(&["--max-mcp-sessions", "1", "--mcp-session-idle-secs", "1"]).await;
    let home = [127, 0, 0, 1];
    let id = session_id(&mcp_initialize(&server, home, None).await);
    assert_mcp_refused(&mcp_initialize(&server, home, None).await, 503, "max-mcp-sessions");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut headers = MCP_HEADERS.to_vec();
    headers.push(("Mcp-Session-Id", &id));
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let expired = http(server.addr, "POST", "/mcp", &headers, &list).await.expect("POST /mcp");
    assert_eq!(expired.status, 404, "an idle MCP session must have ended: {expired:?}");
    session_id(&mcp_initialize(&server, home, None).await);
    server.stop().await;
}

#[tokio::test]
async fn the_official_mcp_client_sees_the_session_cap() {
    if !python_with(&["mcp"], "the_official_mcp_client_sees_the_session_cap") {
        return;
    }
    let server = Spawned::start(&["--max-mcp-sessions-per-address", "2"]).await;
    let url = format!("http://{}/mcp", server.addr);
    let out = run_python("mcp_cap.py", &[&url, "2"], None, &[]).await;
    assert!(out.contains("OK: MCP session cap"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_and_mcp_answer_loopback_hosts_only() {
    let server = Spawned::start(&[]).await;
    let port = server.addr.port().to_string();
    let foreign = format!("rebound.example:{port}");
    let refused = http(server.addr, "GET", "/metrics", &[("Host", &foreign)], "").await.expect("GET /metrics");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains("rebound.example") && refused.body.contains("DNS rebinding"), "{refused:?}");
    let mut headers = MCP_HEADERS.to_vec();
    headers.push(("Host", &foreign));
    let refused = http(server.addr, "POST", "/mcp", &headers, &initialize()).await.expect("POST /mcp");
    assert_eq!(refused.status, 403, "{refused:?}");

    let local = format!("localhost:{port}");
    let scraped = http(server.addr, "GET", "/metrics", &[("Host", &local)], "").await.expect("GET /metrics");
    assert_eq!(scraped.status, 200, "{scraped:?}");
    assert!(scraped.body.contains("codebeaker_requests_refused_total{reason=\"host\"} 2"), "{}", scraped.body);
    if python_with(&["prometheus_client"], "metrics_and_mcp_answer_loopback_hosts_only") {
        let parsed = run_python("parse_metrics.py", &[], Some(&scraped.body), &[]).await;
        let host_refusals = parsed
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
            .find(|s| s["name"] == "codebeaker_requests_refused_total" && s["labels"] == json!({"reason": "host"}))
            .unwrap_or_else(|| panic!("the parser found no host refusals:\n{parsed}"));
        assert_eq!(host_refusals["value"].as_f64(), Some(2.0), "{host_refusals}");
    }
    server.stop().await;
}
