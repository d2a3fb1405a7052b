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
    /// Read a file from `offset`: at most `length` bytes when given, otherwise the rest
    /// of the file, refused when that is larger than `max_bytes` (checked while reading).
    Read {
        /// The file.
        path: String,
        /// The most bytes to return.
        max_bytes: u64,
        /// First byte to read (past the end: nothing).
        #[serde(default, skip_serializing_if = "is_zero")]
        offset: u64,
        /// Most bytes to read (never more than `max_bytes`); `None`: the rest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
    },
    /// Stream a file from `offset`: replies [`FsReply::Opened`] with its size, then its
    /// bytes in [`FileData`](crate::protocol::FrameKind::FileData) frames, then
    /// [`FsReply::Sent`]. Never more than the size it reported.
    Download {
        /// The file.
        path: String,
        /// First byte to send.
        #[serde(default)]
        offset: u64,
    },
    /// Stream into a file (parents created; replaced, or appended to): replies
    /// [`FsReply::Opened`] once it is open, takes the host's
    /// [`FileData`](crate::protocol::FrameKind::FileData) frames up to the one flagged
    /// `FLAG_END`, then replies [`FsReply::Written`]. On failure it replies with an
    /// error and leaves nothing of the upload (a replaced file is removed, an appended
    /// one cut back).
    Upload {
        /// The file.
        path: String,
        /// Append instead of replacing.
        #[serde(default)]
        append: bool,
    },
    /// Stream the whole workspace as a tar archive (directories, regular files, symbolic
    /// links as links; fifos, sockets and devices left out), built beneath the root
    /// without following links: replies [`FsReply::Opened`] (size 0: not known ahead),
    /// the archive in [`FileData`](crate::protocol::FrameKind::FileData) frames, then
    /// [`FsReply::Sent`]; an error (`too_large`) once it would pass `limit` bytes.
    Archive {
        /// The most bytes the archive may have.
        limit: u64,
    },
    /// Extract a tar archive into the workspace, as the command user: replies
    /// [`FsReply::Opened`], takes the host's
    /// [`FileData`](crate::protocol::FrameKind::FileData) frames up to the one flagged
    /// `FLAG_END`, then replies [`FsReply::Written`] with the bytes of file content. An
    /// entry leaving the workspace (absolute, `..`, through a symbolic link), a hard
    /// link, a device or a fifo is refused (`invalid_input`), and on any failure nothing
    /// of the archive remains.
    Unarchive,
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
        /// Size of the whole file (protocol 2; absent, 0, from older agents).
        #[serde(default, skip_serializing_if = "is_zero")]
        size: u64,
    },
    /// A streamed transfer is open (not terminal): for a download the file's size, for
    /// an upload the length the file starts from (0, or its length when appending).
    Opened {
        /// Bytes.
        size: u64,
    },
    /// `download` done: every byte was sent.
    Sent {
        /// Bytes sent.
        bytes: u64,
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

fn is_zero(value: &u64) -> bool {
    *value == 0
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
