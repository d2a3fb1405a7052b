//! The host's end of an egress tunnel: once the host's policy allowed a destination and
//! connected to it, [`AgentClient::relay_tunnel`] moves bytes between that connection
//! and the agent's proxy until either side ends, under a byte cap.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::client::{AgentClient, AgentError, Inbound};
use crate::protocol::{AgentMessage, FrameKind, MAX_DATA_CHUNK};

impl AgentClient {
    /// Accepts tunnel `id` and relays it to `stream` (the connection the host opened)
    /// until both directions end, the agent closes it, or more than `max_bytes` have
    /// passed in total; then closes it on both sides. Returns the bytes relayed.
    pub async fn relay_tunnel<S>(&self, id: u64, stream: S, max_bytes: u64) -> Result<u64, AgentError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut from_agent = self.accept_tunnel(id).await?;
        let (mut read, mut write) = tokio::io::split(stream);
        let mut buffer = vec![0u8; MAX_DATA_CHUNK];
        let mut total = 0u64;
        let mut upstream_open = true;
        let mut agent_open = true;
        let reason = loop {
            if !upstream_open && !agent_open {
                break None;
            }
            tokio::select! {
                read = read.read(&mut buffer), if upstream_open => match read {
                    Ok(0) | Err(_) => {
                        upstream_open = false;
                        self.send_tunnel_data(id, Vec::new(), true).await?;
                    }
                    Ok(n) => {
                        total += n as u64;
                        if total > max_bytes {
                            break Some(format!("the tunnel exceeded its cap of {max_bytes} bytes"));
                        }
                        self.send_tunnel_data(id, buffer[..n].to_vec(), false).await?;
                    }
                },
                item = from_agent.recv(), if agent_open => match item {
                    Some(Inbound::Data { kind: FrameKind::TunnelData, bytes, end }) => {
                        total += bytes.len() as u64;
                        if total > max_bytes {
                            break Some(format!("the tunnel exceeded its cap of {max_bytes} bytes"));
                        }
                        if write.write_all(&bytes).await.is_err() {
                            break Some("the destination closed the connection".to_owned());
                        }
                        if end {
                            agent_open = false;
                            let _ = write.shutdown().await;
                        }
                    }
                    Some(Inbound::Message(AgentMessage::TunnelClose { .. })) | None => {
                        self.unregister(id);
                        return Ok(total);
                    }
                    Some(_) => {}
                },
            }
        };
        self.close_tunnel(id, reason).await?;
        Ok(total)
    }
}
