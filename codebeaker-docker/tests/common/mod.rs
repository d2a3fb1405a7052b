//! Shared set-up of the Docker backend's tests: a backend on the real engine, or a loud
//! skip when none answers (a failure when `CODEBEAKER_REQUIRE_DOCKER=1`, as in CI). The
//! tests prepare nothing themselves: CI runs `scripts/docker-engine.sh` and
//! `scripts/build-images.sh` first.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use codebeaker::{
    Command, CommandOutcome, CommandResult, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager,
};
use codebeaker_docker::{DockerBackend, DockerConfig};

/// A backend whose containers carry their own owner label, so test binaries running at
/// the same time never sweep each other's containers. `None` (after a loud SKIPPED line)
/// when no engine answers and Docker is not required.
pub async fn backend(owner: &str, pool_size: usize) -> Option<Arc<DockerBackend>> {
    let config = DockerConfig::default().with_owner(format!("codebeaker-test-{owner}")).with_pool_size(pool_size);
    connect(owner, config).await
}

/// The same backend as [`backend`]: every container runs the in-container agent (the
/// static build found by `AgentBinary::discover`); without one, `connect` fails and the
/// tests skip loudly (a failure when `CODEBEAKER_REQUIRE_DOCKER=1`).
pub async fn agent_backend(owner: &str, pool_size: usize) -> Option<Arc<DockerBackend>> {
    backend(owner, pool_size).await
}

fn skip(owner: &str, why: &str) {
    if std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("CODEBEAKER_REQUIRE_DOCKER=1 but the docker backend tests ({owner}) cannot run: {why}");
    }
    // Straight to the stderr handle: the test harness captures `eprintln!`.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: docker backend tests ({owner}): {why} ***\n");
}

/// A backend with `config`; `None` after a loud skip when it cannot connect.
pub async fn connect_with(owner: &str, config: DockerConfig) -> Option<Arc<DockerBackend>> {
    connect(owner, config).await
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

/// Shuts the backend down and checks that no container or volume with its label is left.
pub async fn finish(backend: Arc<DockerBackend>) {
    use codebeaker::Backend;
    backend.shutdown().await.expect("shutdown");
    let owner = backend.config().owner.clone();
    let left = leftover_containers(&owner);
    assert!(left.is_empty(), "containers labelled {owner} left behind: {left:?}");
    let left = leftover_volumes(&owner);
    assert!(left.is_empty(), "volumes labelled {owner} left behind: {left:?}");
}

/// Names of volumes labelled with `owner`, as the docker CLI sees them.
pub fn leftover_volumes(owner: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter", &format!("label=org.codebeaker.owner={owner}")])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// Whether `check` holds within `within` (looked at every 100 ms).
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// A session of `language` with every setting at its default; its id.
pub async fn session(manager: &SessionManager, language: Language) -> String {
    manager
        .create(SessionConfig::new(language))
        .await
        .unwrap_or_else(|e| panic!("{language} session: {e}"))
        .session_id
        .into()
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

/// The live (not zombie) processes on this host whose real uid is `uid`, as
/// `pid state name` lines. Every sandbox's guest runs as a uid of its own (its
/// `org.codebeaker.uid` label), so these are exactly that sandbox's guest processes.
pub fn processes_of(uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
        };
        let state = field("State:");
        // A zombie is gone, unless only its main thread ended and its others run on.
        let gone = state.starts_with('Z') && field("Threads:").parse::<u64>().is_ok_and(|threads| threads <= 1);
        if !gone && field("Uid:").split_whitespace().next() == Some(&uid.to_string()) {
            found.push(format!("{pid} {state} {}", field("Name:")));
        }
    }
    found
}

/// The uid a sandbox container's guest code runs as (its `org.codebeaker.uid` label).
pub fn guest_uid(container: &str) -> u32 {
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{index .Config.Labels \"org.codebeaker.uid\"}}", container])
        .output()
        .expect("docker CLI");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    uid.parse().unwrap_or_else(|_| panic!("container {container} has no guest uid label: {uid:?}"))
}
