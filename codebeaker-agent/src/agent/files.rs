//! The file operations, performed by the agent beneath the workspace directory.
//!
//! Every path is resolved from a handle on the workspace root with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`), so `..`, absolute symlinks and links
//! swapped in mid-operation cannot lead outside; sizes are checked from the open file
//! and again while reading, so a sparse 1 PiB file is refused at once and a file growing
//! during the read cannot exceed the cap; FIFOs and devices are refused rather than
//! waited on. Operations run with the command user's file-system identity, so they see
//! what its programs see and create files it owns. Errors and messages are those of the
//! SDK's `HostWorkspace`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use std::sync::Arc;

use codebeaker::WorkspacePath;
use tokio::sync::mpsc;

use crate::agent::sys::{self, FsIdentity};
use crate::agent::{reply_to, Control, Outbox, Runtime};
use crate::protocol::{
    AgentMessage, Base64Bytes, EntryKind, ErrorKind, ErrorReply, Frame, FrameKind, FsEntry, FsReply, FsRequest, FsStat,
    FILE_DATA_CHUNK,
};

/// Deepest directory tree `delete` removes (recursion is bounded on a hostile tree).
const MAX_DELETE_DEPTH: usize = 512;

/// The workspace directory, held open.
#[derive(Debug)]
pub struct Workspace {
    root: OwnedFd,
    user: Option<(u32, u32)>,
}

/// A request path: the host sends the normalised relative form of a `WorkspacePath`,
/// checked again here with the same rule (the host is a peer: its bytes are checked, not
/// trusted), then resolved beneath the root handle by the kernel (`openat2`,
/// `RESOLVE_BENEATH`), which is the wall against symlinks out.
struct Target {
    path: WorkspacePath,
    relative: OsString,
    shown: String,
}

impl Target {
    fn parse(path: &str) -> Result<Target, ErrorReply> {
        // The protocol's root is `"."` or `""` (a root `WorkspacePath`'s relative form).
        let path = if path.is_empty() { "." } else { path };
        let path = WorkspacePath::parse(path).map_err(|e| {
            let kind = match e.kind() {
                codebeaker::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::InvalidInput,
            };
            ErrorReply::at(kind, path, format!("{path:?} is not a path in the workspace"))
        })?;
        Ok(Target::from(path))
    }

    fn is_root(&self) -> bool {
        self.path.is_root()
    }

    /// The parent directory and the final name (`None` for the root).
    fn split(&self) -> Option<(Target, OsString)> {
        let name = OsString::from(self.path.file_name()?);
        Some((Target::from(self.path.parent()?), name))
    }
}

impl From<WorkspacePath> for Target {
    fn from(path: WorkspacePath) -> Target {
        let relative = OsString::from(if path.is_root() { "." } else { path.relative() });
        Target { shown: path.to_string(), relative, path }
    }
}

/// Maps an OS error at `shown` to the reply the SDK expects.
pub(crate) fn fail(shown: &str, err: &io::Error) -> ErrorReply {
    let (kind, message) = match err.raw_os_error() {
        Some(libc::EXDEV | libc::ELOOP | libc::EACCES | libc::EPERM) => {
            (ErrorKind::PermissionDenied, format!("{shown} resolves outside /workspace or is not accessible"))
        }
        Some(libc::ENOENT) => (ErrorKind::NotFound, format!("File not found: {shown}")),
        Some(libc::EEXIST) => (ErrorKind::AlreadyExists, format!("Already exists: {shown}")),
        Some(libc::EISDIR) => (ErrorKind::IsADirectory, format!("{shown} is a directory")),
        Some(libc::ENOTDIR) => (ErrorKind::NotADirectory, format!("{shown} is not a directory")),
        Some(libc::ENOTEMPTY) => (ErrorKind::DirectoryNotEmpty, format!("{shown} is a directory that is not empty")),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => (ErrorKind::NoSpace, format!("no space left for {shown}")),
        _ => (ErrorKind::Internal, format!("{shown}: {err}")),
    };
    ErrorReply::at(kind, shown, message)
}

