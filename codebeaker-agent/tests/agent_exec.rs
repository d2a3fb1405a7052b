//! The agent binary running commands: output, exit, env, cwd, stdin, user, caps, and
//! timeouts that kill every process the command started.

mod support;

use std::time::{Duration, Instant};

use codebeaker_agent::client::ExecEvent;
use codebeaker_agent::protocol::{Base64Bytes, ExecCommand, ExecRequest, Rlimits};
use support::{all_die, command_uid, is_dead, Agent, NPROC};

/// How long after a timeout or cancel the agent may take to kill and answer (the host's
/// share of the operator's stop grace).
const GRACE_MS: u64 = 500;

/// `sh -c line` with `timeout_ms` and the test's grace.
fn shell(line: &str, timeout_ms: u64) -> ExecRequest {
    let mut request = ExecRequest::new(ExecCommand::Shell(line.into()), timeout_ms, 1 << 16);
    request.grace_ms = GRACE_MS;
    request
}

#[tokio::test]
async fn a_command_streams_its_output_and_reports_exit_user_and_usage() {
    let agent = Agent::start().await;
    let out = agent.sh("echo hi; echo err >&2; id -u; exit 3").await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("hi\n{}\n", command_uid()));
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exited.code, Some(3));
    assert!(!out.exited.timed_out && !out.exited.truncated);
    assert_eq!(out.exited.usage.output_bytes, 3 + 4 + command_uid().to_string().len() as u64 + 1);
    let busy = agent.sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done").await;
    assert!(busy.exited.usage.cpu_ms > 0, "rusage of the command: {:?}", busy.exited.usage);
    assert!(busy.exited.usage.max_rss_kb > 0, "{:?}", busy.exited.usage);
}

#[tokio::test]
async fn argv_env_cwd_and_stdin_reach_the_process() {
    let agent = Agent::start().await;
    std::fs::create_dir(agent.workspace.join("sub")).unwrap();
    let mut request = ExecRequest::new(
        ExecCommand::Argv(vec!["sh".into(), "-c".into(), "pwd; echo $GREETING; cat".into()]),
        10_000,
        4096,
    );
    request.env.insert("GREETING".into(), "hello there".into());
    request.cwd = Some("/workspace/sub".into());
    request.stdin = Some(Base64Bytes(b"from stdin".to_vec()));
    let out = agent.client.exec_collect(request).await.unwrap();
    let expected = format!("{}\nhello there\nfrom stdin", agent.workspace.join("sub").display());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(out.exited.code, Some(0));
}

#[tokio::test]
async fn streamed_stdin_is_fed_until_closed() {
    let agent = Agent::start().await;
    let mut request = ExecRequest::new(ExecCommand::Argv(vec!["cat".into()]), 10_000, 4096);
    request.stdin_stream = true;
    let stream = agent.client.exec(request).await.unwrap();
    stream.write_stdin(b"one ".to_vec(), false).await.unwrap();
    stream.write_stdin(b"two".to_vec(), true).await.unwrap();
    let out = stream.collect(4096).await.unwrap();
    assert_eq!(out.stdout, b"one two");
}

#[tokio::test]
async fn a_working_directory_outside_the_workspace_is_refused() {
    let agent = Agent::start().await;
    std::os::unix::fs::symlink(&agent.outside, agent.workspace.join("escape")).unwrap();
    for cwd in ["../outside", "escape", "/etc"] {
        let mut request = ExecRequest::new(ExecCommand::Shell("pwd".into()), 10_000, 4096);
        request.cwd = Some(cwd.into());
        let err = agent.client.exec_collect(request).await.unwrap_err();
        let sdk: codebeaker::Error = err.into();
        assert!(sdk.kind() == codebeaker::ErrorKind::PermissionDenied, "{cwd}: {sdk:?}");
    }
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let agent = Agent::start().await;
    let request = ExecRequest::new(ExecCommand::Argv(vec!["no-such-program-here".into()]), 10_000, 4096);
    let err = agent.client.exec_collect(request).await.unwrap_err();
    assert!(err.to_string().contains("cannot run no-such-program-here"), "{err}");
}

#[tokio::test]
async fn output_beyond_the_cap_is_counted_not_sent() {
    let agent = Agent::start().await;
    let request = ExecRequest::new(ExecCommand::Shell("head -c 100000 /dev/zero".into()), 10_000, 1000);
    let out = agent.client.exec_collect(request).await.unwrap();
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.exited.truncated);
    assert_eq!(out.exited.usage.output_bytes, 100_000);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group_and_escaped_children_and_answers_on_time() {
    let agent = Agent::start().await;
    // An orphan: its parent shell exits at once, so no parent chain leads to it.
    let line = "sleep 1000 & echo $! > bg.pid; setsid sleep 1000 & echo $! > escaped.pid; \
                sh -c 'setsid sleep 1000 & echo $! > orphan.pid'; \
                for i in 1 2 3 4 5 6 7 8; do (while :; do :; done) & done; sleep 1000";
    let started = Instant::now();
    let out = agent.client.exec_collect(shell(line, 700)).await.unwrap();
    let took = started.elapsed();
    assert!(out.exited.timed_out, "{:?}", out.exited);
    assert_eq!(out.exited.signal, Some(libc::SIGKILL));
    assert!(took < Duration::from_millis(700 + GRACE_MS), "answered within timeout + grace, took {took:?}");
    let read_pid =
        |name: &str| std::fs::read_to_string(agent.workspace.join(name)).unwrap().trim().parse::<i32>().unwrap();
    let (bg, escaped, orphan) = (read_pid("bg.pid"), read_pid("escaped.pid"), read_pid("orphan.pid"));
    let pgid = out.pid.unwrap() as i32;
    assert!(
        all_die(&[bg, escaped, orphan]).await,
        "background ({bg}), setsid ({escaped}) and orphaned ({orphan}) children must die"
    );
    // Every one was sent SIGKILL before the answer; one may still be on its way out.
    let survivors: Vec<i32> = procs_in_group(pgid);
    assert!(all_die(&survivors).await, "processes left in the command's group: {survivors:?}");
    // The session goes on.
    assert_eq!(agent.sh("echo alive").await.stdout, b"alive\n");
}

