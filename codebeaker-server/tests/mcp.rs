//! MCP with the official Python SDK (PyPI `mcp`) as the client, through
//! `tests/python/mcp_client.py`: over stdio, spawned exactly as the agent-host
//! configuration `examples/mcp/stdio.json` says, and over streamable HTTP at `/mcp` with
//! a token, as `examples/mcp/http.json` says. Also: `/mcp` behind the same token and
//! origin check as the WebSocket, and sessions closed when their MCP session ends.
//!
//! Python (and the process tools) run in the stdio test too when `CODEBEAKER_MCP_DOCKER=1` or
//! `CODEBEAKER_REQUIRE_DOCKER=1` (the Docker engine is then used); otherwise these tests
//! use the Deno backend only.

mod common;
mod mcp_support;

use std::time::Duration;

use common::Client;
use mcp_support::{http, python_with, run_python, Spawned, BINARY};
use serde_json::{json, Value};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mcp");
const TOKEN: &str = "mcp-test-token";

/// Whether the scenario also runs Python (Docker): asked for, or Docker is required
/// (as in CI).
fn with_docker() -> bool {
    let set = |name: &str| std::env::var(name).as_deref() == Ok("1");
    set("CODEBEAKER_MCP_DOCKER") || set("CODEBEAKER_REQUIRE_DOCKER")
}

fn example(name: &str) -> Value {
    let path = format!("{EXAMPLES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid JSON: {e}"))
}

#[test]
fn agent_host_configurations_are_valid() {
    let stdio = example("stdio.json");
    let server = &stdio["mcpServers"]["codebeaker"];
    assert_eq!(server["command"], "codebeaker-server", "{stdio}");
    assert_eq!(server["args"], json!(["mcp"]), "{stdio}");
    assert!(server["env"].as_object().is_some_and(|env| env.values().all(Value::is_string)), "{stdio}");
    let over_http = example("http.json");
    let server = &over_http["mcpServers"]["codebeaker"];
    assert_eq!(server["type"], "http", "{over_http}");
    assert_eq!(server["url"], "http://127.0.0.1:5000/mcp", "{over_http}");
    assert!(server["headers"]["Authorization"].as_str().is_some_and(|h| h.starts_with("Bearer ")), "{over_http}");
}

#[tokio::test]
async fn mcp_over_stdio_with_the_python_sdk() {
    if !python_with(&["mcp", "jsonschema"], "mcp_over_stdio_with_the_python_sdk") {
        return;
    }
    let config = format!("{EXAMPLES}/stdio.json");
    let mut args = vec!["stdio", "--config", &config, "--binary", BINARY];
    let mut envs = vec![("CODEBEAKER_DENO_POOL_SIZE", "1")];
    if with_docker() {
        args.push("--python");
    } else {
        envs.extend([("CODEBEAKER_BACKENDS", "deno"), ("DOCKER_HOST", "unix:///nonexistent.sock")]);
    }
    let out = run_python("mcp_client.py", &args, None, &envs).await;
    assert!(out.contains("OK: MCP scenario passed"), "{out}");
}

#[tokio::test]
async fn mcp_over_http_with_the_python_sdk_and_sessions_close_with_it() {
    if !python_with(&["mcp", "jsonschema"], "mcp_over_http_with_the_python_sdk") {
        return;
    }
    let server = Spawned::start(&["--token", TOKEN]).await;
    let url = format!("http://{}/mcp", server.addr);
    // The spawned server runs Deno only: Python and the process tools are the stdio
    // test's part.
    let args = ["http", "--url", &url, "--token", TOKEN];
    let out = run_python("mcp_client.py", &args, None, &[]).await;
    assert!(out.contains("OK: MCP scenario passed"), "{out}");

    // The client ended its MCP session (DELETE /mcp): what it created is closed.
    let mut client = Client::connect(&format!("{}?token={TOKEN}", server.ws_url())).await;
    let mut count = u64::MAX;
    for _ in 0..100 {
        count = client.call("session.list", json!({})).await["count"].as_u64().expect("count");
        if count == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count, 0, "sessions outlived their MCP session");
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.expect("scrape").body;
    assert!(metrics.contains("codebeaker_connections{transport=\"mcp\"} 0"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("codebeaker_commands_total{command=\"execute_code\",backend=\"deno\",outcome=\"ok\"}")),
        "MCP commands are counted like JSON-RPC ones:\n{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn mcp_http_checks_token_and_origin_like_the_websocket() {
    let server = Spawned::start(&["--token", TOKEN, "--allowed-origins", "https://app.example"]).await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    .to_string();
    let base = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
    let bearer = format!("Bearer {TOKEN}");

    let anonymous = http(server.addr, "POST", "/mcp", &base, &initialize).await.expect("POST");
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let mut evil = base.to_vec();
    evil.extend([("Authorization", bearer.as_str()), ("Origin", "https://evil.example")]);
    let refused = http(server.addr, "POST", "/mcp", &evil, &initialize).await.expect("POST");
    assert_eq!(refused.status, 403, "{refused:?}");

    let mut good = base.to_vec();
    good.extend([("Authorization", bearer.as_str()), ("Origin", "https://app.example")]);
    let accepted = http(server.addr, "POST", "/mcp", &good, &initialize).await.expect("POST");
    assert_eq!(accepted.status, 200, "{accepted:?}");
    assert!(accepted.header("mcp-session-id").is_some(), "{accepted:?}");
    assert!(accepted.body.contains("\"serverInfo\""), "{accepted:?}");
    server.stop().await;
}

#[tokio::test]
async fn tenants_see_only_their_sessions_over_mcp() {
    if !python_with(&["mcp"], "tenants_see_only_their_sessions_over_mcp") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "alice alice-token-1\nbob bob-token-22\n").expect("keys");
    let server = Spawned::start(&["--api-keys", keys.to_str().unwrap()]).await;
    let mut bob = Client::connect(&format!("{}?token=bob-token-22", server.ws_url())).await;
    let bobs = bob.create(json!({"language": "deno"})).await;
    let url = format!("http://{}/mcp", server.addr);
    let out = run_python("mcp_tenant.py", &[&url, "alice-token-1", &bobs], None, &[]).await;
    assert!(out.contains("OK: tenant isolation"), "{out}");
    // Bob's session is untouched.
    let listed = bob.call("session.list", json!({})).await;
    assert_eq!(listed["count"], 1, "{listed}");
    server.stop().await;
}
