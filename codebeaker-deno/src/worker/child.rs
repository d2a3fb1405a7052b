//! The worker process's side: forked from the zygote with an engine ready, it says ready,
//! takes a session (raising its walls first), then runs cells until the host closes the
//! channel or kills the process.
//!
//! The worker reads the channel only between cells: a cell is stopped by the worker's own
//! watchdog at its deadline, or by the host's SIGKILL when the engine does not stop. Output
//! chunks of a streaming cell go out from a forwarding thread while the cell runs; the
//! result frame follows once that thread is done, so frames never interleave.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use codebeaker::{OutputSink, OutputStream, Usage};

use super::ipc::{self, FromWorker, IpcError, ToWorker, WorkerRun, WorkerSetup, MAX_REQUEST_FRAME};
use super::syscalls::SyscallFilters;
use super::walls;
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
        ToWorker::Run(_) => return Err(WorkerError::OutOfTurn("a cell before the session")),
    };
    // Egress judges addresses by the host's interfaces (its own addresses and subnets are
    // refused): read them while a netlink socket may still be opened, which the walls
    // forbid. Failing that, every address is refused with the reason.
    if let Err(error) = codebeaker::egress::read_host_networks() {
        eprintln!("codebeaker-deno worker {}: cannot read the host's interfaces: {error}", std::process::id());
    }
    if let Err(error) = walls::for_session(&setup, filters) {
        let _ = ipc::write_frame(&mut channel, &FromWorker::Refused(error.to_string()));
        return Err(error.into());
    }
    engine.assign(&session_setup(&setup));
    // Threads start only now, under the walls.
    let watchdog = Watchdog::start().map_err(WorkerError::Watchdog)?;
    ipc::write_frame(&mut channel, &FromWorker::Assigned).map_err(IpcError::from)?;
    let never_closing = AtomicBool::new(false);
    loop {
        let run = match ipc::read_frame(&mut channel, MAX_REQUEST_FRAME)? {
            ToWorker::Run(run) => run,
            ToWorker::Assign(_) => return Err(WorkerError::OutOfTurn("a second session")),
        };
        #[cfg(feature = "test-hooks")]
        if let Some(answer) = super::test_hooks::answer(&run.code, &mut channel) {
            ipc::write_frame(&mut channel, &answer).map_err(IpcError::from)?;
            continue;
        }
        let done = run_cell(&mut engine, run, &watchdog, &never_closing, &channel)?;
        ipc::write_frame(&mut channel, &done).map_err(IpcError::from)?;
    }
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
