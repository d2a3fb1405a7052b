//! [`Worker`]: the host's handle on one assigned worker process. It sends cells, relays
//! streamed output, and enforces the deadline the worker cannot be trusted to keep: at
//! `timeout + grace` the worker is killed, whatever it is doing.
//!
//! Every frame the worker sends is hostile input: size-capped, decoded without panicking,
//! and any violation ends the worker (see [`ipc`]).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use codebeaker::{CodeResult, OutputCollector, OutputSink, OutputStream, Usage};
use tokio::net::UnixStream;

use super::ipc::{self, FromWorker, IpcError, ToWorker, WorkerRun, WorkerSetup, MAX_CONTROL_FRAME};
use super::pause::Pauses;
use super::spawn::{Killer, Spawned, WorkerProcess};

/// How long a new worker may take to build its engine (debug builds are slow).
const READY_WAIT: Duration = Duration::from_secs(60);
/// How often a cell's deadline is looked at again while its session is paused.
const PAUSED_CHECK: Duration = Duration::from_millis(100);

/// Why a worker could not be given a session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The channel failed or the worker sent something else.
    #[error(transparent)]
    Ipc(#[from] IpcError),
    /// The worker could not raise the session's walls.
    #[error("the worker refused the session: {0}")]
    Refused(String),
    /// The worker did not get ready in time.
    #[error("the worker did not get ready within {0:?}")]
    Slow(Duration),
    /// The worker answered out of turn.
    #[error("the worker answered {0} while being set up")]
    OutOfTurn(&'static str),
}

/// How a cell ended, seen from the host.
pub(crate) enum RunEnd {
    /// The worker answered; it may serve the next cell unless `memory_exceeded`.
    Done {
        /// The worker's result.
        result: CodeResult,
        /// The cell hit the heap limit: the worker must be replaced.
        memory_exceeded: bool,
    },
    /// The worker did not stop by the deadline and was killed.
    Killed {
        /// Output streamed before the kill.
        partial: OutputCollector,
        /// What the cell cost until then.
        usage: Usage,
    },
    /// The worker died or broke the protocol (and was killed).
    Lost {
        /// What happened.
        reason: IpcError,
        /// Output streamed before.
        partial: OutputCollector,
        /// What the cell cost until then.
        usage: Usage,
    },
}

/// An assigned worker.
pub(crate) struct Worker {
    process: WorkerProcess,
    channel: UnixStream,
    /// The worker's own CPU total at its last answer, in ms.
    cpu_total_ms: u64,
}

impl Worker {
    /// Waits until `spawned` is ready, then gives it the session `setup`.
    pub async fn start(spawned: Spawned, setup: &WorkerSetup) -> Result<Worker, StartError> {
        let Spawned { process, channel } = spawned;
        channel.set_nonblocking(true).map_err(IpcError::Io)?;
        let mut channel = UnixStream::from_std(channel).map_err(IpcError::Io)?;
        let ready = tokio::time::timeout(READY_WAIT, ipc::receive::<FromWorker>(&mut channel, MAX_CONTROL_FRAME))
            .await
            .map_err(|_| StartError::Slow(READY_WAIT))??;
        if !matches!(ready, FromWorker::Ready) {
            return Err(StartError::OutOfTurn("something else than ready"));
        }
        ipc::send(&mut channel, &ToWorker::Assign(Box::new(setup.clone()))).await?;
        match ipc::receive::<FromWorker>(&mut channel, MAX_CONTROL_FRAME).await? {
            FromWorker::Assigned => Ok(Worker { process, channel, cpu_total_ms: 0 }),
            FromWorker::Refused(reason) => Err(StartError::Refused(reason)),
            _ => Err(StartError::OutOfTurn("something else than assigned")),
        }
    }

    /// What kills this worker from another task.
    pub fn killer(&self) -> Killer {
        self.process.killer()
    }

    /// Whether the worker is still there and has nothing unasked on its channel: a worker
    /// killed from outside shows as a closed channel.
    pub fn is_idle(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.channel.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }

    /// Runs one cell; output chunks go to `sink` as they come. At `kill_at`, moved on by
    /// the time the session spends paused meanwhile (see `pause`), the worker is killed if
    /// it has not answered; a paused worker is never killed for its deadline.
    pub async fn run(&mut self, run: WorkerRun, sink: Option<OutputSink>, kill_at: Instant, pauses: &Pauses) -> RunEnd {
        let limit = run.output_limit;
        // A result holds the output three times (combined, stdout, stderr), each char at
        // most six bytes once escaped as JSON.
        let cap = limit.saturating_mul(18).saturating_add(MAX_CONTROL_FRAME);
        let mut partial = OutputCollector::new(limit, sink);
        let mut streamed = 0u64;
        if let Err(reason) = ipc::send(&mut self.channel, &ToWorker::Run(run)).await {
            return self.lost(reason, partial, streamed);
        }
        let (paused_before, _) = pauses.paused_for();
        loop {
            let frame = {
                // Kept across the deadline's checks: a frame half read is never dropped.
                let receive = ipc::receive::<FromWorker>(&mut self.channel, cap);
                tokio::pin!(receive);
                let mut wake = kill_at;
                loop {
                    tokio::select! {
                        frame = &mut receive => break Some(frame),
                        () = tokio::time::sleep_until(wake.into()) => {}
                    }
                    // The deadline moves on by what was paused since the cell began.
                    let (paused, now_paused) = pauses.paused_for();
                    let deadline = kill_at + paused.saturating_sub(paused_before);
                    let now = Instant::now();
                    if !now_paused && now >= deadline {
                        break None;
                    }
                    wake = if now_paused { now + PAUSED_CHECK } else { deadline };
                }
            };
            match frame {
                None => {
                    let usage = self.usage_now(streamed);
                    self.process.killer().kill();
                    return RunEnd::Killed { partial, usage };
                }
                Some(Err(reason)) => return self.lost(reason, partial, streamed),
                Some(Ok(FromWorker::Output { stderr, text })) => {
                    let stream = if stderr { OutputStream::Stderr } else { OutputStream::Stdout };
                    streamed = streamed.saturating_add(text.len() as u64);
                    partial.push(stream, text.as_bytes());
                }
                Some(Ok(FromWorker::Done { result, memory_exceeded, cpu_total_ms })) => {
                    self.cpu_total_ms = cpu_total_ms;
                    return RunEnd::Done { result, memory_exceeded };
                }
                Some(Ok(_)) => {
                    let reason = IpcError::Garbage(serde::de::Error::custom("a setup frame in the middle of a cell"));
                    return self.lost(reason, partial, streamed);
                }
            }
        }
    }

    fn lost(&mut self, reason: IpcError, partial: OutputCollector, streamed: u64) -> RunEnd {
        let usage = self.usage_now(streamed);
        self.process.killer().kill();
        RunEnd::Lost { reason, partial, usage }
    }

    /// The running cell's cost, read from `/proc` (the worker cannot be asked).
    fn usage_now(&self, output_bytes: u64) -> Usage {
        let pid = self.process.killer().pid();
        let (cpu_total_ms, max_rss_kb) = proc_usage(pid).unwrap_or((self.cpu_total_ms, 0));
        // What the worker counted of egress refusals died with it.
        Usage { cpu_ms: cpu_total_ms.saturating_sub(self.cpu_total_ms), max_rss_kb, output_bytes, egress_refused: 0 }
    }
}

/// CPU time (ms) and peak RSS (KiB) of process `pid`.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    let total_ticks = ticks(11)?.saturating_add(ticks(12)?);
    // SAFETY: sysconf has no preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    Some((total_ticks.saturating_mul(1000) / per_second, hwm))
}
