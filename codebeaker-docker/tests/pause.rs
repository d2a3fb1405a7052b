//! `session.pause` and `session.resume` in a real container: while paused the
//! container's cgroup uses no CPU (even with a busy loop running in it), a command gets a
//! clear error, and once resumed the interpreter's state is intact.

mod common;

use std::time::Duration;

use codebeaker::{Command, ErrorKind, Language, ManagerConfig, Policy, ProcessCommand, ProcessSpec, SessionConfig};
use common::{agent_backend, finish};

/// CPU time the container's cgroup has used, in ns (cgroup v1 `cpuacct`, or v2 `cpu.stat`).
fn cpu_ns(container: &str) -> u64 {
    let v1 = format!("/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage");
    if let Ok(text) = std::fs::read_to_string(&v1) {
        return text.trim().parse().expect("cpuacct.usage");
    }
    let v2 = format!("/sys/fs/cgroup/system.slice/docker-{container}.scope/cpu.stat");
    let text = std::fs::read_to_string(&v2).unwrap_or_else(|e| panic!("neither {v1} nor {v2}: {e}"));
    let usec: u64 =
        text.lines().find_map(|l| l.strip_prefix("usage_usec ")).expect("usage_usec").trim().parse().unwrap();
    usec * 1000
}

#[tokio::test]
async fn a_paused_session_uses_no_cpu_and_resumes_with_its_state() {
    let Some(backend) = agent_backend("pause", 0).await else { return };
    let manager = common::manager(&backend);
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let info = session.info().unwrap();
    assert!(info.capabilities.pause, "{:?}", info.capabilities);
    let container = info.container_id;
    assert!(session.run_code("y = 7").await.unwrap().succeeded());
    // A busy loop: without the pause the container would use a CPU.
    session.spawn(ProcessSpec::new(ProcessCommand::new("python3", ["-c", "while True: pass"]))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let paused = manager.pause_as(None, session.id()).await.unwrap();
    assert_eq!(paused.state, codebeaker::SessionState::Paused);
    let before = cpu_ns(&container);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cpu_ns(&container), before, "a paused container used CPU");
    let refused = session.execute(Command::code("print(y)")).await.unwrap();
    let error = refused.error.expect("a command to a paused session fails");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("paused"), "{error}");
    // Pausing again changes nothing.
    manager.pause_as(None, session.id()).await.unwrap();

    let resumed = manager.resume_as(None, session.id()).await.unwrap();
    assert_ne!(resumed.state, codebeaker::SessionState::Paused);
    let printed = session.run_code("print(y)").await.unwrap();
    assert_eq!(printed.output(), "7", "{printed:?}");
    assert!(cpu_ns(&container) > before, "resumed, the busy loop runs again");

    // Closing a paused session removes it too.
    manager.pause_as(None, session.id()).await.unwrap();
    session.close().await.unwrap();
    finish(backend).await;
}

#[tokio::test]
async fn resume_on_command_lets_a_command_through() {
    let Some(backend) = agent_backend("pause-resume-on-command", 0).await else { return };
    let policy = Policy { resume_on_command: true, ..Policy::default() };
    let manager = codebeaker::SessionManager::new(
        vec![backend.clone() as std::sync::Arc<dyn codebeaker::Backend>],
        ManagerConfig { policy, ..ManagerConfig::default() },
    );
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    assert!(session.run_code("z = 6 * 7").await.unwrap().succeeded());
    manager.pause_as(None, session.id()).await.unwrap();
    let printed = session.run_code("print(z)").await.unwrap();
    assert_eq!(printed.output(), "42", "{printed:?}");
    assert_ne!(session.info().unwrap().state, codebeaker::SessionState::Paused);
    session.close().await.unwrap();
    finish(backend).await;
}
