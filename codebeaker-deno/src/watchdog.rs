//! [`Watchdog`]: one thread that stops JS past its deadline.
//!
//! A runtime's own thread cannot notice a deadline while JS runs on it (`while(true){}`
//! never yields), so each command arms the watchdog with its deadline and the isolate's
//! thread-safe handle; at the deadline the watchdog flags the command as timed out and
//! terminates execution, which the engine honours at its next interrupt check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use deno_core::v8::IsolateHandle;

struct Armed {
    isolate: IsolateHandle,
    fired: Arc<AtomicBool>,
}

#[derive(Default)]
struct Deadlines {
    armed: BTreeMap<(Instant, u64), Armed>,
    next_id: u64,
    stopped: bool,
}

struct Shared {
    deadlines: Mutex<Deadlines>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Deadlines> {
        self.deadlines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Terminates isolates whose command ran past its deadline. Stops its thread when dropped.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
}

/// An armed deadline; disarms when dropped.
pub(crate) struct Guard {
    shared: Arc<Shared>,
    key: (Instant, u64),
    fired: Arc<AtomicBool>,
}

impl Guard {
    /// Disarms the deadline and tells whether it went off. The watchdog terminates under
    /// the same lock, so after this returns no termination of this command is still on
    /// its way: the caller may cancel one and reuse the isolate.
    pub fn disarm(self) -> bool {
        self.shared.lock().armed.remove(&self.key);
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().armed.remove(&self.key);
    }
}

impl Watchdog {
    /// Starts the watchdog thread.
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared { deadlines: Mutex::default(), changed: Condvar::new() });
        let worker = shared.clone();
        std::thread::Builder::new().name("cb-deno-watchdog".into()).spawn(move || run(&worker))?;
        Ok(Watchdog { shared })
    }

    /// Terminates `isolate` at `deadline` unless the returned guard is dropped first.
    pub fn arm(&self, deadline: Instant, isolate: IsolateHandle) -> Guard {
        let fired = Arc::new(AtomicBool::new(false));
        let mut deadlines = self.shared.lock();
        let key = (deadline, deadlines.next_id);
        deadlines.next_id += 1;
        deadlines.armed.insert(key, Armed { isolate, fired: fired.clone() });
        drop(deadlines);
        self.shared.changed.notify_one();
        Guard { shared: self.shared.clone(), key, fired }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_one();
    }
}

fn run(shared: &Shared) {
    let mut deadlines = shared.lock();
    loop {
        if deadlines.stopped {
            return;
        }
        let now = Instant::now();
        while let Some(entry) = deadlines.armed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let armed = entry.remove();
            armed.fired.store(true, Ordering::Release);
            armed.isolate.terminate_execution();
        }
        deadlines = match deadlines.armed.keys().next().map(|(deadline, _)| *deadline) {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                shared
                    .changed
                    .wait_timeout(deadlines, wait)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|p| p.into_inner().0)
            }
            None => shared.changed.wait(deadlines).unwrap_or_else(|p| p.into_inner()),
        };
    }
}
