//! Running a program in a sandbox with the exec API: argv, environment, working directory
//! and stdin in; stdout and stderr collected separately (capped, streamed) and the exit
//! code out; the per-command timeout enforced.
//!
//! The exec API cannot kill what it started, and a process outlives its exec client. So
//! on timeout the backend runs a second exec, as the sandbox user, that sends `SIGKILL`
//! to `-1`: every process that user may signal. Commands of a session run one at a time,
//! so that is the timed-out command's whole tree, including children that escaped its
//! process group or session. The init and keep-alive run as another, unprivileged user
//! and survive. A fork bomb may have filled the pids limit so that no exec can start; the
//! limit is then raised for the killer and restored after.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerUpdateBody;
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use codebeaker::{Error, OutputCollector, OutputStream};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use crate::container::{engine_error, short, status_of};

/// Kills every process of the calling user but itself. One `kill -9 -1` reaches every
/// process at once, and a process with a pending `SIGKILL` cannot complete a fork, so a
/// few rounds suffice even against a fork bomb; the loop also ends as soon as nothing is
/// left to signal. (Zombies keep `kill` succeeding until init reaps them, so it must be
/// bounded: unbounded, it spun for seconds on a loaded machine.) Builtins only: a fork
/// bomb leaves no room for new processes.
const KILL_SCRIPT: &str = "i=0; while [ $i -lt 20 ] && kill -9 -1 2>/dev/null; do i=$((i+1)); done";

/// Longest the kill-and-drain phase after a timeout may take in all: most of the
/// operator's stop grace ([`codebeaker::SessionLimits::stop_grace`]), so that the result
/// reaches the session manager before its backstop (timeout + the same grace) fires.
fn kill_phase(stop_grace: Duration) -> Duration {
    stop_grace.mul_f64(0.75)
}

/// One program to run.
#[derive(Debug, Clone)]
pub(crate) struct ExecRequest {
    /// Program and arguments, run directly (no shell).
    pub argv: Vec<String>,
    /// `NAME=value` entries added to the image's environment.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub working_dir: String,
    /// Bytes for standard input; without them stdin is empty.
    pub stdin: Option<Vec<u8>>,
    /// `uid:gid` to run as.
    pub user: String,
}

/// How a program ended.
#[derive(Debug)]
pub(crate) struct ExecOutcome {
    /// Exit code; `None` when it was killed for the timeout or never reported one.
    pub exit_code: Option<i64>,
    /// It ran past the timeout and was killed.
    pub timed_out: bool,
    /// When it started, for the OOM event query.
    pub started_at: SystemTime,
    /// Wall-clock time from start to end.
    pub duration: Duration,
    /// Output was cut before it reached the host (the agent's per-stream cap).
    pub truncated: bool,
    /// What the program cost, when the agent measured it.
    pub usage: Option<codebeaker::Usage>,
}

/// Why an exec could not run: the program's own problem, or the sandbox's.
fn exec_error(container: &str, doing: &str, err: bollard::errors::Error) -> Error {
    match status_of(&err) {
        Some(404) | Some(409) => {
            Error::SandboxFailed(format!("cannot {doing}: container {} is not running", short(container)))
        }
        _ => engine_error(doing, err),
    }
}

