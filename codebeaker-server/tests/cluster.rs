//! A cluster of real `codebeaker-server` processes on loopback, coordinated by a real
//! `redis-server` the test starts, sharing one Docker engine under distinct owner
//! labels: placement, forwarding with streamed output, the cluster-wide list and caps, a
//! node killed with SIGKILL, and Redis going away and coming back.

mod cluster_support;
mod common;
mod mcp_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cluster_support::{redis_or_skip, Node, Redis, HEARTBEAT_MS};
use common::Client;
use serde_json::{json, Value};

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    (dir, path)
}

/// Whether the nodes' Docker backend is up (else the Docker part is skipped loudly, or
/// fails when `CODEBEAKER_REQUIRE_DOCKER=1`).
fn docker_on(health: &Value, test: &str) -> bool {
    if health["backends"]["docker"] == "ok" {
        return true;
    }
    if std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: CODEBEAKER_REQUIRE_DOCKER=1 but Docker is off: {health}");
    }
    eprintln!("SKIPPED (Docker part of {test}): {}", health["backends"]["docker"]);
    false
}

/// Runs `code` with streamed output through `client` and returns the streamed text and
/// the outcome.
async fn streamed(client: &mut Client, session: &str, code: &str) -> (String, Value) {
    client.notifications.clear();
    let result = client
        .call(
            "session.execute",
            json!({"sessionId": session, "stream": true, "command": {"type": "execute_code", "code": code}}),
        )
        .await;
    let text: String = client
        .notifications
        .iter()
        .filter(|n| n["method"] == "session.output" && n["params"]["sessionId"] == session)
        .map(|n| n["params"]["data"].as_str().or(n["params"]["text"].as_str()).unwrap_or_default().to_owned())
        .collect();
    (text, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_spread_over_the_nodes_answer_through_any_node_and_survive_a_lost_node() {
    if !redis_or_skip("cluster") {
        return;
    }
    let (_dir, path) = tempdir();
    let redis = Redis::start().await;
    let audit: Vec<String> = (1..=3).map(|i| path.join(format!("audit-{i}.jsonl")).display().to_string()).collect();
    let node_args = |i: usize| {
        let mut args = vec!["--max-sessions-per-tenant", "60", "--max-sessions", "80"];
        args.extend(["--audit-log", audit[i].as_str()]);
        args
    };
    let mut nodes = vec![
        Node::start(&redis, &path, "n1", &node_args(0)).await,
        Node::start(&redis, &path, "n2", &node_args(1)).await,
        Node::start(&redis, &path, "n3", &node_args(2)).await,
    ];
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    for node in &nodes {
        node.wait_for_live(&urls).await;
    }
    let docker = docker_on(&nodes[0].health().await, "cluster");

    // 30 Deno and 6 Python sessions, all created through node 1.
    let mut first = nodes[0].client().await;
    let mut sessions: Vec<(String, String, &str)> = Vec::new();
    // The Deno ones all at once (placements in flight count as load), the rest in turn.
    for i in 0..30 {
        first
            .send_json(&json!({"jsonrpc": "2.0", "id": format!("c{i}"), "method": "session.create",
            "params": {"language": "deno"}}))
            .await;
    }
    let mut responses = Vec::new();
    while responses.len() < 30 {
        let message = first.recv().await;
        if message["id"].as_str().is_some_and(|id| id.starts_with('c')) {
            responses.push(message);
        }
    }
    for response in &responses {
        let created = &response["result"];
        let node = created["node"].as_str().unwrap_or_else(|| panic!("session info names its node: {response}"));
        sessions.push((created["sessionId"].as_str().unwrap().to_owned(), node.to_owned(), "deno"));
    }
    if docker {
        for _ in 0..6 {
            let created = first.call("session.create", json!({"language": "python"})).await;
            let node = created["node"].as_str().unwrap().to_owned();
            sessions.push((created["sessionId"].as_str().unwrap().to_owned(), node, "python"));
        }
    }
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for (_, node, _) in &sessions {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    for url in &urls {
        let held = per_node.get(url.as_str()).copied().unwrap_or(0);
        assert!(held >= 5, "node {url} holds {held} of the sessions: {per_node:?}");
    }
    // Each node's own count agrees.
    for node in &nodes {
        let health = node.health().await;
        assert_eq!(health["sessions"], per_node[node.url().as_str()], "{health}");
    }

    // Every session answers through node 3, with streamed output.
    let mut third = nodes[2].client().await;
    for (index, (id, _, language)) in sessions.iter().enumerate() {
        let code = match *language {
            "python" => format!("print('hello {index}')"),
            _ => format!("console.log('hello {index}')"),
        };
        let (text, outcome) = streamed(&mut third, id, &code).await;
        assert_eq!(outcome["success"], true, "{outcome}");
        assert!(text.contains(&format!("hello {index}")), "streamed {text:?} for {id}: {outcome}");
    }

    // A batch of requests for a session held elsewhere is answered together, at once.
    let (remote_deno, _, _) = sessions
        .iter()
        .find(|(_, node, language)| *node != urls[2] && *language == "deno")
        .expect("a Deno session off node 3");
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"jsonrpc": "2.0", "id": format!("b{i}"), "method": "session.execute",
            "params": {"sessionId": remote_deno, "command": {"type": "execute_code", "code": format!("console.log({i})")}}}))
        .collect();
    let asked = Instant::now();
    third.send_json(&Value::Array(batch)).await;
    let answers = third.recv().await;
    assert_eq!(answers.as_array().map(Vec::len), Some(3), "{answers}");
    assert!(answers.as_array().unwrap().iter().all(|a| a["result"]["success"] == true), "{answers}");
    assert!(asked.elapsed() < Duration::from_secs(2), "a forwarded batch took {:?}", asked.elapsed());

    // A background process of a session held elsewhere: its pid first, then its output
    // and its end, through node 3.
    if let Some((python, _, _)) = sessions.iter().find(|(_, node, language)| *node != urls[2] && *language == "python")
    {
        third.notifications.clear();
        let command = json!({"commandName": "sh", "args": ["-c", "echo tick; sleep 0.2; echo tock"]});
        let started = third.call("process.start", json!({"sessionId": python, "command": command})).await;
        let pid = started["pid"].as_u64().expect("a pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !third.notifications.iter().any(|n| n["method"] == "process.exit") {
            assert!(Instant::now() < deadline, "no process.exit: {:?}", third.notifications);
            let message = third.recv().await;
            third.notifications.push(message);
        }
        let output: String = third
            .notifications
            .iter()
            .filter(|n| n["method"] == "process.output" && n["params"]["pid"] == pid)
            .map(|n| n["params"]["data"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(output, "tick\ntock\n", "{:?}", third.notifications);
        let exit = third.notifications.iter().find(|n| n["method"] == "process.exit").unwrap();
        assert_eq!(exit["params"]["exitCode"], 0, "{exit}");
    }

    // /health lists every node with its load; node 3's metrics count what it forwarded,
    // by node (parsed by the official Prometheus parser); each holder's audit log names it.
    let health = nodes[1].health().await;
    assert_eq!(health["cluster"]["node"], urls[1].as_str(), "{health}");
    assert_eq!(health["cluster"]["redis"], "ok", "{health}");
    for node in health["cluster"]["nodes"].as_array().unwrap() {
        assert_eq!(node["state"], "live", "{node}");
        assert!(node["languages"].as_array().unwrap().iter().any(|l| l == "typescript"), "{node}");
        assert!(node["memoryFreeBytes"].as_u64().unwrap() > 0, "{node}");
        assert!(node["sessions"].is_u64() && node["lastHeartbeatMs"].is_u64(), "{node}");
    }
    if mcp_support::python_with(&["prometheus_client"], "cluster metrics") {
        let (_, body) = common::raw_http(nodes[2].addr, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        let parsed = mcp_support::run_python("parse_metrics.py", &[], Some(&body), &[]).await;
        let samples: Vec<Value> = parsed.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let sample = |name: &str, node: &str| {
            samples
                .iter()
                .find(|s| s["name"] == name && s["labels"]["node"] == node)
                .map(|s| s["value"].as_f64().unwrap())
        };
        for url in [&urls[0], &urls[1]] {
            let held = per_node[url.as_str()] as f64;
            let forwarded = sample("codebeaker_cluster_forwarded_requests_total", url).unwrap_or(0.0);
            assert!(forwarded >= held, "node 3 forwarded {forwarded} requests to {url}, which holds {held}: {parsed}");
            assert!(sample("codebeaker_cluster_forward_duration_seconds_count", url).unwrap_or(0.0) >= held);
            assert_eq!(sample("codebeaker_cluster_node_up", url), Some(1.0), "{parsed}");
        }
        assert!(samples.iter().any(|s| s["name"] == "codebeaker_cluster_redis_up" && s["value"] == 1.0), "{parsed}");
    }
    for (i, url) in urls.iter().enumerate() {
        let text = std::fs::read_to_string(&audit[i]).unwrap_or_default();
        let executes: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["method"] == "session.execute")
            .collect();
        assert!(executes.len() >= per_node[url.as_str()], "each node audits the commands it ran: {text}");
        assert!(executes.iter().all(|r| r["node"] == url.as_str()), "{text}");
    }

    // session.list through node 2 lists them all.
    let mut second = nodes[1].client().await;
    let listed = second.call("session.list", json!({})).await;
    let ids: Vec<&str> =
        listed["sessions"].as_array().unwrap().iter().map(|s| s["sessionId"].as_str().unwrap()).collect();
    assert_eq!(listed["count"], sessions.len(), "{listed}");
    for (id, node, _) in &sessions {
        assert!(ids.contains(&id.as_str()), "{id} (on {node}) is missing from {listed}");
    }
    let named: Vec<&str> = listed["sessions"].as_array().unwrap().iter().filter_map(|s| s["node"].as_str()).collect();
    assert_eq!(named.len(), sessions.len(), "every listed session names its node: {listed}");

    // The file routes of a session on node 1: written through node 3, read through node 2.
    let (on_first, _, _) = sessions.iter().find(|(_, node, _)| *node == urls[0]).expect("node 1 holds sessions");
    let put = format!(
        "PUT /v1/sessions/{on_first}/files/notes/a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello nodes"
    );
    let (status, body) = common::raw_http(nodes[2].addr, &put).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["bytes"], 11, "{body}");
    let get = format!("GET /v1/sessions/{on_first}/files/notes/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (status, body) = common::raw_http(nodes[1].addr, &get).await;
    assert_eq!((status, body.as_str()), (200, "hello nodes"));
    let missing = "GET /v1/sessions/no-such-session/files/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(common::raw_http(nodes[1].addr, missing).await.0, 404);

    // MCP tools on node 3 act on a session node 1 holds (the official Python client).
    if mcp_support::python_with(&["mcp"], "cluster MCP") {
        // A session placed off node 3 (placement picks among all live nodes).
        let created = loop {
            let created = second.call("session.create", json!({"language": "deno"})).await;
            if created["node"] != urls[2].as_str() {
                break created;
            }
        };
        let id = created["sessionId"].as_str().unwrap();
        let mcp = format!("http://{}/mcp", nodes[2].addr);
        let holder = created["node"].as_str().unwrap();
        let out = mcp_support::run_python("mcp_cluster.py", &[&mcp, id], None, &[]).await;
        assert!(out.contains("OK: MCP tools forwarded"), "{out}");
        let listed = first.call("session.list", json!({})).await;
        let ids: Vec<&str> =
            listed["sessions"].as_array().unwrap().iter().map(|s| s["sessionId"].as_str().unwrap()).collect();
        assert!(!ids.contains(&id), "the session MCP closed on {holder} is gone: {listed}");
    }

    // A link without the cluster's secret is refused.
    let (status, _) = common::raw_http(
        nodes[0].addr,
        "GET /cluster/link HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer wrong-secret-wrong-secret\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401);

    // kill -9 node 2: its sessions answer -32003 naming it within 10 s, the rest work.
    let lost_url = urls[1].clone();
    drop(second);
    nodes[1].kill().await;
    let killed = Instant::now();
    let on_lost: Vec<&(String, String, &str)> = sessions.iter().filter(|(_, node, _)| *node == lost_url).collect();
    for (id, _, _) in &on_lost {
        let asked = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            first
                .request("session.execute", json!({"sessionId": id, "command": {"type": "execute_code", "code": "1"}})),
        )
        .await
        .expect("a request for a lost node's session answers within 10 s");
        assert_eq!(response["error"]["code"], -32003, "{response}");
        let data = response["error"]["data"].as_str().unwrap_or_default();
        assert!(data.contains(&lost_url), "the error names the node: {response}");
        assert!(asked.elapsed() < Duration::from_secs(10));
    }
    nodes[0].wait_for_live(&[urls[0].clone(), urls[2].clone()]).await;
    assert!(killed.elapsed() < Duration::from_secs(10), "node 2 declared lost after {:?}", killed.elapsed());
    let lost = first.request("session.close", json!({"sessionId": on_lost[0].0})).await;
    assert_eq!(lost["error"]["code"], -32003, "{lost}");
    assert!(lost["error"]["data"].as_str().unwrap().contains("lost"), "{lost}");
    for (id, node, language) in sessions.iter().filter(|(_, node, _)| *node != lost_url) {
        let code = if *language == "python" { "print(6 * 7)" } else { "console.log(6 * 7)" };
        let (text, outcome) = streamed(&mut first, id, code).await;
        assert!(text.contains("42"), "{id} on {node}: {text:?} {outcome}");
    }
    // Creates keep succeeding, on the nodes left.
    for _ in 0..6 {
        let created = first.call("session.create", json!({"language": "deno"})).await;
        assert_ne!(created["node"], lost_url.as_str(), "{created}");
    }

    // Node 2 restarts with the same URL: it sweeps what it left, its old sessions are gone.
    let restarted = Node::spawn(nodes[1].args.clone()).await;
    restarted.wait_for_live(&urls).await;
    nodes[0].wait_for_live(&urls).await;
    let gone = first
        .request(
            "session.execute",
            json!({"sessionId": on_lost[0].0, "command": {"type": "execute_code", "code": "1"}}),
        )
        .await;
    assert_eq!(gone["error"]["code"], -32001, "{gone}");
    let health = restarted.health().await;
    assert_eq!(health["sessions"], 0, "{health}");

    first.close().await;
    third.close().await;
    restarted.stop().await;
    for node in nodes.into_iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, n)| n) {
        node.stop().await;
    }
}

