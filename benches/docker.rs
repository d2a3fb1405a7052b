//! Docker backend speed (issues 4, 12 and 19): session create cold and from the warm pool,
//! close, `execute_shell` of `true`, python `print` in the persistent interpreter,
//! `write_file` + `read_file` of 1 KiB, each beside its floor: the raw exec API (bollard
//! create + start + inspect) and the `docker exec` CLI. Commands go through the
//! in-container agent (`scripts/build-agent.sh`). Skips, loudly, when no Docker engine
//! answers, the agent build or the images are missing.
//!
//! Under demand (issue 19), on a pool that may grow to 32 python spares: create at a
//! sustained 10 create+print+close cycles per second (p50 and p90 printed), a burst of 30
//! concurrent creates once the pool has grown beside 30 cold creates (what the engine
//! alone does), and close beside the engine's own kill + remove.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codebeaker::{Backend, Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_docker::{DockerBackend, DockerConfig};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

/// Sessions of the burst benchmark.
const BURST: usize = 30;
/// Pace of the sustained benchmark: one create+print+close cycle per period.
const PERIOD: Duration = Duration::from_millis(100);
/// Cycles of the sustained run the percentiles are taken over (besides criterion's).
const SUSTAINED_CYCLES: usize = 100;

fn docker_backend(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut config = DockerConfig::default().with_owner("codebeaker-bench").with_pool_size(0);
    config.pool_size.insert(Language::Python, 1);
    eprintln!("docker benches: agent = {:?}", config.agent);
    let backend = match runtime.block_on(DockerBackend::connect(config)) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("\n*** SKIPPED: docker benches: {e} ***\n");
            return;
        }
    };
    // The manager spawns its expiry sweeper: it needs the runtime entered.
    let _entered = runtime.enter();
    let manager = SessionManager::new(vec![backend.clone() as std::sync::Arc<dyn Backend>], ManagerConfig::default());
    let info = match runtime.block_on(async {
        backend.wait_for_pool(Duration::from_secs(120)).await;
        manager.create(SessionConfig::new(Language::Python)).await
    }) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("\n*** SKIPPED: docker benches: cannot create a python session: {e} ***\n");
            return;
        }
    };
    let (id, container) = (info.session_id, info.container_id);

    // Each sample of the pool benches first waits (unmeasured) for a spare container:
    // criterion sizes runs by measured time, so these ask for little of it.
    let mut pooled = c.benchmark_group("docker-pool");
    pooled.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_millis(300));
    pooled.bench_function("session create from the warm pool", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    backend.wait_for_pool(Duration::from_secs(60)).await;
                    let started = Instant::now();
                    let session = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
                    total += started.elapsed();
                    manager.close(&session.session_id).await.expect("close");
                }
                total
            })
        })
    });
    pooled.bench_function("floor: engine kill + remove of a session's running container", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    backend.wait_for_pool(Duration::from_secs(60)).await;
                    let session = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
                    let started = Instant::now();
                    assert!(backend.raw_remove(&session.container_id).await);
                    total += started.elapsed();
                    manager.close(&session.session_id).await.expect("close");
                }
                total
            })
        })
    });
    pooled.bench_function("session close", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    backend.wait_for_pool(Duration::from_secs(60)).await;
                    let session = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
                    let started = Instant::now();
                    manager.close(&session.session_id).await.expect("close");
                    total += started.elapsed();
                }
                total
            })
        })
    });
    pooled.finish();

    let mut group = c.benchmark_group("docker");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    group.bench_function("session create cold", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut config = SessionConfig::new(Language::Python);
                    config.memory_limit_mb = 256; // not what spares have: always a new container
                    let started = Instant::now();
                    let session = manager.create(config).await.expect("create");
                    total += started.elapsed();
                    manager.close(&session.session_id).await.expect("close");
                }
                total
            })
        })
    });
    group.bench_function("execute_shell true (session round trip)", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome = manager
                .execute(&id, Command::shell("true", Vec::<String>::new()), ExecOptions::default())
                .await
                .expect("execute");
            assert!(outcome.success);
        })
    });
    group.bench_function("execute_code python print (persistent interpreter)", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome =
                manager.execute(&id, Command::code("print('hi')"), ExecOptions::default()).await.expect("execute");
            assert_eq!(outcome.to_json()["result"], "hi");
        })
    });
    group.bench_function("floor: raw exec API true (create+start+inspect)", |b| {
        b.to_async(&runtime).iter(|| async {
            let code = backend.raw_exec(&container, &["true"]).await.expect("raw exec");
            assert_eq!(code, Some(0));
        })
    });
    group.bench_function("floor: docker exec CLI true", |b| {
        b.iter(|| {
            let status = std::process::Command::new("docker")
                .args(["exec", "-u", "65534:65534", &container, "true"])
                .status()
                .expect("docker exec");
            assert!(status.success());
        })
    });
    let kib = "x".repeat(1024);
    group.bench_function("write_file 1 KiB", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome = manager
                .execute(&id, Command::write_file("bench.txt", kib.as_str()).unwrap(), ExecOptions::default())
                .await
                .expect("execute");
            assert!(outcome.success);
        })
    });
    group.bench_function("write_file + read_file 1 KiB", |b| {
        b.to_async(&runtime).iter(|| async {
            let written = manager
                .execute(&id, Command::write_file("bench2.txt", kib.as_str()).unwrap(), ExecOptions::default())
                .await
                .expect("execute");
            let read = manager
                .execute(&id, Command::read_file("bench2.txt").unwrap(), ExecOptions::default())
                .await
                .expect("execute");
            assert!(written.success && read.success);
        })
    });
    group.bench_function("read_file 1 KiB", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome = manager
                .execute(&id, Command::read_file("bench.txt").unwrap(), ExecOptions::default())
                .await
                .expect("execute");
            assert!(outcome.success);
        })
    });
    group.bench_function("floor: docker exec CLI cat 1 KiB", |b| {
        b.iter(|| {
            let out = std::process::Command::new("docker")
                .args(["exec", "-u", "65534:65534", &container, "cat", "/workspace/bench.txt"])
                .output()
                .expect("docker exec");
            assert_eq!(out.stdout.len(), 1024);
        })
    });
    group.finish();
    runtime.block_on(async {
        manager.shutdown().await;
        let _ = backend.shutdown().await;
    });
}

