//! [`HostWorkspace`]: the six file commands on a host directory that stands for
//! `/workspace`, for backends whose files live on the host (Deno, the test backend).
//!
//! Every operation goes through a `cap_std` directory handle opened on the workspace
//! root, so the kernel-level lookup refuses `..` and symlinks that lead outside it
//! (absolute symlink targets included), even when sandboxed code planted the link.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions};

use crate::command::{Command, CopyFile, CreateDirectory, DeleteFile, ListDirectory, ReadFile, WriteFile, WriteMode};
use crate::error::{Error, Result};
use crate::result::{
    CommandResult, CopyFileResult, CreateDirectoryResult, DeleteFileResult, DirEntry, EntryType, ListDirectoryResult,
    ReadFileResult, WriteFileResult,
};
use crate::workspace::{WorkspacePath, MAX_TRANSFER_BYTES};

/// A workspace directory on the host, accessed only through a capability handle.
#[derive(Debug)]
pub struct HostWorkspace {
    root: PathBuf,
    dir: Dir,
}

impl HostWorkspace {
    /// Opens (creating if needed) `root` as a workspace.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let shown = root.display().to_string();
        std::fs::create_dir_all(&root).map_err(|e| Error::from_io(&shown, &e))?;
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority()).map_err(|e| Error::from_io(&shown, &e))?;
        Ok(HostWorkspace { root, dir })
    }

    /// The host directory standing for `/workspace`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs a file command; `None` for `execute_shell` and `execute_code`, which are the
    /// backend's own.
    pub fn execute(&self, command: &Command) -> Option<Result<CommandResult>> {
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
        let path = WorkspacePath::parse(&command.path)?;
        let bytes = command.decoded_content()?;
        check_size(&path, bytes.len() as u64)?;
        self.create_parents(&path)?;
        let mut options = OpenOptions::new();
        options.write(true).create(true);
        match command.mode {
            WriteMode::Create => options.truncate(true),
            WriteMode::Append => options.append(true),
        };
        let mut file = self.dir.open_with(path.relative_or_dot(), &options).map_err(|e| io_error(&path, &e))?;
        file.write_all(&bytes).map_err(|e| io_error(&path, &e))?;
        Ok(WriteFileResult { path: path.to_string(), bytes: bytes.len() as u64 })
    }

    /// `read_file`.
    pub fn read_file(&self, command: &ReadFile) -> Result<ReadFileResult> {
        let path = WorkspacePath::parse(&command.path)?;
        let metadata = self.dir.metadata(path.relative_or_dot()).map_err(|e| io_error(&path, &e))?;
        if metadata.is_dir() {
            return Err(Error::InvalidInput(format!("{path} is a directory")));
        }
        check_size(&path, metadata.len())?;
        let bytes = self.dir.read(path.relative_or_dot()).map_err(|e| io_error(&path, &e))?;
        let size = bytes.len() as u64;
        Ok(ReadFileResult { content: command.encoding.encode(bytes, &path.to_string())?, bytes: size })
    }

    /// `create_directory` (parents included; an existing directory is fine).
    pub fn create_directory(&self, command: &CreateDirectory) -> Result<CreateDirectoryResult> {
        let path = WorkspacePath::parse(&command.path)?;
        self.dir.create_dir_all(path.relative_or_dot()).map_err(|e| io_error(&path, &e))?;
        Ok(CreateDirectoryResult { path: path.to_string() })
    }

    /// `copy_file` (destination parents created, destination replaced).
    pub fn copy_file(&self, command: &CopyFile) -> Result<CopyFileResult> {
        let source = WorkspacePath::parse(&command.source_path)?;
        let destination = WorkspacePath::parse(&command.destination_path)?;
        let metadata = self.dir.metadata(source.relative_or_dot()).map_err(|e| io_error(&source, &e))?;
        if metadata.is_dir() {
            return Err(Error::InvalidInput(format!("{source} is a directory; copy_file copies files")));
        }
        check_size(&source, metadata.len())?;
        self.create_parents(&destination)?;
        let bytes = self
            .dir
            .copy(source.relative_or_dot(), &self.dir, destination.relative_or_dot())
            .map_err(|e| io_error(&destination, &e))?;
        Ok(CopyFileResult { source_path: source.to_string(), destination_path: destination.to_string(), bytes })
    }

    /// `delete_file`: a file or symlink (the link, not its target), or a directory with
    /// everything in it. The workspace root itself cannot be deleted.
    pub fn delete_file(&self, command: &DeleteFile) -> Result<DeleteFileResult> {
        let path = WorkspacePath::parse(&command.path)?;
        if path.is_root() {
            return Err(Error::InvalidInput(format!("{path} is the workspace root and cannot be deleted")));
        }
        let metadata = self.dir.symlink_metadata(path.relative()).map_err(|e| io_error(&path, &e))?;
        let removed = if metadata.is_dir() {
            self.dir.remove_dir_all(path.relative())
        } else {
            self.dir.remove_file(path.relative())
        };
        removed.map_err(|e| io_error(&path, &e))?;
        Ok(DeleteFileResult { path: path.to_string(), deleted: true })
    }

    /// `list_directory`: entries sorted by name; symlinks reported, not followed.
    pub fn list_directory(&self, command: &ListDirectory) -> Result<ListDirectoryResult> {
        let path = WorkspacePath::parse(&command.path)?;
        let listing = self.dir.read_dir(path.relative_or_dot()).map_err(|e| io_error(&path, &e))?;
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| io_error(&path, &e))?;
            let metadata = entry.metadata().map_err(|e| io_error(&path, &e))?;
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

    fn create_parents(&self, path: &WorkspacePath) -> Result<()> {
        let Some(parent) = path.parent().filter(|p| !p.is_root()) else { return Ok(()) };
        // Look before creating: an existing parent may be a symlink, which `metadata`
        // follows (refusing escapes) and `create_dir_all` would misreport as existing.
        match self.dir.metadata(parent.relative()) {
            Ok(metadata) if metadata.is_dir() => Ok(()),
            Ok(_) => Err(Error::InvalidInput(format!("{parent} is not a directory"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.dir.create_dir_all(parent.relative()).map_err(|e| io_error(&parent, &e))
            }
            Err(e) => Err(io_error(&parent, &e)),
        }
    }
}

fn check_size(path: &WorkspacePath, bytes: u64) -> Result<()> {
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Error::LimitReached(format!(
            "{path} is {bytes} bytes; file commands move at most {MAX_TRANSFER_BYTES} bytes at once"
        )));
    }
    Ok(())
}

