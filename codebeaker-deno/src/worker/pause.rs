//! Pausing a process-isolated session (`session.pause`): its worker is stopped with
//! `SIGSTOP` (which the guest can neither catch nor ignore) and keeps all its memory;
//! `SIGCONT` lets it go on where it was. A worker that replaces the session's while it is
//! paused is stopped as soon as it is the session's.
//!
//! The host's deadline of a cell that runs while paused moves by the time spent paused: a
//! paused worker is never killed for being slow. The cell's own timeout (kept by the
//! worker's watchdog, on the wall clock) still counts paused time: a cell paused past its
//! timeout is interrupted as soon as it resumes, its state kept.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::spawn::Killer;

/// How long `pause` waits for the kernel to show the worker stopped.
const STOP_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    /// When the current pause began; `None` while running.
    since: Option<Instant>,
    /// Time spent in pauses that ended.
    total: Duration,
}

/// A session's pauses: whether it is paused, and for how long it has been in all.
#[derive(Default)]
pub(crate) struct Pauses {
    state: Mutex<State>,
}

impl Pauses {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the session is paused.
    pub fn is_paused(&self) -> bool {
        self.lock().since.is_some()
    }

    /// Marks the session paused; `false` when it already was.
    pub fn begin(&self) -> bool {
        let mut state = self.lock();
        if state.since.is_some() {
            return false;
        }
        state.since = Some(Instant::now());
        true
    }

    /// Marks the session running; `false` when it already was.
    pub fn end(&self) -> bool {
        let mut state = self.lock();
        let Some(since) = state.since.take() else { return false };
        state.total += since.elapsed();
        true
    }

    /// Time spent paused in all (the current pause included), and whether paused now.
    pub fn paused_for(&self) -> (Duration, bool) {
        let state = self.lock();
        let current = state.since.map(|since| since.elapsed());
        (state.total + current.unwrap_or_default(), current.is_some())
    }
}

/// Stops the worker `killer` names (a worker already gone is no error).
pub(crate) fn stop(killer: &Killer) {
    if let Err(error) = killer.signal(libc::SIGSTOP) {
        tracing::debug!(pid = killer.pid(), %error, "cannot stop a deno worker (gone?)");
    }
}

/// Lets the worker `killer` names go on.
pub(crate) fn go_on(killer: &Killer) {
    if let Err(error) = killer.signal(libc::SIGCONT) {
        tracing::debug!(pid = killer.pid(), %error, "cannot continue a deno worker (gone?)");
    }
}

/// Waits until the kernel shows worker `pid` stopped (or gone), so that once `pause`
/// returns the worker uses no more CPU. `SIGSTOP` is delivered asynchronously.
pub(crate) async fn until_stopped(pid: u32) {
    let started = Instant::now();
    while started.elapsed() < STOP_WAIT {
        match process_state(pid) {
            Some('T' | 't' | 'Z' | 'X') | None => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    tracing::warn!(pid, "a deno worker did not show stopped within {STOP_WAIT:?} of SIGSTOP");
}

/// The state letter of process `pid` in `/proc/<pid>/stat`, `None` when it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_idempotent_and_add_up() {
        let pauses = Pauses::default();
        assert!(!pauses.is_paused());
        assert!(!pauses.end());
        assert!(pauses.begin());
        assert!(!pauses.begin());
        std::thread::sleep(Duration::from_millis(20));
        let (during, paused) = pauses.paused_for();
        assert!(paused && during >= Duration::from_millis(20), "{during:?}");
        assert!(pauses.end());
        let (after, paused) = pauses.paused_for();
        assert!(!paused && after >= during, "{after:?}");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pauses.paused_for().0, after, "time running is not time paused");
    }
}
