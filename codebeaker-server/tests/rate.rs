//! `--rate-limit` / `--rate-burst` over the real server binary: JSON-RPC requests over the
//! rate get `-32002` naming the rate (per address without auth, per tenant with tenants,
//! and one budget for the `--token` holder: reconnecting never refills it), MCP HTTP
//! requests get 429 with `Retry-After`, and refusals are counted.

mod common;
mod mcp_support;

use std::time::Duration;

use common::Client;
use mcp_support::{http, Spawned};
use serde_json::{json, Value};

/// Sends `count` `session.list` requests back to back, then reads every answer.
async fn burst(client: &mut Client, count: u64) -> Vec<Value> {
    for id in 0..count {
        client.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "session.list"})).await;
    }
    let mut answers = Vec::new();
    for _ in 0..count {
        answers.push(client.recv().await);
    }
    answers.sort_by_key(|a| a["id"].as_u64());
    answers
}

fn refused(answers: &[Value]) -> Vec<&Value> {
    answers.iter().filter(|a| a.get("error").is_some()).collect()
}

#[tokio::test]
async fn json_rpc_requests_over_the_rate_are_refused_per_address() {
    let server = Spawned::start(&["--rate-limit", "1", "--rate-burst", "3"]).await;
    let mut first = Client::connect(&server.ws_url()).await;
    let answers = burst(&mut first, 8).await;
    let errors = refused(&answers);
    assert_eq!(errors.len(), 5, "3 of 8 fit the burst: {answers:?}");
    for error in &errors {
        assert_eq!(error["error"]["code"], -32002, "{error}");
        let data = error["error"]["data"].as_str().expect("data");
        assert!(data.contains("rate limit of 1 requests/s (burst 3)"), "{data}");
        // The kind tells it from every other -32002, with the wait a client should make.
        assert_eq!(error["error"]["kind"], "rate_limited", "{error}");
        let retry = error["error"]["retryAfterMs"].as_u64().expect("retryAfterMs");
        assert!((1..=5000).contains(&retry), "{error}");
    }
    // A request in a batch counts too.
    let batch = json!([{"jsonrpc": "2.0", "id": "b1", "method": "session.list"}]);
    first.send_json(&batch).await;
    let answer = first.recv().await;
    assert_eq!(answer[0]["error"]["code"], -32002, "{answer}");

    // Without auth the address is the client: a new connection from it has no fresh budget.
    let mut second = Client::connect(&server.ws_url()).await;
    assert_eq!(refused(&burst(&mut second, 1).await).len(), 1);

    // The budget refills at the rate; the refused connections stayed open.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = first.request("session.list", json!({})).await;
    assert!(later.get("result").is_some(), "{later}");

    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.expect("scrape");
    assert!(metrics.body.contains("codebeaker_requests_refused_total{reason=\"rate\"} 7"), "{}", metrics.body);
    server.stop().await;
}

#[tokio::test]
async fn the_token_holder_keeps_its_budget_across_reconnects() {
    let server =
        Spawned::start(&["--token", "token-of-the-operator", "--rate-limit", "0.5", "--rate-burst", "2"]).await;
    let url = format!("{}?token=token-of-the-operator", server.ws_url());
    let mut first = Client::connect(&url).await;
    assert_eq!(refused(&burst(&mut first, 2).await).len(), 0);
    first.close().await;
    // Reconnecting does not refill the budget: the `--token` holder is one client.
    let mut again = Client::connect(&url).await;
    let (code, error) = again.call_err("session.list", json!({})).await;
    assert_eq!(code, -32002, "{error}");
    assert!(error["data"].as_str().unwrap().contains("rate limit of 0.5 requests/s (burst 2)"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn a_tenant_shares_one_budget_across_connections() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "alice alice-token-1\nbob bob-token-22\n").expect("keys file");
    let server =
        Spawned::start(&["--rate-limit", "1", "--rate-burst", "2", "--api-keys", keys.to_str().unwrap()]).await;
    let url = |token: &str| format!("{}?token={token}", server.ws_url());
    let mut alice1 = Client::connect(&url("alice-token-1")).await;
    let mut alice2 = Client::connect(&url("alice-token-1")).await;
    let mut bob = Client::connect(&url("bob-token-22")).await;
    assert_eq!(refused(&burst(&mut alice1, 2).await).len(), 0);
    let (code, error) = alice2.call_err("session.list", json!({})).await;
    assert_eq!(code, -32002, "{error}");
    assert!(error["data"].as_str().unwrap().contains("rate limit of 1 requests/s (burst 2)"), "{error}");
    assert!(bob.request("session.list", json!({})).await.get("result").is_some());
    server.stop().await;
}

#[tokio::test]
async fn mcp_requests_over_the_rate_get_429_with_retry_after() {
    let server = Spawned::start(&["--rate-limit", "1", "--rate-burst", "2"]).await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rate-test", "version": "1"}}})
    .to_string();
    let headers = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let response = http(server.addr, "POST", "/mcp", &headers, &initialize).await.expect("POST /mcp");
        if response.status == 429 {
            retry_after = response.header("retry-after").map(str::to_owned);
            assert!(response.body.contains("rate limit of 1 requests/s (burst 2)"), "{response:?}");
        }
        statuses.push(response.status);
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 3, "{statuses:?}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=2).contains(&seconds), "Retry-After {seconds}");
    server.stop().await;
}
