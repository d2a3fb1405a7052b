//! Which sandbox backends the server runs, and why.
//!
//! The server starts its backends from a [`BackendRegistry`]: [`BackendOptions::registry`]
//! registers the backends compiled in (one line per backend crate, each behind its cargo
//! feature: `docker`, `deno`, both on by default), and an embedding program may register
//! more before [`Backends::start_with`]. By default every registered backend that starts
//! by default is tried, and one that cannot start is left off with its reason; an
//! operator can name the backends instead (`--backends deno,docker`), and a named backend
//! that cannot start is then a startup error rather than a silent gap. Every decision is
//! logged and kept, so `/health` can say why a backend is missing. Every reason a backend
//! gives names the command that fixes it when one does (no engine:
//! `scripts/docker-engine.sh`; agent missing: `scripts/build-agent.sh`; image missing:
//! `scripts/build-images.sh`): [`BackendState`] carries it as `fix`, in `/health` and in
//! the start-up log alike.

use std::sync::Arc;

use codebeaker::{Backend, BackendHealth, BackendRegistry, Policy};
use serde::Serialize;
use tracing::{info, warn};

/// The reason recorded for a backend the operator left out of `--backends`: such a
/// backend is not "down" for `/health`.
pub const NOT_SELECTED: &str = "not enabled by --backends";

/// A backend's state as `/health` details it (`details.<backend>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendState {
    /// `ok`; `unavailable` (it should run and cannot); `off` (not selected by `--backends`).
    pub state: &'static str,
    /// Why it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command that fixes it, when one does (e.g. `scripts/build-agent.sh`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl BackendState {
    /// The state of a backend that is off or failed to start, from its recorded reason.
    pub fn disabled(reason: &str) -> BackendState {
        if reason == NOT_SELECTED {
            BackendState { state: "off", reason: Some(reason.to_owned()), fix: None }
        } else {
            BackendState::unavailable(reason)
        }
    }

    /// The state a running backend reports.
    pub fn of(health: &BackendHealth) -> BackendState {
        match health {
            BackendHealth::Ok => BackendState { state: "ok", reason: None, fix: None },
            BackendHealth::Unavailable(reason) => BackendState::unavailable(reason),
        }
    }

    fn unavailable(reason: &str) -> BackendState {
        BackendState { state: "unavailable", reason: Some(reason.to_owned()), fix: fix_in(reason) }
    }
}

/// The project script a backend's reason names as its fix (`scripts/<name>.sh`), if any.
pub fn fix_in(reason: &str) -> Option<String> {
    let start = reason.find("scripts/")?;
    let script: String = reason[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
        .collect();
    let script = script.trim_end_matches('.');
    script.ends_with(".sh").then(|| script.to_owned())
}

/// Which backends to start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Every registered backend that starts by default; those that cannot start are off.
    #[default]
    Auto,
    /// Exactly these (registered names); each must start.
    Only(Vec<String>),
}

/// Settings of the backends the server may start.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Which to start.
    pub choice: BackendChoice,
    /// The operator's policy the backends start under: each reads its own table
    /// (`[backends.<name>]`), and the Docker warm pool makes its spares for it. Give the
    /// policy of the server's session manager.
    pub policy: Policy,
    /// Settings of the Docker backend (owner label, warm-pool sizes…).
    #[cfg(feature = "docker")]
    pub docker: codebeaker_docker::DockerConfig,
    /// Settings of the Deno backend (warm-pool size, workspace directory).
    #[cfg(feature = "deno")]
    pub deno: codebeaker_deno::DenoConfig,
}

impl BackendOptions {
    /// The registry of the backends compiled into this server, in start order. A new
    /// backend crate adds its one registration line here, behind its cargo feature.
    pub fn registry(&self) -> BackendRegistry {
        #[cfg_attr(not(any(feature = "docker", feature = "deno")), allow(unused_mut))]
        let mut registry = BackendRegistry::new();
        #[cfg(feature = "docker")]
        registry.register(codebeaker_docker::DockerFactory::new(self.docker.clone())).expect("registered once");
        #[cfg(feature = "deno")]
        registry.register(codebeaker_deno::DenoFactory::new(self.deno.clone())).expect("registered once");
        registry
    }
}

