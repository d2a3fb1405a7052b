//! Process isolation against hostile code: every way a worker can misbehave (C-level
//! builtin loops the interrupt cannot reach, heap bombs held in globals, a kill from
//! outside, garbage on its channel, a hundred at once) ends with a clear answer in time, a
//! session that works again, no CPU left burning and no memory left behind.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use codebeaker::{Command, CommandOutcome, ExecOptions, Language, SessionConfig, SessionManager};
use codebeaker_deno::DenoBackend;
use common::*;

/// The tests here measure the whole process's CPU and memory: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Process ids of every live descendant of `pid` (the zygote, and the workers it forked).
fn descendants(pid: &str) -> Vec<String> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            found.extend(descendants(child));
            found.push(child.to_owned());
        }
    }
    found
}

/// CPU time of this process and every live descendant, reaped ones included (a reaped
/// worker's time moves into its parent's cutime/cstime), in ms.
fn tree_cpu_ms() -> u64 {
    let ticks = |pid: &str| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime, stime, cutime, cstime.
        field(11) + field(12) + field(13) + field(14)
    };
    let total = ticks("self") + descendants("self").iter().map(|pid| ticks(pid)).sum::<u64>();
    total * 10
}

/// Asserts that this process and its workers become idle: under 25% of a core over a
/// 1 s window, within 8 windows (the pool refilling itself takes CPU for a while in debug
/// builds; a worker left spinning would take a whole core in every window).
async fn assert_idle(after: &str) {
    let mut used = Vec::new();
    for _ in 0..8 {
        let before = tree_cpu_ms();
        tokio::time::sleep(Duration::from_secs(1)).await;
        used.push(tree_cpu_ms().saturating_sub(before));
        if used.last() < Some(&250) {
            return;
        }
    }
    panic!("after {after}: CPU ms used in successive 1 s windows: {used:?}: something still runs");
}