/// Redis and two Deno nodes with tenants alice and bob (tokens `alice-token-1`,
/// `bob-token-22`) and `flags`, each seeing both live.
async fn tenants_on_two_nodes(name: &str, flags: &[&str]) -> (tempfile::TempDir, Redis, Node, Node) {
    let (dir, path) = tempdir();
    let keys = path.join("keys");
    std::fs::write(&keys, "alice alice-token-1\nbob bob-token-22\n").unwrap();
    let keys = keys.display().to_string();
    let redis = Redis::start().await;
    let mut args = vec!["--api-keys", keys.as_str(), "--backends", "deno"];
    args.extend_from_slice(flags);
    let one = Node::start(&redis, &path, &format!("{name}1"), &args).await;
    let two = Node::start(&redis, &path, &format!("{name}2"), &args).await;
    one.wait_for_live(&[one.url(), two.url()]).await;
    two.wait_for_live(&[one.url(), two.url()]).await;
    (dir, redis, one, two)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cap_holds_across_nodes() {
    if !redis_or_skip("cluster cap") {
        return;
    }
    let (_dir, _redis, one, two) = tenants_on_two_nodes("cap", &["--max-sessions-per-tenant", "10"]).await;
    let connect = |node: &Node, token: &str| {
        let url = format!("{}?token={token}", node.ws());
        async move { Client::connect(&url).await }
    };
    let mut alice_one = connect(&one, "alice-token-1").await;
    let mut alice_two = connect(&two, "alice-token-1").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let client = if i % 2 == 0 { &mut alice_one } else { &mut alice_two };
        ids.push(client.create(json!({"language": "deno"})).await);
    }
    for client in [&mut alice_one, &mut alice_two] {
        let (code, error) = client.call_err("session.create", json!({"language": "deno"})).await;
        assert_eq!(code, -32002, "the 11th session is refused on every node: {error}");
        assert!(error["data"].as_str().unwrap().contains("10"), "{error}");
    }
    // Another tenant is not affected, and sees none of alice's sessions on either node:
    // each answers exactly as an unknown session does.
    let mut bob = connect(&two, "bob-token-22").await;
    bob.create(json!({"language": "deno"})).await;
    for id in &ids {
        let command = json!({"type": "execute_code", "code": "1"});
        let (code, error) = bob.call_err("session.execute", json!({"sessionId": id, "command": command})).await;
        assert_eq!((code, error["data"].as_str().unwrap()), (-32001, format!("Session not found: {id}").as_str()));
    }
    let listed = bob.call("session.list", json!({})).await;
    assert_eq!(listed["count"], 1, "{listed}");
    // Alice sees her ten across both nodes, and a closed one gives its place back.
    let listed = alice_two.call("session.list", json!({})).await;
    assert_eq!(listed["count"], 10, "{listed}");
    alice_two.call("session.close", json!({"sessionId": ids[0]})).await;
    alice_one.create(json!({"language": "deno"})).await;
    let (code, _) = alice_two.call_err("session.create", json!({"language": "deno"})).await;
    assert_eq!(code, -32002);
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_their_sessions_without_redis_and_rejoin_when_it_is_back() {
    if !redis_or_skip("cluster without redis") {
        return;
    }
    let (_dir, path) = tempdir();
    let mut redis = Redis::start().await;
    let args = ["--backends", "deno"];
    let one = Node::start(&redis, &path, "r1", &args).await;
    let two = Node::start(&redis, &path, "r2", &args).await;
    let urls = [one.url(), two.url()];
    one.wait_for_live(&urls).await;
    two.wait_for_live(&urls).await;
    let mut a = one.client().await;
    let mut b = two.client().await;
    // One session on each node (placement decides where: create until both hold one).
    let (mut on_one, mut on_two) = (None, None);
    for _ in 0..40 {
        let created = a.call("session.create", json!({"language": "deno"})).await;
        let id = created["sessionId"].as_str().unwrap().to_owned();
        if created["node"] == one.url().as_str() {
            on_one.get_or_insert(id);
        } else {
            on_two.get_or_insert(id);
        }
        if on_one.is_some() && on_two.is_some() {
            break;
        }
    }
    let (on_one, on_two) = (on_one.expect("a session on node 1"), on_two.expect("a session on node 2"));
    let held = |client_node: &Node, id: &str| {
        let (url, id) = (client_node.ws(), id.to_owned());
        async move {
            let mut client = Client::connect(&url).await;
            client.execute(&id, json!({"type": "execute_code", "code": "console.log('still here')"})).await
        }
    };

    redis.stop().await;
    let started = Instant::now();
    // Cluster-wide requests fail clearly once the nodes notice; local sessions keep working.
    let error = loop {
        let response = a.request("session.list", json!({})).await;
        if let Some(error) = response.get("error") {
            break error.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "session.list kept answering without Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(error["code"], -32003, "{error}");
    assert!(error["data"].as_str().unwrap().contains("Redis"), "{error}");
    let (code, _) = b.call_err("session.create", json!({"language": "deno"})).await;
    assert_eq!(code, -32003);
    for _ in 0..3 {
        assert_eq!(held(&one, &on_one).await["success"], true);
        assert_eq!(held(&two, &on_two).await["success"], true);
        tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS)).await;
    }
    let health = one.health().await;
    assert!(health["cluster"]["redis"].as_str().unwrap().starts_with("unreachable"), "{health}");

    // Redis is back (empty): the nodes register again and write their sessions back.
    redis.restart().await;
    one.wait_for_live(&urls).await;
    let back = Instant::now();
    loop {
        let response = b.request("session.list", json!({})).await;
        if response["result"]["count"] == 2 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "the cluster did not recover: {response}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Forwarding works again: node 2's client reaches node 1's session.
    let envelope = b.execute(&on_one, json!({"type": "execute_code", "code": "console.log(1 + 1)"})).await;
    assert_eq!(envelope["success"], true, "{envelope}");
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_rate_holds_across_nodes() {
    if !redis_or_skip("cluster rate") {
        return;
    }
    // Four requests at once, then one every 10 s: the test's requests all fall in the burst.
    let (_dir, _redis, one, two) = tenants_on_two_nodes("rate", &["--rate-limit", "0.1", "--rate-burst", "4"]).await;
    let mut alice_one = Client::connect(&format!("{}?token=alice-token-1", one.ws())).await;
    let mut alice_two = Client::connect(&format!("{}?token=alice-token-1", two.ws())).await;
    let mut answered = 0;
    let mut refused = Vec::new();
    for i in 0..8 {
        let client = if i % 2 == 0 { &mut alice_one } else { &mut alice_two };
        let response = client.request("session.list", json!({})).await;
        match response.get("error") {
            None => answered += 1,
            Some(error) => refused.push(error.clone()),
        }
    }
    assert_eq!(answered, 4, "one burst of 4 across both nodes, not 4 on each: {refused:?}");
    for error in &refused {
        assert_eq!(error["code"], -32002, "{error}");
        assert!(error["data"].as_str().unwrap().contains("rate limit"), "{error}");
    }
    // Another tenant has its own budget, on either node.
    let mut bob = Client::connect(&format!("{}?token=bob-token-22", two.ws())).await;
    bob.call("session.list", json!({})).await;
    // The file routes count against the same budget.
    let (status, _) = common::raw_http(
        one.addr,
        "GET /v1/sessions/x/files/a HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer alice-token-1\r\n\r\n",
    )
    .await;
    assert_eq!(status, 429);
    one.stop().await;
    two.stop().await;
}
