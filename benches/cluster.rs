//! Cluster forwarding (issue 22): a Deno `execute_code` hello sent to the node holding
//! the session beside the same hello sent to another node of the cluster, which
//! forwards it over its node-to-node link, in the same run. Two in-process nodes on
//! loopback and a `redis-server` the bench starts (skipped, loudly, without one).
//!
//! Criterion measures each; the summary alternates the two call by call (this machine
//! drifts between benchmarks by more than the difference sought) and prints the
//! medians and what forwarding adds.

mod support;

use std::time::{Duration, Instant};

use codebeaker_deno::DenoConfig;
use codebeaker_server::cluster::ClusterConfig;
use codebeaker_server::{BackendChoice, BackendOptions, Backends, Server, ServerConfig, ServerHandle};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use support::{connect, median, round_trip, Ws};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// A node of the cluster in the Redis on `redis_port`, Deno only.
fn start_node(runtime: &tokio::runtime::Runtime, redis_port: u16) -> ServerHandle {
    runtime.block_on(async {
        let port = free_port();
        let config = ServerConfig {
            listen: ([127, 0, 0, 1], port).into(),
            cluster: Some(ClusterConfig {
                redis_url: format!("redis://127.0.0.1:{redis_port}"),
                node_url: format!("ws://127.0.0.1:{port}"),
                secret: "the-bench-cluster-secret".into(),
                sample: 2,
                heartbeat: Duration::from_millis(500),
            }),
            ..ServerConfig::ephemeral()
        };
        let options = BackendOptions {
            choice: BackendChoice::Only(vec!["deno".into()]),
            deno: DenoConfig::default(),
            ..BackendOptions::default()
        };
        let backends = Backends::start(options).await.expect("the Deno backend starts");
        Server::bind(config, backends).await.expect("bind").spawn()
    })
}

fn cluster_benches(c: &mut Criterion) {
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("\n*** SKIPPED: the cluster benches need redis-server (apt-get install redis-server) ***\n");
        return;
    }
    let redis_port = free_port();
    let mut redis = std::process::Command::new("redis-server")
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server");
    std::thread::sleep(Duration::from_millis(300));
    let server_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let client_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let nodes = [start_node(&server_runtime, redis_port), start_node(&server_runtime, redis_port)];
    // Both nodes see each other live.
    std::thread::sleep(Duration::from_millis(1500));

    let mut clients: Vec<Ws> = client_runtime.block_on(async {
        let mut clients = Vec::new();
        for node in &nodes {
            clients.push(connect(&node.ws_url()).await);
        }
        clients
    });
    let create = r#"{"jsonrpc":"2.0","id":1,"method":"session.create","params":{"language":"deno"}}"#;
    let created = client_runtime.block_on(round_trip(&mut clients[0], create));
    let id = created["result"]["sessionId"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    let holder = created["result"]["node"].as_str().expect("the session names its node");
    // Which client talks to the holder, which to the other node.
    let (direct, forwarded) = if holder == format!("ws://{}", nodes[0].local_addr()) { (0, 1) } else { (1, 0) };
    let hello = json!({"jsonrpc": "2.0", "id": 2, "method": "session.execute",
        "params": {"sessionId": id, "command": {"type": "execute_code", "code": "console.log('hello')"}}})
    .to_string();
    for client in &mut clients {
        let answer = client_runtime.block_on(round_trip(client, &hello));
        assert_eq!(answer["result"]["result"], "hello", "{answer}");
    }

    let mut group = c.benchmark_group("cluster");
    for (name, index) in [("sent to the holding node", direct), ("forwarded through another node", forwarded)] {
        group.bench_function(format!("Deno execute_code hello, {name}"), |b| {
            b.iter(|| {
                let response = client_runtime.block_on(round_trip(&mut clients[index], &hello));
                assert_eq!(response["result"]["result"], "hello");
            })
        });
    }
    group.finish();

    let (mut direct_times, mut forwarded_times) = (Vec::new(), Vec::new());
    client_runtime.block_on(async {
        for _ in 0..1000 {
            let started = Instant::now();
            round_trip(&mut clients[direct], &hello).await;
            direct_times.push(started.elapsed());
            let started = Instant::now();
            round_trip(&mut clients[forwarded], &hello).await;
            forwarded_times.push(started.elapsed());
        }
    });
    let (direct_median, forwarded_median) = (median(direct_times), median(forwarded_times));
    eprintln!("\nsummary, alternating call by call (medians of 1000 each):");
    eprintln!(
        "  Deno hello: to the holding node {direct_median:?}, forwarded {forwarded_median:?}, forwarding adds {:?}\n",
        forwarded_median.saturating_sub(direct_median)
    );

    drop(clients);
    let [first, second] = nodes;
    server_runtime.block_on(async {
        first.shutdown().await;
        second.shutdown().await;
    });
    let _ = redis.kill();
    let _ = redis.wait();
}

criterion_group!(benches, cluster_benches);
criterion_main!(benches);
