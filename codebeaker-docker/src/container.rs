//! Container lifecycle on the engine: create and start (with a uid of the sandbox's
//! own), inspect, diagnose a death, remove, and find the containers an earlier run left
//! behind.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions,
};
use bollard::Docker;
use codebeaker::Error;
use codebeaker_agent::client::ClientConfig;
use futures::StreamExt as _;
use tracing::{debug, warn};

use crate::agent_link::AgentLink;
use crate::config::DockerConfig;
use crate::hardening::{container_body, Role, SandboxSpec, LABEL_OWNER, LABEL_UID};

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "docker";

/// Maps an engine error to the SDK's error: transport failures mean the engine is
/// unavailable; anything else is reported with what was being done.
pub(crate) fn engine_error(doing: &str, err: DockerError) -> Error {
    let mapped = match &err {
        DockerError::DockerResponseServerError { status_code, message } => {
            Error::internal(format!("docker engine refused to {doing} (HTTP {status_code}): {message}"))
        }
        other if is_transport(other) => Error::backend_unavailable(BACKEND, format!("cannot {doing}: {other}")),
        other => Error::internal(format!("cannot {doing}: {other}")),
    };
    mapped.with_source(err)
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

/// A started sandbox container and the connection to its agent.
pub(crate) struct Started {
    pub id: String,
    pub agent: AgentLink,
}

/// The agent client's settings for a sandbox of `spec`: a healthy agent answers within a
/// command's timeout + the operator's interrupt grace; the client waits up to the
/// [answer grace](codebeaker::Graces::answer) (the stop grace less its margin), so that
/// a dead agent is diagnosed before the session manager's backstop.
fn client_config(spec: &SandboxSpec) -> ClientConfig {
    ClientConfig {
        reply_grace: spec.graces.answer,
        tunnel_decision: spec.graces.tunnel_decision,
        ..ClientConfig::default()
    }
}

/// Creates and starts a hardened sandbox container with a uid of its own, attached to
/// its agent before the start. A container that fails to start is removed again.
pub(crate) async fn create_and_start(
    docker: &Docker,
    spec: &SandboxSpec,
    config: &DockerConfig,
    role: Role,
) -> Result<Started, Error> {
    // A uid collides only by a 1-in-millions draw, or when two backends draw the same at
    // once: then the engine lists it twice and the later container draws again.
    for _ in 0..UID_DRAWS {
        let uid = draw_uid(config);
        let id = create(docker, spec, config, role, uid).await?;
        if uid_holders(docker, uid).await?.len() > 1 {
            debug!(container = %short(&id), uid, "uid already taken by another live sandbox; drawing again");
            remove(docker, &id).await;
            continue;
        }
        let agent = match AgentLink::start(docker, &id, client_config(spec), spec.memory_limit_mb).await {
            Ok(link) => link,
            Err(e) => {
                remove(docker, &id).await;
                return Err(e);
            }
        };
        debug!(container = %short(&id), language = %spec.language, ?role, uid, "sandbox container started");
        return Ok(Started { id, agent });
    }
    Err(Error::internal(format!("no free sandbox uid found in {UID_DRAWS} draws from {:?}", config.sandbox_uids)))
}

/// How many uids [`create_and_start`] draws before it gives up.
const UID_DRAWS: usize = 8;

/// A uid from [`DockerConfig::sandbox_uids`], at random.
fn draw_uid(config: &DockerConfig) -> u32 {
    let range = &config.sandbox_uids;
    let span = u128::from(range.end - range.start).max(1);
    range.start + (uuid::Uuid::new_v4().as_u128() % span) as u32
}

/// Ids of the live containers on the engine (any owner) whose guest code runs as `uid`.
async fn uid_holders(docker: &Docker, uid: u32) -> Result<Vec<String>, Error> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_UID}={uid}")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let containers = docker.list_containers(Some(options)).await.map_err(|e| engine_error("list sandbox uids", e))?;
    Ok(containers.into_iter().filter_map(|c| c.id).collect())
}

/// Creates (does not start) a sandbox container whose guest code runs as `uid`.
async fn create(
    docker: &Docker,
    spec: &SandboxSpec,
    config: &DockerConfig,
    role: Role,
    uid: u32,
) -> Result<String, Error> {
    let body = container_body(spec, config, role, uid);
    let created = docker.create_container(None::<CreateContainerOptions>, body).await.map_err(|e| {
        if status_of(&e) == Some(404) {
            let reason =
                format!("image {} is not on this engine; build it with scripts/build-images.sh or pull it", spec.image);
            Error::backend_unavailable(BACKEND, reason).with_source(e)
        } else {
            engine_error(&format!("create a {} container from {}", spec.language, spec.image), e)
        }
    })?;
    Ok(created.id)
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

/// Freezes every process of container `id` (the engine's pause, the cgroup freezer): from
/// then on it runs nothing, and only removal is left. ~20 ms here, against 70-130 ms for
/// the engine's kill. A container that is gone or no longer running counts as frozen.
pub(crate) async fn freeze(docker: &Docker, id: &str) -> Result<(), Error> {
    match docker.pause_container(id).await {
        Ok(()) => Ok(()),
        // 404: gone; 409: not running (stopped, or already paused).
        Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(engine_error(&format!("pause container {}", short(id)), e)),
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

/// Whether the engine reported an `oom` event for `container` since `since` (a process
/// killed for memory gives exit code 137 and this event; the container's own `OOMKilled`
/// flag only covers PID 1).
pub(crate) async fn oom_since(docker: &Docker, container: &str, since: SystemTime) -> bool {
    let stamp = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    };
    let filters = HashMap::from([("container", vec![container]), ("event", vec!["oom"])]);
    // `until` in the past makes the engine answer at once instead of streaming.
    let options = EventsOptionsBuilder::new()
        .since(&stamp(since - Duration::from_secs(1)))
        .until(&stamp(SystemTime::now()))
        .filters(&filters)
        .build();
    let events = docker.events(Some(options));
    let found = tokio::time::timeout(Duration::from_secs(2), events.any(|e| async move { e.is_ok() })).await;
    matches!(found, Ok(true))
}
