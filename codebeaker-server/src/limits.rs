//! Every bound the server puts on what clients can make it hold, in one place.
//!
//! A server that runs untrusted agents' requests must not let one client exhaust memory,
//! stack, file descriptors or sandboxes. Each limit here is checked at exactly one point
//! (named in its doc) and answered with a clear error: a JSON-RPC `-32002` error where a
//! reply is possible, a close frame with a reason otherwise.

use std::time::Duration;

use codebeaker::policy::tenant_share;

use crate::shares::{address_share, ShareCaps};

/// The limits of one server. `Default` gives the documented defaults of the CLI flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most WebSocket connections open at once. An upgrade past it (or past the caller's
    /// share below) is answered with one `-32002` error and a close frame (code 1013,
    /// "try again later") naming the cap.
    pub max_connections: usize,
    /// Most WebSocket connections one tenant may hold; `None`: a quarter of
    /// [`Limits::max_connections`] ([`crate::shares`]).
    pub max_connections_per_tenant: Option<usize>,
    /// Most WebSocket connections one source address may hold; `None`: half of
    /// [`Limits::max_connections`].
    pub max_connections_per_address: Option<usize>,
    /// Most sockets accepted but not let in yet (no request past an access guard, see
    /// the `pending` module). A new socket over it closes the oldest pending one, so the
    /// accept loop never waits and `/health` is always answered.
    pub max_pending_connections: usize,
    /// Most pending sockets of one source address; `None`: half of
    /// [`Limits::max_pending_connections`]. A new socket over it closes the address's
    /// oldest pending one.
    pub max_pending_per_address: Option<usize>,
    /// Most MCP sessions over HTTP (`/mcp`) open at once. An `initialize` past it (or past
    /// the caller's share below) is answered with HTTP 503 (429 for a share) naming the
    /// cap.
    pub max_mcp_sessions: usize,
    /// Most MCP sessions one tenant may hold; `None`: a quarter of
    /// [`Limits::max_mcp_sessions`].
    pub max_mcp_sessions_per_tenant: Option<usize>,
    /// Most MCP sessions one source address may hold; `None`: half of
    /// [`Limits::max_mcp_sessions`].
    pub max_mcp_sessions_per_address: Option<usize>,
    /// An MCP session over HTTP without a request for this long ends, closing the
    /// sandbox sessions it created.
    pub mcp_session_idle: Duration,
    /// Largest WebSocket message (and frame) accepted, in bytes. tungstenite refuses
    /// bigger ones while reading the frame header, before buffering them; the connection
    /// is then closed with code 1009 and a reason naming the limit.
    pub max_message_bytes: usize,
    /// Most requests in one batch. A bigger batch gets a single `-32002` error.
    pub max_batch: usize,
    /// Most requests of one connection being handled at once (a batch counts each of its
    /// requests). Past it a request is answered at once with `-32002`; this bounds the
    /// tasks and buffered responses one client can pile up.
    pub max_in_flight: usize,
    /// Most bytes of request frames one connection may have in flight (a request holds
    /// its frame's size until answered; a batch its whole frame). Past it a request is
    /// answered at once with `-32002`. This bounds what a client pipelining large
    /// `write_file`s can make the server hold: at most this times
    /// [`Limits::max_connections`] in all. Never below [`Limits::max_message_bytes`], so
    /// one message of the largest size always fits.
    pub max_in_flight_bytes: usize,
    /// Deepest nesting of arrays and objects in a message. Deeper JSON is a parse error,
    /// found by a linear scan before any recursive parsing, so no input can exhaust the
    /// stack.
    pub max_json_depth: usize,
    /// Largest HTTP request head (request line and headers), in bytes: a bigger one is
    /// answered 431 by hyper. hyper's floor is 8 KiB.
    pub max_http_head_bytes: usize,
    /// How long a client may take to send its HTTP request head (hyper's header read
    /// timeout; the socket is then closed), and how long a socket may stay pending (see
    /// the `pending` module); stops idle sockets from holding a place forever.
    pub http_head_timeout: Duration,
    /// On shutdown, how long running requests get to finish before their connections are
    /// closed anyway.
    pub shutdown_grace: Duration,
    /// Most bytes of responses and notifications one connection may have waiting to be
    /// written. Past half of it the connection stops reading requests until its client
    /// catches up (backpressure); past all of it the connection is closed (code 1008)
    /// with a reason naming the limit. This bounds what a client that never reads its
    /// answers can make the server hold, whatever it asks for.
    pub max_outbound_bytes: usize,
    /// How long a WebSocket connection may stay idle (no frame from the client, pings
    /// included, and no request running) before it is closed (code 1001) with a reason
    /// saying so. Stops idle clients from holding connection slots forever.
    pub connection_idle: Duration,
}

