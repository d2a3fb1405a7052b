//! OpenTelemetry traces from the real server binary (`--otlp-endpoint`) to a small
//! OTLP/HTTP receiver that decodes them with the official `opentelemetry-proto` package
//! (`tests/python/otlp_receiver.py`): a client's `traceparent` (in a request's
//! `params._meta`) is the parent of the request span, which is the parent of the command
//! span, which is the parent of the backend's own span, all in the client's trace (and a
//! file route's `traceparent` header is the parent of its `http.request` span); usage
//! and the outcome are attributes and no guest output is; a collector that never answers
//! changes nothing a client sees.

mod cluster_support;
mod common;
mod mcp_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Client;
use mcp_support::{http, python_with, Spawned, PYTHON_DIR};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The client's trace and span, as a W3C `traceparent` (sampled) names them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A line the guest prints, which no span attribute may carry.
const GUEST_OUTPUT: &str = "guest-output-5521";

/// The receiver process and the spans it has printed so far.
struct Receiver {
    _child: Child,
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// Starts `otlp_receiver.py mode` and reads its spans as they come.
    async fn start(mode: &str) -> Receiver {
        let mut child = Command::new("python3")
            .arg(format!("{PYTHON_DIR}/otlp_receiver.py"))
            .arg(mode)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the receiver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port =
            lines.next_line().await.expect("read").expect("the receiver prints its port").parse().expect("a port");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(serde_json::from_str::<Value>(&line).expect("a JSON span"));
            }
        });
        Receiver { _child: child, port, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans of the client's trace once one named `last` has arrived (the server
    /// exports every few seconds).
    async fn trace_with(&self, last: &str) -> Vec<Value> {
        for _ in 0..300 {
            let spans: Vec<Value> =
                self.spans.lock().unwrap().iter().filter(|s| s["traceId"] == TRACE_ID).cloned().collect();
            if spans.iter().any(|s| s["name"] == last) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {last} span of trace {TRACE_ID} within 30 s; received: {:?}", self.spans.lock().unwrap());
    }
}

fn traced(params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({"traceparent": format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")});
    params
}

fn named<'a>(spans: &'a [Value], name: &str, parent: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name && s["parentSpanId"] == parent)
        .unwrap_or_else(|| panic!("no {name} span whose parent is {parent} in {spans:#?}"))
}

/// One traced create and execute of `language` on `backends`; checks the span tree down
/// to the backend's span (`sandbox_span`).
async fn one_trace(backends: &str, extra: &[&str], language: &str, code: &str, sandbox_span: &str) {
    let receiver = Receiver::start("ok").await;
    let endpoint = receiver.endpoint();
    let mut args = vec!["--otlp-endpoint", endpoint.as_str()];
    args.extend_from_slice(extra);
    let server = Spawned::start_on(backends, &args).await;
    let mut client = Client::connect(&server.ws_url()).await;
    let created = client.call("session.create", traced(json!({"language": language}))).await;
    let session = created["sessionId"].as_str().expect("sessionId").to_owned();
    let command = json!({"type": "execute_code", "code": code});
    let ran = client.call("session.execute", traced(json!({"sessionId": session, "command": command}))).await;
    assert_eq!(ran["success"], true, "{ran}");
    // Untraced: a trace of its own, not the connection's.
    client.call("session.list", json!({})).await;
    // The file routes take the context from the `traceparent` header.
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let put =
        http(server.addr, "PUT", &format!("/v1/sessions/{session}/files/a.txt"), &[("traceparent", &traceparent)], "x")
            .await
            .expect("the upload");
    assert_eq!(put.status, 200, "{put:?}");
    client.close().await;

    let spans = receiver.trace_with(sandbox_span).await;
    let request = spans
        .iter()
        .find(|s| s["name"] == "request" && s["attributes"]["rpc.method"] == "session.execute")
        .unwrap_or_else(|| panic!("no session.execute request span in {spans:#?}"));
    assert_eq!(request["parentSpanId"], CLIENT_SPAN, "the client's span is the request's parent: {request}");
    assert_eq!(request["service"], "codebeaker-server");
    assert_eq!(request["attributes"]["rpc.system"], "jsonrpc");
    let command = named(&spans, "command", request["spanId"].as_str().unwrap());
    assert_eq!(command["attributes"]["kind"], "execute_code", "{command}");
    assert_eq!(command["attributes"]["success"], true, "{command}");
    assert!(command["attributes"]["codebeaker.usage.output_bytes"].as_i64().is_some_and(|n| n > 0), "{command}");
    named(&spans, sandbox_span, command["spanId"].as_str().unwrap());
    assert!(
        spans.iter().any(|s| s["name"] == "request" && s["attributes"]["rpc.method"] == "session.create"),
        "the create is in the client's trace too: {spans:#?}"
    );
    let spans = receiver.trace_with("upload").await;
    let upload = named(&spans, "http.request", CLIENT_SPAN);
    assert_eq!(upload["attributes"]["http.request.method"], "PUT", "{upload}");
    assert_eq!(upload["attributes"]["http.route"], "/v1/sessions/{session_id}/files/{*path}", "no path: {upload}");
    named(&spans, "upload", upload["spanId"].as_str().unwrap());
    let all = receiver.spans.lock().unwrap().clone();
    let listed = all.iter().find(|s| s["attributes"]["rpc.method"] == "session.list").expect("the untraced request");
    assert_ne!(listed["traceId"], TRACE_ID, "{listed}");
    assert_eq!(listed["parentSpanId"], "", "an untraced request starts a trace: {listed}");
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(GUEST_OUTPUT), "guest output in a span: {text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clients_traceparent_is_the_parent_of_request_command_and_deno_spans() {
    if !python_with(&["opentelemetry.proto.collector.trace.v1.trace_service_pb2"], "traces") {
        return;
    }
    one_trace("deno", &[], "typescript", &format!("console.log('{GUEST_OUTPUT}')"), "deno.execute").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clients_traceparent_is_the_parent_of_request_command_and_docker_spans() {
    if std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() != Ok("1") {
        eprintln!("SKIPPED: the Docker trace needs CODEBEAKER_REQUIRE_DOCKER=1 (CI sets it)");
        return;
    }
    if !python_with(&["opentelemetry.proto.collector.trace.v1.trace_service_pb2"], "traces") {
        return;
    }
    let extra = ["--docker-owner", "codebeaker-test-traces", "--docker-pool-size", "0"];
    one_trace("docker", &extra, "python", &format!("print('{GUEST_OUTPUT}')"), "docker.execute").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_never_answers_changes_nothing_a_client_sees() {
    if !python_with(&["opentelemetry.proto.collector.trace.v1.trace_service_pb2"], "traces") {
        return;
    }
    let receiver = Receiver::start("hang").await;
    let endpoint = receiver.endpoint();
    let server = Spawned::start(&["--otlp-endpoint", &endpoint]).await;
    let mut client = Client::connect(&server.ws_url()).await;
    let session = client.create(traced(json!({"language": "typescript"}))).await;
    for i in 0..20 {
        let command = json!({"type": "execute_code", "code": format!("console.log({i})")});
        let ran = tokio::time::timeout(
            Duration::from_secs(30),
            client.call("session.execute", traced(json!({"sessionId": session, "command": command}))),
        )
        .await
        .expect("an answer while the collector hangs");
        assert_eq!(ran["success"], true, "{ran}");
    }
    // More spans than the export queue holds while the exporter waits on the collector:
    // the rest are dropped, counted, and every request is still answered.
    for round in 0..24 {
        let batch: Vec<Value> = (0..250)
            .map(|i| json!({"jsonrpc": "2.0", "id": round * 1000 + i, "method": "session.list", "params": {}}))
            .collect();
        client.send_json(&Value::Array(batch)).await;
        let answers = tokio::time::timeout(Duration::from_secs(30), client.recv()).await.expect("the batch's answers");
        assert_eq!(answers.as_array().map(Vec::len), Some(250), "{answers}");
    }
    let metrics = http(server.addr, "GET", "/metrics", &[], "").await.expect("the metrics");
    let dropped: f64 = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("codebeaker_trace_spans_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dropped-spans counter in {}", metrics.body));
    assert!(dropped > 0.0, "6000 request spans and none dropped while the collector hangs: {dropped}");
    client.close().await;
    let stopping = std::time::Instant::now();
    server.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(30), "shutdown waited on the collector");
}

/// A request forwarded to the cluster node holding its session stays in the client's
/// trace: the holder's request span is a child of the forwarding node's, and the
/// holder's command span a child of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_joins_the_trace_across_the_cluster_hop() {
    if !python_with(&["opentelemetry.proto"], "cluster trace") || !cluster_support::redis_or_skip("cluster trace") {
        return;
    }
    let receiver = Receiver::start("ok").await;
    let endpoint = receiver.endpoint();
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = cluster_support::Redis::start().await;
    let args = ["--backends", "deno", "--otlp-endpoint", endpoint.as_str()];
    let one = cluster_support::Node::start(&redis, dir.path(), "trace1", &args).await;
    let two = cluster_support::Node::start(&redis, dir.path(), "trace2", &args).await;
    let urls = [one.url(), two.url()];
    one.wait_for_live(&urls).await;
    let mut client = one.client().await;
    // A session on node 2, asked for through node 1.
    let session = loop {
        let created = client.call("session.create", json!({"language": "deno"})).await;
        if created["node"] == urls[1].as_str() {
            break created["sessionId"].as_str().expect("sessionId").to_owned();
        }
    };
    let command = json!({"type": "execute_code", "code": "console.log(1)"});
    let ran = client.call("session.execute", traced(json!({"sessionId": session, "command": command}))).await;
    assert_eq!(ran["success"], true, "{ran}");
    client.close().await;

    let spans = receiver.trace_with("deno.execute").await;
    let executes: Vec<&Value> =
        spans.iter().filter(|s| s["name"] == "request" && s["attributes"]["rpc.method"] == "session.execute").collect();
    let first = executes
        .iter()
        .find(|s| s["parentSpanId"] == CLIENT_SPAN)
        .unwrap_or_else(|| panic!("no request span of node 1 under the client's: {spans:#?}"));
    let holder = named(&spans, "request", first["spanId"].as_str().unwrap());
    assert_eq!(holder["attributes"]["rpc.method"], "session.execute", "{holder}");
    let command = named(&spans, "command", holder["spanId"].as_str().unwrap());
    named(&spans, "deno.execute", command["spanId"].as_str().unwrap());
    one.stop().await;
    two.stop().await;
}

