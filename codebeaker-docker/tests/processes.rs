//! Background processes and terminals in real containers, through the session manager:
//! a pty that answers, resizes and takes Ctrl-C, stdin to EOF, a flood bounded by the
//! retention and unable to stall another session, the cap, and the session's close
//! killing everything (checked against the kernel: no process of the guest's uid left).

mod common;

use std::time::Duration;

use codebeaker::{
    ErrorKind, Language, ManagerConfig, Policy, Process, ProcessCommand, ProcessEvent, ProcessSignal, ProcessSpec,
    ProcessStream, SessionConfig, SessionManager,
};
use common::{agent_backend, finish, guest_uid, processes_of, sh};

fn manager_with(backend: &std::sync::Arc<codebeaker_docker::DockerBackend>, policy: Policy) -> SessionManager {
    let config = ManagerConfig { policy, ..ManagerConfig::default() };
    SessionManager::new(vec![backend.clone() as std::sync::Arc<dyn codebeaker::Backend>], config)
}

fn bash(script: &str) -> ProcessSpec {
    ProcessSpec::new(ProcessCommand::new("bash", ["-c", script]))
}

/// Reads `process`'s output (from `*offset` on, advancing it) until `wanted` shows in
/// what was read since the call began; all of it.
async fn read_until(process: &Process, offset: &mut u64, wanted: &str) -> String {
    let mut attachment = process.attach(*offset).unwrap();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !text.contains(wanted) {
        match tokio::time::timeout_at(deadline, attachment.next()).await {
            Ok(Some(ProcessEvent::Output(chunk))) => {
                *offset = chunk.offset + chunk.data.len() as u64;
                text.push_str(&chunk.data);
            }
            Ok(other) => panic!("waiting for {wanted:?}: {other:?} after {text:?}"),
            Err(_) => panic!("no {wanted:?} within 30 s; the process wrote {text:?}"),
        }
    }
    text
}

