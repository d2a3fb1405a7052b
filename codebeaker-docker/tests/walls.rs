//! The walls between guest code and what runs it, on the real engine: the agent's
//! channel is the agent's alone, every sandbox has a uid of its own (per-uid kernel
//! limits stay per sandbox), runaway process trees die within their timeout and grace
//! with the session kept, and a process killed by a signal says which.

mod common;

use std::time::Duration;

use codebeaker::{Command, ErrorKind, Language, SessionManager};
use common::{run, run_with, session, sh, shell};

async fn still_usable(manager: &SessionManager, id: &str, what: &str) {
    let echo = run(manager, id, Command::shell("echo", ["still here"])).await;
    assert_eq!(shell(&echo).stdout, "still here\n", "{what}: session unusable: {:?}", echo.to_json());
}

fn output(outcome: &codebeaker::CommandOutcome) -> String {
    outcome.to_json()["result"].as_str().unwrap_or_default().to_owned()
}

/// Guest code goes for the agent (PID 1): its descriptors (the host's channel), signals,
/// ptrace. Everything is refused, and the session goes on with its state.
async fn the_channel_is_the_agents_alone(manager: &SessionManager) {
    let id = session(manager, Language::Python).await;
    run(manager, &id, Command::code("kept = 'still here'")).await;
    let shell_attempts = [
        // Forged frames (the protocol's magic) and garbage on the host's channel.
        "printf 'CB\\001\\000\\000\\000\\000\\000\\000\\000\\001\\000\\000\\000\\377' > /proc/1/fd/1 && echo WROTE-FD1",
        "head -c 4096 /dev/urandom > /proc/1/fd/1 && echo WROTE-FD1",
        "head -c 16 /proc/1/fd/0 > /dev/null && echo READ-FD0",
        "ls -l /proc/1/fd/ && echo LISTED-FD",
        "cat /proc/1/environ > /dev/null && echo READ-ENVIRON",
        "kill -9 1 && echo KILLED-1",
        "kill -STOP 1 && echo STOPPED-1",
    ];
    for attempt in shell_attempts {
        let outcome = run_with(manager, &id, sh(attempt), Duration::from_secs(10)).await;
        let result = shell(&outcome);
        let marker = attempt.rsplit("echo ").next().unwrap_or_default();
        assert!(!result.stdout.contains(marker), "{attempt} succeeded: {result:?}");
        assert_ne!(result.exit_code, 0, "{attempt}: {result:?}");
        still_usable(manager, &id, attempt).await;
    }
    let python_attempts = r#"
import ctypes, os, signal
outcomes = []
for path, mode in (("/proc/1/fd/0", os.O_RDONLY), ("/proc/1/fd/1", os.O_WRONLY), ("/proc/1/mem", os.O_RDONLY)):
    try:
        fd = os.open(path, mode)
        outcomes.append("OPENED " + path)
        os.close(fd)
    except OSError as e:
        outcomes.append("refused " + path + ": " + e.strerror)
for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
    try:
        os.kill(1, sig)
        outcomes.append("SIGNALLED 1")
    except OSError as e:
        outcomes.append("refused kill: " + e.strerror)
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
for request in (PTRACE_ATTACH, PTRACE_SEIZE):
    if libc.ptrace(request, 1, None, None) == 0:
        outcomes.append("TRACED 1")
    else:
        outcomes.append("refused ptrace: " + os.strerror(ctypes.get_errno()))
print("\n".join(outcomes))
"#;
    let outcome = run(manager, &id, Command::code(python_attempts)).await;
    let text = output(&outcome);
    for refused in ["OPENED", "SIGNALLED", "TRACED"] {
        assert!(!text.contains(refused), "guest code reached the agent: {text}");
    }
    assert_eq!(text.matches("refused").count(), 8, "{:?}", outcome.to_json());
    // The same session, with its interpreter state, still answers.
    let kept = run(manager, &id, Command::code("kept")).await;
    assert_eq!(output(&kept), "'still here'", "{:?}", kept.to_json());
    still_usable(manager, &id, "after the python attempts").await;
    // Killing everything it may kill reaches the guest's own processes, its interpreter
    // included (the next run starts a fresh one and says so), never the agent.
    run(manager, &id, sh("kill -9 -1")).await;
    let fresh = run(manager, &id, Command::code("6 * 7")).await;
    assert_eq!(
        (output(&fresh).as_str(), &fresh.to_json()["stateReset"]),
        ("42", &serde_json::json!(true)),
        "{:?}",
        fresh.to_json()
    );
    still_usable(manager, &id, "after kill -9 -1").await;
    manager.close(&id).await.expect("close");
}

