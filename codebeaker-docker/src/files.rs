//! The file commands, through the archive API (never a shell): `write_file`, `read_file`,
//! `create_directory`, `copy_file`, `list_directory`; and `delete_file`, which the API
//! cannot do, as an `rm` exec with argv only.
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

use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use codebeaker::command::{CopyFile, CreateDirectory, DeleteFile, ListDirectory, ReadFile, WriteFile};
use codebeaker::result::{
    CopyFileResult, CreateDirectoryResult, DeleteFileResult, ListDirectoryResult, ReadFileResult, WriteFileResult,
};
use codebeaker::workspace::MAX_TRANSFER_BYTES;
use codebeaker::{Error, WorkspacePath, WriteMode, WORKSPACE_ROOT};
use futures::{StreamExt, TryStreamExt};

use crate::archive::{self, Owner};
use crate::container::{engine_error, status_of};

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

fn join(dir: &WorkspacePath, name: &str) -> Result<WorkspacePath, Error> {
    WorkspacePath::parse(&format!("{dir}/{name}"))
}

fn check_size(path: &WorkspacePath, bytes: u64) -> Result<(), Error> {
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Error::LimitReached(format!(
            "{path} is {bytes} bytes; file commands move at most {MAX_TRANSFER_BYTES} bytes at once"
        )));
    }
    Ok(())
}

