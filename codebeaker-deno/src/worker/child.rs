//! The worker process's side: forked from the zygote with an engine ready, it says ready,
//! takes a session (raising its walls first, and handing the host its fork gate's
//! listener), then runs cells until the host closes the channel or kills the process.
//! Between cells the host may ask for a live fork: the worker copies itself (`live_fork`),
//! and the copy, with a channel of its own, says ready and takes its own session.
//!
//! The worker reads the channel only between cells: a cell is stopped by the worker's own
//! watchdog at its deadline, or by the host's SIGKILL when the engine does not stop. Output
//! chunks of a streaming cell go out from a forwarding thread while the cell runs; the
//! result frame follows once that thread is done, so frames never interleave.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use codebeaker::{OutputSink, OutputStream, Usage};

use super::ipc::{self, FromWorker, IpcError, ToWorker, WorkerRun, WorkerSetup, MAX_REQUEST_FRAME};
use super::syscalls::SyscallFilters;
use super::{fdpass, live_fork, walls};
use crate::engine::{Engine, Run, SessionSetup};
use crate::rusage::{cpu_ms, peak_rss_kb};
use crate::watchdog::Watchdog;

/// Why a worker stops serving.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error(transparent)]
    Ipc(#[from] IpcError),
    #[error("cannot raise the worker's walls: {0}")]
    Walls(#[from] walls::WallError),
    #[error("cannot renew the engine after the fork: {0}")]
    Engine(String),
    #[error("the host sent {0} out of turn")]
    OutOfTurn(&'static str),
    #[error("cannot start the worker's watchdog: {0}")]
    Watchdog(std::io::Error),
    #[error("a live fork's copy cannot leave its original: {0}")]
    Copy(std::io::Error),
}

/// The freshly forked child of the zygote (whose pid is `zygote`): serves the host on
/// `channel` with the inherited `engine` and syscall `filters`, and exits the process.
pub(crate) fn serve_forked(
    engine: Engine,
    filters: &SyscallFilters,
    channel: UnixStream,
    zygote: u32,
    control: &UnixStream,
) -> ! {
    // SAFETY: the zygote's control socket is not this process's business; the zygote's
    // owner of it never runs again here (this function does not return).
    unsafe { libc::close(control.as_raw_fd()) };
    // SAFETY: prctl and getppid have no memory preconditions.
    let orphaned =
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 || libc::getppid() as u32 != zygote };
    if orphaned {
        // The zygote went away before the death signal was armed.
        std::process::exit(0);
    }
    let code = match serve_session(engine, filters, channel) {
        Ok(()) | Err(WorkerError::Ipc(IpcError::Closed)) => 0,
        Err(error) => {
            eprintln!("codebeaker-deno worker {}: {error}", std::process::id());
            1
        }
    };
    std::process::exit(code)
}

fn serve_session(mut engine: Engine, filters: &SyscallFilters, mut channel: UnixStream) -> Result<(), WorkerError> {
    engine.renew_after_fork().map_err(WorkerError::Engine)?;
    ipc::write_frame(&mut channel, &FromWorker::Ready).map_err(IpcError::from)?;
    let setup = match ipc::read_frame(&mut channel, MAX_REQUEST_FRAME)? {
        ToWorker::Assign(setup) => *setup,
        _ => return Err(WorkerError::OutOfTurn("a cell or a fork before the session")),
    };
    // Egress judges addresses by the host's interfaces (its own addresses and subnets are
    // refused): read them while a netlink socket may still be opened, which the walls
    // forbid. Failing that, every address is refused with the reason.
    if let Err(error) = codebeaker::egress::read_host_networks() {
        eprintln!("codebeaker-deno worker {}: cannot read the host's interfaces: {error}", std::process::id());
    }
    let gate = match walls::for_session(&setup, filters) {
        Ok(gate) => gate,
        Err(error) => {
            let _ = ipc::write_frame(&mut channel, &FromWorker::Refused(error.to_string()));
            return Err(error.into());
        }
    };
    engine.assign(&session_setup(&setup));
    // Threads start only now, under the walls.
    let mut watchdog = Watchdog::start().map_err(WorkerError::Watchdog)?;
    ipc::write_frame(&mut channel, &FromWorker::Assigned).map_err(IpcError::from)?;
    // The fork gate's listener is the host's alone: handed over, then closed here.
    fdpass::send(&channel, &[1], Some(gate.as_fd())).map_err(IpcError::from)?;
    drop(gate);
    // SAFETY: getppid has no preconditions.
    let zygote = unsafe { libc::getppid() };
    let renamed = setup.identity.is_some();
    loop {
        // Returns only in a live fork's copy, with the copy's channel.
        let copy = serve_cells(&mut engine, &mut channel, &watchdog)?;
        // The original's watchdog thread is not the copy's (and its lock may look held):
        // left alone, never stopped.
        std::mem::forget(watchdog);
        // The original's channel is closed here, so the host sees it end with the original.
        channel = copy;
        adopt(&mut engine, &mut channel, renamed, zygote)?;
        watchdog = Watchdog::start().map_err(WorkerError::Watchdog)?;
        ipc::write_frame(&mut channel, &FromWorker::Assigned).map_err(IpcError::from)?;
    }
}

/// Serves cells and forks until the host closes the channel (an error, `Closed`), or, in a
/// live fork's copy, returns the copy's channel.
fn serve_cells(engine: &mut Engine, channel: &mut UnixStream, watchdog: &Watchdog) -> Result<UnixStream, WorkerError> {
    let never_closing = AtomicBool::new(false);
    loop {
        let run = match ipc::read_frame(channel, MAX_REQUEST_FRAME)? {
            ToWorker::Run(run) => run,
            ToWorker::Fork => match fork(channel)? {
                Some(copy) => return Ok(copy),
                None => continue,
            },
            ToWorker::Assign(_) | ToWorker::Mapped => return Err(WorkerError::OutOfTurn("a second session")),
        };
        #[cfg(feature = "test-hooks")]
        if let Some(answer) = super::test_hooks::answer(&run.code, channel) {
            ipc::write_frame(channel, &answer).map_err(IpcError::from)?;
            continue;
        }
        let done = run_cell(engine, run, watchdog, &never_closing, channel)?;
        ipc::write_frame(channel, &done).map_err(IpcError::from)?;
    }
}

/// Copies this worker for a live fork: `Some(its channel)` in the copy; `None` in the
/// original, which told the host the copy's pid (or why there is none).
fn fork(channel: &mut UnixStream) -> Result<Option<UnixStream>, WorkerError> {
    let (_, copy_channel) = fdpass::receive(&*channel, &mut [0u8; 1]).map_err(IpcError::from)?;
    let Some(copy_channel) = copy_channel else {
        let refused = FromWorker::Refused("no channel came with the fork".into());
        ipc::write_frame(channel, &refused).map_err(IpcError::from)?;
        return Ok(None);
    };
    let answer = match live_fork::copy() {
        Ok(0) => return Ok(Some(UnixStream::from(copy_channel))),
        Ok(pid) => FromWorker::Forked { pid },
        Err(error) => FromWorker::Refused(format!("the worker could not copy itself: {error}")),
    };
    drop(copy_channel);
    ipc::write_frame(channel, &answer).map_err(IpcError::from)?;
    Ok(None)
}

/// Makes a live fork's copy its own session's: leaves the original's event loops, says
/// ready, takes the session the host gives it and, when it takes a uid of its own
/// (`renamed`), enters a user namespace of its own for the host to map. The caller then
/// says assigned.
fn adopt(engine: &mut Engine, channel: &mut UnixStream, renamed: bool, zygote: libc::pid_t) -> Result<(), WorkerError> {
    live_fork::leave_event_loops().map_err(WorkerError::Copy)?;
    engine.renew_after_fork().map_err(WorkerError::Engine)?;
    ipc::write_frame(channel, &FromWorker::Ready).map_err(IpcError::from)?;
    let setup = match ipc::read_frame(channel, MAX_REQUEST_FRAME)? {
        ToWorker::Assign(setup) => *setup,
        _ => return Err(WorkerError::OutOfTurn("a cell or a fork before the fork's session")),
    };
    if renamed {
        live_fork::own_user_namespace().map_err(WorkerError::Copy)?;
        ipc::write_frame(channel, &FromWorker::Unshared).map_err(IpcError::from)?;
        if !matches!(ipc::read_frame(channel, MAX_REQUEST_FRAME)?, ToWorker::Mapped) {
            return Err(WorkerError::OutOfTurn("something else than mapped"));
        }
    }
    if let Err(error) = walls::for_fork(&setup, zygote) {
        let _ = ipc::write_frame(channel, &FromWorker::Refused(error.to_string()));
        return Err(error.into());
    }
    engine.assign(&session_setup(&setup));
    Ok(())
}

fn session_setup(setup: &WorkerSetup) -> SessionSetup {
    SessionSetup {
        workspace: setup.workspace.clone(),
        permissions: setup.permissions.clone(),
        memory_limit_mb: setup.memory_limit_mb,
        limits: setup.limits.clone(),
    }
}

fn run_cell(
    engine: &mut Engine,
    run: WorkerRun,
    watchdog: &Watchdog,
    closing: &AtomicBool,
    channel: &UnixStream,
) -> Result<FromWorker, WorkerError> {
    let (sink, forwarder) = if run.stream {
        let (sink, chunks) = OutputSink::channel();
        let mut out = channel.try_clone().map_err(IpcError::from)?;
        let forwarder = std::thread::Builder::new()
            .name("cb-deno-output".into())
            .spawn(move || {
                let mut chunks = chunks;
                while let Some(chunk) = chunks.blocking_recv() {
                    let frame = FromWorker::Output { stderr: chunk.stream == OutputStream::Stderr, text: chunk.data };
                    if ipc::write_frame(&mut out, &frame).is_err() {
                        break;
                    }
                }
            })
            .map_err(IpcError::Io)?;
        (Some(sink), Some(forwarder))
    } else {
        (None, None)
    };
    let before = cpu_ms(libc::RUSAGE_SELF);
    let ran = engine.run(
        Run {
            code: run.code,
            timeout: Duration::from_millis(run.timeout_ms),
            output_limit: run.output_limit,
            output: sink,
        },
        watchdog,
        closing,
    );
    if let Some(forwarder) = forwarder {
        // The engine dropped the sink with its collector: the thread ends once it sent all.
        let _ = forwarder.join();
    }
    let cpu_total_ms = cpu_ms(libc::RUSAGE_SELF);
    let mut result = ran.result;
    let output_bytes = (result.stdout.len() + result.stderr.len()) as u64;
    result.usage = Some(Usage {
        cpu_ms: cpu_total_ms.saturating_sub(before),
        max_rss_kb: peak_rss_kb(),
        output_bytes,
        egress_refused: ran.egress_refused,
    });
    Ok(FromWorker::Done { result, memory_exceeded: ran.memory_exceeded, cpu_total_ms })
}