#[tokio::test]
async fn a_terminal_answers_resizes_and_takes_ctrl_c() {
    // An owner per test: a backend sweeps its owner's containers when it starts.
    let Some(backend) = agent_backend("proc-pty", 0).await else { return };
    let manager = manager_with(&backend, Policy::default());
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    assert!(session.info().unwrap().capabilities.pty);
    let shell = session.spawn(ProcessSpec::new(ProcessCommand::new("bash", ["--norc", "-i"])).with_pty(100, 30)).await;
    let shell = shell.unwrap();
    let mut offset = 0;
    read_until(&shell, &mut offset, "$ ").await;
    shell.write("echo $((6*7))\r").await.unwrap();
    read_until(&shell, &mut offset, "42").await;
    shell.write("stty size\r").await.unwrap();
    read_until(&shell, &mut offset, "30 100").await;
    shell.resize(120, 40).await.unwrap();
    shell.write("stty size\r").await.unwrap();
    read_until(&shell, &mut offset, "40 120").await;
    // Ctrl-C interrupts a foreground sleep; the shell answers the next line.
    shell.write("sleep 30\r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shell.write("\u{3}").await.unwrap();
    shell.write("echo after-$((1+1))\r").await.unwrap();
    read_until(&shell, &mut offset, "after-2").await;
    let chunk = shell.attach(0).unwrap().try_next();
    assert!(matches!(chunk, Some(ProcessEvent::Output(ref c)) if c.stream == ProcessStream::Pty), "{chunk:?}");
    shell.write("exit 3\r").await.unwrap();
    let exit = shell.wait(Duration::from_secs(20)).await.unwrap();
    assert_eq!(exit.exit_code, Some(3), "{exit:?}");
    assert!(exit.usage.as_ref().is_some_and(|usage| usage.cpu_ms > 0 || usage.max_rss_kb > 0), "{exit:?}");
    session.close().await.unwrap();
    finish(backend).await;
}

#[tokio::test]
async fn stdin_to_eof_a_bounded_flood_and_the_cap() {
    // An owner per test: a backend sweeps its owner's containers when it starts.
    let Some(backend) = agent_backend("proc-stdin", 0).await else { return };
    let policy =
        Policy { max_processes_per_session: 3, process_output_retained_bytes: 256 * 1024, ..Policy::default() };
    let manager = manager_with(&backend, policy);
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();

    let reader = session
        .spawn(ProcessSpec::new(ProcessCommand::new("python3", ["-c", "import sys; print(sys.stdin.read().upper())"])))
        .await;
    let reader = reader.unwrap();
    reader.write("written ").await.unwrap();
    reader.write("in two parts").await.unwrap();
    reader.close_stdin().await.unwrap();
    let exit = reader.wait(Duration::from_secs(20)).await.unwrap();
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    let mut offset = 0;
    read_until(&reader, &mut offset, "WRITTEN IN TWO PARTS\n").await;

    // `yes` for a while: what the table keeps stays near the retention.
    let flood = session.spawn(ProcessSpec::new(ProcessCommand::new("yes", ["flood"]))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut attachment = flood.attach(0).unwrap();
    assert!(attachment.dropped_at_attach() > 0, "yes wrote more than 256 KiB in 2 s");
    let mut replayed = 0;
    while let Some(ProcessEvent::Output(chunk)) = attachment.try_next() {
        replayed += chunk.data.len();
        if replayed > 4 * 256 * 1024 {
            break;
        }
    }
    assert!(replayed <= 2 * 256 * 1024, "{replayed} bytes replayed for a 256 KiB retention");

    // Three running: a fourth is refused (the ended reader made room for the third).
    let _sleeper = session.spawn(bash("sleep 600")).await.unwrap();
    let _another = session.spawn(bash("sleep 600")).await.unwrap();
    let refused = session.spawn(bash("true")).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LimitReached, "{refused}");
    flood.signal(ProcessSignal::Term).await.unwrap();
    let exit = flood.wait(Duration::from_secs(20)).await.unwrap();
    assert_eq!((exit.exit_code, exit.signal.as_deref()), (Some(143), Some("TERM")), "{exit:?}");
    session.close().await.unwrap();
    finish(backend).await;
}

#[tokio::test]
async fn closing_the_session_kills_what_closed_its_stdio_and_ignores_term() {
    // An owner per test: a backend sweeps its owner's containers when it starts.
    let Some(backend) = agent_backend("proc-close", 0).await else { return };
    let manager = manager_with(&backend, Policy::default());
    let session = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let container = session.info().unwrap().container_id;
    let uid = guest_uid(&container);
    let stubborn =
        "trap '' TERM HUP INT; exec </dev/null >/dev/null 2>&1; (setsid sleep 600 &); while :; do sleep 1; done";
    let process = session.spawn(bash(stubborn)).await.unwrap();
    let _terminal = session.spawn(bash("trap '' TERM HUP; sleep 600").with_pty(80, 24)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    process.signal(ProcessSignal::Term).await.unwrap();
    assert!(process.wait(Duration::from_millis(500)).await.is_err(), "TERM is ignored");
    assert!(processes_of(uid).len() >= 3, "{:?}", processes_of(uid));

    let mut attachment = process.attach(0).unwrap();
    session.close().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(20), attachment.next()).await.unwrap();
    assert!(matches!(end, Some(ProcessEvent::Exit(_))), "{end:?}");
    assert!(
        common::eventually(Duration::from_secs(10), || processes_of(uid).is_empty()).await,
        "{:?}",
        processes_of(uid)
    );
    finish(backend).await;
}

#[tokio::test]
async fn a_terminal_flood_does_not_stall_another_session() {
    // An owner per test: a backend sweeps its owner's containers when it starts.
    let Some(backend) = agent_backend("proc-flood", 0).await else { return };
    let manager = manager_with(&backend, Policy::default());
    let flooded = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let other = manager.open(SessionConfig::new(Language::Python)).await.unwrap();
    let flood = flooded.spawn(ProcessSpec::new(ProcessCommand::new("yes", ["pty flood"])).with_pty(200, 50)).await;
    let flood = flood.unwrap();
    let _reader = flood.attach(0).unwrap(); // attached and never read
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let answered = tokio::time::timeout(Duration::from_secs(15), other.exec("echo", ["fine"])).await;
        let answered = answered.expect("the other session answers while a terminal floods").unwrap();
        assert_eq!(answered.stdout, "fine\n");
    }
    // The flooding session itself still takes commands.
    let own = tokio::time::timeout(Duration::from_secs(15), flooded.execute(sh("echo own"))).await.unwrap().unwrap();
    assert!(own.success, "{own:?}");
    flooded.close().await.unwrap();
    other.close().await.unwrap();
    finish(backend).await;
}
