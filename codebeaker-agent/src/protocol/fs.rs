//! File operations the agent performs beneath the workspace.
//!
//! Paths are relative to the workspace root (`"."` or `""` is the root itself); the agent
//! resolves them without leaving it (no `..` out, no symlink out, no magic links), so a
//! host that already checked a path with `WorkspacePath` and an agent that resolves it
//! again agree, and a link swapped in between cannot redirect the operation. Errors come
//! back as [`ErrorReply`](crate::protocol::ErrorReply) with the message the SDK shows.

use serde::{Deserialize, Serialize};

use crate::protocol::message::Base64Bytes;

/// A file operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FsRequest {
    /// Create or replace (or append to) a file; missing parent directories are created.
    Write {
        /// The file.
        path: String,
        /// Its new content (or what to append).
        data: Base64Bytes,
        /// Append instead of replacing.
        #[serde(default)]
        append: bool,
    },
    /// Read a whole file, refusing one larger than `max_bytes` (checked while reading).
    Read {
        /// The file.
        path: String,
        /// The most bytes to return.
        max_bytes: u64,
    },
    /// Create a directory and its parents; an existing directory is fine.
    Mkdir {
        /// The directory.
        path: String,
    },
    /// Copy a file (destination parents created, destination replaced).
    Copy {
        /// The file to copy.
        from: String,
        /// Where to.
        to: String,
        /// The largest file copied.
        max_bytes: u64,
    },
    /// Delete a file, a symlink (not its target) or a directory with its content.
    Delete {
        /// What to delete; never the root.
        path: String,
    },
    /// List a directory without reading any file's content.
    List {
        /// The directory.
        path: String,
    },
    /// Describe one path (symlinks not followed).
    Stat {
        /// The path.
        path: String,
    },
}

/// A file operation's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FsReply {
    /// `write` done.
    Written {
        /// Bytes written.
        bytes: u64,
    },
    /// `read` done.
    Read {
        /// The content.
        data: Base64Bytes,
    },
    /// `mkdir` done.
    Made,
    /// `copy` done.
    Copied {
        /// Bytes copied.
        bytes: u64,
    },
    /// `delete` done.
    Deleted,
    /// `list` done: entries sorted by name.
    Listed {
        /// The entries.
        entries: Vec<FsEntry>,
    },
    /// `stat` done.
    Stat(FsStat),
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// Its name (lossy UTF-8).
    pub name: String,
    /// What it is (a symlink is reported as one, not followed).
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A socket, fifo or device.
    Other,
}

impl From<EntryKind> for codebeaker::result::EntryType {
    fn from(kind: EntryKind) -> Self {
        use codebeaker::result::EntryType;
        match kind {
            EntryKind::Directory => EntryType::Directory,
            EntryKind::Symlink => EntryType::Symlink,
            EntryKind::File | EntryKind::Other => EntryType::File,
        }
    }
}

/// The result of `stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStat {
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Last modification, in seconds since the epoch.
    pub mtime: i64,
}
