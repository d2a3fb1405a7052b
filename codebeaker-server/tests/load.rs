//! Many clients at once: 100 concurrent connections each creating a Deno session, running
//! code and closing it all succeed, and nothing leaks (sessions, sandboxes, connections).
//! A smaller Docker round checks the same on containers.

mod common;

use std::time::{Duration, Instant};

use codebeaker_server::ServerConfig;
use common::{health, real_server, succeeded, Client};
use serde_json::json;

async fn client_round(url: String, language: &'static str, i: usize, code: String, expected: String) -> Duration {
    let started = Instant::now();
    let mut c = Client::connect(&url).await;
    let session = c.create(json!({"language": language})).await;
    let ran = c.execute(&session, json!({"type": "execute_code", "code": code})).await;
    assert_eq!(succeeded(&ran), &json!(expected), "client {i}: {ran}");
    let closed = c.call("session.close", json!({"sessionId": session})).await;
    assert_eq!(closed["closed"], true, "client {i}");
    c.close().await;
    started.elapsed()
}

async fn assert_nothing_leaked(server: &common::RealServer) {
    let manager = server.handle.manager();
    assert_eq!(manager.count(), 0, "sessions left open");
    for backend in manager.backends() {
        let live = backend.live_sandboxes().await.expect("live sandboxes");
        assert!(live.is_empty(), "{} still holds sandboxes: {live:?}", backend.name());
    }
    assert_eq!(health(server.handle.local_addr()).await["sessions"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_deno_clients() {
    let server = real_server("load-deno", ServerConfig::ephemeral()).await;
    server.require_deno();
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let code = format!("const n: number = {i};\nconsole.log(`client ${{n * 2}}`);");
            tokio::spawn(client_round(server.handle.ws_url(), "deno", i, code, format!("client {}", i * 2)))
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.expect("client task"));
    }
    eprintln!("100 Deno clients: {:?} in all, slowest client {slowest:?}", started.elapsed());
    assert_nothing_leaked(&server).await;
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_docker_clients() {
    let server = real_server("load-docker", ServerConfig::ephemeral()).await;
    if !server.docker_or_skip("concurrent_docker_clients") {
        return server.handle.shutdown().await;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let code = format!("print('client', {i} * 2)");
            tokio::spawn(client_round(server.handle.ws_url(), "python", i, code, format!("client {}", i * 2)))
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    eprintln!("8 Docker clients: {:?}", started.elapsed());
    assert_nothing_leaked(&server).await;
    server.handle.shutdown().await;
}
