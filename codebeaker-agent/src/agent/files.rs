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
use std::os::unix::ffi::OsStrExt as _;

use crate::agent::sys::{self, FsIdentity};
use crate::protocol::{Base64Bytes, EntryKind, ErrorKind, ErrorReply, FsEntry, FsReply, FsRequest, FsStat};

/// Deepest directory tree `delete` removes (recursion is bounded on a hostile tree).
const MAX_DELETE_DEPTH: usize = 512;

/// The workspace directory, held open.
#[derive(Debug)]
pub struct Workspace {
    root: OwnedFd,
    user: Option<(u32, u32)>,
}

/// A request path, checked lexically: relative, no `..`, shown as `/workspace/…`.
struct Target {
    relative: OsString,
    shown: String,
}

impl Target {
    fn parse(path: &str) -> Result<Target, ErrorReply> {
        let trimmed = path.strip_prefix("/workspace").filter(|rest| rest.is_empty() || rest.starts_with('/'));
        let relative = trimmed.unwrap_or(path);
        let parts: Vec<&str> = relative.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        let shown = if parts.is_empty() { "/workspace".to_owned() } else { format!("/workspace/{}", parts.join("/")) };
        if relative.contains('\0') {
            return Err(ErrorReply::at(ErrorKind::InvalidInput, &shown, format!("{shown}: path contains a NUL byte")));
        }
        if (trimmed.is_none() && path.starts_with('/')) || parts.contains(&"..") {
            return Err(ErrorReply::at(
                ErrorKind::PermissionDenied,
                &shown,
                format!("{path} resolves outside /workspace or is not accessible"),
            ));
        }
        let relative = if parts.is_empty() { OsString::from(".") } else { OsString::from(parts.join("/")) };
        Ok(Target { relative, shown })
    }

    fn is_root(&self) -> bool {
        self.relative == "."
    }

    /// The parent directory and the final name (`None` for the root).
    fn split(&self) -> Option<(Target, OsString)> {
        let bytes = self.relative.as_bytes();
        if self.is_root() {
            return None;
        }
        let (parent, name) = match bytes.iter().rposition(|b| *b == b'/') {
            Some(at) => (&bytes[..at], &bytes[at + 1..]),
            None => (&b"."[..], bytes),
        };
        let parent = OsStr::from_bytes(parent).to_string_lossy().into_owned();
        Some((Target::parse(&parent).ok()?, OsStr::from_bytes(name).to_owned()))
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
            FsRequest::Read { path, max_bytes } => self.read(&Target::parse(&path)?, max_bytes),
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

    fn read(&self, target: &Target, max: u64) -> Result<FsReply, ErrorReply> {
        let file = self.open_regular(target, max)?;
        let bytes = Self::read_capped(file, &target.shown, max)?;
        Ok(FsReply::Read { data: Base64Bytes(bytes) })
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
        assert!(Target::parse("/workspace").unwrap().is_root());
        for bad in ["../etc", "/etc/passwd", "a/../../x", "/workspacex/y"] {
            let err = Target::parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(err.kind, ErrorKind::PermissionDenied, "{bad}");
        }
    }
}
