//! `session.fork` of a process-isolated Deno session is a live copy of its worker: the
//! copy keeps globals and module state, then goes its own way, in a workspace and (on a
//! root server) a uid of its own, behind the same walls.

mod common;

use std::os::unix::fs::MetadataExt as _;

use codebeaker::{Command, SessionManager};
use common::{manager, output, session, workspace_of};

async fn fork(manager: &SessionManager, id: &str) -> String {
    let forked = manager.fork_as(None, id).await.expect("fork");
    assert!(!forked.state_reset, "a live fork keeps the state: {forked:?}");
    forked.info.session_id.to_string()
}

/// The uid a process runs as, from `/proc`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the worker runs");
    let line = status.lines().find_map(|line| line.strip_prefix("Uid:")).expect("a Uid line");
    line.split_whitespace().next().and_then(|uid| uid.parse().ok()).expect("a uid")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_keeps_globals_and_module_state_then_diverges() {
    let (_root, backend, manager) = manager();
    let original = session(&manager).await;
    manager
        .execute(
            &original,
            Command::write_file("counter.js", "export let n = 0; export function inc() { return ++n; }").unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    output(&manager, &original, "globalThis.x = 41; globalThis.m = await import('./counter.js'); m.inc()").await;

    let copy = fork(&manager, &original).await;
    assert_eq!(output(&manager, &copy, "console.log(++globalThis.x)").await, "42");
    assert_eq!(output(&manager, &original, "console.log(globalThis.x)").await, "41");
    // The module's own state was copied too, then each goes on with its own.
    assert_eq!(output(&manager, &copy, "console.log(m.inc(), m.inc())").await, "2 3");
    assert_eq!(output(&manager, &original, "console.log(m.inc())").await, "2");

    // The files were copied; each workspace is its own from then on.
    assert!(output(&manager, &copy, "console.log(await Deno.readTextFile('counter.js'))").await.contains("inc"));
    output(&manager, &copy, "await Deno.writeTextFile('mine.txt', 'the copy')").await;
    let seen =
        output(&manager, &original, "try { await Deno.readTextFile('mine.txt') } catch (e) { console.log(e.name) }")
            .await;
    assert_eq!(seen, "NotFound");

    let (a, b) = (workspace_of(&backend, &manager, &original), workspace_of(&backend, &manager, &copy));
    assert_ne!(a, b);
    assert_eq!(a.parent(), b.parent(), "a fork's workspace lies in its original's lineage");
    let pid = |id: &str| {
        let sandbox = manager.list().into_iter().find(|s| s.session_id.as_str() == id).unwrap().container_id;
        backend.worker_pid(&sandbox).expect("a worker process")
    };
    assert_ne!(pid(&original), pid(&copy), "the copy is a process of its own");
    if unsafe { libc::geteuid() } == 0 {
        // A root server gives the copy a uid of its own, which owns its workspace.
        let (uid_a, uid_b) = (uid_of(pid(&original)), uid_of(pid(&copy)));
        assert_ne!(uid_a, uid_b);
        assert_eq!((std::fs::metadata(&a).unwrap().uid(), std::fs::metadata(&b).unwrap().uid()), (uid_a, uid_b));
        assert_eq!(std::fs::metadata(&b).unwrap().mode() & 0o777, 0o700);
        // With the permission checks bypassed, the kernel keeps each out of the other's
        // workspace (the uids), though both lie beneath the same Landlock rule.
        for (from, other) in [(&copy, &a), (&original, &b)] {
            let file = if other == &a { "counter.js" } else { "mine.txt" };
            let answer = output(&manager, from, &format!("//@cb-test open {}", other.join(file).display())).await;
            assert!(answer.contains("errno 13"), "{answer}");
        }
        // Nor is the lineage's directory theirs to write in.
        let answer =
            output(&manager, &copy, &format!("//@cb-test create {}", a.parent().unwrap().join("x").display())).await;
        assert!(answer.contains("errno 13"), "{answer}");
    }

    // Forks again, after the first fork closed; and a fork of the fork: live where the
    // server gives no uids (a copy made inside a user namespace cannot get a uid of its
    // own), else its files with `stateReset`.
    manager.close(&copy).await.unwrap();
    let again = fork(&manager, &original).await;
    assert_eq!(output(&manager, &again, "console.log(globalThis.x * 2)").await, "82");
    let grandchild = manager.fork_as(None, &again).await.expect("a fork of a fork");
    let grandchild_id = grandchild.info.session_id.to_string();
    let seen = output(&manager, &grandchild_id, "console.log(typeof globalThis.x)").await;
    if unsafe { libc::geteuid() } == 0 {
        assert!(grandchild.state_reset, "{grandchild:?}");
        assert_eq!(seen, "undefined");
    } else {
        assert!(!grandchild.state_reset, "{grandchild:?}");
        assert_eq!(seen, "number");
    }
    assert!(output(&manager, &grandchild_id, "console.log(await Deno.readTextFile('counter.js'))")
        .await
        .contains("inc"));
    manager.close(&original).await.unwrap();
    assert_eq!(output(&manager, &again, "console.log(globalThis.x)").await, "41", "a fork outlives its original");
    for id in [again, grandchild_id] {
        manager.close(&id).await.unwrap();
    }
    assert!(
        std::fs::read_dir(backend.workspaces_dir()).unwrap().next().is_none(),
        "the lineage went with its last session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_whose_worker_died_forks_its_files_and_says_its_state_is_reset() {
    let (_root, backend, manager) = manager();
    let original = session(&manager).await;
    output(&manager, &original, "globalThis.x = 41; await Deno.writeTextFile('kept.txt', 'kept')").await;
    let sandbox = manager.list().into_iter().find(|s| s.session_id.as_str() == original).unwrap().container_id;
    let pid = backend.worker_pid(&sandbox).expect("a worker process");
    // SAFETY: kill(2) on the worker this test's backend started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat.contains(") Z"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let forked = manager.fork_as(None, &original).await.expect("fork");
    assert!(forked.state_reset, "the state went with the worker: {forked:?}");
    let copy = forked.info.session_id.to_string();
    assert_eq!(
        output(&manager, &copy, "console.log(typeof globalThis.x, await Deno.readTextFile('kept.txt'))").await,
        "undefined kept"
    );
    for id in [original, copy] {
        manager.close(&id).await.unwrap();
    }
}
