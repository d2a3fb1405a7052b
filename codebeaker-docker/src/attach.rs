//! [`AttachStream`]: a container's attach connection as one byte stream (`AsyncRead` of
//! the container's stdout, `AsyncWrite` to its stdin), the transport the agent protocol
//! rides for Docker.
//!
//! The engine multiplexes stdout and stderr into frames with an 8-byte header; bollard
//! splits them. Stdout carries the protocol; stderr is the agent's log, passed to
//! `tracing` up to a cap (the agent is untrusted and may babble). Frames are the engine's
//! own: guest code cannot forge a header, only write payload.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::container::LogOutput;
use bollard::query_parameters::AttachContainerOptionsBuilder;
use bollard::Docker;
use bytes::{Buf, Bytes};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::container::short;
use crate::error::DockerError;

/// Most bytes of an agent's stderr passed to the log over a connection's life.
const STDERR_LOG_CAP: usize = 64 * 1024;

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// The attach connection of one container (see the module docs).
pub struct AttachStream {
    output: Output,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    pending: Bytes,
    container: String,
    stderr_logged: usize,
    ended: Arc<AtomicBool>,
}

impl std::fmt::Debug for AttachStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachStream").field("container", &short(&self.container)).finish_non_exhaustive()
    }
}

/// Attaches to `container`'s stdin, stdout and stderr (streaming, no past logs). Done
/// before the container starts, nothing the agent writes is lost; done again after an
/// engine restart, it picks up a running agent. `ended` records when the engine's side
/// of the stream ends: the connection was lost (engine stopped, container gone) rather
/// than closed by the client for a protocol error.
pub(crate) async fn attach_with(
    docker: &Docker,
    container: &str,
    ended: Arc<AtomicBool>,
) -> Result<AttachStream, DockerError> {
    let options = AttachContainerOptionsBuilder::new().stdin(true).stdout(true).stderr(true).stream(true).build();
    let attached = docker
        .attach_container(container, Some(options))
        .await
        .map_err(|e| DockerError::engine(format!("attach to container {}", short(container)), e))?;
    Ok(AttachStream {
        output: attached.output,
        input: attached.input,
        pending: Bytes::new(),
        container: container.to_owned(),
        stderr_logged: 0,
        ended,
    })
}

impl AttachStream {
    fn log_stderr(&mut self, message: &[u8]) {
        let room = STDERR_LOG_CAP.saturating_sub(self.stderr_logged);
        if room == 0 {
            return;
        }
        let kept = &message[..message.len().min(room)];
        self.stderr_logged += kept.len();
        debug!(container = %short(&self.container), "agent: {}", String::from_utf8_lossy(kept).trim_end());
    }
}

impl AsyncRead for AttachStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match self.output.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.ended.store(true, Ordering::SeqCst);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(e))) => {
                    self.ended.store(true, Ordering::SeqCst);
                    return Poll::Ready(Err(io::Error::other(e)));
                }
                Poll::Ready(Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message }))) => {
                    self.pending = message;
                }
                Poll::Ready(Some(Ok(LogOutput::StdErr { message }))) => self.log_stderr(&message),
                Poll::Ready(Some(Ok(LogOutput::StdIn { .. }))) => {}
            }
        }
    }
}

impl AsyncWrite for AttachStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.input.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.input.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.input.as_mut().poll_shutdown(cx)
    }
}
