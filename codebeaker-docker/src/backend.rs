//! [`DockerBackend`]: the [`Backend`] that runs python, javascript, go and csharp
//! sessions in hardened containers on a Docker engine.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use codebeaker::{Backend, BackendHealth, EgressRules, Error, Language, Result, Sandbox, SessionConfig, SessionLimits};
use futures::StreamExt as _;
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn, Instrument};

use crate::config::{AgentBinary, DockerConfig, DOCKER_LANGUAGES};
use crate::container::{self, engine_error, short, BACKEND};
use crate::hardening::{Role, SandboxSpec};
use crate::options::{DockerOptions, DockerPolicy};
use crate::pool::{Take, WarmPool};
use crate::reaper::Reaper;
use crate::sandbox::{DockerSandbox, LiveSet};

/// How long shutdown waits for spares still starting, and then for removals.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);
/// Leftover containers removed at once by the start-up sweep.
const SWEEP_CONCURRENCY: usize = 4;

/// Runs sessions in containers; see the [crate docs](crate).
pub struct DockerBackend {
    docker: Docker,
    config: Arc<DockerConfig>,
    pool: Arc<WarmPool>,
    reaper: Arc<Reaper>,
    live: LiveSet,
    refiller: Mutex<Option<JoinHandle<()>>>,
}