/// Runs `request` in `container`, feeding output to `output` until it ends or `timeout`
/// passes (then kills the sandbox user's processes; see the module docs).
pub(crate) async fn run(
    docker: &Docker,
    container: &str,
    request: ExecRequest,
    output: &mut OutputCollector,
    timeout: Duration,
    stop_grace: Duration,
    pids_limit: i64,
) -> Result<ExecOutcome, Error> {
    let kill_phase = kill_phase(stop_grace);
    // How long to wait for output to end after the killer ran (then it runs once more).
    let drain_after_kill = kill_phase / 3;
    let started_at = SystemTime::now();
    let start = Instant::now();
    let options = CreateExecOptions {
        cmd: Some(request.argv),
        env: Some(request.env),
        working_dir: Some(request.working_dir),
        user: Some(request.user.clone()),
        attach_stdin: Some(request.stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..Default::default()
    };
    let exec = docker.create_exec(container, options).await.map_err(|e| exec_error(container, "create an exec", e))?;
    let start_options = StartExecOptions { detach: false, tty: false, output_capacity: Some(64 * 1024) };
    let started = docker
        .start_exec(&exec.id, Some(start_options))
        .await
        .map_err(|e| exec_error(container, "start an exec", e))?;
    let StartExecResults::Attached { output: mut stream, mut input } = started else {
        return Err(Error::Internal("the engine started an attached exec detached".into()));
    };
    // Feed stdin from its own task: a program that writes before it reads must not block
    // on an output pipe nobody drains.
    let feeder = request.stdin.map(|bytes| {
        tokio::spawn(async move {
            // A program that exits without reading its input closes the pipe: not an error.
            let _ = input.write_all(&bytes).await;
            let _ = input.shutdown().await;
        })
    });

    let deadline = tokio::time::Instant::now() + timeout;
    let mut timed_out = false;
    let mut kills = 0;
    let mut stream_error = None;
    loop {
        let next = if timed_out {
            let give_up = deadline + kill_phase;
            let wait = drain_after_kill.min(give_up.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, stream.next()).await {
                Ok(next) => next,
                Err(_) if kills < 2 && tokio::time::Instant::now() < give_up => {
                    kills += 1;
                    let left = give_up.saturating_duration_since(tokio::time::Instant::now());
                    let killing =
                        kill_sandbox_processes(docker, container, &request.user, pids_limit, drain_after_kill);
                    if !matches!(tokio::time::timeout(left, killing).await, Ok(Ok(()))) {
                        warn!(container = %short(container), "second kill failed or ran out of time");
                    }
                    continue;
                }
                Err(_) => {
                    warn!(container = %short(container), "output did not end after the kill; giving up on it");
                    break;
                }
            }
        } else {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    timed_out = true;
                    kills += 1;
                    debug!(container = %short(container), ?timeout, "command timed out; killing its processes");
                    let killing =
                        kill_sandbox_processes(docker, container, &request.user, pids_limit, drain_after_kill);
                    match tokio::time::timeout(kill_phase, killing).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            warn!(container = %short(container), error = %e, "killing after a timeout failed")
                        }
                        Err(_) => warn!(container = %short(container), "killing after a timeout ran out of time"),
                    }
                    continue;
                }
            }
        };
        match next {
            Some(Ok(LogOutput::StdOut { message })) | Some(Ok(LogOutput::Console { message })) => {
                output.push(OutputStream::Stdout, &message)
            }
            Some(Ok(LogOutput::StdErr { message })) => output.push(OutputStream::Stderr, &message),
            Some(Ok(LogOutput::StdIn { .. })) => {}
            Some(Err(e)) => {
                stream_error = Some(e);
                break;
            }
            None => break,
        }
    }
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    let duration = start.elapsed();
    let exit_code = if timed_out { None } else { exit_code_of(docker, &exec.id).await };
    if exit_code.is_none() && !timed_out {
        if let Some(e) = stream_error {
            return Err(exec_error(container, "read the program's output", e));
        }
    }
    Ok(ExecOutcome { exit_code, timed_out, started_at, duration, truncated: false, usage: None })
}

/// The exit code of a finished exec (it may take a moment to be recorded).
async fn exit_code_of(docker: &Docker, exec_id: &str) -> Option<i64> {
    for attempt in 0..50u64 {
        match docker.inspect_exec(exec_id).await {
            Ok(info) if info.running != Some(true) => return info.exit_code,
            Ok(_) => tokio::time::sleep(Duration::from_millis(2 + attempt * 2)).await,
            Err(_) => return None,
        }
    }
    None
}