impl Files<'_> {
    async fn stat(&self, path: &WorkspacePath) -> Result<Option<Stat>, Error> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(&path.to_string()).build();
        match self.docker.get_container_archive_info(self.container, Some(options)).await {
            Ok(info) => Ok(Some(Stat {
                mode: info.file_mode,
                size: u64::try_from(info.size).unwrap_or(0),
                link_target: info.link_target,
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(engine_error(&format!("look up {path}"), e)),
        }
    }

    /// Walks `path` from the workspace root. Symlinks are followed when they stay inside
    /// the workspace (the last component only if `follow_last`) and refused otherwise.
    async fn walk(&self, path: &WorkspacePath, follow_last: bool) -> Result<Walk, Error> {
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
                let target = WorkspacePath::parse(&found.link_target).map_err(|_| {
                    Error::PermissionDenied(format!(
                        "{path}: {candidate} is a symlink to {}, outside {WORKSPACE_ROOT}",
                        found.link_target
                    ))
                })?;
                let Some(resolved) = self.stat(&target).await? else {
                    return Err(Error::NotFound { path: path.to_string() });
                };
                if resolved.is_symlink() {
                    return Err(Error::InvalidInput(format!("{path}: too many levels of symbolic links")));
                }
                current = target;
                stat = resolved;
            } else {
                current = candidate;
                stat = found;
            }
            if !last && !stat.is_dir() {
                return Err(Error::InvalidInput(format!("{current} is not a directory")));
            }
        }
        Ok(Walk::Found { path: current, stat })
    }

    async fn download(&self, path: &WorkspacePath, shown: &WorkspacePath) -> Result<Vec<u8>, Error> {
        let options = DownloadFromContainerOptionsBuilder::new().path(&path.to_string()).build();
        let mut stream = self.docker.download_from_container(self.container, Some(options));
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(e) if status_of(&e) == Some(404) => return Err(Error::NotFound { path: shown.to_string() }),
                Err(e) => return Err(engine_error(&format!("read {shown}"), e)),
            }
        }
        archive::single_file(&body, &shown.to_string())
    }

    async fn upload(&self, dir: &WorkspacePath, tar: Vec<u8>, shown: &WorkspacePath) -> Result<(), Error> {
        let options =
            UploadToContainerOptionsBuilder::new().path(&dir.to_string()).no_overwrite_dir_non_dir("true").build();
        self.docker.upload_to_container(self.container, Some(options), bollard::body_full(tar.into())).await.map_err(
            |e| match &e {
                bollard::errors::Error::DockerResponseServerError { message, .. }
                    if message.contains("no space left") =>
                {
                    Error::LimitReached(format!("the workspace is full; cannot write {shown}"))
                }
                bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
                    Error::NotFound { path: dir.to_string() }
                }
                _ => engine_error(&format!("write {shown}"), e),
            },
        )
    }

    /// Writes `data` at `path` (parents created), keeping an existing file's mode.
    async fn put(&self, path: &WorkspacePath, data: &[u8], mode: WriteMode) -> Result<(), Error> {
        let (dir, dirs, name, file_mode, old) = match self.walk(path, true).await? {
            Walk::Found { stat, .. } if stat.is_dir() => {
                return Err(Error::InvalidInput(format!("{path} is a directory")))
            }
            Walk::Found { path: real, stat } => {
                let old = match mode {
                    WriteMode::Append => {
                        check_size(path, stat.size + data.len() as u64)?;
                        self.download(&real, path).await?
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
        let tar = archive::build(self.owner, &dirs, Some((&name, &content, file_mode)))?;
        self.upload(&dir, tar, path).await
    }

    /// The bytes and mode of the file at `path` (symlinks inside the workspace followed).
    async fn get(&self, path: &WorkspacePath) -> Result<(Vec<u8>, u32), Error> {
        match self.walk(path, true).await? {
            Walk::Missing { .. } => Err(Error::NotFound { path: path.to_string() }),
            Walk::Found { stat, .. } if stat.is_dir() => Err(Error::InvalidInput(format!("{path} is a directory"))),
            Walk::Found { path: real, stat } => {
                check_size(path, stat.size)?;
                Ok((self.download(&real, path).await?, stat.mode & MODE_PERM))
            }
        }
    }

    /// `write_file`.
    pub async fn write_file(&self, command: &WriteFile) -> Result<WriteFileResult, Error> {
        let path = WorkspacePath::parse(&command.path)?;
        let bytes = command.decoded_content()?;
        check_size(&path, bytes.len() as u64)?;
        self.put(&path, &bytes, command.mode).await?;
        Ok(WriteFileResult { path: path.to_string(), bytes: bytes.len() as u64 })
    }

    /// `read_file`.
    pub async fn read_file(&self, command: &ReadFile) -> Result<ReadFileResult, Error> {
        let path = WorkspacePath::parse(&command.path)?;
        let (bytes, _) = self.get(&path).await?;
        let size = bytes.len() as u64;
        Ok(ReadFileResult { content: command.encoding.encode(bytes, &path.to_string())?, bytes: size })
    }

    /// `create_directory` (parents included; an existing directory is fine).
    pub async fn create_directory(&self, command: &CreateDirectory) -> Result<CreateDirectoryResult, Error> {
        let path = WorkspacePath::parse(&command.path)?;
        match self.walk(&path, true).await? {
            Walk::Found { stat, .. } if stat.is_dir() => {}
            Walk::Found { .. } => return Err(Error::AlreadyExists { path: path.to_string() }),
            Walk::Missing { existing, missing } => {
                let dirs: Vec<String> = (1..=missing.len()).map(|n| missing[..n].join("/")).collect();
                let tar = archive::build(self.owner, &dirs, None)?;
                self.upload(&existing, tar, &path).await?;
            }
        }
        Ok(CreateDirectoryResult { path: path.to_string() })
    }

    /// `copy_file` (destination parents created, destination replaced, mode kept).
    pub async fn copy_file(&self, command: &CopyFile) -> Result<CopyFileResult, Error> {
        let source = WorkspacePath::parse(&command.source_path)?;
        let destination = WorkspacePath::parse(&command.destination_path)?;
        let (bytes, _mode) = self.get(&source).await.map_err(|e| match e {
            Error::InvalidInput(m) if m.ends_with("is a directory") => {
                Error::InvalidInput(format!("{source} is a directory; copy_file copies files"))
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
    pub async fn deletion_target(&self, command: &DeleteFile) -> Result<(WorkspacePath, WorkspacePath), Error> {
        let path = WorkspacePath::parse(&command.path)?;
        if path.is_root() {
            return Err(Error::InvalidInput(format!("{path} is the workspace root and cannot be deleted")));
        }
        match self.walk(&path, false).await? {
            Walk::Missing { .. } => Err(Error::NotFound { path: path.to_string() }),
            Walk::Found { path: real, .. } => Ok((path, real)),
        }
    }

    /// `list_directory`: entries sorted by name; symlinks reported, not followed.
    pub async fn list_directory(&self, command: &ListDirectory) -> Result<ListDirectoryResult, Error> {
        let path = WorkspacePath::parse(&command.path)?;
        let real = match self.walk(&path, true).await? {
            Walk::Missing { .. } => return Err(Error::NotFound { path: path.to_string() }),
            Walk::Found { stat, .. } if !stat.is_dir() => {
                return Err(Error::InvalidInput(format!("{path} is not a directory")))
            }
            Walk::Found { path: real, .. } => real,
        };
        let options = DownloadFromContainerOptionsBuilder::new().path(&real.to_string()).build();
        let stream = self
            .docker
            .download_from_container(self.container, Some(options))
            .map_err(|e| std::io::Error::other(e.to_string()));
        // Parse as it arrives, on a blocking thread: a big tree is read past, never held.
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let shown = path.to_string();
        let entries = tokio::task::spawn_blocking(move || archive::children(reader, &shown))
            .await
            .map_err(|e| Error::Internal(format!("listing {path} failed: {e}")))??;
        Ok(ListDirectoryResult { path: path.to_string(), entries })
    }
}

/// Kept for the reader: a `DeleteFileResult` is built by the sandbox after the `rm` exec.
pub(crate) fn deleted(path: &WorkspacePath) -> DeleteFileResult {
    DeleteFileResult { path: path.to_string(), deleted: true }
}