fn too_large(shown: &str, size: u64, max: u64) -> ErrorReply {
    ErrorReply::at(
        ErrorKind::TooLarge,
        shown,
        format!("{shown} is {size} bytes; file commands move at most {max} bytes at once"),
    )
}

fn is_dir(stat: &libc::stat64) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn entry_kind(stat: &libc::stat64) -> EntryKind {
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => EntryKind::File,
        libc::S_IFDIR => EntryKind::Directory,
        libc::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

impl Workspace {
    /// Opens the workspace directory; file operations run as `user` (uid, gid) when set.
    pub fn open(root: &std::path::Path, user: Option<(u32, u32)>) -> io::Result<Workspace> {
        let dir = File::open(root)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Workspace { root: dir.into(), user })
    }

    /// The root handle (processes resolve their working directory from it).
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Resolves a working directory beneath the workspace to an open handle.
    pub(crate) fn open_dir(&self, path: &str) -> Result<OwnedFd, ErrorReply> {
        let target = Target::parse(path)?;
        let _identity = FsIdentity::assume(self.user);
        self.resolve(&target, libc::O_PATH | libc::O_DIRECTORY, 0)
    }

    /// Performs one file operation (blocking: run it off the async threads).
    pub fn handle(&self, request: FsRequest) -> Result<FsReply, ErrorReply> {
        let _identity = FsIdentity::assume(self.user);
        match request {
            FsRequest::Write { path, data, append } => self.write(&Target::parse(&path)?, &data.0, append),
            FsRequest::Read { path, max_bytes, offset, length } => {
                self.read(&Target::parse(&path)?, max_bytes, offset, length)
            }
            FsRequest::Download { .. }
            | FsRequest::Upload { .. }
            | FsRequest::Archive { .. }
            | FsRequest::Unarchive => Err(ErrorReply::new(
                ErrorKind::Unsupported,
                "streamed transfers are served by their own task, not as one file operation".to_owned(),
            )),
            FsRequest::Mkdir { path } => self.mkdir(&Target::parse(&path)?),
            FsRequest::Copy { from, to, max_bytes } => {
                self.copy(&Target::parse(&from)?, &Target::parse(&to)?, max_bytes)
            }
            FsRequest::Delete { path } => self.delete(&Target::parse(&path)?),
            FsRequest::List { path } => self.list(&Target::parse(&path)?),
            FsRequest::Stat { path } => self.stat(&Target::parse(&path)?),
        }
    }

    fn resolve(&self, target: &Target, flags: libc::c_int, mode: u32) -> Result<OwnedFd, ErrorReply> {
        // openat2 refuses any flag beside O_PATH but O_DIRECTORY/O_NOFOLLOW/O_CLOEXEC.
        let flags = if flags & libc::O_PATH != 0 { flags } else { flags | libc::O_NOCTTY };
        sys::open_beneath(self.root(), &target.relative, flags, mode).map_err(|e| fail(&target.shown, &e))
    }

    /// Opens a regular file for reading, refusing directories, FIFOs, devices and files
    /// over `max` bytes.
    fn open_regular(&self, target: &Target, max: u64) -> Result<File, ErrorReply> {
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let fd = self.resolve(target, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
        let stat = sys::fstat(fd.as_fd()).map_err(|e| fail(&target.shown, &e))?;
        if is_dir(&stat) {
            return Err(ErrorReply::at(
                ErrorKind::IsADirectory,
                &target.shown,
                format!("{} is a directory", target.shown),
            ));
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            let message = format!("{} is not a regular file", target.shown);
            return Err(ErrorReply::at(ErrorKind::InvalidInput, &target.shown, message));
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > max {
            return Err(too_large(&target.shown, size, max));
        }
        Ok(File::from(fd))
    }

    /// Reads at most `max` bytes, failing when the file has more (it may have grown).
    fn read_capped(file: File, shown: &str, max: u64) -> Result<Vec<u8>, ErrorReply> {
        let mut bytes = Vec::new();
        file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| fail(shown, &e))?;
        if bytes.len() as u64 > max {
            return Err(too_large(shown, bytes.len() as u64, max));
        }
        Ok(bytes)
    }

    fn write(&self, target: &Target, data: &[u8], append: bool) -> Result<FsReply, ErrorReply> {
        self.create_parents(target)?;
        let mode = if append { libc::O_APPEND } else { libc::O_TRUNC };
        let fd = self.resolve(target, libc::O_WRONLY | libc::O_CREAT | libc::O_NONBLOCK | mode, 0o644)?;
        let stat = sys::fstat(fd.as_fd()).map_err(|e| fail(&target.shown, &e))?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            let message = format!("{} is not a regular file", target.shown);
            return Err(ErrorReply::at(ErrorKind::InvalidInput, &target.shown, message));
        }
        File::from(fd).write_all(data).map_err(|e| fail(&target.shown, &e))?;
        Ok(FsReply::Written { bytes: data.len() as u64 })
    }

    fn read(&self, target: &Target, max: u64, offset: u64, length: Option<u64>) -> Result<FsReply, ErrorReply> {
        let (file, size) = self.open_at(target, offset)?;
        let bytes = match length {
            // A range: never more than asked (nor than the cap), whatever the file's size.
            Some(length) => {
                let mut bytes = Vec::new();
                file.take(length.min(max)).read_to_end(&mut bytes).map_err(|e| fail(&target.shown, &e))?;
                bytes
            }
            None if size.saturating_sub(offset) > max => return Err(too_large(&target.shown, size, max)),
            None => Self::read_capped(file, &target.shown, max)?,
        };
        Ok(FsReply::Read { data: Base64Bytes(bytes), size })
    }

    /// Opens a regular file positioned at `offset` (clamped to its end); the file and its
    /// size.
    fn open_at(&self, target: &Target, offset: u64) -> Result<(File, u64), ErrorReply> {
        use std::io::{Seek as _, SeekFrom};
        let mut file = self.open_regular(target, u64::MAX)?;
        let size = file.metadata().map_err(|e| fail(&target.shown, &e))?.len();
        file.seek(SeekFrom::Start(offset.min(size))).map_err(|e| fail(&target.shown, &e))?;
        Ok((file, size))
    }

    /// Opens `path` for a download from `offset`: the file (at most the bytes to send
    /// left in it) and its size.
    pub(crate) fn open_download(&self, path: &str, offset: u64) -> Result<(io::Take<File>, u64), ErrorReply> {
        let _identity = FsIdentity::assume(self.user);
        let target = Target::parse(path)?;
        let (file, size) = self.open_at(&target, offset)?;
        Ok((file.take(size.saturating_sub(offset)), size))
    }

    /// Opens `path` for an upload (parents created; emptied unless `append`): the
    /// upload, which undoes itself unless finished.
    pub(crate) fn open_upload(&self, path: &str, append: bool) -> Result<Upload<'_>, ErrorReply> {
        let _identity = FsIdentity::assume(self.user);
        let target = Target::parse(path)?;
        if target.is_root() {
            let message = format!("{} is a directory", target.shown);
            return Err(ErrorReply::at(ErrorKind::IsADirectory, &target.shown, message));
        }
        self.create_parents(&target)?;
        let mode = if append { libc::O_APPEND } else { 0 };
        let fd = self.resolve(&target, libc::O_WRONLY | libc::O_CREAT | libc::O_NONBLOCK | mode, 0o644)?;
        let stat = sys::fstat(fd.as_fd()).map_err(|e| fail(&target.shown, &e))?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            let message = format!("{} is not a regular file", target.shown);
            return Err(ErrorReply::at(ErrorKind::InvalidInput, &target.shown, message));
        }
        let file = File::from(fd);
        let start = if append { u64::try_from(stat.st_size).unwrap_or(0) } else { 0 };
        if !append {
            file.set_len(0).map_err(|e| fail(&target.shown, &e))?;
        }
        Ok(Upload { workspace: self, target, file, append, start, written: 0, done: false })
    }

    fn mkdir(&self, target: &Target) -> Result<FsReply, ErrorReply> {
        self.create_parents(target)?;
        self.make_dir(target)?;
        Ok(FsReply::Made)
    }

    /// Creates one directory whose parent exists; an existing directory is fine.
    fn make_dir(&self, target: &Target) -> Result<(), ErrorReply> {
        let Some((parent, name)) = target.split() else { return Ok(()) };
        let parent_fd = self.resolve(&parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        match sys::mkdir_at(parent_fd.as_fd(), &name, 0o755) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Existing: fine if it resolves (beneath) to a directory.
                match self.resolve(target, libc::O_PATH | libc::O_DIRECTORY, 0) {
                    Ok(_) => Ok(()),
                    Err(reply) if reply.kind == ErrorKind::NotADirectory => Err(fail(&target.shown, &e)),
                    Err(reply) => Err(reply),
                }
            }
            Err(e) => Err(fail(&target.shown, &e)),
        }
    }

    /// Creates the missing directories above `target`.
    fn create_parents(&self, target: &Target) -> Result<(), ErrorReply> {
        let Some((parent, _)) = target.split() else { return Ok(()) };
        if parent.is_root() {
            return Ok(());
        }
        match self.resolve(&parent, libc::O_PATH | libc::O_DIRECTORY, 0) {
            Ok(_) => Ok(()),
            Err(reply) if reply.kind == ErrorKind::NotFound => {
                self.create_parents(&parent)?;
                self.make_dir(&parent)
            }
            Err(reply) => Err(reply),
        }
    }

    fn copy(&self, from: &Target, to: &Target, max: u64) -> Result<FsReply, ErrorReply> {
        let source = self.open_regular(from, max).map_err(|reply| match reply.kind {
            ErrorKind::IsADirectory => ErrorReply::at(
                ErrorKind::IsADirectory,
                &from.shown,
                format!("{} is a directory; copy_file copies files", from.shown),
            ),
            _ => reply,
        })?;
        let bytes = Self::read_capped(source, &from.shown, max)?;
        self.write(to, &bytes, false)?;
        Ok(FsReply::Copied { bytes: bytes.len() as u64 })
    }

    fn delete(&self, target: &Target) -> Result<FsReply, ErrorReply> {
        let Some((parent, name)) = target.split() else {
            let message = format!("{} is the workspace root and cannot be deleted", target.shown);
            return Err(ErrorReply::at(ErrorKind::InvalidInput, &target.shown, message));
        };
        let parent_fd = self.resolve(&parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let stat = sys::lstat_at(parent_fd.as_fd(), &name).map_err(|e| fail(&target.shown, &e))?;
        if is_dir(&stat) {
            remove_tree(parent_fd.as_fd(), &name, 0).map_err(|e| fail(&target.shown, &e))?;
        }
        sys::unlink_at(parent_fd.as_fd(), &name, is_dir(&stat)).map_err(|e| fail(&target.shown, &e))?;
        Ok(FsReply::Deleted)
    }

    fn list(&self, target: &Target) -> Result<FsReply, ErrorReply> {
        let dir = self.resolve(target, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let names = sys::read_dir_names(dir.as_fd()).map_err(|e| fail(&target.shown, &e))?;
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            // Metadata only: an entry removed meanwhile is skipped, never opened.
            let Ok(stat) = sys::lstat_at(dir.as_fd(), &name) else { continue };
            let kind = entry_kind(&stat);
            let size = if kind == EntryKind::Directory { 0 } else { u64::try_from(stat.st_size).unwrap_or(0) };
            entries.push(FsEntry { name: name.to_string_lossy().into_owned(), kind, size });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(FsReply::Listed { entries })
    }

    fn stat(&self, target: &Target) -> Result<FsReply, ErrorReply> {
        let stat = match target.split() {
            None => sys::fstat(self.root()),
            Some((parent, name)) => {
                let parent_fd = self.resolve(&parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
                sys::lstat_at(parent_fd.as_fd(), &name)
            }
        }
        .map_err(|e| fail(&target.shown, &e))?;
        Ok(FsReply::Stat(FsStat {
            kind: entry_kind(&stat),
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mode: stat.st_mode & 0o7777,
            mtime: stat.st_mtime,
        }))
    }
}

/// Serves a download: `opened` with the size, the bytes in file data frames, then
/// `sent` (or an error). A cancel from the host stops it between chunks.
pub(crate) async fn serve_download(
    runtime: Arc<Runtime>,
    id: u64,
    path: String,
    offset: u64,
    out: Outbox,
    mut control: mpsc::Receiver<Control>,
) {
    let task_out = out.clone();
    let handled = tokio::task::spawn_blocking(move || -> Result<u64, ErrorReply> {
        let (mut file, size) = runtime.workspace.open_download(&path, offset)?;
        send_blocking(&task_out, id, AgentMessage::Fs(FsReply::Opened { size }))?;
        let mut sent = 0u64;
        loop {
            if let Ok(Control::Cancel) = control.try_recv() {
                return Err(ErrorReply::new(ErrorKind::Internal, "the download was cancelled".to_owned()));
            }
            let mut chunk = vec![0u8; FILE_DATA_CHUNK];
            let read = file.read(&mut chunk).map_err(|e| fail(&path, &e))?;
            if read == 0 {
                return Ok(sent);
            }
            chunk.truncate(read);
            task_out.blocking_send(Frame::data(FrameKind::FileData, id, chunk, false)).map_err(|_| gone())?;
            sent += read as u64;
        }
    })
    .await;
    let reply = match handled {
        Ok(Ok(bytes)) => AgentMessage::Fs(FsReply::Sent { bytes }),
        Ok(Err(error)) => AgentMessage::Error(error),
        Err(e) => AgentMessage::Error(ErrorReply::new(ErrorKind::Internal, format!("download failed: {e}"))),
    };
    reply_to(&out, id, reply).await;
}

/// Serves an upload: `opened`, then writes the host's file data frames up to the last,
/// then `written` (or an error, with the upload undone).
pub(crate) async fn serve_upload(
    runtime: Arc<Runtime>,
    id: u64,
    path: String,
    append: bool,
    out: Outbox,
    mut control: mpsc::Receiver<Control>,
) {
    let task_out = out.clone();
    let handled = tokio::task::spawn_blocking(move || -> Result<u64, ErrorReply> {
        let mut upload = runtime.workspace.open_upload(&path, append)?;
        send_blocking(&task_out, id, AgentMessage::Fs(FsReply::Opened { size: upload.start() }))?;
        loop {
            match control.blocking_recv() {
                Some(Control::Input(bytes, end)) => {
                    upload.write(&bytes)?;
                    if end {
                        return Ok(upload.finish());
                    }
                }
                Some(Control::Cancel) | None => {
                    return Err(ErrorReply::new(ErrorKind::Internal, "the upload was cancelled".to_owned()));
                }
                Some(Control::Signal(_) | Control::Resize(..)) => {}
            }
        }
    })
    .await;
    let reply = match handled {
        Ok(Ok(bytes)) => AgentMessage::Fs(FsReply::Written { bytes }),
        Ok(Err(error)) => AgentMessage::Error(error),
        Err(e) => AgentMessage::Error(ErrorReply::new(ErrorKind::Internal, format!("upload failed: {e}"))),
    };
    reply_to(&out, id, reply).await;
}

/// The workspace root as a `cap_std` directory (the handle the SDK's archive code walks:
/// it resolves beneath the root, never following a link out).
fn archive_root(runtime: &Runtime) -> Result<cap_std::fs::Dir, ErrorReply> {
    let root = runtime.workspace.root().try_clone_to_owned().map_err(|e| fail(".", &e))?;
    Ok(cap_std::fs::Dir::from_std_file(File::from(root)))
}

/// The agent's reply for an SDK error of the archive code.
fn archive_reply(error: codebeaker::Error) -> ErrorReply {
    let kind = match error.kind() {
        codebeaker::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
        codebeaker::ErrorKind::LimitReached => ErrorKind::TooLarge,
        codebeaker::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        codebeaker::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Internal,
    };
    ErrorReply::new(kind, error.message().to_owned())
}

/// Sends what the archive writer writes as file data frames of [`FILE_DATA_CHUNK`]
/// bytes; fails once the host cancelled or went away.
struct FrameWriter<'a> {
    out: &'a Outbox,
    id: u64,
    control: &'a mut mpsc::Receiver<Control>,
    piece: Vec<u8>,
    sent: u64,
}

impl FrameWriter<'_> {
    fn send(&mut self) -> io::Result<()> {
        if let Ok(Control::Cancel) = self.control.try_recv() {
            return Err(io::Error::other("the archive was cancelled"));
        }
        let piece = std::mem::take(&mut self.piece);
        self.sent += piece.len() as u64;
        self.out
            .blocking_send(Frame::data(FrameKind::FileData, self.id, piece, false))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl io::Write for FrameWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(FILE_DATA_CHUNK - self.piece.len());
        self.piece.extend_from_slice(&buf[..n]);
        if self.piece.len() == FILE_DATA_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.piece.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// Serves an archive of the workspace: `opened`, the tar in file data frames, then
/// `sent` (or an error). Built as the command user, so it holds what its programs see.
pub(crate) async fn serve_archive(
    runtime: Arc<Runtime>,
    id: u64,
    limit: u64,
    out: Outbox,
    mut control: mpsc::Receiver<Control>,
) {
    let task_out = out.clone();
    let handled = tokio::task::spawn_blocking(move || -> Result<u64, ErrorReply> {
        let _identity = FsIdentity::assume(runtime.workspace.user);
        let root = archive_root(&runtime)?;
        send_blocking(&task_out, id, AgentMessage::Fs(FsReply::Opened { size: 0 }))?;
        let mut writer = FrameWriter { out: &task_out, id, control: &mut control, piece: Vec::new(), sent: 0 };
        codebeaker::workspace::write_archive(&root, &mut writer, limit).map_err(archive_reply)?;
        io::Write::flush(&mut writer).map_err(|e| fail(".", &e))?;
        Ok(writer.sent)
    })
    .await;
    let reply = match handled {
        Ok(Ok(bytes)) => AgentMessage::Fs(FsReply::Sent { bytes }),
        Ok(Err(error)) => AgentMessage::Error(error),
        Err(e) => AgentMessage::Error(ErrorReply::new(ErrorKind::Internal, format!("archive failed: {e}"))),
    };
    reply_to(&out, id, reply).await;
}

/// The host's file data frames of an unarchive, read as one stream up to the last.
struct FrameReader<'a> {
    control: &'a mut mpsc::Receiver<Control>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
}

impl io::Read for FrameReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if self.ended {
                return Ok(0);
            }
            match self.control.blocking_recv() {
                Some(Control::Input(bytes, end)) => {
                    (self.piece, self.at, self.ended) = (bytes, 0, end);
                }
                Some(Control::Cancel) | None => return Err(io::Error::other("the unarchive was cancelled")),
                Some(Control::Signal(_) | Control::Resize(..)) => {}
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Serves an unarchive: `opened`, then extracts the host's file data frames up to the
/// last as the command user (files it owns, beneath the root), then `written` (or an
/// error, with everything of the archive undone).
pub(crate) async fn serve_unarchive(runtime: Arc<Runtime>, id: u64, out: Outbox, mut control: mpsc::Receiver<Control>) {
    let task_out = out.clone();
    let handled = tokio::task::spawn_blocking(move || -> Result<u64, ErrorReply> {
        let _identity = FsIdentity::assume(runtime.workspace.user);
        let root = archive_root(&runtime)?;
        send_blocking(&task_out, id, AgentMessage::Fs(FsReply::Opened { size: 0 }))?;
        let reader = FrameReader { control: &mut control, piece: Vec::new(), at: 0, ended: false };
        codebeaker::workspace::extract_archive(&root, reader, None).map_err(archive_reply)
    })
    .await;
    let reply = match handled {
        Ok(Ok(bytes)) => AgentMessage::Fs(FsReply::Written { bytes }),
        Ok(Err(error)) => AgentMessage::Error(error),
        Err(e) => AgentMessage::Error(ErrorReply::new(ErrorKind::Internal, format!("unarchive failed: {e}"))),
    };
    reply_to(&out, id, reply).await;
}

fn send_blocking(out: &Outbox, id: u64, message: AgentMessage) -> Result<(), ErrorReply> {
    let frame = Frame::message(id, &message).map_err(|e| ErrorReply::new(ErrorKind::Internal, e.to_string()))?;
    out.blocking_send(frame).map_err(|_| gone())
}

fn gone() -> ErrorReply {
    ErrorReply::new(ErrorKind::Internal, "the agent is shutting down".to_owned())
}

/// A file being uploaded. Dropped unfinished, it undoes what it wrote: a replaced file
/// is removed, an appended one cut back to its old length.
pub(crate) struct Upload<'a> {
    workspace: &'a Workspace,
    target: Target,
    file: File,
    append: bool,
    start: u64,
    written: u64,
    done: bool,
}

impl Upload<'_> {
    /// The length the file starts from.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Writes the next piece.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), ErrorReply> {
        self.file.write_all(bytes).map_err(|e| fail(&self.target.shown, &e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Keeps what was written; the bytes written.
    pub(crate) fn finish(mut self) -> u64 {
        self.done = true;
        self.written
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let undone = if self.append {
            self.file.set_len(self.start)
        } else {
            let _identity = FsIdentity::assume(self.workspace.user);
            match self.target.split() {
                Some((parent, name)) => self
                    .workspace
                    .resolve(&parent, libc::O_PATH | libc::O_DIRECTORY, 0)
                    .map_err(|reply| io::Error::other(reply.message))
                    .and_then(|dir| sys::unlink_at(dir.as_fd(), &name, false)),
                None => Ok(()),
            }
        };
        if let Err(e) = undone {
            tracing::warn!(path = %self.target.shown, "a failed upload could not be undone: {e}");
        }
    }
}

/// Empties directory `name` in `parent` (not following symlinks), depth-bounded.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    if depth > MAX_DELETE_DEPTH {
        return Err(io::Error::other(format!("directory tree deeper than {MAX_DELETE_DEPTH} levels")));
    }
    let dir = sys::open_beneath(parent, name, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
    for child in sys::read_dir_names(dir.as_fd())? {
        let stat = match sys::lstat_at(dir.as_fd(), &child) {
            Ok(stat) => stat,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        if is_dir(&stat) {
            remove_tree(dir.as_fd(), &child, depth + 1)?;
        }
        match sys::unlink_at(dir.as_fd(), &child, is_dir(&stat)) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_under_the_workspace_and_dotdot_is_refused() {
        let target = Target::parse("/workspace/a/./b/").unwrap();
        assert_eq!((target.relative.to_str().unwrap(), target.shown.as_str()), ("a/b", "/workspace/a/b"));
        assert!(Target::parse(".").unwrap().is_root());
        assert!(Target::parse("").unwrap().is_root(), "the root as the host sends it");
        assert!(Target::parse("/workspace").unwrap().is_root());
        for bad in ["../etc", "/etc/passwd", "a/../../x", "/workspacex/y"] {
            let err = Target::parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(err.kind, ErrorKind::PermissionDenied, "{bad}");
        }
    }
}
