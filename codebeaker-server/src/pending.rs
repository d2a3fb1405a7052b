//! Sockets not let in yet: accepted, but they have not passed the [`crate::access::guard`]
//! (origin, token) of an acting endpoint, nor been answered and closed (`/health`).
//!
//! Such sockets cost the server a file descriptor and a task each and prove nothing
//! about who holds them, so they are bounded without ever blocking the accept loop:
//! - each may stay pending for [`crate::Limits::http_head_timeout`] at most, then it is
//!   closed (hyper's own header timeout also cuts off a head that is too slow);
//! - at most [`crate::Limits::max_pending_connections`] in all and
//!   [`crate::Limits::max_pending_per_address`] per source address: a new socket over
//!   either cap closes the *oldest* pending socket of that address (of the server),
//!   rather than being refused. A client that is sending its request now is never the
//!   oldest for long, so idle sockets, however many, cannot keep a real request (a
//!   `/health` probe, a WebSocket upgrade) from being answered at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::shares::client_address;

/// The pending sockets of one server (see the module docs).
#[derive(Debug)]
pub(crate) struct PendingSockets {
    max: usize,
    per_address: usize,
    deadline: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Every pending socket by age (ids grow), with what closes it.
    by_age: BTreeMap<u64, (IpAddr, CancellationToken)>,
    /// The pending sockets of each address, by age.
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

impl State {
    /// Forgets socket `id`; its closing token, if it was still pending.
    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        let (address, close) = self.by_age.remove(&id)?;
        if let Some(ids) = self.by_address.get_mut(&address) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(&address);
            }
        }
        Some(close)
    }
}

impl PendingSockets {
    /// At most `max` pending sockets in all, `per_address` per address, each for
    /// `deadline` at most.
    pub(crate) fn new(max: usize, per_address: usize, deadline: Duration) -> Arc<Self> {
        Arc::new(PendingSockets { max: max.max(1), per_address: per_address.max(1), deadline, state: Mutex::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update finishes before anything that could panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a socket just accepted from `address`, closing the oldest pending
    /// socket of that address (or of the server) when a cap is reached. Returns how many
    /// were closed to make room, beside the new socket's ticket.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> (PendingSocket, usize) {
        let address = client_address(address);
        let mut state = self.lock();
        let mut evicted = Vec::new();
        let oldest_of_address = state
            .by_address
            .get(&address)
            .filter(|ids| ids.len() >= self.per_address)
            .and_then(|ids| ids.first().copied());
        if let Some(id) = oldest_of_address {
            evicted.extend(state.remove(id));
        }
        if state.by_age.len() >= self.max {
            if let Some(id) = state.by_age.keys().next().copied() {
                evicted.extend(state.remove(id));
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let close = CancellationToken::new();
        state.by_age.insert(id, (address, close.clone()));
        state.by_address.entry(address).or_default().insert(id);
        drop(state);
        let closed = evicted.len();
        for token in evicted {
            token.cancel();
        }
        let ticket = Ticket { table: self.clone(), id, close, let_in: AtomicBool::new(false) };
        (PendingSocket(Arc::new(ticket)), closed)
    }

    /// Closes the oldest pending socket, if there is one (the accept loop is short of
    /// file descriptors).
    pub(crate) fn evict_oldest(&self) -> bool {
        let mut state = self.lock();
        let oldest = state.by_age.keys().next().copied();
        let close = oldest.and_then(|id| state.remove(id));
        drop(state);
        close.map(|token| token.cancel()).is_some()
    }

    /// How many sockets are pending now.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().by_age.len()
    }
}

/// One accepted socket's place among the pending ones. Cheap to clone: the accept loop
/// puts a clone in every request of the socket, so the access guard can let it in.
#[derive(Debug, Clone)]
pub(crate) struct PendingSocket(Arc<Ticket>);

#[derive(Debug)]
struct Ticket {
    table: Arc<PendingSockets>,
    id: u64,
    /// Cancelled when the socket is evicted.
    close: CancellationToken,
    let_in: AtomicBool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

impl PendingSocket {
    /// The socket passed an access guard: it is no longer pending, and neither the
    /// deadline nor eviction apply to it from now on.
    pub(crate) fn let_in(&self) {
        if !self.0.let_in.swap(true, Ordering::AcqRel) {
            self.0.table.lock().remove(self.0.id);
        }
    }

    /// Completes when the socket must be closed: evicted to make room, or still pending
    /// at its deadline. Never completes for a socket let in in time.
    pub(crate) async fn dismissed(&self) {
        let ticket = &self.0;
        tokio::select! {
            _ = ticket.close.cancelled() => {
                debug!("closing a socket that was not let in: newer sockets needed its place");
            }
            _ = tokio::time::sleep(ticket.table.deadline) => {
                if ticket.let_in.load(Ordering::Acquire) {
                    // Let in: only an eviction before that could have closed it.
                    std::future::pending::<()>().await;
                }
                debug!(
                    "closing a socket that was not let in within {} s (no request, or an unauthenticated one)",
                    ticket.table.deadline.as_secs_f64()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn evicted(socket: &PendingSocket) -> bool {
        socket.0.close.is_cancelled()
    }

    #[test]
    fn the_oldest_of_a_full_address_makes_room_and_let_in_sockets_leave() {
        let table = PendingSockets::new(10, 2, Duration::from_secs(10));
        let (first, _) = table.admit(A);
        let (second, _) = table.admit(A);
        let (other, _) = table.admit(B);
        let (third, closed) = table.admit(A);
        assert_eq!(closed, 1);
        assert!(evicted(&first) && !evicted(&second) && !evicted(&third) && !evicted(&other));
        second.let_in();
        let (_fourth, closed) = table.admit(A);
        assert_eq!(closed, 0, "a socket let in no longer counts");
        assert_eq!(table.count(), 3);
        drop((first, second, other, third));
        assert_eq!(table.count(), 1, "dropped tickets leave the table");
    }

    #[test]
    fn the_oldest_of_a_full_server_makes_room() {
        let table = PendingSockets::new(2, 2, Duration::from_secs(10));
        let (first, _) = table.admit(A);
        let (second, _) = table.admit(B);
        let (_third, closed) = table.admit(B);
        assert_eq!(closed, 1);
        assert!(evicted(&first) && !evicted(&second));
        assert!(table.evict_oldest());
        assert!(evicted(&second));
    }

    #[tokio::test]
    async fn pending_sockets_are_dismissed_at_their_deadline_unless_let_in() {
        let table = PendingSockets::new(10, 10, Duration::from_millis(200));
        let (pending, _) = table.admit(A);
        let (let_in, _) = table.admit(A);
        let_in.let_in();
        tokio::time::timeout(Duration::from_secs(5), pending.dismissed()).await.expect("dismissed at the deadline");
        assert!(tokio::time::timeout(Duration::from_millis(600), let_in.dismissed()).await.is_err());
    }
}
