//! The workspace quota of Deno sessions: every write path (the runtime's `Deno.*` ops and
//! the host's file commands) stops at `limits.workspace_bytes` with a clear error, both
//! writers see each other's files, and removing files frees space.

mod common;

use codebeaker::{Command, ErrorKind, Policy};
use codebeaker_deno::DenoIsolation;
use common::*;

/// A policy with a small workspace (8 MiB), so the tests write little.
fn small_workspace() -> Policy {
    Policy { workspace_mb: 8, ..Policy::default() }
}

const QUOTA_ERROR: &str = "QuotaExceeded: workspace quota of 8 MiB exceeded writing";

async fn runtime_writes_stop_at_the_quota(isolation: DenoIsolation) {
    let (_root, backend, manager) = manager_with_policy_in(isolation, small_workspace());
    let id = session(&manager).await;
    // 16 files of 1 MiB at once: eight fit exactly, whatever the order they run in (a
    // write still running counts once, by what it reserved, not also by what it wrote).
    let filled = output(
        &manager,
        &id,
        "const mib = new Uint8Array(1 << 20);\nconst results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => Deno.writeFile(`f${i}.bin`, mib)));\nconst refused = results.filter((r) => r.status === 'rejected');\nconsole.log(results.length - refused.length, refused.length, refused[0].reason.name, refused[0].reason instanceof Deno.errors.QuotaExceeded);",
    )
    .await;
    let fields: Vec<&str> = filled.split(' ').collect();
    let written: usize = fields[0].parse().unwrap();
    assert_eq!(written, 8, "{filled}");
    assert_eq!(&fields[2..], ["QuotaExceeded", "true"], "{filled}");
    let usage = du(&workspace_of(&backend, &manager, &id));
    assert!(usage <= 8 << 20, "the workspace holds {usage} bytes");
    // The error names the quota and the path, in Deno's manner.
    let message = error(&manager, &id, "await Deno.writeFile('big.bin', new Uint8Array(4 << 20))").await;
    assert_eq!(message, format!("{QUOTA_ERROR} /workspace/big.bin"));
    // Appending, text and directories are write paths too.
    let append =
        error(&manager, &id, "await Deno.writeFile('f0.bin', new Uint8Array(4 << 20), { append: true })").await;
    assert!(append.starts_with(QUOTA_ERROR), "{append}");
    let text = error(&manager, &id, "await Deno.writeTextFile('t.txt', 'x'.repeat(4 << 20))").await;
    assert!(text.starts_with(QUOTA_ERROR), "{text}");
    let dirs =
        error(&manager, &id, "for (let i = 0; i < 4096; i++) await Deno.mkdir(`d/${i}`, { recursive: true });").await;
    assert!(dirs.starts_with(QUOTA_ERROR), "{dirs}");
    // Freeing space makes room again; replacing a file is judged by its new size.
    // (`d` may not exist: with eight files written, its first mkdir already met the quota.)
    output(&manager, &id, "await Deno.remove('d', { recursive: true }).catch(() => {}); for (let i = 0; i < 16; i++) await Deno.remove(`f${i}.bin`).catch(() => {});").await;
    output(&manager, &id, "await Deno.writeFile('big.bin', new Uint8Array(6 << 20)); await Deno.writeFile('big.bin', new Uint8Array(7 << 20));").await;
    assert_eq!(output(&manager, &id, "console.log((await Deno.stat('big.bin')).size)").await, (7 << 20).to_string());
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_writes_stop_at_the_quota_in_a_worker_process() {
    runtime_writes_stop_at_the_quota(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_writes_stop_at_the_quota_in_a_thread() {
    runtime_writes_stop_at_the_quota(DenoIsolation::Thread).await;
}

async fn file_commands_and_the_runtime_share_one_quota(isolation: DenoIsolation) {
    let (_root, backend, manager) = manager_with_policy_in(isolation, small_workspace());
    let id = session(&manager).await;
    let mib = "x".repeat(1 << 20);
    for i in 0..6 {
        let written = command(&manager, &id, Command::write_file(format!("host{i}.txt"), mib.clone()).unwrap()).await;
        assert!(written.success, "{:?}", written.to_json());
    }
    // The runtime sees what the host wrote.
    let message = error(&manager, &id, "await Deno.writeFile('js.bin', new Uint8Array(3 << 20))").await;
    assert_eq!(message, format!("{QUOTA_ERROR} /workspace/js.bin"));
    output(&manager, &id, "await Deno.writeFile('js.bin', new Uint8Array(2 << 20))").await;
    // And the host sees what the runtime wrote.
    let refused = manager.execute(&id, Command::write_file("more.txt", mib.clone()).unwrap(), Default::default()).await;
    let refused = refused.map(|o| o.error).unwrap_or_else(Some);
    assert!(
        refused.as_ref().is_some_and(|e| e.kind() == ErrorKind::LimitReached
            && e.message() == "Limit reached: workspace quota of 8 MiB exceeded writing /workspace/more.txt"),
        "{refused:?}"
    );
    let copied = manager.execute(&id, Command::copy_file("js.bin", "copy.bin").unwrap(), Default::default()).await;
    let copied = copied.map(|o| o.error).unwrap_or_else(Some);
    assert!(copied.as_ref().map(|e| e.kind()) == Some(ErrorKind::LimitReached), "{copied:?}");
    assert!(du(&workspace_of(&backend, &manager, &id)) <= 8 << 20);
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn file_commands_and_the_runtime_share_one_quota_in_a_worker_process() {
    file_commands_and_the_runtime_share_one_quota(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn file_commands_and_the_runtime_share_one_quota_in_a_thread() {
    file_commands_and_the_runtime_share_one_quota(DenoIsolation::Thread).await;
}

async fn the_default_quota_is_dockers_workspace_size(isolation: DenoIsolation) {
    let (_root, _backend, manager) = manager_in(isolation);
    let id = session(&manager).await;
    // 64 files of 32 MiB (2 GiB) went through before; now the ninth is refused.
    let outcome = output(
        &manager,
        &id,
        "const chunk = new Uint8Array(32 << 20);\nlet written = 0, error = null;\nfor (let i = 0; i < 64 && !error; i++) { try { await Deno.writeFile(`f${i}`, chunk); written++; } catch (e) { error = e; } }\nconsole.log(written, String(error));",
    )
    .await;
    assert_eq!(outcome, "8 QuotaExceeded: workspace quota of 256 MiB exceeded writing /workspace/f8");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_quota_is_dockers_workspace_size_in_a_worker_process() {
    the_default_quota_is_dockers_workspace_size(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_quota_is_dockers_workspace_size_in_a_thread() {
    the_default_quota_is_dockers_workspace_size(DenoIsolation::Thread).await;
}

/// Bytes the files under `dir` hold.
fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let metadata = entry.metadata().unwrap();
        total += if metadata.is_dir() { du(&entry.path()) } else { metadata.len() };
    }
    total
}

/// A streamed upload (the HTTP `PUT` route's path) stops at the quota with
/// `LimitReached` and leaves no partial file; code sees what an upload that fits wrote.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_uploads_stop_at_the_quota_and_leave_nothing() {
    let (_root, backend, manager) = manager_with_policy_in(DenoIsolation::Process, small_workspace());
    let id = session(&manager).await;
    let body = |len: usize| -> codebeaker::workspace::UploadBody { Box::pin(std::io::Cursor::new(vec![7u8; len])) };
    let refused = manager.upload_as(None, &id, "up/big.bin", false, body(9 << 20)).await;
    assert!(
        refused.as_ref().err().is_some_and(|e| e.kind() == ErrorKind::LimitReached && e.message().contains("8 MiB")),
        "{refused:?}"
    );
    assert!(!workspace_of(&backend, &manager, &id).join("up/big.bin").exists(), "no partial file stays");
    assert!(du(&workspace_of(&backend, &manager, &id)) <= 8 << 20);
    let written = manager.upload_as(None, &id, "up/fits.bin", false, body(3 << 20)).await;
    assert_eq!(written.ok(), Some(3 << 20));
    let size = output(&manager, &id, "console.log((await Deno.stat('up/fits.bin')).size)").await;
    assert_eq!(size, (3 << 20).to_string());
}
