//! Where Deno sessions keep their files: a private backend root (an existing one that is
//! open to others, not ours, or a symlink is refused), private workspaces with
//! unpredictable names, and private files whoever writes them.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use codebeaker::Command;
use codebeaker_deno::{DenoBackend, DenoConfig};
use common::*;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_existing_roots_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
    for (root, why) in [(&open, "mode 0755"), (&link, "is a symlink")] {
        let refused =
            DenoBackend::new(DenoConfig { pool_size: 0, workspace_root: root.clone(), ..DenoConfig::default() }).err();
        let message = refused.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(why) && message.contains(&root.display().to_string()), "{message}");
    }
    assert!(std::fs::read_dir(&open).unwrap().next().is_none(), "nothing was put in the refused root");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_under_a_directory_workers_cannot_pass_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // Only a root server gives workers other uids.
    }
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = closed.path().join("deno");
    let refused = DenoBackend::new(DenoConfig { pool_size: 0, workspace_root: root, ..DenoConfig::default() }).err();
    let message = refused.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("other users may not pass") && message.contains("mode 0700"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roots_workspaces_and_files_are_private() {
    let tmp = passable_tempdir();
    let root = tmp.path().join("deno-root");
    let backend =
        DenoBackend::new(DenoConfig { pool_size: 1, workspace_root: root.clone(), ..DenoConfig::default() }).unwrap();
    let manager = codebeaker::SessionManager::new(vec![backend.clone()], codebeaker::ManagerConfig::default());
    // A root server's workers (uids of their own) may pass through, not list: 0710 to
    // their group. Otherwise private to the server.
    // SAFETY: geteuid has no preconditions.
    let passage = if unsafe { libc::geteuid() } == 0 { 0o710 } else { 0o700 };
    assert_eq!(mode(&root), passage);
    assert_eq!(mode(backend.workspaces_dir()), passage);
    let first = session(&manager).await;
    let second = session(&manager).await;
    let (a, b) = (workspace_of(&backend, &manager, &first), workspace_of(&backend, &manager, &second));
    for dir in [&a, &b] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let random = name.strip_prefix("deno-").unwrap_or_default();
        assert!(random.len() == 32 && random.chars().all(|c| c.is_ascii_hexdigit()), "predictable name {name}");
    }
    assert_ne!(a, b);
    output(&manager, &first, "await Deno.mkdir('js/sub', { recursive: true }); await Deno.writeTextFile('js/sub/a.txt', 'x'); await Deno.writeFile('b.bin', new Uint8Array(3));").await;
    for command in [
        Command::write_file("host/sub/c.txt", "y").unwrap(),
        Command::create_directory("made").unwrap(),
        Command::copy_file("b.bin", "copy.bin").unwrap(),
    ] {
        assert!(manager.execute(&first, command, Default::default()).await.unwrap().success);
    }
    for dir in ["js", "js/sub", "host", "host/sub", "made"] {
        assert_eq!(mode(&a.join(dir)), 0o700, "{dir}");
    }
    for file in ["js/sub/a.txt", "b.bin", "host/sub/c.txt", "copy.bin"] {
        assert_eq!(mode(&a.join(file)), 0o600, "{file}");
    }
    for id in [first, second] {
        manager.close(&id).await.unwrap();
    }
}
