//! The protocol's extensions and lifecycle promises on the real backends: streamed output,
//! per-command timeouts that leave the session usable, commands that outlive an abrupt
//! disconnect, and sessions that outlive their connection.

mod common;

use std::time::{Duration, Instant};

use codebeaker_server::ServerConfig;
use common::{real_server, succeeded, Client};
use serde_json::{json, Value};

/// Runs a streamed command and returns the notifications' `(stream, data)` and the envelope.
async fn streamed(c: &mut Client, session: &str, command: Value) -> (Vec<(String, String)>, Value) {
    c.notifications.clear();
    c.send_json(&json!({"jsonrpc": "2.0", "id": "streamed", "method": "session.execute",
        "params": {"sessionId": session, "stream": true, "command": command}}))
        .await;
    let response = c.response_to(&json!("streamed")).await;
    let chunks = c
        .notifications
        .iter()
        .map(|n| {
            assert_eq!(n["method"], "session.output", "{n}");
            assert_eq!((&n["params"]["sessionId"], &n["params"]["requestId"]), (&json!(session), &json!("streamed")));
            (n["params"]["stream"].as_str().unwrap().to_owned(), n["params"]["data"].as_str().unwrap().to_owned())
        })
        .collect();
    (chunks, response["result"].clone())
}

#[tokio::test]
async fn deno_streaming_timeouts_and_disconnects() {
    let server = real_server("real-deno", ServerConfig::ephemeral()).await;
    server.require_deno();
    let mut c = Client::connect(&server.handle.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;

    let code = "console.log('first');\nawait new Promise((r) => setTimeout(r, 100));\nconsole.error('second');";
    let (chunks, envelope) = streamed(&mut c, &session, json!({"type": "execute_code", "code": code})).await;
    assert_eq!(succeeded(&envelope), "first\nsecond");
    let joined: String = chunks.iter().map(|(_, data)| data.as_str()).collect();
    assert_eq!(joined, "first\nsecond\n", "{chunks:?}");
    assert_eq!(chunks.first().map(|(s, _)| s.as_str()), Some("stdout"));
    assert_eq!(chunks.last().map(|(s, _)| s.as_str()), Some("stderr"));

    // A runaway loop is stopped at timeoutMs; the session and its globals live on.
    c.execute(&session, json!({"type": "execute_code", "code": "globalThis.kept = 41;"})).await;
    let started = Instant::now();
    let spun = c
        .call(
            "session.execute",
            json!({"sessionId": session, "timeoutMs": 500, "command": {"type": "execute_code", "code": "while (true) {}"}}),
        )
        .await;
    assert_eq!(spun["success"], false, "{spun}");
    assert!(spun["error"].as_str().unwrap().contains("timed out"), "{spun}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let after = c.execute(&session, json!({"type": "execute_code", "code": "console.log(kept + 1)"})).await;
    assert_eq!(succeeded(&after), "42");

    // A client that vanishes mid-command: the command completes, the session stays.
    c.send_json(&json!({"jsonrpc": "2.0", "id": 1, "method": "session.execute", "params": {"sessionId": session,
        "command": {"type": "execute_code",
                    "code": "await new Promise((r) => setTimeout(r, 300));\nawait Deno.writeTextFile('done.txt', 'yes');"}}}))
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.abort();
    let mut again = Client::connect(&server.handle.ws_url()).await;
    let read = again.execute(&session, json!({"type": "read_file", "path": "done.txt"})).await;
    assert_eq!(succeeded(&read)["content"], "yes");
    again.call("session.close", json!({"sessionId": session})).await;
    again.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn docker_streaming_timeouts_and_disconnects() {
    let server = real_server("real-docker", ServerConfig::ephemeral()).await;
    if !server.docker_or_skip("docker_streaming_timeouts_and_disconnects") {
        return server.handle.shutdown().await;
    }
    let mut c = Client::connect(&server.handle.ws_url()).await;
    let session = c.create(json!({"language": "python"})).await;

    let script =
        "import sys, time\nprint('first', flush=True)\ntime.sleep(0.3)\nprint('second', file=sys.stderr, flush=True)";
    let command = json!({"type": "execute_shell", "commandName": "python3", "args": ["-c", script]});
    let (chunks, envelope) = streamed(&mut c, &session, command).await;
    let shell = succeeded(&envelope);
    assert_eq!((&shell["stdout"], &shell["stderr"]), (&json!("first\n"), &json!("second\n")), "{envelope}");
    let stdout: String = chunks.iter().filter(|(s, _)| s == "stdout").map(|(_, d)| d.as_str()).collect();
    let stderr: String = chunks.iter().filter(|(s, _)| s == "stderr").map(|(_, d)| d.as_str()).collect();
    assert_eq!((stdout.as_str(), stderr.as_str()), ("first\n", "second\n"), "{chunks:?}");

    let started = Instant::now();
    let slept = c
        .call(
            "session.execute",
            json!({"sessionId": session, "timeoutMs": 500,
                   "command": {"type": "execute_shell", "commandName": "sleep", "args": ["30"]}}),
        )
        .await;
    assert_eq!(slept["success"], false, "{slept}");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    let echo = c.execute(&session, json!({"type": "execute_shell", "commandName": "echo", "args": ["alive"]})).await;
    assert_eq!(succeeded(&echo)["stdout"], "alive\n");

    c.send_json(&json!({"jsonrpc": "2.0", "id": 1, "method": "session.execute", "params": {"sessionId": session,
        "command": {"type": "execute_shell", "commandName": "sh", "args": ["-c", "sleep 0.3; echo yes > /workspace/done.txt"]}}}))
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.abort();
    let mut again = Client::connect(&server.handle.ws_url()).await;
    let read = again.execute(&session, json!({"type": "read_file", "path": "done.txt"})).await;
    assert_eq!(succeeded(&read)["content"], "yes\n");
    again.call("session.close", json!({"sessionId": session})).await;
    again.close().await;
    server.handle.shutdown().await;
}

/// The proof on a real container: a process ticking every 100 ms for 3 s, the
/// client dropping its WebSocket after five ticks, reconnecting and replaying from 0:
/// every tick once, in order, then the exit.
#[tokio::test]
async fn docker_process_survives_a_dropped_connection() {
    let server = real_server("real-process", ServerConfig::ephemeral()).await;
    if !server.docker_or_skip("docker_process_survives_a_dropped_connection") {
        return server.handle.shutdown().await;
    }
    let url = server.handle.ws_url();
    let mut c = Client::connect(&url).await;
    let session = c.create(json!({"language": "python"})).await;
    let script = "import time\nfor i in range(1, 31):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.1)";
    let start = json!({"sessionId": session, "command": {"commandName": "python3", "args": ["-c", script]}});
    let pid = c.call("process.start", start).await["pid"].as_u64().expect("pid");
    let mut live = String::new();
    while live.matches("tick").count() < 5 {
        let message = c.recv().await;
        assert_eq!(
            (message["method"].as_str(), message["params"]["pid"].as_u64()),
            (Some("process.output"), Some(pid))
        );
        live.push_str(message["params"]["data"].as_str().unwrap_or_default());
    }
    c.abort();

    let mut c = Client::connect(&url).await;
    let attached = c.call("process.attach", json!({"sessionId": session, "pid": pid, "fromOffset": 0})).await;
    assert_eq!(attached["dropped"], 0, "{attached}");
    let mut text = String::new();
    let exit = loop {
        let message = c.recv().await;
        let params = &message["params"];
        match message["method"].as_str() {
            Some("process.output") => {
                assert_eq!(params["offset"].as_u64(), Some(text.len() as u64), "{message}");
                text.push_str(params["data"].as_str().unwrap_or_default());
            }
            Some("process.exit") => break params.clone(),
            _ => panic!("unexpected {message}"),
        }
    };
    let expected: String = (1..=30).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text, expected);
    assert_eq!((exit["exitCode"].as_i64(), exit["signal"].as_str()), (Some(0), None), "{exit}");
    assert!(exit["usage"]["cpuMs"].is_u64(), "{exit}");
    c.close().await;
    server.handle.shutdown().await;
}
