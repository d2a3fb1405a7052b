//! The host's end of an egress tunnel: once the host's policy allowed a destination and
//! connected to it, [`AgentClient::relay_tunnel`] moves bytes between that connection
//! and the agent's proxy until either side ends. Every byte from the agent is hostile:
//! the program's first bytes are judged before any is forwarded ([`Relay::opening`]),
//! what waits for the destination is bounded and charged as it is queued (see
//! [`super::buffers`]), and every write, to the destination or toward the agent, has a
//! deadline after which the tunnel is closed.

use std::sync::Arc;

use codebeaker::egress::Opening;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::client::{AgentClient, AgentError, Inbound};
use crate::protocol::{AgentMessage, FrameKind, MAX_DATA_CHUNK};

/// Charged with the size of each chunk toward the destination as the reader queues it;
/// an `Err` (the reason) cuts the tunnel. The session's egress byte cap, for one.
pub type Charge = Arc<dyn Fn(u64) -> Result<(), String> + Send + Sync>;

/// Judges the program's first bytes (all of them so far) before any is forwarded.
pub type OpeningCheck = Box<dyn FnMut(&[u8]) -> Opening + Send>;

/// How the host relays one tunnel.
#[derive(Default)]
pub struct Relay {
    /// Bytes in both directions after which the tunnel is cut (`None`: no cap of its own).
    pub max_bytes: Option<u64>,
    /// See [`Charge`].
    pub charge: Option<Charge>,
    /// See `OpeningCheck`; `None` forwards from the first byte.
    pub opening: Option<OpeningCheck>,
}

impl AgentClient {
    /// Accepts tunnel `id` and relays it to `stream` (the connection the host opened)
    /// under `relay` until both directions end or either side closes it; then closes it
    /// on both sides. Returns the bytes relayed.
    pub async fn relay_tunnel<S>(&self, id: u64, stream: S, relay: Relay) -> Result<u64, AgentError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let Relay { max_bytes, charge, mut opening } = relay;
        let max_bytes = max_bytes.unwrap_or(u64::MAX);
        let deadline = self.config().write_timeout;
        let mut from_agent = self.accept_tunnel(id, charge).await?;
        let (mut read, mut write) = tokio::io::split(stream);
        let mut buffer = vec![0u8; MAX_DATA_CHUNK];
        // The program's bytes held back until the opening is judged.
        let mut held = Vec::new();
        let mut total = 0u64;
        let mut upstream_open = true;
        let mut agent_open = true;
        let over_cap = || format!("the tunnel exceeded its cap of {max_bytes} bytes");
        let reason = loop {
            if !upstream_open && !agent_open {
                break None;
            }
            tokio::select! {
                read = read.read(&mut buffer), if upstream_open => {
                    let (bytes, end) = match read {
                        Ok(0) | Err(_) => (Vec::new(), true),
                        Ok(n) => (buffer[..n].to_vec(), false),
                    };
                    total += bytes.len() as u64;
                    if total > max_bytes {
                        break Some(over_cap());
                    }
                    upstream_open = !end;
                    match tokio::time::timeout(deadline, self.send_tunnel_data(id, bytes, end)).await {
                        Ok(sent) => sent?,
                        Err(_) => {
                            break Some(format!("the agent did not take the data within {} ms", deadline.as_millis()))
                        }
                    }
                },
                item = from_agent.recv(), if agent_open => match item {
                    Some(Inbound::Data { kind: FrameKind::TunnelData, bytes }) => {
                        let end = bytes.is_empty();
                        total += bytes.len() as u64;
                        if total > max_bytes {
                            break Some(over_cap());
                        }
                        let forward = match opening.as_mut() {
                            None => bytes,
                            Some(judge) => {
                                held.extend_from_slice(&bytes);
                                match judge(&held) {
                                    // A program that stops before saying enough names
                                    // nothing: what it sent goes on.
                                    Opening::NeedMore if !end => continue,
                                    Opening::NeedMore | Opening::Pass => {
                                        opening = None;
                                        std::mem::take(&mut held)
                                    }
                                    Opening::Rewritten(bytes) => {
                                        opening = None;
                                        held = Vec::new();
                                        bytes
                                    }
                                    Opening::Refused { denied, answer } => {
                                        if !answer.is_empty() {
                                            let answered = self.send_tunnel_data(id, answer, true);
                                            let _ = tokio::time::timeout(deadline, answered).await;
                                        }
                                        break Some(denied.to_string());
                                    }
                                }
                            }
                        };
                        let written = tokio::select! {
                            written = tokio::time::timeout(deadline, write.write_all(&forward)) => written,
                            reason = from_agent.cut() => break Some(reason),
                        };
                        match written {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break Some("the destination closed the connection".to_owned()),
                            Err(_) => {
                                break Some(format!(
                                    "the destination did not take the data within {} ms",
                                    deadline.as_millis()
                                ))
                            }
                        }
                        if end {
                            agent_open = false;
                            let _ = tokio::time::timeout(deadline, write.shutdown()).await;
                        }
                    }
                    Some(Inbound::Cut(reason)) => break Some(reason),
                    Some(Inbound::Message(AgentMessage::TunnelClose { .. })) | None => {
                        self.unregister(id);
                        return Ok(total);
                    }
                    Some(_) => {}
                },
            }
        };
        if let Some(reason) = &reason {
            tracing::debug!(id, %reason, "the host closed an egress tunnel");
        }
        match tokio::time::timeout(deadline, self.close_tunnel(id, reason)).await {
            Ok(closed) => closed?,
            // The agent does not read: the tunnel is forgotten here all the same.
            Err(_) => self.unregister(id),
        }
        Ok(total)
    }
}
