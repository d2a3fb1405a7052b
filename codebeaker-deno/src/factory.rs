//! [`DenoFactory`]: how a program starts this backend from its registry
//! ([`codebeaker::BackendRegistry`]).

use async_trait::async_trait;
use codebeaker::{BackendFactory, Policy, Result, Started};

use crate::options::{DenoPolicy, BACKEND};
use crate::{DenoBackend, DenoConfig};

/// Starts a [`DenoBackend`] with its config, after checking the operator's
/// `[backends.deno]` table ([`DenoPolicy`]).
#[derive(Debug, Clone, Default)]
pub struct DenoFactory {
    /// The backend's settings.
    pub config: DenoConfig,
}

impl DenoFactory {
    /// A factory starting the backend with `config`.
    pub fn new(config: DenoConfig) -> Self {
        DenoFactory { config }
    }
}

#[async_trait]
impl BackendFactory for DenoFactory {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn description(&self) -> &'static str {
        "JavaScript and TypeScript isolates in worker processes of this program (deno_core)"
    }

    async fn start(&self, policy: &Policy) -> Result<Started> {
        policy.validate_backend::<DenoPolicy>(BACKEND)?;
        let backend = DenoBackend::new(self.config.clone())?;
        Ok(Started::new(backend, "in-process, always available"))
    }
}
