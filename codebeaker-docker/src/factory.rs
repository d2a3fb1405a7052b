//! [`DockerFactory`]: how a program starts this backend from its registry
//! ([`codebeaker::BackendRegistry`]).

use std::time::Duration;

use async_trait::async_trait;
use codebeaker::{BackendFactory, Error, Policy, Result, Started};

use crate::container::BACKEND;
use crate::options::DockerPolicy;
use crate::{DockerBackend, DockerConfig};

/// How long connecting to the Docker engine may take before it counts as absent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts a [`DockerBackend`] on the engine `DOCKER_HOST` names, after checking the
/// operator's `[backends.docker]` table ([`DockerPolicy`]). The warm pool makes its
/// spares for the policy given to [`BackendFactory::start`].
#[derive(Debug, Clone, Default)]
pub struct DockerFactory {
    /// The backend's settings (its `policy` is replaced by the one `start` is given).
    pub config: DockerConfig,
}

impl DockerFactory {
    /// A factory starting the backend with `config`.
    pub fn new(config: DockerConfig) -> Self {
        DockerFactory { config }
    }
}

#[async_trait]
impl BackendFactory for DockerFactory {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn description(&self) -> &'static str {
        "Python, Node.js, Go and C# in hardened containers on a Docker engine"
    }

    async fn start(&self, policy: &Policy) -> Result<Started> {
        policy.validate_backend::<DockerPolicy>(BACKEND)?;
        let config = self.config.clone().with_policy(policy.clone());
        match tokio::time::timeout(CONNECT_TIMEOUT, DockerBackend::connect(config)).await {
            Ok(Ok(backend)) => Ok(Started::new(backend, "a Docker engine answers")),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::backend_unavailable(
                BACKEND,
                format!(
                    "the Docker engine did not answer within {CONNECT_TIMEOUT:?}; restart it with scripts/docker-engine.sh restart"
                ),
            )),
        }
    }
}
