//! [`Files`]: the session's `/workspace`, through the file commands.

use codebeaker::command::WriteFile;
use codebeaker::{Command, Encoding, EntryType, IntoWorkspacePath as _, WriteMode};

use super::models::EntryInfo;
use super::Sandbox;
use crate::error::{ClientError, Result};

/// Bytes one file command moves in [`Files::upload`] and [`Files::download`] (and
/// [`Files::read_bytes`]): the size of the chunks the server's own file routes move.
const CHUNK_BYTES: usize = 1024 * 1024;

/// `sandbox.files()`: the session's `/workspace` (paths are absolute beneath it or
/// relative to it).
///
/// Every call goes over the JSON-RPC connection as file commands. The Python and
/// TypeScript SDKs stream [`Files::upload`] and [`Files::download`] through the HTTP
/// file routes (`PUT`/`GET /v1/sessions/{id}/files/{path}`); this client, which has no
/// HTTP client, moves them as file commands of 1 MiB each (`write_file` then appends,
/// `read_file` ranges), so files of any size go through too, a chunk at a time. Unlike
/// the routes' upload, one that fails part way leaves the chunks written before.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    pub(crate) sandbox: &'a Sandbox,
}

impl Files<'_> {
    /// Runs a file command: its result, or [`ClientError::Failed`].
    async fn command(&self, command: codebeaker::Result<Command>) -> Result<codebeaker::CommandResult> {
        let command = command.map_err(ClientError::Failed)?;
        let outcome = self.sandbox.session().execute(command).await?;
        outcome.into_result().map_err(ClientError::Failed)
    }

    /// Writes `data` to `path`, replacing it (parents created): text is sent as it is,
    /// other bytes as base64, more than 1 MiB as an [`upload`](Files::upload).
    pub async fn write(&self, path: &str, data: impl AsRef<[u8]>) -> Result<EntryInfo> {
        let data = data.as_ref();
        let size = if data.len() > CHUNK_BYTES {
            self.upload(path, data).await?
        } else {
            let command = match std::str::from_utf8(data) {
                Ok(text) => Command::write_file(path, text),
                Err(_) => write_bytes(path, data, WriteMode::Create),
            };
            written(self.command(command).await?)?
        };
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        Ok(EntryInfo { name, r#type: EntryType::File, size, path: path.to_owned() })
    }

    /// The file at `path` as text; [`ClientError::Failed`] (`invalid_input`) when it is
    /// not UTF-8.
    pub async fn read(&self, path: &str) -> Result<String> {
        String::from_utf8(self.read_bytes(path).await?).map_err(|error| {
            let message = format!("{path} is not UTF-8 text; read it with read_bytes");
            ClientError::Failed(codebeaker::Error::invalid_input(message).with_source(error))
        })
    }

    /// The file at `path`, as bytes (read a chunk at a time, any size).
    pub async fn read_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        loop {
            let read = self.command(Command::read_range(path, bytes.len() as u64, CHUNK_BYTES as u64)).await?;
            let read = read.into_read_file().ok_or_else(|| unexpected("read_file"))?;
            let chunk = Encoding::Base64.decode(&read.content).map_err(ClientError::Failed)?;
            if read.eof {
                bytes.extend(chunk);
                return Ok(bytes);
            }
            if chunk.is_empty() {
                return Err(ClientError::Protocol(format!("read_file of {path} gave nothing before its end")));
            }
            bytes.extend(chunk);
        }
    }

    /// The entries of the directory at `path` (`.` for the workspace), sorted by name.
    pub async fn list(&self, path: &str) -> Result<Vec<EntryInfo>> {
        let listed = self.command(Command::list_directory(path)).await?;
        let listed = listed.into_list_directory().ok_or_else(|| unexpected("list_directory"))?;
        let base = listed.path.trim_end_matches('/');
        let entry = |e: codebeaker::DirEntry| EntryInfo {
            path: format!("{base}/{}", e.name),
            name: e.name,
            r#type: e.entry_type,
            size: e.size,
        };
        Ok(listed.entries.into_iter().map(entry).collect())
    }

    /// Whether `path` exists (listed in its directory); `false` also when its directory
    /// cannot be listed.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        let path = path.trim_end_matches('/');
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        match self.list(if parent.is_empty() { "." } else { parent }).await {
            Ok(entries) => Ok(entries.iter().any(|entry| entry.name == name)),
            Err(ClientError::Failed(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Creates the directory `path` and its parents.
    pub async fn make_dir(&self, path: &str) -> Result<()> {
        self.command(Command::create_directory(path)).await.map(drop)
    }

    /// Deletes the file (or empty directory) at `path`.
    pub async fn remove(&self, path: &str) -> Result<()> {
        self.command(Command::delete_file(path)).await.map(drop)
    }

    /// Writes `data` to `path` (replacing it), a chunk at a time, any size: the bytes
    /// written.
    pub async fn upload(&self, path: &str, data: impl AsRef<[u8]>) -> Result<u64> {
        let data = data.as_ref();
        let mut total =
            written(self.command(write_bytes(path, &data[..data.len().min(CHUNK_BYTES)], WriteMode::Create)).await?)?;
        for chunk in data.chunks(CHUNK_BYTES).skip(1) {
            total += written(self.command(write_bytes(path, chunk, WriteMode::Append)).await?)?;
        }
        Ok(total)
    }

    /// The whole file at `path`, a chunk at a time, any size (the same as
    /// [`Files::read_bytes`]; the SDKs' name for a transfer).
    pub async fn download(&self, path: &str) -> Result<Vec<u8>> {
        self.read_bytes(path).await
    }
}

/// `write_file` of `bytes` as base64.
fn write_bytes(path: &str, bytes: &[u8], mode: WriteMode) -> codebeaker::Result<Command> {
    Ok(Command::WriteFile(WriteFile {
        path: path.into_workspace_path()?,
        content: Encoding::Base64.encode(bytes.to_vec(), path)?,
        mode,
        encoding: Encoding::Base64,
    }))
}

/// The bytes a `write_file` wrote.
fn written(result: codebeaker::CommandResult) -> Result<u64> {
    Ok(result.into_write_file().ok_or_else(|| unexpected("write_file"))?.bytes)
}

fn unexpected(command: &str) -> ClientError {
    ClientError::Protocol(format!("{command} answered with another command's result"))
}
