//! The file-system part of the Deno namespace (`Deno.readTextFile`, `writeFile`, `readDir`,
//! `mkdir`, `remove`, `stat`). Each op resolves and checks its path against the session's
//! permissions before it touches the host, then works on the resolved host path.
//!
//! Bounds: a read takes the file's size from the session's [`BufferBudget`] before it
//! allocates and never reads more than it was granted (a file that grows meanwhile costs
//! more grants, not an unbounded buffer); every write in `/workspace` asks the
//! workspace's [`WorkspaceQuota`] first and fails with a `QuotaExceeded` error when it
//! would not fit; what the ops create is private (0700 directories, 0600 files).

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use codebeaker::workspace::{QuotaError, Reservation, WorkspaceQuota, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use deno_core::{JsBuffer, OpState};
use deno_error::JsErrorBox;
use serde::Serialize;
use tokio::io::AsyncReadExt as _;

use super::budget::BufferGrant;
use super::session;
use crate::permissions::{Access, ResolvedPath};

/// Largest file the read ops load at once; bigger files would only fill the heap.
const MAX_READ_BYTES: u64 = 256 * 1024 * 1024;
/// How much more a read asks for when a file turns out bigger than it looked.
const READ_CHUNK_BYTES: u64 = 64 * 1024;
/// Most entries `Deno.readDir` collects (the listing travels to JS in one piece).
const MAX_DIR_ENTRIES: usize = 100_000;

/// Checks `path` for `access` with the session's permissions.
fn check(state: &Rc<RefCell<OpState>>, path: &str, access: Access) -> Result<ResolvedPath, JsErrorBox> {
    let state = state.borrow();
    Ok(session(&state)?.permissions.check_path(path, access)?)
}

/// Maps an I/O error to the Deno error class and message (`NotFound: No such file or
/// directory (os error 2): readfile '/workspace/x'`).
fn io_error(err: std::io::Error, syscall: &str, path: &ResolvedPath) -> JsErrorBox {
    use std::io::ErrorKind;
    let class = match err.kind() {
        ErrorKind::NotFound => "NotFound",
        ErrorKind::AlreadyExists => "AlreadyExists",
        ErrorKind::PermissionDenied => "PermissionDenied",
        ErrorKind::IsADirectory => "IsADirectory",
        ErrorKind::NotADirectory => "NotADirectory",
        ErrorKind::DirectoryNotEmpty => "DirectoryNotEmpty",
        _ => "Error",
    };
    JsErrorBox::new(class, format!("{err}: {syscall} '{}'", path.shown))
}

fn too_big(path: &ResolvedPath, bytes: u64) -> JsErrorBox {
    JsErrorBox::range_error(format!(
        "{} is {bytes} bytes or more; files above {MAX_READ_BYTES} bytes cannot be read at once",
        path.shown
    ))
}

/// Reads a whole file into a buffer charged to the session's budget; the grant comes
/// back with the bytes and must live as long as they do on the Rust side.
async fn read_bytes(
    state: &Rc<RefCell<OpState>>,
    path: String,
) -> Result<(Vec<u8>, BufferGrant, ResolvedPath), JsErrorBox> {
    let path = check(state, &path, Access::Read)?;
    let budget = session(&state.borrow())?.buffers.clone();
    let mut file = tokio::fs::File::open(&path.host).await.map_err(|e| io_error(e, "readfile", &path))?;
    // The size of what was opened, not of a path looked at earlier.
    let metadata = file.metadata().await.map_err(|e| io_error(e, "readfile", &path))?;
    if metadata.is_dir() {
        return Err(JsErrorBox::new(
            "IsADirectory",
            format!("Is a directory (os error 21): readfile '{}'", path.shown),
        ));
    }
    if metadata.len() > MAX_READ_BYTES {
        return Err(too_big(&path, metadata.len()));
    }
    let what = format!("reading {}", path.shown);
    let mut grant = budget.take(metadata.len(), &what)?;
    let mut bytes: Vec<u8> = Vec::new();
    bytes.try_reserve_exact(metadata.len() as usize).map_err(|_| grant_failed(metadata.len(), &what))?;
    loop {
        if bytes.len() == bytes.capacity() {
            // Full: is there more (a growing file, a special file)? Look with one byte.
            let mut probe = [0u8; 1];
            if file.read(&mut probe).await.map_err(|e| io_error(e, "read", &path))? == 0 {
                break;
            }
            // Bigger than it looked: charge before growing.
            let wanted = bytes.len() as u64 + READ_CHUNK_BYTES;
            if wanted > MAX_READ_BYTES + READ_CHUNK_BYTES {
                return Err(too_big(&path, bytes.len() as u64));
            }
            grant.grow_to(wanted, &what)?;
            bytes.try_reserve_exact(READ_CHUNK_BYTES as usize).map_err(|_| grant_failed(wanted, &what))?;
            bytes.push(probe[0]);
        }
        let spare = (bytes.capacity() - bytes.len()) as u64;
        let read = (&mut file).take(spare).read_buf(&mut bytes).await.map_err(|e| io_error(e, "read", &path))?;
        if read == 0 {
            break;
        }
    }
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(too_big(&path, bytes.len() as u64));
    }
    Ok((bytes, grant, path))
}

