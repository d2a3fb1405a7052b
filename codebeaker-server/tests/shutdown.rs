//! Graceful shutdown: every session closed and every sandbox removed, running commands
//! answered, clients told with a close frame; and the binary exits 0 on SIGTERM.

mod common;

use std::time::Duration;

use codebeaker::Backend as _;
use codebeaker_server::ServerConfig;
use common::{tempdir_server, Client};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn shutdown_closes_every_session_and_tells_clients() {
    let (server, backend) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let busy = c.create(json!({"language": "deno"})).await;
    for _ in 0..3 {
        c.create(json!({"language": "deno"})).await;
    }
    c.send_json(&json!({"jsonrpc": "2.0", "id": "running", "method": "session.execute",
        "params": {"sessionId": busy, "command": {"type": "execute_code", "code": "sleep 60000"}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(server.shutdown());

    // The running command is answered (cancelled), then the close frame comes.
    let response = c.recv().await;
    assert_eq!(response["id"], "running");
    assert!(response["error"]["code"] == -32004 || response["result"]["success"] == false, "{response}");
    match c.next_message().await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("shutdown in time").unwrap();
    assert_eq!(backend.created(), 4);
    assert_eq!(backend.closes(), 4);
    assert!(backend.live_sandboxes().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_binary_exits_zero_on_sigterm() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--docker-owner", "codebeaker-server-test-sigterm"])
        .args(["--docker-pool-size", "0", "--log-format", "json"])
        .kill_on_drop(true)
        .spawn()
        .expect("start the server binary");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut health = None;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            health = Some(common::health(addr).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = health.expect("the server did not start listening within 30 s");
    assert_eq!(health["status"], "ok");
    assert!(health["backends"].get("docker").is_some() && health["backends"].get("deno").is_some(), "{health}");
    let mut c = Client::connect(&format!("ws://{addr}/ws/jsonrpc")).await;
    assert_eq!(c.call("session.list", json!({})).await["count"], 0);

    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    match c.next_message().await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exit in time").unwrap();
    assert!(exit.success(), "{exit}");
}
