//! Hard limits: wall-clock timeouts that interrupt JS, heap limits that stop memory bombs
//! (even ones that catch their own error) without hurting the host or other sessions, in
//! both isolations.

mod common;

use std::time::{Duration, Instant};

use codebeaker::{ErrorKind, Language, SessionConfig};
use codebeaker_deno::DenoIsolation;
use common::*;

async fn small_heap_session(manager: &codebeaker::SessionManager, mb: u64) -> String {
    let mut config = SessionConfig::new(Language::TypeScript);
    config.memory_limit_mb = mb;
    manager.create(config).await.expect("create").session_id.into()
}

async fn infinite_loops_time_out_and_the_session_stays_usable_in(isolation: DenoIsolation) {
    let (_root, _backend, manager) = manager_in(isolation);
    let id = session(&manager).await;
    output(&manager, &id, "globalThis.kept = 'still here';").await;
    for spin in [
        "while (true) {}",
        "for (;;) { try { while (true) {} } catch (e) { console.log('caught', e) } }",
        "(async () => { while (true) { await null; } })()",
        "await new Promise((r) => setTimeout(r, 60_000))",
        "(async () => { while (true) { await new Promise((r) => setTimeout(r, 0)); } })()",
        "setInterval(() => {}, 5)",
    ] {
        let started = Instant::now();
        let outcome = run_for(&manager, &id, spin, Duration::from_millis(500)).await;
        assert!(
            outcome.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::TimedOut),
            "{spin}: {:?}",
            outcome.to_json()
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{spin} stopped late: {:?}", started.elapsed());
        let after = run_for(&manager, &id, "console.log(kept)", Duration::from_secs(5)).await;
        assert_eq!(after.to_json()["result"], "still here", "after {spin}: {:?}", after.to_json());
    }
    // Nothing left to wait for: Deno's own answer, at once.
    let never = error(&manager, &id, "await new Promise(() => {})").await;
    assert!(never.contains("never resolved"), "{never}");
    manager.close(&id).await.unwrap();
}

/// A command stopped while it creates or fires timers (its deadline can land anywhere in
/// them) must leave the next command's timers working: they still fire, and still hold the
/// command open until they do.
async fn timers_work_after_commands_stopped_inside_them_in(isolation: DenoIsolation) {
    let (_root, _backend, manager) = manager_in(isolation);
    let id = session(&manager).await;
    let churn = "(async () => { for (;;) { await new Promise((r) => setTimeout(r, 0)); clearTimeout(setTimeout(() => {}, 1)); } })()";
    for round in 0..40 {
        let stopped = run_for(&manager, &id, churn, Duration::from_millis(20 + round % 7)).await;
        assert!(
            stopped.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::TimedOut),
            "round {round}: {:?}",
            stopped.to_json()
        );
        let later = run_for(
            &manager,
            &id,
            "setTimeout(() => console.log('fired'), 5); let n = 0; const t = setInterval(() => { if (++n === 3) { clearInterval(t); console.log('ticked', n); } }, 2)",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(later.to_json()["result"], "fired\nticked 3", "round {round}: {:?}", later.to_json());
    }
    manager.close(&id).await.unwrap();
}

async fn atomics_wait_cannot_block_the_session_in(isolation: DenoIsolation) {
    let (_root, _backend, manager) = manager_in(isolation);
    let id = session(&manager).await;
    let message = error(&manager, &id, "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)").await;
    assert!(message.contains("Atomics.wait is not available"), "{message}");
    manager.close(&id).await.unwrap();
}

