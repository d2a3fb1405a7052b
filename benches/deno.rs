//! Deno backend speed (issues 5 and 11), process and thread isolation side by side:
//! session create from the warm pool, `execute_code` of `console.log('hi')`, a TypeScript
//! snippet and a 1e6-step loop; a worker spawned cold; the pool under a burst of 100
//! creates. Beside the reference of the `deno` CLI (`pip install deno`) running the same
//! snippets as processes (skipped, loudly, when `deno` is not on `PATH`).
//!
//! Then, printed rather than timed: the memory of 1000 idle sessions (total PSS of this
//! process and its workers; skip with `DENO_BENCH_SKIP_RSS`), and the host's RSS over ten
//! rounds of 500 create/execute/close in each isolation (skip with `DENO_BENCH_SKIP_ROUNDS`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use codebeaker::{Backend, Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_deno::{DenoBackend, DenoConfig, DenoIsolation};
use criterion::{criterion_group, criterion_main, Criterion};

const HELLO: &str = "console.log('hi')";
const TYPESCRIPT: &str = "interface Point { x: number; y: number }\nconst norm = (p: Point): number => Math.hypot(p.x, p.y);\nconsole.log(norm({ x: 3, y: 4 }));";
const LOOP: &str = "let sum = 0;\nfor (let i = 0; i < 1e6; i++) sum += i;\nconsole.log(sum);";
const ISOLATIONS: [(&str, DenoIsolation); 2] = [("process", DenoIsolation::Process), ("thread", DenoIsolation::Thread)];

fn backend(pool_size: usize, root: &std::path::Path, isolation: DenoIsolation) -> Arc<DenoBackend> {
    let config = DenoConfig { pool_size, workspace_root: root.to_path_buf(), isolation, ..DenoConfig::default() };
    DenoBackend::new(config).expect("deno backend")
}

fn manager_of(backend: Arc<DenoBackend>, max_sessions: usize) -> SessionManager {
    SessionManager::new(vec![backend as Arc<dyn Backend>], ManagerConfig { max_sessions, ..ManagerConfig::default() })
}

fn status_kb(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pss_kb(pid: &str) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Process ids of every live descendant of `pid`: the worker zygote and the workers.
fn descendants(pid: &str) -> Vec<String> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let listed = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in listed.split_whitespace() {
            found.extend(descendants(child));
            found.push(child.to_owned());
        }
    }
    found
}

