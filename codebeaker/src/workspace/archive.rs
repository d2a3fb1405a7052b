//! Workspace archives: the whole workspace as a tar, out ([`write_archive`]) and in
//! ([`extract_archive`]), through a `cap_std` handle on its root. One implementation for
//! every backend whose code reaches the files directly: [`HostWorkspace`] (Deno, the test
//! backend) and the in-container agent (Docker).
//!
//! Out: directories, regular files and symbolic links (as links, never followed); fifos,
//! sockets and devices are left out; a file is read no further than its size when looked
//! at (one growing meanwhile is cut, one shrinking is padded with zeros), and the archive
//! stops with [`ErrorKind::LimitReached`](crate::ErrorKind::LimitReached) once it would
//! pass its limit (a sparse 1 PiB file included).
//!
//! In: each entry's path must stay beneath the root by its own components (no absolute
//! path, no `..`) and is created one component at a time without following any symbolic
//! link (a link planted by an earlier entry, or already there, cannot lead a later entry
//! anywhere); hard links, devices, fifos and unknown entry types are refused with
//! [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput). What an entry replaces is
//! moved aside first, so when anything fails (a refused entry, the quota, a broken
//! archive) every step is undone in reverse and the workspace is as it was.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use cap_std::fs::{Dir, DirBuilder, DirBuilderExt as _, MetadataExt as _, OpenOptions, OpenOptionsExt as _};

use crate::error::{Error, Result};
use crate::workspace::host::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use crate::workspace::{HostWorkspace, QuotaError, WorkspacePath, WorkspaceQuota, STREAM_CHUNK_BYTES};

/// Deepest directory nesting an archive is written from (recursion is bounded on a
/// hostile tree).
const MAX_DEPTH: usize = 256;

/// Writes the tar of everything beneath `root` to `out`; fails with
/// [`ErrorKind::LimitReached`](crate::ErrorKind::LimitReached) before writing more than
/// `limit` bytes in all.
pub fn write_archive(root: &Dir, out: impl Write, limit: u64) -> Result<()> {
    let mut builder = tar::Builder::new(Limited { out, written: 0, limit, failed: false });
    builder.follow_symlinks(false);
    let written = append_dir(&mut builder, root, Path::new(""), 0).and_then(|()| builder.finish());
    if written.is_err() {
        // No end-of-archive blocks after a failure (the builder writes them when dropped):
        // a reader that stops there would take a cut archive for a whole one.
        builder.get_mut().failed = true;
    }
    written.map_err(|e| archive_error(e, "the workspace could not be archived"))
}

/// An `io::Error` carrying `error` (so whoever reads the archive can tell a limit from a
/// failure: [`archive_error`] finds it again).
fn io_carrying(error: Error) -> io::Error {
    io::Error::other(error)
}

/// The [`Error`] an archive's I/O failure carries (however deep `tar` wrapped it), or
/// `context` and the I/O error.
pub fn archive_error(err: io::Error, context: &str) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(inner) = cause {
        if let Some(carried) = inner.downcast_ref::<Error>() {
            return Error::new(carried.kind(), carried.message());
        }
        cause = inner.source();
    }
    Error::internal(format!("{context}: {err}")).with_source(err)
}

/// A writer that refuses to pass `limit` bytes, and anything once the archive failed.
struct Limited<W> {
    out: W,
    written: u64,
    limit: u64,
    failed: bool,
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the workspace archive already failed"));
        }
        if self.written.saturating_add(buf.len() as u64) > self.limit {
            return Err(io_carrying(Error::limit_reached(format!(
                "the workspace archive is larger than its limit of {} bytes",
                self.limit
            ))));
        }
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn nofollow_read() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    options
}

fn header(kind: tar::EntryType, mode: u32, mtime: i64, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o777);
    header.set_mtime(mtime.max(0) as u64);
    header.set_size(size);
    header
}

