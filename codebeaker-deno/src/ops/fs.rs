//! The file-system part of the Deno namespace (`Deno.readTextFile`, `writeFile`, `readDir`,
//! `mkdir`, `remove`, `stat`). Each op resolves and checks its path against the session's
//! permissions before it touches the host, then works on the resolved host path.

use std::cell::RefCell;
use std::rc::Rc;

use deno_core::{JsBuffer, OpState};
use deno_error::JsErrorBox;
use serde::Serialize;

use super::session;
use crate::permissions::{Access, ResolvedPath};

/// Largest file the read ops load at once; bigger files would only fill the heap.
const MAX_READ_BYTES: u64 = 256 * 1024 * 1024;

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

async fn read_bytes(state: Rc<RefCell<OpState>>, path: String) -> Result<Vec<u8>, JsErrorBox> {
    let path = check(&state, &path, Access::Read)?;
    let metadata = tokio::fs::metadata(&path.host).await.map_err(|e| io_error(e, "readfile", &path))?;
    if metadata.is_dir() {
        return Err(JsErrorBox::new(
            "IsADirectory",
            format!("Is a directory (os error 21): readfile '{}'", path.shown),
        ));
    }
    if metadata.len() > MAX_READ_BYTES {
        return Err(JsErrorBox::range_error(format!(
            "{} is {} bytes; files above {MAX_READ_BYTES} bytes cannot be read at once",
            path.shown,
            metadata.len()
        )));
    }
    tokio::fs::read(&path.host).await.map_err(|e| io_error(e, "readfile", &path))
}

/// `Deno.readFile`.
#[deno_core::op2]
#[buffer]
pub(crate) async fn op_cb_read_file(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
) -> Result<Vec<u8>, JsErrorBox> {
    read_bytes(state, path).await
}

/// `Deno.readTextFile` (invalid UTF-8 is replaced, as Deno's decoder does).
#[deno_core::op2]
#[string]
pub(crate) async fn op_cb_read_text_file(
    state: Rc<RefCell<OpState>>,
    #[string] path: String,
) -> Result<String, JsErrorBox> {
    let bytes = read_bytes(state, path).await?;
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
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
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(create);
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
    let made =
        if recursive { tokio::fs::create_dir_all(&path.host).await } else { tokio::fs::create_dir(&path.host).await };
    made.map_err(|e| io_error(e, "mkdir", &path))
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
