//! No input crashes the server or disturbs another connection, and every limit answers
//! with a clear error: bad frames, huge frames, giant batches, floods of requests, too
//! many connections, missing tokens, abrupt disconnects.
//!
//! Protocol mechanics only, so these run on the temp-dir test backend.

mod common;

use std::time::Duration;

use codebeaker_server::{Limits, ServerConfig};
use common::{assert_error, health, raw_http, tempdir_server, Client};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn limits(change: impl FnOnce(&mut Limits)) -> ServerConfig {
    let mut config = ServerConfig::ephemeral();
    change(&mut config.limits);
    config
}

#[tokio::test]
async fn binary_frames_and_garbage_get_errors_and_the_connection_lives() {
    let (server, _b) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.send_message(Message::binary(br#"{"jsonrpc":"2.0","id":1,"method":"session.list"}"#.to_vec())).await;
    let response = c.recv().await;
    assert_error(&response, Value::Null, -32600);
    assert!(response["error"]["data"].as_str().unwrap().contains("text frame"), "{response}");

    // Deterministic garbage: every frame is answered, none kills the connection.
    let alphabet: Vec<char> = r#"{}[]",:0123456789.-eEtrufalsn "\ jsonrpc2.0idmethodparams"#.chars().collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..300 {
        let len = (seed % 60) as usize + 1;
        let text: String = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect();
        c.send_text(text.clone()).await;
        // A frame that happens to be a valid notification gets no answer; everything else does.
        if let Some(response) = c.recv_within(Duration::from_millis(200)).await {
            assert!(response.is_object() || response.is_array(), "{text:?} -> {response}");
        }
    }
    c.send_message(Message::Ping(b"hi".to_vec().into())).await;
    assert_eq!(c.next_message().await, Some(Message::Pong(b"hi".to_vec().into())));
    assert_eq!(c.call("session.list", json!({})).await["count"], 0);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn huge_frames_close_only_their_connection_with_a_reason() {
    let (server, _b) = tempdir_server(limits(|l| l.max_message_bytes = 64 * 1024)).await;
    let mut bystander = Client::connect(&server.ws_url()).await;
    let session = bystander.create(json!({"language": "deno"})).await;

    let mut big = Client::connect(&server.ws_url()).await;
    let content = "x".repeat(200 * 1024);
    big.send_json(&json!({"jsonrpc": "2.0", "id": 1, "method": "session.execute",
        "params": {"sessionId": session, "command": {"type": "write_file", "path": "big.txt", "content": content}}}))
        .await;
    match big.next_message().await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Size);
            assert!(frame.reason.contains("65536"), "reason: {}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Just under the limit is fine, and the other connection never noticed.
    let result = bystander
        .execute(&session, json!({"type": "write_file", "path": "ok.txt", "content": "y".repeat(60 * 1024)}))
        .await;
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(bystander.call("session.list", json!({})).await["count"], 1);
    bystander.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn giant_batches_are_bounded() {
    let (server, _b) = tempdir_server(limits(|l| l.max_batch = 100)).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let request = |i: usize| json!({"jsonrpc": "2.0", "id": i, "method": "session.list"});
    c.send_json(&Value::Array((0..5000).map(request).collect())).await;
    let response = c.recv().await;
    assert_error(&response, Value::Null, -32002);
    assert!(response["error"]["data"].as_str().unwrap().contains("5000"), "{response}");
    c.send_json(&Value::Array((0..100).map(request).collect())).await;
    let response = c.recv().await;
    assert_eq!(response.as_array().map(Vec::len), Some(100));
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn in_flight_requests_per_connection_are_capped() {
    let (server, _b) = tempdir_server(limits(|l| l.max_in_flight = 2)).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let a = c.create(json!({"language": "deno"})).await;
    let b = c.create(json!({"language": "deno"})).await;
    for (id, session) in [(1, &a), (2, &b), (3, &a)] {
        c.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "session.execute",
            "params": {"sessionId": session, "command": {"type": "execute_code", "code": "sleep 300"}}}))
            .await;
    }
    let first = c.recv().await;
    assert_error(&first, json!(3), -32002);
    assert!(first["error"]["data"].as_str().unwrap().contains("in flight"), "{first}");
    let mut ids = vec![c.recv().await["id"].clone(), c.recv().await["id"].clone()];
    ids.sort_by_key(|id| id.as_i64());
    assert_eq!(ids, [json!(1), json!(2)]);
    // A batch over the cap gets one limit error per request.
    let batch: Vec<Value> = (10..13).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "session.list"})).collect();
    c.send_json(&Value::Array(batch)).await;
    let response = c.recv().await;
    assert_eq!(response.as_array().map(Vec::len), Some(3), "{response}");
    assert_error(&response[0], json!(10), -32002);
    // Once answered, the places are free again.
    assert_eq!(c.call("session.list", json!({})).await["count"], 2);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn bytes_in_flight_per_connection_are_capped() {
    let (server, _b) = tempdir_server(limits(|l| {
        l.max_message_bytes = 64 * 1024;
        l.max_in_flight_bytes = 100 * 1024;
    }))
    .await;
    let mut c = Client::connect(&server.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": "busy", "method": "session.execute",
        "params": {"sessionId": session, "command": {"type": "execute_code", "code": "sleep 300"}}}))
        .await;
    // Two 60 KiB writes queue behind it: the second would hold more than 100 KiB.
    for id in ["w1", "w2"] {
        c.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "session.execute", "params": {"sessionId": session,
            "command": {"type": "write_file", "path": "big.txt", "content": "z".repeat(60 * 1024)}}}))
            .await;
    }
    let refused = c.recv().await;
    assert_error(&refused, json!("w2"), -32002);
    assert!(refused["error"]["data"].as_str().unwrap().contains("bytes"), "{refused}");
    let mut ids = vec![c.recv().await["id"].clone(), c.recv().await["id"].clone()];
    ids.sort_by_key(|id| id.to_string());
    assert_eq!(ids, [json!("busy"), json!("w1")]);
    // Answered requests give their bytes back.
    let write =
        c.execute(&session, json!({"type": "write_file", "path": "b.txt", "content": "z".repeat(60 * 1024)})).await;
    assert_eq!(write["success"], true);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_limit_get_a_clear_refusal() {
    // Every client here has the same address: let it hold the server's every place.
    let (server, _b) = tempdir_server(limits(|l| {
        l.max_connections = 2;
        l.max_connections_per_address = Some(2);
    }))
    .await;
    let mut first = Client::connect(&server.ws_url()).await;
    let second = Client::connect(&server.ws_url()).await;
    let mut third = Client::connect(&server.ws_url()).await;
    assert_error(&third.recv().await, Value::Null, -32002);
    match third.next_message().await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Again);
            assert!(frame.reason.contains("connections"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // /health still answers when every connection is taken.
    assert_eq!(health(server.local_addr()).await["status"], "ok");
    assert_eq!(first.call("session.list", json!({})).await["count"], 0);
    second.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = Client::connect(&server.ws_url()).await;
    assert_eq!(fourth.call("session.list", json!({})).await["count"], 0);
    first.close().await;
    fourth.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn token_is_required_for_the_upgrade_and_nothing_else_is_touched() {
    let config = ServerConfig { token: Some("s3cret".into()), ..ServerConfig::ephemeral() };
    let (server, backend) = tempdir_server(config).await;
    let addr = server.local_addr();
    let upgrade = |extra: &str, path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    };
    let (status, body) = raw_http(addr, &upgrade("", "/ws/jsonrpc")).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = raw_http(addr, &upgrade("Authorization: Bearer wrong\r\n", "/ws/jsonrpc")).await;
    assert_eq!(status, 401);
    let err = tokio_tungstenite::connect_async(server.ws_url()).await.expect_err("no token");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(backend.created(), 0);

    let mut by_query = Client::connect(&format!("{}?token=s3cret", server.ws_url())).await;
    by_query.create(json!({"language": "deno"})).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = server.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Authorization", "Bearer s3cret".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("bearer header accepted");
    drop(ws);
    // /health needs no token.
    assert_eq!(health(addr).await["sessions"], 1);
    by_query.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_requests_are_answered() {
    let (server, _b) = tempdir_server(ServerConfig::ephemeral()).await;
    let addr = server.local_addr();
    let body = health(addr).await;
    assert_eq!(
        body,
        json!({"status": "ok", "sessions": 0, "backends": {"deno": "ok"}, "details": {"deno": {"state": "ok"}}})
    );
    assert_eq!(raw_http(addr, "GET /nope HTTP/1.1\r\n\r\n").await.0, 404);
    assert_eq!(raw_http(addr, "GET /ws/jsonrpc HTTP/1.1\r\n\r\n").await.0, 426);
    assert_eq!(raw_http(addr, "DELETE /health HTTP/1.1\r\n\r\n").await.0, 405);
    assert_eq!(raw_http(addr, "NOT HTTP AT ALL\r\n\r\n").await.0, 400);
    let huge = format!("GET /health HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(raw_http(addr, &huge).await.0, 431);
    server.shutdown().await;
}

#[tokio::test]
async fn abrupt_disconnect_mid_command_leaves_the_session_usable() {
    let (server, backend) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": 1, "method": "session.execute",
        "params": {"sessionId": session, "command": {"type": "execute_code", "code": "sleep 300\nprint done"}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.abort();

    let mut again = Client::connect(&server.ws_url()).await;
    let list = again.call("session.list", json!({})).await;
    assert_eq!(list["count"], 1, "{list}");
    // Queued behind the abandoned command, which runs to its end.
    let result = again.execute(&session, json!({"type": "execute_code", "code": "print again"})).await;
    assert_eq!(result["result"], "again", "{result}");
    let list = again.call("session.list", json!({})).await;
    assert_eq!(list["sessions"][0]["executionCount"], 2, "{list}");
    assert_eq!(backend.closes(), 0);
    again.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (server, _b) = tempdir_server(limits(|l| l.http_head_timeout = Duration::from_millis(500))).await;
    let mut slow = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a head that never ends holds its socket past the timeout");
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    // Meanwhile and afterwards, others are served.
    assert_eq!(health(server.local_addr()).await["status"], "ok");
    server.shutdown().await;
}

#[tokio::test]
async fn commands_still_queued_when_their_client_leaves_are_given_up() {
    let (server, _b) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    for (id, stream) in [(1, false), (2, false), (3, true), (4, false)] {
        c.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "session.execute", "params": {"sessionId": session,
            "stream": stream, "command": {"type": "execute_code", "code": "sleep 300\nprint ran"}}}))
            .await;
    }
    // A batch queued behind them too.
    let batch: Vec<Value> = (5..7)
        .map(|id| {
            json!({"jsonrpc": "2.0", "id": id, "method": "session.execute",
            "params": {"sessionId": session, "command": {"type": "execute_code", "code": "print batch"}}})
        })
        .collect();
    c.send_json(&Value::Array(batch)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.abort();

    // The running command finishes; the five waiting behind it never run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut again = Client::connect(&server.ws_url()).await;
    let list = again.call("session.list", json!({})).await;
    assert_eq!(list["sessions"][0]["executionCount"], 1, "{list}");
    let result = again.execute(&session, json!({"type": "execute_code", "code": "print next"})).await;
    assert_eq!(result["result"], "next", "{result}");
    again.close().await;
    server.shutdown().await;
}