/// The backends a server runs, and those it does not with the reason.
#[derive(Default)]
pub struct Backends {
    /// Backends that run (routing between them is the session manager's, see
    /// [`codebeaker::Routes`]).
    pub enabled: Vec<Arc<dyn Backend>>,
    /// `(name, reason)` of each backend that is off.
    pub disabled: Vec<(String, String)>,
}

/// A backend that was asked for by name could not start.
#[derive(Debug, thiserror::Error)]
#[error("backend {backend} was requested but cannot start: {reason}")]
pub struct BackendError {
    /// The backend's name.
    pub backend: String,
    /// Why it cannot start.
    pub reason: String,
}

impl Backends {
    /// Backends given directly (tests, embedding programs).
    pub fn from_backends(enabled: Vec<Arc<dyn Backend>>) -> Self {
        Backends { enabled, disabled: Vec::new() }
    }

    /// Starts the compiled-in backends `options` chooses, logging which and why.
    pub async fn start(options: BackendOptions) -> Result<Self, BackendError> {
        Self::start_with(&options.registry(), &options.choice, &options.policy).await
    }

    /// Starts the backends of `registry` that `choice` selects, under `policy`, in
    /// registration order, logging which and why. A name in `choice` that is not
    /// registered is an error listing those that are.
    pub async fn start_with(
        registry: &BackendRegistry,
        choice: &BackendChoice,
        policy: &Policy,
    ) -> Result<Self, BackendError> {
        if let BackendChoice::Only(names) = choice {
            if let Some(unknown) = names.iter().find(|name| registry.get(name).is_none()) {
                return Err(BackendError {
                    backend: unknown.clone(),
                    reason: format!("no such backend in this server (registered: {})", registry.names().join(", ")),
                });
            }
        }
        let mut backends = Backends::default();
        for factory in registry.factories() {
            let name = factory.name();
            let (wanted, required) = match choice {
                BackendChoice::Auto => (factory.starts_by_default(), false),
                BackendChoice::Only(names) => (names.iter().any(|n| n == name), true),
            };
            if !wanted {
                info!(backend = name, "backend disabled: not selected by --backends");
                backends.disabled.push((name.into(), NOT_SELECTED.into()));
                continue;
            }
            match factory.start(policy).await {
                Ok(started) => {
                    let backend = started.backend;
                    let languages: Vec<&str> = backend.languages().iter().map(|l| l.as_str()).collect();
                    info!(backend = name, languages = %languages.join(", "), "backend enabled: {}", started.note);
                    // Running, yet maybe not usable (an image missing): say so now, as
                    // `/health` will.
                    let state = BackendState::of(&backend.health().await);
                    if let Some(reason) = &state.reason {
                        let fix = state.fix.as_deref().unwrap_or("-");
                        warn!(backend = name, %reason, fix, "backend not usable yet");
                    }
                    backends.enabled.push(backend);
                }
                Err(error) => {
                    let reason = error.to_string();
                    if required {
                        return Err(BackendError { backend: name.into(), reason });
                    }
                    let fix = fix_in(&reason).unwrap_or_else(|| "-".to_owned());
                    warn!(backend = name, %reason, fix, "backend disabled");
                    backends.disabled.push((name.into(), reason));
                }
            }
        }
        Ok(backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_is_the_script_a_reason_names() {
        let agent =
            "the agent binary /x/agent does not exist; build it with scripts/build-agent.sh or set CODEBEAKER_AGENT";
        assert_eq!(fix_in(agent).as_deref(), Some("scripts/build-agent.sh"));
        let image = "image codebeaker-go:latest not on the engine; build it with scripts/build-images.sh.";
        assert_eq!(fix_in(image).as_deref(), Some("scripts/build-images.sh"));
        assert_eq!(fix_in("the Docker engine did not answer within 15s"), None);
        assert_eq!(BackendState::disabled(NOT_SELECTED).state, "off");
        let down = BackendState::disabled("no Docker engine answers (x); start one with scripts/docker-engine.sh");
        assert_eq!((down.state, down.fix.as_deref()), ("unavailable", Some("scripts/docker-engine.sh")));
    }
}
