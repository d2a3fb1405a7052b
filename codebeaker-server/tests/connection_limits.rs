//! What one connection can make the server hold, over a real WebSocket: idle connections
//! are closed with a reason (pings and running requests count as activity), and a client
//! that never reads its answers cannot grow server memory past the outbound limit.
//!
//! Protocol mechanics only, so these run on the temp-dir test backend.

mod common;

use std::time::Duration;

use codebeaker_server::ServerConfig;
use common::{tempdir_server, Client};
use futures::SinkExt as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn idle_after(idle: Duration) -> ServerConfig {
    let mut config = ServerConfig::ephemeral();
    config.limits.connection_idle = idle;
    config
}

#[tokio::test]
async fn idle_connections_are_closed_with_a_reason() {
    let (server, _b) = tempdir_server(idle_after(Duration::from_secs(1))).await;
    let mut idle = Client::connect(&server.ws_url()).await;
    let mut pinging = Client::connect(&server.ws_url()).await;
    let mut working = Client::connect(&server.ws_url()).await;
    let session = working.create(json!({"language": "deno"})).await;
    // A command running longer than the idle time keeps its connection open.
    working
        .send_json(&json!({"jsonrpc": "2.0", "id": "long", "method": "session.execute",
            "params": {"sessionId": session, "command": {"type": "execute_code", "code": "sleep 2500\nprint done"}}}))
        .await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        pinging.send_message(Message::Ping(b"still here".to_vec().into())).await;
    }
    match idle.next_message().await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Away);
            assert!(frame.reason.contains("idle"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Pings counted as activity.
    assert_eq!(pinging.next_message().await, Some(Message::Pong(b"still here".to_vec().into())));
    assert_eq!(pinging.call("session.list", json!({})).await["count"], 1);
    let answer = working.response_to(&json!("long")).await;
    assert_eq!(answer["result"]["result"], "done", "{answer}");
    pinging.close().await;
    working.close().await;
    server.shutdown().await;
}

/// A memory figure of this process (server and client), in KiB: `VmRSS` (resident now)
/// or `VmHWM` (the peak resident size so far).
fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_grow_server_memory() {
    let mut config = ServerConfig::ephemeral();
    config.limits.max_outbound_bytes = 32 * 1024 * 1024;
    let (server, _b) = tempdir_server(config).await;
    let mut setup = Client::connect(&server.ws_url()).await;
    let session = setup.create(json!({"language": "deno"})).await;
    // 4 MiB of control bytes: valid UTF-8 that JSON escapes to 6 bytes each (24 MiB per answer).
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD.encode(vec![1u8; 4 * 1024 * 1024]);
    let written = setup
        .execute(&session, json!({"type": "write_file", "path": "blob", "content": content, "encoding": "base64"}))
        .await;
    assert_eq!(written["success"], true, "{written}");
    let before = memory_kib("VmHWM");

    // 30 pipelined reads would be 720 MiB of answers; the client reads none of them.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await.expect("connect");
    for id in 0..30 {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "session.execute",
            "params": {"sessionId": session, "command": {"type": "read_file", "path": "blob"}}});
        if ws.send(Message::text(request.to_string())).await.is_err() {
            break; // closed by the server already
        }
    }
    // A command queued behind the 30 reads: when it is answered, all of them have run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let marker = setup.execute(&session, json!({"type": "write_file", "path": "marker", "content": "ok"})).await;
    assert_eq!(marker["success"], true, "{marker}");
    let grown_mib = memory_kib("VmHWM").saturating_sub(before) / 1024;
    eprintln!("server RSS grew by {grown_mib} MiB while the client read nothing");
    assert!(grown_mib < 400, "the server grew by {grown_mib} MiB for a client that reads nothing");

    // Other clients never noticed.
    let other = setup.create(json!({"language": "deno"})).await;
    let small = setup.execute(&other, json!({"type": "write_file", "path": "x", "content": "ok"})).await;
    assert_eq!(small["success"], true, "{small}");
    // The reader that never read was closed: its stream ends (with a close frame saying
    // why, if the frame got through before the socket was dropped).
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        use futures::StreamExt as _;
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => return Some(frame),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the server closes a connection that does not read");
    if let Some(frame) = ended {
        assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");
        assert!(frame.reason.contains("max-outbound-bytes"), "{}", frame.reason);
    }
    setup.close().await;
    server.shutdown().await;
}
