//! Docker backend speed (issues 4 and 12): session create cold and from the warm pool,
//! close, `execute_shell` of `true`, python `print` in the persistent interpreter,
//! `write_file` + `read_file` of 1 KiB, each beside its floor: the raw exec API (bollard
//! create + start + inspect) and the `docker exec` CLI. Commands go through the
//! in-container agent when a build of it is found (`scripts/build-agent.sh`); the bench
//! says which. Skips, loudly, when no Docker engine answers or the images are missing.

use std::time::{Duration, Instant};

use codebeaker::{Backend, Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_docker::{AgentBinary, DockerBackend, DockerConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn docker_backend(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut config = DockerConfig::default().with_owner("codebeaker-bench").with_pool_size(0);
    config.pool_size.insert(Language::Python, 1);
    eprintln!("docker benches: agent = {:?}", config.agent);
    if config.agent == AgentBinary::Off {
        eprintln!("*** no agent build found: commands use the exec API (run scripts/build-agent.sh) ***");
    }
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
                .args(["exec", "-u", "1000:1000", &container, "true"])
                .status()
                .expect("docker exec");
            assert!(status.success());
        })
    });
    let kib = "x".repeat(1024);
    group.bench_function("write_file 1 KiB", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome = manager
                .execute(&id, Command::write_file("bench.txt", kib.as_str()), ExecOptions::default())
                .await
                .expect("execute");
            assert!(outcome.success);
        })
    });
    group.bench_function("write_file + read_file 1 KiB", |b| {
        b.to_async(&runtime).iter(|| async {
            let written = manager
                .execute(&id, Command::write_file("bench2.txt", kib.as_str()), ExecOptions::default())
                .await
                .expect("execute");
            let read =
                manager.execute(&id, Command::read_file("bench2.txt"), ExecOptions::default()).await.expect("execute");
            assert!(written.success && read.success);
        })
    });
    group.bench_function("read_file 1 KiB", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome =
                manager.execute(&id, Command::read_file("bench.txt"), ExecOptions::default()).await.expect("execute");
            assert!(outcome.success);
        })
    });
    group.bench_function("floor: docker exec CLI cat 1 KiB", |b| {
        b.iter(|| {
            let out = std::process::Command::new("docker")
                .args(["exec", "-u", "1000:1000", &container, "cat", "/workspace/bench.txt"])
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

criterion_group!(benches, docker_backend);
criterion_main!(benches);