async fn memory_bombs_fail_their_command_only_in(isolation: DenoIsolation) {
    let (_root, _backend, manager) = manager_in(isolation);
    let bystander = session(&manager).await;
    output(&manager, &bystander, "globalThis.mine = 'bystander'").await;
    let id = small_heap_session(&manager, 64).await;
    for bomb in [
        "{ const hoard = []; while (true) hoard.push(new Array(100_000).fill(1.5)); }",
        // Catches its own out-of-memory error and keeps going.
        "{ let keep = []; for (;;) { try { keep.push(new Array(100_000).fill(1.5)); } catch (e) { keep = []; } } }",
        "{ const big = new Uint8Array(1024 * 1024 * 1024); console.log(big.length); }",
        "{ const buffers = []; while (true) buffers.push(new ArrayBuffer(1 << 20)); }",
        "{ const parts = []; for (;;) { try { parts.push('x'.repeat(1 << 20) + Math.random()); } catch {} } }",
        "(async () => { const held = []; for (;;) { held.push(new Array(50_000).fill(2.5)); await null; } })()",
    ] {
        let started = Instant::now();
        let outcome = run_for(&manager, &id, bomb, Duration::from_secs(60)).await;
        let json = outcome.to_json();
        assert!(!outcome.success, "{bomb}: {json:?}");
        let message = json["error"].as_str().unwrap_or_default();
        assert!(message.contains("memory limit") && message.contains("64 MB"), "{bomb}: {json:?}");
        // Stopped by the memory limit (the message above), not by the 60 s timeout; the
        // bound is loose because a bomb's garbage collections are CPU time, and CI shares
        // two cores.
        assert!(started.elapsed() < Duration::from_secs(60), "{bomb} took {:?}", started.elapsed());
        assert_eq!(output(&manager, &id, "console.log('alive', 6 * 7)").await, "alive 42", "after {bomb}");
        assert_eq!(output(&manager, &bystander, "console.log(mine)").await, "bystander");
    }
    // Memory a global holds at the limit cannot be given back by the code: the session's
    // JavaScript state is reset, the result says so, and the session works again.
    let held =
        run(&manager, &id, "globalThis.hoard = []; while (true) hoard.push(new Array(100_000).fill(1.5));").await;
    let json = held.to_json();
    assert!(!held.success, "{json}");
    assert_eq!(json["stateReset"], true, "{json}");
    let message = json["error"].as_str().unwrap_or_default();
    assert!(message.contains("memory limit") && message.contains("state was reset"), "{json}");
    assert_eq!(
        output(&manager, &id, "console.log(typeof hoard, new Array(1_000_000).fill(1).length)").await,
        "undefined 1000000"
    );
    manager.close(&id).await.unwrap();
    manager.close(&bystander).await.unwrap();
}

async fn closing_a_session_stops_its_running_code_in(isolation: DenoIsolation) {
    let (_root, backend, manager) = manager_in(isolation);
    let id = session(&manager).await;
    let manager = std::sync::Arc::new(manager);
    let running = {
        let manager = manager.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let options = codebeaker::ExecOptions { timeout: Some(Duration::from_secs(60)), output: None };
            manager.execute(&id, codebeaker::Command::code("while (true) {}"), options).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    manager.close(&id).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "close took {:?}", started.elapsed());
    let outcome = tokio::time::timeout(Duration::from_secs(5), running).await.expect("the command ended").unwrap();
    assert!(outcome.as_ref().map_or(true, |o| !o.success), "{outcome:?}");
    assert!(codebeaker::Backend::live_sandboxes(&*backend).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loops_time_out_and_the_session_stays_usable_in_processes() {
    infinite_loops_time_out_and_the_session_stays_usable_in(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loops_time_out_and_the_session_stays_usable_in_threads() {
    infinite_loops_time_out_and_the_session_stays_usable_in(DenoIsolation::Thread).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timers_work_after_commands_stopped_inside_them_in_processes() {
    timers_work_after_commands_stopped_inside_them_in(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timers_work_after_commands_stopped_inside_them_in_threads() {
    timers_work_after_commands_stopped_inside_them_in(DenoIsolation::Thread).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn atomics_wait_cannot_block_the_session_in_processes() {
    atomics_wait_cannot_block_the_session_in(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn atomics_wait_cannot_block_the_session_in_threads() {
    atomics_wait_cannot_block_the_session_in(DenoIsolation::Thread).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bombs_fail_their_command_only_in_processes() {
    memory_bombs_fail_their_command_only_in(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bombs_fail_their_command_only_in_threads() {
    memory_bombs_fail_their_command_only_in(DenoIsolation::Thread).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_session_stops_its_running_code_in_processes() {
    closing_a_session_stops_its_running_code_in(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_session_stops_its_running_code_in_threads() {
    closing_a_session_stops_its_running_code_in(DenoIsolation::Thread).await;
}
