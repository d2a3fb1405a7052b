//! `session.pause`/`session.resume` of process-isolated Deno sessions, against real worker
//! processes: a paused worker uses no CPU (its `/proc` CPU time stands still while its cell
//! would spin), every command is refused at once, the host's deadline never kills it, and
//! once resumed it goes on where it was with its state. Thread isolation declares no pause.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use codebeaker::{Backend, Command, CommandResult, ErrorKind, ExecContext, Language, Policy, Sandbox, SessionConfig};
use codebeaker_deno::{DenoBackend, DenoIsolation};
use common::*;

/// The tests here measure a worker's CPU time: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn sandbox_of(backend: &DenoBackend) -> Arc<Box<dyn Sandbox>> {
    let config = SessionConfig::new(Language::JavaScript);
    let limits = Policy::default().limits_for(&config).expect("limits");
    Arc::new(backend.create_sandbox(&config, &limits).await.expect("a deno sandbox"))
}

async fn execute(sandbox: &dyn Sandbox, code: &str, timeout: Duration) -> codebeaker::Result<codebeaker::CodeResult> {
    match sandbox.execute(Command::code(code), ExecContext::new(timeout)).await? {
        CommandResult::ExecuteCode(result) => Ok(result),
        other => panic!("not a code result: {other:?}"),
    }
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker's stat");
    let fields: Vec<u64> =
        stat.rsplit_once(')').unwrap().1.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    fields[11] + fields[12]
}

