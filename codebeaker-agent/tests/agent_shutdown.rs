//! The agent binary ending its guest for the session's close: `shutdown` kills every
//! process the guest started (however it left its command) and answers only once none
//! runs; after it, the agent runs nothing more.

mod support;

use std::time::Duration;

use codebeaker_agent::client::{AgentError, ExecEvent};
use codebeaker_agent::protocol::{ErrorKind, ExecCommand, ExecRequest, FsRequest};
use support::{is_dead, processes_of, state_of, threads_of, Agent, NPROC};

#[tokio::test]
async fn shutdown_kills_every_guest_process_and_the_agent_runs_nothing_more() {
    let agent = Agent::start().await;
    // A background child, one that left its group and its parent (setsid, double fork),
    // and a command still running when shutdown comes.
    let started = agent
        .sh("sleep 1000 >/dev/null 2>&1 & echo $!; setsid sh -c 'sleep 1001 >/dev/null 2>&1 & echo $!' </dev/null")
        .await;
    let pids: Vec<i32> =
        String::from_utf8_lossy(&started.stdout).lines().map(|l| l.trim().parse().expect("a pid")).collect();
    assert_eq!(pids.len(), 2, "{started:?}");
    let mut running =
        agent.client.exec(ExecRequest::new(ExecCommand::Shell("sleep 30".into()), 60_000, 1024)).await.unwrap();
    let Some(Ok(ExecEvent::Started { pid })) = running.next().await else { panic!("the command did not start") };

    let killed = agent
        .client
        .shutdown(Duration::from_secs(5), codebeaker::Policy::default().graces().close_kill)
        .await
        .expect("shutdown answers");
    assert!(killed >= 3, "killed {killed}");
    // Dead (or zombies) the moment the answer comes.
    for pid in pids.iter().copied().chain([pid as i32]) {
        assert!(is_dead(pid), "process {pid} outlived shutdown");
    }
    // The running command ends, and no request runs anything any more.
    let ended = tokio::time::timeout(Duration::from_secs(5), async { while running.next().await.is_some() {} });
    assert!(ended.await.is_ok(), "the running command never ended");
    let refused = agent.client.exec_collect(ExecRequest::new(ExecCommand::Shell("true".into()), 1000, 16)).await;
    assert!(matches!(&refused, Err(AgentError::Remote(r)) if r.kind == ErrorKind::Unsupported), "{refused:?}");
    let refused = agent.client.fs(FsRequest::List { path: ".".into() }).await;
    assert!(matches!(&refused, Err(AgentError::Remote(r)) if r.message.contains("closed")), "{refused:?}");
    // The agent itself still answers (and a second shutdown finds nothing to kill).
    assert_eq!(
        agent.client.shutdown(Duration::from_secs(5), codebeaker::Policy::default().graces().close_kill).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn a_fork_bomb_racing_shutdown_loses() {
    // A uid of its own, so that what is left of it can be counted on the host.
    let uid = 2_000_000_103;
    let agent = Agent::start_isolated(uid).await;
    // The python bomb first: its copies keep forking and never exit, so the guest's
    // processes stay at the limit. (A shell bomb alone dies out once forks fail, and one
    // started first could fill the limit before python3 even starts.)
    for bomb in [
        "python3 -c 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass' &",
        "f() { f | f & }; f",
    ] {
        let mut request = ExecRequest::new(ExecCommand::Shell(format!("({bomb}) >/dev/null 2>&1 &")), 10_000, 1024);
        request.rlimits.nproc = Some(NPROC);
        agent.client.exec_collect(request).await.unwrap();
    }
    // Let the bombs grow to their limit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!processes_of(uid).is_empty(), "the bombs did not start");
    let killed = agent
        .client
        .shutdown(Duration::from_secs(10), codebeaker::Policy::default().graces().close_kill)
        .await
        .expect("shutdown answers");
    let left = processes_of(uid);
    assert!(left.is_empty(), "killed {killed}, yet processes of the guest still run: {left:?}");
}

#[tokio::test]
async fn a_process_whose_main_thread_ended_alone_dies_with_its_threads() {
    let agent = Agent::start().await;
    // The main thread ends by itself (SYS_exit, not exit_group): `/proc` shows the process
    // a zombie while its other thread runs on.
    let started = agent
        .sh("python3 -c 'import ctypes, threading, time; threading.Thread(target=time.sleep, args=(1000,)).start(); ctypes.CDLL(None).syscall(60, 0)' >/dev/null 2>&1 & echo $!")
        .await;
    let pid: i32 = String::from_utf8_lossy(&started.stdout).trim().parse().expect("a pid");
    let headless = async {
        while !(is_dead(pid) || threads_of(pid).is_some_and(|threads| threads > 1) && state_of(pid) == Some('Z')) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), headless).await.expect("the main thread never ended");
    assert!(!is_dead(pid), "the process ended with its main thread");

    let killed = agent
        .client
        .shutdown(Duration::from_secs(5), codebeaker::Policy::default().graces().close_kill)
        .await
        .expect("shutdown answers");
    assert!(killed >= 1, "killed {killed}");
    assert!(is_dead(pid), "process {pid} runs on after shutdown, {:?} threads", threads_of(pid));
}