fn append_dir<W: Write>(builder: &mut tar::Builder<W>, dir: &Dir, at: &Path, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io_carrying(Error::limit_reached(format!(
            "the workspace nests directories deeper than {MAX_DEPTH} levels"
        ))));
    }
    let mut names: Vec<OsString> = dir.entries()?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = at.join(&name);
        let named = |e: io::Error| io_carrying(io_failure(&shown(&path), e));
        let metadata = match dir.symlink_metadata(&name) {
            Ok(metadata) => metadata,
            // Removed while being archived: it is not part of the workspace any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(named(e)),
        };
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            let target = dir.read_link_contents(&name).map_err(named)?;
            let mut head = header(tar::EntryType::Symlink, 0o777, metadata.mtime(), 0);
            builder.append_link(&mut head, &path, &target)?;
        } else if file_type.is_dir() {
            let opened = dir
                .open_with(&name, nofollow_read().custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY))
                .map_err(named)?;
            let child = Dir::from_std_file(opened.into_std());
            let mut head = header(tar::EntryType::Directory, metadata.mode(), metadata.mtime(), 0);
            builder.append_data(&mut head, &path, io::empty())?;
            append_dir(builder, &child, &path, depth + 1)?;
        } else if file_type.is_file() {
            let file = dir.open_with(&name, &nofollow_read()).map_err(named)?;
            let opened = file.metadata().map_err(named)?;
            // Swapped for something else since it was looked at: left out, as that is.
            if !opened.is_file() {
                continue;
            }
            let len = opened.len();
            let mut head = header(tar::EntryType::Regular, opened.mode(), opened.mtime(), len);
            // Exactly `len` bytes whatever the file does meanwhile: the header said so.
            let body = file.into_std().take(len).chain(io::repeat(0)).take(len);
            builder.append_data(&mut head, &path, body)?;
        }
        // Fifos, sockets and devices are left out.
    }
    Ok(())
}

/// Extracts the tar `archive` beneath `root`, asking
/// `quota` (when there is one) before each piece it writes; the bytes of file content
/// written. On failure nothing of the archive remains.
pub fn extract_archive(root: &Dir, archive: impl Read, quota: Option<&WorkspaceQuota>) -> Result<u64> {
    let mut extraction = Extraction { root, quota, journal: Vec::new(), stash: None, written: 0 };
    let outcome = extraction.run(archive);
    match outcome {
        Ok(()) => {
            extraction.drop_stash();
            Ok(extraction.written)
        }
        Err(err) => {
            extraction.undo();
            Err(err)
        }
    }
}

/// One step an extraction took, undone in reverse when it fails.
enum Step {
    /// Created this entry (relative path).
    Created(PathBuf),
    /// Moved what was at the path to the stash, under the name.
    Stashed(PathBuf, OsString),
}

struct Extraction<'a> {
    root: &'a Dir,
    quota: Option<&'a WorkspaceQuota>,
    journal: Vec<Step>,
    /// Where replaced entries wait until the extraction succeeds (its name at the root).
    stash: Option<OsString>,
    written: u64,
}

fn refused(path: &Path, why: &str) -> Error {
    Error::invalid_input(format!("the archive entry {} {why}", path.display()))
}

fn broken(err: io::Error) -> Error {
    Error::invalid_input(format!("the archive is not a readable tar archive: {err}")).with_source(err)
}

