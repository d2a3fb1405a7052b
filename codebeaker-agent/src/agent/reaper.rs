//! Reaping in one place: every child the agent starts, and every orphan it adopts (as a
//! container's PID 1, or as a child subreaper elsewhere), is waited for by one task woken
//! by `SIGCHLD`, with no thread per process: under a full pids limit the agent cannot
//! count on starting threads, and a thread blocked in `wait4` per live process once left
//! new commands queued behind them, answering past their deadline.
//!
//! [`Reaper::spawn`] starts a process and registers it under the same lock the reaping
//! task holds while it waits, so no exit is missed between the two. Exits of processes
//! nobody registered (orphans, zombies of killed trees) are collected and dropped.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use crate::protocol::Usage;

/// How a process ended and what it cost (its rusage and that of the children it reaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// CPU time and peak memory (no output counted here).
    pub usage: Usage,
}

/// Children collected per turn of the reaping task before it lets the agent's other tasks
/// run (see [`Reaper::start`]).
const REAP_BATCH: usize = 64;

/// The agent's reaper (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    waiting: Mutex<HashMap<u32, oneshot::Sender<Exit>>>,
    /// Set by [`Reaper::close`]: no process starts any more.
    closed: AtomicBool,
}

impl Reaper {
    /// Starts the reaping task on the current Tokio runtime (which must have signals
    /// enabled).
    pub(crate) fn start() -> io::Result<Arc<Reaper>> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::new(Reaper::default());
        let task = reaper.clone();
        tokio::spawn(async move {
            loop {
                // Children that ended before the handler was installed are reaped too.
                if task.reap_ready() {
                    // More may be waiting: a fork bomb's orphans can end as fast as they
                    // are collected, and on the agent's one thread a loop until none is
                    // left would hold every command's answer meanwhile.
                    tokio::task::yield_now().await;
                    continue;
                }
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `command` and registers its pid; the receiver gets its [`Exit`]. Refused
    /// once the reaper is [closed](Reaper::close).
    pub(crate) fn spawn(&self, command: &mut Command) -> io::Result<(Child, oneshot::Receiver<Exit>)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::SeqCst) {
            return Err(io::Error::other("the sandbox is closed"));
        }
        let child = command.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiting.insert(child.id(), tx);
        Ok((child, rx))
    }

    /// Starts no process from now on: a spawn racing this call either finished (its
    /// process is then visible in `/proc` to whoever kills after this) or is refused.
    pub(crate) fn close(&self) {
        let _waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`Reaper::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether `pid` is a process the agent started and still waits for (a running
    /// command's main process, or an interpreter).
    pub(crate) fn is_waited_for(&self, pid: u32) -> bool {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&pid)
    }

    /// Collects children that have ended, without blocking, at most [`REAP_BATCH`] of
    /// them; whether that bound cut it short (more may be waiting).
    fn reap_ready(&self) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..REAP_BATCH {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value of this plain C struct.
            let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid out-pointers; -1 waits for any child.
            let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut rusage) };
            if pid <= 0 {
                // 0: children remain, none has ended; -1: ECHILD (none left) or EINTR,
                // after which the next SIGCHLD brings us back.
                return false;
            }
            let Some(tx) = waiting.remove(&(pid as u32)) else { continue };
            let _ = tx.send(exit_of(status, &rusage));
        }
        true
    }
}

fn exit_of(status: libc::c_int, rusage: &libc::rusage) -> Exit {
    let ms = |t: libc::timeval| (t.tv_sec as u64) * 1000 + (t.tv_usec as u64) / 1000;
    let usage = Usage {
        cpu_ms: ms(rusage.ru_utime) + ms(rusage.ru_stime),
        max_rss_kb: u64::try_from(rusage.ru_maxrss).unwrap_or(0),
        output_bytes: 0,
    };
    if libc::WIFEXITED(status) {
        Exit { code: Some(libc::WEXITSTATUS(status)), signal: None, usage }
    } else if libc::WIFSIGNALED(status) {
        Exit { code: None, signal: Some(libc::WTERMSIG(status)), usage }
    } else {
        Exit { code: None, signal: None, usage }
    }
}
