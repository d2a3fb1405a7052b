//! Egress tunnels: the agent's loopback proxy asks the host for each connection.
//!
//! The agent sends `tunnel_open` under a fresh id with
//! [`AGENT_ID_BIT`](crate::protocol::AGENT_ID_BIT) set; the host answers `tunnel_reply`.
//! When accepted, bytes flow as `TunnelData` frames both ways (`FLAG_END` half-closes);
//! either side ends the tunnel with `tunnel_close`. The host alone decides: the agent
//! never connects anywhere itself.

use serde::{Deserialize, Serialize};

/// A connection a program asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelOpen {
    /// The destination host name or address, as the program gave it.
    pub host: String,
    /// The destination port.
    pub port: u16,
}

/// The host's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelReply {
    /// The connection is open and bytes may flow.
    pub accepted: bool,
    /// Why not, shown to the program (`egress to example.org:443 is not allowed by policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
