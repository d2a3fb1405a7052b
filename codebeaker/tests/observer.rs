//! The manager tells its observer of every session and command event, once, with the
//! right close reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{
    CloseReason, Command, CommandOutcome, Error, ErrorKind, ExecOptions, Language, ManagerConfig, SessionConfig,
    SessionInfo, SessionManager, SessionObserver,
};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl SessionObserver for Recorder {
    fn session_created(&self, session: &SessionInfo) {
        self.push(format!("created {}", session.tenant.as_deref().unwrap_or("-")));
    }
    fn session_create_failed(&self, backend: &str, error: &Error) {
        let kind = match error.kind() {
            ErrorKind::LimitReached => "limit",
            ErrorKind::BackendUnavailable => "unavailable",
            ErrorKind::InvalidInput => "invalid",
            _ => "other",
        };
        self.push(format!("create failed {backend} {kind}"));
    }
    fn session_closed(&self, _session: &SessionInfo, reason: CloseReason) {
        self.push(format!("closed {}", reason.as_str()));
    }
    fn command_finished(&self, session: &SessionInfo, kind: &str, outcome: &CommandOutcome, elapsed: Duration) {
        let tenant = session.tenant.as_deref().unwrap_or("-");
        self.push(format!("{kind} {tenant} success={} {}ms", outcome.success, elapsed.as_millis()));
    }
}

fn setup(max_sessions: usize) -> (Arc<TempDirBackend>, Arc<Recorder>, SessionManager) {
    let backend = TempDirBackend::new(&[Language::Python]);
    let recorder = Arc::new(Recorder::default());
    let config = ManagerConfig { max_sessions, observer: Some(recorder.clone()), ..ManagerConfig::default() };
    (backend.clone(), recorder, SessionManager::new(vec![backend], config))
}

fn config(idle_minutes: f64, lifetime_minutes: f64) -> SessionConfig {
    let mut config = SessionConfig::new(Language::Python);
    config.idle_timeout_minutes = idle_minutes;
    config.max_lifetime_minutes = lifetime_minutes;
    config
}

#[tokio::test(start_paused = true)]
async fn every_event_is_reported_once_with_its_reason() {
    let (backend, recorder, manager) = setup(2);
    let id = manager.create_as(Some("t"), config(30.0, 120.0)).await.unwrap().session_id;
    manager.execute(&id, Command::code("sleep 40\nprint x"), ExecOptions::default()).await.unwrap();
    manager.execute(&id, Command::code("throw no"), ExecOptions::default()).await.unwrap();
    manager.close(&id).await.unwrap();
    let _ = manager.close(&id).await;
    assert_eq!(
        recorder.take(),
        ["created t", "execute_code t success=true 40ms", "execute_code t success=false 0ms", "closed client"]
    );

    backend.fail_next_creates(1);
    assert!(manager.create(config(30.0, 120.0)).await.is_err());
    manager.create(config(30.0, 120.0)).await.unwrap();
    manager.create(config(30.0, 120.0)).await.unwrap();
    assert!(manager.create(config(30.0, 120.0)).await.is_err());
    assert_eq!(
        recorder.take(),
        ["create failed tempdir unavailable", "created -", "created -", "create failed tempdir limit"]
    );
    let mut greedy = config(30.0, 120.0);
    greedy.memory_limit_mb = 1 << 20;
    assert!(manager.create(greedy).await.is_err());
    assert!(manager.create(SessionConfig::new(Language::TypeScript)).await.is_err());
    assert_eq!(recorder.take(), ["create failed tempdir invalid", "create failed none unavailable"]);
    manager.shutdown().await;
    assert_eq!(recorder.take(), ["closed shutdown", "closed shutdown"]);
}

#[tokio::test(start_paused = true)]
async fn expiry_and_dead_sandboxes_are_reported_with_their_reason() {
    let (_backend, recorder, manager) = setup(10);
    manager.create(config(1.0, 120.0)).await.unwrap();
    let busy = manager.create(config(30.0, 2.0)).await.unwrap().session_id;
    let options = ExecOptions { timeout: Some(Duration::from_secs(600)), output: None };
    let running = tokio::spawn(manager.execute(&busy, Command::code("sleep 300000"), options));
    tokio::time::sleep(Duration::from_secs(62)).await;
    tokio::time::sleep(Duration::from_secs(62)).await;
    assert!(running.await.unwrap().as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionClosed));
    let crashing = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    manager.execute(&crashing, Command::code("crash"), ExecOptions::default()).await.unwrap();
    assert_eq!(
        recorder.take(),
        [
            "created -",
            "created -",
            "closed idle",
            "closed lifetime",
            "created -",
            "execute_code - success=false 0ms",
            "closed failed"
        ]
    );
}
