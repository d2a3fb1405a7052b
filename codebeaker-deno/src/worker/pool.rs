//! [`WorkerPool`]: worker processes started ahead of need. A spare has built its engine
//! (or is building it) and waits for a session; taking one costs two frames on its channel.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::spawn::{procs, Spawned};

struct Shared {
    spares: Mutex<VecDeque<Spawned>>,
    /// Spawns asked for and not yet back.
    pending: AtomicUsize,
    drained: AtomicBool,
}

impl Shared {
    fn spares(&self) -> MutexGuard<'_, VecDeque<Spawned>> {
        self.spares.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Spare worker processes, refilled in the background as they are taken.
pub(crate) struct WorkerPool {
    shared: Arc<Shared>,
    target: usize,
    program: PathBuf,
}

impl WorkerPool {
    /// A pool keeping `target` spares of `program`, started right away.
    pub fn new(target: usize, program: PathBuf) -> Self {
        let shared = Arc::new(Shared {
            spares: Mutex::default(),
            pending: AtomicUsize::new(0),
            drained: AtomicBool::new(false),
        });
        let pool = WorkerPool { shared, target, program };
        pool.refill();
        pool
    }

    /// A started worker: the oldest live spare, or a new one when none is left. Spares that
    /// died waiting (killed from outside, or with their zygote) are dropped on the way. The
    /// caller refills once its worker has its session, so the zygote's fork of a new spare
    /// does not compete with that for the CPU.
    pub async fn take(&self) -> std::io::Result<Spawned> {
        let spare = loop {
            match self.shared.spares().pop_front() {
                Some(spare) if spare.process.killer().exited() => continue,
                spare => break spare,
            }
        };
        let taken = match spare {
            Some(spare) => Ok(spare),
            None => procs().spawn_now(&self.program).await,
        };
        taken
    }

    /// Asks for spares up to the target; they arrive in the background.
    pub fn refill(&self) {
        if self.shared.drained.load(Ordering::Acquire) {
            return;
        }
        let have = self.shared.spares().len() + self.shared.pending.load(Ordering::Acquire);
        for _ in have..self.target {
            self.shared.pending.fetch_add(1, Ordering::AcqRel);
            let shared = self.shared.clone();
            procs().spawn(
                &self.program,
                Box::new(move |spawned| {
                    shared.pending.fetch_sub(1, Ordering::AcqRel);
                    match spawned {
                        // A spare arriving after `drain` is dropped, which kills it.
                        Ok(spare) if !shared.drained.load(Ordering::Acquire) => shared.spares().push_back(spare),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "cannot start a spare deno worker"),
                    }
                }),
            );
        }
    }

    /// Spare workers waiting.
    pub fn ready(&self) -> usize {
        self.shared.spares().len()
    }

    /// Kills every spare and stops refilling.
    pub fn drain(&self) {
        self.shared.drained.store(true, Ordering::Release);
        self.shared.spares().clear();
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.drain();
    }
}
