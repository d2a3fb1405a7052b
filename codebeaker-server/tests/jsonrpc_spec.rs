//! The JSON-RPC 2.0 specification's own examples (section 7), adapted to CodeBeaker's
//! methods, its edge cases, and every error code of `docs/protocol.md`, over a real WebSocket.
//!
//! These test the protocol's mechanics, so most run on the temp-dir test backend.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use codebeaker::ManagerConfig;
use codebeaker_server::ServerConfig;
use common::{assert_error, tempdir_server, Client};
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(300);

async fn client() -> (Client, codebeaker_server::ServerHandle) {
    let (server, _backend) = tempdir_server(ServerConfig::ephemeral()).await;
    (Client::connect(&server.ws_url()).await, server)
}

#[tokio::test]
async fn call_echoes_string_number_and_null_ids() {
    let (mut c, server) = client().await;
    for id in [json!(1), json!("abc"), json!(-7.5), json!(null), json!(18446744073709551615u64)] {
        c.send_json(&json!({"jsonrpc": "2.0", "method": "session.list", "params": {}, "id": id})).await;
        let response = c.recv().await;
        assert_eq!(response, json!({"jsonrpc": "2.0", "id": id, "result": {"count": 0, "sessions": []}}));
    }
    // Positional params are only meaningful for session.list, which takes none.
    c.send_text(r#"{"jsonrpc": "2.0", "method": "session.list", "params": [], "id": 2}"#).await;
    assert_eq!(c.recv().await["result"]["count"], 0);
    c.send_text(r#"{"jsonrpc": "2.0", "method": "session.close", "params": ["x"], "id": 3}"#).await;
    assert_error(&c.recv().await, json!(3), -32602);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_params_meta_with_a_trace_context_is_taken_out_before_the_method_reads_its_params() {
    let (mut c, server) = client().await;
    // Methods refuse unknown params; `_meta` (W3C trace context) is not one of them, and
    // with traces not exported it changes nothing, valid or not.
    let meta = json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=b"});
    let created = c.call("session.create", json!({"language": "typescript", "_meta": meta})).await;
    let session = created["sessionId"].as_str().expect("sessionId").to_owned();
    let listed = c.call("session.list", json!({"_meta": {"traceparent": "not a trace context"}})).await;
    assert_eq!(listed["count"], 1, "{listed}");
    c.call("session.close", json!({"sessionId": session, "_meta": meta})).await;
    server.shutdown().await;
}

#[tokio::test]
async fn notifications_are_never_answered_even_when_they_fail() {
    let (mut c, server) = client().await;
    c.send_text(r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#).await;
    c.send_text(r#"{"jsonrpc": "2.0", "method": "session.list"}"#).await;
    c.send_text(r#"{"jsonrpc": "2.0", "method": "session.close", "params": {"sessionId": "nope"}}"#).await;
    assert_eq!(c.recv_within(QUIET).await, None);
    // A notification is still executed: this one creates a session.
    c.send_text(r#"{"jsonrpc": "2.0", "method": "session.create", "params": {"language": "deno"}}"#).await;
    let mut count = 0;
    for _ in 0..50 {
        count = c.call("session.list", json!({})).await["count"].as_u64().unwrap();
        if count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count, 1, "the notification's session.create did not run");
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn spec_error_examples() {
    let (mut c, server) = client().await;
    // Non-existent method.
    c.send_text(r#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#).await;
    let response = c.recv().await;
    assert_error(&response, json!("1"), -32601);
    assert_eq!(response["error"]["message"], "Method not found");
    // Invalid JSON.
    c.send_text(r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#).await;
    let response = c.recv().await;
    assert_error(&response, Value::Null, -32700);
    assert_eq!(response["error"]["message"], "Parse error");
    // Invalid Request object.
    c.send_text(r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#).await;
    let response = c.recv().await;
    assert_error(&response, Value::Null, -32600);
    assert_eq!(response["error"]["message"], "Invalid Request");
    // Batch, invalid JSON: one error, not an array.
    c.send_text(
        r#"[
          {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
          {"jsonrpc": "2.0", "method"
        ]"#,
    )
    .await;
    assert_error(&c.recv().await, Value::Null, -32700);
    // Other malformed envelopes: wrong version, missing method, bad id, bad params.
    for (text, id) in [
        (r#"{"jsonrpc": "1.0", "method": "session.list", "id": 4}"#, json!(4)),
        (r#"{"method": "session.list", "id": 5}"#, json!(5)),
        (r#"{"jsonrpc": "2.0", "id": 6}"#, json!(6)),
        (r#"{"jsonrpc": "2.0", "method": "session.list", "id": [1]}"#, Value::Null),
        (r#"{"jsonrpc": "2.0", "method": "session.list", "id": 7, "params": "x"}"#, json!(7)),
        (r#""just a string""#, Value::Null),
        ("42", Value::Null),
        ("null", Value::Null),
    ] {
        c.send_text(text).await;
        assert_error(&c.recv().await, id, -32600);
    }
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn empty_batch_is_one_invalid_request() {
    let (mut c, server) = client().await;
    c.send_text("[]").await;
    let response = c.recv().await;
    assert!(response.is_object(), "expected a single error object, got {response}");
    assert_error(&response, Value::Null, -32600);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_batches_get_one_error_per_element() {
    let (mut c, server) = client().await;
    c.send_text("[1]").await;
    let response = c.recv().await;
    assert_eq!(response.as_array().map(Vec::len), Some(1), "{response}");
    assert_error(&response[0], Value::Null, -32600);
    c.send_text("[1,2,3]").await;
    let response = c.recv().await;
    let items = response.as_array().unwrap_or_else(|| panic!("expected an array, got {response}"));
    assert_eq!(items.len(), 3, "{response}");
    for item in items {
        assert_error(item, Value::Null, -32600);
    }
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mixed_batch_answers_requests_only() {
    let (mut c, server) = client().await;
    c.send_text(
        r#"[
          {"jsonrpc": "2.0", "method": "session.list", "params": {}, "id": "1"},
          {"jsonrpc": "2.0", "method": "session.list", "params": {}},
          {"jsonrpc": "2.0", "method": "session.close", "params": {"sessionId": "gone"}, "id": "2"},
          {"foo": "boo"},
          {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
          {"jsonrpc": "2.0", "method": "session.list", "id": "9"}
        ]"#,
    )
    .await;
    let response = c.recv().await;
    let items = response.as_array().unwrap_or_else(|| panic!("expected an array, got {response}"));
    assert_eq!(items.len(), 5, "{response}");
    let by_id: HashMap<String, &Value> = items.iter().map(|r| (r["id"].to_string(), r)).collect();
    assert_eq!(by_id[r#""1""#]["result"]["count"], 0);
    assert_eq!(by_id[r#""9""#]["result"]["count"], 0);
    assert_error(by_id[r#""2""#], json!("2"), -32001);
    assert_error(by_id[r#""5""#], json!("5"), -32601);
    assert_error(by_id["null"], Value::Null, -32600);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn batch_of_notifications_gets_no_reply() {
    let (mut c, server) = client().await;
    c.send_text(
        r#"[
          {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
          {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
          {"jsonrpc": "2.0", "method": "session.list"}
        ]"#,
    )
    .await;
    assert_eq!(c.recv_within(QUIET).await, None);
    assert_eq!(c.call("session.list", json!({})).await["count"], 0);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
    let (mut c, server) = client().await;
    for text in [
        "[".repeat(1_000_000),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"session.list","params":{{"a":{}1{}}}}}"#,
            r#"{"a":"#.repeat(50_000),
            "}".repeat(50_000)
        ),
    ] {
        c.send_text(text).await;
        let response = c.recv().await;
        assert_error(&response, Value::Null, -32700);
        assert!(response["error"]["data"].as_str().unwrap().contains("nested deeper"), "{response}");
    }
    // Nesting within the limit is fine, and brackets inside strings do not count.
    let content = "[".repeat(10_000);
    c.send_json(&json!({"jsonrpc":"2.0","id":2,"method":"session.list","params":{}, "x": content})).await;
    assert_eq!(c.recv().await["result"]["count"], 0);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn every_error_code_of_the_protocol() {
    let config = ServerConfig {
        manager: ManagerConfig { max_sessions: 1, ..ManagerConfig::default() },
        ..ServerConfig::ephemeral()
    };
    let (server, _backend) = tempdir_server(config).await;
    let mut c = Client::connect(&server.ws_url()).await;

    // -32602: missing field, wrong type, unknown language, unknown command type, unknown field.
    for (method, params, needle) in [
        ("session.create", json!({}), "language"),
        ("session.create", json!({"language": "cobol"}), "cobol"),
        ("session.create", json!({"language": "deno", "memoryLimitMB": "lots"}), "invalid type"),
        ("session.create", json!({"language": "deno", "memoryLimitMB": 1}), "memoryLimitMB"),
        ("session.create", json!({"language": "deno", "idleTimeoutMinute": 5}), "idleTimeoutMinute"),
        ("session.execute", json!({"sessionId": "s"}), "command"),
        ("session.execute", json!({"sessionId": "s", "command": {"type": "format_disk"}}), "format_disk"),
        ("session.execute", json!({"sessionId": "s", "command": {"type": "read_file"}}), "path"),
        ("session.execute", json!({"sessionId": 5, "command": {"type": "read_file", "path": "x"}}), "invalid type"),
        (
            "session.execute",
            json!({"sessionId": "s", "command": {"type": "execute_code", "code": "1"}, "timeoutMs": 0}),
            "timeoutMs",
        ),
        ("session.close", json!({}), "sessionId"),
        ("execution.run", json!({"language": "deno"}), "code"),
        ("execution.run", json!({"language": "deno", "code": "1", "timeoutMs": 3_600_001}), "timeoutMs"),
        ("session.list", json!({"verbose": true}), "verbose"),
    ] {
        let (code, error) = c.call_err(method, params.clone()).await;
        assert_eq!(code, -32602, "{method} {params}: {error}");
        assert!(error["data"].as_str().unwrap().contains(needle), "{method} {params}: {error}");
    }

    // -32001: unknown session, for execute and close.
    let (code, _) = c.call_err("session.close", json!({"sessionId": "nope"})).await;
    assert_eq!(code, -32001);
    let (code, _) = c
        .call_err("session.execute", json!({"sessionId": "nope", "command": {"type": "list_directory", "path": "."}}))
        .await;
    assert_eq!(code, -32001);

    // -32003: no enabled backend runs the language.
    let (code, error) = c.call_err("session.create", json!({"language": "python"})).await;
    assert_eq!(code, -32003, "{error}");

    // -32002: the session limit.
    let session = c.create(json!({"language": "deno"})).await;
    // The timeout range is the policy's, in the words the SDK returns.
    let (code, error) = c
        .call_err(
            "session.execute",
            json!({"sessionId": session, "timeoutMs": 3_600_001, "command": {"type": "list_directory", "path": "."}}),
        )
        .await;
    assert_eq!(code, -32602, "{error}");
    let sdk = codebeaker::Policy::default().command_timeout("timeoutMs", 3_600_001).unwrap_err();
    assert!(error["data"].as_str().unwrap().contains(&sdk.to_string()), "{error} vs {sdk}");
    let (code, error) = c.call_err("session.create", json!({"language": "deno"})).await;
    assert_eq!(code, -32002, "{error}");

    // -32004: a command waiting behind another when its session closes.
    c.send_json(&json!({"jsonrpc": "2.0", "id": "slow", "method": "session.execute",
        "params": {"sessionId": session, "command": {"type": "execute_code", "code": "sleep 2000"}}}))
        .await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": "waiting", "method": "session.execute",
        "params": {"sessionId": session, "command": {"type": "execute_code", "code": "print never"}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": "close", "method": "session.close", "params": {"sessionId": session}}))
        .await;
    let mut seen = HashMap::new();
    for _ in 0..3 {
        let response = c.recv().await;
        seen.insert(response["id"].as_str().unwrap().to_owned(), response);
    }
    assert_eq!(seen["close"]["result"], json!({"sessionId": session, "closed": true}));
    assert_error(&seen["waiting"], json!("waiting"), -32004);
    assert!(seen["slow"].get("error").is_some(), "{}", seen["slow"]);
    // Closing again: -32001.
    let (code, _) = c.call_err("session.close", json!({"sessionId": session})).await;
    assert_eq!(code, -32001);
    c.close().await;
    server.shutdown().await;
}