impl Extraction<'_> {
    fn run(&mut self, archive: impl Read) -> Result<()> {
        let mut archive = tar::Archive::new(archive);
        for entry in archive.entries().map_err(broken)? {
            let mut entry = entry.map_err(broken)?;
            let raw = entry.path().map_err(broken)?.into_owned();
            let relative = beneath(&raw)?;
            let kind = entry.header().entry_type();
            let mode = entry.header().mode().unwrap_or(0);
            let Some((parent, name)) = relative.parent().zip(relative.file_name()) else {
                // The root itself ("./"): it exists already.
                if kind.is_dir() {
                    continue;
                }
                return Err(refused(&raw, "names the workspace root"));
            };
            let shown = shown(&relative);
            match kind {
                tar::EntryType::Directory => {
                    let dir = self.open_parent(parent, &raw)?;
                    self.make_dir(&dir, &relative, name, &shown)?;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                    let dir = self.open_parent(parent, &raw)?;
                    self.make_file(&dir, &relative, name, &shown, mode, &mut entry)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name().map_err(broken)?.ok_or_else(|| refused(&raw, "has no target"))?;
                    let dir = self.open_parent(parent, &raw)?;
                    self.replace(&dir, &relative, name)?;
                    let _charge = self.reserve(&shown, Some(0))?;
                    dir.symlink_contents(&target, name).map_err(|e| io_failure(&shown, e))?;
                    self.journal.push(Step::Created(relative.clone()));
                }
                tar::EntryType::XGlobalHeader => {}
                tar::EntryType::Link => return Err(refused(&raw, "is a hard link, which archives may not hold")),
                tar::EntryType::Char | tar::EntryType::Block => {
                    return Err(refused(&raw, "is a device, which archives may not hold"))
                }
                tar::EntryType::Fifo => return Err(refused(&raw, "is a fifo, which archives may not hold")),
                _ => return Err(refused(&raw, "is of a kind workspaces cannot hold")),
            }
        }
        Ok(())
    }

    fn reserve(&self, shown: &WorkspacePath, after: Option<u64>) -> Result<Option<crate::workspace::Reservation>> {
        let Some(quota) = self.quota else { return Ok(None) };
        let reserved = match after {
            Some(after) => quota.reserve(&shown.to_string(), None, after),
            None => quota.reserve_dirs(&shown.to_string(), 1),
        };
        reserved.map(Some).map_err(quota_error)
    }

    /// Opens the directory `parent` (relative) one component at a time, never following
    /// a symbolic link.
    fn open_parent(&self, parent: &Path, raw: &Path) -> Result<Dir> {
        let mut dir = self.root.try_clone().map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        for component in parent.components() {
            let name = component.as_os_str();
            let metadata = dir.symlink_metadata(name).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => refused(raw, "lies in a directory the archive did not create first"),
                _ => io_failure(&shown(parent), e),
            })?;
            if !metadata.is_dir() {
                return Err(refused(raw, "passes through a symbolic link or a file"));
            }
            let opened = dir
                .open_with(name, nofollow_read().custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY))
                .map_err(|_| refused(raw, "passes through a symbolic link or a file"))?;
            dir = Dir::from_std_file(opened.into_std());
        }
        Ok(dir)
    }

    /// Moves whatever is at `name` in `dir` (at `relative`) to the stash.
    fn replace(&mut self, dir: &Dir, relative: &Path, name: &OsStr) -> Result<()> {
        match dir.symlink_metadata(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_failure(&shown(relative), e)),
            Ok(_) => {}
        }
        let stash = self.stash()?;
        let stashed = OsString::from(format!("{}", self.journal.len()));
        dir.rename(name, &stash, &stashed).map_err(|e| io_failure(&shown(relative), e))?;
        self.journal.push(Step::Stashed(relative.to_path_buf(), stashed));
        Ok(())
    }

    fn stash(&mut self) -> Result<Dir> {
        let name = self
            .stash
            .get_or_insert_with(|| OsString::from(format!(".codebeaker-import-{}", uuid::Uuid::new_v4().simple())));
        let mut builder = DirBuilder::new();
        builder.mode(PRIVATE_DIR_MODE);
        match self.root.create_dir_with(&*name, &builder) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::internal(format!("cannot set replaced files aside: {e}")).with_source(e)),
        }
        self.root.open_dir(&*name).map_err(|e| Error::internal(format!("cannot set replaced files aside: {e}")))
    }

    fn make_dir(&mut self, dir: &Dir, relative: &Path, name: &OsStr, shown: &WorkspacePath) -> Result<()> {
        if dir.symlink_metadata(name).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        self.replace(dir, relative, name)?;
        let _charge = self.reserve(shown, None)?;
        let mut builder = DirBuilder::new();
        builder.mode(PRIVATE_DIR_MODE);
        dir.create_dir_with(name, &builder).map_err(|e| io_failure(shown, e))?;
        self.journal.push(Step::Created(relative.to_path_buf()));
        Ok(())
    }

    fn make_file(
        &mut self,
        dir: &Dir,
        relative: &Path,
        name: &OsStr,
        shown: &WorkspacePath,
        mode: u32,
        content: &mut impl Read,
    ) -> Result<()> {
        self.replace(dir, relative, name)?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(PRIVATE_FILE_MODE | (mode & 0o100)).custom_flags(libc::O_NOFOLLOW);
        let mut file = dir.open_with(name, &options).map_err(|e| io_failure(shown, e))?;
        self.journal.push(Step::Created(relative.to_path_buf()));
        let mut buffer = vec![0u8; STREAM_CHUNK_BYTES];
        let mut at = 0u64;
        loop {
            let filled = fill(content, &mut buffer).map_err(broken)?;
            if filled == 0 {
                break;
            }
            let _charge = match self.quota {
                Some(quota) => {
                    Some(quota.reserve(&shown.to_string(), Some(at), at + filled as u64).map_err(quota_error)?)
                }
                None => None,
            };
            file.write_all(&buffer[..filled]).map_err(|e| io_failure(shown, e))?;
            at += filled as u64;
        }
        if at == 0 {
            let _charge = self.reserve(shown, Some(0))?;
        }
        self.written += at;
        Ok(())
    }

    /// Undoes every step in reverse, then removes the stash.
    fn undo(&mut self) {
        while let Some(step) = self.journal.pop() {
            let undone = match &step {
                Step::Created(path) => match self.root.symlink_metadata(path) {
                    Ok(m) if m.is_dir() => self.root.remove_dir_all(path),
                    Ok(_) => self.root.remove_file(path),
                    Err(e) => Err(e),
                },
                Step::Stashed(path, stashed) => {
                    let stash = self.stash.as_ref().map(|s| Path::new(s).join(stashed)).unwrap_or_default();
                    self.root.rename(&stash, self.root, path)
                }
            };
            if let Err(e) = undone {
                tracing::warn!("a failed archive import could not be undone: {e}");
            }
        }
        self.drop_stash();
    }

    fn drop_stash(&mut self) {
        if let Some(stash) = self.stash.take() {
            if let Err(e) = self.root.remove_dir_all(&stash) {
                tracing::warn!("the replaced files of an archive import could not be removed: {e}");
            }
        }
    }
}

