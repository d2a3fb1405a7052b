//! [`Worker`]: the host's handle on one assigned worker process. It sends cells, relays
//! streamed output, and enforces the deadline the worker cannot be trusted to keep: at
//! `timeout + grace` the worker is killed, whatever it is doing.
//!
//! Every frame the worker sends is hostile input: size-capped, decoded without panicking,
//! and any violation ends the worker (see [`ipc`]).

use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codebeaker::{CodeResult, OutputCollector, OutputSink, OutputStream, Usage};
use tokio::io::Interest;
use tokio::net::UnixStream;

use super::fdpass;
use super::identity::Identity;
use super::ipc::{self, FromWorker, IpcError, ToWorker, WorkerRun, WorkerSetup, MAX_CONTROL_FRAME};
use super::notify::{Expected, Listener, FORK_FLAGS, USERNS_FLAGS};
use super::pause::Pauses;
use super::spawn::{Killer, Spawned, WorkerProcess};

/// How long a new worker may take to build its engine (debug builds are slow).
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long each step of a live fork may take (a question at the gate, the copy's pid).
const FORK_WAIT: Duration = Duration::from_secs(10);
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
    /// A live fork's copy could not be checked or given its uid.
    #[error("cannot give the fork's copy its identity: {0}")]
    Map(#[source] std::io::Error),
    /// The fork gate failed or its question did not come.
    #[error("the fork gate failed: {0}")]
    Gate(#[source] std::io::Error),
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
    /// The host's end of the fork gate the worker attached with its walls (shared with
    /// its live forks, which inherit the gate).
    gate: Arc<Listener>,
    /// A live fork's copy in a user namespace of its own: its copies could not be given
    /// uids of their own (a namespace maps only the uids its parent's does).
    nested: bool,
}

impl Worker {
    /// Waits until `spawned` is ready, then gives it the session `setup`.
    pub async fn start(spawned: Spawned, setup: &WorkerSetup) -> Result<Worker, StartError> {
        Self::set_up(spawned, setup, None).await
    }

    /// [`Worker::start`] for a new worker (`inherited` none: it hands over its own fork
    /// gate) or a live fork's copy (`inherited`: its original's gate; its user namespace
    /// is mapped to the setup's uid before it is assigned, and checked after).
    async fn set_up(
        spawned: Spawned,
        setup: &WorkerSetup,
        inherited: Option<Arc<Listener>>,
    ) -> Result<Worker, StartError> {
        let Spawned { process, channel } = spawned;
        channel.set_nonblocking(true).map_err(IpcError::Io)?;
        let mut channel = UnixStream::from_std(channel).map_err(IpcError::Io)?;
        let ready = tokio::time::timeout(READY_WAIT, ipc::receive::<FromWorker>(&mut channel, MAX_CONTROL_FRAME))
            .await
            .map_err(|_| StartError::Slow(READY_WAIT))??;
        if !matches!(ready, FromWorker::Ready) {
            return Err(StartError::OutOfTurn("something else than ready"));
        }
        let pid = process.killer().pid();
        let renamed = match (&inherited, setup.identity) {
            (Some(gate), Some(identity)) => {
                Some((identity, gate.expect(Expected { pid, call: libc::SYS_unshare, arg0: USERNS_FLAGS })))
            }
            _ => None,
        };
        ipc::send(&mut channel, &ToWorker::Assign(Box::new(setup.clone()))).await?;
        if let Some((identity, asked)) = renamed {
            asked.asked(FORK_WAIT).await.map_err(StartError::Gate)?;
            match ipc::receive::<FromWorker>(&mut channel, MAX_CONTROL_FRAME).await? {
                FromWorker::Unshared => {}
                _ => return Err(StartError::OutOfTurn("something else than unshared")),
            }
            map_user_namespace(pid, identity).map_err(StartError::Map)?;
            ipc::send(&mut channel, &ToWorker::Mapped).await?;
        }
        match ipc::receive::<FromWorker>(&mut channel, MAX_CONTROL_FRAME).await? {
            FromWorker::Assigned => {}
            FromWorker::Refused(reason) => return Err(StartError::Refused(reason)),
            _ => return Err(StartError::OutOfTurn("something else than assigned")),
        }
        let nested = inherited.is_some() && setup.identity.is_some();
        let gate = match inherited {
            Some(gate) => {
                if let Some(identity) = setup.identity {
                    check_ids(pid, identity).map_err(StartError::Map)?;
                }
                gate
            }
            None => {
                let fd = receive_fd(&channel).await?;
                Arc::new(Listener::new(fd).map_err(IpcError::Io)?)
            }
        };
        Ok(Worker { process, channel, cpu_total_ms: 0, gate, nested })
    }

    /// A live copy of this (idle) worker, memory and walls, assigned the session `setup`
    /// (its workspace, its uid). On failure, `Err((error, replace))`: `replace` when this
    /// worker is in no state to trust (it never answered the fork).
    pub async fn fork(&mut self, setup: &WorkerSetup) -> Result<Worker, (StartError, bool)> {
        let gate = self.gate.clone();
        let _turn = gate.turn().await;
        let (host, copy_end) =
            std::os::unix::net::UnixStream::pair().map_err(|e| (StartError::from(IpcError::Io(e)), false))?;
        let copy_pid = self.ask_fork(&gate, copy_end).await.map_err(|error| {
            let replace = !matches!(error, StartError::Refused(_));
            (error, replace)
        })?;
        let original = self.process.killer().pid();
        let made = async {
            let process = WorkerProcess::adopt(copy_pid).map_err(IpcError::Io)?;
            check_copy(copy_pid, original).map_err(StartError::Map)?;
            Self::set_up(Spawned { process, channel: host }, setup, Some(gate.clone())).await
        };
        made.await.map_err(|error| (error, false))
    }

    /// Asks this worker to copy itself, sending the copy's channel, lets its `clone`
    /// through the gate, and returns the copy's pid.
    async fn ask_fork(&mut self, gate: &Listener, copy_end: std::os::unix::net::UnixStream) -> Result<u32, StartError> {
        let asked = gate.expect(Expected { pid: self.process.killer().pid(), call: libc::SYS_clone, arg0: FORK_FLAGS });
        ipc::send(&mut self.channel, &ToWorker::Fork).await?;
        send_fd(&self.channel, copy_end.as_fd()).await?;
        drop(copy_end);
        let answer = {
            let receive = ipc::receive::<FromWorker>(&mut self.channel, MAX_CONTROL_FRAME);
            tokio::pin!(receive);
            tokio::select! {
                answer = &mut receive => answer?,
                allowed = asked.asked(FORK_WAIT) => {
                    allowed.map_err(StartError::Gate)?;
                    tokio::time::timeout(FORK_WAIT, receive).await.map_err(|_| StartError::Slow(FORK_WAIT))??
                }
            }
        };
        match answer {
            FromWorker::Forked { pid } => Ok(pid),
            FromWorker::Refused(reason) => Err(StartError::Refused(reason)),
            _ => Err(StartError::OutOfTurn("something else than forked")),
        }
    }

    /// Whether a live copy of this worker can be made with a uid of its own: not when it
    /// is itself a copy in a user namespace of its own.
    pub fn can_fork_live(&self) -> bool {
        !self.nested
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
    let status = status(pid).ok()?;
    let hwm = field(&status, "VmHWM:").first().copied().unwrap_or(0);
    Some((total_ticks.saturating_mul(1000) / per_second, hwm))
}

/// Sends one byte with `fd` attached on a worker's channel.
async fn send_fd(channel: &UnixStream, fd: BorrowedFd<'_>) -> Result<(), IpcError> {
    channel.async_io(Interest::WRITABLE, || fdpass::send(channel, &[1], Some(fd))).await.map_err(IpcError::Io)
}

/// Receives the one byte with a descriptor a worker sends after its first answer.
async fn receive_fd(channel: &UnixStream) -> Result<OwnedFd, IpcError> {
    let received = channel.async_io(Interest::READABLE, || fdpass::receive(channel, &mut [0u8; 1]));
    match tokio::time::timeout(READY_WAIT, received).await {
        Err(_) => Err(IpcError::Io(std::io::Error::new(ErrorKind::TimedOut, "the worker's fork gate did not come"))),
        Ok(Ok((0, _))) => Err(IpcError::Closed),
        Ok(Ok((_, Some(fd)))) => Ok(fd),
        Ok(Ok((_, None))) => Err(IpcError::Io(std::io::Error::new(
            ErrorKind::InvalidData,
            "the worker sent no descriptor where its fork gate was due",
        ))),
        Ok(Err(error)) => Err(IpcError::Io(error)),
    }
}

/// The text of `/proc/<pid>/status`.
fn status(pid: u32) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
}

/// The numbers of a line of a `/proc/<pid>/status` text (`Uid:` real, effective, saved
/// and file system; `VmHWM:` the KiB), empty when the line is missing.
fn field(status: &str, name: &str) -> Vec<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(name)).unwrap_or_default();
    line.split_whitespace().filter_map(|value| value.parse().ok()).collect()
}

