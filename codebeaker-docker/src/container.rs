//! Container lifecycle on the engine: create and start, inspect, diagnose a death, remove,
//! and find the containers an earlier run left behind.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, StartContainerOptions,
};
use bollard::Docker;
use codebeaker::Error;
use codebeaker_agent::client::ClientConfig;
use tracing::{debug, warn};

use crate::agent_link::AgentLink;
use crate::config::{AgentBinary, DockerConfig};
use crate::hardening::{container_body, Role, SandboxSpec, LABEL_OWNER};

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "docker";

/// Maps an engine error to the SDK's error: transport failures mean the engine is
/// unavailable; anything else is reported with what was being done.
pub(crate) fn engine_error(doing: &str, err: DockerError) -> Error {
    match err {
        DockerError::DockerResponseServerError { status_code, message } => {
            Error::Internal(format!("docker engine refused to {doing} (HTTP {status_code}): {message}"))
        }
        other if is_transport(&other) => {
            Error::BackendUnavailable { backend: BACKEND.into(), reason: format!("cannot {doing}: {other}") }
        }
        other => Error::Internal(format!("cannot {doing}: {other}")),
    }
}

/// Whether the error means the engine could not be reached at all.
pub(crate) fn is_transport(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::HyperResponseError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::IOError { .. }
            | DockerError::SocketNotFoundError(_)
            | DockerError::RequestTimeoutError
    )
}

/// The HTTP status of an engine error response, if it is one.
pub(crate) fn status_of(err: &DockerError) -> Option<u16> {
    match err {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A started sandbox container, and the connection to its agent when it runs one.
pub(crate) struct Started {
    pub id: String,
    pub agent: Option<AgentLink>,
}

/// The agent client's settings for a sandbox of `spec`: a healthy agent answers within a
/// command's timeout + 1 s; the client gives up on it after most of the stop grace more.
fn client_config(spec: &SandboxSpec) -> ClientConfig {
    let grace = Duration::from_millis(spec.stop_grace_ms).mul_f64(0.75);
    ClientConfig { reply_grace: grace.max(Duration::from_millis(1200)), ..ClientConfig::default() }
}

/// Creates and starts a hardened sandbox container (attached to its agent before the
/// start, when it runs one). A container that fails to start is removed again.
pub(crate) async fn create_and_start(
    docker: &Docker,
    spec: &SandboxSpec,
    config: &DockerConfig,
    role: Role,
) -> Result<Started, Error> {
    let body = container_body(spec, config, role);
    let created = docker.create_container(None::<CreateContainerOptions>, body).await.map_err(|e| {
        if status_of(&e) == Some(404) {
            Error::BackendUnavailable {
                backend: BACKEND.into(),
                reason: format!(
                    "image {} is not on this engine; build it with scripts/build-images.sh or pull it",
                    spec.image
                ),
            }
        } else {
            engine_error(&format!("create a {} container from {}", spec.language, spec.image), e)
        }
    })?;
    let agent = if config.agent == AgentBinary::Off {
        match docker.start_container(&created.id, None::<StartContainerOptions>).await {
            Ok(()) => None,
            Err(e) => {
                remove(docker, &created.id).await;
                return Err(engine_error(&format!("start a {} container from {}", spec.language, spec.image), e));
            }
        }
    } else {
        match AgentLink::start(docker, &created.id, client_config(spec), spec.memory_limit_mb).await {
            Ok(link) => Some(link),
            Err(e) => {
                remove(docker, &created.id).await;
                return Err(e);
            }
        }
    };
    debug!(container = %short(&created.id), language = %spec.language, ?role, agent = agent.is_some(), "sandbox container started");
    Ok(Started { id: created.id, agent })
}

/// Force-removes a container and its anonymous volumes (the workspace). A container that
/// is already gone counts as removed; other failures are logged, since nothing more can be
/// done about them here and the start-up sweep will retry.
pub(crate) async fn remove(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => true,
        Err(e) if status_of(&e) == Some(404) => true,
        Err(e) => {
            warn!(container = %short(id), error = %e, "could not remove sandbox container");
            false
        }
    }
}

/// Ids of every container (running or not) labelled with `owner`.
pub(crate) async fn list_owned(docker: &Docker, owner: &str) -> Result<Vec<String>, Error> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_OWNER}={owner}")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let containers =
        docker.list_containers(Some(options)).await.map_err(|e| engine_error("list sandbox containers", e))?;
    Ok(containers.into_iter().filter_map(|c| c.id).collect())
}

/// Removes workspace volumes labelled with `owner` that no container uses any more (left
/// when a container was removed without its volumes, e.g. by hand); returns how many.
pub(crate) async fn remove_unused_volumes(docker: &Docker, owner: &str) -> Result<usize, Error> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_OWNER}={owner}")])]);
    let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let listed = docker.list_volumes(Some(options)).await.map_err(|e| engine_error("list sandbox volumes", e))?;
    let mut removed = 0;
    for volume in listed.volumes.unwrap_or_default() {
        // A volume still mounted by a container is refused (409) and stays.
        if docker.remove_volume(&volume.name, None::<RemoveVolumeOptions>).await.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// What the engine says about a sandbox container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContainerState {
    /// It runs.
    Running,
    /// It can no longer run commands; why, in words for the session's error.
    Dead(String),
    /// The engine does not answer (stopped or restarting); the container may live on.
    EngineDown(String),
}

/// Asks the engine about container `id`. A transport failure is asked again once: after
/// an engine restart the client's first request may ride a stale pooled connection.
pub(crate) async fn state(docker: &Docker, id: &str, memory_limit_mb: u64) -> ContainerState {
    let mut inspected = docker.inspect_container(id, None::<InspectContainerOptions>).await;
    if inspected.as_ref().is_err_and(is_transport) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        inspected = docker.inspect_container(id, None::<InspectContainerOptions>).await;
    }
    match inspected {
        Ok(info) => {
            let state = info.state.unwrap_or_default();
            if state.running == Some(true) && state.paused != Some(true) {
                return ContainerState::Running;
            }
            let code = state.exit_code.unwrap_or(-1);
            ContainerState::Dead(if state.oom_killed == Some(true) {
                format!("sandbox was OOM-killed (memory limit {memory_limit_mb} MB; container exit code {code})")
            } else if state.paused == Some(true) {
                "sandbox container is paused".to_owned()
            } else {
                format!(
                    "sandbox container stopped (exit code {code}): killed from outside, its agent was killed, or it \
                     did not survive an engine restart"
                )
            })
        }
        Err(e) if status_of(&e) == Some(404) => ContainerState::Dead(
            "sandbox container no longer exists (removed from outside or lost in an engine restart)".to_owned(),
        ),
        Err(e) if is_transport(&e) => ContainerState::EngineDown(format!("the docker engine does not answer: {e}")),
        // Any other answer is the engine's problem, not a sign the container died.
        Err(_) => ContainerState::Running,
    }
}

/// Why a container can no longer run commands (the engine not answering included), or
/// `None` while it runs.
pub(crate) async fn diagnose(docker: &Docker, id: &str, memory_limit_mb: u64) -> Option<String> {
    match state(docker, id, memory_limit_mb).await {
        ContainerState::Running => None,
        ContainerState::Dead(reason) | ContainerState::EngineDown(reason) => Some(reason),
    }
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
