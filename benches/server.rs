//! Server speed (issue 6): loopback WebSocket round trips of `session.list` and of a Deno
//! `execute_code` hello, each beside the same call made in-process on the session manager
//! (the difference is the protocol's overhead), and `session.list` throughput over 32
//! concurrent connections.
//!
//! The server runs on its own 2-thread runtime, the clients on a single-thread one, as a
//! separate client process would. A summary with medians is printed at the end.
//! The Deno part is skipped, loudly, when the server has no Deno backend.
//!
//! With `SERVER_BENCH_REFERENCE=ws://host:port/ws/jsonrpc`, the same three calls are also
//! made, in the same run, against that server (the hand-written stack this one replaced,
//! built from an older commit; see `benches/README.md`), and the Deno hello against a
//! second in-process server whose Deno backend runs in threads, as that stack's did.

mod support;

use std::time::{Duration, Instant};

use codebeaker::{Command, ExecOptions, Language, SessionConfig, SessionManager};
use codebeaker_deno::{DenoConfig, DenoIsolation};
use codebeaker_server::{BackendChoice, BackendOptions, Backends, Server, ServerConfig, ServerHandle};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use support::{connect, median, round_trip, Ws};

const CONNECTIONS: usize = 32;

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

fn start_server(runtime: &tokio::runtime::Runtime, isolation: DenoIsolation) -> (ServerHandle, bool) {
    runtime.block_on(async {
        let options = BackendOptions {
            choice: BackendChoice::Only(vec!["deno".into()]),
            deno: DenoConfig { isolation, ..DenoConfig::default() },
            ..BackendOptions::default()
        };
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
    let (server, deno) = start_server(&server_runtime, DenoIsolation::default());
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
            manager.create(SessionConfig::new(Language::TypeScript)).await.expect("create a Deno session").session_id
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
        b.iter_custom(|iters| client_runtime.block_on(spread(&mut clients, list, iters * per_iteration)))
    });
    group.finish();
    let reference = std::env::var("SERVER_BENCH_REFERENCE").ok();
    if let Some(url) = &reference {
        reference_benches(c, &server_runtime, &client_runtime, url);
    }

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
    let total = CONNECTIONS as u64 * 500;
    let rate = total as f64 / client_runtime.block_on(spread(&mut clients, list, total)).as_secs_f64();
    eprintln!("  session.list throughput, {CONNECTIONS} connections: {rate:.0} requests/s\n");
    if reference.is_none() {
        eprintln!("(no SERVER_BENCH_REFERENCE: the reference stack was not measured)\n");
    }

    drop(clients);
    server_runtime.block_on(server.shutdown());
}

/// `total` round trips of `request`, spread over `clients` (one at a time on each): the
/// time they took together.
async fn spread(clients: &mut [Ws], request: &str, total: u64) -> Duration {
    let each = total / clients.len() as u64;
    let started = Instant::now();
    futures::future::join_all(clients.iter_mut().map(|ws| async move {
        for _ in 0..each {
            round_trip(ws, request).await;
        }
    }))
    .await;
    started.elapsed()
}

/// The reference stack at `url`, beside a second in-process server whose Deno backend runs
/// in threads (as the reference's does): the same calls, in the same run.
fn reference_benches(
    c: &mut Criterion,
    server_runtime: &tokio::runtime::Runtime,
    client_runtime: &tokio::runtime::Runtime,
    url: &str,
) {
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"session.list","params":{}}"#;
    let create = r#"{"jsonrpc":"2.0","id":3,"method":"session.create","params":{"language":"deno"}}"#;
    let (threads, _) = start_server(server_runtime, DenoIsolation::Thread);
    let mut targets = Vec::new();
    for (name, url) in [("reference stack", url.to_owned()), ("this server, Deno in threads", threads.ws_url())] {
        let mut ws = client_runtime.block_on(connect(&url));
        let created = client_runtime.block_on(round_trip(&mut ws, create));
        let id = created["result"]["sessionId"].as_str().unwrap_or_else(|| panic!("{name}: {created}")).to_owned();
        let hello = json!({"jsonrpc": "2.0", "id": 2, "method": "session.execute",
            "params": {"sessionId": id, "command": {"type": "execute_code", "code": "console.log('hello')"}}})
        .to_string();
        targets.push((name, url, ws, hello));
    }
    let mut group = c.benchmark_group("server-reference");
    for (name, url, ws, hello) in &mut targets {
        if *name == "reference stack" {
            group.bench_function(format!("{name}: session.list over loopback WebSocket"), |b| {
                b.iter(|| client_runtime.block_on(round_trip(ws, list)))
            });
            let mut clients: Vec<Ws> =
                client_runtime.block_on(futures::future::join_all((0..CONNECTIONS).map(|_| connect(url))));
            let per_iteration = CONNECTIONS as u64 * 50;
            group.throughput(Throughput::Elements(per_iteration));
            group.bench_function(format!("{name}: session.list throughput, {CONNECTIONS} connections"), |b| {
                b.iter_custom(|iters| client_runtime.block_on(spread(&mut clients, list, iters * per_iteration)))
            });
            group.throughput(Throughput::Elements(1));
        }
        group.bench_function(format!("{name}: Deno execute_code hello over loopback WebSocket"), |b| {
            b.iter(|| {
                let response = client_runtime.block_on(round_trip(ws, hello));
                assert_eq!(response["result"]["result"], "hello");
            })
        });
    }
    group.finish();
    // Criterion runs one benchmark after the other, and this machine drifts between them by
    // more than the difference sought: the summary alternates the two servers call by call.
    let [(reference, _, reference_ws, reference_hello), (ours, _, ours_ws, ours_hello)] = &mut targets[..] else {
        unreachable!("two targets")
    };
    let (mut theirs_list, mut ours_list, mut theirs_hello, mut ours_hello_times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    client_runtime.block_on(async {
        for _ in 0..2000 {
            theirs_list.push(timed(round_trip(reference_ws, list)).await);
            ours_list.push(timed(round_trip(ours_ws, list)).await);
            theirs_hello.push(timed(round_trip(reference_ws, reference_hello)).await);
            ours_hello_times.push(timed(round_trip(ours_ws, ours_hello)).await);
        }
    });
    eprintln!("\nsummary, alternating call by call (medians of 2000 each):");
    eprintln!("  session.list: {reference} {:?}, {ours} {:?}", median(theirs_list), median(ours_list));
    eprintln!("  Deno hello: {reference} {:?}, {ours} {:?}\n", median(theirs_hello), median(ours_hello_times));
    server_runtime.block_on(threads.shutdown());
}

/// How long `call` took.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> Duration {
    let started = Instant::now();
    call.await;
    started.elapsed()
}

criterion_group!(benches, server_benches);
criterion_main!(benches);
