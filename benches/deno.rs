//! Deno backend speed (issue 5): session create (from the warm pool and cold),
//! `execute_code` of `console.log('hi')`, a TypeScript snippet and a 1e6-step loop, each
//! in-process, beside the reference of the `deno` CLI (`pip install deno`) running the same
//! snippet as a process. Also prints the RSS of 1000 idle sessions. The CLI reference is
//! skipped, loudly, when `deno` is not on `PATH`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codebeaker::{Backend, Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_deno::{DenoBackend, DenoConfig};
use criterion::{criterion_group, criterion_main, Criterion};

const HELLO: &str = "console.log('hi')";
const TYPESCRIPT: &str = "interface Point { x: number; y: number }\nconst norm = (p: Point): number => Math.hypot(p.x, p.y);\nconsole.log(norm({ x: 3, y: 4 }));";
const LOOP: &str = "let sum = 0;\nfor (let i = 0; i < 1e6; i++) sum += i;\nconsole.log(sum);";

fn backend(pool_size: usize, root: &std::path::Path) -> Arc<DenoBackend> {
    DenoBackend::new(DenoConfig { pool_size, workspace_root: root.to_path_buf() }).expect("deno backend")
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn deno_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let _entered = runtime.enter();
    let root = std::env::temp_dir().join(format!("codebeaker-deno-bench-{}", std::process::id()));
    let warm = backend(4, &root);
    let manager = SessionManager::new(vec![warm.clone() as Arc<dyn Backend>], ManagerConfig::default());
    let cold = backend(0, &root);
    let cold_manager = SessionManager::new(vec![cold as Arc<dyn Backend>], ManagerConfig::default());

    let mut group = c.benchmark_group("deno");
    group.sample_size(50).measurement_time(Duration::from_secs(5));
    group.bench_function("session create from the warm pool", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Give the pool time to refill: this measures handing out a ready runtime.
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    let started = Instant::now();
                    let session = manager.create(SessionConfig::new(Language::Deno)).await.expect("create");
                    total += started.elapsed();
                    manager.close(&session.session_id).await.expect("close");
                }
                total
            })
        })
    });
    group.bench_function("session create cold (no pool)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let session = cold_manager.create(SessionConfig::new(Language::Deno)).await.expect("create");
                    total += started.elapsed();
                    cold_manager.close(&session.session_id).await.expect("close");
                }
                total
            })
        })
    });

    let id = runtime.block_on(manager.create(SessionConfig::new(Language::Deno))).expect("session").session_id;
    for (name, code) in
        [("execute_code hello", HELLO), ("execute_code typescript", TYPESCRIPT), ("execute_code 1e6 loop", LOOP)]
    {
        let outcome = runtime.block_on(manager.execute(&id, Command::code(code), ExecOptions::default())).expect("ran");
        assert!(outcome.success, "{name}: {:?}", outcome.to_json());
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                manager.execute(&id, Command::code(code), ExecOptions::default()).await.expect("ran")
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
    runtime.block_on(manager.close(&id)).expect("close");

    // Memory of idle sessions: 1000 sessions, each with a runtime thread and a workspace.
    if std::env::var_os("DENO_BENCH_SKIP_RSS").is_some() {
        return;
    }
    let many = SessionManager::new(
        vec![backend(4, &root) as Arc<dyn Backend>],
        ManagerConfig { max_sessions: 1100, ..ManagerConfig::default() },
    );
    let before = rss_mb();
    let started = Instant::now();
    let ids: Vec<String> = runtime.block_on(async {
        let mut ids = Vec::new();
        for _ in 0..1000 {
            let session = many.create(SessionConfig::new(Language::Deno)).await.expect("create");
            many.execute(&session.session_id, Command::code("globalThis.x = 1"), ExecOptions::default())
                .await
                .expect("ran");
            ids.push(session.session_id);
        }
        ids
    });
    let after = rss_mb();
    eprintln!(
        "\ndeno/1000 idle sessions: RSS {before:.0} MB -> {after:.0} MB (+{:.0} MB, {:.2} MB per session), created in {:.1} s\n",
        after - before,
        (after - before) / 1000.0,
        started.elapsed().as_secs_f64()
    );
    runtime.block_on(async {
        for id in ids {
            many.close(&id).await.expect("close");
        }
    });
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, deno_benches);
criterion_main!(benches);
