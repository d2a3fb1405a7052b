//! Hostile programs: each is contained with a clear result, and the session (or at least
//! the backend) stays usable.

mod common;

use std::time::Duration;

use codebeaker::{Command, ErrorKind, Language, SessionConfig, SessionManager};
use common::{run, run_with, sh, shell};

async fn session(manager: &SessionManager, memory_limit_mb: u64) -> (String, String) {
    let mut config = SessionConfig::new(Language::Python);
    config.memory_limit_mb = memory_limit_mb;
    let info = manager.create(config).await.expect("session");
    (info.session_id.into(), info.container_id)
}

/// Processes of the sandbox's uid still running, besides the shell and `ps` that list
/// them (the agent, PID 1, runs as root).
async fn stray_processes(manager: &SessionManager, id: &str) -> Vec<String> {
    let ps = run(manager, id, sh("ps -u $(id -u) -o pid=,ppid=,args=")).await;
    let listing = shell(&ps).stdout.clone();
    // The `sh -c` (whose child `ps` is) and `ps` itself.
    let lister =
        listing.lines().find(|l| l.contains("ps -u")).and_then(|l| l.split_whitespace().nth(1)).map(str::to_owned);
    listing
        .lines()
        .filter(|l| !l.contains("ps -u") && l.split_whitespace().next().map(str::to_owned) != lister)
        .map(str::to_owned)
        .collect()
}

async fn still_usable(manager: &SessionManager, id: &str, what: &str) {
    let echo = run(manager, id, Command::shell("echo", ["still here"])).await;
    assert_eq!(shell(&echo).stdout, "still here\n", "{what}: session unusable: {:?}", echo.to_json());
}

async fn fork_bomb(manager: &SessionManager) {
    let (id, _) = session(manager, 512).await;
    let bomb = run_with(manager, &id, sh("f() { f | f & }; f; sleep 100"), Duration::from_secs(4)).await;
    // Killed at its timeout, or ended at once because its own `sleep` could not fork
    // (the guest's process limit): either way its tree goes (the next command clears one
    // that outlived its first process).
    let quick_end = bomb.error.is_none() && shell(&bomb).stderr.contains("Cannot fork");
    assert!(
        bomb.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::TimedOut) || quick_end,
        "fork bomb: {:?}",
        bomb.to_json()
    );
    still_usable(manager, &id, "fork bomb").await;
    let stray = stray_processes(manager, &id).await;
    assert!(stray.is_empty(), "fork bomb left processes: {stray:?}");
    manager.close(&id).await.expect("close");
}

async fn memory_bomb(manager: &SessionManager) {
    let (id, _) = session(manager, 128).await;
    let bomb = "a = []\nwhile True:\n    a.append(' ' * 10**7)";
    let outcome = run(manager, &id, Command::code(bomb)).await;
    let error = outcome.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("out of memory") && error.contains("128 MB"), "memory bomb: {:?}", outcome.to_json());
    let shelled = run(manager, &id, Command::shell("python3", ["-c", bomb])).await;
    let result = shell(&shelled);
    assert_eq!(result.exit_code, 137, "{result:?}");
    assert!(result.stderr.contains("out of memory"), "{result:?}");
    still_usable(manager, &id, "memory bomb").await;
    manager.close(&id).await.expect("close");
}

async fn infinite_loop(manager: &SessionManager) {
    let (id, _) = session(manager, 512).await;
    // A loop that also spawns a detached child: both must go.
    let outcome = run_with(manager, &id, sh("setsid sleep 1000 & while :; do :; done"), Duration::from_secs(2)).await;
    assert!(outcome.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::TimedOut), "{:?}", outcome.to_json());
    let result = shell(&outcome);
    assert!(result.timed_out && result.exit_code == -1, "{result:?}");
    still_usable(manager, &id, "infinite loop").await;
    let stray = stray_processes(manager, &id).await;
    assert!(stray.is_empty(), "the timed-out command left processes: {stray:?}");
    manager.close(&id).await.expect("close");
}