fn procs_in_group(pgid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) && !is_dead(pid) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn cancel_kills_a_running_command() {
    let agent = Agent::start().await;
    let mut request = ExecRequest::new(ExecCommand::Shell("echo go; sleep 1000".into()), 60_000, 4096);
    request.grace_ms = GRACE_MS;
    let mut stream = agent.client.exec(request).await.unwrap();
    let Some(Ok(ExecEvent::Started { .. })) = stream.next().await else { panic!("no start") };
    let Some(Ok(ExecEvent::Stdout(first))) = stream.next().await else { panic!("no output") };
    assert_eq!(first, b"go\n");
    stream.cancel().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), stream.collect(4096)).await.unwrap().unwrap();
    assert_eq!(out.exited.signal, Some(libc::SIGKILL));
    assert!(!out.exited.timed_out);
}

#[tokio::test]
async fn rlimits_apply_to_the_command() {
    let agent = Agent::start().await;
    let mut request = ExecRequest::new(
        ExecCommand::Shell("ulimit -c; ulimit -n; head -c 10000 /dev/zero > big.bin; echo status=$?".into()),
        10_000,
        4096,
    );
    request.rlimits = Rlimits { fsize: Some(4096), nofile: Some(64), nproc: None };
    let out = agent.client.exec_collect(request).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("0\n64\n"), "{stdout}");
    assert!(!stdout.contains("status=0"), "writing past RLIMIT_FSIZE must fail: {stdout}");
    let written = std::fs::metadata(agent.workspace.join("big.bin")).unwrap().len();
    assert!(written <= 4096, "{written} bytes written past the limit");
}

#[tokio::test]
async fn several_commands_run_at_once() {
    let agent = Agent::start().await;
    // The first waits for what the second does: only concurrent requests finish both.
    let waiter = agent.client.exec_collect(ExecRequest::new(
        ExecCommand::Shell("while [ ! -f flag ]; do sleep 0.05; done; echo saw it".into()),
        20_000,
        4096,
    ));
    let setter = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        agent.sh("touch flag; echo set").await
    };
    let (waited, set) = tokio::join!(waiter, setter);
    assert_eq!(set.stdout, b"set\n");
    let waited = waited.unwrap();
    assert_eq!((waited.stdout.as_slice(), waited.exited.timed_out), (&b"saw it\n"[..], false));
}

#[tokio::test]
async fn fork_bombs_die_with_their_timeout_and_the_agent_keeps_answering() {
    // A uid of its own: the bomb fills its process limit, not other tests'.
    let agent = Agent::start_isolated(2_000_000_101).await;
    // Some time out; some end at once (the shell cannot fork) and leave the bomb running:
    // the next command, unable to start, clears it.
    let bombs = [
        "f() { f | f & }; f; sleep 100",
        "while :; do (while :; do sleep 1000 & done) & done",
        "python3 -c 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass'",
    ];
    for round in 0..3 {
        for bomb in bombs {
            let started = Instant::now();
            let mut request = shell(bomb, 1500);
            request.rlimits.nproc = Some(NPROC);
            let out = tokio::time::timeout(Duration::from_secs(10), agent.client.exec_collect(request))
                .await
                .expect("an answer, not a stuck request")
                .unwrap();
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(1500 + GRACE_MS + 300),
                "round {round}: {bomb} answered after {took:?}"
            );
            let after = agent.sh_limited("echo alive").await;
            let stderr = String::from_utf8_lossy(&after.stderr);
            assert_eq!(after.stdout, b"alive\n", "round {round}: {bomb} ({:?}) left no room: {stderr}", out.exited);
        }
    }
}

#[tokio::test]
async fn a_process_killed_by_a_signal_says_which() {
    let agent = Agent::start().await;
    let killed = agent.client.exec_collect(shell("kill -XFSZ $$", 10_000)).await.unwrap();
    assert_eq!(killed.exited.signal, Some(libc::SIGXFSZ), "{:?}", killed.exited);
    assert_eq!(
        killed.exited.signal_note().as_deref(),
        Some("the program was killed by SIGXFSZ: file size limit exceeded")
    );
    // A shell reports its child's death as 128 + n.
    let mut request = shell("head -c 100000 /dev/zero > big.bin", 10_000);
    request.rlimits.fsize = Some(4096);
    let shelled = agent.client.exec_collect(request).await.unwrap();
    assert_eq!(shelled.exited.code, Some(128 + libc::SIGXFSZ), "{:?}", shelled.exited);
    let note = shelled.exited.signal_note().unwrap_or_default();
    assert!(note.contains("SIGXFSZ: file size limit exceeded"), "{note}");
    assert_eq!(agent.sh("exit 3").await.exited.signal_note(), None);
}
