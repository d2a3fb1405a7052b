//! Server speed (issue 6): loopback WebSocket round trips of `session.list` and of a Deno
//! `execute_code` hello, each beside the same call made in-process on the session manager
//! (the difference is the protocol's overhead), and `session.list` throughput over 32
//! concurrent connections.
//!
//! The server runs on its own 2-thread runtime, the clients on a single-thread one, as a
//! separate client process would. A summary with medians is printed at the end.
//! The Deno part is skipped, loudly, when the server has no Deno backend.

use std::time::{Duration, Instant};

use codebeaker::{Command, ExecOptions, Language, SessionConfig, SessionManager};
use codebeaker_server::{BackendChoice, BackendKind, BackendOptions, Backends, Server, ServerConfig, ServerHandle};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECTIONS: usize = 32;

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async_with_config(url, None, true).await.expect("connect").0
}

/// One request, one response (nothing else is in flight on `ws`).
async fn round_trip(ws: &mut Ws, request: &str) -> Value {
    ws.send(Message::text(request)).await.expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Medians of `n` sequential runs of `f`.
async fn sample<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    median(samples)
}

/// Median of `n` sequential round trips of `request`.
async fn sample_round_trips(ws: &mut Ws, request: &str, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        round_trip(ws, request).await;
        samples.push(started.elapsed());
    }
    median(samples)
}

fn start_server(runtime: &tokio::runtime::Runtime) -> (ServerHandle, bool) {
    runtime.block_on(async {
        let options =
            BackendOptions { choice: BackendChoice::Only(vec![BackendKind::Deno]), ..BackendOptions::default() };
        let (backends, deno) = match Backends::start(options).await {
            Ok(backends) => (backends, true),
            Err(error) => {
                eprintln!("\n*** SKIPPED: the Deno execute_code benches: {error} ***\n");
                (Backends::default(), false)
            }
        };
        let server = Server::bind(ServerConfig::ephemeral(), backends).await.expect("bind");
        (server.spawn(), deno)
    })
}

fn server_benches(c: &mut Criterion) {
    let server_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let client_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (server, deno) = start_server(&server_runtime);
    let manager: SessionManager = server.manager().clone();
    let url = server.ws_url();
    let mut ws = client_runtime.block_on(connect(&url));
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"session.list","params":{}}"#;

    let mut group = c.benchmark_group("server");
    group.bench_function("session.list in-process (manager.list + JSON)", |b| {
        b.iter(|| {
            let sessions = manager.list();
            serde_json::to_string(&json!({"count": sessions.len(), "sessions": sessions})).expect("JSON")
        })
    });
    group.bench_function("session.list over loopback WebSocket", |b| {
        b.iter(|| client_runtime.block_on(round_trip(&mut ws, list)))
    });

    let session = deno.then(|| {
        server_runtime.block_on(async {
            manager.create(SessionConfig::new(Language::Deno)).await.expect("create a Deno session").session_id
        })
    });
    let hello = session.as_ref().map(|id| {
        json!({"jsonrpc": "2.0", "id": 2, "method": "session.execute",
            "params": {"sessionId": id, "command": {"type": "execute_code", "code": "console.log('hello')"}}})
        .to_string()
    });
    if let (Some(id), Some(hello)) = (&session, &hello) {
        group.bench_function("Deno execute_code hello in-process (manager.execute)", |b| {
            b.iter(|| {
                server_runtime.block_on(async {
                    let outcome = manager.execute(id, Command::code("console.log('hello')"), ExecOptions::default());
                    assert!(outcome.await.expect("execute").success);
                })
            })
        });
        group.bench_function("Deno execute_code hello over loopback WebSocket", |b| {
            b.iter(|| {
                let response = client_runtime.block_on(round_trip(&mut ws, hello));
                assert_eq!(response["result"]["result"], "hello");
            })
        });
    }

    // Throughput: CONNECTIONS clients, each sending its share one request at a time.
    let mut clients: Vec<Ws> =
        client_runtime.block_on(futures::future::join_all((0..CONNECTIONS).map(|_| connect(&url))));
    let per_iteration = CONNECTIONS as u64 * 50;
    group.throughput(Throughput::Elements(per_iteration));
    group.bench_function(format!("session.list throughput, {CONNECTIONS} connections"), |b| {
        b.iter_custom(|iters| {
            client_runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    futures::future::join_all(clients.iter_mut().map(|ws| async move {
                        for _ in 0..per_iteration / CONNECTIONS as u64 {
                            round_trip(ws, list).await;
                        }
                    }))
                    .await;
                }
                started.elapsed()
            })
        })
    });
    group.finish();

    // The summary the issue asks for: medians and the protocol's overhead.
    let in_process_list = server_runtime.block_on(sample(2000, || async {
        let sessions = manager.list();
        let _ = serde_json::to_string(&json!({"count": sessions.len(), "sessions": sessions}));
    }));
    let ws_list = client_runtime.block_on(sample_round_trips(&mut ws, list, 2000));
    eprintln!("\nsummary (medians, {} cores):", std::thread::available_parallelism().map_or(0, |n| n.get()));
    eprintln!(
        "  session.list: in-process {in_process_list:?}, WebSocket {ws_list:?}, overhead {:?}",
        ws_list.saturating_sub(in_process_list)
    );
    if let (Some(id), Some(hello)) = (&session, &hello) {
        let in_process = server_runtime.block_on(sample(300, || async {
            let outcome = manager.execute(id, Command::code("console.log('hello')"), ExecOptions::default());
            assert!(outcome.await.expect("execute").success);
        }));
        let over_ws = client_runtime.block_on(sample_round_trips(&mut ws, hello, 300));
        eprintln!(
            "  Deno execute_code hello: in-process {in_process:?}, WebSocket {over_ws:?}, overhead {:?}",
            over_ws.saturating_sub(in_process)
        );
    }
    let total = CONNECTIONS * 500;
    let started = Instant::now();
    client_runtime.block_on(futures::future::join_all(clients.iter_mut().map(|ws| async move {
        for _ in 0..total / CONNECTIONS {
            round_trip(ws, list).await;
        }
    })));
    let rate = total as f64 / started.elapsed().as_secs_f64();
    eprintln!("  session.list throughput, {CONNECTIONS} connections: {rate:.0} requests/s\n");

    drop(clients);
    server_runtime.block_on(server.shutdown());
}

criterion_group!(benches, server_benches);
criterion_main!(benches);
