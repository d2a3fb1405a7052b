//! Session manager behaviour on the temp-dir test backend, with Tokio's paused clock so
//! minutes of idle time pass instantly and durations are exact.

use std::sync::Arc;
use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{
    Backend as _, Command, Error, ErrorKind, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager,
};
use tokio::time::{advance, Instant};

fn manager(max_sessions: usize) -> (Arc<TempDirBackend>, SessionManager) {
    let backend = TempDirBackend::new(&[Language::Python]);
    let config = ManagerConfig { max_sessions, ..ManagerConfig::default() };
    (backend.clone(), SessionManager::new(vec![backend], config))
}

fn config(idle_minutes: f64, lifetime_minutes: f64) -> SessionConfig {
    let mut config = SessionConfig::new(Language::Python);
    config.idle_timeout_minutes = idle_minutes;
    config.max_lifetime_minutes = lifetime_minutes;
    config
}

async fn code(manager: &SessionManager, id: &str, script: &str) -> Result<codebeaker::CommandOutcome, Error> {
    manager.execute(id, Command::code(script), ExecOptions::default()).await
}

/// Lets the sweeper (1 s interval) run past the given point.
async fn pass(duration: Duration) {
    advance(duration).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_close_after_their_idle_timeout() {
    let (backend, manager) = manager(10);
    let id = manager.create(config(1.0, 120.0)).await.unwrap().session_id;
    pass(Duration::from_secs(50)).await;
    assert_eq!(manager.count(), 1, "closed before its idle timeout");
    code(&manager, &id, "print still here").await.unwrap();
    pass(Duration::from_secs(50)).await;
    assert_eq!(manager.count(), 1, "a command must reset the idle clock");
    pass(Duration::from_secs(15)).await;
    assert_eq!(manager.count(), 0, "idle for over a minute: must be closed");
    assert_eq!(backend.closes(), 1);
    assert!(backend.live_sandboxes().await.unwrap().is_empty(), "sandbox left behind");
    assert!(manager.close(&id).await.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionNotFound));
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_closes_even_a_busy_session() {
    let (backend, manager) = manager(10);
    let id = manager.create(config(30.0, 2.0)).await.unwrap().session_id;
    let options = ExecOptions { timeout: Some(Duration::from_secs(600)), output: None };
    let busy = tokio::spawn(manager.execute(&id, Command::code("sleep 300000"), options));
    pass(Duration::from_secs(117)).await;
    assert_eq!(manager.count(), 1, "closed before its lifetime");
    pass(Duration::from_secs(2)).await;
    assert_eq!(manager.count(), 0, "past its lifetime: must be closed though busy");
    assert!(
        busy.await.unwrap().as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionClosed),
        "the running command is told why"
    );
    assert_eq!(backend.closes(), 1);
}

#[tokio::test(start_paused = true)]
async fn commands_on_one_session_run_one_at_a_time_in_arrival_order() {
    let (_backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let started = Instant::now();
    // Later commands are shorter: if they overlapped, they would finish first.
    let runs: Vec<_> = (0..5u64)
        .map(|i| {
            manager.execute(&id, Command::code(format!("sleep {}\nprint {i}", 50 - i * 10)), ExecOptions::default())
        })
        .collect();
    // Spawned (and therefore polled) in reverse: the order must still be the submission order.
    let handles: Vec<_> =
        runs.into_iter().rev().map(|run| tokio::spawn(async move { (run.await, Instant::now()) })).collect();
    let mut finished = Vec::new();
    for handle in handles.into_iter().rev() {
        let (outcome, at) = handle.await.unwrap();
        finished.push((outcome.unwrap().to_json()["result"].as_str().unwrap().to_owned(), at - started));
    }
    let order: Vec<&str> = finished.iter().map(|(out, _)| out.as_str()).collect();
    assert_eq!(order, ["0", "1", "2", "3", "4"]);
    let ends: Vec<u128> = finished.iter().map(|(_, at)| at.as_millis()).collect();
    assert_eq!(ends, [50, 90, 120, 140, 150], "each command starts when the previous one ends");
}

#[tokio::test(start_paused = true)]
async fn different_sessions_run_in_parallel() {
    let (_backend, manager) = manager(10);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(manager.create(config(30.0, 120.0)).await.unwrap().session_id);
    }
    let started = Instant::now();
    let runs = ids.iter().map(|id| code(&manager, id, "sleep 100\nprint done"));
    for outcome in futures::future::join_all(runs).await {
        assert!(outcome.unwrap().success);
    }
    assert_eq!(started.elapsed(), Duration::from_millis(100), "four 100 ms commands on four sessions overlap");
}

