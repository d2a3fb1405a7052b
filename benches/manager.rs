//! The session manager's own cost per command: ticket, spans, timeout guard and result
//! envelope, measured on the temp-dir test backend (which does almost nothing), so the
//! number is the floor under every backend's round trip.

use codebeaker::testing::TempDirBackend;
use codebeaker::{Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use criterion::{criterion_group, criterion_main, Criterion};

fn manager_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (manager, id) = runtime.block_on(async {
        let manager = SessionManager::new(vec![TempDirBackend::new(&[Language::Python])], ManagerConfig::default());
        let id = manager.create(SessionConfig::new(Language::Python)).await.expect("create").session_id;
        (manager, id)
    });
    let mut group = c.benchmark_group("manager");
    group.bench_function("execute_code round trip (tempdir backend)", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome =
                manager.execute(&id, Command::code("print hi"), ExecOptions::default()).await.expect("execute");
            assert!(outcome.success);
        })
    });
    group.bench_function("write_file 1 KiB (tempdir backend)", |b| {
        let content = "x".repeat(1024);
        b.to_async(&runtime).iter(|| async {
            let command = Command::write_file("bench.txt", content.as_str()).unwrap();
            let outcome = manager.execute(&id, command, ExecOptions::default()).await.expect("execute");
            assert!(outcome.success);
        })
    });
    group.bench_function("session create + close (tempdir backend)", |b| {
        b.to_async(&runtime).iter(|| async {
            let info = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
            manager.close(&info.session_id).await.expect("close");
        })
    });
    group.finish();
    runtime.block_on(manager.shutdown());
}

criterion_group!(benches, manager_overhead);
criterion_main!(benches);
