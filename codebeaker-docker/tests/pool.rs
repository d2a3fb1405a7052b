//! The warm pool keeps up and nothing is left behind: the pool grows under a burst within
//! the operator's ceiling and shrinks back to its floor when idle; a closed session's
//! guest runs nothing more when close answers, and its container is removed with its
//! volume soon after; a backend dropped without shutdown (a crash) leaves containers that
//! the next start sweeps. Checked against the engine, by owner label.

mod common;

use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Backend as _, Command, Language, SessionConfig};
use codebeaker_docker::{DockerBackend, DockerConfig};
use common::{eventually, leftover_containers, leftover_volumes, run};

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A backend with a python pool only: `floor` spares, growing to `max`.
async fn python_pool(owner: &str, floor: usize, max: usize, idle: Duration) -> Option<Arc<DockerBackend>> {
    let mut config = DockerConfig::default().with_owner(format!("codebeaker-test-{owner}")).with_pool_size(0);
    config.pool_size.insert(Language::Python, floor);
    config.pool_max = max;
    config.pool_idle = idle;
    common::connect_with(owner, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_grows_under_a_burst_and_shrinks_back_when_idle() {
    let Some(backend) = python_pool("pool-grows", 1, 6, Duration::from_secs(10)).await else { return };
    assert!(backend.wait_for_pool(Duration::from_secs(120)).await, "the pool did not fill");
    let pool = backend.pool();
    assert_eq!(pool.target(Language::Python), 1);
    let manager = common::manager(&backend);

    // A burst of 6 concurrent creates finds one spare: the others are misses, and the
    // pool raises its target to the ceiling.
    let creates = (0..6).map(|_| manager.create(SessionConfig::new(Language::Python)));
    let sessions: Vec<_> = futures::future::join_all(creates).await.into_iter().map(|s| s.expect("create")).collect();
    assert_eq!(pool.target(Language::Python), 6, "the target grows with the misses, up to --docker-pool-max");
    let grown = eventually(Duration::from_secs(60), || pool.ready(Language::Python) >= 4);
    assert!(grown.await, "the pool did not grow (has {} spares)", pool.ready(Language::Python));
    // Every session works and no container is shared.
    let mut ids: Vec<&str> = sessions.iter().map(|s| s.container_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    let ran = run(&manager, &sessions[5].session_id, Command::code("print('burst')")).await;
    assert_eq!(ran.to_json()["result"], "burst");
    for session in &sessions {
        manager.close(&session.session_id).await.expect("close");
    }

    // Idle: the target halves every 10 s back to the floor, and the surplus is removed.
    let shrunk =
        eventually(Duration::from_secs(60), || pool.target(Language::Python) == 1 && pool.ready(Language::Python) == 1);
    assert!(shrunk.await, "the pool did not shrink back (target {})", pool.target(Language::Python));
    let owner = backend.config().owner.clone();
    let settled = eventually(Duration::from_secs(30), || leftover_containers(&owner).len() == 1);
    assert!(settled.await, "closed sessions' and surplus spares' containers left: {:?}", leftover_containers(&owner));
    manager.shutdown().await;
    common::finish(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_stops_the_guest_at_once_and_removes_in_the_background() {
    let Some(backend) = python_pool("close-fast", 0, 0, Duration::from_secs(60)).await else { return };
    let owner = backend.config().owner.clone();
    let manager = common::manager(&backend);
    let session = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
    // Something busy that would go on running if close only forgot the session.
    let busy = run(&manager, &session.session_id, common::sh("nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"));
    assert!(busy.await.success);
    let volume = docker(&["inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", &session.container_id]);
    assert!(!volume.is_empty());

    let uid = common::guest_uid(&session.container_id);
    assert!(!common::processes_of(uid).is_empty(), "the busy loop did not start");

    manager.close(&session.session_id).await.expect("close");
    // When close answered, nothing of the guest ran any more (its agent killed it all).
    let left = common::processes_of(uid);
    assert!(left.is_empty(), "guest processes still run after close: {left:?}");
    assert!(backend.live_sandboxes().await.expect("live").is_empty());

    let gone = eventually(Duration::from_secs(30), || {
        leftover_containers(&owner).is_empty() && leftover_volumes(&owner).is_empty()
    });
    assert!(gone.await, "left after close: {:?} {:?}", leftover_containers(&owner), leftover_volumes(&owner));
    manager.shutdown().await;
    common::finish(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_backend_leaves_what_the_next_start_sweeps() {
    let Some(crashed) = python_pool("crash-sweep", 1, 2, Duration::from_secs(60)).await else { return };
    let owner = crashed.config().owner.clone();
    assert!(crashed.wait_for_pool(Duration::from_secs(120)).await, "the pool did not fill");
    let config = SessionConfig::new(Language::Python);
    let limits = crashed.config().policy.limits_for(&config).expect("limits");
    let sandbox = crashed.create_sandbox(&config, &limits).await.expect("create");
    assert!(crashed.wait_for_pool(Duration::from_secs(120)).await, "the pool did not refill");
    // The crash: nothing is shut down or closed.
    std::mem::forget(sandbox);
    drop(crashed);
    let left = leftover_containers(&owner);
    assert!(!left.is_empty(), "the crash should leave the session's container");
    assert!(!leftover_volumes(&owner).is_empty(), "and its volume");

    // The next start with the same owner removes them (its own spares come after).
    let Some(next) = python_pool("crash-sweep", 0, 0, Duration::from_secs(60)).await else { return };
    assert!(leftover_containers(&owner).is_empty(), "not swept: {:?}", leftover_containers(&owner));
    assert!(leftover_volumes(&owner).is_empty(), "volumes not swept: {:?}", leftover_volumes(&owner));
    common::finish(next).await;
}
