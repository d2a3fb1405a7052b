//! [`Outbox`]: everything one connection sends (responses, `session.output`
//! notifications, its close frame) goes through it to the connection's writer task, and
//! its bytes are counted until the writer has handed them to the socket.
//!
//! The count is what bounds the memory of a client that stops reading: past half of
//! [`crate::Limits::max_outbound_bytes`] the read loop stops taking requests until the
//! writer drains ([`Outbox::drained`]); a message that would take the count past the
//! whole limit is dropped and the connection is marked overflowed
//! ([`Outbox::overflowed`]), which closes it with a reason naming the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Messages queued for the writer at most; past it, senders wait (the byte count is the
/// real bound; this one keeps the channel itself small).
const CAPACITY: usize = 256;

/// A message for the writer and the bytes it holds in the count.
pub(crate) struct Outgoing {
    pub(crate) message: Message,
    pub(crate) bytes: usize,
}

/// The sending side of a connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    state: Arc<State>,
}

struct State {
    /// Bytes of messages queued or being written.
    queued: AtomicUsize,
    max: usize,
    /// Woken whenever the writer has written a message.
    written: Notify,
    /// Cancelled when a message did not fit under `max`.
    overflow: CancellationToken,
}

/// The receiving side, for the writer task.
pub(crate) struct Inbox {
    rx: mpsc::Receiver<Outgoing>,
    state: Arc<State>,
}

/// A connection's outbox and the writer's end of it; `max` bytes may wait at most.
pub(crate) fn channel(max: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let state = Arc::new(State {
        queued: AtomicUsize::new(0),
        max: max.max(1),
        written: Notify::new(),
        overflow: CancellationToken::new(),
    });
    (Outbox { tx, state: state.clone() }, Inbox { rx, state })
}

impl Outbox {
    /// Queues a text frame; `false` when the connection is gone or overflowed (the text is
    /// then dropped).
    pub(crate) async fn send_text(&self, text: String) -> bool {
        let bytes = text.len();
        let state = &self.state;
        if state.overflow.is_cancelled() {
            return false;
        }
        let total = state.queued.fetch_add(bytes, Ordering::AcqRel).saturating_add(bytes);
        if total > state.max {
            state.queued.fetch_sub(bytes, Ordering::AcqRel);
            state.overflow.cancel();
            return false;
        }
        if self.tx.send(Outgoing { message: Message::text(text), bytes }).await.is_err() {
            state.queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Whether nothing more will be written (the writer is gone, or a message did not
    /// fit): a response need not even be serialized.
    pub(crate) fn is_gone(&self) -> bool {
        self.tx.is_closed() || self.state.overflow.is_cancelled()
    }

    /// Queues a close frame (not counted: it is the last message).
    pub(crate) async fn close(&self, code: u16, reason: String) {
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = self.tx.send(Outgoing { message: Message::Close(Some(frame)), bytes: 0 }).await;
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.state.queued.load(Ordering::Acquire)
    }

    /// The most bytes that may wait.
    pub(crate) fn max(&self) -> usize {
        self.state.max
    }

    /// Completes once at most `level` bytes wait.
    pub(crate) async fn drained(&self, level: usize) {
        loop {
            let written = self.state.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.queued() <= level {
                return;
            }
            written.await;
        }
    }

    /// Completes once a message did not fit (the connection must then close).
    pub(crate) async fn overflowed(&self) {
        self.state.overflow.cancelled().await;
    }
}

impl Inbox {
    /// The next message to write.
    pub(crate) async fn recv(&mut self) -> Option<Outgoing> {
        self.rx.recv().await
    }

    /// Whether no message waits right now (a burst has ended).
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The writer is done with a message of `bytes` bytes.
    pub(crate) fn written(&self, bytes: usize) {
        self.state.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.state.written.notify_waiters();
    }

    /// Whether a message did not fit: nothing but the close frame is worth writing.
    pub(crate) fn is_overflowed(&self) -> bool {
        self.state.overflow.is_cancelled()
    }
}
