//! [`AgentLink`]: a session's connection to the agent in its container, over the
//! container's attach stream ([`crate::attach`]), and what happens when it breaks.
//!
//! Guest code runs as another uid without capabilities and cannot reach the agent (PID 1)
//! or its channel ([`crate::hardening`]); the host still treats the agent as untrusted
//! (a kernel bug, an agent bug). The client caps and times out everything; this module
//! decides what a broken channel means for the session:
//! - the engine's stream ended (engine stopped or restarted, container died): when the
//!   engine answers again and the container still runs (live restore), re-attach and
//!   keep the session with its interpreter state; a container that did not survive
//!   fails the session with the reason the engine gives;
//! - the channel broke while the engine's stream was fine (garbage, an agent that stopped
//!   answering): the session fails with that reason, never a stuck request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use codebeaker::{EgressRules, Error};
use codebeaker_agent::client::{AgentClient, AgentError, ClientConfig};
use codebeaker_agent::protocol::ErrorKind;
use tracing::{debug, info};

use crate::attach;
use crate::container::{self, short, ContainerState, BACKEND};
use crate::egress;

/// How long the handshake with a freshly started or re-attached agent may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// One live connection: the client, whether the engine's side of its stream ended, and
/// the task serving its egress tunnels.
struct Connection {
    client: AgentClient,
    ended: Arc<AtomicBool>,
    tunnels: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self.tunnels.take() {
            task.abort();
        }
    }
}

/// A session's connection to its agent (see the module docs).
pub(crate) struct AgentLink {
    docker: Docker,
    container: String,
    config: ClientConfig,
    memory_limit_mb: u64,
    /// The session's egress rules, once it has an owner (spares have none: a tunnel
    /// request is then refused as egress off).
    egress: std::sync::Mutex<Option<Arc<EgressRules>>>,
    current: tokio::sync::Mutex<Connection>,
}

impl std::fmt::Debug for AgentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLink").field("container", &short(&self.container)).finish_non_exhaustive()
    }
}

