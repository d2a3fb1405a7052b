//! [`EgressStream`]: a vetted connection, counted against its session's caps on
//! concurrent connections and on bytes moved.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What one session's connections share: how many are open and how many bytes moved.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) max_connections: usize,
    pub(crate) max_bytes: u64,
    open: AtomicUsize,
    used: AtomicU64,
}

impl Budget {
    pub(crate) fn new(max_connections: usize, max_bytes: u64) -> Self {
        Budget { max_connections, max_bytes, open: AtomicUsize::new(0), used: AtomicU64::new(0) }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Bytes moved so far, both directions.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Takes a connection place, if one is free.
    pub(crate) fn take_slot(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| (open < self.max_connections).then_some(open + 1))
            .ok()
            .map(|_| Slot { budget: self.clone() })
    }

    /// Reserves up to `want` bytes; 0 once the cap is reached.
    fn reserve(&self, want: u64) -> u64 {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            let take = want.min(self.max_bytes.saturating_sub(used));
            if take == 0 {
                return 0;
            }
            match self.used.compare_exchange(used, used + take, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return take,
                Err(now) => used = now,
            }
        }
    }

    /// Gives back bytes reserved but not moved.
    fn refund(&self, bytes: u64) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::SeqCst);
        }
    }

    fn cap_reached(&self) -> io::Error {
        io::Error::new(io::ErrorKind::QuotaExceeded, format!("egress byte cap of {} bytes reached", self.max_bytes))
    }
}

/// A held connection place, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    budget: Arc<Budget>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TCP connection to a destination the session's egress policy allowed. Every byte
/// read or written counts against the session's `net.max-bytes`; once the cap is
/// reached, reads and writes fail with "egress byte cap of N bytes reached". Dropping
/// it closes the connection and frees its place under `net.max-connections`.
#[derive(Debug)]
pub struct EgressStream {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    /// Bytes counted by [`EgressMeter::charge`] and not yet written.
    prepaid: Arc<AtomicU64>,
}

/// Counts bytes bound for an [`EgressStream`]'s destination when they are queued, before
/// the stream writes them: a relay that buffers what a program sends charges it here, so
/// buffered bytes count against `net.max-bytes` as soon as they are held (the stream's
/// writes then use what was counted instead of counting again).
#[derive(Debug, Clone)]
pub struct EgressMeter {
    budget: Arc<Budget>,
    prepaid: Arc<AtomicU64>,
}

impl EgressMeter {
    /// Counts `bytes` now; `Err` ("egress byte cap of N bytes reached") when the cap
    /// leaves less than that.
    pub fn charge(&self, bytes: u64) -> io::Result<()> {
        let taken = self.budget.reserve(bytes);
        if taken < bytes {
            self.budget.refund(taken);
            return Err(self.budget.cap_reached());
        }
        self.prepaid.fetch_add(bytes, Ordering::SeqCst);
        Ok(())
    }
}

impl EgressStream {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, slot: Slot) -> Self {
        EgressStream { stream, peer, slot, prepaid: Arc::new(AtomicU64::new(0)) }
    }

    /// The vetted address this stream is connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// A meter to count bytes toward this stream's destination while they are queued.
    pub fn meter(&self) -> EgressMeter {
        EgressMeter { budget: self.slot.budget.clone(), prepaid: self.prepaid.clone() }
    }

    /// Takes up to `want` bytes of credit: prepaid first, then from the budget. Returns
    /// (prepaid taken, reserved from the budget).
    fn credit(&self, want: u64) -> (u64, u64) {
        let prepaid = self
            .prepaid
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| Some(held - held.min(want)))
            .map_or(0, |held| held.min(want));
        (prepaid, self.budget().reserve(want - prepaid))
    }

    fn budget(&self) -> &Budget {
        &self.slot.budget
    }
}

impl AsyncRead for EgressStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let credit = this.budget().reserve(buf.remaining() as u64);
        if credit == 0 {
            return Poll::Ready(Err(this.budget().cap_reached()));
        }
        // Read at most what the budget allows into the unfilled part of `buf`.
        let unfilled = buf.initialize_unfilled_to(credit as usize);
        let mut limited = ReadBuf::new(unfilled);
        let polled = Pin::new(&mut this.stream).poll_read(cx, &mut limited);
        let read = match polled {
            Poll::Ready(Ok(())) => limited.filled().len(),
            _ => 0,
        };
        this.budget().refund(credit - read as u64);
        buf.advance(read);
        polled
    }
}

impl AsyncWrite for EgressStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (prepaid, reserved) = this.credit(buf.len() as u64);
        let credit = prepaid + reserved;
        if credit == 0 {
            return Poll::Ready(Err(this.budget().cap_reached()));
        }
        let polled = Pin::new(&mut this.stream).poll_write(cx, &buf[..credit as usize]);
        let written = match &polled {
            Poll::Ready(Ok(written)) => *written,
            _ => 0,
        };
        // Not written: prepaid bytes stay prepaid (they are still queued), the rest is
        // given back.
        let written_prepaid = (written as u64).min(prepaid);
        this.prepaid.fetch_add(prepaid - written_prepaid, Ordering::SeqCst);
        this.budget().refund(reserved - (written as u64 - written_prepaid));
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
