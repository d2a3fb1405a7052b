//! Byte bounds on what the host holds of the agent's frames. The agent is untrusted: a
//! frame may be as large as `max_frame`, and nothing guarantees that whoever reads a
//! call's (or a tunnel's) frames keeps up. So every frame the reader routes takes its
//! size from three pools before it is queued, and gives it back when its reader takes
//! it: the call's or tunnel's own, the session's (one client) and the server's (every
//! client of the process). A frame larger than a pool takes the whole pool.
//!
//! A call whose pool is full makes the reader wait (backpressure on the agent, as a
//! frame count did before, but now in bytes); a tunnel whose pool is full is cut (its
//! destination is not taking data), see [`super::tunnel`].

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::client::Inbound;

/// The server-wide pool by default: what every client of this process may hold in total.
pub const DEFAULT_SERVER_BUFFER: u32 = 256 * 1024 * 1024;

/// A number of bytes that queues draw from: one call's, one session's, or the server's.
/// Clones share the bytes.
#[derive(Debug, Clone)]
pub struct BufferPool {
    bytes: Arc<Semaphore>,
    capacity: u32,
}

impl BufferPool {
    /// A pool of `capacity` bytes (at least 1).
    pub fn new(capacity: u32) -> BufferPool {
        let capacity = capacity.max(1);
        BufferPool { bytes: Arc::new(Semaphore::new(capacity as usize)), capacity }
    }

    /// The pool every client of this process shares unless its [`super::ClientConfig`]
    /// names another ([`DEFAULT_SERVER_BUFFER`] bytes).
    pub fn process() -> BufferPool {
        static PROCESS: OnceLock<BufferPool> = OnceLock::new();
        PROCESS.get_or_init(|| BufferPool::new(DEFAULT_SERVER_BUFFER)).clone()
    }

    /// The pool's size in bytes.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Bytes held now by queued frames.
    pub fn held(&self) -> u64 {
        u64::from(self.capacity) - self.bytes.available_permits() as u64
    }

    fn share(&self, bytes: usize) -> u32 {
        u32::try_from(bytes).unwrap_or(u32::MAX).min(self.capacity)
    }

    /// Takes `bytes` (at most the whole pool), waiting for them.
    pub(crate) async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        match self.bytes.clone().acquire_many_owned(self.share(bytes)).await {
            Ok(permit) => permit,
            Err(_) => unreachable!("buffer pools are never closed"),
        }
    }

    /// Takes `bytes` (at most the whole pool) if they are free now.
    pub(crate) fn try_take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.bytes.clone().try_acquire_many_owned(self.share(bytes)).ok()
    }
}

/// One queued item and the bytes it holds in its pools until its reader takes it.
pub(crate) struct Queued {
    item: Inbound,
    _held: Vec<OwnedSemaphorePermit>,
}

impl Queued {
    pub(crate) fn new(item: Inbound, held: Vec<OwnedSemaphorePermit>) -> Queued {
        Queued { item, _held: held }
    }
}

/// The receiving end of a call's or tunnel's queue: taking an item gives its bytes back.
#[derive(Debug)]
pub struct InboundQueue {
    rx: mpsc::UnboundedReceiver<Queued>,
    cut: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.item.fmt(f)
    }
}

impl InboundQueue {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Queued>, cut: watch::Receiver<Option<String>>) -> InboundQueue {
        InboundQueue { rx, cut }
    }

    /// The next item; [`Inbound::Cut`] as soon as the host cut the route (before what
    /// was still queued), `None` once the channel or the route is gone.
    pub async fn recv(&mut self) -> Option<Inbound> {
        let InboundQueue { rx, cut } = self;
        tokio::select! {
            biased;
            reason = cut_reason(cut) => Some(Inbound::Cut(reason)),
            queued = rx.recv() => queued.map(|queued| queued.item),
        }
    }

    /// The next item if one is already queued (a cut first), without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Inbound> {
        if let Some(reason) = self.cut.borrow().clone() {
            return Some(Inbound::Cut(reason));
        }
        self.rx.try_recv().ok().map(|queued| queued.item)
    }

    /// Resolves when the host cut the route, with why (pending forever otherwise): to
    /// stop waiting on a destination once the tunnel is cut.
    pub async fn cut(&mut self) -> String {
        cut_reason(&mut self.cut).await
    }
}

async fn cut_reason(cut: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = cut.borrow_and_update().clone() {
            return reason;
        }
        if cut.changed().await.is_err() {
            // The route is gone without a cut: the item channel says so.
            std::future::pending::<()>().await;
        }
    }
}
