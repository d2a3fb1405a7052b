//! README command 1 as a user runs it: `./scripts/serve.sh` prepares Docker (engine,
//! images, agent; all cached here, so this is cheap) and serves python over the
//! WebSocket; and a server whose agent is missing says so in `/health` and its start-up
//! log, naming the script that fixes it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use codebeaker_docker::hardening::LABEL_OWNER;
use common::Client;
use serde_json::{json, Value};

/// How long serve.sh may take to get both backends ok: everything is built already when
/// this runs (the README's test command builds images and agent first); a stale agent
/// build is rebuilt, which takes a few minutes on 2 cores.
const READY_WITHIN: Duration = Duration::from_secs(600);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn free_addr() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr")
}

/// `GET /health`, or `None` while nothing listens.
async fn try_health(addr: std::net::SocketAddr) -> Option<Value> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let (_, body) = common::raw_http(addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    serde_json::from_str(&body).ok()
}

fn engine_answers() -> bool {
    std::process::Command::new("docker").arg("info").output().is_ok_and(|out| out.status.success())
}

fn containers(owner: &str) -> Vec<String> {
    let output = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={LABEL_OWNER}={owner}")])
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
}

#[tokio::test]
async fn serve_sh_prepares_docker_and_serves_python() {
    const OWNER: &str = "codebeaker-server-test-serve-sh";
    if !engine_answers() {
        assert_ne!(
            std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref(),
            Ok("1"),
            "CODEBEAKER_REQUIRE_DOCKER=1 but no Docker engine answers"
        );
        eprintln!("SKIPPED (serve_sh_prepares_docker_and_serves_python): no Docker engine answers");
        return;
    }
    let addr = free_addr();
    let log_path = std::env::temp_dir().join(format!("codebeaker-serve-sh-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("log file");
    // The server binary this test run built: serve.sh prepares Docker, then execs it
    // with the flags given.
    let mut child = tokio::process::Command::new(repo_root().join("scripts/serve.sh"))
        .args(["--listen", &addr.to_string(), "--docker-owner", OWNER, "--log-format", "json"])
        .env("CODEBEAKER_SERVER_BIN", env!("CARGO_BIN_EXE_codebeaker-server"))
        .env_remove("CODEBEAKER_AGENT")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start scripts/serve.sh");
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let started = Instant::now();
    let health = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("serve.sh exited ({status}) before serving:\n{}", log_text());
        }
        if let Some(health) = try_health(addr).await {
            if health["details"]["docker"]["state"] == "ok" && health["details"]["deno"]["state"] == "ok" {
                break health;
            }
            assert!(started.elapsed() < READY_WITHIN, "not ok within {READY_WITHIN:?}: {health}\n{}", log_text());
        }
        assert!(started.elapsed() < READY_WITHIN, "serve.sh did not listen within {READY_WITHIN:?}:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["backends"]["docker"], "ok", "{health}");

    let mut c = Client::connect(&format!("ws://{addr}/ws/jsonrpc")).await;
    let session = c.create(json!({"language": "python"})).await;
    let ran = c.execute(&session, json!({"type": "execute_code", "code": "print(6 * 7)"})).await;
    assert_eq!((&ran["success"], &ran["result"]), (&json!(true), &json!("42")), "{ran}");
    c.call("session.close", json!({"sessionId": session})).await;
    c.close().await;

    // serve.sh became the server (exec): SIGTERM stops it, and it removes its sandboxes.
    let pid = child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exit in time").unwrap();
    assert!(exit.success(), "{exit}\n{}", log_text());
    assert!(containers(OWNER).is_empty(), "containers left behind: {:?}", containers(OWNER));
    let _ = std::fs::remove_file(&log_path);
}

#[tokio::test]
async fn a_missing_agent_is_reported_with_its_fix() {
    let addr = free_addr();
    let missing = std::env::temp_dir().join("codebeaker-no-such-agent");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-server"))
        .args(["--listen", &addr.to_string(), "--docker-owner", "codebeaker-server-test-no-agent"])
        .args(["--docker-pool-size", "0", "--log-format", "json"])
        .env("CODEBEAKER_AGENT", &missing)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server binary");
    let started = Instant::now();
    let health = loop {
        if let Some(health) = try_health(addr).await {
            break health;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let docker = &health["details"]["docker"];
    assert_eq!(docker["state"], "unavailable", "{health}");
    assert_eq!(docker["fix"], "scripts/build-agent.sh", "{health}");
    let reason = docker["reason"].as_str().expect("reason");
    assert!(reason.contains(&missing.display().to_string()), "the reason names the missing file: {reason}");
    // Deno still serves; the old field still says the same in one string.
    assert_eq!(health["details"]["deno"]["state"], "ok", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["backends"]["docker"].as_str().is_some_and(|s| s.starts_with("unavailable: ")), "{health}");

    // The start-up log says the same.
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut log).await.expect("read the log");
    let _ = child.wait().await;
    let line = log.lines().find(|l| l.contains("backend disabled")).unwrap_or_else(|| panic!("no log line:\n{log}"));
    let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(line["fix"], "scripts/build-agent.sh", "{line}");
    assert_eq!(line["backend"], "docker", "{line}");
}
