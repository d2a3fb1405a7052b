//! The file commands, through the archive API (never a shell): `write_file`, `read_file`,
//! `create_directory`, `copy_file`; and the resolution of what `list_directory` and
//! `delete_file` act on (the sandbox runs `find` or `rm` with argv only, since the
//! archive API can neither list without downloading every file's content nor delete).
//!
//! Paths arrive as [`WorkspacePath`]s, lexically inside `/workspace`. Symlinks are the
//! remaining way out: the engine resolves them inside the container's root, and
//! extracting an upload through a symlinked directory writes to the container's root
//! filesystem even though it is mounted read-only for the container (measured). So every
//! existing component of a path is looked at (one archive `HEAD` each, ~1 ms) before it
//! is used: a symlink whose fully resolved target is outside the workspace is refused;
//! one inside is followed; the engine is then only ever given resolved paths of real
//! directories. Sandboxed code could still swap a directory for a symlink between the
//! check and the use; what it can reach that way is its own container's root filesystem
//! (another session's files live in another container).
//!
//! Reads are bounded whatever the guest does: a size the engine reports above the cap is
//! refused before any download, and every download is counted while it streams and cut
//! (dropping the request, which stops the engine's archiving) once it passes the cap, so
//! a file swapped or grown after the look, or a sparse file of a petabyte, costs at most
//! the cap. No buffer is sized from an earlier look.

use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use codebeaker::command::{CopyFile, CreateDirectory, DeleteFile, ListDirectory, ReadFile, WriteFile};
use codebeaker::result::{
    CopyFileResult, CreateDirectoryResult, DeleteFileResult, DirEntry, EntryType, ReadFileResult, WriteFileResult,
};
use codebeaker::workspace::MAX_TRANSFER_BYTES;
use codebeaker::{WorkspacePath, WriteMode};
use futures::StreamExt;

use crate::archive::{self, Owner, ARCHIVE_OVERHEAD};
use crate::container::status_of;
use crate::error::DockerError;

type Result<T, E = DockerError> = std::result::Result<T, E>;

/// Go's `os.FileMode` bits, as the engine reports them in path stats.
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_PERM: u32 = 0o7777;

/// What a path is, per the engine's archive `HEAD`.
#[derive(Debug, Clone)]
struct Stat {
    mode: u32,
    size: u64,
    link_target: String,
}

impl Stat {
    fn is_dir(&self) -> bool {
        self.mode & MODE_DIR != 0
    }
    fn is_symlink(&self) -> bool {
        self.mode & MODE_SYMLINK != 0
    }
}

/// A path walked component by component with symlinks resolved.
#[derive(Debug)]
enum Walk {
    /// The whole path exists; `path` is where it really is.
    Found { path: WorkspacePath, stat: Stat },
    /// `existing` is the deepest existing directory (resolved); `missing` the components
    /// below it that do not exist yet.
    Missing { existing: WorkspacePath, missing: Vec<String> },
}

/// File commands on one container.
pub(crate) struct Files<'a> {
    pub docker: &'a Docker,
    pub container: &'a str,
    pub owner: Owner,
}

fn join(dir: &WorkspacePath, name: &str) -> Result<WorkspacePath> {
    Ok(WorkspacePath::parse(&format!("{dir}/{name}"))?)
}

fn check_size(path: &WorkspacePath, bytes: u64) -> Result<()> {
    if bytes > MAX_TRANSFER_BYTES {
        return Err(DockerError::TooLarge { path: path.to_string(), size: Some(bytes) });
    }
    Ok(())
}