fn deno_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let _entered = runtime.enter();
    let root = std::env::temp_dir().join(format!("codebeaker-deno-bench-{}", std::process::id()));
    // Handing out a pooled runtime takes a fraction of a millisecond, but each sample waits
    // (unmeasured) for the pool to refill: criterion sizes runs by measured time, so this
    // group asks for little of it or the waits alone would take many minutes.
    let mut pooled = c.benchmark_group("deno-pool");
    pooled.sample_size(10).warm_up_time(Duration::from_millis(50)).measurement_time(Duration::from_millis(100));
    for (label, isolation) in ISOLATIONS {
        let manager = manager_of(backend(4, &root, isolation), 256);
        pooled.bench_function(format!("session create from the warm pool ({label})"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // Give the pool time to refill (a fork takes ~2 ms, a runtime thread
                        // ~30 ms): this measures handing out a ready runtime.
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        let started = Instant::now();
                        let session = manager.create(SessionConfig::new(Language::TypeScript)).await.expect("create");
                        total += started.elapsed();
                        manager.close(&session.session_id).await.expect("close");
                    }
                    total
                })
            })
        });
    }
    pooled.finish();

    let mut group = c.benchmark_group("deno");
    group.sample_size(50).measurement_time(Duration::from_secs(5));
    for (label, isolation) in ISOLATIONS {
        let manager = manager_of(backend(4, &root, isolation), 256);
        let id =
            runtime.block_on(manager.create(SessionConfig::new(Language::TypeScript))).expect("session").session_id;
        for (name, code) in [("hello", HELLO), ("typescript", TYPESCRIPT), ("1e6 loop", LOOP)] {
            let outcome =
                runtime.block_on(manager.execute(&id, Command::code(code), ExecOptions::default())).expect("ran");
            assert!(outcome.success, "{name}: {:?}", outcome.to_json());
            group.bench_function(format!("execute_code {name} ({label})"), |b| {
                b.to_async(&runtime).iter(|| async {
                    manager.execute(&id, Command::code(code), ExecOptions::default()).await.expect("ran")
                })
            });
        }
        runtime.block_on(manager.close(&id)).expect("close");
        let cold = manager_of(backend(0, &root, isolation), 256);
        let what = if isolation == DenoIsolation::Process { "worker spawn cold" } else { "runtime thread cold" };
        group.bench_function(format!("session create cold: {what} ({label})"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        let session = cold.create(SessionConfig::new(Language::TypeScript)).await.expect("create");
                        total += started.elapsed();
                        cold.close(&session.session_id).await.expect("close");
                    }
                    total
                })
            })
        });
    }

    match std::process::Command::new("deno").arg("--version").output() {
        Ok(version) if version.status.success() => {
            let dir = root.join("cli");
            std::fs::create_dir_all(&dir).expect("snippet dir");
            for (name, code, file) in [
                ("deno CLI hello", HELLO, "hello.ts"),
                ("deno CLI typescript", TYPESCRIPT, "point.ts"),
                ("deno CLI 1e6 loop", LOOP, "loop.ts"),
            ] {
                let path = dir.join(file);
                std::fs::write(&path, code).expect("write snippet");
                group.bench_function(name, |b| {
                    b.iter(|| {
                        let out = std::process::Command::new("deno")
                            .args(["run", "--quiet", "--no-prompt"])
                            .arg(&path)
                            .env("NO_COLOR", "1")
                            .output()
                            .expect("deno runs");
                        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    })
                });
            }
        }
        _ => eprintln!("\n*** SKIPPED: deno CLI reference: `deno` is not on PATH (pip install deno) ***\n"),
    }
    group.finish();

    burst(&runtime, &root);
    if std::env::var_os("DENO_BENCH_SKIP_RSS").is_none() {
        idle_sessions(&runtime, &root);
    }
    if std::env::var_os("DENO_BENCH_SKIP_ROUNDS").is_none() {
        for (label, isolation) in ISOLATIONS {
            rounds(&runtime, &root, label, isolation);
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// 100 creates at once from a pool of 4: how fast the pool refills.
fn burst(runtime: &tokio::runtime::Runtime, root: &std::path::Path) {
    for (label, isolation) in ISOLATIONS {
        let manager = Arc::new(manager_of(backend(4, root, isolation), 256));
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        let ids: Vec<codebeaker::SessionId> = runtime.block_on(async {
            let creates =
                    (0..100).map(|_| {
                        let manager = manager.clone();
                        async move {
                            manager.create(SessionConfig::new(Language::TypeScript)).await.expect("create").session_id
                        }
                    });
            futures::future::join_all(creates).await
        });
        let took = started.elapsed().as_secs_f64();
        eprintln!("\ndeno/burst of 100 creates ({label}): {took:.2} s, {:.0} sessions/s\n", 100.0 / took);
        runtime.block_on(async {
            for id in ids {
                manager.close(&id).await.expect("close");
            }
        });
    }
}

/// 1000 idle sessions: total PSS of this process and its workers.
fn idle_sessions(runtime: &tokio::runtime::Runtime, root: &std::path::Path) {
    for (label, isolation) in ISOLATIONS {
        let many = manager_of(backend(4, root, isolation), 1100);
        let before: u64 = pss_kb("self") + descendants("self").iter().map(|p| pss_kb(p)).sum::<u64>();
        let started = Instant::now();
        let ids: Vec<codebeaker::SessionId> = runtime.block_on(async {
            let mut ids = Vec::new();
            for _ in 0..1000 {
                let session = many.create(SessionConfig::new(Language::TypeScript)).await.expect("create");
                many.execute(&session.session_id, Command::code("globalThis.x = 1"), ExecOptions::default())
                    .await
                    .expect("ran");
                ids.push(session.session_id);
            }
            ids
        });
        let workers = descendants("self");
        let host = pss_kb("self");
        let worker_pss: u64 = workers.iter().map(|p| pss_kb(p)).sum();
        let total = host + worker_pss;
        eprintln!(
            "\ndeno/1000 idle sessions ({label}): total PSS {:.0} MiB (host {:.0} MiB + {} processes {:.0} MiB, {:.2} MiB each; before {:.0} MiB), created in {:.1} s\n",
            total as f64 / 1024.0,
            host as f64 / 1024.0,
            workers.len(),
            worker_pss as f64 / 1024.0,
            worker_pss as f64 / 1024.0 / workers.len().max(1) as f64,
            before as f64 / 1024.0,
            started.elapsed().as_secs_f64()
        );
        runtime.block_on(async {
            for id in ids {
                many.close(&id).await.expect("close");
            }
        });
    }
}

/// Ten rounds of 500 create/execute/close: the host's RSS after each.
fn rounds(runtime: &tokio::runtime::Runtime, root: &std::path::Path, label: &str, isolation: DenoIsolation) {
    let manager = manager_of(backend(4, root, isolation), 600);
    let mut seen = Vec::new();
    for _ in 0..10 {
        runtime.block_on(async {
            for _ in 0..500 {
                let session = manager.create(SessionConfig::new(Language::TypeScript)).await.expect("create");
                manager
                    .execute(
                        &session.session_id,
                        Command::code("globalThis.x = [1, 2, 3].map((v) => v * 2)"),
                        ExecOptions::default(),
                    )
                    .await
                    .expect("ran");
                manager.close(&session.session_id).await.expect("close");
            }
        });
        seen.push(status_kb("self", "VmRSS:") / 1024);
    }
    eprintln!("\ndeno/10 rounds of 500 sessions ({label}): host RSS after each round (MiB): {seen:?}\n");
}

criterion_group!(benches, deno_benches);
criterion_main!(benches);
