//! Graceful shutdown: every session closed and every sandbox removed, running commands
//! answered, clients told with a close frame; and the binary exits 0 on SIGTERM.

mod common;

use std::time::Duration;

use codebeaker::Backend as _;
use codebeaker_docker::hardening::LABEL_OWNER;
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
async fn shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    let mut config = ServerConfig::ephemeral();
    config.limits.shutdown_grace = Duration::from_millis(500);
    let (server, _backend) = tempdir_server(config).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    c.execute(&session, json!({"type": "write_file", "path": "big.txt", "content": "x".repeat(256 * 1024)})).await;
    // Pipeline far more large answers than the server can buffer, never reading one.
    let flood = tokio::spawn(async move {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "session.execute",
            "params": {"sessionId": session, "command": {"type": "read_file", "path": "big.txt"}}})
        .to_string();
        for _ in 0..20_000 {
            if tokio::time::timeout(Duration::from_secs(1), c.send_text(request.clone())).await.is_err() {
                break; // the server stopped reading: backpressure works
            }
        }
        c
    });
    let flood_started = std::time::Instant::now();
    let c = flood.await.unwrap();
    eprintln!("flood stalled after {:?}", flood_started.elapsed());
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(15), server.shutdown()).await.expect("shutdown despite the stuck client");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    eprintln!("shutdown took {:?}", started.elapsed());
    c.abort();
}

/// Starts the server binary on a free port and waits for `/health`.
async fn start_binary(owner: &str) -> (tokio::process::Child, std::net::SocketAddr, serde_json::Value) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--docker-owner", owner])
        .args(["--docker-pool-size", "0", "--log-format", "json"])
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server binary");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let health = common::health(addr).await;
            // Without a Docker engine the server runs degraded (Deno only).
            let expected = if health["backends"]["docker"] == "ok" { "ok" } else { "degraded" };
            assert_eq!(health["status"], expected, "{health}");
            assert!(health["backends"].get("docker").is_some() && health["backends"].get("deno").is_some(), "{health}");
            return (child, addr, health);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not start listening within 30 s");
}

/// Whether the Docker part of a binary test runs (loud skip, or failure when required).
fn docker_on(health: &serde_json::Value, test: &str) -> bool {
    if health["backends"]["docker"] == "ok" {
        return true;
    }
    if std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: CODEBEAKER_REQUIRE_DOCKER=1 but the server reports {health}");
    }
    eprintln!("SKIPPED (Docker part of {test}): {health}");
    false
}

#[tokio::test]
async fn the_binary_exits_zero_on_sigterm_and_removes_its_sandboxes() {
    const OWNER: &str = "codebeaker-server-test-sigterm";
    let (mut child, addr, health) = start_binary(OWNER).await;
    let mut c = Client::connect(&format!("ws://{addr}/ws/jsonrpc")).await;
    assert_eq!(c.call("session.list", json!({})).await["count"], 0);
    let docker = docker_on(&health, "the_binary_exits_zero_on_sigterm_and_removes_its_sandboxes");
    if docker {
        let created = c.call("session.create", json!({"language": "python"})).await;
        assert_eq!(containers(OWNER), [created["containerId"].as_str().unwrap().to_owned()]);
    }
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(status.success());
    match c.next_message().await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exit in time").unwrap();
    assert!(exit.success(), "{exit}");
    if docker {
        assert!(containers(OWNER).is_empty(), "containers left behind after the shutdown");
    }
}

#[tokio::test]
async fn the_binary_removes_sandboxes_left_by_a_crashed_run() {
    const OWNER: &str = "codebeaker-server-test-crash";
    let (mut child, addr, health) = start_binary(OWNER).await;
    if !docker_on(&health, "the_binary_removes_sandboxes_left_by_a_crashed_run") {
        return;
    }
    let mut c = Client::connect(&format!("ws://{addr}/ws/jsonrpc")).await;
    c.call("session.create", json!({"language": "python"})).await;
    child.kill().await.expect("SIGKILL");
    assert_eq!(containers(OWNER).len(), 1, "the crashed run should leave its container");
    let (mut child, _, _) = start_binary(OWNER).await;
    assert!(containers(OWNER).is_empty(), "the next run did not remove the leftover");
    child.kill().await.expect("SIGKILL");
}

/// Ids of the containers (any state) labelled with `owner`, by the docker CLI.
fn containers(owner: &str) -> Vec<String> {
    let output = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("label={LABEL_OWNER}={owner}")])
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
}
