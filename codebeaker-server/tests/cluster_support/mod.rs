//! Clusters of real `codebeaker-server` processes for the tests: a `redis-server` of the
//! test's own and nodes joined to it on loopback.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::{self, Client};

/// Heartbeats of the test clusters: a node is lost 2.5 of them after its last.
pub const HEARTBEAT_MS: u64 = 400;
pub const SECRET: &str = "a-cluster-secret-of-the-tests";

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `redis-server` is installed; fails the test when clients are required.
pub fn redis_or_skip(test: &str) -> bool {
    let found = std::process::Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CODEBEAKER_REQUIRE_CLIENTS").as_deref() == Ok("1") {
            panic!("{test}: redis-server is not installed (apt-get install redis-server)");
        }
        eprintln!("SKIPPED {test}: redis-server is not installed; set CODEBEAKER_REQUIRE_CLIENTS=1 to fail instead");
    }
    found
}

/// A `redis-server` on a port of its own, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut redis = Redis { port: free_port(), child: None };
        redis.restart().await;
        redis
    }

    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not listen within 5 s");
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// One node: a server process.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    pub args: Vec<String>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn ws(&self) -> String {
        format!("ws://{}/ws/jsonrpc", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws()).await
    }

    /// Starts a node of the cluster in `redis`, its containers labelled `owner`.
    pub async fn start(redis: &Redis, dir: &Path, owner: &str, extra: &[&str]) -> Node {
        let secret = dir.join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--node-url".into(),
            format!("ws://127.0.0.1:{port}"),
            "--cluster-redis".into(),
            redis.url(),
            "--cluster-secret-file".into(),
            secret.display().to_string(),
            "--cluster-heartbeat-ms".into(),
            HEARTBEAT_MS.to_string(),
            "--docker-owner".into(),
            format!("codebeaker-cluster-test-{owner}"),
            "--docker-pool-size".into(),
            "0".into(),
            "--snapshot-dir".into(),
            dir.join(format!("snapshots-{owner}")).display().to_string(),
            "--log-format".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Node::spawn(args).await
    }

    pub async fn spawn(args: Vec<String>) -> Node {
        let port: u16 = args[1].rsplit(':').next().unwrap().parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_codebeaker-server"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a node");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Node { child, addr, args };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("a node did not listen within 30 s");
    }

    /// `GET /health`.
    pub async fn health(&self) -> Value {
        let (_, body) = common::raw_http(self.addr, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("health is not JSON ({e}): {body}"))
    }

    /// Waits until this node sees `urls` live (and only those live).
    pub async fn wait_for_live(&self, urls: &[String]) {
        let mut wanted: Vec<String> = urls.to_vec();
        wanted.sort();
        let mut last = Value::Null;
        for _ in 0..150 {
            last = self.health().await;
            let mut live: Vec<String> = last["cluster"]["nodes"]
                .as_array()
                .map(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| n["state"] == "live")
                        .map(|n| n["url"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            live.sort();
            if live == wanted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not see {wanted:?} live within 15 s: {last}", self.url());
    }

    /// Kills the process at once (SIGKILL): no goodbye to the cluster.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill -9 a node");
    }

    /// Stops it as an operator would (SIGTERM): its sessions and containers are removed.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}
