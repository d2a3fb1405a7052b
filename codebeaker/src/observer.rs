//! [`SessionObserver`]: what the session manager tells whoever watches it (metrics,
//! audit), at the one place each event happens. Every method has an empty default, so
//! an observer implements only what it records. Called inline: keep them cheap and
//! never block.

use std::time::Duration;

use crate::manager::SessionInfo;
use crate::result::CommandOutcome;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Its client closed it.
    Client,
    /// It was idle longer than its idle timeout.
    Idle,
    /// It reached its maximum lifetime.
    Lifetime,
    /// Its sandbox failed (died, was killed, stopped answering).
    Failed,
    /// The manager shut down.
    Shutdown,
}

impl CloseReason {
    /// The lowercase label (`client`, `idle`, `lifetime`, `failed`, `shutdown`).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Idle => "idle",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Failed => "failed",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Receives the manager's events. Register one in
/// [`ManagerConfig::observer`](crate::ManagerConfig::observer).
pub trait SessionObserver: Send + Sync + 'static {
    /// A session was created.
    fn session_created(&self, _session: &SessionInfo) {}

    /// Creating a session failed: refused by the policy or a cap, or the sandbox could
    /// not be made (`backend` is the backend's name, `none` when no backend runs the
    /// language).
    fn session_create_failed(&self, _backend: &str, _error: &crate::Error) {}

    /// A session ended.
    fn session_closed(&self, _session: &SessionInfo, _reason: CloseReason) {}

    /// A command finished on a session (`kind` is the command type, e.g. `execute_code`).
    fn command_finished(&self, _session: &SessionInfo, _kind: &str, _outcome: &CommandOutcome, _elapsed: Duration) {}
}
