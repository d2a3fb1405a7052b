//! [`DenoBackend`]: makes Deno sessions: a ready runtime (a worker process, or a thread of
//! this process) from a warm pool and a workspace directory under the backend's root, seen
//! by the code as `/workspace`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use codebeaker::{
    Backend, BackendHealth, Error, HostWorkspace, Language, Result, Sandbox, SessionConfig, SessionLimits,
};

use crate::engine::SessionSetup;
use crate::options::{DenoOptions, DenoPolicy};
use crate::pool::WarmPool;
use crate::sandbox::{DenoSandbox, DenoSandboxParts};
use crate::watchdog::Watchdog;
use crate::worker::identity::{self, Lease, WorkerIds};
use crate::worker::ipc::WorkerSetup;
use crate::worker::pool::WorkerPool;
use crate::worker::sandbox::{start_worker, ProcessSandbox, ProcessSandboxParts};

/// Where a session's JavaScript runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DenoIsolation {
    /// A worker process per session (the default): kernel walls (seccomp, Landlock,
    /// rlimits), a kill that always stops it, and a crash that takes only that session's
    /// JavaScript state with it.
    #[default]
    Process,
    /// A thread of this process per session: faster to create and lighter, for trusted
    /// code only (a C-level loop in the engine cannot be killed, a crash takes the process).
    Thread,
}

/// Settings of a [`DenoBackend`].
#[derive(Debug, Clone)]
pub struct DenoConfig {
    /// Runtimes kept started and ready for new sessions (default 4).
    pub pool_size: usize,
    /// Directory under which each backend instance keeps its sessions' workspaces
    /// (default: `codebeaker-deno-<uid>` in the system's temporary directory). Created
    /// 0700; an existing one must be private and the server's own.
    pub workspace_root: PathBuf,
    /// Where sessions' JavaScript runs (default: [`DenoIsolation::Process`]).
    pub isolation: DenoIsolation,
    /// The program started as a worker (default: this executable, `/proc/self/exe`). It
    /// must be linked with this crate and reach [`run_worker_if_requested`](crate::run_worker_if_requested)
    /// (automatic before `main`; see the crate's README).
    pub worker_program: Option<PathBuf>,
    /// The uids and group workers run as when the server runs as root (process isolation):
    /// a uid of its own per session. Unused when the server is not root.
    pub worker_ids: WorkerIds,
}

impl Default for DenoConfig {
    fn default() -> Self {
        DenoConfig {
            pool_size: 4,
            workspace_root: crate::workspaces::default_root(),
            isolation: DenoIsolation::default(),
            worker_program: None,
            worker_ids: WorkerIds::default(),
        }
    }
}

/// The process id of a session's current worker (0 when it has none, or in thread isolation).
pub(crate) type WorkerPid = Arc<AtomicU32>;

/// The sessions' sandboxes that are alive and their workers, shared with the sandboxes
/// (which remove themselves when closed).
#[derive(Clone, Default)]
pub(crate) struct LiveSandboxes(Arc<Mutex<HashMap<String, WorkerPid>>>);

