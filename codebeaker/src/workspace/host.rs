//! [`HostWorkspace`]: the six file commands on a host directory that stands for
//! `/workspace`, for backends whose files live on the host (Deno, the test backend).
//!
//! Every operation goes through a `cap_std` directory handle opened on the workspace
//! root, so the kernel-level lookup refuses `..` and symlinks that lead outside it
//! (absolute symlink targets included), even when sandboxed code planted the link.
//!
//! What it creates is private to the server's user (directories 0700, files 0600), and
//! with [`HostWorkspace::with_quota`] every write path (`write_file`, `copy_file`,
//! `create_directory`) asks the workspace's [`WorkspaceQuota`] first.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, DirBuilder, DirBuilderExt as _, OpenOptions, OpenOptionsExt as _};

use crate::command::{Command, CopyFile, CreateDirectory, DeleteFile, ListDirectory, ReadFile, WriteFile, WriteMode};
use crate::error::{Error, Result};
use crate::result::{
    CommandResult, CopyFileResult, CreateDirectoryResult, DeleteFileResult, DirEntry, EntryType, ListDirectoryResult,
    ReadFileResult, WriteFileResult,
};
use crate::workspace::owner::Acting;
use crate::workspace::{
    read_span, FsOwner, QuotaError, Reservation, WorkspacePath, WorkspaceQuota, MAX_TRANSFER_BYTES,
};

/// Mode of the directories a workspace creates (its root included).
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the files a workspace creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// A workspace directory on the host, accessed only through a capability handle.
#[derive(Debug)]
pub struct HostWorkspace {
    root: PathBuf,
    dir: Dir,
    quota: Option<WorkspaceQuota>,
    owner: Option<FsOwner>,
}

