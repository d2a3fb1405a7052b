//! Workspace path rules shared by every backend, and a safe host-directory workspace.
//!
//! Sandboxed code sees its files under `/workspace`. Every path a command names is a
//! [`WorkspacePath`], checked once where the request enters (deserializing the command,
//! or an SDK constructor such as [`Command::write_file`](crate::Command::write_file)):
//! relative paths resolve under `/workspace` and anything that would leave it lexically
//! is refused there. Backends receive the typed path and never parse a raw one; what
//! they still enforce is where the files are (symlinks, handles beneath the root).

mod archive;
mod host;
mod owner;
mod path;
mod quota;
mod stream;

pub use archive::{archive_error, extract_archive, write_archive};
pub use host::{HostWorkspace, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
pub use owner::FsOwner;
pub use path::{IntoWorkspacePath, WorkspacePath, WORKSPACE_ROOT};
pub use quota::{charge_of, QuotaError, Reservation, WorkspaceQuota, PAGE_BYTES};
pub use stream::{read_chunk, FileDownload, UploadBody, STREAM_CHUNK_BYTES};

/// Largest file `read_file`, `write_file` and `copy_file` move in one command (16 MiB):
/// results travel in one JSON message, so bigger files are read in ranges (`offset`,
/// `length`), written in appends, or moved through the HTTP file routes, which stream.
pub const MAX_TRANSFER_BYTES: u64 = 16 * 1024 * 1024;

/// How many bytes `read_file` returns from a file of `size` bytes at `offset`, given the
/// `length` asked for (`None`: the rest). An `offset` at or past the end reads nothing.
/// Refused: a `length` over [`MAX_TRANSFER_BYTES`], and a whole-rest read bigger than it
/// (the error says how to read such a file). Every backend asks this one function.
pub fn read_span(path: &WorkspacePath, size: u64, offset: u64, length: Option<u64>) -> crate::Result<u64> {
    let rest = size.saturating_sub(offset);
    match length {
        Some(length) if length > MAX_TRANSFER_BYTES => Err(crate::Error::invalid_input(format!(
            "length {length} is too large: read_file returns at most {MAX_TRANSFER_BYTES} bytes at once"
        ))),
        Some(length) => Ok(rest.min(length)),
        None if rest > MAX_TRANSFER_BYTES => Err(crate::Error::limit_reached(format!(
            "{path} is {size} bytes; file commands move at most {MAX_TRANSFER_BYTES} bytes at once (read it in ranges with \"offset\" and \"length\", or download it with GET /v1/sessions/{{sessionId}}/files/{{path}})"
        ))),
        None => Ok(rest),
    }
}
