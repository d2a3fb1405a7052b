//! Shared set-up of the Docker backend's tests: a backend on the real engine, or a loud
//! skip when none answers (a failure when `CODEBEAKER_REQUIRE_DOCKER=1`, as in CI). The
//! tests prepare nothing themselves: CI runs `scripts/docker-engine.sh` and
//! `scripts/build-images.sh` first.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Command, CommandOutcome, CommandResult, ExecOptions, ManagerConfig, SessionManager};
use codebeaker_docker::{AgentBinary, DockerBackend, DockerConfig};

/// A backend whose containers carry their own owner label, so test binaries running at
/// the same time never sweep each other's containers. `None` (after a loud SKIPPED line)
/// when no engine answers and Docker is not required.
pub async fn backend(owner: &str, pool_size: usize) -> Option<Arc<DockerBackend>> {
    let config = DockerConfig::default().with_owner(format!("codebeaker-test-{owner}")).with_pool_size(pool_size);
    connect(owner, config).await
}

/// A backend whose containers run the in-container agent (the static build found by
/// [`AgentBinary::discover`]); `None` after a loud skip when there is no engine or no
/// agent build (a failure when `CODEBEAKER_REQUIRE_DOCKER=1`).
pub async fn agent_backend(owner: &str, pool_size: usize) -> Option<Arc<DockerBackend>> {
    let config = DockerConfig::default().with_owner(format!("codebeaker-test-{owner}")).with_pool_size(pool_size);
    if config.agent == AgentBinary::Off {
        skip(owner, "no codebeaker-agent build found (scripts/build-agent.sh, or set CODEBEAKER_AGENT)");
        return None;
    }
    connect(owner, config).await
}

/// A backend without the agent: commands through the exec API, files through the archive API.
pub async fn exec_backend(owner: &str, pool_size: usize) -> Option<Arc<DockerBackend>> {
    let config = DockerConfig::default()
        .with_owner(format!("codebeaker-test-{owner}"))
        .with_pool_size(pool_size)
        .with_agent(AgentBinary::Off);
    connect(owner, config).await
}

fn skip(owner: &str, why: &str) {
    if std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("CODEBEAKER_REQUIRE_DOCKER=1 but the docker backend tests ({owner}) cannot run: {why}");
    }
    // Straight to the stderr handle: the test harness captures `eprintln!`.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: docker backend tests ({owner}): {why} ***\n");
}

async fn connect(owner: &str, config: DockerConfig) -> Option<Arc<DockerBackend>> {
    match DockerBackend::connect(config).await {
        Ok(backend) => Some(backend),
        Err(e) => {
            skip(owner, &e.to_string());
            None
        }
    }
}

/// Shuts the backend down and checks that no container with its label is left.
pub async fn finish(backend: Arc<DockerBackend>) {
    use codebeaker::Backend;
    backend.shutdown().await.expect("shutdown");
    let owner = backend.config().owner.clone();
    let left = leftover_containers(&owner);
    assert!(left.is_empty(), "containers labelled {owner} left behind: {left:?}");
}

/// Ids of containers labelled with `owner`, as the docker CLI sees them.
pub fn leftover_containers(owner: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=org.codebeaker.owner={owner}")])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

pub fn manager(backend: &Arc<DockerBackend>) -> SessionManager {
    SessionManager::new(vec![backend.clone() as Arc<dyn codebeaker::Backend>], ManagerConfig::default())
}

pub async fn run(manager: &SessionManager, id: &str, command: Command) -> CommandOutcome {
    run_with(manager, id, command, Duration::from_secs(60)).await
}

pub async fn run_with(manager: &SessionManager, id: &str, command: Command, timeout: Duration) -> CommandOutcome {
    let what = format!("{command:?}");
    let what = what.chars().take(200).collect::<String>();
    manager
        .execute(id, command, ExecOptions { timeout: Some(timeout), output: None })
        .await
        .unwrap_or_else(|e| panic!("{what} did not run: {e}"))
}

/// The shell result of an outcome, or a panic showing it.
pub fn shell(outcome: &CommandOutcome) -> &codebeaker::ShellResult {
    match &outcome.result {
        Some(CommandResult::ExecuteShell(r)) => r,
        other => panic!("expected a shell result, got {other:?} ({:?})", outcome.error),
    }
}

/// `sh -c script`.
pub fn sh(script: &str) -> Command {
    Command::shell("sh", ["-c", script])
}