impl LiveSandboxes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, WorkerPid>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn insert(&self, id: String) -> WorkerPid {
        self.lock().entry(id).or_default().clone()
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The pool of the configured isolation.
enum Runtimes {
    Process(Arc<WorkerPool>),
    Thread(Arc<WarmPool>),
}

/// The Deno backend: JavaScript and TypeScript sessions on embedded deno_core runtimes,
/// one worker process (or thread) per session, with Deno-style permissions and hard limits.
pub struct DenoBackend {
    runtimes: Runtimes,
    /// This instance's directory of workspaces (`<root>/<pid>-<uuid>`), removed at shutdown.
    workspaces: PathBuf,
    /// Who process-isolated sessions' workers run as.
    worker_ids: WorkerIds,
    /// The workers' group, when they pass through the instance and lineage directories
    /// to workspaces of their own uids.
    passage: Option<u32>,
    live: LiveSandboxes,
}

const LANGUAGES: [Language; 2] = [Language::JavaScript, Language::TypeScript];

impl DenoBackend {
    /// A backend with `config`. Starts the pool's spare runtimes, and removes workspaces
    /// left behind by earlier processes that are gone.
    pub fn new(config: DenoConfig) -> Result<Arc<Self>> {
        // Keeps the worker start-up hook linked into every program that makes a backend.
        std::hint::black_box(&crate::worker::WORKER_HOOK);
        // Workers of other uids pass through the root and instance directory to their own.
        let passage = (config.isolation == DenoIsolation::Process && identity::server_is_root())
            .then_some(config.worker_ids.group);
        crate::workspaces::prepare_root(&config.workspace_root, config.worker_ids.group, passage.is_some())?;
        remove_leftovers(&config.workspace_root);
        let workspaces = crate::workspaces::create_instance_dir(&config.workspace_root, passage)?;
        let runtimes = match config.isolation {
            DenoIsolation::Process => {
                identity::announce(&config.worker_ids);
                let program = config.worker_program.clone().unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
                Runtimes::Process(Arc::new(WorkerPool::new(config.pool_size, program)))
            }
            DenoIsolation::Thread => {
                let watchdog = Watchdog::start()
                    .map_err(|e| Error::internal(format!("cannot start the deno watchdog: {e}")).with_source(e))?;
                Runtimes::Thread(Arc::new(WarmPool::new(config.pool_size, Arc::new(watchdog))))
            }
        };
        Ok(Arc::new(DenoBackend {
            runtimes,
            workspaces,
            worker_ids: config.worker_ids,
            passage,
            live: LiveSandboxes::default(),
        }))
    }

    /// A backend with the default [`DenoConfig`].
    pub fn with_defaults() -> Result<Arc<Self>> {
        DenoBackend::new(DenoConfig::default())
    }

    /// The host directory holding this backend's session workspaces (each in the
    /// directory of its lineage: a session and its live forks).
    pub fn workspaces_dir(&self) -> &Path {
        &self.workspaces
    }

    /// The host directory of the workspace of the sandbox `sandbox_id` (a session's
    /// `container_id`), while it is open.
    pub fn workspace_of(&self, sandbox_id: &str) -> Option<PathBuf> {
        std::fs::read_dir(&self.workspaces)
            .ok()?
            .flatten()
            .map(|lineage| lineage.path().join(sandbox_id))
            .find(|workspace| workspace.is_dir())
    }

    /// The process id of the worker running the sandbox `sandbox_id` (a session's
    /// `container_id`) now, in process isolation.
    pub fn worker_pid(&self, sandbox_id: &str) -> Option<u32> {
        let pid = self.live.lock().get(sandbox_id)?.load(Ordering::Acquire);
        (pid != 0).then_some(pid)
    }

    async fn create_in_thread(
        &self,
        pool: &Arc<WarmPool>,
        id: String,
        workspace: Arc<HostWorkspace>,
        setup: SessionSetup,
    ) -> Result<Box<dyn Sandbox>> {
        let taken = pool.take().await;
        let assigned = match taken {
            Ok(runtime) => runtime.assign(setup.clone()).await.map(|()| runtime),
            Err(e) => Err(e),
        };
        pool.refill();
        let runtime = assigned?;
        self.live.insert(id.clone());
        let parts = DenoSandboxParts { id, workspace, runtime, pool: pool.clone(), setup, live: self.live.clone() };
        Ok(Box::new(DenoSandbox::new(parts)))
    }

    async fn create_in_process(
        &self,
        pool: &Arc<WorkerPool>,
        id: String,
        workspace: Arc<HostWorkspace>,
        setup: WorkerSetup,
        lease: Option<Lease>,
        limits: &SessionLimits,
    ) -> Result<Box<dyn Sandbox>> {
        let worker = start_worker(pool, &setup).await?;
        let pid = self.live.insert(id.clone());
        let parts = ProcessSandboxParts {
            id,
            workspace,
            setup,
            lease,
            worker_ids: self.worker_ids.clone(),
            pool: pool.clone(),
            worker,
            interrupt_grace: limits.graces.interrupt,
            pid,
            live: self.live.clone(),
        };
        Ok(Box::new(ProcessSandbox::new(parts)))
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
        crate::options::BACKEND
    }

