//! The wire protocol between the host and the in-container agent.
//!
//! One protocol over any byte stream, shared by both sides: [`codec`] frames bytes,
//! [`message`] holds the two envelopes ([`HostMessage`] for what the host sends,
//! [`AgentMessage`] for what the agent sends) and the handshake, and a module per
//! concern holds its request and reply bodies ([`exec`], [`fs`], [`code`], [`tunnel`]);
//! [`signal`] names the signals that end processes.
//!
//! Message bodies are JSON: self-describing, so an agent and a host of different builds
//! can tell an unknown message from a broken one, readable in a hex dump when debugging
//! a session, and already a dependency of every crate here. Bulk bytes (process output,
//! stdin, tunnel traffic) travel in raw data frames instead, so the hot path pays no
//! encoding. Versioning: the host opens with [`HostMessage::Hello`] naming
//! [`PROTOCOL_VERSION`]; the agent answers with its own, and either side refuses a
//! version it does not speak. New optional fields keep the version; anything an old peer
//! would misread bumps it. `tests/wire_contract.rs` pins the encoding.

pub mod code;
pub mod codec;
pub mod exec;
pub mod fs;
pub mod message;
pub mod signal;
pub mod tunnel;

pub use code::{CodeDone, CodeError, CodeLanguage, RichOutput, RunCodeRequest};
pub use codec::{
    Frame, FrameHeader, FrameKind, AGENT_ID_BIT, DEFAULT_MAX_FRAME, FILE_DATA_CHUNK, FLAG_END, HEADER_LEN,
    MAX_DATA_CHUNK,
};
pub use exec::{ExecCommand, ExecExited, ExecRequest, PtySize, Rlimits, Usage};
pub use fs::{EntryKind, FsEntry, FsReply, FsRequest, FsStat};
pub use message::{AgentHello, AgentMessage, Base64Bytes, ErrorKind, ErrorReply, HostMessage};
pub use signal::{describe_signal, signal_note};
pub use tunnel::{TunnelOpen, TunnelReply};

/// The protocol version this build speaks. Version 2 added ranged reads (a version-1
/// agent would ignore `offset`) and streamed transfers (`upload`, `download`, file data
/// frames). `shutdown` came later without a bump: an agent that does not know it answers
/// an `unsupported` error, which the host treats as "stop the container yourself"; agents
/// that know it say so with the `shutdown` capability. Terminals (`ExecRequest::pty`,
/// `resize`) and `signal` came the same way, offered as the `pty` and `signal`
/// capabilities: an older agent ignores `pty` (the command runs on pipes) and answers
/// `signal` or `resize` with an `unsupported` error under the exec's id, which ends that
/// exec's stream on the host, so a host sends them only to an agent that offers them.
pub const PROTOCOL_VERSION: u32 = 2;

/// Everything that can go wrong reading or writing the protocol. The peer is untrusted:
/// every way its bytes can be wrong is a variant here, never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The stream did not start a frame with the magic bytes (garbage on the channel).
    #[error("not an agent frame: magic bytes {0:02x?}")]
    BadMagic([u8; 2]),
    /// The header names a frame kind no version of the protocol uses.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The header sets flag bits that are undefined or do not fit its kind.
    #[error("invalid frame flags {0:#04x}")]
    BadFlags(u8),
    /// A frame's body is longer than this side accepts.
    #[error("frame of {len} bytes exceeds the cap of {max} bytes")]
    FrameTooLarge {
        /// The length the header claimed (or the body had, when encoding).
        len: u64,
        /// The cap.
        max: u32,
    },
    /// A message was expected and a data frame came, or the reverse.
    #[error("unexpected {0:?} frame")]
    UnexpectedKind(FrameKind),
    /// A message body is not a message this side understands.
    #[error("undecodable message: {0}")]
    Decode(#[source] serde_json::Error),
    /// A message could not be encoded.
    #[error("unencodable message: {0}")]
    Encode(#[source] serde_json::Error),
    /// Joining a stream mid-way, no acceptable frame came within this many bytes.
    #[error("no agent frame found in {skipped} bytes")]
    NoFrame {
        /// Bytes skipped.
        skipped: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The peer speaks another protocol version.
    #[error("protocol version {theirs} is not supported (this side speaks {ours})")]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// Reading or writing the underlying stream failed.
    #[error("agent channel I/O failed: {0}")]
    Io(#[from] std::io::Error),
}
