//! An engine restart loses nothing: with live restore (`scripts/docker-engine.sh`) the
//! session containers keep running while the engine is down; the backend re-attaches to
//! their agents when it answers again, and the sessions keep their files and interpreter
//! state. A session whose container did not survive is closed with a clear reason.
//!
//! This stops and starts the machine's one Docker engine, which would break any other
//! Docker test running at the same time, so it runs only when asked:
//! `CODEBEAKER_TEST_ENGINE_RESTART=1` (CI runs it on its own, after the other tests).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use codebeaker::{Command, ErrorKind, Language, SessionConfig};
use common::run;

fn engine_script(action: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/docker-engine.sh");
    let status = std::process::Command::new(&script).arg(action).status().expect("docker-engine.sh");
    assert!(status.success(), "docker-engine.sh {action} failed: {status}");
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_survive_an_engine_restart() {
    if std::env::var("CODEBEAKER_TEST_ENGINE_RESTART").as_deref() != Ok("1") {
        eprintln!("*** SKIPPED: engine restart test (set CODEBEAKER_TEST_ENGINE_RESTART=1; it restarts dockerd) ***");
        return;
    }
    // Live restore must be on before the sessions start.
    if docker(&["info", "--format", "{{.LiveRestoreEnabled}}"]) != "true" {
        engine_script("restart");
    }
    let Some(backend) = common::agent_backend("engine-restart", 0).await else { return };
    let manager = common::manager(&backend);
    let kept = manager.create(SessionConfig::new(Language::Python)).await.expect("session");
    let lost = manager.create(SessionConfig::new(Language::Python)).await.expect("session");
    let defined = run(&manager, &kept.session_id, Command::code("counter = 41")).await;
    assert!(defined.success, "{:?}", defined.to_json());
    assert!(run(&manager, &kept.session_id, Command::write_file("notes.txt", "kept").unwrap()).await.success);
    let lost_pid = docker(&["inspect", "--format", "{{.State.Pid}}", &lost.container_id]);

    engine_script("stop");
    // While the engine is down, a command says so and the session stays.
    let during = manager.execute(&kept.session_id, Command::code("counter"), Default::default()).await;
    let during = during.expect("the session still exists");
    assert!(during.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::BackendUnavailable), "{:?}", during.to_json());
    // One container dies while nobody watches.
    let killed = std::process::Command::new("kill").args(["-9", &lost_pid]).status().expect("kill");
    assert!(killed.success());
    engine_script("start");

    let after = run(&manager, &kept.session_id, Command::code("counter + 1")).await;
    assert_eq!(after.to_json()["result"], "42", "interpreter state kept: {:?}", after.to_json());
    let notes = run(&manager, &kept.session_id, Command::read_file("notes.txt").unwrap()).await;
    assert_eq!(notes.to_json()["result"]["content"], "kept");

    let gone = manager.execute(&lost.session_id, Command::code("1"), Default::default()).await;
    let reason = match gone {
        Ok(outcome) => outcome.error.map(|e| e.to_string()).unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    assert!(reason.contains("stopped") || reason.contains("no longer exists"), "a clear reason: {reason}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(manager.info(&lost.session_id).is_err(), "the dead session is closed");

    manager.shutdown().await;
    common::finish(backend).await;
}