/// Default of [`Limits::max_message_bytes`]: 16 MiB, room for a large `write_file`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Default of [`Limits::max_outbound_bytes`]: 64 MiB.
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_connections_per_tenant: None,
            max_connections_per_address: None,
            max_pending_connections: 256,
            max_pending_per_address: None,
            max_mcp_sessions: 256,
            max_mcp_sessions_per_tenant: None,
            max_mcp_sessions_per_address: None,
            mcp_session_idle: Duration::from_secs(300),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_batch: 512,
            max_in_flight: 1024,
            max_in_flight_bytes: 2 * DEFAULT_MAX_MESSAGE_BYTES,
            max_json_depth: 64,
            max_http_head_bytes: 16 * 1024,
            http_head_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            connection_idle: Duration::from_secs(300),
        }
    }
}

impl Limits {
    /// The caps of WebSocket connections: global, per tenant, per address.
    pub fn connection_caps(&self) -> ShareCaps {
        ShareCaps {
            what: "connections",
            flag: "max-connections",
            global: self.max_connections,
            per_tenant: self.max_connections_per_tenant.unwrap_or_else(|| tenant_share(self.max_connections)),
            per_address: self.max_connections_per_address.unwrap_or_else(|| address_share(self.max_connections)),
        }
    }

    /// The caps of MCP sessions over HTTP: global, per tenant, per address.
    pub fn mcp_session_caps(&self) -> ShareCaps {
        ShareCaps {
            what: "MCP sessions",
            flag: "max-mcp-sessions",
            global: self.max_mcp_sessions,
            per_tenant: self.max_mcp_sessions_per_tenant.unwrap_or_else(|| tenant_share(self.max_mcp_sessions)),
            per_address: self.max_mcp_sessions_per_address.unwrap_or_else(|| address_share(self.max_mcp_sessions)),
        }
    }

    /// Most pending sockets of one address.
    pub fn pending_per_address(&self) -> usize {
        self.max_pending_per_address.unwrap_or_else(|| address_share(self.max_pending_connections))
    }

    /// Checks that no cap is 0 (a server that can hold nothing is a typo); the error names
    /// the flag.
    pub fn validate(&self) -> Result<(), String> {
        let caps = [
            ("max-connections", Some(self.max_connections)),
            ("max-connections-per-tenant", self.max_connections_per_tenant),
            ("max-connections-per-address", self.max_connections_per_address),
            ("max-pending-connections", Some(self.max_pending_connections)),
            ("max-pending-per-address", self.max_pending_per_address),
            ("max-mcp-sessions", Some(self.max_mcp_sessions)),
            ("max-mcp-sessions-per-tenant", self.max_mcp_sessions_per_tenant),
            ("max-mcp-sessions-per-address", self.max_mcp_sessions_per_address),
        ];
        match caps.iter().find(|(_, value)| *value == Some(0)) {
            Some((flag, _)) => Err(format!("{flag} must be above 0")),
            None if self.mcp_session_idle.is_zero() => Err("mcp-session-idle-secs must be above 0".into()),
            None => Ok(()),
        }
    }
}

/// Whether `text` nests arrays or objects deeper than `max` levels. Strings (with their
/// escapes) are skipped, so brackets inside file contents do not count. Malformed JSON
/// is left for the parser to report.
pub(crate) fn nests_deeper_than(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_default_to_fractions_of_the_global_caps() {
        let limits = Limits::default();
        let connections = limits.connection_caps();
        assert_eq!((connections.global, connections.per_tenant, connections.per_address), (256, 64, 128));
        let mcp = Limits { max_mcp_sessions: 2, max_mcp_sessions_per_address: Some(2), ..Limits::default() };
        let mcp = mcp.mcp_session_caps();
        assert_eq!((mcp.global, mcp.per_tenant, mcp.per_address), (2, 1, 2));
        assert_eq!(limits.pending_per_address(), 128);
        assert!(Limits { max_connections_per_tenant: Some(0), ..Limits::default() }
            .validate()
            .unwrap_err()
            .contains("max-connections-per-tenant"));
        assert_eq!(limits.validate(), Ok(()));
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!nests_deeper_than(r#"{"a":[1,{"b":2}]}"#, 3));
        assert!(nests_deeper_than(r#"{"a":[1,{"b":[2]}]}"#, 3));
        assert!(!nests_deeper_than(r#"{"content":"[[[[[[[[\"{{{{"}"#, 1));
        assert!(nests_deeper_than(&"[".repeat(100_000), 64));
        assert!(!nests_deeper_than(&"[]".repeat(100_000), 1));
    }
}
