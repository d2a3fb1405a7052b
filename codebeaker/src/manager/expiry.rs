//! The background task that closes sessions past their idle timeout or max lifetime.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Inner;

/// Starts the sweep loop. It ends when the manager is dropped or shut down.
pub(super) fn spawn(inner: Weak<Inner>, interval: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Some(inner) = inner.upgrade() else { return };
            sweep(&inner).await;
        }
    });
}

/// Closes every expired session; a slow sandbox removal does not delay the others.
async fn sweep(inner: &Arc<Inner>) {
    let now = Instant::now();
    let expired: Vec<_> = {
        let mut registry = inner.registry();
        let due: Vec<_> = registry
            .all()
            .filter_map(|session| session.expiry(now).map(|reason| (session.id.clone(), reason)))
            .collect();
        due.into_iter().filter_map(|(id, reason)| registry.remove(&id).map(|s| (s, reason))).collect()
    };
    futures::future::join_all(expired.iter().map(|(session, reason)| inner.retire(session, *reason))).await;
}
