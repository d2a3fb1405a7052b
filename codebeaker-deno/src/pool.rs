//! [`WarmPool`]: runtime threads started ahead of need, so `session.create` only has to
//! hand one out and tell it its session (a fresh engine takes tens of milliseconds).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use codebeaker::Result;

use crate::runtime_thread::{RuntimeThread, StartingRuntime};
use crate::watchdog::Watchdog;

/// Spare runtime threads, refilled as they are taken.
pub(crate) struct WarmPool {
    spares: Mutex<VecDeque<StartingRuntime>>,
    target: usize,
    watchdog: Arc<Watchdog>,
}

impl WarmPool {
    /// A pool keeping `target` spares, started right away.
    pub fn new(target: usize, watchdog: Arc<Watchdog>) -> Self {
        let pool = WarmPool { spares: Mutex::default(), target, watchdog };
        pool.refill();
        pool
    }

    fn spares(&self) -> MutexGuard<'_, VecDeque<StartingRuntime>> {
        self.spares.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A ready runtime: the oldest spare (most likely done starting), or a new one when
    /// the pool is empty. Call [`WarmPool::refill`] once the runtime is handed out: a
    /// replacement building its engine meanwhile would compete for the CPU.
    pub async fn take(&self) -> Result<RuntimeThread> {
        let spare = self.spares().pop_front();
        let starting = match spare {
            Some(spare) => spare,
            None => StartingRuntime::spawn(self.watchdog.clone())?,
        };
        starting.ready().await
    }

    /// Starts spares up to the target. A failure to start one is left for `take` to report.
    pub fn refill(&self) {
        let mut spares = self.spares();
        while spares.len() < self.target {
            match StartingRuntime::spawn(self.watchdog.clone()) {
                Ok(spare) => spares.push_back(spare),
                Err(e) => {
                    tracing::warn!("cannot start a spare deno runtime: {e}");
                    break;
                }
            }
        }
    }

    /// Spares waiting (some may still be building their engine).
    pub fn ready(&self) -> usize {
        self.spares().len()
    }

    /// Drops every spare (their threads end when their job channel closes).
    pub fn drain(&self) {
        self.spares().clear();
    }
}