/// An MCP tool call whose HTTP request carries a `traceparent` is in the client's trace:
/// its `mcp.tool` span under the client's, the command beneath it.
#[tokio::test]
async fn an_mcp_tool_call_joins_the_clients_trace() {
    if !python_with(&["opentelemetry.proto", "mcp"], "MCP trace") {
        return;
    }
    let receiver = Receiver::start("ok").await;
    let endpoint = receiver.endpoint();
    let server = Spawned::start(&["--otlp-endpoint", &endpoint]).await;
    let url = format!("http://{}/mcp", server.addr);
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let out = mcp_support::run_python("mcp_traced.py", &[&url, &traceparent], None, &[]).await;
    assert!(out.contains("OK: traced tool call"), "{out}");
    let spans = receiver.trace_with("deno.execute").await;
    let command =
        spans.iter().find(|s| s["name"] == "command").unwrap_or_else(|| panic!("no command span in {spans:#?}"));
    // Up from the command, the chain reaches an http.request span under the client's.
    let mut current = command;
    let mut chain = vec![current["name"].clone()];
    while current["parentSpanId"] != CLIENT_SPAN {
        let parent = current["parentSpanId"].as_str().unwrap_or_default();
        current = spans
            .iter()
            .find(|s| s["spanId"] == parent)
            .unwrap_or_else(|| panic!("the chain {chain:?} breaks at {parent}: {spans:#?}"));
        chain.push(current["name"].clone());
    }
    assert_eq!(current["name"], "mcp.tool", "{chain:?}");
    assert_eq!(current["attributes"]["tool"], "run_code", "{current}");
    server.stop().await;
}
