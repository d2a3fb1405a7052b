//! Streamed file transfers (`download_as`, `upload_as`): the HTTP file routes' way into a
//! session, through the same tenant check and the same turn as commands.
//!
//! A transfer runs in a task of its own that holds the session's turn until the last
//! byte moved, so no command runs against a half-written file. Memory is bounded: a
//! download hands over at most [`DOWNLOAD_QUEUE`] chunks ahead of its reader. A peer
//! that stops reading (download) or sending (upload) for [`STALL_TIMEOUT`] loses the
//! transfer, so it cannot hold the session's turn forever; closing the session ends it.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::session::Session;
use super::turns::Ticket;
use super::{Inner, SessionManager};
use crate::backend::FileStreams;
use crate::error::{Error, Result};
use crate::workspace::{read_chunk, UploadBody, WorkspacePath, STREAM_CHUNK_BYTES};

/// Longest a transfer waits for its peer to read the next chunk or send more bytes.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Chunks a download reads ahead of its consumer.
const DOWNLOAD_QUEUE: usize = 4;

/// A download under way: the file's size, and its bytes in chunks of at most
/// [`STREAM_CHUNK_BYTES`]. The stream ends after the last byte, or with one `Err` when
/// reading failed half-way (the receiver must then not treat the file as complete).
#[derive(Debug)]
pub struct Download {
    /// Size of the whole file in bytes.
    pub size: u64,
    /// Bytes from the offset asked for, chunk by chunk.
    pub chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
}

impl SessionManager {
    /// Starts a download of `path` from `offset` in a session `tenant` may see, in the
    /// session's turn. `Err` when the session is unknown or invisible, the path is bad,
    /// the backend streams no files, or the file cannot be opened.
    pub async fn download_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        path: &str,
        offset: u64,
    ) -> Result<Download> {
        let session = self.inner.session(tenant, session_id)?;
        let path = WorkspacePath::parse(path)?;
        let ticket = session.turns.ticket();
        let (opened_tx, opened_rx) = oneshot::channel();
        let span = tracing::info_span!("download", session = %session.id, %path);
        let inner = self.inner.clone();
        tokio::spawn(
            async move {
                let _turn = match inner.turn(&session, ticket).await {
                    Ok(turn) => turn,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                if opened_tx.is_closed() {
                    // The caller went away while waiting: give the turn up unused.
                    return;
                }
                let _busy = session.busy();
                let opened = match streams(&session) {
                    Ok(streams) => streams.download(&path, offset).await,
                    Err(e) => Err(e),
                };
                let download = match opened {
                    Ok(download) => download,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let (tx, rx) = mpsc::channel(DOWNLOAD_QUEUE);
                if opened_tx.send(Ok(Download { size: download.size, chunks: rx })).is_err() {
                    return;
                }
                tokio::select! {
                    _ = session.closing.cancelled() => {}
                    () = pump(download.reader, tx) => {}
                }
            }
            .instrument(span),
        );
        opened_rx.await.map_err(|_| Error::internal("the download task ended without an answer"))?
    }

    /// Writes `body` to `path` (replacing it, or appending) in a session `tenant` may
    /// see, in the session's turn; the bytes written. On failure nothing of the upload
    /// remains (see [`FileStreams::upload`]).
    pub async fn upload_as(
        &self,
        tenant: Option<&str>,
        session_id: &str,
        path: &str,
        append: bool,
        body: UploadBody,
    ) -> Result<u64> {
        let session = self.inner.session(tenant, session_id)?;
        let path = WorkspacePath::parse(path)?;
        let ticket = session.turns.ticket();
        let span = tracing::info_span!("upload", session = %session.id, %path);
        let inner = self.inner.clone();
        let task = async move {
            let _turn = inner.turn(&session, ticket).await?;
            let _busy = session.busy();
            let streams = streams(&session)?;
            let body: UploadBody = Box::pin(Stalling::new(body));
            tokio::select! {
                _ = session.closing.cancelled() => Err(Error::session_closed(session.id.to_string())),
                written = streams.upload(&path, append, body) => written,
            }
        };
        tokio::spawn(task.instrument(span))
            .await
            .map_err(|e| Error::internal(format!("upload task failed: {e}")).with_source(e))?
    }
}

impl Inner {
    /// Waits for `ticket`'s turn on `session`; the ticket is the turn (drop it to pass on).
    pub(super) async fn turn(&self, session: &Session, ticket: Ticket) -> Result<Ticket> {
        tokio::select! {
            biased;
            _ = session.closing.cancelled() => return Err(Error::session_closed(session.id.to_string())),
            _ = ticket.wait() => {}
        }
        if session.closing.is_cancelled() {
            return Err(Error::session_closed(session.id.to_string()));
        }
        Ok(ticket)
    }
}

fn streams(session: &Arc<Session>) -> Result<&dyn FileStreams> {
    session.sandbox.file_streams().ok_or_else(|| {
        Error::unsupported(format!(
            "the {} backend does not stream files; use read_file and write_file",
            session.backend
        ))
    })
}

/// Reads `reader` to its end into `tx`, giving up when the consumer stops taking chunks.
async fn pump(mut reader: Pin<Box<dyn AsyncRead + Send>>, tx: mpsc::Sender<std::io::Result<Vec<u8>>>) {
    loop {
        let item = match read_chunk(&mut reader, STREAM_CHUNK_BYTES).await {
            Ok(chunk) if chunk.is_empty() => return,
            Ok(chunk) => Ok(chunk),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        match tx.send_timeout(item, STALL_TIMEOUT).await {
            Ok(()) if !failed => {}
            Ok(()) => return,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::info!("download abandoned: the client read nothing for {} s", STALL_TIMEOUT.as_secs());
                return;
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
        }
    }
}

/// An upload body that fails when no byte arrives for [`STALL_TIMEOUT`].
struct Stalling {
    body: UploadBody,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stalling {
    fn new(body: UploadBody) -> Self {
        Stalling { body, deadline: Box::pin(tokio::time::sleep(STALL_TIMEOUT)) }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match self.body.as_mut().poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + STALL_TIMEOUT;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no bytes arrived for {} s", STALL_TIMEOUT.as_secs()),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