impl HostWorkspace {
    /// Opens (creating if needed, mode 0700) `root` as a workspace without a quota.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let root = root.as_ref().to_path_buf();
        let shown = root.display().to_string();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(&root)
            .map_err(|e| Error::from_io(&shown, e))?;
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority()).map_err(|e| Error::from_io(&shown, e))?;
        Ok(HostWorkspace { root, dir, quota: None, owner: None })
    }

    /// Limits what the file commands may store in the workspace to `bytes` in all.
    pub fn with_quota(mut self, bytes: u64) -> Self {
        self.quota = Some(WorkspaceQuota::new(self.root.clone(), bytes));
        self
    }

    /// Makes every access of the file commands and transfers use `owner`'s file rights
    /// (the sandbox runs under a uid of its own and owns the workspace).
    pub fn acting_as(mut self, owner: Option<FsOwner>) -> Self {
        self.owner = owner;
        self
    }

    /// Whose file rights the workspace's accesses use.
    pub(crate) fn owner(&self) -> Option<FsOwner> {
        self.owner
    }

    /// This thread's file accesses as the workspace's owner until dropped.
    pub(crate) fn act(&self) -> Acting {
        Acting::as_owner(self.owner)
    }

    /// The workspace's quota, when it has one (shared with other writers of the directory
    /// through its clones).
    pub fn quota(&self) -> Option<&WorkspaceQuota> {
        self.quota.as_ref()
    }

    /// The host directory standing for `/workspace`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The capability handle on the root, through which every access goes.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Runs a file command; `None` for `execute_shell` and `execute_code`, which are the
    /// backend's own.
    pub fn execute(&self, command: &Command) -> Option<Result<CommandResult>> {
        let _acting = self.act();
        Some(match command {
            Command::WriteFile(c) => self.write_file(c).map(CommandResult::WriteFile),
            Command::ReadFile(c) => self.read_file(c).map(CommandResult::ReadFile),
            Command::CreateDirectory(c) => self.create_directory(c).map(CommandResult::CreateDirectory),
            Command::CopyFile(c) => self.copy_file(c).map(CommandResult::CopyFile),
            Command::DeleteFile(c) => self.delete_file(c).map(CommandResult::DeleteFile),
            Command::ListDirectory(c) => self.list_directory(c).map(CommandResult::ListDirectory),
            Command::ExecuteShell(_) | Command::ExecuteCode(_) => return None,
        })
    }

    /// `write_file`: creates parent directories, replaces or appends.
    pub fn write_file(&self, command: &WriteFile) -> Result<WriteFileResult> {
        let path = &command.path;
        let bytes = command.decoded_content()?;
        check_size(path, bytes.len() as u64)?;
        let before = self.file_len(path);
        let after = match command.mode {
            WriteMode::Create => bytes.len() as u64,
            WriteMode::Append => before.unwrap_or(0).saturating_add(bytes.len() as u64),
        };
        let _parents = self.create_parents(path)?;
        let _reservation = self.reserve(path, before, after)?;
        let mut options = OpenOptions::new();
        options.write(true).create(true).mode(PRIVATE_FILE_MODE);
        match command.mode {
            WriteMode::Create => options.truncate(true),
            WriteMode::Append => options.append(true),
        };
        let mut file = self.dir.open_with(path.relative_or_dot(), &options).map_err(|e| io_error(path, e))?;
        file.write_all(&bytes).map_err(|e| io_error(path, e))?;
        Ok(WriteFileResult { path: path.to_string(), bytes: bytes.len() as u64 })
    }

    /// Opens the regular file at `path` to read (with this thread's file rights), and its
    /// size; directories, FIFOs and devices are refused without waiting on them.
    pub(crate) fn open_regular(&self, path: &WorkspacePath) -> Result<(std::fs::File, u64)> {
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NONBLOCK);
        let file = self.dir.open_with(path.relative_or_dot(), &options).map_err(|e| io_error(path, e))?;
        let metadata = file.metadata().map_err(|e| io_error(path, e))?;
        if metadata.is_dir() {
            return Err(Error::invalid_input(format!("{path} is a directory")));
        }
        if !metadata.is_file() {
            return Err(Error::invalid_input(format!("{path} is not a regular file")));
        }
        Ok((file.into_std(), metadata.len()))
    }

    /// `read_file`: the whole file, or the range `offset`/`length` asks for.
    pub fn read_file(&self, command: &ReadFile) -> Result<ReadFileResult> {
        use std::io::{Read as _, Seek as _};
        let path = &command.path;
        let (mut file, size) = self.open_regular(path)?;
        let count = read_span(path, size, command.offset, command.length)?;
        let mut bytes = Vec::with_capacity(count as usize);
        if count > 0 {
            file.seek(std::io::SeekFrom::Start(command.offset)).map_err(|e| io_error(path, e))?;
            file.take(count).read_to_end(&mut bytes).map_err(|e| io_error(path, e))?;
        }
        ReadFileResult::encoded(bytes, command.offset, size, command.encoding, &path.to_string())
    }

    /// `create_directory` (parents included; an existing directory is fine).
    pub fn create_directory(&self, command: &CreateDirectory) -> Result<CreateDirectoryResult> {
        let path = &command.path;
        self.create_dirs(path)?;
        Ok(CreateDirectoryResult { path: path.to_string() })
    }

    /// `copy_file` (destination parents created, destination replaced).
    pub fn copy_file(&self, command: &CopyFile) -> Result<CopyFileResult> {
        let source = &command.source_path;
        let destination = &command.destination_path;
        let metadata = self.dir.metadata(source.relative_or_dot()).map_err(|e| io_error(source, e))?;
        if metadata.is_dir() {
            return Err(Error::invalid_input(format!("{source} is a directory; copy_file copies files")));
        }
        check_size(source, metadata.len())?;
        let _parents = self.create_parents(destination)?;
        let bytes = self.copy_contents(source, destination, metadata.len())?;
        Ok(CopyFileResult { source_path: source.to_string(), destination_path: destination.to_string(), bytes })
    }

    /// `delete_file`: a file or symlink (the link, not its target), or a directory with
    /// everything in it. The workspace root itself cannot be deleted.
    pub fn delete_file(&self, command: &DeleteFile) -> Result<DeleteFileResult> {
        let path = &command.path;
        if path.is_root() {
            return Err(Error::invalid_input(format!("{path} is the workspace root and cannot be deleted")));
        }
        let metadata = self.dir.symlink_metadata(path.relative()).map_err(|e| io_error(path, e))?;
        let removed = if metadata.is_dir() {
            self.dir.remove_dir_all(path.relative())
        } else {
            self.dir.remove_file(path.relative())
        };
        removed.map_err(|e| io_error(path, e))?;
        Ok(DeleteFileResult { path: path.to_string(), deleted: true })
    }

    /// `list_directory`: entries sorted by name; symlinks reported, not followed.
    pub fn list_directory(&self, command: &ListDirectory) -> Result<ListDirectoryResult> {
        let path = &command.path;
        let listing = self.dir.read_dir(path.relative_or_dot()).map_err(|e| io_error(path, e))?;
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let metadata = entry.metadata().map_err(|e| io_error(path, e))?;
            let file_type = metadata.file_type();
            let entry_type = if file_type.is_symlink() {
                EntryType::Symlink
            } else if file_type.is_dir() {
                EntryType::Directory
            } else {
                EntryType::File
            };
            let size = if entry_type == EntryType::Directory { 0 } else { metadata.len() };
            entries.push(DirEntry { name: entry.file_name().to_string_lossy().into_owned(), entry_type, size });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ListDirectoryResult { path: path.to_string(), entries })
    }

    /// Copies `source` (`len` bytes when looked at) over `destination`, reading no more
    /// than was counted: a file that grew meanwhile is cut at `len`.
    fn copy_contents(&self, source: &WorkspacePath, destination: &WorkspacePath, len: u64) -> Result<u64> {
        use std::io::Read as _;
        let mut from = self.dir.open(source.relative_or_dot()).map_err(|e| io_error(source, e))?;
        let from_meta = from.metadata().map_err(|e| io_error(source, e))?;
        if let Ok(to_meta) = self.dir.metadata(destination.relative_or_dot()) {
            use cap_std::fs::MetadataExt as _;
            if (to_meta.dev(), to_meta.ino()) == (from_meta.dev(), from_meta.ino()) {
                return Ok(from_meta.len());
            }
        }
        let _reservation = self.reserve(destination, self.file_len(destination), len)?;
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(PRIVATE_FILE_MODE);
        let mut to =
            self.dir.open_with(destination.relative_or_dot(), &options).map_err(|e| io_error(destination, e))?;
        std::io::copy(&mut (&mut from).take(len), &mut to).map_err(|e| io_error(destination, e))
    }

    /// Size of the file at `path`, `None` when there is none.
    fn file_len(&self, path: &WorkspacePath) -> Option<u64> {
        self.dir.metadata(path.relative_or_dot()).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    pub(crate) fn reserve(&self, path: &WorkspacePath, before: Option<u64>, after: u64) -> Result<Option<Reservation>> {
        let Some(quota) = &self.quota else { return Ok(None) };
        quota.reserve(&path.to_string(), before, after).map(Some).map_err(quota_error)
    }

    /// Creates `path` and its missing parents (0700), each counted against the quota.
    fn create_dirs(&self, path: &WorkspacePath) -> Result<Option<Reservation>> {
        let mut missing = 0u64;
        let mut probe = Some(path.clone());
        while let Some(dir) = probe.filter(|p| !p.is_root()) {
            match self.dir.metadata(dir.relative()) {
                Ok(metadata) if metadata.is_dir() => break,
                Ok(_) => return Err(Error::invalid_input(format!("{dir} is not a directory"))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing += 1,
                Err(e) => return Err(io_error(&dir, e)),
            }
            probe = dir.parent();
        }
        if missing == 0 {
            return Ok(None);
        }
        let reservation = match &self.quota {
            Some(quota) => Some(quota.reserve_dirs(&path.to_string(), missing).map_err(quota_error)?),
            None => None,
        };
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(PRIVATE_DIR_MODE);
        self.dir.create_dir_with(path.relative(), &builder).map_err(|e| io_error(path, e))?;
        Ok(reservation)
    }

    pub(crate) fn create_parents(&self, path: &WorkspacePath) -> Result<Option<Reservation>> {
        // Looking before creating (in `create_dirs`) matters: an existing parent may be a
        // symlink, which `metadata` follows (refusing escapes) and `create_dir_all` would
        // misreport as existing.
        match path.parent().filter(|p| !p.is_root()) {
            Some(parent) => self.create_dirs(&parent),
            None => Ok(None),
        }
    }
}

fn quota_error(err: QuotaError) -> Error {
    match err {
        QuotaError::Exceeded { .. } => Error::limit_reached(err.to_string()),
        QuotaError::Measure { .. } => Error::internal(err.to_string()).with_source(err),
    }
}

fn check_size(path: &WorkspacePath, bytes: u64) -> Result<()> {
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Error::limit_reached(format!(
            "{path} is {bytes} bytes; file commands move at most {MAX_TRANSFER_BYTES} bytes at once"
        )));
    }
    Ok(())
}

