//! Graceful shutdown: what ends the server, and the order in which it lets go.
//!
//! On SIGINT or SIGTERM (or [`crate::ServerHandle::shutdown`]) the server:
//! 1. stops accepting connections;
//! 2. tells every connection to stop reading requests;
//! 3. closes every session through the manager (a running command is cancelled and its
//!    request answered with `-32004`), which removes every sandbox, then lets each
//!    backend remove what it still holds (warm-pool spares);
//! 4. gives requests still running (one-shot runs) [`crate::Limits::shutdown_grace`] to
//!    answer, sends each client a close frame (1001, "server shutting down"), and returns.
//!
//! The binary then exits 0. Sandboxes left by a crash rather than a shutdown are
//! removed when the next run starts (each backend sweeps its own leftovers at start-up).

use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// Waits for SIGINT or SIGTERM and returns the signal's name.
pub async fn termination_signal() -> io::Result<&'static str> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    })
}