/// Checks that process `copy` is the copy of worker `original`: the same parent (the
/// zygote) and the same ids (a copy has not changed them yet). A pid reused by another
/// process fails here, before anything is done to it.
fn check_copy(copy: u32, original: u32) -> std::io::Result<()> {
    let (copy_status, original_status) = (status(copy)?, status(original)?);
    let same = ["PPid:", "Uid:"].iter().all(|name| {
        let ids = field(&copy_status, name);
        !ids.is_empty() && ids == field(&original_status, name)
    });
    if same {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("process {copy} is not a copy of worker {original}")))
    }
}

/// Maps ids 0 of the copy's user namespace (process `pid`) to the session's uid (and its
/// group id, the same number): the copy then takes them (see `privileges::become_mapped`).
fn map_user_namespace(pid: u32, identity: Identity) -> std::io::Result<()> {
    let map = format!("0 {} 1\n", identity.uid);
    std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &map)
}

/// Checks, from outside, that the copy `pid` now runs as the session's uid and group id.
fn check_ids(pid: u32, identity: Identity) -> std::io::Result<()> {
    let status = status(pid)?;
    let expected = vec![u64::from(identity.uid); 4];
    if field(&status, "Uid:") == expected && field(&status, "Gid:") == expected {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("the fork's copy {pid} does not run as uid {}", identity.uid)))
    }
}