/// Maps an I/O failure; cap-std reports a lookup that would leave the workspace (through
/// `..` or a symlink) as `PermissionDenied`, which becomes a message that says so.
fn io_error(path: &WorkspacePath, err: &std::io::Error) -> Error {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        return Error::PermissionDenied(format!("{path} resolves outside /workspace or is not accessible"));
    }
    Error::from_io(&path.to_string(), err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Encoding;

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
            let read = ws.read_file(&ReadFile { path: link.into(), encoding: Encoding::Utf8 });
            assert!(matches!(read, Err(Error::PermissionDenied(_))), "{link}: {read:?}");
            let write = ws.write_file(&WriteFile {
                path: link.into(),
                content: "overwrite".into(),
                mode: WriteMode::Create,
                encoding: Encoding::Utf8,
            });
            assert!(matches!(write, Err(Error::PermissionDenied(_))), "{link}: {write:?}");
            let copy = ws.copy_file(&CopyFile { source_path: link.into(), destination_path: "stolen".into() });
            assert!(matches!(copy, Err(Error::PermissionDenied(_))), "{link}: {copy:?}");
        }
        let through_dir = ws.write_file(&WriteFile {
            path: "dir-link/planted.txt".into(),
            content: "x".into(),
            mode: WriteMode::Create,
            encoding: Encoding::Utf8,
        });
        assert!(matches!(through_dir, Err(Error::PermissionDenied(_))), "{through_dir:?}");
        let listing = ws.list_directory(&ListDirectory { path: "dir-link".into() });
        assert!(matches!(listing, Err(Error::PermissionDenied(_))), "{listing:?}");
        assert_eq!(std::fs::read_to_string(tmp.path().join("secret.txt")).unwrap(), "host secret");
        assert!(!tmp.path().join("planted.txt").exists());
        // Deleting a link removes the link only.
        ws.delete_file(&DeleteFile { path: "abs-link".into() }).unwrap();
        assert!(tmp.path().join("secret.txt").exists());
    }

    #[test]
    fn symlinks_inside_the_workspace_work() {
        let (_tmp, ws) = workspace();
        std::fs::write(ws.root().join("real.txt"), "inside").unwrap();
        std::os::unix::fs::symlink("real.txt", ws.root().join("alias.txt")).unwrap();
        let read = ws.read_file(&ReadFile { path: "alias.txt".into(), encoding: Encoding::Utf8 }).unwrap();
        assert_eq!(read.content, "inside");
        let listing = ws.list_directory(&ListDirectory { path: ".".into() }).unwrap();
        let alias = listing.entries.iter().find(|e| e.name == "alias.txt").unwrap();
        assert_eq!(alias.entry_type, EntryType::Symlink);
    }

    #[test]
    fn binary_content_needs_base64() {
        let (_tmp, ws) = workspace();
        std::fs::write(ws.root().join("blob.bin"), [0xff, 0x00, 0xfe]).unwrap();
        let err = ws.read_file(&ReadFile { path: "blob.bin".into(), encoding: Encoding::Utf8 }).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput(m) if m.contains("base64")), "{err:?}");
        let read = ws.read_file(&ReadFile { path: "blob.bin".into(), encoding: Encoding::Base64 }).unwrap();
        assert_eq!(read.content, "/wD+");
        assert_eq!(read.bytes, 3);
    }

    #[test]
    fn the_workspace_root_cannot_be_deleted() {
        let (_tmp, ws) = workspace();
        for root in ["/workspace", ".", "/workspace/"] {
            let err = ws.delete_file(&DeleteFile { path: root.into() }).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{root}: {err:?}");
        }
        assert!(ws.root().exists());
    }
}
