//! Streamed file transfers of a [`HostWorkspace`]: the shared implementation of
//! [`FileStreams`](crate::backend::FileStreams) for backends whose files live on the host
//! (Deno, the test backend).
//!
//! Both directions move [`STREAM_CHUNK_BYTES`] at a time, so memory stays bounded
//! whatever the file's size. An upload asks the workspace's quota before each chunk; when
//! it fails (quota, disk, a body that broke off) what it wrote is undone: a replaced file
//! is removed, an appended one cut back to its old length. Nothing beyond the quota stays.

use std::io::{Seek as _, SeekFrom};
use std::pin::Pin;

use cap_std::fs::{OpenOptions, OpenOptionsExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use crate::backend::FileStreams;
use crate::error::{Error, Result};
use crate::workspace::host::{io_error, PRIVATE_FILE_MODE};
use crate::workspace::{HostWorkspace, WorkspacePath};

/// Size of the pieces a streamed transfer moves at once (1 MiB).
pub const STREAM_CHUNK_BYTES: usize = 1024 * 1024;

/// The bytes of an upload, as the client sends them.
pub type UploadBody = Pin<Box<dyn AsyncRead + Send>>;

/// A file being downloaded: its size when opened, and its bytes from the offset asked
/// for (never more than `size` in all: a file growing meanwhile is cut).
pub struct FileDownload {
    /// Size of the whole file in bytes.
    pub size: u64,
    /// The bytes from the offset on.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

impl std::fmt::Debug for FileDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDownload").field("size", &self.size).finish_non_exhaustive()
    }
}

/// Directories, FIFOs and devices are refused without waiting on them.
#[async_trait::async_trait]
impl FileStreams for HostWorkspace {
    async fn download(&self, path: &WorkspacePath, offset: u64) -> Result<FileDownload> {
        // Opened with the owner's rights; the open file then needs none.
        let (mut file, size) = {
            let _acting = self.act();
            self.open_regular(path)?
        };
        file.seek(SeekFrom::Start(offset.min(size))).map_err(|e| io_error(path, e))?;
        let reader = tokio::fs::File::from_std(file).take(size.saturating_sub(offset));
        Ok(FileDownload { size, reader: Box::pin(reader) })
    }

    async fn upload(&self, path: &WorkspacePath, append: bool, mut body: UploadBody) -> Result<u64> {
        if path.is_root() {
            return Err(Error::invalid_input(format!("{path} is a directory")));
        }
        let mut options = OpenOptions::new();
        options.write(true).create(true).mode(PRIVATE_FILE_MODE).custom_flags(libc::O_NONBLOCK);
        // Created and opened with the owner's rights; the open file then needs none.
        let (_parents, file) = {
            let _acting = self.act();
            let parents = self.create_parents(path)?;
            (parents, self.dir().open_with(path.relative(), &options).map_err(|e| io_error(path, e))?)
        };
        let metadata = file.metadata().map_err(|e| io_error(path, e))?;
        if !metadata.is_file() {
            return Err(Error::invalid_input(format!("{path} is not a regular file")));
        }
        let start = if append { metadata.len() } else { 0 };
        let file = file.into_std();
        if !append {
            file.set_len(0).map_err(|e| io_error(path, e))?;
        }
        let undo = file.try_clone().map_err(|e| io_error(path, e))?;
        let mut file = tokio::fs::File::from_std(file);
        let copied = async {
            file.seek(SeekFrom::Start(start)).await.map_err(|e| io_error(path, e))?;
            let mut buffer = vec![0u8; STREAM_CHUNK_BYTES];
            let mut written = 0u64;
            loop {
                let filled = fill(&mut body, &mut buffer).await.map_err(|e| broke_off(path, e))?;
                if filled == 0 {
                    break;
                }
                let at = start + written;
                let _reservation = self.reserve(path, Some(at), at + filled as u64)?;
                file.write_all(&buffer[..filled]).await.map_err(|e| io_error(path, e))?;
                written += filled as u64;
            }
            file.flush().await.map_err(|e| io_error(path, e))?;
            Ok(written)
        }
        .await;
        if copied.is_err() {
            // A write still in flight on the blocking pool must land before the undo.
            let _ = file.flush().await;
            drop(file);
            let undone = if append {
                undo.set_len(start)
            } else {
                let _acting = self.act();
                self.dir().remove_file(path.relative())
            };
            if let Err(e) = undone {
                tracing::warn!(%path, "a failed upload could not be undone: {e}");
            }
        }
        copied
    }
}

