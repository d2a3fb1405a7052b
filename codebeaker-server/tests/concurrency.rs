//! Concurrency and lifecycle on one connection and across connections: requests in flight
//! together answered by id, per-session arrival order, sessions that outlive their
//! connection, streamed output, per-command timeouts, one-shot runs.
//!
//! Protocol mechanics only, so these run on the temp-dir test backend (its `execute_code`
//! is a tiny script language: `print`, `sleep MS`, `spin`, …).

mod common;

use std::time::{Duration, Instant};

use codebeaker_server::ServerConfig;
use common::{tempdir_server, Client};
use serde_json::json;

#[tokio::test]
async fn concurrent_requests_are_answered_by_id_as_they_finish() {
    let (server, _b) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let slow = c.create(json!({"language": "deno"})).await;
    let fast = c.create(json!({"language": "deno"})).await;
    let started = Instant::now();
    c.send_json(&json!({"jsonrpc": "2.0", "id": "slow", "method": "session.execute",
        "params": {"sessionId": slow, "command": {"type": "execute_code", "code": "sleep 500\nprint slow"}}}))
        .await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": "fast", "method": "session.execute",
        "params": {"sessionId": fast, "command": {"type": "execute_code", "code": "print fast"}}}))
        .await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": "list", "method": "session.list"})).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let response = c.recv().await;
        order.push(response["id"].as_str().unwrap().to_owned());
        if response["id"] == "slow" {
            assert_eq!(response["result"]["result"], "slow");
        }
    }
    assert_eq!(order.last().map(String::as_str), Some("slow"), "{order:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn commands_on_one_session_run_in_arrival_order() {
    let (server, _b) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    // Pipelined without waiting, some in a batch: appends must land in the order sent.
    for i in 0..30 {
        c.send_json(&json!({"jsonrpc": "2.0", "id": i, "method": "session.execute", "params": {"sessionId": session,
            "command": {"type": "write_file", "path": "log.txt", "content": format!("{i},"), "mode": "Append"}}}))
            .await;
    }
    let batch: Vec<_> = (30..40)
        .map(|i| {
            json!({"jsonrpc": "2.0", "id": i, "method": "session.execute", "params": {"sessionId": session,
            "command": {"type": "write_file", "path": "log.txt", "content": format!("{i},"), "mode": "Append"}}})
        })
        .collect();
    c.send_json(&json!(batch)).await;
    for _ in 0..31 {
        let response = c.recv().await;
        assert!(response.is_array() || response["result"]["success"] == true, "{response}");
    }
    let read = c.execute(&session, json!({"type": "read_file", "path": "log.txt"})).await;
    let expected: String = (0..40).map(|i| format!("{i},")).collect();
    assert_eq!(read["result"]["content"], expected);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn sessions_outlive_their_connection() {
    let (server, backend) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut first = Client::connect(&server.ws_url()).await;
    let session = first.create(json!({"language": "deno"})).await;
    first.execute(&session, json!({"type": "write_file", "path": "/workspace/keep.txt", "content": "kept"})).await;
    first.close().await;

    let mut second = Client::connect(&server.ws_url()).await;
    let read = second.execute(&session, json!({"type": "read_file", "path": "keep.txt"})).await;
    assert_eq!(read["result"], json!({"content": "kept", "bytes": 4, "size": 4, "eof": true}));
    assert_eq!(backend.closes(), 0);
    second.call("session.close", json!({"sessionId": session})).await;
    assert_eq!(backend.closes(), 1);
    second.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn streamed_output_comes_as_notifications_before_the_response() {
    let (server, _b) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": "s1", "method": "session.execute", "params": {
        "sessionId": session, "stream": true,
        "command": {"type": "execute_code", "code": "print one\nsleep 50\nwarn two\nsleep 50\nprint three"}}}))
        .await;
    let response = c.response_to(&json!("s1")).await;
    assert_eq!(response["result"]["result"], "one\ntwo\nthree", "{response}");
    let chunks: Vec<(String, String)> = c
        .notifications
        .iter()
        .map(|n| {
            assert_eq!(n["method"], "session.output", "{n}");
            assert_eq!(n["params"]["sessionId"], session.as_str());
            assert_eq!(n["params"]["requestId"], "s1");
            (n["params"]["stream"].as_str().unwrap().to_owned(), n["params"]["data"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected = [("stdout", "one\n"), ("stderr", "two\n"), ("stdout", "three\n")];
    assert_eq!(chunks, expected.map(|(s, d)| (s.to_owned(), d.to_owned())));

    // Without `stream`, no notifications.
    c.notifications.clear();
    c.execute(&session, json!({"type": "execute_code", "code": "print quiet"})).await;
    assert!(c.notifications.is_empty());
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn timeouts_per_command_and_per_server() {
    let mut config = ServerConfig::ephemeral();
    config.manager.policy.default_command_timeout_ms = 300;
    let (server, _b) = tempdir_server(config).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    let started = Instant::now();
    let result = c
        .call(
            "session.execute",
            json!({"sessionId": session, "timeoutMs": 100, "command": {"type": "execute_code", "code": "spin"}}),
        )
        .await;
    assert_eq!(result["success"], false, "{result}");
    assert!(result["error"].as_str().unwrap().contains("timed out"), "{result}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The server's default applies when neither request nor session sets one.
    let started = Instant::now();
    let result = c.execute(&session, json!({"type": "execute_code", "code": "spin"})).await;
    assert_eq!(result["success"], false, "{result}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The session's own default beats the server's.
    let created = c.call("session.create", json!({"language": "deno", "defaultTimeoutMs": 100})).await;
    assert_eq!(created["config"]["defaultTimeoutMs"], 100);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn one_shot_runs_leave_nothing_behind() {
    let (server, backend) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let result = c.call("execution.run", json!({"language": "deno", "code": "print hi\nwarn oops"})).await;
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["result"]["exitCode"], 0);
    assert_eq!(result["result"]["stdout"], "hi\n");
    assert_eq!(result["result"]["stderr"], "oops\n");
    assert!(result["durationMs"].is_u64());
    assert_eq!((backend.created(), backend.closes()), (1, 1));
    assert_eq!(c.call("session.list", json!({})).await["count"], 0);
    c.close().await;
    server.shutdown().await;
}