#[tokio::test(start_paused = true)]
async fn a_command_that_gave_up_its_place_does_not_block_the_queue() {
    let (_backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let first = tokio::spawn(manager.execute(&id, Command::code("sleep 100\nprint first"), ExecOptions::default()));
    let abandoned = manager.execute(&id, Command::code("print never"), ExecOptions::default());
    let third = manager.execute(&id, Command::code("print third"), ExecOptions::default());
    drop(abandoned);
    let third = tokio::time::timeout(Duration::from_secs(5), third).await.expect("queue stalled").unwrap();
    assert_eq!(third.to_json()["result"], "third");
    assert_eq!(first.await.unwrap().unwrap().to_json()["result"], "first");
    assert_eq!(manager.info(&id).unwrap().execution_count, 2, "the abandoned command never ran");
}

#[tokio::test(start_paused = true)]
async fn max_sessions_is_enforced_even_for_concurrent_creates() {
    let (_backend, manager) = manager(2);
    let creates = (0..5).map(|_| manager.create(config(30.0, 120.0)));
    let results = futures::future::join_all(creates).await;
    let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 2, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(refused.kind() == ErrorKind::LimitReached && refused.message().contains("maximum is 2"), "{refused:?}");
    }
    manager.close(&created[0].session_id).await.unwrap();
    manager.create(config(30.0, 120.0)).await.expect("a closed session frees its place");
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_leaks_nothing() {
    let (backend, manager) = manager(1);
    backend.fail_next_creates(1);
    let failed = manager.create(config(30.0, 120.0)).await;
    assert!(failed.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::BackendUnavailable), "{failed:?}");
    assert_eq!(manager.count(), 0);
    manager.create(config(30.0, 120.0)).await.expect("the failed create gave its place back");
}

#[tokio::test(start_paused = true)]
async fn closing_is_reported_once_and_happens_once() {
    let (backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let (a, b) = tokio::join!(manager.close(&id), manager.close(&id));
    assert!(a.is_ok() != b.is_ok(), "exactly one close succeeds: {a:?} {b:?}");
    assert_eq!(manager.close(&id).await.err(), Some(Error::session_not_found(id.as_str())));
    assert!(
        manager.close("no-such-session").await.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionNotFound)
    );
    assert_eq!(backend.closes(), 1);
}

