//! Workspace path rules shared by every backend, and a safe host-directory workspace.
//!
//! Sandboxed code sees its files under `/workspace`. Every path a command names goes
//! through [`WorkspacePath::parse`], which resolves relative paths under `/workspace`
//! and refuses anything that would leave it; backends never see a raw path.

mod host;
mod path;
mod quota;

pub use host::{HostWorkspace, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
pub use path::{WorkspacePath, WORKSPACE_ROOT};
pub use quota::{charge_of, QuotaError, Reservation, WorkspaceQuota, PAGE_BYTES};

/// Largest file `read_file`, `write_file` and `copy_file` move in one command (16 MiB):
/// results travel in one JSON message, so bigger files belong in several commands.
pub const MAX_TRANSFER_BYTES: u64 = 16 * 1024 * 1024;