impl Files<'_> {
    async fn stat(&self, path: &WorkspacePath) -> Result<Option<Stat>> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(&path.to_string()).build();
        match self.docker.get_container_archive_info(self.container, Some(options)).await {
            Ok(info) => Ok(Some(Stat {
                mode: info.file_mode,
                size: u64::try_from(info.size).unwrap_or(0),
                link_target: info.link_target,
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(DockerError::engine(format!("look up {path}"), e)),
        }
    }

    /// Walks `path` from the workspace root. Symlinks are followed when they stay inside
    /// the workspace (the last component only if `follow_last`) and refused otherwise.
    async fn walk(&self, path: &WorkspacePath, follow_last: bool) -> Result<Walk> {
        let components: Vec<&str> = if path.is_root() { Vec::new() } else { path.relative().split('/').collect() };
        let mut current = WorkspacePath::root();
        let mut stat = Stat { mode: MODE_DIR | 0o755, size: 0, link_target: String::new() };
        for (index, name) in components.iter().enumerate() {
            let last = index + 1 == components.len();
            let candidate = join(&current, name)?;
            let Some(found) = self.stat(&candidate).await? else {
                let missing = components[index..].iter().map(|c| (*c).to_owned()).collect();
                return Ok(Walk::Missing { existing: current, missing });
            };
            if found.is_symlink() && (!last || follow_last) {
                // The engine reports the target fully resolved, relative to the container root.
                let target = WorkspacePath::parse(&found.link_target).map_err(|_| DockerError::Escapes {
                    path: path.to_string(),
                    link: candidate.to_string(),
                    target: found.link_target.clone(),
                })?;
                let Some(resolved) = self.stat(&target).await? else {
                    return Err(DockerError::NotFound { path: path.to_string() });
                };
                if resolved.is_symlink() {
                    return Err(DockerError::LinkLoop { path: path.to_string() });
                }
                current = target;
                stat = resolved;
            } else {
                current = candidate;
                stat = found;
            }
            if !last && !stat.is_dir() {
                return Err(DockerError::NotADirectory { path: current.to_string() });
            }
        }
        Ok(Walk::Found { path: current, stat })
    }

    /// Downloads the file at `path`, keeping at most `limit` bytes: the archive is counted
    /// while it streams and the request dropped once it is longer than a file of `limit`
    /// bytes can make it.
    async fn download(&self, path: &WorkspacePath, shown: &WorkspacePath, limit: u64) -> Result<Vec<u8>> {
        let options = DownloadFromContainerOptionsBuilder::new().path(&path.to_string()).build();
        let mut stream = self.docker.download_from_container(self.container, Some(options));
        let most = usize::try_from(limit.saturating_add(ARCHIVE_OVERHEAD)).unwrap_or(usize::MAX);
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) if body.len().saturating_add(bytes.len()) > most => {
                    return Err(DockerError::TooLarge { path: shown.to_string(), size: None });
                }
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(e) if status_of(&e) == Some(404) => return Err(DockerError::NotFound { path: shown.to_string() }),
                Err(e) => return Err(DockerError::engine(format!("read {shown}"), e)),
            }
        }
        archive::single_file(&body, &shown.to_string(), limit)
    }

    async fn upload(&self, dir: &WorkspacePath, tar: Vec<u8>, shown: &WorkspacePath) -> Result<()> {
        let options =
            UploadToContainerOptionsBuilder::new().path(&dir.to_string()).no_overwrite_dir_non_dir("true").build();
        let uploaded = self.docker.upload_to_container(self.container, Some(options), bollard::body_full(tar.into()));
        uploaded.await.map_err(|e| match &e {
            // The engine says so only in words.
            bollard::errors::Error::DockerResponseServerError { message, .. } if message.contains("no space left") => {
                DockerError::NoSpace { path: shown.to_string(), source: e }
            }
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
                DockerError::NotFound { path: dir.to_string() }
            }
            _ => DockerError::engine(format!("write {shown}"), e),
        })
    }

    /// Writes `data` at `path` (parents created), keeping an existing file's mode.
    async fn put(&self, path: &WorkspacePath, data: &[u8], mode: WriteMode) -> Result<()> {
        let (dir, dirs, name, file_mode, old) = match self.walk(path, true).await? {
            Walk::Found { stat, .. } if stat.is_dir() => {
                return Err(DockerError::IsADirectory { path: path.to_string() })
            }
            Walk::Found { path: real, stat } => {
                let old = match mode {
                    WriteMode::Append => {
                        check_size(path, stat.size.saturating_add(data.len() as u64))?;
                        // The cap, not the size seen above: the file may have grown since.
                        self.download(&real, path, MAX_TRANSFER_BYTES - data.len() as u64).await?
                    }
                    WriteMode::Create => Vec::new(),
                };
                let dir = real.parent().unwrap_or_else(WorkspacePath::root);
                let name = real.file_name().unwrap_or_default().to_owned();
                (dir, Vec::new(), name, stat.mode & MODE_PERM, old)
            }
            Walk::Missing { existing, missing } => {
                let name = missing.join("/");
                let dirs = (1..missing.len()).map(|n| missing[..n].join("/")).collect();
                (existing, dirs, name, 0o644, Vec::new())
            }
        };
        let content = if old.is_empty() { data.to_vec() } else { [old, data.to_vec()].concat() };
        let tar = archive::build(self.owner, &dirs, Some((&name, &content, file_mode)), &path.to_string())?;
        self.upload(&dir, tar, path).await
    }

    /// The bytes of the file at `path` (symlinks inside the workspace followed).
    async fn get(&self, path: &WorkspacePath) -> Result<Vec<u8>> {
        match self.walk(path, true).await? {
            Walk::Missing { .. } => Err(DockerError::NotFound { path: path.to_string() }),
            Walk::Found { stat, .. } if stat.is_dir() => Err(DockerError::IsADirectory { path: path.to_string() }),
            Walk::Found { path: real, stat } => {
                check_size(path, stat.size)?;
                self.download(&real, path, MAX_TRANSFER_BYTES).await
            }
        }
    }

    /// `write_file`.
    pub async fn write_file(&self, command: &WriteFile) -> Result<WriteFileResult> {
        let path = WorkspacePath::parse(&command.path)?;
        let bytes = command.decoded_content()?;
        check_size(&path, bytes.len() as u64)?;
        self.put(&path, &bytes, command.mode).await?;
        Ok(WriteFileResult { path: path.to_string(), bytes: bytes.len() as u64 })
    }

    /// `read_file`.
    pub async fn read_file(&self, command: &ReadFile) -> Result<ReadFileResult> {
        let path = WorkspacePath::parse(&command.path)?;
        let bytes = self.get(&path).await?;
        let size = bytes.len() as u64;
        Ok(ReadFileResult { content: command.encoding.encode(bytes, &path.to_string())?, bytes: size })
    }

    /// `create_directory` (parents included; an existing directory is fine).
    pub async fn create_directory(&self, command: &CreateDirectory) -> Result<CreateDirectoryResult> {
        let path = WorkspacePath::parse(&command.path)?;
        match self.walk(&path, true).await? {
            Walk::Found { stat, .. } if stat.is_dir() => {}
            Walk::Found { .. } => return Err(codebeaker::Error::AlreadyExists { path: path.to_string() }.into()),
            Walk::Missing { existing, missing } => {
                let dirs: Vec<String> = (1..=missing.len()).map(|n| missing[..n].join("/")).collect();
                let tar = archive::build(self.owner, &dirs, None, &path.to_string())?;
                self.upload(&existing, tar, &path).await?;
            }
        }
        Ok(CreateDirectoryResult { path: path.to_string() })
    }

    /// `copy_file` (destination parents created, destination replaced, mode kept).
    pub async fn copy_file(&self, command: &CopyFile) -> Result<CopyFileResult> {
        let source = WorkspacePath::parse(&command.source_path)?;
        let destination = WorkspacePath::parse(&command.destination_path)?;
        let bytes = self.get(&source).await.map_err(|e| match e {
            DockerError::IsADirectory { .. } => {
                codebeaker::Error::InvalidInput(format!("{source} is a directory; copy_file copies files")).into()
            }
            other => other,
        })?;
        self.put(&destination, &bytes, WriteMode::Create).await?;
        Ok(CopyFileResult {
            source_path: source.to_string(),
            destination_path: destination.to_string(),
            bytes: bytes.len() as u64,
        })
    }

    /// Resolves what `delete_file` removes: the entry itself (a symlink, not its target)
    /// in a resolved parent. The removal is an exec (see [`crate::sandbox`]).
    pub async fn deletion_target(&self, command: &DeleteFile) -> Result<(WorkspacePath, WorkspacePath)> {
        let path = WorkspacePath::parse(&command.path)?;
        if path.is_root() {
            let message = format!("{path} is the workspace root and cannot be deleted");
            return Err(codebeaker::Error::InvalidInput(message).into());
        }
        match self.walk(&path, false).await? {
            Walk::Missing { .. } => Err(DockerError::NotFound { path: path.to_string() }),
            Walk::Found { path: real, .. } => Ok((path, real)),
        }
    }

    /// Resolves the directory `list_directory` lists (symlinks inside the workspace
    /// followed). The listing is a `find` exec (see [`crate::sandbox`]) that reads names
    /// and sizes only, never contents.
    pub async fn listing_target(&self, command: &ListDirectory) -> Result<(WorkspacePath, WorkspacePath)> {
        let path = WorkspacePath::parse(&command.path)?;
        match self.walk(&path, true).await? {
            Walk::Missing { .. } => Err(DockerError::NotFound { path: path.to_string() }),
            Walk::Found { stat, .. } if !stat.is_dir() => Err(DockerError::NotADirectory { path: path.to_string() }),
            Walk::Found { path: real, .. } => Ok((path, real)),
        }
    }
}