/// The allocator refused what the budget allowed (the process is short of memory).
fn grant_failed(bytes: u64, what: &str) -> JsErrorBox {
    JsErrorBox::range_error(format!("memory limit exceeded: {what} could not allocate {bytes} bytes"))
}

/// `Deno.readFile`.
#[deno_core::op2]
#[buffer]
pub(crate) async fn op_cb_read_file(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
) -> Result<Vec<u8>, JsErrorBox> {
    let (bytes, _grant, _path) = read_bytes(&state, path).await?;
    Ok(bytes)
}

/// `Deno.readTextFile` (invalid UTF-8 is replaced, as Deno's decoder does).
#[deno_core::op2]
#[string]
pub(crate) async fn op_cb_read_text_file(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
) -> Result<String, JsErrorBox> {
    let (bytes, mut grant, path) = read_bytes(&state, path).await?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(invalid) => {
            // The replaced text is a second buffer as big again.
            let doubled = grant.bytes().saturating_add(invalid.as_bytes().len() as u64);
            grant.grow_to(doubled, &format!("decoding {}", path.shown))?;
            Ok(String::from_utf8_lossy(invalid.as_bytes()).into_owned())
        }
    }
}

/// The quota of the session's workspace when `path` is in it (granted host paths outside
/// it are the operator's to size).
fn quota_for(state: &Rc<RefCell<OpState>>, path: &ResolvedPath) -> Result<Option<WorkspaceQuota>, JsErrorBox> {
    let state = state.borrow();
    let session = session(&state)?;
    Ok(path.host.starts_with(session.permissions.workspace()).then(|| session.quota.clone()))
}

/// A quota refusal in Deno's manner: `QuotaExceeded: workspace quota of 256 MiB exceeded
/// writing /workspace/x`.
fn quota_error(err: QuotaError) -> JsErrorBox {
    match err {
        QuotaError::Exceeded { .. } => JsErrorBox::new("QuotaExceeded", err.to_string()),
        QuotaError::Measure { .. } => JsErrorBox::generic(err.to_string()),
    }
}

/// Directories missing above and at `dir` (up to the first that exists).
async fn missing_dirs(dir: &Path) -> u64 {
    let mut missing = 0;
    let mut probe = Some(dir);
    while let Some(dir) = probe {
        if tokio::fs::symlink_metadata(dir).await.is_ok() {
            break;
        }
        missing += 1;
        probe = dir.parent();
    }
    missing
}

/// `Deno.writeFile` / `Deno.writeTextFile` (the JS side encodes text): `append` adds to
/// the end, `create: false` refuses a missing file.
#[deno_core::op2]
pub(crate) async fn op_cb_write_file(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
    #[buffer] data: JsBuffer,
    append: bool,
    create: bool,
) -> Result<(), JsErrorBox> {
    use tokio::io::AsyncWriteExt as _;
    let path = check(&state, &path, Access::Write)?;
    let _reservation: Option<Reservation> = match quota_for(&state, &path)? {
        Some(quota) => {
            let before = tokio::fs::metadata(&path.host).await.ok().filter(|m| m.is_file()).map(|m| m.len());
            let after = if append { before.unwrap_or(0) } else { 0 }.saturating_add(data.len() as u64);
            Some(quota.reserve(&path.shown, before, after).map_err(quota_error)?)
        }
        None => None,
    };
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(create).mode(PRIVATE_FILE_MODE);
    if append {
        options.append(true);
    } else {
        options.truncate(true);
    }
    let mut file = options.open(&path.host).await.map_err(|e| io_error(e, "open", &path))?;
    file.write_all(&data).await.map_err(|e| io_error(e, "write", &path))?;
    file.flush().await.map_err(|e| io_error(e, "write", &path))
}

