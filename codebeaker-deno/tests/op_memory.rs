//! Memory outside the JS heap: the buffers of file ops are charged to the session's
//! budget before they are allocated, and module sources are capped, so parallel reads of
//! big files fail clearly instead of taking the session (or the server) down.

mod common;

use codebeaker::{Language, SessionConfig};
use codebeaker_deno::DenoIsolation;
use common::*;

const MIB: usize = 1 << 20;

async fn parallel_reads_of_a_big_file_fail_clearly_and_the_session_lives(isolation: DenoIsolation) {
    let (_root, backend, manager) = manager_in(isolation);
    let id = session(&manager).await;
    output(&manager, &id, "globalThis.kept = 'still here';").await;
    std::fs::write(workspace_of(&backend, &manager, &id).join("big.bin"), vec![1u8; 64 * MIB]).unwrap();
    // One read fits the budget of a default session (512 MB: 128 MiB for op buffers).
    assert_eq!(
        output(&manager, &id, "console.log((await Deno.readFile('big.bin')).length)").await,
        (64 * MIB).to_string()
    );
    for read in ["Deno.readFile('big.bin')", "Deno.readTextFile('big.bin')"] {
        let code = format!(
            "{{ const results = await Promise.allSettled(Array.from({{ length: 64 }}, () => {read}));\nconst refused = results.filter((r) => r.status === 'rejected');\nconsole.log(refused.length > 0, String(refused[0]?.reason)); }}"
        );
        let outcome = run(&manager, &id, &code).await;
        let json = outcome.to_json();
        let printed = json["result"].as_str().unwrap_or_default();
        if outcome.success {
            // Reads that fit the budget succeed (when earlier ones are done in time, all
            // of them may); the others are refused before they allocate.
            assert!(
                printed == "false undefined"
                    || printed.starts_with("true RangeError: memory limit exceeded: reading /workspace/big.bin needs 64.0 MiB outside the JS heap"),
                "{read}: {printed}"
            );
        } else {
            // Holding the reads that fitted may fill the heap: that is the heap limit's error.
            let message = json["error"].as_str().unwrap_or_default();
            assert!(message.contains("memory limit"), "{read}: {json:?}");
        }
        // Block-scoped, the buffers are garbage once the cell ends: the session goes on.
        assert_eq!(output(&manager, &id, "console.log(kept)").await, "still here", "after {read}");
    }
    // A small session has a small budget: 64 MiB does not fit 16 MiB, not even once.
    let mut config = SessionConfig::new(Language::TypeScript);
    config.memory_limit_mb = 64;
    let small: String = manager.create(config).await.unwrap().session_id.into();
    std::fs::write(workspace_of(&backend, &manager, &small).join("big.bin"), vec![1u8; 64 * MIB]).unwrap();
    let message = error(&manager, &small, "await Deno.readFile('big.bin')").await;
    assert!(message.contains("needs 64.0 MiB") && message.contains("16.0 MiB"), "{message}");
    assert_eq!(output(&manager, &small, "console.log('alive')").await, "alive");
    for id in [id, small] {
        manager.close(&id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_reads_of_a_big_file_fail_clearly_and_the_session_lives_in_a_worker_process() {
    parallel_reads_of_a_big_file_fail_clearly_and_the_session_lives(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_reads_of_a_big_file_fail_clearly_and_the_session_lives_in_a_thread() {
    parallel_reads_of_a_big_file_fail_clearly_and_the_session_lives(DenoIsolation::Thread).await;
}

async fn module_sources_above_the_cap_are_refused(isolation: DenoIsolation) {
    let (_root, backend, manager) = manager_in(isolation);
    let id = session(&manager).await;
    let workspace = workspace_of(&backend, &manager, &id);
    let mut huge = String::from("export const answer = 42;\n");
    huge.push_str(&format!("// {}\n", "x".repeat(9 * MIB)));
    std::fs::write(workspace.join("huge.js"), huge).unwrap();
    std::fs::write(workspace.join("small.js"), "export const answer = 42;\n").unwrap();
    let message = error(&manager, &id, "await import('./huge.js')").await;
    assert!(message.contains("huge.js") && message.contains("larger than 8 MiB"), "{message}");
    assert_eq!(output(&manager, &id, "console.log((await import('./small.js')).answer)").await, "42");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn module_sources_above_the_cap_are_refused_in_a_worker_process() {
    module_sources_above_the_cap_are_refused(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn module_sources_above_the_cap_are_refused_in_a_thread() {
    module_sources_above_the_cap_are_refused(DenoIsolation::Thread).await;
}