/// Reads until `buffer` is full or the reader ends; the bytes read.
async fn fill<R: AsyncRead + Unpin + ?Sized>(reader: &mut R, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The next piece of at most `max` bytes of `reader` (empty at its end), in a buffer of
/// exactly that size: what streamed transfers hand on, chunk by chunk.
pub async fn read_chunk<R: AsyncRead + Unpin + ?Sized>(reader: &mut R, max: usize) -> std::io::Result<Vec<u8>> {
    let mut chunk = vec![0u8; max];
    let filled = fill(reader, &mut chunk).await?;
    chunk.truncate(filled);
    Ok(chunk)
}

/// The error of an upload whose body could not be read to its end.
pub(crate) fn broke_off(path: &WorkspacePath, err: std::io::Error) -> Error {
    Error::invalid_input(format!("the upload of {path} broke off: {err}")).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Encoding, ReadFile};
    use crate::ErrorKind;

    fn body(data: Vec<u8>) -> UploadBody {
        Box::pin(std::io::Cursor::new(data))
    }

    fn path(text: &str) -> WorkspacePath {
        WorkspacePath::parse(text).unwrap()
    }

    #[tokio::test]
    async fn an_upload_over_the_quota_is_refused_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = HostWorkspace::open(tmp.path().join("ws")).unwrap().with_quota(4 * 1024 * 1024);
        let err = ws.upload(&path("a/big.bin"), false, body(vec![1u8; 5 * 1024 * 1024])).await.unwrap_err();
        assert_eq!(err, Error::limit_reached("workspace quota of 4 MiB exceeded writing /workspace/a/big.bin"));
        assert!(!ws.root().join("a/big.bin").exists(), "a refused upload leaves no partial file");
        ws.upload(&path("keep.txt"), false, body(b"kept".to_vec())).await.unwrap();
        let err = ws.upload(&path("keep.txt"), true, body(vec![2u8; 5 * 1024 * 1024])).await.unwrap_err();
        assert!(err.kind() == ErrorKind::LimitReached, "{err:?}");
        let kept = std::fs::read(ws.root().join("keep.txt")).unwrap();
        assert!(kept == b"kept", "an append is cut back: {} bytes left", kept.len());
        assert!(ws.quota().unwrap().usage().unwrap() <= 4 * 1024 * 1024);
    }

    /// A reader that fails, as a connection reset does.
    struct Failing;

    impl AsyncRead for Failing {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
        }
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = HostWorkspace::open(tmp.path().join("ws")).unwrap();
        let broken: UploadBody = Box::pin(std::io::Cursor::new(vec![3u8; 3 * STREAM_CHUNK_BYTES / 2]).chain(Failing));
        let err = ws.upload(&path("partial.bin"), false, broken).await.unwrap_err();
        assert!(err.kind() == ErrorKind::InvalidInput && err.message().contains("broke off"), "{err:?}");
        assert!(!ws.root().join("partial.bin").exists());
    }

    #[tokio::test]
    async fn downloads_and_ranged_reads_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = HostWorkspace::open(tmp.path().join("ws")).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        ws.upload(&path("d.bin"), false, body(data.clone())).await.unwrap();
        let mut download = ws.download(&path("d.bin"), 1_000_000).await.unwrap();
        let mut got = Vec::new();
        download.reader.read_to_end(&mut got).await.unwrap();
        assert_eq!((download.size, got.as_slice()), (3_000_000, &data[1_000_000..]));
        let ranged = ReadFile {
            path: WorkspacePath::new("d.bin").unwrap(),
            encoding: Encoding::Base64,
            offset: 2_999_998,
            length: Some(10),
        };
        let read = ws.read_file(&ranged).unwrap();
        assert_eq!((read.bytes, read.size, read.eof), (2, 3_000_000, true));
        let fifo = ws.root().join("fifo");
        let made = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0);
        let refused = ws.download(&path("fifo"), 0).await.unwrap_err();
        assert!(refused.kind() == ErrorKind::InvalidInput, "a FIFO is refused without waiting: {refused:?}");
    }
}
