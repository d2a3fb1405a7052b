//! The `process.*` methods over the WebSocket, on the temp-dir test backend's script
//! processes (the mechanics: start, attach and replay after a reconnect, stdin, signals,
//! wait, list, many attachments at once). The Docker backend's real processes and
//! terminals are tested in `real_backends.rs`.

mod common;

use std::collections::HashMap;

use codebeaker_server::ServerConfig;
use common::{tempdir_server, Client};
use serde_json::{json, Value};

/// The script lines of a process printing `tick 1` … `tick n`, one every `ms`.
fn ticks(n: usize, ms: u64) -> Vec<String> {
    (1..=n).flat_map(|i| [format!("print tick {i}"), format!("sleep {ms}")]).collect()
}

async fn start(client: &mut Client, session: &str, lines: &[String]) -> u64 {
    let started = client
        .call("process.start", json!({"sessionId": session, "command": {"commandName": "script", "args": lines}}))
        .await;
    started["pid"].as_u64().expect("pid")
}

/// Reads notifications (also those already kept aside) until `pid`'s `process.exit`:
/// its stdout text, checking each chunk's offset follows the previous one, and the exit.
async fn output_until_exit(client: &mut Client, session: &str, pid: u64, mut offset: u64) -> (String, Value) {
    let mut text = String::new();
    let mut pending: Vec<Value> = std::mem::take(&mut client.notifications);
    pending.reverse();
    loop {
        let message = match pending.pop() {
            Some(message) => message,
            None => client.recv().await,
        };
        let params = &message["params"];
        if params["pid"].as_u64() != Some(pid) || params["sessionId"] != session {
            continue;
        }
        match message["method"].as_str() {
            Some("process.output") => {
                assert_eq!(params["stream"], "stdout", "{message}");
                assert_eq!(params["offset"].as_u64(), Some(offset), "each byte once, in order: {message}");
                let data = params["data"].as_str().expect("data");
                offset += data.len() as u64;
                text.push_str(data);
            }
            Some("process.exit") => return (text, params.clone()),
            _ => panic!("unexpected {message}"),
        }
    }
}

#[tokio::test]
async fn a_reconnected_client_replays_every_tick_once_then_the_exit() {
    let (handle, _) = tempdir_server(ServerConfig::ephemeral()).await;
    let url = handle.ws_url();
    let mut client = Client::connect(&url).await;
    let session = client.create(json!({"language": "deno"})).await;
    let lines = ticks(30, 100);
    let pid = start(&mut client, &session, &lines).await;
    // Five ticks live, then the connection drops.
    let mut seen = String::new();
    while seen.matches("tick").count() < 5 {
        let message = client.recv().await;
        assert_eq!(message["method"], "process.output", "{message}");
        seen.push_str(message["params"]["data"].as_str().unwrap());
    }
    client.abort();

    let mut client = Client::connect(&url).await;
    let listed = client.call("process.list", json!({"sessionId": session})).await;
    assert_eq!(listed[0]["pid"].as_u64(), Some(pid), "{listed}");
    assert_eq!(listed[0]["state"], "running", "{listed}");
    assert_eq!(listed[0]["command"], format!("script {}", lines.join(" ")));
    let attached = client.call("process.attach", json!({"sessionId": session, "pid": pid, "fromOffset": 0})).await;
    assert_eq!(attached, json!({"pid": pid, "dropped": 0}));
    let (text, exit) = output_until_exit(&mut client, &session, pid, 0).await;
    let expected: String = (1..=30).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text, expected);
    assert_eq!(exit["exitCode"], 0, "{exit}");
    assert_eq!(exit["signal"], Value::Null, "{exit}");
    let listed = client.call("process.list", json!({"sessionId": session})).await;
    assert_eq!((listed[0]["state"].as_str(), listed[0]["exitCode"].as_i64()), (Some("exited"), Some(0)));
}

