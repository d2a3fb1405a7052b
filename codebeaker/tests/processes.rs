//! Background processes through the session manager, on the temp-dir test backend's
//! script processes: output kept and replayed from an offset, every byte once and in
//! order, retention bounded, caps, signals, stdin, and the session's close ending them.

use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{
    ErrorKind, Language, ManagerConfig, Policy, Process, ProcessCommand, ProcessEvent, ProcessExit, ProcessSignal,
    ProcessSpec, ProcessState, ProcessStream, SessionConfig, SessionManager,
};

fn manager_with(policy: Policy) -> SessionManager {
    let config = ManagerConfig { policy, ..ManagerConfig::default() };
    SessionManager::new(vec![TempDirBackend::new(&[Language::Python])], config)
}

fn script(lines: &[&str]) -> ProcessSpec {
    ProcessSpec::new(ProcessCommand::new("script", lines.iter().copied()))
}

/// A script printing `tick 1` … `tick n`, one every `ms`.
fn ticks(n: usize, ms: u64) -> ProcessSpec {
    let lines: Vec<String> = (1..=n).flat_map(|i| [format!("print tick {i}"), format!("sleep {ms}")]).collect();
    ProcessSpec::new(ProcessCommand::new("script", lines))
}

/// Everything a reader gets until the exit: the stdout text and the exit.
async fn read_to_exit(process: &Process, from: u64) -> (String, ProcessExit) {
    let mut attachment = process.attach(from).unwrap();
    let mut text = String::new();
    let mut expected_offset = from;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), attachment.next()).await.expect("an event in time") {
            Some(ProcessEvent::Output(chunk)) => {
                assert_eq!(chunk.stream, ProcessStream::Stdout);
                assert_eq!(chunk.offset, expected_offset, "offsets follow each other");
                expected_offset += chunk.data.len() as u64;
                text.push_str(&chunk.data);
            }
            Some(ProcessEvent::Exit(exit)) => return (text, exit),
            None => panic!("the attachment ended without an exit"),
        }
    }
}

#[tokio::test]
async fn a_late_reader_gets_every_tick_once_in_order_then_the_exit() {
    let manager = manager_with(Policy::default());
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let process = session.spawn(ticks(10, 20)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(70)).await;
    let listed = session.processes().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].pid, listed[0].state, listed[0].pty), (process.pid(), ProcessState::Running, false));

    let (text, exit) = read_to_exit(&process, 0).await;
    let expected: String = (1..=10).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text, expected);
    assert_eq!((exit.exit_code, exit.signal), (Some(0), None));
    // From an offset: the rest only.
    let (rest, _) = read_to_exit(&process, 7).await;
    assert_eq!(rest, expected[7..]);
    assert_eq!(session.processes().unwrap()[0].state, ProcessState::Exited);
    assert_eq!(process.wait(Duration::from_secs(1)).await.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn endless_output_keeps_only_the_retention_and_counts_the_rest() {
    let policy = Policy { process_output_retained_bytes: 64 * 1024, ..Policy::default() };
    let manager = manager_with(policy);
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let process = session.spawn(script(&["yes y"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut attachment = process.attach(0).unwrap();
    let dropped = attachment.dropped_at_attach();
    let mut retained = 0u64;
    while let Some(ProcessEvent::Output(chunk)) = attachment.try_next() {
        retained += chunk.data.len() as u64;
    }
    assert!(dropped > 0, "a flood outgrows 64 KiB");
    assert!((64 * 1024..=2 * 64 * 1024).contains(&retained), "{retained} bytes retained");
    process.signal(ProcessSignal::Kill).await.unwrap();
    let exit = process.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!((exit.exit_code, exit.signal.as_deref()), (Some(137), Some("KILL")));
}

#[tokio::test]
async fn stdin_reaches_a_reader_until_it_is_closed() {
    let manager = manager_with(Policy::default());
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let process = session.spawn(script(&["cat", "print done"])).await.unwrap();
    process.write("hello ").await.unwrap();
    process.write("world\n").await.unwrap();
    process.close_stdin().await.unwrap();
    let (text, exit) = read_to_exit(&process, 0).await;
    assert_eq!(text, "hello world\ndone\n");
    assert_eq!(exit.exit_code, Some(0));
    let error = process.write("late").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}

#[tokio::test]
async fn signals_end_processes_and_the_cap_counts_running_ones() {
    let policy = Policy { max_processes_per_session: 2, ..Policy::default() };
    let manager = manager_with(policy);
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let first = session.spawn(script(&["sleep 60000"])).await.unwrap();
    let _second = session.spawn(script(&["sleep 60000"])).await.unwrap();
    let refused = session.spawn(script(&["print no"])).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LimitReached, "{refused}");

    let waited = first.wait(Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(waited.kind(), ErrorKind::TimedOut);
    first.signal(ProcessSignal::Term).await.unwrap();
    let exit = first.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!((exit.exit_code, exit.signal.as_deref()), (Some(143), Some("TERM")));
    // The ended one makes room.
    session.spawn(script(&["print yes"])).await.unwrap();
    assert_eq!(first.signal(ProcessSignal::Kill).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn closing_the_session_ends_every_process_and_other_tenants_see_none() {
    let manager = manager_with(Policy::default());
    let session = manager.open_as(Some("alice"), SessionConfig::new(Language::Python)).await.unwrap();
    let process = session.spawn(script(&["sleep 60000"])).await.unwrap();
    let id = session.id().clone();
    let hidden = manager.list_processes_as(Some("mallory"), &id).unwrap_err();
    assert_eq!(hidden.kind(), ErrorKind::SessionNotFound);
    let hidden = manager.attach_process_as(Some("mallory"), &id, process.pid(), 0).unwrap_err();
    assert_eq!(hidden.kind(), ErrorKind::SessionNotFound);

    let mut attachment = process.attach(0).unwrap();
    session.close().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), attachment.next()).await.unwrap();
    let Some(ProcessEvent::Exit(exit)) = end else { panic!("expected the exit, got {end:?}") };
    assert_eq!(exit.reason.as_deref(), Some("the session closed"));
}

#[tokio::test]
async fn a_terminal_is_refused_where_the_backend_has_none() {
    let manager = manager_with(Policy::default());
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let error = session.spawn(script(&["print x"]).with_pty(80, 24)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    let error = session.spawn(script(&["print x"]).with_pty(0, 24)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}
