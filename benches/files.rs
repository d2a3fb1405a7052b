//! Streamed file transfers (issue 19): a 1 GiB upload and download through
//! `PUT`/`GET /v1/sessions/{sessionId}/files/{path}`, per backend (Deno: the host
//! workspace; Docker: through the in-container agent), in MB/s, and the server's peak RSS
//! growth over one round trip, each beside its floor (>= 300 MB/s each way, <= 64 MiB).
//!
//! The server runs in this process on its own 2-thread runtime; the client is raw HTTP/1.1
//! over loopback TCP on a single-thread runtime, streaming 1 MiB at a time, so the RSS
//! measured is the server's (the client holds one buffer). A backend that cannot start is
//! skipped, loudly. `FILES_BENCH_MIB` changes the size (default 1024).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use codebeaker_docker::DockerConfig;
use codebeaker_server::{BackendChoice, BackendOptions, Backends, Server, ServerConfig, ServerHandle};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1024 * 1024;
const FLOOR_MB_S: f64 = 300.0;
const RSS_BOUND_MIB: u64 = 64;

fn size() -> u64 {
    std::env::var("FILES_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024) * MIB
}

/// A server over one backend kind whose sessions may hold a file of `size` bytes.
fn start_server(runtime: &tokio::runtime::Runtime, kind: &'static str, size: u64) -> Option<ServerHandle> {
    runtime.block_on(async {
        let options = BackendOptions {
            choice: BackendChoice::Only(vec![kind.into()]),
            docker: DockerConfig::default().with_owner("codebeaker-bench-files").with_pool_size(0),
            ..BackendOptions::default()
        };
        let backends = match Backends::start(options).await {
            Ok(backends) => backends,
            Err(error) => {
                eprintln!("\n*** SKIPPED: the {kind} file transfer benches: {error} ***\n");
                return None;
            }
        };
        let mut config = ServerConfig::ephemeral();
        config.manager.policy.workspace_mb = size / MIB + 256;
        // Docker's workspace is a tmpfs charged to the container's memory.
        config.manager.policy.max_memory_mb = size / MIB + 1024;
        let server = Server::bind(config, backends).await.expect("bind");
        Some(server.spawn())
    })
}

/// Creates a session of `language` over the WebSocket; its id.
async fn create_session(server: &ServerHandle, language: &str, memory_mb: u64) -> String {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await.expect("connect");
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "session.create",
        "params": {"language": language, "memoryLimitMB": memory_mb}});
    ws.send(Message::text(request.to_string())).await.expect("send");
    loop {
        if let Some(Ok(Message::Text(text))) = ws.next().await {
            let response: Value = serde_json::from_str(&text).expect("JSON");
            return response["result"]["sessionId"].as_str().unwrap_or_else(|| panic!("create: {response}")).to_owned();
        }
    }
}

/// `PUT` of `size` bytes; the time it took.
async fn upload(addr: SocketAddr, session: &str, size: u64) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head =
        format!("PUT /v1/sessions/{session}/files/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![0x5au8; MIB as usize];
    let mut sent = 0;
    while sent < size {
        let n = (size - sent).min(MIB) as usize;
        stream.write_all(&chunk[..n]).await.expect("body");
        sent += n as u64;
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("response");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "upload failed: {text}");
    elapsed
}

/// `GET` of the whole file; the time it took.
async fn download(addr: SocketAddr, session: &str, size: u64) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /v1/sessions/{session}/files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut buffer = vec![0u8; MIB as usize];
    let mut received = 0u64;
    loop {
        let n = stream.read(&mut buffer).await.expect("body");
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let elapsed = started.elapsed();
    assert!(received > size, "the download ended early: {received} bytes with the head, {size} expected");
    elapsed
}

/// Resident and peak-resident memory of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    (field("VmRSS:").unwrap_or(0) * 1024, field("VmHWM:").unwrap_or(0) * 1024)
}

fn mb_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

fn files_benches(c: &mut Criterion) {
    let size = size();
    let server_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut summary = Vec::new();
    for (kind, language) in [("deno", "deno"), ("docker", "python")] {
        let Some(server) = start_server(&server_runtime, kind, size) else { continue };
        let addr = server.local_addr();
        let session = client.block_on(create_session(&server, language, size / MIB + 1024));
        // One untimed round trip measures the peak RSS growth (from a reset peak).
        client.block_on(upload(addr, &session, MIB));
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let (start, _) = memory();
        let up = client.block_on(upload(addr, &session, size));
        let down = client.block_on(download(addr, &session, size));
        let (_, peak) = memory();
        let growth = peak.saturating_sub(start) / MIB;
        summary.push((kind, mb_s(size, up), mb_s(size, down), growth));

        let mut group = c.benchmark_group(format!("files {kind}"));
        group.throughput(Throughput::Bytes(size)).sample_size(10).warm_up_time(Duration::from_millis(1));
        group.measurement_time(Duration::from_secs(1));
        group.bench_function(format!("upload {} MiB", size / MIB), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| client.block_on(upload(addr, &session, size))).sum())
        });
        group.bench_function(format!("download {} MiB", size / MIB), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| client.block_on(download(addr, &session, size))).sum())
        });
        group.finish();
        server_runtime.block_on(server.shutdown());
    }
    println!("\nfile transfers of {} MiB (one untimed round trip each):", size / MIB);
    println!("| backend | upload MB/s | download MB/s | floor | peak RSS growth | bound | met |");
    println!("|---|---|---|---|---|---|---|");
    for (name, up, down, growth) in summary {
        let met = up >= FLOOR_MB_S && down >= FLOOR_MB_S && growth <= RSS_BOUND_MIB;
        println!(
            "| {name} | {up:.0} | {down:.0} | >= {FLOOR_MB_S:.0} | {growth} MiB | <= {RSS_BOUND_MIB} MiB | {} |",
            if met { "yes" } else { "no" }
        );
    }
}

criterion_group!(benches, files_benches);
criterion_main!(benches);