/// Maps an I/O failure; cap-std reports a lookup that would leave the workspace (through
/// `..` or a symlink) as `PermissionDenied`, which becomes a message that says so.
pub(crate) fn io_error(path: &WorkspacePath, err: std::io::Error) -> Error {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        return Error::permission_denied(format!("{path} resolves outside /workspace or is not accessible"))
            .with_source(err);
    }
    Error::from_io(&path.to_string(), err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Encoding;
    use crate::ErrorKind;

    fn workspace() -> (tempfile::TempDir, HostWorkspace) {
        let dir = tempfile::tempdir().unwrap();
        let ws = HostWorkspace::open(dir.path().join("ws")).unwrap();
        (dir, ws)
    }

    #[test]
    fn symlinks_leading_outside_are_refused_for_every_command() {
        let (tmp, ws) = workspace();
        std::fs::write(tmp.path().join("secret.txt"), "host secret").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), ws.root().join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", ws.root().join("rel-link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), ws.root().join("dir-link")).unwrap();
        for link in ["abs-link", "rel-link"] {
            let read = ws.read_file(&ReadFile {
                path: WorkspacePath::new(link).unwrap(),
                encoding: Encoding::Utf8,
                offset: 0,
                length: None,
            });
            assert!(matches!(read, Err(ref e) if e.kind() == crate::ErrorKind::PermissionDenied), "{link}: {read:?}");
            let write = ws.write_file(&WriteFile {
                path: WorkspacePath::new(link).unwrap(),
                content: "overwrite".into(),
                mode: WriteMode::Create,
                encoding: Encoding::Utf8,
            });
            assert!(matches!(write, Err(ref e) if e.kind() == crate::ErrorKind::PermissionDenied), "{link}: {write:?}");
            let copy = ws.copy_file(&CopyFile {
                source_path: WorkspacePath::new(link).unwrap(),
                destination_path: WorkspacePath::new("stolen").unwrap(),
            });
            assert!(matches!(copy, Err(ref e) if e.kind() == crate::ErrorKind::PermissionDenied), "{link}: {copy:?}");
        }
        let through_dir = ws.write_file(&WriteFile {
            path: WorkspacePath::new("dir-link/planted.txt").unwrap(),
            content: "x".into(),
            mode: WriteMode::Create,
            encoding: Encoding::Utf8,
        });
        assert!(matches!(through_dir, Err(ref e) if e.kind() == crate::ErrorKind::PermissionDenied), "{through_dir:?}");
        let listing = ws.list_directory(&ListDirectory { path: WorkspacePath::new("dir-link").unwrap() });
        assert!(matches!(listing, Err(ref e) if e.kind() == crate::ErrorKind::PermissionDenied), "{listing:?}");
        assert_eq!(std::fs::read_to_string(tmp.path().join("secret.txt")).unwrap(), "host secret");
        assert!(!tmp.path().join("planted.txt").exists());
        // Deleting a link removes the link only.
        ws.delete_file(&DeleteFile { path: WorkspacePath::new("abs-link").unwrap() }).unwrap();
        assert!(tmp.path().join("secret.txt").exists());
    }

    #[test]
    fn symlinks_inside_the_workspace_work() {
        let (_tmp, ws) = workspace();
        std::fs::write(ws.root().join("real.txt"), "inside").unwrap();
        std::os::unix::fs::symlink("real.txt", ws.root().join("alias.txt")).unwrap();
        let read = ws
            .read_file(&ReadFile {
                path: WorkspacePath::new("alias.txt").unwrap(),
                encoding: Encoding::Utf8,
                offset: 0,
                length: None,
            })
            .unwrap();
        assert_eq!(read.content, "inside");
        let listing = ws.list_directory(&ListDirectory { path: WorkspacePath::new(".").unwrap() }).unwrap();
        let alias = listing.entries.iter().find(|e| e.name == "alias.txt").unwrap();
        assert_eq!(alias.entry_type, EntryType::Symlink);
    }

    #[test]
    fn binary_content_needs_base64() {
        let (_tmp, ws) = workspace();
        std::fs::write(ws.root().join("blob.bin"), [0xff, 0x00, 0xfe]).unwrap();
        let err = ws
            .read_file(&ReadFile {
                path: WorkspacePath::new("blob.bin").unwrap(),
                encoding: Encoding::Utf8,
                offset: 0,
                length: None,
            })
            .unwrap_err();
        assert!(err.kind() == ErrorKind::InvalidInput && err.message().contains("base64"), "{err:?}");
        let read = ws
            .read_file(&ReadFile {
                path: WorkspacePath::new("blob.bin").unwrap(),
                encoding: Encoding::Base64,
                offset: 0,
                length: None,
            })
            .unwrap();
        assert_eq!(read.content, "/wD+");
        assert_eq!(read.bytes, 3);
    }

    #[test]
    fn the_workspace_root_cannot_be_deleted() {
        let (_tmp, ws) = workspace();
        for root in ["/workspace", ".", "/workspace/"] {
            let err = ws.delete_file(&DeleteFile { path: WorkspacePath::new(root).unwrap() }).unwrap_err();
            assert!(err.kind() == crate::ErrorKind::InvalidInput, "{root}: {err:?}");
        }
        assert!(ws.root().exists());
    }

    #[test]
    fn what_the_workspace_creates_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_tmp, ws) = workspace();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        ws.write_file(&WriteFile {
            path: WorkspacePath::new("a/b/c.txt").unwrap(),
            content: "x".into(),
            mode: WriteMode::Create,
            encoding: Encoding::Utf8,
        })
        .unwrap();
        ws.create_directory(&CreateDirectory { path: WorkspacePath::new("d/e").unwrap() }).unwrap();
        ws.copy_file(&CopyFile {
            source_path: WorkspacePath::new("a/b/c.txt").unwrap(),
            destination_path: WorkspacePath::new("d/e/f.txt").unwrap(),
        })
        .unwrap();
        for dir in ["", "a", "a/b", "d", "d/e"] {
            assert_eq!(mode(&ws.root().join(dir)), 0o700, "{dir}");
        }
        for file in ["a/b/c.txt", "d/e/f.txt"] {
            assert_eq!(mode(&ws.root().join(file)), 0o600, "{file}");
        }
    }

    #[test]
    fn every_write_path_respects_the_quota() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = HostWorkspace::open(tmp.path().join("ws")).unwrap().with_quota(64 * 1024);
        let write = |path: &str, len: usize, mode: WriteMode| {
            ws.write_file(&WriteFile {
                path: WorkspacePath::new(path).unwrap(),
                content: "x".repeat(len),
                mode,
                encoding: Encoding::Utf8,
            })
        };
        write("a", 40 * 1024, WriteMode::Create).unwrap();
        let err = write("b", 40 * 1024, WriteMode::Create).unwrap_err();
        assert_eq!(err, Error::limit_reached("workspace quota of 65536 bytes exceeded writing /workspace/b"));
        let err = write("a", 30 * 1024, WriteMode::Append).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::LimitReached, "{err:?}");
        let err = ws
            .copy_file(&CopyFile {
                source_path: WorkspacePath::new("a").unwrap(),
                destination_path: WorkspacePath::new("a2").unwrap(),
            })
            .unwrap_err();
        assert!(err.kind() == crate::ErrorKind::LimitReached, "{err:?}");
        let deep = (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/");
        let err = ws.create_directory(&CreateDirectory { path: WorkspacePath::new(&deep).unwrap() }).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::LimitReached, "{err:?}");
        // Replacing a file is judged by the size it ends with.
        write("a", 50 * 1024, WriteMode::Create).unwrap();
        assert!(ws.quota().unwrap().usage().unwrap() <= 64 * 1024);
        // Space freed outside the file commands is seen.
        std::fs::remove_file(ws.root().join("a")).unwrap();
        write("b", 40 * 1024, WriteMode::Create).unwrap();
    }
}
