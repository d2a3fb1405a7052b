//! The wire between the host and a worker process: frames of a 4-byte little-endian length
//! and a JSON body, over a Unix socketpair.
//!
//! The host treats every frame from a worker as hostile: the length is checked against a
//! cap before anything is allocated, and a body that does not decode is garbage. Either
//! ends the worker (the supervisor kills it and resets the session's state); neither can
//! make the host panic or allocate more than the cap.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::DenoPermissions;
use codebeaker::CodeResult;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::identity::Identity;
use crate::ops::OpLimits;

/// Largest frame of a worker that is not a result (ready, assigned, an output chunk).
pub(crate) const MAX_CONTROL_FRAME: usize = 1024 * 1024;
/// Largest frame the worker accepts from the host (a cell's code and its settings).
pub(crate) const MAX_REQUEST_FRAME: usize = 256 * 1024 * 1024;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IpcError {
    /// The socket failed (the peer died, typically).
    #[error("the worker's channel failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed its end.
    #[error("the worker's channel was closed (the worker exited or was killed)")]
    Closed,
    /// A frame announced more bytes than allowed.
    #[error("the worker sent a frame of {len} bytes, over the cap of {cap}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The cap it broke.
        cap: usize,
    },
    /// A frame's body is not a message.
    #[error("the worker sent a frame that is not a message: {0}")]
    Garbage(#[source] serde_json::Error),
}

/// What a session hands its worker, once, before any guest code runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerSetup {
    /// Host directory standing for `/workspace`.
    pub workspace: PathBuf,
    /// What the code may touch beyond it.
    pub permissions: DenoPermissions,
    /// `memoryLimitMB`: the JS heap limit, and (plus the runtime's overhead) `RLIMIT_DATA`.
    pub memory_limit_mb: u64,
    /// What the ops enforce (buffer budget, workspace quota, egress rules); its
    /// `workspace_bytes` is also the worker's `RLIMIT_FSIZE`.
    pub limits: OpLimits,
    /// The uid the worker drops to (`None`: the server is not root, the worker keeps its uid).
    pub identity: Option<Identity>,
}

/// One `execute_code`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerRun {
    /// The cell.
    pub code: String,
    /// Wall-clock limit, after which the worker's own watchdog interrupts the JS.
    pub timeout_ms: u64,
    /// Cap of each output stream.
    pub output_limit: usize,
    /// Whether to send output chunks while the cell runs.
    pub stream: bool,
}

/// Host to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Become this session's runtime: apply the session's walls, then set up the engine.
    Assign(Box<WorkerSetup>),
    /// Run a cell.
    Run(WorkerRun),
    /// Copy yourself, memory and walls (a live fork): the copy's channel follows as a
    /// one-byte message with the descriptor attached. Between cells only.
    Fork,
    /// To a live fork's copy that said `Unshared`: its user namespace is mapped.
    Mapped,
}

/// Worker to host.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The engine is built; waiting for `Assign`.
    Ready,
    /// The walls are up and the engine is the session's.
    Assigned,
    /// The session's walls could not be applied (the worker exits), or a fork could not
    /// be made (the worker goes on).
    Refused(String),
    /// The worker copied itself: the copy, process `pid`, is the zygote's child and says
    /// ready on its own channel.
    Forked {
        /// The copy's process id.
        pid: u32,
    },
    /// A live fork's copy, given a session with a uid, entered its own user namespace and
    /// waits for `Mapped`.
    Unshared,
    /// Output of the running cell.
    Output {
        /// From `console.error`/`warn`.
        stderr: bool,
        /// The text.
        text: String,
    },
    /// The cell ended.
    Done {
        /// Its result, `usage` included.
        result: CodeResult,
        /// It failed by reaching the heap limit (the session's state is then reset).
        memory_exceeded: bool,
        /// CPU time of the whole worker so far, in ms.
        cpu_total_ms: u64,
    },
}

fn encode<T: Serialize>(message: &T) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, IpcError> {
    serde_json::from_slice(body).map_err(IpcError::Garbage)
}

fn checked_len(header: [u8; 4], cap: usize) -> Result<usize, IpcError> {
    let len = usize::try_from(u32::from_le_bytes(header)).unwrap_or(usize::MAX);
    if len > cap {
        return Err(IpcError::TooLarge { len, cap });
    }
    Ok(len)
}

fn eof_is_closed(error: std::io::Error) -> IpcError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        IpcError::Closed
    } else {
        IpcError::Io(error)
    }
}

/// Writes one frame (blocking; the worker's side).
pub(crate) fn write_frame<T: Serialize>(writer: &mut impl Write, message: &T) -> std::io::Result<()> {
    writer.write_all(&encode(message)?)
}

/// Reads one frame of at most `cap` bytes (blocking; the worker's side).
pub(crate) fn read_frame<T: for<'de> Deserialize<'de>>(reader: &mut impl Read, cap: usize) -> Result<T, IpcError> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header).map_err(eof_is_closed)?;
    let len = checked_len(header, cap)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).map_err(eof_is_closed)?;
    decode(&body)
}

/// Writes one frame (the host's side).
pub(crate) async fn send<T: Serialize>(writer: &mut (impl AsyncWrite + Unpin), message: &T) -> Result<(), IpcError> {
    writer.write_all(&encode(message)?).await.map_err(eof_is_closed)
}

/// Reads one frame of at most `cap` bytes (the host's side). Not cancel-safe: a caller
/// that drops it midway must not read from the stream again.
pub(crate) async fn receive<T: for<'de> Deserialize<'de>>(
    reader: &mut (impl AsyncRead + Unpin),
    cap: usize,
) -> Result<T, IpcError> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header).await.map_err(eof_is_closed)?;
    let len = checked_len(header, cap)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.map_err(eof_is_closed)?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &FromWorker::Output { stderr: true, text: "hé".into() }).unwrap();
        let back: FromWorker = read_frame(&mut wire.as_slice(), MAX_CONTROL_FRAME).unwrap();
        assert!(matches!(back, FromWorker::Output { stderr: true, ref text } if text == "hé"), "{back:?}");
    }

    #[test]
    fn hostile_frames_are_refused_before_allocating() {
        let huge = [0xff, 0xff, 0xff, 0xff, b'x'];
        let refused = read_frame::<FromWorker>(&mut &huge[..], MAX_CONTROL_FRAME).unwrap_err();
        assert!(matches!(refused, IpcError::TooLarge { len: 0xffff_ffff, .. }), "{refused:?}");
        let mut garbage = 5u32.to_le_bytes().to_vec();
        garbage.extend_from_slice(b"\x00\x01{]x");
        assert!(matches!(read_frame::<FromWorker>(&mut garbage.as_slice(), 64), Err(IpcError::Garbage(_))));
        let cut = [3, 0, 0, 0, b'{'];
        assert!(matches!(read_frame::<FromWorker>(&mut &cut[..], 64), Err(IpcError::Closed)));
    }
}