/// `raw` as a relative path of normal components, or why it is refused.
fn beneath(raw: &Path) -> Result<PathBuf> {
    let mut relative = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => relative.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err(refused(raw, "leaves the workspace through \"..\"")),
            Component::RootDir | Component::Prefix(_) => return Err(refused(raw, "is an absolute path")),
        }
    }
    Ok(relative)
}

/// How code names `relative` (in messages and the quota's errors).
fn shown(relative: &Path) -> WorkspacePath {
    WorkspacePath::new(&relative.to_string_lossy()).unwrap_or_else(|_| WorkspacePath::root())
}

fn io_failure(path: &WorkspacePath, err: io::Error) -> Error {
    crate::workspace::host::io_error(path, err)
}

fn quota_error(err: QuotaError) -> Error {
    match err {
        QuotaError::Exceeded { .. } => Error::limit_reached(err.to_string()),
        QuotaError::Measure { .. } => Error::internal(err.to_string()).with_source(err),
    }
}

/// Reads until `buffer` is full or the reader ends; the bytes read.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// How many archive pieces wait between the thread writing an archive and its reader.
const EXPORT_QUEUE: usize = 4;

/// A [`tokio::io::AsyncRead`] fed by a blocking thread through a bounded queue of
/// pieces: what [`HostWorkspace`]'s (and the agent's) exports hand out.
struct ArchiveReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
}

/// The sending end of an [`ArchiveReader`], a blocking [`Write`]: each write waits while
/// the queue is full, and fails once the reader is gone.
struct ArchiveWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Vec<u8>>>,
}

