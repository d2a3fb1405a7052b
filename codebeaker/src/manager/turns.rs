//! [`TurnQueue`]: commands on one session run one at a time, in the order they arrived.
//!
//! A ticket is taken synchronously when a command is submitted (not when its future is
//! first polled), so tasks spawned in arrival order keep that order even if the
//! scheduler polls them out of order. A ticket dropped before its turn (the caller gave
//! up) is skipped rather than blocking everyone behind it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The FIFO of one session.
#[derive(Debug)]
pub(crate) struct TurnQueue {
    next: AtomicU64,
    abandoned: Mutex<BTreeSet<u64>>,
    serving: watch::Sender<u64>,
}

impl TurnQueue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(TurnQueue {
            next: AtomicU64::new(0),
            abandoned: Mutex::new(BTreeSet::new()),
            serving: watch::Sender::new(0),
        })
    }

    /// Takes the next place in line.
    pub(crate) fn ticket(self: &Arc<Self>) -> Ticket {
        Ticket { queue: self.clone(), number: self.next.fetch_add(1, Ordering::SeqCst) }
    }

    fn release(&self, number: u64) {
        let mut abandoned = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
        self.serving.send_modify(|serving| {
            if *serving == number {
                *serving += 1;
                while abandoned.remove(serving) {
                    *serving += 1;
                }
            } else {
                abandoned.insert(number);
            }
        });
    }
}

/// A place in a session's line; dropping it hands the turn on (or gives up the place).
#[derive(Debug)]
pub(crate) struct Ticket {
    queue: Arc<TurnQueue>,
    number: u64,
}

impl Ticket {
    /// Waits until every earlier ticket has finished or given up.
    pub(crate) async fn wait(&self) {
        let mut serving = self.queue.serving.subscribe();
        // The sender lives in `self.queue`, so the channel cannot close while we wait.
        let _ = serving.wait_for(|serving| *serving == self.number).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.release(self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn turns_follow_ticket_order_and_skip_abandoned_ones() {
        let queue = TurnQueue::new();
        let first = queue.ticket();
        let second = queue.ticket();
        let third = queue.ticket();
        let order = Arc::new(Mutex::new(Vec::new()));
        let wait_third = {
            let order = order.clone();
            tokio::spawn(async move {
                third.wait().await;
                order.lock().unwrap().push(3);
            })
        };
        first.wait().await;
        drop(second); // gives up its place before its turn
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(order.lock().unwrap().is_empty(), "third ran before first finished");
        drop(first);
        wait_third.await.unwrap();
        assert_eq!(*order.lock().unwrap(), [3]);
        let fourth = queue.ticket();
        tokio::time::timeout(Duration::from_secs(1), fourth.wait()).await.expect("queue stalled");
    }
}
