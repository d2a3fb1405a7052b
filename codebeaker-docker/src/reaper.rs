//! [`Reaper`]: removes containers the backend is done with (closed sessions, dead or
//! surplus spares) in the background, a few at a time, retrying failures.
//!
//! A closed session's container already runs nothing of its guest when it gets here (its
//! agent killed it all, or the engine froze it); removing it and its workspace volume costs the engine ~40-120 ms, which no
//! client should wait for. What is still left after the retries (the engine down for
//! long) is removed by the start-up sweep of the next run, which finds it by its owner
//! label. [`Reaper::wait`] lets shutdown wait for the queue to empty.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bollard::Docker;
use tokio::sync::{Notify, Semaphore};
use tracing::warn;

use crate::container::{self, short};

/// Removals in flight at once: each is a kill, an unmount and a delete on the engine,
/// which also serves every session's create.
const CONCURRENT_REMOVALS: usize = 2;
/// Attempts per container before it is left to the next start-up sweep.
const ATTEMPTS: u32 = 8;
/// Pause before the first retry; doubled before each further one (0.2 s .. 25.6 s: an
/// engine restart fits in between).
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Removes containers in the background (see the module docs).
pub(crate) struct Reaper {
    docker: Docker,
    slots: Semaphore,
    pending: Mutex<HashSet<String>>,
    emptied: Notify,
}

impl Reaper {
    pub(crate) fn new(docker: Docker) -> Arc<Reaper> {
        Arc::new(Reaper {
            docker,
            slots: Semaphore::new(CONCURRENT_REMOVALS),
            pending: Mutex::default(),
            emptied: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // A set of ids stays consistent through a panic elsewhere.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the removal of container `id` with its workspace volume. Must be called
    /// inside a Tokio runtime.
    pub(crate) fn remove(self: &Arc<Self>, id: String) {
        if !self.lock().insert(id.clone()) {
            return;
        }
        let reaper = self.clone();
        tokio::spawn(async move {
            let mut pause = FIRST_RETRY;
            for attempt in 1..=ATTEMPTS {
                let removed = match reaper.slots.acquire().await {
                    Ok(_slot) => container::remove(&reaper.docker, &id).await,
                    Err(_) => false,
                };
                if removed {
                    break;
                }
                if attempt == ATTEMPTS {
                    warn!(container = %short(&id), "giving up removing a sandbox container; the next start-up sweep removes it");
                    break;
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            let empty = {
                let mut pending = reaper.lock();
                pending.remove(&id);
                pending.is_empty()
            };
            if empty {
                reaper.emptied.notify_waiters();
            }
        });
    }

    /// Whether container `id` is queued or being removed.
    pub(crate) fn is_pending(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    /// Waits until every queued removal finished (or gave up), at most `timeout`; whether
    /// the queue is empty.
    pub(crate) async fn wait(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the look, so an emptying in between is not missed.
            let emptied = self.emptied.notified();
            if self.lock().is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, emptied).await.is_err() {
                return self.lock().is_empty();
            }
        }
    }
}