/// One entry of `Deno.readDir`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirEntry {
    name: String,
    is_file: bool,
    is_directory: bool,
    is_symlink: bool,
}

/// `Deno.readDir` (collected; the JS side makes it an async iterable).
#[deno_core::op2]
#[serde]
pub(crate) async fn op_cb_read_dir(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
) -> Result<Vec<DirEntry>, JsErrorBox> {
    let path = check(&state, &path, Access::Read)?;
    let mut listing = tokio::fs::read_dir(&path.host).await.map_err(|e| io_error(e, "readdir", &path))?;
    let mut entries = Vec::new();
    while let Some(entry) = listing.next_entry().await.map_err(|e| io_error(e, "readdir", &path))? {
        if entries.len() == MAX_DIR_ENTRIES {
            return Err(JsErrorBox::range_error(format!(
                "{} has more than {MAX_DIR_ENTRIES} entries; Deno.readDir lists at most that many",
                path.shown
            )));
        }
        let kind = entry.file_type().await.map_err(|e| io_error(e, "readdir", &path))?;
        entries.push(DirEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            is_file: kind.is_file(),
            is_directory: kind.is_dir(),
            is_symlink: kind.is_symlink(),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// `Deno.mkdir` (`recursive` creates parents and accepts an existing directory).
#[deno_core::op2]
pub(crate) async fn op_cb_mkdir(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
    recursive: bool,
) -> Result<(), JsErrorBox> {
    let path = check(&state, &path, Access::Write)?;
    let _reservation: Option<Reservation> = match quota_for(&state, &path)? {
        Some(quota) => {
            let missing = if recursive { missing_dirs(&path.host).await } else { 1 };
            Some(quota.reserve_dirs(&path.shown, missing).map_err(quota_error)?)
        }
        None => None,
    };
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(recursive).mode(PRIVATE_DIR_MODE);
    builder.create(&path.host).await.map_err(|e| io_error(e, "mkdir", &path))
}

/// `Deno.remove` (`recursive` removes a directory with its content).
#[deno_core::op2]
pub(crate) async fn op_cb_remove(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
    recursive: bool,
) -> Result<(), JsErrorBox> {
    let path = check(&state, &path, Access::Write)?;
    let root = session(&state.borrow())?.permissions.workspace().to_path_buf();
    if path.host == root {
        return Err(JsErrorBox::new("PermissionDenied", "the workspace root cannot be removed".to_owned()));
    }
    let metadata = tokio::fs::symlink_metadata(&path.host).await.map_err(|e| io_error(e, "remove", &path))?;
    let removed = if metadata.is_dir() {
        if recursive {
            tokio::fs::remove_dir_all(&path.host).await
        } else {
            tokio::fs::remove_dir(&path.host).await
        }
    } else {
        tokio::fs::remove_file(&path.host).await
    };
    removed.map_err(|e| io_error(e, "remove", &path))
}

/// What `Deno.stat` returns (times in milliseconds since the epoch).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileInfo {
    is_file: bool,
    is_directory: bool,
    is_symlink: bool,
    size: u64,
    mtime: Option<f64>,
    atime: Option<f64>,
    birthtime: Option<f64>,
    mode: Option<u32>,
}

/// `Deno.stat` (follows symlinks) and `Deno.lstat` (`lstat: true`).
#[deno_core::op2]
#[serde]
pub(crate) async fn op_cb_stat(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
    lstat: bool,
) -> Result<FileInfo, JsErrorBox> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = check(&state, &path, Access::Read)?;
    let metadata =
        if lstat { tokio::fs::symlink_metadata(&path.host).await } else { tokio::fs::metadata(&path.host).await }
            .map_err(|e| io_error(e, "stat", &path))?;
    let millis = |time: std::io::Result<std::time::SystemTime>| {
        time.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64() * 1000.0)
    };
    Ok(FileInfo {
        is_file: metadata.is_file(),
        is_directory: metadata.is_dir(),
        is_symlink: metadata.file_type().is_symlink(),
        size: metadata.len(),
        mtime: millis(metadata.modified()),
        atime: millis(metadata.accessed()),
        birthtime: millis(metadata.created()),
        mode: Some(metadata.permissions().mode()),
    })
}
