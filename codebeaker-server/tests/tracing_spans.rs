//! One command can be followed end to end in the JSON logs of the real binary: its
//! events carry the span list connection (peer, tenant) > request (id, method) > the
//! manager's command span (session, kind).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Client;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt as _;

#[tokio::test]
async fn a_commands_log_lines_carry_connection_request_and_command_spans() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "carol carol-token-0003\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--backends", "deno", "--log-format", "json"])
        .args(["--deno-pool-size", "0", "--api-keys", keys.to_str().unwrap()])
        .env("RUST_LOG", "codebeaker=debug,codebeaker_server=debug,warn")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server binary");
    let url = format!("ws://127.0.0.1:{port}/ws/jsonrpc?token=carol-token-0003");
    let mut client = None;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            client = Some(Client::connect(&url).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("the server listens within 30 s");
    let session = client.create(json!({"language": "deno"})).await;
    let ran = client.execute(&session, json!({"type": "execute_code", "code": "console.log(6 * 7)"})).await;
    assert_eq!(ran["success"], true, "{ran}");
    client.close().await;
    child.start_kill().expect("stop the server");
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).await.expect("read the logs");
    let _ = child.wait().await;

    let lines: Vec<Value> = stderr.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let traced = lines.iter().find(|line| {
        let names: Vec<&str> =
            line["spans"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
        names.windows(3).any(|w| w == ["connection", "request", "command"])
            && line["spans"].as_array().into_iter().flatten().any(|s| s["session"] == session.as_str())
    });
    let Some(traced) = traced else {
        panic!("no log line of the command carries connection > request > command spans:\n{stderr}");
    };
    let spans = traced["spans"].as_array().unwrap();
    let connection = spans.iter().find(|s| s["name"] == "connection").unwrap();
    assert!(connection["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{traced}");
    assert_eq!(connection["tenant"], "carol", "{traced}");
    let request = spans.iter().find(|s| s["name"] == "request").unwrap();
    assert_eq!(request["method"], "session.execute", "{traced}");
    let command = spans.iter().find(|s| s["name"] == "command").unwrap();
    assert_eq!(command["kind"], "execute_code", "{traced}");
}
