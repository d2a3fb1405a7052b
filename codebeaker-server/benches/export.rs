//! Trace export (issue 24): a Deno `execute_code` hello on four release servers in the
//! same run: export off, export to a collector that answers (200), to one that never
//! answers, and to one that answers every request with 503. A failing collector must
//! leave command latency unchanged: what export costs is the working collector's row.
//!
//! The servers are the `codebeaker-server` binary (export is process-wide), Deno only;
//! the collectors are this bench's own loopback listeners. Criterion measures each; the
//! summary alternates the three call by call and prints the medians.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
#[path = "../../benches/support/mod.rs"]
mod support;
use serde_json::json;
use support::{median, round_trip};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How a collector answers.
#[derive(Clone, Copy)]
enum Collector {
    /// Answers every request `200 OK` (an empty export response).
    Working,
    /// Accepts, reads, never answers.
    Silent,
    /// Answers every request `503 Service Unavailable`.
    Unavailable,
}

/// Starts a collector; its endpoint.
async fn collector(kind: Collector) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a collector");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while let Ok(read) = socket.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..read]);
                    if let Collector::Unavailable = kind {
                        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            let answer =
                                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                            let _ = socket.write_all(answer).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A release server on a free port, exporting to `otlp` when given; the child and its URL.
async fn server(otlp: Option<&str>) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-server"));
    command.args(["--listen", &format!("127.0.0.1:{port}"), "--backends", "deno"]);
    if let Some(endpoint) = otlp {
        command.args(["--otlp-endpoint", endpoint]);
    }
    let child = command
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    for _ in 0..300 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, format!("ws://127.0.0.1:{port}/ws/jsonrpc"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not listen within 30 s");
}

fn export_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let names = [
        "export off",
        "export on, collector answers",
        "export on, collector never answers",
        "export on, collector answers 503",
    ];
    let (children, mut targets) = runtime.block_on(async {
        let working = collector(Collector::Working).await;
        let silent = collector(Collector::Silent).await;
        let unavailable = collector(Collector::Unavailable).await;
        let mut children = Vec::new();
        let mut targets = Vec::new();
        for otlp in [None, Some(working.as_str()), Some(silent.as_str()), Some(unavailable.as_str())] {
            let (child, url) = server(otlp).await;
            let mut ws = support::connect(&url).await;
            let create = r#"{"jsonrpc":"2.0","id":1,"method":"session.create","params":{"language":"deno"}}"#;
            let created = round_trip(&mut ws, create).await;
            let id = created["result"]["sessionId"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
            let hello = json!({"jsonrpc": "2.0", "id": 2, "method": "session.execute",
                "params": {"sessionId": id, "command": {"type": "execute_code", "code": "console.log('hello')"}}})
            .to_string();
            children.push(child);
            targets.push((ws, hello));
        }
        (children, targets)
    });

    let mut group = c.benchmark_group("export");
    for (name, (ws, hello)) in names.iter().zip(targets.iter_mut()) {
        group.bench_function(format!("Deno execute_code hello, {name}"), |b| {
            b.iter(|| {
                let response = runtime.block_on(round_trip(ws, hello));
                assert_eq!(response["result"]["result"], "hello");
            })
        });
    }
    group.finish();

    let mut samples = vec![Vec::new(); names.len()];
    runtime.block_on(async {
        for _ in 0..1000 {
            for (index, (ws, hello)) in targets.iter_mut().enumerate() {
                let started = Instant::now();
                round_trip(ws, hello).await;
                samples[index].push(started.elapsed());
            }
        }
    });
    eprintln!("\nsummary, alternating call by call (medians of 1000 each):");
    let medians: Vec<Duration> = samples.into_iter().map(median).collect();
    let against = |value: Duration, base: Duration| (value.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0;
    for (name, value) in names.iter().zip(&medians) {
        eprintln!(
            "  Deno hello, {name}: {value:?} ({:+.1}% against export off, {:+.1}% against a working collector)",
            against(*value, medians[0]),
            against(*value, medians[1])
        );
    }
    eprintln!();
    drop(targets);
    drop(children);
}

criterion_group!(benches, export_benches);
criterion_main!(benches);