/// Two sandboxes run as different uids: one exhausting a per-uid kernel limit (inotify
/// instances, processes) leaves the other's untouched.
async fn per_uid_limits_stay_per_sandbox(manager: &SessionManager) {
    let greedy = session(manager, Language::Python).await;
    let other = session(manager, Language::Python).await;
    let uid = |id: String| async move { shell(&run(manager, &id, Command::shell("id", ["-u"])).await).stdout.clone() };
    let (greedy_uid, other_uid) = (uid(greedy.clone()).await, uid(other.clone()).await);
    assert_ne!(greedy_uid, other_uid, "every sandbox has a uid of its own");
    let exhaust = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
held = []
while True:
    fd = libc.inotify_init()
    if fd < 0:
        break
    held.append(fd)
print(len(held), os.strerror(ctypes.get_errno()))
"#;
    let exhausted = output(&run(manager, &greedy, Command::code(exhaust)).await);
    assert!(exhausted.contains("Too many open files"), "the limit was reached: {exhausted}");
    let probe = "import ctypes\nfd = ctypes.CDLL(None).inotify_init()\nprint('inotify', fd >= 0)";
    let other_probe = output(&run(manager, &other, Command::code(probe)).await);
    assert_eq!(other_probe, "inotify True", "another sandbox's inotify_init still works");
    // Processes: the greedy one fills its uid's RLIMIT_NPROC with sleepers (in the
    // background, kept by the interpreter), the other still starts programs.
    let fill = "import subprocess\nkids = []\ntry:\n    while True:\n        kids.append(subprocess.Popen(['sleep', '600']))\nexcept OSError as e:\n    print(len(kids) > 50, e.strerror)";
    let filled = output(&run_with(manager, &greedy, Command::code(fill), Duration::from_secs(60)).await);
    assert!(filled.starts_with("True"), "{filled}");
    let started = run(manager, &other, sh("sleep 0.1 & wait; echo started")).await;
    assert_eq!(shell(&started).stdout, "started\n", "{:?}", started.to_json());
    manager.close(&greedy).await.expect("close");
    manager.close(&other).await.expect("close");
}

/// Twenty fork bombs in a row in one session, python and shell, each followed by a
/// working command: each answers within its timeout and the grace, the session is kept.
async fn fork_bombs_in_a_row(manager: &SessionManager) {
    let id = session(manager, Language::Python).await;
    let bombs = [
        Command::code("import os\nwhile True:\n    os.fork()"),
        Command::code("import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass"),
        sh("f() { f | f & }; f; sleep 100"),
        sh(":(){ :|:& };:"),
    ];
    let grace = codebeaker::Policy::default().stop_grace();
    for round in 0..5 {
        for bomb in &bombs {
            let what = format!("round {round}: {bomb:?}");
            let started = std::time::Instant::now();
            let outcome = run_with(manager, &id, bomb.clone(), Duration::from_millis(2500)).await;
            let took = started.elapsed();
            assert!(
                outcome.error.as_ref().map(|e| e.kind()) != Some(ErrorKind::SandboxFailed),
                "{what}: the session was lost: {:?}",
                outcome.to_json()
            );
            assert!(took < Duration::from_millis(2500) + grace, "{what}: answered after {took:?}");
            still_usable(manager, &id, &what).await;
            let python = run(manager, &id, Command::code("print(6 * 7)")).await;
            assert_eq!(output(&python), "42", "{what}: {:?}", python.to_json());
        }
    }
    assert!(manager.info(&id).is_ok(), "the session is still open");
    manager.close(&id).await.expect("close");
}

/// Processes killed by a signal say which, in stderr (programs) or the error (code).
async fn signals_are_named(manager: &SessionManager) {
    let id = session(manager, Language::Go).await;
    let direct = run(manager, &id, Command::shell("sh", ["-c", "kill -XFSZ $$"])).await;
    let result = shell(&direct);
    assert_eq!(result.exit_code, 128 + 25, "{result:?}");
    assert!(result.stderr.contains("SIGXFSZ: file size limit exceeded"), "{result:?}");
    // A shell whose child was killed: exit code 153 = 128 + SIGXFSZ, said the same way.
    let child = run(manager, &id, sh("sh -c 'kill -XFSZ $$'; exit $?")).await;
    let result = shell(&child);
    assert_eq!(result.exit_code, 153, "{result:?}");
    assert!(result.stderr.contains("SIGXFSZ: file size limit exceeded"), "{result:?}");
    let segv = run(manager, &id, sh("kill -SEGV $$")).await;
    assert!(shell(&segv).stderr.contains("SIGSEGV: segmentation fault"), "{:?}", segv.to_json());
    let ordinary = run(manager, &id, sh("echo quiet >&2; exit 3")).await;
    assert_eq!(shell(&ordinary).stderr, "quiet\n", "an ordinary exit gets no note");
    // A compiled program killed by a signal (Go's runtime ignores SIGXFSZ; SIGTERM it
    // re-raises with the default action).
    let go =
        "package main\nimport \"syscall\"\nfunc main() { syscall.Kill(syscall.Getpid(), syscall.SIGTERM); select {} }";
    let killed = run_with(manager, &id, Command::code(go), Duration::from_secs(120)).await;
    let error = killed.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("SIGTERM: terminated"), "{:?}", killed.to_json());
    manager.close(&id).await.expect("close");

    // The python interpreter killed by a signal.
    let id = session(manager, Language::Python).await;
    let crashed = run(manager, &id, Command::code("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")).await;
    let error = crashed.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("SIGSEGV: segmentation fault"), "{:?}", crashed.to_json());
    assert_eq!(crashed.to_json()["stateReset"], true, "{:?}", crashed.to_json());
    let after = run(manager, &id, Command::code("6 * 7")).await;
    assert_eq!(output(&after), "42");
    manager.close(&id).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_code_stays_behind_the_walls() {
    let Some(backend) = common::backend("walls", 0).await else { return };
    let manager = common::manager(&backend);
    let m = &manager;
    tokio::join!(the_channel_is_the_agents_alone(m), per_uid_limits_stay_per_sandbox(m), signals_are_named(m));
    fork_bombs_in_a_row(m).await;
    manager.shutdown().await;
    common::finish(backend).await;
}