/// A cell whose timers spin the CPU for about two seconds in all, then prints how many ran.
const BUSY_TIMERS: &str = r#"
let ticks = 0;
await new Promise((done) => {
  const timer = setInterval(() => {
    const start = Date.now();
    while (Date.now() - start < 20) {}
    if (++ticks === 100) { clearInterval(timer); done(); }
  }, 0);
});
globalThis.ticks = ticks;
console.log(`ticks ${ticks}, before ${globalThis.before}`);
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_uses_no_cpu_refuses_commands_and_resumes_where_it_was() {
    let _serial = SERIAL.lock().await;
    let (_root, backend) = backend();
    assert!(backend.capabilities(Language::JavaScript).pause, "process isolation declares pause");
    let sandbox = sandbox_of(&backend).await;
    let pid = backend.worker_pid(sandbox.id()).expect("a worker process");
    let pausing = sandbox.pausing().expect("process sandboxes pause");
    execute(sandbox.as_ref().as_ref(), "globalThis.before = 'kept'", Duration::from_secs(10)).await.unwrap();

    let running = tokio::spawn({
        let sandbox = sandbox.clone();
        async move { execute(sandbox.as_ref().as_ref(), BUSY_TIMERS, Duration::from_secs(60)).await }
    });
    // Let the timers spin, then stop them midway.
    let spinning = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(cpu_ticks(pid) > spinning, "the cell spins before the pause");
    pausing.pause().await.unwrap();
    pausing.pause().await.expect("pausing a paused session does nothing");
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cpu_ticks(pid), before, "a paused worker's CPU time does not advance");
    assert!(!running.is_finished(), "the paused cell is neither finished nor killed");

    // A command to a paused session fails at once (the running cell holds the worker).
    let asked = Instant::now();
    let refused = execute(sandbox.as_ref().as_ref(), "1", Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{refused}");
    assert!(refused.to_string().contains("the session is paused"), "{refused}");
    assert!(asked.elapsed() < Duration::from_millis(500), "refused fast: {:?}", asked.elapsed());

    pausing.resume().await.unwrap();
    pausing.resume().await.expect("resuming a running session does nothing");
    let result = running.await.unwrap().expect("the cell ends after the resume");
    assert_eq!(result.error, None, "{result:?}");
    assert_eq!(result.output.trim(), "ticks 100, before kept", "{result:?}");
    assert!(cpu_ticks(pid) > before, "the worker ran again after the resume");
    let after =
        execute(sandbox.as_ref().as_ref(), "console.log(globalThis.ticks, globalThis.before)", Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(after.output.trim(), "100 kept", "state intact: {after:?}");
    assert!(!after.state_reset);
    assert_eq!(backend.worker_pid(sandbox.id()), Some(pid), "the same worker goes on");
    sandbox.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_paused_past_its_kill_deadline_is_not_killed() {
    let _serial = SERIAL.lock().await;
    let (_root, backend) = backend();
    let sandbox = sandbox_of(&backend).await;
    let pid = backend.worker_pid(sandbox.id()).expect("a worker process");
    let pausing = sandbox.pausing().expect("process sandboxes pause");
    // Timeout 1 s, interrupt grace 0.5 s: the host would kill the worker at 1.5 s.
    let running = tokio::spawn({
        let sandbox = sandbox.clone();
        async move {
            execute(sandbox.as_ref().as_ref(), "globalThis.kept = 7; while (true) {}", Duration::from_secs(1)).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pausing.pause().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    if running.is_finished() {
        panic!("a paused cell is not ended by the host's deadline: {:?}", running.await.unwrap());
    }
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the paused worker lives");
    pausing.resume().await.unwrap();
    // The cell's own timeout (wall clock) passed while paused: it is interrupted now, its
    // worker and state kept.
    let result = running.await.unwrap().unwrap();
    assert!(result.timed_out && !result.state_reset, "{result:?}");
    let kept = execute(sandbox.as_ref().as_ref(), "console.log(kept)", Duration::from_secs(10)).await.unwrap();
    assert_eq!(kept.output.trim(), "7", "{kept:?}");
    assert_eq!(backend.worker_pid(sandbox.id()), Some(pid));
    sandbox.close().await.unwrap();
}

/// The state letter of process `pid` (`T` when stopped).
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker's stat");
    stat.rsplit_once(')').unwrap().1.trim_start().chars().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_paused_worker_is_stopped_and_runs_again_after_resume() {
    let _serial = SERIAL.lock().await;
    let (_root, backend) = backend();
    let sandbox = sandbox_of(&backend).await;
    let pid = backend.worker_pid(sandbox.id()).expect("a worker process");
    execute(sandbox.as_ref().as_ref(), "globalThis.x = 41", Duration::from_secs(10)).await.unwrap();
    let pausing = sandbox.pausing().unwrap();
    pausing.pause().await.unwrap();
    assert_eq!(process_state(pid), 'T', "stopped once pause returns");
    let refused = sandbox.execute(Command::read_file("a.txt").unwrap(), ExecContext::new(Duration::from_secs(5))).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::InvalidInput, "file commands wait for the resume too");
    pausing.resume().await.unwrap();
    for _ in 0..100 {
        if process_state(pid) != 'T' {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(process_state(pid), 'T', "running again after resume");
    let result = execute(sandbox.as_ref().as_ref(), "console.log(++x)", Duration::from_secs(10)).await.unwrap();
    assert_eq!(result.output.trim(), "42", "{result:?}");
    sandbox.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_paused_session_ends_its_worker() {
    let _serial = SERIAL.lock().await;
    let (_root, backend) = backend();
    let sandbox = sandbox_of(&backend).await;
    let pid = backend.worker_pid(sandbox.id()).expect("a worker process");
    sandbox.pausing().unwrap().pause().await.unwrap();
    sandbox.close().await.unwrap();
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let refused = sandbox.pausing().unwrap().resume().await.unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::SessionClosed, "{refused}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a paused worker outlived its session's close");
}

#[tokio::test(flavor = "multi_thread")]
async fn thread_isolation_declares_no_pause() {
    let (_root, backend) = backend_in(DenoIsolation::Thread);
    assert!(!backend.capabilities(Language::JavaScript).pause);
    let sandbox = sandbox_of(&backend).await;
    assert!(sandbox.pausing().is_none());
    sandbox.close().await.unwrap();
}