/// Kills every process of `user` in the container (see the module docs).
pub(crate) async fn kill_sandbox_processes(
    docker: &Docker,
    container: &str,
    user: &str,
    pids_limit: i64,
    attempt: Duration,
) -> Result<(), Error> {
    match run_killer(docker, container, user, attempt).await {
        Ok(()) => return Ok(()),
        Err(e) => debug!(container = %short(container), error = %e, "killer exec failed; raising the pids limit"),
    }
    // Probably a fork bomb at the pids limit: make room for the killer, then restore.
    let raise = ContainerUpdateBody { pids_limit: Some(pids_limit + 64), ..Default::default() };
    docker.update_container(container, raise).await.map_err(|e| exec_error(container, "raise the pids limit", e))?;
    let killed = run_killer(docker, container, user, attempt).await;
    let restore = ContainerUpdateBody { pids_limit: Some(pids_limit), ..Default::default() };
    if let Err(e) = docker.update_container(container, restore).await {
        warn!(container = %short(container), error = %e, "could not restore the pids limit");
    }
    killed
}

/// Runs [`KILL_SCRIPT`] once; gives up after `attempt`.
async fn run_killer(docker: &Docker, container: &str, user: &str, attempt: Duration) -> Result<(), Error> {
    match tokio::time::timeout(attempt, run_killer_exec(docker, container, user)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Internal(format!("the killer exec did not finish within {attempt:?}"))),
    }
}

async fn run_killer_exec(docker: &Docker, container: &str, user: &str) -> Result<(), Error> {
    let options = CreateExecOptions {
        cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), KILL_SCRIPT.to_owned()]),
        user: Some(user.to_owned()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec =
        docker.create_exec(container, options).await.map_err(|e| exec_error(container, "create the killer exec", e))?;
    let started =
        docker.start_exec(&exec.id, None).await.map_err(|e| exec_error(container, "start the killer exec", e))?;
    if let StartExecResults::Attached { mut output, .. } = started {
        while output.next().await.is_some() {}
    }
    match docker.inspect_exec(&exec.id).await {
        Ok(info) if info.exit_code == Some(0) => Ok(()),
        Ok(info) => Err(Error::Internal(format!("the killer exec exited with {:?}", info.exit_code))),
        Err(e) => Err(exec_error(container, "inspect the killer exec", e)),
    }
}

/// The bare exec round trip (see [`crate::DockerBackend::raw_exec`]).
pub(crate) async fn raw(docker: &Docker, container: &str, argv: &[&str], user: &str) -> Result<Option<i64>, Error> {
    let options = CreateExecOptions {
        cmd: Some(argv.iter().map(|a| (*a).to_owned()).collect()),
        user: Some(user.to_owned()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(container, options).await.map_err(|e| exec_error(container, "create an exec", e))?;
    let started = docker.start_exec(&exec.id, None).await.map_err(|e| exec_error(container, "start an exec", e))?;
    if let StartExecResults::Attached { mut output, .. } = started {
        while output.next().await.is_some() {}
    }
    let info = docker.inspect_exec(&exec.id).await.map_err(|e| exec_error(container, "inspect an exec", e))?;
    Ok(info.exit_code)
}

/// Whether the engine reported an `oom` event for `container` since `since` (an exec'd
/// process killed for memory gives exit code 137 and this event; the container's own
/// `OOMKilled` flag only covers PID 1).
pub(crate) async fn oom_since(docker: &Docker, container: &str, since: SystemTime) -> bool {
    let stamp = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    };
    let filters = std::collections::HashMap::from([("container", vec![container]), ("event", vec!["oom"])]);
    // `until` in the past makes the engine answer at once instead of streaming.
    let options = EventsOptionsBuilder::new()
        .since(&stamp(since - Duration::from_secs(1)))
        .until(&stamp(SystemTime::now()))
        .filters(&filters)
        .build();
    let events = docker.events(Some(options));
    let found = tokio::time::timeout(Duration::from_secs(2), events.any(|e| async move { e.is_ok() })).await;
    matches!(found, Ok(true))
}