async fn flood(manager: &SessionManager) {
    let (id, _) = session(manager, 512).await;
    let outcome = run(manager, &id, sh("head -c 52428800 /dev/zero | tr '\\0' x; echo done >&2")).await;
    let result = shell(&outcome);
    assert!(
        result.truncated && result.stdout.len() == 1024 * 1024,
        "50 MiB capped at 1 MiB: truncated={} len={}",
        result.truncated,
        result.stdout.len()
    );
    assert_eq!((result.exit_code, result.stderr.as_str()), (0, "done\n"), "stderr has its own cap");
    still_usable(manager, &id, "flood").await;
    manager.close(&id).await.expect("close");
}

async fn writes_outside_the_workspace(manager: &SessionManager) {
    let (id, _) = session(manager, 512).await;
    for target in ["/etc/evil", "/usr/bin/evil", "/evil", "/root/evil"] {
        let outcome = run(manager, &id, sh(&format!("echo x > {target}"))).await;
        let result = shell(&outcome);
        assert_ne!(result.exit_code, 0, "writing {target} must fail: {result:?}");
        let refused = Command::write_file(target, "x");
        assert!(refused.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::PermissionDenied), "{target}: {refused:?}");
    }
    let whoami = shell(&run(manager, &id, Command::shell("id", ["-u"])).await).stdout.clone();
    let uid: u32 = whoami.trim().parse().unwrap_or_else(|_| panic!("id -u: {whoami}"));
    assert!(codebeaker_docker::SANDBOX_UIDS.contains(&uid), "commands run as the sandbox's own uid, not root: {uid}");
    // /tmp is writable but bounded.
    let tmp = run(manager, &id, sh("echo ok > /tmp/x && cat /tmp/x")).await;
    assert_eq!(shell(&tmp).stdout, "ok\n");
    manager.close(&id).await.expect("close");
}

async fn network(manager: &SessionManager) {
    let (id, _) = session(manager, 512).await;
    // 192.0.2.1 is TEST-NET-1: never routed. With network mode none there is no route at all.
    let probe = "import socket\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect(('192.0.2.1', 80))\n    print('CONNECTED')\nexcept OSError as e:\n    print('refused:', e)\nprint('interfaces:', [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]])";
    let outcome = run(manager, &id, Command::code(probe)).await;
    let output = outcome.to_json()["result"].as_str().unwrap_or_default().to_owned();
    assert!(output.contains("refused:") && !output.contains("CONNECTED"), "{output}");
    assert!(output.contains("interfaces: ['lo']"), "only loopback: {output}");
    manager.close(&id).await.expect("close");
}

async fn other_sessions_files(manager: &SessionManager) {
    let (first, first_container) = session(manager, 512).await;
    let (second, _) = session(manager, 512).await;
    run(manager, &first, Command::write_file("secret.txt", "top secret").unwrap()).await;
    let read = run(manager, &second, Command::read_file("secret.txt").unwrap()).await;
    assert!(read.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::NotFound), "{:?}", read.to_json());
    let hunt = format!(
        "cat /workspace/secret.txt; ls /proc/*/root/workspace 2>&1; grep -rs 'top secret' /workspace /tmp /var /home /run 2>/dev/null | head -3; ls /var/lib/docker 2>&1; echo {first_container} >/dev/null"
    );
    let result = run_with(manager, &second, sh(&hunt), Duration::from_secs(30)).await;
    let result = shell(&result);
    assert!(!result.stdout.contains("top secret"), "another session's file leaked: {result:?}");
    manager.close(&first).await.expect("close");
    manager.close(&second).await.expect("close");
}

