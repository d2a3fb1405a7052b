//! [`DockerBackend`]: the [`Backend`] that runs python, javascript, go and csharp
//! sessions in hardened containers on a Docker engine.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use codebeaker::{
    Allowlist, Backend, BackendHealth, EgressRules, Error, Language, Result, Sandbox, SessionConfig, SessionLimits,
};
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn, Instrument};

use crate::config::{AgentBinary, DockerConfig, DOCKER_LANGUAGES};
use crate::container::{self, short, BACKEND};
use crate::hardening::{Role, SandboxSpec};
use crate::pool::WarmPool;
use crate::sandbox::{DockerSandbox, LiveSet};

/// Runs sessions in containers; see the [crate docs](crate).
pub struct DockerBackend {
    docker: Docker,
    config: Arc<DockerConfig>,
    pool: Arc<WarmPool>,
    live: LiveSet,
    refiller: Mutex<Option<JoinHandle<()>>>,
}

impl DockerBackend {
    /// Connects to the engine named by `DOCKER_HOST` (default: the local unix socket),
    /// removes containers an earlier run with the same [`DockerConfig::owner`] left
    /// behind, and starts filling the warm pool in the background.
    ///
    /// Fails with [`Error::BackendUnavailable`] when no engine answers or the configured
    /// agent binary is missing. Must be called inside a Tokio runtime, which then hosts
    /// the pool's refill task.
    pub async fn connect(config: DockerConfig) -> Result<Arc<Self>> {
        let unavailable = |reason: String| Error::BackendUnavailable { backend: BACKEND.into(), reason };
        if let AgentBinary::Host(path) = &config.agent {
            if !path.is_file() {
                return Err(unavailable(format!(
                    "the agent binary {} does not exist; build it with scripts/build-agent.sh or set {}",
                    path.display(),
                    crate::config::AGENT_ENV
                )));
            }
        }
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| unavailable(format!("cannot set up a docker client: {e}")))?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            unavailable(format!("no Docker engine answers ({e}); start one with scripts/docker-engine.sh"))
        })?;
        let backend = Self::with_client(docker, config);
        let removed = backend.remove_leftovers().await?;
        if removed > 0 {
            info!(removed, owner = %backend.config.owner, "removed sandbox containers left by an earlier run");
        }
        backend.start_pool();
        Ok(backend)
    }

    fn with_client(docker: Docker, config: DockerConfig) -> Arc<Self> {
        let config = Arc::new(config);
        let pool = Arc::new(WarmPool::new(docker.clone(), config.clone()));
        Arc::new(DockerBackend { docker, config, pool, live: LiveSet::default(), refiller: Mutex::new(None) })
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
        let stale: Vec<&String> = owned.iter().filter(|id| !held.contains(*id)).collect();
        futures::future::join_all(stale.iter().map(|id| container::remove(&self.docker, id))).await;
        container::remove_unused_volumes(&self.docker, &self.config.owner).await?;
        Ok(stale.len())
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

    /// Runs `argv` in container `container` straight through the exec API (create,
    /// start, read to the end, inspect) as the sandbox user, bypassing sessions, output
    /// capture and timeouts; returns the exit code. This is the floor the benchmarks
    /// compare `execute_shell` against; sessions should use [`codebeaker::Sandbox`].
    pub async fn raw_exec(&self, container: &str, argv: &[&str]) -> Result<Option<i64>> {
        crate::exec::raw(&self.docker, container, argv, &self.config.sandbox_user).await
    }

    /// The container a session gets: its language's image, or a `dockerImage` the
    /// operator allows (a built-in image or one in the policy's `allowed-images`), under
    /// the resolved limits.
    fn spec(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<SandboxSpec> {
        if !DOCKER_LANGUAGES.contains(&config.language) {
            return Err(Error::Unsupported(format!("{} sessions do not run on the docker backend", config.language)));
        }
        let image = match &config.docker_image {
            Some(image) => {
                self.check_image_allowed(image, limits)?;
                image.clone()
            }
            None => self.config.image_for(config.language).map(str::to_owned).ok_or_else(|| {
                Error::Unsupported(format!("{} sessions do not run on the docker backend", config.language))
            })?,
        };
        Ok(SandboxSpec::new(config.language, image, config.cpu_shares, limits))
    }

    /// Refuses a `dockerImage` that is neither built in nor allowed by the operator: any
    /// other image on the engine could hold anything (tools, setuid binaries, secrets).
    fn check_image_allowed(&self, image: &str, limits: &SessionLimits) -> Result<()> {
        let built_in = self.config.images.values().any(|i| i == image);
        if built_in || limits.allowed_images.iter().any(|i| i == image) {
            return Ok(());
        }
        let mut built_in: Vec<&str> = self.config.images.values().map(String::as_str).collect();
        built_in.sort_unstable();
        Err(Error::InvalidInput(format!(
            "dockerImage {image} is not allowed by the operator's policy (allowed-images = {:?}; built-in images: {})",
            limits.allowed_images,
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
        let agent = self.config.agent != AgentBinary::Off;
        let interpreter = agent && crate::code::interpreter(language).is_some();
        codebeaker::Capabilities {
            persistent_state: interpreter,
            rich_outputs: interpreter,
            stdin: true,
            streaming: true,
            shell: true,
        }
    }

    async fn create_sandbox(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<Box<dyn Sandbox>> {
        let spec = self.spec(config, limits)?;
        let span = info_span!("create_sandbox", language = %spec.language, image = %spec.image);
        async {
            let started = match self.pool.take(&spec).await {
                Some(spare) => spare,
                None => container::create_and_start(&self.docker, &spec, &self.config, Role::Session).await?,
            };
            if let Some(link) = &started.agent {
                let rules = EgressRules::for_session(&limits.net, spec.language, &Allowlist::All);
                link.set_egress(Arc::new(rules)).await;
            }
            tracing::debug!(container = %short(&started.id), "sandbox ready");
            self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(started.id.clone());
            let sandbox =
                DockerSandbox::new(started, self.docker.clone(), self.config.clone(), &spec, limits, self.live.clone());
            Ok(Box::new(sandbox) as Box<dyn Sandbox>)
        }
        .instrument(span)
        .await
    }

    async fn health(&self) -> BackendHealth {
        match self.docker.ping().await {
            Ok(_) => BackendHealth::Ok,
            Err(e) => BackendHealth::Unavailable(format!("no Docker engine answers: {e}")),
        }
    }

    async fn live_sandboxes(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self.live.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    async fn shutdown(&self) -> Result<()> {
        self.pool.drain().await;
        let task = self.refiller.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            // The refiller stops at its next check; a container it was creating is removed.
            if tokio::time::timeout(Duration::from_secs(30), task).await.is_err() {
                warn!("warm pool refiller did not stop within 30 s");
            }
        }
        let held: Vec<String> = self.live.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        futures::future::join_all(held.iter().map(|id| container::remove(&self.docker, id))).await;
        // Anything else with our label (a create that raced shutdown) goes too.
        let owned = container::list_owned(&self.docker, &self.config.owner).await?;
        futures::future::join_all(owned.iter().map(|id| container::remove(&self.docker, id))).await;
        Ok(())
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        if let Some(task) = self.refiller.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}