impl DockerBackend {
    /// Connects to the engine named by `DOCKER_HOST` (default: the local unix socket)
    /// and starts as [`DockerBackend::with_docker`] does.
    ///
    /// Fails with [`ErrorKind::BackendUnavailable`](codebeaker::ErrorKind::BackendUnavailable) when no engine answers or the agent binary
    /// is missing (the reason names the file and `scripts/build-agent.sh`, which builds
    /// it), and with [`ErrorKind::InvalidInput`](codebeaker::ErrorKind::InvalidInput) for unusable
    /// [`DockerConfig::sandbox_uids`]. Must be called inside a Tokio runtime, which then
    /// hosts the pool's refill task.
    pub async fn connect(config: DockerConfig) -> Result<Arc<Self>> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| {
            Error::backend_unavailable(BACKEND, format!("cannot set up a docker client: {e}")).with_source(e)
        })?;
        Self::with_docker(docker, config).await
    }

    /// Starts over a given engine client (any transport bollard offers: a unix socket,
    /// TCP with TLS, SSH…): negotiates the API version, removes containers an earlier run
    /// with the same [`DockerConfig::owner`] left behind, and starts filling the warm
    /// pool in the background. Fails as [`DockerBackend::connect`] does.
    pub async fn with_docker(docker: Docker, config: DockerConfig) -> Result<Arc<Self>> {
        let unavailable = |reason: String| Error::backend_unavailable(BACKEND, reason);
        if let AgentBinary::Host(path) = &config.agent {
            if !path.is_file() {
                return Err(unavailable(format!(
                    "the agent binary {} does not exist; build it with scripts/build-agent.sh (or name it in {})",
                    path.display(),
                    crate::config::AGENT_ENV
                )));
            }
        }
        config.check_sandbox_uids().map_err(Error::invalid_input)?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            unavailable(format!("no Docker engine answers ({e}); start one with scripts/docker-engine.sh"))
                .with_source(e)
        })?;
        let backend = Self::with_client(docker, config);
        let removed = backend.remove_leftovers().await?;
        if removed > 0 {
            info!(removed, owner = %backend.config.owner, "removed sandbox containers left by an earlier run");
        }
        // Sessions of the languages whose image is missing fail until it is built; the
        // backend still starts, and `health` says what to run.
        let missing = backend.missing_images().await;
        if !missing.is_empty() {
            warn!(images = %missing.join(", "), "images missing on the engine; build them with scripts/build-images.sh");
        }
        backend.start_pool();
        Ok(backend)
    }

    fn with_client(docker: Docker, config: DockerConfig) -> Arc<Self> {
        let config = Arc::new(config);
        let reaper = Reaper::new(docker.clone());
        let pool = Arc::new(WarmPool::new(docker.clone(), config.clone(), reaper.clone()));
        Arc::new(DockerBackend { docker, config, pool, reaper, live: LiveSet::default(), refiller: Mutex::new(None) })
    }

    fn start_pool(&self) {
        let pool = self.pool.clone();
        let task = tokio::spawn(pool.refill_forever().instrument(info_span!("warm_pool")));
        *self.refiller.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// The warm pool (to see how many spares are ready).
    pub fn pool(&self) -> &WarmPool {
        &self.pool
    }

    /// The backend's settings.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// Removes every container labelled with this backend's owner that it does not hold
    /// (left by a crashed earlier run), and the owner's workspace volumes no container
    /// uses; returns how many containers. Called by [`DockerBackend::connect`].
    pub async fn remove_leftovers(&self) -> Result<usize> {
        let owned = container::list_owned(&self.docker, &self.config.owner).await?;
        let held: HashSet<String> = self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let stale: Vec<String> =
            owned.into_iter().filter(|id| !held.contains(id) && !self.reaper.is_pending(id)).collect();
        // Owned ids: the future stays `Send` for any caller (a factory).
        let removing = futures::stream::iter(stale.iter().cloned().map(|id| {
            let docker = self.docker.clone();
            async move { container::remove(&docker, &id).await }
        }));
        removing.buffer_unordered(SWEEP_CONCURRENCY).for_each(|_| async {}).await;
        container::remove_unused_volumes(&self.docker, &self.config.owner).await?;
        Ok(stale.len())
    }

    /// The configured images the engine does not have (sorted): sessions of their
    /// languages cannot start until `scripts/build-images.sh` builds them.
    pub async fn missing_images(&self) -> Vec<String> {
        let mut images: Vec<String> = self.config.images.values().cloned().collect();
        images.sort_unstable();
        images.dedup();
        // Owned names and client: the future stays `Send` for any caller (a factory).
        let looks = images.into_iter().map(|image| {
            let docker = self.docker.clone();
            async move {
                match docker.inspect_image(&image).await {
                    Err(e) if container::status_of(&e) == Some(404) => Some(image),
                    _ => None,
                }
            }
        });
        futures::future::join_all(looks).await.into_iter().flatten().collect()
    }

    /// Waits until the pool holds its configured spares (or `timeout` passes); for tests
    /// and benchmarks that want to measure warm starts.
    pub async fn wait_for_pool(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let full = DOCKER_LANGUAGES.iter().all(|&l| self.pool.ready(l) >= self.config.pool_size_for(l));
            if full {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `argv` in container `container` straight through the engine's exec API
    /// (create, start, read to the end, inspect) as `nobody`, bypassing the agent,
    /// sessions, output capture and timeouts; returns the exit code. This is the floor
    /// the benchmarks compare `execute_shell` against; sessions never use it.
    pub async fn raw_exec(&self, container: &str, argv: &[&str]) -> Result<Option<i64>> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        use futures::StreamExt as _;
        let options = CreateExecOptions {
            cmd: Some(argv.iter().map(|a| (*a).to_owned()).collect()),
            user: Some("65534:65534".to_owned()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self.docker.create_exec(container, options).await.map_err(|e| engine_error("create an exec", e))?;
        let started = self.docker.start_exec(&exec.id, None).await.map_err(|e| engine_error("start an exec", e))?;
        if let StartExecResults::Attached { mut output, .. } = started {
            while output.next().await.is_some() {}
        }
        let info = self.docker.inspect_exec(&exec.id).await.map_err(|e| engine_error("inspect an exec", e))?;
        Ok(info.exit_code)
    }

    /// Force-removes container `container` straight through the engine (its kill, then
    /// the removal of the container and its volume), bypassing sessions; whether it is
    /// gone. This is the floor the benchmarks compare closing a session against.
    pub async fn raw_remove(&self, container: &str) -> bool {
        container::remove(&self.docker, container).await
    }

    /// The container a session gets: its language's image, or the image its
    /// [`DockerOptions`] name when the operator allows it (a built-in image or one in
    /// [`DockerPolicy::allowed_images`]), under the resolved limits.
    fn spec(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<SandboxSpec> {
        if !DOCKER_LANGUAGES.contains(&config.language) {
            return Err(Error::unsupported(format!("{} sessions do not run on the docker backend", config.language)));
        }
        let image = match DockerOptions::of(config)?.image {
            Some(image) => {
                self.check_image_allowed(&image, &DockerPolicy::of(limits)?)?;
                image
            }
            None => self.config.image_for(config.language).map(str::to_owned).ok_or_else(|| {
                Error::unsupported(format!("{} sessions do not run on the docker backend", config.language))
            })?,
        };
        Ok(SandboxSpec::new(config.language, image, config.cpu_shares, limits))
    }

    /// Refuses an image that is neither built in nor allowed by the operator: any other
    /// image on the engine could hold anything (tools, setuid binaries, secrets).
    fn check_image_allowed(&self, image: &str, policy: &DockerPolicy) -> Result<()> {
        let built_in = self.config.images.values().any(|i| i == image);
        if built_in || policy.allowed_images.iter().any(|i| i == image) {
            return Ok(());
        }
        let mut built_in: Vec<&str> = self.config.images.values().map(String::as_str).collect();
        built_in.sort_unstable();
        Err(Error::invalid_input(format!(
            "image {image} (dockerImage) is not allowed by the operator's policy \
             ([backends.docker] allowed-images = {:?}; built-in images: {})",
            policy.allowed_images,
            built_in.join(", ")
        )))
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn languages(&self) -> &[Language] {
        &DOCKER_LANGUAGES
    }

    fn warm_pool(&self) -> Vec<(Language, usize)> {
        self.languages().iter().map(|&language| (language, self.pool.ready(language))).collect()
    }

    fn capabilities(&self, language: Language) -> codebeaker::Capabilities {
        let interpreter = crate::code::interpreter(language).is_some();
        let mut capabilities = codebeaker::Capabilities::default()
            .with_stdin()
            .with_streaming()
            .with_shell()
            .with_pty()
            .with_pause()
            .with_snapshots();
        capabilities.persistent_state = interpreter;
        // Only the python driver renders figures and `_repr_*_`; node's returns text.
        capabilities.rich_outputs = interpreter && language == Language::Python;
        capabilities
    }

    async fn create_sandbox(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<Box<dyn Sandbox>> {
        let spec = self.spec(config, limits)?;
        let span = info_span!("create_sandbox", language = %spec.language, image = %spec.image);
        async {
            let spare = match self.pool.take(&spec).await {
                Take::Spare(spare) => Some(*spare),
                Take::Wait(place) => self.pool.wait_for(place).await,
                Take::Miss => None,
            };
            let started = match spare {
                Some(spare) => spare,
                None => {
                    let _slot = self.pool.start_slot().await;
                    container::create_and_start(&self.docker, &spec, &self.config, Role::Session).await?
                }
            };
            let rules = EgressRules::for_session(&limits.net, spec.language, None);
            started.agent.set_egress(Arc::new(rules)).await;
            tracing::debug!(container = %short(&started.id), "sandbox ready");
            self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(started.id.clone());
            let sandbox = DockerSandbox::new(
                started,
                self.docker.clone(),
                self.config.clone(),
                &spec,
                limits,
                self.live.clone(),
                self.reaper.clone(),
            );
            Ok(Box::new(sandbox) as Box<dyn Sandbox>)
        }
        .instrument(span)
        .await
    }

    /// `Ok` when the engine answers, every configured image is on it and the agent
    /// binary is still there; otherwise why not, naming the script that fixes it.
    async fn health(&self) -> BackendHealth {
        if let Err(e) = self.docker.ping().await {
            return BackendHealth::Unavailable(format!(
                "no Docker engine answers ({e}); start one with scripts/docker-engine.sh"
            ));
        }
        let missing = self.missing_images().await;
        if !missing.is_empty() {
            return BackendHealth::Unavailable(format!(
                "image {} not on the engine; build it with scripts/build-images.sh",
                missing.join(", ")
            ));
        }
        if let AgentBinary::Host(path) = &self.config.agent {
            if !path.is_file() {
                return BackendHealth::Unavailable(format!(
                    "the agent binary {} no longer exists; build it with scripts/build-agent.sh",
                    path.display()
                ));
            }
        }
        BackendHealth::Ok
    }

    async fn live_sandboxes(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self.live.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    /// Stops the pool, removes every spare, every session still held and anything else
    /// with this owner's label, and waits (bounded) until the removals finished.
    async fn shutdown(&self) -> Result<()> {
        let task = self.refiller.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
        self.pool.drain(SHUTDOWN_WAIT).await;
        let held: Vec<String> = self.live.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        for id in held {
            self.reaper.remove(id);
        }
        // Anything else with our label (a create that raced shutdown) goes too.
        for id in container::list_owned(&self.docker, &self.config.owner).await? {
            self.reaper.remove(id);
        }
        if !self.reaper.wait(SHUTDOWN_WAIT).await {
            warn!(
                "sandbox containers still being removed after {} s; the next start-up sweep removes them",
                SHUTDOWN_WAIT.as_secs()
            );
        }
        Ok(())
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        if let Some(task) = self.refiller.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
        self.pool.close();
    }
}
