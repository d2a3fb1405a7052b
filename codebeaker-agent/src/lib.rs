//! The in-container agent of CodeBeaker: one protocol over any byte stream, the host-side
//! client, and the agent that runs as a session container's main process.
//!
//! - [`protocol`]: frames (fixed binary header, capped JSON or raw bodies), the messages
//!   of both sides, the handshake.
//! - [`transport`]: the byte-stream seam ([`Transport`](transport::Transport)) and frame
//!   reader and writer.
//! - [`client`]: [`AgentClient`](client::AgentClient), what a backend uses to drive an
//!   agent: several requests in flight, per-request streams, deadlines, and a clean error
//!   for a dead or babbling agent.
//! - [`agent`]: the agent itself (processes, files beneath the workspace, persistent
//!   interpreters, the egress proxy), served by the `codebeaker-agent` binary.
//!
//! ```
//! use codebeaker_agent::protocol::{Frame, HostMessage, DEFAULT_MAX_FRAME};
//!
//! let frame = Frame::message(1, &HostMessage::Ping).unwrap();
//! let bytes = frame.encode(DEFAULT_MAX_FRAME).unwrap();
//! assert_eq!(&bytes[..2], b"CB");
//! let (decoded, used) = Frame::decode(&bytes, DEFAULT_MAX_FRAME).unwrap().unwrap();
//! assert_eq!(used, bytes.len());
//! assert_eq!(decoded.parse::<HostMessage>().unwrap(), HostMessage::Ping);
//! ```
#![warn(missing_docs)]

pub mod agent;
pub mod client;
pub mod protocol;
pub mod transport;
