//! A Deno worker holds nothing worth taking: a uid of its session's own (the server runs as
//! root here and in CI), no capability in any set, an environment without one variable of
//! the server, and stdio that is not the server's. Read from the kernel (`/proc/<pid>`),
//! not from what the worker says.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::sync::Once;

use codebeaker::{Allowlist, Command, SessionManager};
use codebeaker_deno::DenoPermissions;
use codebeaker_deno::{DenoBackend, WORKER_ENV};
use common::*;

/// A variable of the server's that no worker may see, and a marker beside it.
const SECRETS: [(&str, &str); 2] =
    [("CODEBEAKER_TOKEN", "operator-token-must-not-leak"), ("CB_PRIVILEGES_TEST_MARKER", "marker-1f9c")];

/// Puts the secrets in this process's environment before any worker zygote starts (every
/// test of this file calls it first, so the zygote starts after it whichever test runs first).
fn plant_secrets() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in SECRETS {
            std::env::set_var(name, value);
        }
    });
}

fn worker_pid(backend: &DenoBackend, manager: &SessionManager, id: &str) -> u32 {
    backend.worker_pid(&manager.info(id).unwrap().container_id).expect("the session has a worker")
}

/// The values of a `/proc/<pid>/status` line.
fn status(pid: u32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|line| line.strip_prefix(&format!("{field}:"))).unwrap_or_default();
    line.split_whitespace().map(str::to_owned).collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_runs_as_its_sessions_own_uid_with_no_capability() {
    plant_secrets();
    let (_root, backend, manager) = manager();
    let (a, b) = (session(&manager).await, session(&manager).await);
    let (pid_a, pid_b) = (worker_pid(&backend, &manager, &a), worker_pid(&backend, &manager, &b));
    let uid = |pid| status(pid, "Uid");
    if is_root() {
        let (uid_a, uid_b) = (uid(pid_a), uid(pid_b));
        let number: u32 = uid_a[0].parse().unwrap();
        assert!((1_900_000_001..1_900_065_536).contains(&number), "uid {number} is not from the workers' range");
        assert_eq!(uid_a, vec![uid_a[0].clone(); 4], "real, effective, saved and file-system uid");
        assert_eq!(status(pid_a, "Gid"), uid_a, "the session's group is its uid");
        assert_eq!(status(pid_a, "Groups"), vec!["1900000000".to_owned()], "only the passage group");
        assert_ne!(uid_a[0], uid_b[0], "each session has a uid of its own");
        // Its workspace is its own, and so is what the host writes there for it.
        assert!(
            manager
                .execute(&a, Command::write_file("from-host.txt", "x").unwrap(), Default::default())
                .await
                .unwrap()
                .success
        );
        output(&manager, &a, "await Deno.writeTextFile('from-host.txt', 'changed by the session')").await;
        let workspace = workspace_of(&backend, &manager, &a);
        for path in [workspace.clone(), workspace.join("from-host.txt")] {
            assert_eq!(std::fs::metadata(&path).unwrap().uid(), number, "{}", path.display());
        }
        // The root lets workers pass, and nothing more.
        let instance = std::fs::metadata(backend.workspaces_dir()).unwrap();
        assert_eq!((instance.uid(), instance.gid(), instance.mode() & 0o777), (0, 1_900_000_000, 0o710));
    } else {
        // A server that is not root cannot change uid: its workers keep its own.
        // SAFETY: geteuid has no preconditions.
        assert_eq!(uid(pid_a)[0], unsafe { libc::geteuid() }.to_string());
    }
    for pid in [pid_a, pid_b] {
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(status(pid, set), vec!["0000000000000000"], "{set} of worker {pid}");
        }
        if is_root() {
            assert_eq!(status(pid, "CapBnd"), vec!["0000000000000000"], "CapBnd of worker {pid}");
        }
        assert_eq!(status(pid, "NoNewPrivs"), vec!["1"]);
        assert_eq!(status(pid, "Seccomp"), vec!["2"], "a seccomp filter is installed");
    }
    for id in [a, b] {
        manager.close(&id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_sees_no_variable_of_the_server_even_with_allow_env() {
    plant_secrets();
    let (_root, backend, manager) = manager();
    let id = session_with(&manager, DenoPermissions { allow_env: Allowlist::All, ..DenoPermissions::default() }).await;
    let pid = worker_pid(&backend, &manager, &id);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).split('=').next().unwrap_or_default().to_owned())
        .collect();
    // The only variable is the marker that made the process a zygote (not a secret).
    assert_eq!(names, vec![WORKER_ENV.to_owned()], "the worker's environment");
    let (token, marker) = (SECRETS[0].1, SECRETS[1].1);
    let raw = String::from_utf8_lossy(&environ);
    assert!(!raw.contains(token) && !raw.contains(marker), "{raw}");
    // allowEnv grants the session's own variables: none until the session sets one.
    assert_eq!(output(&manager, &id, "console.log(JSON.stringify(Deno.env.toObject()))").await, "{}");
    assert_eq!(output(&manager, &id, "console.log(Deno.env.get('CODEBEAKER_TOKEN'))").await, "undefined");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workers_stdio_is_not_the_servers() {
    plant_secrets();
    let (_root, backend, manager) = manager();
    let id = session(&manager).await;
    let pid = worker_pid(&backend, &manager, &id);
    let link = |pid: &str, fd: u32| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap().display().to_string();
    assert_eq!(link(&pid.to_string(), 0), "/dev/null");
    assert_eq!(link(&pid.to_string(), 1), "/dev/null");
    let stderr = link(&pid.to_string(), 2);
    assert!(stderr.starts_with("pipe:"), "the worker's stderr is a pipe the host reads, not {stderr}");
    assert_ne!(stderr, link("self", 2), "the server's own stderr");
    manager.close(&id).await.unwrap();
}