/// `find` arguments that print each direct child of `dir` as `TYPE SIZE NAME\0`. `find`
/// does not follow a starting point that is (or was swapped for) a symlink: it then lists
/// nothing rather than the link's target.
pub(crate) fn listing_argv(dir: &WorkspacePath) -> Vec<String> {
    ["find", "-P", &dir.to_string(), "-mindepth", "1", "-maxdepth", "1", "-printf", "%y %s %P\\0"]
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
}

/// The entries of a [`listing_argv`] run, sorted by name; symlinks reported, not followed.
pub(crate) fn parse_listing(output: &str) -> Vec<DirEntry> {
    let mut entries: Vec<DirEntry> = output
        .split('\0')
        .filter_map(|record| {
            let mut fields = record.splitn(3, ' ');
            let kind = fields.next()?;
            let size = fields.next()?.parse::<u64>().unwrap_or(0);
            let name = fields.next().filter(|n| !n.is_empty())?;
            let entry_type = match kind {
                "d" => EntryType::Directory,
                "l" => EntryType::Symlink,
                _ => EntryType::File,
            };
            let size = if entry_type == EntryType::File { size } else { 0 };
            Some(DirEntry { name: name.to_owned(), entry_type, size })
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// Kept for the reader: a `DeleteFileResult` is built by the sandbox after the `rm` exec.
pub(crate) fn deleted(path: &WorkspacePath) -> DeleteFileResult {
    DeleteFileResult { path: path.to_string(), deleted: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_output_parses_sorted_with_types() {
        let out = "f 5 z.txt\0d 4096 app\0l 9 link\0f 3 with space.txt\0";
        let got: Vec<(String, EntryType, u64)> =
            parse_listing(out).into_iter().map(|e| (e.name, e.entry_type, e.size)).collect();
        assert_eq!(
            got,
            [
                ("app".to_owned(), EntryType::Directory, 0),
                ("link".to_owned(), EntryType::Symlink, 0),
                ("with space.txt".to_owned(), EntryType::File, 3),
                ("z.txt".to_owned(), EntryType::File, 5),
            ]
        );
        assert!(parse_listing("").is_empty());
    }
}