/// A bounded pipe from a blocking archive writer to an async reader.
fn archive_pipe() -> (ArchiveWriter, ArchiveReader) {
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_QUEUE);
    (ArchiveWriter { tx }, ArchiveReader { rx, piece: Vec::new(), at: 0 })
}

/// The extracting end of an import: a blocking [`Read`] of pieces that a task on the
/// runtime reads from the archive's body. The thread extracting acts as the workspace's
/// owner, and a thread started from it inherits that identity (Linux copies the creating
/// thread's credentials), so it never drives the body itself: reading a
/// `tokio::fs::File` there started blocking-pool threads that went on serving other
/// sessions, and the server's own file work, under that sandbox's uid.
struct ImportReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
}

/// Starts reading `body` into an [`ImportReader`] (on the current runtime), a few pieces
/// ahead of the extraction; dropping the reader stops the task.
fn import_pipe(mut body: crate::workspace::UploadBody) -> ImportReader {
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_QUEUE);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = vec![0u8; STREAM_CHUNK_BYTES];
        loop {
            let read = body.read(&mut buffer).await;
            let last = !matches!(read, Ok(n) if n > 0);
            if tx.send(read.map(|n| buffer[..n].to_vec())).await.is_err() || last {
                return;
            }
        }
    });
    ImportReader { rx, piece: Vec::new(), at: 0, ended: false }
}

impl Read for ImportReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(piece)) => {
                    self.ended = piece.is_empty();
                    (self.piece, self.at) = (piece, 0);
                }
                Some(Err(e)) => return Err(e),
                None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive stopped arriving")),
            }
        }
        let n = out.len().min(self.piece.len() - self.at);
        out[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl ArchiveWriter {
    /// Ends the reader with `err` (after what was written).
    fn fail(self, err: Error) {
        let _ = self.tx.blocking_send(Err(io_carrying(err)));
    }
}

impl Write for ArchiveWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.blocking_send(Ok(buf.to_vec())).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for ArchiveReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        loop {
            if self.at < self.piece.len() {
                let n = buf.remaining().min(self.piece.len() - self.at);
                let at = self.at;
                buf.put_slice(&self.piece[at..at + n]);
                self.at += n;
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(piece))) => {
                    self.piece = piece;
                    self.at = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Buffers archive output into pieces of [`STREAM_CHUNK_BYTES`] before they are queued
/// (tar writes in 512-byte blocks).
fn buffered(writer: ArchiveWriter) -> io::BufWriter<ArchiveWriter> {
    io::BufWriter::with_capacity(STREAM_CHUNK_BYTES / 4, writer)
}

/// Snapshots and forks of a host workspace: the tar is written on a blocking thread with
/// the owner's file rights, a few pieces ahead of its reader; an import is extracted on
/// one under the workspace's quota.
#[async_trait::async_trait]
impl crate::backend::Archives for HostWorkspace {
    async fn export(&self, limit: u64) -> Result<crate::workspace::FileDownload> {
        let root = {
            let _acting = self.act();
            self.dir().try_clone().map_err(|e| Error::internal(e.to_string()).with_source(e))?
        };
        let owner = self.owner();
        let (writer, reader) = archive_pipe();
        tokio::task::spawn_blocking(move || {
            let _acting = crate::workspace::owner::Acting::as_owner(owner);
            let mut out = buffered(writer);
            let written = write_archive(&root, &mut out, limit)
                .and_then(|()| out.flush().map_err(|e| archive_error(e, "the workspace could not be archived")));
            if let Err(err) = written {
                if let Ok(writer) = out.into_inner() {
                    writer.fail(err);
                }
            }
        });
        Ok(crate::workspace::FileDownload { size: 0, reader: Box::pin(reader) })
    }

    async fn import(&self, archive: crate::workspace::UploadBody) -> Result<u64> {
        let root = self.dir().try_clone().map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        let owner = self.owner();
        let quota = self.quota().cloned();
        let body = import_pipe(archive);
        tokio::task::spawn_blocking(move || {
            let _acting = crate::workspace::owner::Acting::as_owner(owner);
            extract_archive(&root, body, quota.as_ref())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()).with_source(e))?
    }
}
