//! Pause, snapshots and fork (issue 21) on Docker python sessions, each beside what it
//! is measured against: `session.pause` and `session.resume` (floor: 50 ms each), a
//! snapshot of a 10 MiB workspace (floor: 500 ms), a session created from that snapshot
//! beside a plain create (floor: 300 ms), and a fork (files copied) beside both. Skips,
//! loudly, when no Docker engine answers or the agent build is missing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codebeaker::snapshot::SnapshotStore;
use codebeaker::{Backend, Command, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_docker::{DockerBackend, DockerConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn lifecycle(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let config = DockerConfig::default().with_owner("codebeaker-bench-lifecycle").with_pool_size(0);
    let backend = match runtime.block_on(DockerBackend::connect(config)) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("\n*** SKIPPED: lifecycle benches: {e} ***\n");
            return;
        }
    };
    let store_dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::open(store_dir.path(), 64 << 30).expect("store");
    let _entered = runtime.enter();
    let manager = SessionManager::new(
        vec![backend.clone() as Arc<dyn Backend>],
        ManagerConfig { snapshots: Some(store), ..ManagerConfig::default() },
    );
    let session = runtime.block_on(manager.open(SessionConfig::new(Language::Python))).expect("a python session");
    let fill = Command::shell("sh", ["-c", "head -c 10485760 /dev/urandom > ten.bin"]);
    let filled = runtime.block_on(session.execute(fill)).expect("fill");
    assert!(filled.success, "{filled:?}");

    let mut group = c.benchmark_group("lifecycle");
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    group.bench_function("pause (floor 50 ms)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    session.pause().await.expect("pause");
                    total += started.elapsed();
                    session.resume().await.expect("resume");
                }
                total
            })
        })
    });
    group.bench_function("resume (floor 50 ms)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    session.pause().await.expect("pause");
                    let started = Instant::now();
                    session.resume().await.expect("resume");
                    total += started.elapsed();
                }
                total
            })
        })
    });
    let mut snapshot_id = String::new();
    group.bench_function("snapshot of a 10 MiB workspace (floor 500 ms)", |b| {
        b.iter(|| {
            let taken = runtime.block_on(session.snapshot()).expect("snapshot");
            if !snapshot_id.is_empty() {
                manager.delete_snapshot_as(None, &snapshot_id).expect("delete");
            }
            snapshot_id = taken.snapshot_id;
        })
    });
    let mut from_snapshot = SessionConfig::new(Language::Python);
    from_snapshot.from_snapshot = Some(snapshot_id.clone());
    group.bench_function("create from the snapshot (floor 300 ms)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let created = manager.create(from_snapshot.clone()).await.expect("create from snapshot");
                manager.close(&created.session_id).await.expect("close");
            })
        })
    });
    group.bench_function("create, for comparison", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let created = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
                manager.close(&created.session_id).await.expect("close");
            })
        })
    });
    group.bench_function("fork (files copied)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let forked = manager.fork_as(None, session.id()).await.expect("fork");
                manager.close(&forked.info.session_id).await.expect("close");
            })
        })
    });
    group.finish();
    runtime.block_on(async {
        session.close().await.expect("close");
        backend.shutdown().await.expect("shutdown");
    });
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
