//! Which sandbox backends the server runs, and why.
//!
//! By default Deno is always on (it lives in the process) and Docker is on when an
//! engine answers. An operator can name the backends instead (`--backends deno,docker`);
//! a named backend that cannot start is then a startup error rather than a silent gap.
//! Every decision is logged and kept, so `/health` can say why a backend is missing.

use std::sync::Arc;
use std::time::Duration;

use codebeaker::Backend;
use codebeaker_deno::{DenoBackend, DenoConfig};
use codebeaker_docker::{DockerBackend, DockerConfig};
use tracing::{info, warn};

/// The reason recorded for a backend the operator left out of `--backends`: such a
/// backend is not "down" for `/health`.
pub const NOT_SELECTED: &str = "not enabled by --backends";

/// How long connecting to the Docker engine may take before it counts as absent.
const DOCKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A backend the server knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// JavaScript/TypeScript isolates in this process (deno_core).
    Deno,
    /// Python, Node.js, Go and C# containers on a Docker engine.
    Docker,
}

impl BackendKind {
    /// The backend's name, as `/health` reports it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Deno => "deno",
            BackendKind::Docker => "docker",
        }
    }
}

/// Which backends to start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Deno always; Docker when an engine answers.
    #[default]
    Auto,
    /// Exactly these; each must start.
    Only(Vec<BackendKind>),
}

/// Settings of the backends the server may start.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Which to start.
    pub choice: BackendChoice,
    /// Settings of the Docker backend (owner label, warm-pool sizes…).
    pub docker: DockerConfig,
    /// Settings of the Deno backend (warm-pool size, workspace directory).
    pub deno: DenoConfig,
}

/// The backends a server runs, and those it does not with the reason.
#[derive(Default)]
pub struct Backends {
    /// Backends in routing order: the first that runs a language serves it.
    pub enabled: Vec<Arc<dyn Backend>>,
    /// `(name, reason)` of each backend that is off.
    pub disabled: Vec<(String, String)>,
}

/// A backend that was asked for by name could not start.
#[derive(Debug, thiserror::Error)]
#[error("backend {backend} was requested but cannot start: {reason}")]
pub struct BackendError {
    /// The backend's name.
    pub backend: &'static str,
    /// Why it cannot start.
    pub reason: String,
}

impl Backends {
    /// Backends given directly (tests, embedding programs).
    pub fn from_backends(enabled: Vec<Arc<dyn Backend>>) -> Self {
        Backends { enabled, disabled: Vec::new() }
    }

    /// Starts the backends `options` chooses, logging which and why.
    pub async fn start(options: BackendOptions) -> Result<Self, BackendError> {
        let (wanted, required) = match &options.choice {
            BackendChoice::Auto => (vec![BackendKind::Docker, BackendKind::Deno], false),
            BackendChoice::Only(kinds) => (kinds.clone(), true),
        };
        let mut backends = Backends::default();
        // Docker first: it serves `javascript` (Node) even if the Deno backend also could.
        for kind in [BackendKind::Docker, BackendKind::Deno] {
            if !wanted.contains(&kind) {
                info!(backend = kind.name(), "backend disabled: not selected by --backends");
                backends.disabled.push((kind.name().into(), NOT_SELECTED.into()));
                continue;
            }
            match start_one(kind, &options).await {
                Ok((backend, why)) => {
                    let languages: Vec<&str> = backend.languages().iter().map(|l| l.as_str()).collect();
                    info!(backend = kind.name(), languages = %languages.join(", "), "backend enabled: {why}");
                    backends.enabled.push(backend);
                }
                Err(reason) if required => return Err(BackendError { backend: kind.name(), reason }),
                Err(reason) => {
                    warn!(backend = kind.name(), %reason, "backend disabled");
                    backends.disabled.push((kind.name().into(), reason));
                }
            }
        }
        Ok(backends)
    }
}

async fn start_one(kind: BackendKind, options: &BackendOptions) -> Result<(Arc<dyn Backend>, &'static str), String> {
    match kind {
        BackendKind::Docker => {
            let connect = DockerBackend::connect(options.docker.clone());
            match tokio::time::timeout(DOCKER_CONNECT_TIMEOUT, connect).await {
                Ok(Ok(backend)) => Ok((backend as Arc<dyn Backend>, "a Docker engine answers")),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("the Docker engine did not answer within {DOCKER_CONNECT_TIMEOUT:?}")),
            }
        }
        BackendKind::Deno => match DenoBackend::new(options.deno.clone()) {
            Ok(backend) => Ok((backend as Arc<dyn Backend>, "in-process, always available")),
            Err(error) => Err(error.to_string()),
        },
    }
}