/// The pool under demand: sustained 10/s, a burst of 30 (see the module docs).
fn docker_demand(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut config = DockerConfig::default().with_owner("codebeaker-bench-demand").with_pool_size(0).with_pool_max(32);
    config.pool_size.insert(Language::Python, 1);
    let backend = match runtime.block_on(DockerBackend::connect(config)) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("\n*** SKIPPED: docker demand benches: {e} ***\n");
            return;
        }
    };
    let _entered = runtime.enter();
    let manager = SessionManager::new(vec![backend.clone() as Arc<dyn Backend>], ManagerConfig::default());
    runtime.block_on(backend.wait_for_pool(Duration::from_secs(120)));

    let mut group = c.benchmark_group("docker-demand");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(100));
    let creates = Mutex::new(Vec::new());
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("session create at 10 create+print+close per second", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                let mut tick = tokio::time::interval(PERIOD);
                for _ in 0..iters {
                    tick.tick().await;
                    let started = Instant::now();
                    let session = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
                    let took = started.elapsed();
                    total += took;
                    creates.lock().unwrap().push(took);
                    let printed = manager
                        .execute(&session.session_id, Command::code("print('hi')"), ExecOptions::default())
                        .await
                        .expect("execute");
                    assert_eq!(printed.to_json()["result"], "hi");
                    manager.close(&session.session_id).await.expect("close");
                }
                total
            })
        })
    });
    // Criterion sizes its runs by the measured create time (~1 ms), so its samples hold few
    // cycles: the percentiles come from a fixed run of SUSTAINED_CYCLES more.
    runtime.block_on(async {
        let mut tick = tokio::time::interval(PERIOD);
        for _ in 0..SUSTAINED_CYCLES {
            tick.tick().await;
            let started = Instant::now();
            let session = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
            creates.lock().unwrap().push(started.elapsed());
            manager
                .execute(&session.session_id, Command::code("print('hi')"), ExecOptions::default())
                .await
                .expect("run");
            manager.close(&session.session_id).await.expect("close");
        }
    });
    let mut creates = creates.into_inner().unwrap();
    creates.sort_unstable();
    let at = |q: f64| creates[((creates.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "docker-demand: create at 10/s over {} cycles: p50 {:?}, p90 {:?}, max {:?} (pool target now {})",
        creates.len(),
        at(0.5),
        at(0.9),
        at(1.0),
        backend.pool().target(Language::Python)
    );

    group.measurement_time(Duration::from_secs(2));
    let burst = |config: SessionConfig, wait_for_spares: bool| {
        let (manager, backend, runtime) = (&manager, &backend, &runtime);
        move |iters: u64| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if wait_for_spares {
                        let deadline = Instant::now() + Duration::from_secs(180);
                        while backend.pool().ready(Language::Python) < BURST && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    let started = Instant::now();
                    let sessions = futures::future::join_all((0..BURST).map(|_| manager.create(config.clone()))).await;
                    total += started.elapsed();
                    for session in sessions {
                        manager.close(&session.expect("create").session_id).await.expect("close");
                    }
                }
                total
            })
        }
    };
    // The first burst (warm-up) finds the pool small and grows it to its ceiling.
    group.bench_function("burst of 30 concurrent creates, pool grown", |b| {
        b.iter_custom(burst(SessionConfig::new(Language::Python), true))
    });
    let mut cold = SessionConfig::new(Language::Python);
    cold.memory_limit_mb = 256; // not what spares have: always a new container
    group.bench_function("floor: burst of 30 concurrent cold creates (the engine alone)", |b| {
        b.iter_custom(burst(cold.clone(), false))
    });
    group.finish();
    runtime.block_on(async {
        manager.shutdown().await;
        let _ = backend.shutdown().await;
    });
}

criterion_group!(benches, docker_backend, docker_demand);
criterion_main!(benches);