    fn languages(&self) -> &[Language] {
        &LANGUAGES
    }

    fn warm_pool(&self) -> Vec<(Language, usize)> {
        let ready = match &self.runtimes {
            Runtimes::Process(pool) => pool.ready(),
            Runtimes::Thread(pool) => pool.ready(),
        };
        // One pool serves both languages: reported once, under TypeScript.
        vec![(Language::TypeScript, ready)]
    }

    fn capabilities(&self, _language: Language) -> codebeaker::Capabilities {
        let capabilities =
            codebeaker::Capabilities::default().with_persistent_state().with_streaming().with_snapshots();
        match &self.runtimes {
            // A worker process can be stopped whole, and copied live; a runtime thread of
            // this process can be neither.
            Runtimes::Process(_) => capabilities.with_pause().with_live_fork(),
            Runtimes::Thread(_) => capabilities,
        }
    }

    async fn create_sandbox(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<Box<dyn Sandbox>> {
        let permissions = DenoOptions::of(config)?.permissions;
        crate::permissions::check_grants(&permissions, &DenoPolicy::of(limits)?.grantable_paths)?;
        let id = format!("deno-{}", uuid::Uuid::new_v4().simple());
        // A process-isolated session's own uid (when the server is root), for its life.
        let lease = match &self.runtimes {
            Runtimes::Process(_) => {
                Lease::take(&self.worker_ids).map_err(|reason| Error::backend_unavailable("deno", reason))?
            }
            Runtimes::Thread(_) => None,
        };
        let owner = lease.as_ref().map(Lease::identity);
        let (instance, session_id, quota) = (self.workspaces.clone(), id.clone(), limits.workspace_bytes);
        let passage = self.passage.filter(|_| owner.is_some());
        let opened = tokio::task::spawn_blocking(move || {
            crate::workspaces::open_session(&instance, &session_id, quota, owner, passage)
        })
        .await
        .map_err(|e| Error::internal(format!("workspace task failed: {e}")).with_source(e))?;
        let workspace = Arc::new(opened?);
        let created = match &self.runtimes {
            Runtimes::Thread(pool) => {
                let setup = SessionSetup {
                    workspace: workspace.root().to_path_buf(),
                    permissions: permissions.clone(),
                    memory_limit_mb: limits.memory_mb,
                    limits: limits.into(),
                };
                self.create_in_thread(pool, id.clone(), workspace.clone(), setup).await
            }
            Runtimes::Process(pool) => {
                let setup = WorkerSetup {
                    workspace: workspace.root().to_path_buf(),
                    permissions: permissions.clone(),
                    memory_limit_mb: limits.memory_mb,
                    limits: limits.into(),
                    identity: owner,
                };
                self.create_in_process(pool, id.clone(), workspace.clone(), setup, lease, limits).await
            }
        };
        if created.is_err() {
            let _ = crate::workspaces::remove_session(workspace.root());
        } else {
            tracing::debug!(sandbox = %id, "deno session created");
        }
        created
    }

    async fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }

    async fn live_sandboxes(&self) -> Result<Vec<String>> {
        Ok(self.live.lock().keys().cloned().collect())
    }

    async fn shutdown(&self) -> Result<()> {
        match &self.runtimes {
            Runtimes::Process(pool) => pool.drain(),
            Runtimes::Thread(pool) => pool.drain(),
        }
        let dir = self.workspaces.clone();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        match removed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Ok(Err(e)) => {
                Err(Error::internal(format!("cannot remove {}: {e}", self.workspaces.display())).with_source(e))
            }
            Err(e) => Err(Error::internal(format!("shutdown task failed: {e}")).with_source(e)),
        }
    }
}
