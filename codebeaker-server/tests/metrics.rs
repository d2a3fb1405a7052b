//! `GET /metrics` of the real server binary: the optional bearer token, the OpenMetrics
//! body parsed by Prometheus' own Python parser (`pip install prometheus-client`), and
//! counters that move as sessions and commands run over the WebSocket.

mod common;
mod mcp_support;

use std::collections::HashMap;

use common::Client;
use mcp_support::{http, python_with, run_python, Spawned};
use serde_json::{json, Value};

const TOKEN: &str = "scrape-secret-1";

/// `name{labels}` → value, from the body's sample lines.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(key, value)| Some((key.to_owned(), value.parse().ok()?)))
        .collect()
}

async fn scrape(server: &Spawned) -> String {
    let auth = format!("Bearer {TOKEN}");
    let response = http(server.addr, "GET", "/metrics", &[("Authorization", &auth)], "").await.expect("scrape");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.header("content-type").is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{response:?}"
    );
    response.body
}

#[tokio::test]
async fn metrics_need_their_token_and_count_sessions_and_commands() {
    let server = Spawned::start(&["--metrics-token", TOKEN]).await;
    let refused = http(server.addr, "GET", "/metrics", &[], "").await.expect("request");
    assert_eq!(refused.status, 401, "{refused:?}");
    let wrong = http(server.addr, "GET", "/metrics", &[("Authorization", "Bearer nope")], "").await.expect("request");
    assert_eq!(wrong.status, 401, "{wrong:?}");

    let before = samples(&scrape(&server).await);
    assert_eq!(before.get("codebeaker_connections{transport=\"websocket\"}"), Some(&0.0), "{before:?}");
    // The Deno backend's spare workers show as its warm pool once started.
    let mut spares = None;
    for _ in 0..100 {
        spares = samples(&scrape(&server).await)
            .get("codebeaker_warm_pool_size{backend=\"deno\",language=\"typescript\"}")
            .copied();
        if spares.is_some_and(|n| n > 0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(spares.is_some_and(|n| n > 0.0), "no Deno spares in the warm-pool gauge: {spares:?}");
    assert_eq!(before.get("codebeaker_requests_refused_total{reason=\"auth\"}"), Some(&2.0), "{before:?}");

    let mut client = Client::connect(&server.ws_url()).await;
    let session = client.create(json!({"language": "deno"})).await;
    let ok = client.execute(&session, json!({"type": "execute_code", "code": "console.log(1)"})).await;
    assert_eq!(ok["success"], true, "{ok}");
    client.execute(&session, json!({"type": "execute_code", "code": "console.log(2)"})).await;
    let failed = client.execute(&session, json!({"type": "read_file", "path": "missing.txt"})).await;
    assert_eq!(failed["success"], false, "{failed}");
    let open = samples(&scrape(&server).await);
    assert_eq!(open.get("codebeaker_connections{transport=\"websocket\"}"), Some(&1.0), "{open:?}");
    assert_eq!(open.get("codebeaker_sessions_open{backend=\"deno\",language=\"typescript\"}"), Some(&1.0), "{open:?}");
    client.call("session.close", json!({"sessionId": session})).await;
    client.close().await;

    let body = scrape(&server).await;
    let after = samples(&body);
    let get = |key: &str| after.get(key).copied().unwrap_or_else(|| panic!("no sample {key} in\n{body}"));
    assert_eq!(get("codebeaker_sessions_created_total{backend=\"deno\",language=\"typescript\"}"), 1.0);
    assert_eq!(get("codebeaker_sessions_open{backend=\"deno\",language=\"typescript\"}"), 0.0);
    assert_eq!(
        get("codebeaker_sessions_closed_total{backend=\"deno\",language=\"typescript\",reason=\"client\"}"),
        1.0
    );
    assert_eq!(get("codebeaker_commands_total{command=\"execute_code\",backend=\"deno\",outcome=\"ok\"}"), 2.0);
    assert_eq!(get("codebeaker_commands_total{command=\"read_file\",backend=\"deno\",outcome=\"error\"}"), 1.0);
    assert_eq!(get("codebeaker_command_duration_seconds_count{command=\"execute_code\",backend=\"deno\"}"), 2.0);

    if python_with(&["prometheus_client"], "metrics_parse_with_prometheus_client") {
        let parsed = run_python("parse_metrics.py", &[], Some(&body), &[]).await;
        let samples: Vec<Value> = parsed.lines().map(|line| serde_json::from_str(line).expect("JSON")).collect();
        let find = |name: &str, labels: Value| {
            samples
                .iter()
                .find(|s| s["name"] == name && s["labels"] == labels)
                .unwrap_or_else(|| panic!("the parser found no {name} {labels}:\n{parsed}"))
                .clone()
        };
        let commands =
            find("codebeaker_commands_total", json!({"command": "execute_code", "backend": "deno", "outcome": "ok"}));
        assert_eq!((commands["value"].as_f64(), commands["type"].as_str()), (Some(2.0), Some("counter")));
        let open = find("codebeaker_sessions_open", json!({"backend": "deno", "language": "typescript"}));
        assert_eq!((open["value"].as_f64(), open["type"].as_str()), (Some(0.0), Some("gauge")));
        let histogram =
            find("codebeaker_command_duration_seconds_count", json!({"command": "execute_code", "backend": "deno"}));
        assert_eq!((histogram["value"].as_f64(), histogram["type"].as_str()), (Some(2.0), Some("histogram")));
    }
    server.stop().await;
}

/// A destination the egress policy refuses is told to the program, reported in the
/// command's `usage.egressRefused`, counted in `codebeaker_egress_refused_total` and noted
/// on the command's audit line. No traffic leaves: one address is outside the session's
/// `allowNet`, the other is loopback, which the operator's policy refuses by default.
#[tokio::test]
async fn refused_egress_is_reported_counted_and_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let server = Spawned::start(&["--metrics-token", TOKEN, "--audit-log", log.to_str().unwrap()]).await;
    let mut client = Client::connect(&server.ws_url()).await;
    let session = client.create(json!({"language": "deno", "permissions": {"allowNet": ["127.0.0.1"]}})).await;
    let code = "for (const url of ['http://10.1.2.3/', 'http://127.0.0.1:9/']) {\n\
                  try { await fetch(url); console.log('reached', url); } catch (e) { console.log(String(e)); }\n\
                }";
    let ran = client.execute(&session, json!({"type": "execute_code", "code": code})).await;
    assert_eq!(ran["success"], true, "{ran}");
    let printed = ran["result"].as_str().unwrap_or_default();
    assert!(!printed.contains("reached"), "{ran}");
    assert!(printed.contains("10.1.2.3") && printed.contains("127.0.0.1:9"), "{ran}");
    assert_eq!(ran["usage"]["egressRefused"], 2, "{ran}");
    let quiet = client.execute(&session, json!({"type": "execute_code", "code": "console.log(1)"})).await;
    assert!(quiet["usage"].get("egressRefused").is_none(), "{quiet}");
    client.call("session.close", json!({"sessionId": session})).await;
    client.close().await;

    let body = scrape(&server).await;
    let after = samples(&body);
    assert_eq!(after.get("codebeaker_egress_refused_total{backend=\"deno\"}"), Some(&2.0), "{body}");
    let text = {
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().filter(|l| l.contains("execute_code")).count() >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        text
    };
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
    let executes: Vec<&Value> = lines.iter().filter(|l| l["command"] == "execute_code").collect();
    assert_eq!(executes.len(), 2, "{text}");
    assert_eq!(executes[0]["egressRefused"], 2, "{text}");
    assert!(executes[1].get("egressRefused").is_none(), "{text}");
    server.stop().await;
}