#[tokio::test(start_paused = true)]
async fn commands_waiting_on_a_closed_session_are_told_so() {
    let (_backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let running = tokio::spawn(manager.execute(&id, Command::code("sleep 1000"), ExecOptions::default()));
    let waiting = tokio::spawn(manager.execute(&id, Command::code("print late"), ExecOptions::default()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    manager.close(&id).await.unwrap();
    assert!(running.await.unwrap().as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionClosed));
    assert!(waiting.await.unwrap().as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionClosed));
}

#[tokio::test(start_paused = true)]
async fn a_dead_sandbox_fails_the_command_and_closes_its_session() {
    let (backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let crashed = code(&manager, &id, "crash").await.unwrap();
    assert!(!crashed.success);
    assert!(
        crashed.error.as_ref().is_some_and(|e| e.kind() == ErrorKind::SandboxFailed && e.message().contains("crashed")),
        "{crashed:?}"
    );
    assert_eq!(manager.count(), 0, "a session whose sandbox died is closed");
    assert_eq!(backend.closes(), 1);
    assert!(code(&manager, &id, "print x").await.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionNotFound));
}

#[tokio::test(start_paused = true)]
async fn a_sandbox_that_ignores_its_timeout_is_given_up() {
    let (backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let options = ExecOptions { timeout: Some(Duration::from_secs(1)), output: None };
    let started = Instant::now();
    let stuck = manager.execute(&id, Command::code("hang"), options).await.unwrap();
    assert!(
        stuck
            .error
            .as_ref()
            .is_some_and(|e| e.kind() == ErrorKind::SandboxFailed && e.message().contains("did not stop")),
        "{stuck:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1) + ManagerConfig::default().policy.stop_grace());
    assert_eq!((manager.count(), backend.closes()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn bad_requests_get_clear_errors() {
    let (_backend, manager) = manager(10);
    let deno = manager.create(SessionConfig::new(Language::TypeScript)).await;
    assert!(
        deno.as_ref().err().is_some_and(|e| e.kind() == ErrorKind::BackendUnavailable
            && e.message().contains("typescript")
            && e.message().contains("tempdir")),
        "{deno:?}"
    );
    let invalid = manager.create(config(-5.0, 120.0)).await;
    assert!(
        invalid
            .as_ref()
            .err()
            .is_some_and(|e| e.kind() == ErrorKind::InvalidInput && e.message().contains("idleTimeoutMinutes")),
        "{invalid:?}"
    );
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let escape = Command::read_file("../../etc/passwd").unwrap_err();
    assert_eq!(escape.to_string(), "Permission denied: ../../etc/passwd is outside /workspace");
    manager.close(&id).await.unwrap();
}

/// The SDK refuses a timeout outside 1..=max-command-timeout-ms before the command runs,
/// with the words the server answers (`-32602`) for the same request.
#[tokio::test(start_paused = true)]
async fn the_timeout_range_is_the_policys_over_the_sdk() {
    let backend = TempDirBackend::new(&[Language::Python]);
    let policy = codebeaker::Policy {
        max_command_timeout_ms: 5_000,
        default_command_timeout_ms: 4_000,
        ..codebeaker::Policy::default()
    };
    let manager = SessionManager::new(vec![backend], ManagerConfig { policy, ..ManagerConfig::default() });
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    for asked in [Duration::ZERO, Duration::from_millis(5_001)] {
        let options = ExecOptions { timeout: Some(asked), output: None };
        let refused = manager.execute(&id, Command::code("print(1)"), options).await;
        let expected = format!(
            "timeoutMs must be between 1 and 5000 (the operator's max-command-timeout-ms), got {}",
            asked.as_millis()
        );
        assert_eq!(refused.unwrap_err(), Error::invalid_input(expected));
    }
    let options = ExecOptions { timeout: Some(Duration::from_millis(5_000)), output: None };
    assert!(manager.execute(&id, Command::write_file("a.txt", "x").unwrap(), options).await.unwrap().success);
    // A session that sets no default gets the operator's.
    assert_eq!(manager.info(&id).unwrap().config.default_timeout_ms, Some(4_000));
    manager.close(&id).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_everything_and_refuses_new_sessions() {
    let (backend, manager) = manager(10);
    for _ in 0..3 {
        manager.create(config(30.0, 120.0)).await.unwrap();
    }
    manager.shutdown().await;
    assert_eq!(manager.count(), 0);
    assert_eq!(backend.closes(), 3);
    assert!(backend.live_sandboxes().await.unwrap().is_empty());
    assert!(
        manager.create(config(30.0, 120.0)).await.as_ref().err().map(|e| e.kind())
            == Some(ErrorKind::BackendUnavailable)
    );
}

#[tokio::test(start_paused = true)]
async fn session_info_tracks_activity() {
    let (_backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let running = tokio::spawn(manager.execute(&id, Command::code("sleep 60000"), ExecOptions::default()));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let busy = manager.info(&id).unwrap();
    assert_eq!((busy.state, busy.execution_count), (codebeaker::SessionState::Active, 0));
    running.await.unwrap().unwrap();
    advance(Duration::from_secs(150)).await;
    let idle = manager.info(&id).unwrap();
    assert_eq!((idle.state, idle.execution_count), (codebeaker::SessionState::Idle, 1));
    assert_eq!((idle.idle_minutes, idle.lifetime_minutes), (2.5, 3.5));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_running_command_neither_stops_it_nor_leaves_the_session_busy() {
    let (_backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let run = manager.execute(&id, Command::code("sleep 1000"), ExecOptions::default());
    let file = Command::write_file("done.txt", "written by the dropped command").unwrap();
    let writes = manager.execute(&id, file, ExecOptions::default());
    // The caller gives up while the first command runs.
    assert!(tokio::time::timeout(Duration::from_millis(100), run).await.is_err(), "finished too early");
    assert_eq!(manager.info(&id).unwrap().state, codebeaker::SessionState::Active, "the command still runs");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let info = manager.info(&id).unwrap();
    assert_eq!((info.state, info.execution_count), (codebeaker::SessionState::Idle, 1), "left busy: {info:?}");
    // The queue moves on, and the session still expires when idle.
    assert!(writes.await.unwrap().success);
    let read = manager.execute(&id, Command::read_file("done.txt").unwrap(), ExecOptions::default()).await.unwrap();
    assert_eq!(read.to_json()["result"]["content"], "written by the dropped command");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_command_still_lets_an_idle_session_expire() {
    let (backend, manager) = manager(10);
    let id = manager.create(config(1.0, 120.0)).await.unwrap().session_id;
    let run = manager.execute(&id, Command::code("sleep 5000"), ExecOptions::default());
    assert!(tokio::time::timeout(Duration::from_millis(10), run).await.is_err());
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert_eq!((manager.count(), backend.closes()), (0, 1), "a session once busy must still go idle and expire");
}

/// Real time: the backend takes a little longer than the limit to stop the program, and
/// the error must still name the limit.
#[tokio::test]
async fn a_timeout_reports_the_limit_not_the_elapsed_time() {
    let (_backend, manager) = manager(10);
    let id = manager.create(config(30.0, 120.0)).await.unwrap().session_id;
    let options = ExecOptions { timeout: Some(Duration::from_millis(1000)), output: None };
    let outcome = manager.execute(&id, Command::code("spin"), options).await.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.to_json()["error"], "Command timed out after 1000 ms");
    assert_eq!(outcome.error, Some(Error::timed_out(Duration::from_millis(1000))));
    let once = manager.run_once(Language::Python, "spin".into(), Some(Duration::from_millis(300))).await.unwrap();
    assert_eq!(once.to_json()["error"], "Command timed out after 300 ms");
}

#[tokio::test(start_paused = true)]
async fn a_default_timeout_above_the_operators_cap_is_refused_at_create() {
    let backend = TempDirBackend::new(&[Language::Python]);
    let policy = codebeaker::Policy { max_command_timeout_ms: 5_000, ..codebeaker::Policy::default() };
    let manager = SessionManager::new(vec![backend], ManagerConfig { policy, ..ManagerConfig::default() });
    let mut asked = config(30.0, 120.0);
    asked.default_timeout_ms = Some(10_000);
    let refused = manager.create(asked).await;
    assert!(
        refused.as_ref().err().is_some_and(|e| e.kind() == ErrorKind::InvalidInput
            && e.message().contains("defaultTimeoutMs")
            && e.message().contains("1 and 5000 (the operator's max-command-timeout-ms)")),
        "{refused:?}"
    );
    let mut asked = config(30.0, 120.0);
    asked.default_timeout_ms = Some(u64::MAX);
    assert!(manager
        .create(asked)
        .await
        .as_ref()
        .err()
        .is_some_and(|e| e.kind() == ErrorKind::InvalidInput && e.message().contains("defaultTimeoutMs")));
    assert_eq!(manager.count(), 0);
}
