//! A live fork of a Deno session (issue 21, floor: 5 ms) beside the two ways of making a
//! session it is measured against, in the same run: a create from the warm pool, and a
//! create whose worker the zygote forks cold. The forked session holds state
//! (`globalThis.x`, an imported module) and a small file, as an agent's would; each fork
//! is closed outside the measured time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codebeaker::{Backend, Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_deno::{DenoBackend, DenoConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn manager(pool_size: usize, root: &std::path::Path) -> SessionManager {
    let config = DenoConfig { pool_size, workspace_root: root.to_path_buf(), ..DenoConfig::default() };
    let backend = DenoBackend::new(config).expect("deno backend");
    SessionManager::new(
        vec![backend as Arc<dyn Backend>],
        ManagerConfig { max_sessions: 256, ..ManagerConfig::default() },
    )
}

/// Times `make` (a new session) `iters` times, closing each outside the measured time;
/// `settle` runs unmeasured before each.
async fn timed<F, S>(manager: &SessionManager, iters: u64, settle: S, make: F) -> Duration
where
    F: AsyncFn() -> String,
    S: AsyncFn(),
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        settle().await;
        let started = Instant::now();
        let id = make().await;
        total += started.elapsed();
        manager.close(&id).await.expect("close");
    }
    total
}

fn fork_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let _entered = runtime.enter();
    let root = std::env::temp_dir().join(format!("codebeaker-deno-fork-bench-{}", std::process::id()));
    let pooled = manager(4, &root);
    let cold = manager(0, &root);
    let original =
        runtime.block_on(pooled.create(SessionConfig::new(Language::TypeScript))).expect("session").session_id;
    let module = Command::write_file("counter.js", "export let n = 0; export const inc = () => ++n;").expect("command");
    let state = Command::code("globalThis.x = 41; globalThis.m = await import('./counter.js'); m.inc();");
    for command in [module, state] {
        let outcome = runtime.block_on(pooled.execute(&original, command, ExecOptions::default())).expect("ran");
        assert!(outcome.success, "{:?}", outcome.to_json());
    }

    let mut group = c.benchmark_group("deno-fork");
    group.sample_size(20).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    group.bench_function("session.fork live (floor 5 ms)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(timed(
                &pooled,
                iters,
                async || {},
                async || {
                    let forked = pooled.fork_as(None, &original).await.expect("fork");
                    assert!(!forked.state_reset);
                    forked.info.session_id.to_string()
                },
            ))
        })
    });
    group.bench_function("session create from the warm pool, for comparison", |b| {
        b.iter_custom(|iters| {
            // The pool refills between creates (unmeasured): this is handing out a ready worker.
            let refill = async || tokio::time::sleep(Duration::from_millis(40)).await;
            runtime.block_on(timed(&pooled, iters, refill, async || {
                let created = pooled.create(SessionConfig::new(Language::TypeScript)).await.expect("create");
                created.session_id.to_string()
            }))
        })
    });
    group.bench_function("session create cold (the zygote forks a worker), for comparison", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(timed(
                &cold,
                iters,
                async || {},
                async || {
                    let created = cold.create(SessionConfig::new(Language::TypeScript)).await.expect("create");
                    created.session_id.to_string()
                },
            ))
        })
    });
    group.finish();
    runtime.block_on(pooled.close(&original)).expect("close");
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, fork_benches);
criterion_main!(benches);
