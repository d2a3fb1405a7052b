//! Every timing of a Docker sandbox is the operator's: the interrupt grace set in the
//! policy decides how long the in-container agent waits for interrupted code before it
//! kills and restarts the interpreter, and no grace is a hand-picked fraction of another
//! in this crate or a constant of the agent's own.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Backend, Command, CommandResult, Language, ManagerConfig, Policy, SessionConfig, SessionManager};
use codebeaker_docker::DockerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_policys_interrupt_grace_decides_when_the_agent_restarts_the_interpreter() {
    let policy = Policy { interrupt_grace_ms: 1_300, stop_grace_ms: 3_000, ..Policy::default() };
    policy.validate().expect("a valid policy");
    let config =
        DockerConfig::default().with_owner("codebeaker-test-timings").with_policy(policy.clone()).with_pool_size(0);
    let Some(backend) = common::connect_with("timings", config).await else { return };
    let manager = SessionManager::new(
        vec![backend.clone() as Arc<dyn Backend>],
        ManagerConfig { policy, ..ManagerConfig::default() },
    );
    let id = manager.create(SessionConfig::new(Language::Python)).await.expect("create").session_id;
    common::run(&manager, &id, Command::code("kept = 1")).await;
    // Code that ignores the interrupt: only the kill after the grace stops it.
    let stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)";
    let outcome = common::run_with(&manager, &id, Command::code(stubborn), Duration::from_millis(500)).await;
    let Some(CommandResult::ExecuteCode(result)) = &outcome.result else { panic!("{:?}", outcome.to_json()) };
    assert!(result.timed_out && result.state_reset, "{:?}", outcome.to_json());
    // Killed once the policy's 1300 ms were over (the default 500 would end it by ~1 s),
    // and well before the manager's backstop (timeout + stop grace).
    let said = outcome.to_json().to_string();
    assert!(result.duration_ms >= 500 + 1_300, "killed before the policy's grace was over: {said}");
    assert!(result.duration_ms < 500 + 3_000, "not killed within the stop grace: {said}");
    // A fresh interpreter: the earlier state is gone.
    let fresh = common::run(&manager, &id, Command::code("print('kept' in globals())")).await;
    assert_eq!(fresh.to_json()["result"], "False", "{:?}", fresh.to_json());
    manager.close(&id).await.expect("close");
    common::finish(backend).await;
}

/// Code lines of the `.rs` files beneath `dir` (comment lines left out), with where.
fn code_lines(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(code_lines(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if !line.trim_start().starts_with("//") {
                    found.push((format!("{}:{}", path.display(), n + 1), line.to_owned()));
                }
            }
        }
    }
    found
}

/// Whether `line` calls `call` with a literal number (`Duration::from_millis(250)`).
fn literal_call(line: &str, call: &str) -> bool {
    line.match_indices(call).any(|(at, _)| line[at + call.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

#[test]
fn no_grace_is_a_fraction_and_the_agent_keeps_no_timing_of_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for (at, line) in code_lines(&root.join("codebeaker-docker/src")) {
        let fraction = line.contains("mul_f64(")
            || (line.to_lowercase().contains("grace")
                && (literal_call(&line, "/ ") || literal_call(&line, "* ") || line.contains("* 0.")));
        if fraction {
            found.push(format!("{at}: a fraction of a grace: {}", line.trim()));
        }
    }
    for (at, line) in code_lines(&root.join("codebeaker-agent/src/agent")) {
        let constant =
            ["Duration::from_millis(", "Duration::from_secs(", "Duration::from_secs_f64(", "Duration::from_micros("]
                .iter()
                .any(|call| literal_call(&line, call))
                || (line.contains("const ") && line.contains(": Duration"));
        if constant {
            found.push(format!("{at}: a timing constant of the agent's own: {}", line.trim()));
        }
    }
    assert!(found.is_empty(), "every timing must come from codebeaker::Policy:\n{}", found.join("\n"));
}