#[tokio::test]
async fn stdin_signals_and_wait() {
    let (handle, _) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut client = Client::connect(&handle.ws_url()).await;
    let session = client.create(json!({"language": "deno"})).await;

    let cat = start(&mut client, &session, &["cat".to_owned()]).await;
    let write = json!({"sessionId": session, "pid": cat, "data": "to the end\n"});
    assert_eq!(client.call("process.write", write).await, json!({}));
    client.call("process.closeStdin", json!({"sessionId": session, "pid": cat})).await;
    let waited = client.call("process.wait", json!({"sessionId": session, "pid": cat, "timeoutMs": 10_000})).await;
    assert_eq!(waited["exitCode"], 0, "{waited}");
    let (text, _) = output_until_exit(&mut client, &session, cat, 0).await;
    assert_eq!(text, "to the end\n");

    let sleeper = start(&mut client, &session, &["sleep 60000".to_owned()]).await;
    let (code, error) =
        client.call_err("process.wait", json!({"sessionId": session, "pid": sleeper, "timeoutMs": 50})).await;
    assert_eq!((code, error["kind"].as_str()), (-32603, Some("timed_out")), "{error}");
    assert!(error["data"].as_str().unwrap_or_default().contains("still runs"), "{error}");
    let signal = json!({"sessionId": session, "pid": sleeper, "signal": "TERM"});
    client.call("process.signal", signal).await;
    let waited = client.call("process.wait", json!({"sessionId": session, "pid": sleeper, "timeoutMs": 10_000})).await;
    assert_eq!((waited["exitCode"].as_i64(), waited["signal"].as_str()), (Some(143), Some("TERM")), "{waited}");

    let (code, error) =
        client.call_err("process.signal", json!({"sessionId": session, "pid": 1, "signal": "STOP"})).await;
    assert_eq!(code, -32602, "only TERM, KILL, INT, HUP: {error}");
    let (code, error) =
        client.call_err("process.write", json!({"sessionId": session, "pid": 99999, "data": "x"})).await;
    assert_eq!(code, -32602, "{error}");
    let (code, _) = client.call_err("process.list", json!({"sessionId": "nope"})).await;
    assert_eq!(code, -32001);
    // A terminal where the backend has none: a clear capability error, no hang.
    let pty = json!({"sessionId": session, "command": {"commandName": "script"}, "pty": {"cols": 80, "rows": 24}});
    let (code, error) = client.call_err("process.start", pty).await;
    assert_eq!(code, -32602, "{error}");
    assert!(error["data"].as_str().unwrap_or_default().contains("pty"), "{error}");
}

#[tokio::test]
async fn two_hundred_streams_across_twenty_sessions_on_one_connection() {
    let (handle, _) = tempdir_server(ServerConfig::ephemeral()).await;
    let mut client = Client::connect(&handle.ws_url()).await;
    let mut expected = HashMap::new();
    for _ in 0..20 {
        let session = client.create(json!({"language": "deno"})).await;
        for _ in 0..10 {
            let pid = start(&mut client, &session, &ticks(20, 5)).await;
            expected.insert((session.clone(), pid), String::new());
        }
    }
    let mut exits = 0;
    let mut pending: Vec<Value> = std::mem::take(&mut client.notifications);
    pending.reverse();
    while exits < expected.len() {
        let message = match pending.pop() {
            Some(message) => message,
            None => client.recv().await,
        };
        let params = &message["params"];
        let key = (params["sessionId"].as_str().unwrap().to_owned(), params["pid"].as_u64().unwrap());
        let text = expected.get_mut(&key).expect("a process this connection started");
        match message["method"].as_str() {
            Some("process.output") => {
                assert_eq!(params["offset"].as_u64(), Some(text.len() as u64), "{message}");
                text.push_str(params["data"].as_str().unwrap());
            }
            Some("process.exit") => exits += 1,
            _ => panic!("unexpected {message}"),
        }
    }
    let all: String = (1..=20).map(|i| format!("tick {i}\n")).collect();
    assert!(expected.values().all(|text| *text == all));
}
