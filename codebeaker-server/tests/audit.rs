//! `--audit-log` over the real server binary: one JSON line per request with tenant,
//! remote, method, session, command type, outcome and duration; no code or file content
//! unless `--audit-log-payloads`; and a log in a read-only directory or on a full disk
//! never stops the server (the losses are counted in `/metrics`).

mod common;
mod mcp_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Client;
use mcp_support::{http, Spawned};
use serde_json::{json, Value};

const CODE_MARKER: &str = "CODE_MARKER_1f3a";
const FILE_MARKER: &str = "FILE_MARKER_9c2e";

/// Create, run code, write a file, fail a read, close: as tenant alice.
async fn workload(server: &Spawned) -> String {
    let mut client = Client::connect(&format!("{}?token=alice-token-1", server.ws_url())).await;
    let session = client.create(json!({"language": "deno"})).await;
    let code = format!("console.log('{CODE_MARKER}'.length)");
    let ran = client.execute(&session, json!({"type": "execute_code", "code": code})).await;
    assert_eq!(ran["success"], true, "{ran}");
    let wrote = client.execute(&session, json!({"type": "write_file", "path": "a.txt", "content": FILE_MARKER})).await;
    assert_eq!(wrote["success"], true, "{wrote}");
    let missing = client.execute(&session, json!({"type": "read_file", "path": "missing.txt"})).await;
    assert_eq!(missing["success"], false, "{missing}");
    let (code, _) = client.call_err("session.close", json!({"sessionId": "no-such-session"})).await;
    assert_eq!(code, -32001);
    client.call("session.close", json!({"sessionId": session})).await;
    client.close().await;
    session
}

fn keys_file(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    std::fs::write(&keys, "alice alice-token-1\n").expect("keys file");
    keys
}

async fn read_lines(path: &Path, at_least: usize) -> Vec<Value> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= at_least {
            return text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {at_least} lines in {}: {:?}", path.display(), std::fs::read_to_string(path));
}

#[tokio::test]
async fn audit_lines_name_who_did_what_without_payloads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let keys = keys_file(dir.path());
    let server = Spawned::start(&["--audit-log", log.to_str().unwrap(), "--api-keys", keys.to_str().unwrap()]).await;
    let session = workload(&server).await;
    let lines = read_lines(&log, 6).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(CODE_MARKER) && !text.contains(FILE_MARKER), "payloads leaked:\n{text}");
    for line in &lines {
        assert_eq!(line["tenant"], "alice", "{line}");
        assert!(line["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{line}");
        assert!(line["durationMs"].as_u64().is_some(), "{line}");
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
        assert!(line.get("payload").is_none(), "{line}");
    }
    let find = |method: &str, command: Option<&str>| {
        lines
            .iter()
            .find(|l| l["method"] == method && l["command"].as_str() == command)
            .unwrap_or_else(|| panic!("no {method} {command:?} line in {lines:?}"))
    };
    assert_eq!(find("session.create", None)["session"], session.as_str());
    assert_eq!(find("session.create", None)["outcome"], "ok");
    let code = find("session.execute", Some("execute_code"));
    assert_eq!((code["session"].as_str(), code["outcome"].as_str()), (Some(session.as_str()), Some("ok")));
    assert_eq!(find("session.execute", Some("write_file"))["outcome"], "ok");
    assert_eq!(find("session.execute", Some("read_file"))["outcome"], "failed");
    let closes: Vec<&Value> = lines.iter().filter(|l| l["method"] == "session.close").collect();
    assert!(
        closes.iter().any(|l| l["outcome"] == "session_not_found" && l["session"] == "no-such-session"),
        "{closes:?}"
    );
    assert!(closes.iter().any(|l| l["outcome"] == "ok" && l["session"] == session.as_str()), "{closes:?}");
    server.stop().await;
}

#[tokio::test]
async fn payloads_only_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let keys = keys_file(dir.path());
    let args = ["--audit-log", log.to_str().unwrap(), "--audit-log-payloads", "--api-keys", keys.to_str().unwrap()];
    let server = Spawned::start(&args).await;
    workload(&server).await;
    read_lines(&log, 6).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(CODE_MARKER) && text.contains(FILE_MARKER), "{text}");
    server.stop().await;
}

/// A directory the server cannot write into: a read-only tmpfs when this test may mount
/// (root), else a 0555 directory (which binds everyone but root).
struct ReadOnlyDir {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl ReadOnlyDir {
    fn new(options: &str) -> ReadOnlyDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs", dir.path().to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        ReadOnlyDir { dir, mounted }
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
        }
    }
}

async fn audit_write_errors(server: &Spawned) -> f64 {
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.expect("scrape");
    metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("codebeaker_audit_write_errors_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no audit write errors metric:\n{}", metrics.body))
}

async fn server_keeps_serving_with_an_unwritable_log(log: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys_file(dir.path());
    let server = Spawned::start(&["--audit-log", log.to_str().unwrap(), "--api-keys", keys.to_str().unwrap()]).await;
    workload(&server).await;
    // Every request still answered; the lost records are counted.
    let mut errors = 0.0;
    for _ in 0..100 {
        errors = audit_write_errors(&server).await;
        if errors >= 6.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors >= 6.0, "audit write errors counted: {errors}");
    let health = http(server.addr, "GET", "/health", &[], "").await.expect("health");
    assert_eq!(health.status, 200, "{health:?}");
    workload(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_read_only_log_directory_never_stops_the_server() {
    let read_only = ReadOnlyDir::new("ro,size=1m");
    server_keeps_serving_with_an_unwritable_log(&read_only.dir.path().join("audit.jsonl")).await;
}

#[tokio::test]
async fn a_full_disk_never_stops_the_server() {
    let full = ReadOnlyDir::new("size=64k");
    if !full.mounted {
        eprintln!("SKIPPED a_full_disk_never_stops_the_server: cannot mount a small tmpfs (not root)");
        return;
    }
    // Fill the disk, then let the server try to log onto it.
    let filler = full.dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1024 * 1024]);
    let log = full.dir.path().join("audit.jsonl");
    std::fs::write(&log, "").ok();
    server_keeps_serving_with_an_unwritable_log(&log).await;
}