/// Waits (up to 2 s) until process `pid` is gone: killed and reaped.
async fn assert_gone(pid: u32, after: &str) {
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("after {after}: worker {pid} still exists");
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn session_of(manager: &SessionManager, memory_mb: u64) -> String {
    let mut config = SessionConfig::new(Language::TypeScript);
    config.memory_limit_mb = memory_mb;
    manager.create(config).await.expect("create").session_id.into()
}

fn worker_pid(manager: &SessionManager, backend: &DenoBackend, id: &str) -> u32 {
    let info = manager.info(id).expect("session info");
    backend.worker_pid(&info.container_id).expect("a worker runs the session")
}

fn error_of(outcome: &CommandOutcome) -> String {
    outcome.to_json()["error"].as_str().unwrap_or_default().to_owned()
}

/// Asserts a failed command that reset the session's state, saying so.
fn assert_reset(outcome: &CommandOutcome, what: &str) {
    let json = outcome.to_json();
    assert!(!outcome.success, "{what}: {json}");
    assert_eq!(json["stateReset"], true, "{what}: {json}");
    let message = error_of(outcome);
    assert!(message.contains("state was reset") && message.contains("workspace files are kept"), "{what}: {json}");
}

const BUILTIN_LOOPS: &[&str] = &[
    "Array.prototype.includes.call({length: 2**53 - 1}, 0)",
    "Array.prototype.indexOf.call({length: 2**53 - 1}, 0)",
    "Array.prototype.lastIndexOf.call({length: 2**53 - 1}, 0)",
    "Array.prototype.fill.call({length: 2**53 - 1}, 0)",
    "Array.prototype.join.call({length: 2**32 - 2})",
];

#[tokio::test(flavor = "multi_thread")]
async fn c_level_builtin_loops_are_killed_in_time_and_the_session_goes_on() {
    let _serial = SERIAL.lock().await;
    let (_root, backend, manager) = manager();
    let id = session(&manager).await;
    output(&manager, &id, "await Deno.writeTextFile('/workspace/kept.txt', 'files survive')").await;
    let mut resets = 0;
    for spin in BUILTIN_LOOPS {
        output(&manager, &id, "globalThis.before = 'set'").await;
        let pid = worker_pid(&manager, &backend, &id);
        let started = Instant::now();
        let outcome = run_for(&manager, &id, spin, Duration::from_secs(1)).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{spin} answered after {took:?}");
        // Stopped by its timeout, or (a builtin that fills memory as it loops, on a fast
        // machine) by the session's memory limit first: either way within the bound.
        let error = error_of(&outcome);
        assert!(
            error.contains("timed out after 1000 ms") || error.contains("memory limit exceeded"),
            "{spin}: {}",
            outcome.to_json()
        );
        assert!(outcome.to_json()["usage"]["cpuMs"].as_u64().unwrap() > 0, "{spin}: {}", outcome.to_json());
        // A builtin that checks the interrupt flag stops in the same worker, state kept; one
        // that spins in C without checking it takes the worker with it, and the result says so.
        let reset = outcome.to_json()["stateReset"] == true;
        resets += usize::from(reset);
        if reset {
            assert_reset(&outcome, spin);
            assert_gone(pid, spin).await;
        } else {
            assert!(!outcome.success, "{spin}: {}", outcome.to_json());
            assert_eq!(worker_pid(&manager, &backend, &id), pid, "{spin}: interrupted in place");
        }
        assert_idle(spin).await;
        let next =
            run(&manager, &id, "console.log(typeof before, await Deno.readTextFile('/workspace/kept.txt'))").await;
        assert!(next.success, "after {spin}: {}", next.to_json());
        let globals = if reset { "undefined" } else { "string" };
        assert_eq!(next.to_json()["result"], format!("{globals} files survive"), "after {spin}");
    }
    assert!(resets > 0, "no builtin loop needed the worker killed: the kill path went untested");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heap_bomb_held_in_a_global_resets_the_session_instead_of_killing_it() {
    let _serial = SERIAL.lock().await;
    let (_root, _backend, manager) = manager();
    let id = session_of(&manager, 64).await;
    let outcome = run_for(
        &manager,
        &id,
        "globalThis.hog = []; while (true) hog.push(new Array(100_000).fill(1.5));",
        Duration::from_secs(30),
    )
    .await;
    assert_reset(&outcome, "heap bomb");
    assert!(error_of(&outcome).contains("memory limit"), "{}", outcome.to_json());
    assert_eq!(
        output(&manager, &id, "console.log(typeof hog, new Array(1_000_000).fill(1).length)").await,
        "undefined 1000000"
    );
    assert_idle("a heap bomb").await;
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_from_outside_is_replaced() {
    let _serial = SERIAL.lock().await;
    let (_root, backend, manager) = manager();
    let manager = Arc::new(manager);
    let id = session(&manager).await;
    // Killed while idle: the next command runs on a fresh worker and says the state is gone.
    output(&manager, &id, "globalThis.x = 1").await;
    let pid = worker_pid(&manager, &backend, &id);
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = run(&manager, &id, "console.log(typeof x)").await;
    assert!(next.success, "{}", next.to_json());
    assert_eq!(next.to_json()["result"], "undefined");
    assert_eq!(next.to_json()["stateReset"], true, "{}", next.to_json());
    assert_ne!(worker_pid(&manager, &backend, &id), pid);
    // Killed while running: that command fails saying so, the next one works.
    let pid = worker_pid(&manager, &backend, &id);
    let running = {
        let (manager, id) = (manager.clone(), id.clone());
        tokio::spawn(async move {
            let options = ExecOptions { timeout: Some(Duration::from_secs(60)), output: None };
            manager.execute(&id, Command::code("while (true) {}"), options).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let outcome = tokio::time::timeout(Duration::from_secs(5), running).await.expect("answered").unwrap();
    assert_reset(&outcome, "kill -9 while running");
    assert!(error_of(&outcome).contains("worker process failed"), "{}", outcome.to_json());
    assert_eq!(output(&manager, &id, "console.log(6 * 7)").await, "42");
    manager.close(&id).await.unwrap();
}

/// The parent of worker `pid`: the zygote that forked it.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("worker stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat line").1.split_whitespace().collect();
    fields[1].parse().expect("ppid")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zygote_killed_from_outside_takes_its_workers_and_is_started_again() {
    let _serial = SERIAL.lock().await;
    let (_root, backend, manager) = manager();
    let id = session(&manager).await;
    output(&manager, &id, "globalThis.x = 1").await;
    let worker = worker_pid(&manager, &backend, &id);
    let zygote = parent_of(worker);
    assert_ne!(zygote, std::process::id(), "workers are forked by a zygote, not by the host");
    assert_eq!(unsafe { libc::kill(zygote as i32, libc::SIGKILL) }, 0);
    // The kernel kills the workers with their zygote (their death signal).
    assert_gone(worker, "killing the zygote").await;
    // The live session resets on its next command, saying so; a new session works too.
    let next = run(&manager, &id, "console.log(typeof x)").await;
    assert_eq!(next.to_json()["result"], "undefined", "{}", next.to_json());
    assert_eq!(next.to_json()["stateReset"], true, "{}", next.to_json());
    let replaced = worker_pid(&manager, &backend, &id);
    assert_ne!(parent_of(replaced), zygote);
    let fresh = session(&manager).await;
    assert_eq!(output(&manager, &fresh, "console.log(6 * 7)").await, "42");
    manager.close(&id).await.unwrap();
    manager.close(&fresh).await.unwrap();
    assert_idle("a zygote restart").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_forked_from_one_zygote_do_not_share_math_random() {
    let _serial = SERIAL.lock().await;
    let (_root, _backend, manager) = manager();
    let draw = "console.log(JSON.stringify(Array.from({ length: 4 }, () => Math.random())))";
    let mut seen = Vec::new();
    for _ in 0..3 {
        let id = session(&manager).await;
        let numbers: Vec<f64> = serde_json::from_str(&output(&manager, &id, draw).await).expect("numbers");
        assert!(numbers.iter().all(|n| (0.0..1.0).contains(n)), "{numbers:?}");
        seen.push(numbers);
        manager.close(&id).await.unwrap();
    }
    assert!(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2], "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_writing_garbage_on_its_channel_is_killed_and_replaced() {
    let _serial = SERIAL.lock().await;
    let (_root, backend, manager) = manager();
    let id = session(&manager).await;
    output(&manager, &id, "globalThis.x = 1").await;
    let pid = worker_pid(&manager, &backend, &id);
    let outcome = run(&manager, &id, "//@cb-test garbage").await;
    assert_reset(&outcome, "garbage");
    assert!(error_of(&outcome).contains("over the cap"), "{}", outcome.to_json());
    assert_gone(pid, "garbage").await;
    assert_eq!(output(&manager, &id, "console.log(typeof x)").await, "undefined");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_misbehaving_sessions_at_once_leave_the_host_as_it_was() {
    let _serial = SERIAL.lock().await;
    let (_root, _backend, manager) = manager();
    let manager = Arc::new(manager);
    // Warm-up: the first sessions grow the host's allocator once.
    let warm = session_of(&manager, 32).await;
    output(&manager, &warm, "console.log(1)").await;
    manager.close(&warm).await.unwrap();
    let rss_before = rss_kb();
    let bad = [
        "Array.prototype.includes.call({length: 2**53 - 1}, 0)",
        "globalThis.hog = []; while (true) hog.push(new Array(100_000).fill(1.5));",
        "while (true) {}",
        "//@cb-test garbage",
    ];
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let manager = manager.clone();
            tokio::spawn(async move {
                let id = session_of(&manager, 32).await;
                let options = ExecOptions { timeout: Some(Duration::from_secs(2)), output: None };
                let outcome = manager.execute(&id, Command::code(bad[i % bad.len()]), options).await.unwrap();
                assert!(!outcome.success, "{}: {}", bad[i % bad.len()], outcome.to_json());
                // A bomb that timed out before reaching the limit still holds the heap: the
                // next command may hit the limit and reset; the one after works.
                let mut after = manager.execute(&id, Command::code("console.log('ok')"), ExecOptions::default()).await;
                if after.as_ref().is_ok_and(|a| !a.success) {
                    assert_eq!(after.as_ref().unwrap().to_json()["stateReset"], true, "{:?}", after);
                    after = manager.execute(&id, Command::code("console.log('ok')"), ExecOptions::default()).await;
                }
                let after = after.unwrap();
                assert_eq!(after.to_json()["result"], "ok", "{}", after.to_json());
                manager.close(&id).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_idle("100 misbehaving sessions").await;
    let grown = rss_kb().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "the host grew by {grown} KiB serving 100 misbehaving sessions");
    let id = session(&manager).await;
    assert_eq!(output(&manager, &id, "console.log('fresh')").await, "fresh");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_result_reports_usage() {
    let _serial = SERIAL.lock().await;
    for isolation in [codebeaker_deno::DenoIsolation::Process, codebeaker_deno::DenoIsolation::Thread] {
        let (_root, _backend, manager) = manager_in(isolation);
        let id = session(&manager).await;
        let outcome = run(&manager, &id, "let s = 0; for (let i = 0; i < 3e6; i++) s += i; console.log('done')").await;
        let usage = &outcome.to_json()["usage"];
        assert!(usage["cpuMs"].as_u64().unwrap() > 0, "{isolation:?}: {usage}");
        assert!(usage["maxRssKb"].as_u64().unwrap() > 1000, "{isolation:?}: {usage}");
        assert_eq!(usage["outputBytes"], 5, "{isolation:?}: {usage}");
        manager.close(&id).await.unwrap();
    }
}