async fn traversal_and_symlinks(manager: &SessionManager, container: &mut String) {
    let (id, container_id) = session(manager, 512).await;
    *container = container_id.clone();
    let links = "mkdir -p data && echo inside > data/ok.txt && ln -s /etc etc-link && ln -s /etc/passwd pw && ln -s / root-link && ln -s ../../etc/hostname rel && ln -s /tmp tmp-link && ln -s data data-link";
    assert_eq!(shell(&run(manager, &id, sh(links)).await).exit_code, 0);
    let attempts = [
        Command::read_file("pw").unwrap(),
        Command::read_file("rel").unwrap(),
        Command::read_file("etc-link/passwd").unwrap(),
        Command::read_file("root-link/etc/shadow").unwrap(),
        Command::write_file("etc-link/evil", "x").unwrap(),
        Command::write_file("pw", "x").unwrap(),
        Command::write_file("tmp-link/evil", "x").unwrap(),
        Command::write_file("root-link/usr/evil", "x").unwrap(),
        Command::create_directory("etc-link/evil-dir").unwrap(),
        Command::list_directory("etc-link").unwrap(),
        Command::list_directory("root-link").unwrap(),
        Command::copy_file("pw", "stolen.txt").unwrap(),
        Command::copy_file("data/ok.txt", "etc-link/evil").unwrap(),
        Command::delete_file("etc-link/hostname").unwrap(),
    ];
    // Lexical escapes make no command at all (see the conformance suite).
    assert!(Command::read_file("../../../etc/passwd").is_err());
    assert!(Command::write_file("/workspace/../etc/evil", "x").is_err());
    for command in attempts {
        let what = format!("{command:?}");
        let outcome = run(manager, &id, command).await;
        assert!(
            outcome.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::PermissionDenied),
            "{what} must be refused: {:?}",
            outcome.to_json()
        );
    }
    // Nothing landed in the container's root filesystem.
    let check = run(manager, &id, sh("ls /etc/evil /etc/evil-dir /usr/evil /tmp/evil 2>&1; true")).await;
    assert!(shell(&check).stdout.matches("No such file").count() == 4, "{:?}", check.to_json());
    // Relative symlinks that stay inside work (the agent refuses absolute ones, even into
    // /workspace), and deleting a link removes the link only.
    let via_link = run(manager, &id, Command::read_file("data-link/ok.txt").unwrap()).await;
    assert_eq!(via_link.to_json()["result"]["content"], "inside\n", "{:?}", via_link.to_json());
    let listing = run(manager, &id, Command::list_directory(".").unwrap()).await;
    assert!(listing.to_json()["result"]["entries"].to_string().contains("\"symlink\""), "{:?}", listing.to_json());
    assert!(run(manager, &id, Command::delete_file("etc-link").unwrap()).await.success);
    let etc = run(manager, &id, Command::shell("ls", ["/etc/hostname"])).await;
    assert_eq!(shell(&etc).exit_code, 0, "deleting the link left its target alone");
    manager.close(&id).await.expect("close");
}

async fn killed_from_outside(manager: &SessionManager) {
    let (id, container) = session(manager, 512).await;
    let killer = {
        let container = container.clone();
        tokio::spawn(async move {
            // Kill once the command runs (under load an exec can take seconds to start).
            for _ in 0..200 {
                let top = std::process::Command::new("docker").args(["top", &container]).output().expect("docker top");
                if String::from_utf8_lossy(&top.stdout).contains("sleep 30") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let status = std::process::Command::new("docker").args(["kill", &container]).output().expect("docker kill");
            assert!(status.status.success(), "{status:?}");
        })
    };
    let outcome = run(manager, &id, Command::shell("sleep", ["30"])).await;
    killer.await.expect("killer");
    let error = outcome.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(outcome.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::SandboxFailed), "{:?}", outcome.to_json());
    assert!(error.contains("killed from outside"), "the error says why: {error}");
    // The session is closed and its container removed.
    let after = manager.execute(&id, Command::shell("true", Vec::<String>::new()), Default::default()).await;
    assert!(after.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::SessionNotFound), "{after:?}");
    // Removal follows close in the background, soon.
    let removed = common::eventually(Duration::from_secs(30), || {
        !std::process::Command::new("docker").args(["inspect", &container]).output().expect("inspect").status.success()
    });
    assert!(removed.await, "the dead container was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_programs_are_contained() {
    let Some(backend) = common::backend("hostile", 0).await else { return };
    let manager = common::manager(&backend);
    let m = &manager;
    let mut symlink_container = String::new();
    // The light cases side by side; the CPU hogs one at a time, so that on a 2-core
    // machine they measure containment rather than contention between themselves.
    tokio::join!(
        flood(m),
        writes_outside_the_workspace(m),
        network(m),
        other_sessions_files(m),
        traversal_and_symlinks(m, &mut symlink_container),
        killed_from_outside(m),
    );
    memory_bomb(m).await;
    infinite_loop(m).await;
    fork_bomb(m).await;
    // The backend still serves new sessions.
    let (id, _) = session(&manager, 512).await;
    still_usable(&manager, &id, "after everything").await;
    manager.close(&id).await.expect("close");
    common::finish(backend).await;
}