/// Attaches to `container` (created, not yet started when `start` is set: then nothing the
/// agent writes is lost), starts it if asked, and shakes hands with its agent.
async fn connect(docker: &Docker, container: &str, config: &ClientConfig, start: bool) -> Result<Connection, Error> {
    let ended = Arc::new(AtomicBool::new(false));
    let stream = attach::attach_with(docker, container, ended.clone()).await?;
    if start {
        docker
            .start_container(container, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| container::engine_error(&format!("start container {}", short(container)), e))?;
    }
    let handshake = AgentClient::connect(stream, config.clone());
    let (client, hello) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => {
            return Err(Error::sandbox_failed(format!("the sandbox's agent did not start: {e}")).with_source(e))
        }
        Err(_) => {
            return Err(Error::sandbox_failed(format!(
                "the sandbox's agent did not answer within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )))
        }
    };
    debug!(container = %short(container), agent = %hello.agent, capabilities = ?hello.capabilities, "agent ready");
    Ok(Connection { client, ended, tunnels: None })
}

impl AgentLink {
    /// Attaches to a created container, starts it and shakes hands with its agent.
    pub(crate) async fn start(
        docker: &Docker,
        container: &str,
        config: ClientConfig,
        memory_limit_mb: u64,
    ) -> Result<AgentLink, Error> {
        let connection = connect(docker, container, &config, true).await?;
        Ok(AgentLink {
            docker: docker.clone(),
            container: container.to_owned(),
            config,
            memory_limit_mb,
            egress: std::sync::Mutex::new(None),
            current: tokio::sync::Mutex::new(connection),
        })
    }

    /// Serves the agent's egress tunnels under `rules` from now on (and after a re-attach).
    pub(crate) async fn set_egress(&self, rules: Arc<EgressRules>) {
        *self.egress.lock().unwrap_or_else(|p| p.into_inner()) = Some(rules.clone());
        let mut current = self.current.lock().await;
        current.tunnels = Some(egress::serve(&current.client, rules));
    }

    /// Ends the session's egress: every tunnel task is aborted (its connection closed, its
    /// buffers freed) and no request is served any more. For the session's close.
    pub(crate) async fn stop_egress(&self) {
        *self.egress.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut current = self.current.lock().await;
        if let Some(task) = current.tunnels.take() {
            task.abort();
        }
    }

    /// Asks the agent to kill every guest process and run nothing more (the session's
    /// close), at most `within`; how many processes it killed. Never re-attaches: an
    /// agent that cannot be reached now is for the caller to stop through the engine.
    pub(crate) async fn shutdown(&self, within: Duration, kill_for: Duration) -> Result<u32, AgentError> {
        let client = self.current.lock().await.client.clone();
        client.shutdown(within, kill_for).await
    }

    /// Destinations the session's egress rules refused since the last call.
    pub(crate) fn take_egress_refused(&self) -> u64 {
        self.egress.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |rules| rules.take_refused())
    }

    /// Whether the channel is still open (for spares waiting in the pool).
    pub(crate) async fn is_open(&self) -> bool {
        self.current.lock().await.client.closed_reason().is_none()
    }

    /// A client to send a command through: the current one while its channel is open,
    /// else, after an engine restart that the container survived, a re-attached one.
    pub(crate) async fn client(&self) -> Result<AgentClient, Error> {
        let mut current = self.current.lock().await;
        let Some(reason) = current.client.closed_reason() else { return Ok(current.client.clone()) };
        if !current.ended.load(Ordering::SeqCst) {
            return Err(Error::sandbox_failed(format!("the sandbox's agent failed: {reason}")));
        }
        match container::state(&self.docker, &self.container, self.memory_limit_mb).await {
            ContainerState::Running => {}
            ContainerState::Dead(reason) => return Err(Error::sandbox_failed(reason)),
            ContainerState::EngineDown(reason) => return Err(Error::backend_unavailable(BACKEND, reason)),
        }
        let mut connection = connect(&self.docker, &self.container, &self.config, false).await?;
        let rules = self.egress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(rules) = rules {
            connection.tunnels = Some(egress::serve(&connection.client, rules));
        }
        info!(container = %short(&self.container), "re-attached to the agent after the connection to the engine was lost");
        *current = connection;
        Ok(current.client.clone())
    }

    /// Raises the container's pids limit by `extra` (or puts `limit` back): a fork bomb
    /// that filled the limit leaves the agent, which shares it, no room to finish killing
    /// it and to answer. Best effort: the agent's own deadline still applies.
    pub(crate) async fn set_pids_limit(&self, limit: i64) {
        let update = bollard::models::ContainerUpdateBody { pids_limit: Some(limit), ..Default::default() };
        if let Err(e) = self.docker.update_container(&self.container, update).await {
            debug!(container = %short(&self.container), error = %e, "could not change the pids limit");
        }
    }

    /// What a failed call means for the session (see the module docs).
    pub(crate) async fn explain(&self, err: AgentError) -> Error {
        match err {
            // Named the way every path of this backend names it.
            AgentError::Remote(reply) if reply.kind == ErrorKind::TooLarge => {
                let path = reply.path.clone().unwrap_or_default();
                Error::limit_reached(format!("{path}: file too large ({})", reply.message))
            }
            AgentError::Remote(reply) => reply.into(),
            // The broken link is the source of what the engine says about the sandbox.
            link => self.explain_link(&link).await.with_source(link),
        }
    }

    /// What a broken link to the agent (closed, silent, out of protocol) means.
    async fn explain_link(&self, err: &AgentError) -> Error {
        match err {
            AgentError::Closed(reason) => {
                let ended = self.current.lock().await.ended.load(Ordering::SeqCst);
                if !ended {
                    return Error::sandbox_failed(format!("the sandbox's agent failed: {reason}"));
                }
                match container::state(&self.docker, &self.container, self.memory_limit_mb).await {
                    ContainerState::Dead(reason) => Error::sandbox_failed(reason),
                    // Live restore keeps the container: the next command re-attaches.
                    ContainerState::Running | ContainerState::EngineDown(_) => Error::backend_unavailable(
                        BACKEND,
                        "the connection to the Docker engine was lost during the command (its result is lost; the \
                         session is kept and re-attaches when the engine answers)",
                    ),
                }
            }
            AgentError::TimedOut(after) => {
                // The container may have died under the command (memory, killed from outside).
                match container::state(&self.docker, &self.container, self.memory_limit_mb).await {
                    ContainerState::Dead(reason) => Error::sandbox_failed(reason),
                    _ => Error::sandbox_failed(format!(
                        "the sandbox's agent did not answer within {} ms (stopped or stuck)",
                        after.as_millis()
                    )),
                }
            }
            other => Error::sandbox_failed(format!("the sandbox's agent failed: {other}")),
        }
    }
}
