//! [`DenoBackend`]: makes Deno sessions: a ready runtime from the [`WarmPool`] and a
//! workspace directory under the backend's root, seen by the code as `/workspace`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use codebeaker::{Backend, BackendHealth, Error, Language, Result, Sandbox, SessionConfig, SessionLimits};

use crate::engine::SessionSetup;
use crate::pool::WarmPool;
use crate::sandbox::DenoSandbox;
use crate::watchdog::Watchdog;

/// Settings of a [`DenoBackend`].
#[derive(Debug, Clone)]
pub struct DenoConfig {
    /// Runtimes kept started and ready for new sessions (default 4; each idles at ~3 MB).
    pub pool_size: usize,
    /// Directory under which each backend instance keeps its sessions' workspaces
    /// (default: `codebeaker-deno-<uid>` in the system's temporary directory). Created
    /// 0700; an existing one must be private and the server's own.
    pub workspace_root: PathBuf,
}

impl Default for DenoConfig {
    fn default() -> Self {
        DenoConfig { pool_size: 4, workspace_root: crate::workspaces::default_root() }
    }
}

/// Ids of the sessions' sandboxes that are alive, shared with the sandboxes (which remove
/// themselves when closed).
#[derive(Clone, Default)]
pub(crate) struct LiveSandboxes(Arc<Mutex<HashSet<String>>>);

impl LiveSandboxes {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, id: String) {
        self.lock().insert(id);
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The Deno backend: JavaScript and TypeScript sessions on embedded deno_core runtimes,
/// one runtime thread per session, with Deno-style permissions and hard time and heap limits.
pub struct DenoBackend {
    pool: WarmPool,
    /// This instance's directory of workspaces (`<root>/<pid>-<uuid>`), removed at shutdown.
    workspaces: PathBuf,
    live: LiveSandboxes,
}

const LANGUAGES: [Language; 1] = [Language::Deno];

impl DenoBackend {
    /// A backend with `config`. Starts the watchdog and the pool's spare runtimes, and
    /// removes workspaces left behind by earlier processes that are gone.
    pub fn new(config: DenoConfig) -> Result<Arc<Self>> {
        crate::workspaces::prepare_root(&config.workspace_root)?;
        remove_leftovers(&config.workspace_root);
        let workspaces = crate::workspaces::create_instance_dir(&config.workspace_root)?;
        let watchdog =
            Watchdog::start().map_err(|e| Error::Internal(format!("cannot start the deno watchdog: {e}")))?;
        let pool = WarmPool::new(config.pool_size, Arc::new(watchdog));
        Ok(Arc::new(DenoBackend { pool, workspaces, live: LiveSandboxes::default() }))
    }

    /// A backend with the default [`DenoConfig`].
    pub fn with_defaults() -> Result<Arc<Self>> {
        DenoBackend::new(DenoConfig::default())
    }

    /// The host directory holding this backend's session workspaces.
    pub fn workspaces_dir(&self) -> &Path {
        &self.workspaces
    }
}

/// Removes `<root>/<pid>-*` directories whose process no longer runs (a crashed server).
fn remove_leftovers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("cannot remove leftover deno workspaces {}: {e}", entry.path().display());
            }
        }
    }
}

#[async_trait]
impl Backend for DenoBackend {
    fn name(&self) -> &'static str {
        "deno"
    }

    fn languages(&self) -> &[Language] {
        &LANGUAGES
    }

    fn capabilities(&self, _language: Language) -> codebeaker::Capabilities {
        codebeaker::Capabilities { persistent_state: true, streaming: true, ..codebeaker::Capabilities::default() }
    }

    async fn create_sandbox(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<Box<dyn Sandbox>> {
        crate::permissions::check_grants(&config.permissions, &limits.grantable_paths)?;
        let id = format!("deno-{}", uuid::Uuid::new_v4().simple());
        let (instance, session_id, quota) = (self.workspaces.clone(), id.clone(), limits.workspace_bytes);
        let opened =
            tokio::task::spawn_blocking(move || crate::workspaces::open_session(&instance, &session_id, quota))
                .await
                .map_err(|e| Error::Internal(format!("workspace task failed: {e}")))?;
        let workspace = Arc::new(opened?);
        let setup = SessionSetup {
            workspace: workspace.root().to_path_buf(),
            permissions: config.permissions.clone(),
            memory_limit_mb: config.memory_limit_mb,
            limits: limits.into(),
        };
        let taken = self.pool.take().await;
        let assigned = match taken {
            Ok(runtime) => runtime.assign(setup).await.map(|()| runtime),
            Err(e) => Err(e),
        };
        self.pool.refill();
        let runtime = match assigned {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = std::fs::remove_dir_all(workspace.root());
                return Err(e);
            }
        };
        self.live.insert(id.clone());
        tracing::debug!(sandbox = %id, "deno session created");
        Ok(Box::new(DenoSandbox::new(id, workspace, runtime, self.live.clone())))
    }

    async fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }

    async fn live_sandboxes(&self) -> Result<Vec<String>> {
        Ok(self.live.lock().iter().cloned().collect())
    }

    async fn shutdown(&self) -> Result<()> {
        self.pool.drain();
        let dir = self.workspaces.clone();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        match removed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Ok(Err(e)) => Err(Error::Internal(format!("cannot remove {}: {e}", self.workspaces.display()))),
            Err(e) => Err(Error::Internal(format!("shutdown task failed: {e}"))),
        }
    }
}
