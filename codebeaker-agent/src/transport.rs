//! What carries the frames: any byte stream.
//!
//! For Docker the stream is a container's attach stream (the agent's stdin and stdout);
//! for a Kubernetes pod it would be a pod attach; in tests it is a pipe. The protocol
//! needs nothing but ordered bytes both ways, so the seam is one trait over tokio's
//! `AsyncRead + AsyncWrite`, and reader and writer halves that can be given separately
//! (a Docker attach hands out an output stream and an input sink).

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader, BufWriter};

use crate::protocol::{Frame, FrameHeader, ProtocolError, HEADER_LEN};

/// A bidirectional byte stream that can carry the protocol.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Reads frames from a byte stream, checking each header (and its cap) before reading
/// the body.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: BufReader<R>,
    max_frame: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader refusing bodies over `max_frame` bytes.
    pub fn new(inner: R, max_frame: u32) -> Self {
        FrameReader { inner: BufReader::with_capacity(64 * 1024, inner), max_frame }
    }

    /// The next frame; `Ok(None)` on a clean end of stream between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let mut header = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            let n = self.inner.read(&mut header[filled..]).await?;
            if n == 0 {
                return if filled == 0 { Ok(None) } else { Err(ProtocolError::Truncated) };
            }
            filled += n;
            // Refuse garbage as soon as the magic bytes are in, without waiting for a
            // full header that a babbling peer may never finish.
            if filled >= 2 && header[0..2] != crate::protocol::codec::MAGIC {
                return Err(ProtocolError::BadMagic([header[0], header[1]]));
            }
        }
        let header = FrameHeader::decode(&header, self.max_frame)?;
        let mut body = vec![0u8; header.len as usize];
        self.inner.read_exact(&mut body).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ProtocolError::Truncated,
            _ => ProtocolError::Io(e),
        })?;
        Ok(Some(Frame { kind: header.kind, flags: header.flags, id: header.id, body }))
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Skips bytes until a message frame whose body `accept` takes, and returns it. For
    /// joining a stream mid-way (re-attaching to a running agent after an engine
    /// restart): whatever was cut off before is discarded, at most `max_skip` bytes.
    pub async fn resync<F>(&mut self, max_skip: usize, mut accept: F) -> Result<Frame, ProtocolError>
    where
        F: FnMut(&Frame) -> bool,
    {
        let mut window = [0u8; HEADER_LEN];
        let mut filled = 0;
        let mut skipped = 0usize;
        loop {
            if filled == HEADER_LEN {
                if let Ok(header) = FrameHeader::decode(&window, self.max_frame) {
                    if header.kind == crate::protocol::FrameKind::Message {
                        let mut body = vec![0u8; header.len as usize];
                        self.inner.read_exact(&mut body).await.map_err(|_| ProtocolError::Truncated)?;
                        let frame = Frame { kind: header.kind, flags: header.flags, id: header.id, body };
                        if accept(&frame) {
                            return Ok(frame);
                        }
                        skipped += HEADER_LEN + frame.body.len();
                        filled = 0;
                        continue;
                    }
                }
                window.copy_within(1.., 0);
                filled -= 1;
                skipped += 1;
                if skipped > max_skip {
                    return Err(ProtocolError::NoFrame { skipped });
                }
            }
            match self.inner.read_u8().await {
                Ok(byte) => {
                    window[filled] = byte;
                    filled += 1;
                }
                Err(_) => return Err(ProtocolError::Truncated),
            }
        }
    }
}

/// Bytes of small frames gathered into one write; a body larger than this goes to the
/// stream straight from the frame, uncopied.
const WRITE_BUFFER: usize = 64 * 1024;

/// Writes frames to a byte stream.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: BufWriter<W>,
    max_frame: u32,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer refusing bodies over `max_frame` bytes.
    pub fn new(inner: W, max_frame: u32) -> Self {
        FrameWriter { inner: BufWriter::with_capacity(WRITE_BUFFER, inner), max_frame }
    }

    /// Writes one frame and flushes it.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        self.send_all(std::slice::from_ref(frame)).await
    }

    /// Writes several frames with one flush.
    pub async fn send_all(&mut self, frames: &[Frame]) -> Result<(), ProtocolError> {
        for frame in frames {
            self.inner.write_all(&frame.header(self.max_frame)?.encode()).await?;
            self.inner.write_all(&frame.body).await?;
        }
        self.inner.flush().await?;
        Ok(())
    }
}
