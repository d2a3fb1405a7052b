//! Container lifecycle: leftovers of an earlier run are removed at start-up, the warm
//! pool serves sessions and refills, spares are never shared, idle and lifetime expiry
//! remove containers, and shutdown leaves nothing labelled behind.

mod common;

use std::time::{Duration, Instant};

use codebeaker::{Backend, Command, Language, SessionConfig};
use common::run;

const OWNER: &str = "codebeaker-test-lifecycle";

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_leftovers_expiry_and_shutdown() {
    // A container "left by a crashed earlier run" (only when an engine answers).
    let label = format!("org.codebeaker.owner={OWNER}");
    let (leftover, orphan_volume) = if docker(&["info", "--format", "{{.ServerVersion}}"]).is_empty() {
        (String::new(), String::new())
    } else {
        (
            docker(&["run", "-d", "--network", "none", "--label", &label, "codebeaker-python:latest", "sleep", "600"]),
            docker(&["volume", "create", "--label", &label]),
        )
    };
    let Some(backend) = common::backend("lifecycle", 2).await else { return };
    assert!(!leftover.is_empty(), "could not start the leftover container");
    assert!(
        docker(&["volume", "ls", "-q", "--filter", &format!("name={orphan_volume}")]).is_empty(),
        "the orphaned volume {orphan_volume} was not removed at start-up"
    );
    assert!(
        docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={leftover}")]).is_empty(),
        "the leftover {leftover} was not removed at start-up"
    );

    assert!(backend.wait_for_pool(Duration::from_secs(120)).await, "the pool did not fill");
    let pool = backend.pool();
    assert_eq!(pool.ready(Language::Python), 2);
    let spares_before: Vec<String> = common::leftover_containers(OWNER);
    let manager = common::manager(&backend);

    // A default session comes from the pool, fast, and the pool refills.
    let started = Instant::now();
    let session = manager.create(SessionConfig::new(Language::Python)).await.expect("create");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "a warm create took {took:?}");
    assert!(
        spares_before.iter().any(|id| session.container_id.starts_with(id.as_str())),
        "the session did not get a spare"
    );
    assert_eq!(pool.ready(Language::Python), 1, "the spare was taken");
    let live = backend.live_sandboxes().await.expect("live");
    assert_eq!(live, vec![session.container_id.clone()], "spares are not live sandboxes");
    assert!(backend.wait_for_pool(Duration::from_secs(60)).await, "the pool refilled");
    let ran = run(&manager, &session.session_id, Command::code("print('warm')")).await;
    assert_eq!(ran.to_json()["result"], "warm");

    // A non-default session gets a fresh container; the pool is untouched.
    let mut custom = SessionConfig::new(Language::Python);
    custom.memory_limit_mb = 256;
    let cold = manager.create(custom).await.expect("create");
    assert_eq!(pool.ready(Language::Python), 2);
    let memory =
        docker(&["inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}", &cold.container_id]);
    assert_eq!(memory, format!("{0} {0}", 256 * 1024 * 1024), "memory limit without swap");

    // Closing removes the container and its workspace volume (in the background, soon).
    let volume = docker(&["inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", &cold.container_id]);
    manager.close(&cold.session_id).await.expect("close");
    let gone = common::eventually(Duration::from_secs(30), || {
        docker(&["ps", "-aq", "--filter", &format!("id={}", cold.container_id)]).is_empty()
            && docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}")]).is_empty()
    });
    assert!(gone.await, "container {} or volume {volume} left after close", cold.container_id);

    // Idle expiry removes the container (the manager sweeps every second).
    let mut idle = SessionConfig::new(Language::Python);
    idle.idle_timeout_minutes = 0.03;
    let idle = manager.create(idle).await.expect("create");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!backend.live_sandboxes().await.expect("live").contains(&idle.container_id), "idle session not expired");
    let gone = common::eventually(Duration::from_secs(30), || {
        docker(&["ps", "-aq", "--filter", &format!("id={}", idle.container_id)]).is_empty()
    });
    assert!(gone.await, "the expired session's container is left");

    // Shutdown removes the open session and the spares.
    manager.shutdown().await;
    common::finish(backend).await;
}
