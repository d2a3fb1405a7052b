//! [`ProcessSandbox`]: a Deno session whose JavaScript runs in a worker process.
//!
//! The session outlives its workers: a worker that had to be killed (a timeout it did not
//! honour within the grace), that reached the heap limit, that crashed, was killed from
//! outside or broke the protocol is replaced by a fresh one from the pool. The session's
//! JavaScript state (globals, imports) is then lost, its workspace files are kept, and the
//! result says so (`stateReset`).
//!
//! A session may be paused (see `pause`): its worker is stopped, memory kept, and every
//! command is refused at once until it is resumed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use codebeaker::{
    Archives, Command, CommandResult, Error, ExecContext, FileStreams, Forking, HostWorkspace, Pausing, Result,
    Sandbox, SessionLimits,
};
use tokio::sync::Mutex;

use super::identity::{Lease, WorkerIds};
use super::ipc::{WorkerRun, WorkerSetup};
use super::pause::{self, Pauses};
use super::pool::WorkerPool;
use super::spawn::Killer;
use super::supervisor::{RunEnd, Worker};
use crate::backend::{LiveSandboxes, WorkerPid};
use crate::sandbox::{close_workspace, dispatch, STATE_RESET};

/// The session's current worker.
struct Slot {
    worker: Option<Worker>,
    /// The last worker went away with the session's state and no result said so yet.
    unreported_reset: Option<&'static str>,
}

/// A Deno session running in worker processes.
pub(crate) struct ProcessSandbox {
    id: String,
    workspace: Arc<HostWorkspace>,
    setup: WorkerSetup,
    /// The session's uid, held while the session lives (its workspace files are its).
    _lease: Option<Lease>,
    /// Where a live fork's uid comes from.
    worker_ids: WorkerIds,
    pool: Arc<WorkerPool>,
    slot: Mutex<Slot>,
    /// Kills the current worker while a cell holds the slot (close), stops and continues
    /// it (pause, resume). Pausing changes `pauses` under this lock, so a worker that
    /// becomes the session's is stopped if the session is paused.
    killer: std::sync::Mutex<Option<Killer>>,
    pauses: Pauses,
    closing: AtomicBool,
    /// How long a worker may go on after its timeout interrupted it before it is killed
    /// (the operator's interrupt grace, which fits in the stop grace).
    interrupt_grace: Duration,
    pid: WorkerPid,
    live: LiveSandboxes,
}

/// What a new sandbox is made of.
pub(crate) struct ProcessSandboxParts {
    pub id: String,
    pub workspace: Arc<HostWorkspace>,
    pub setup: WorkerSetup,
    pub lease: Option<Lease>,
    pub worker_ids: WorkerIds,
    pub pool: Arc<WorkerPool>,
    pub worker: Worker,
    pub interrupt_grace: Duration,
    pub pid: WorkerPid,
    pub live: LiveSandboxes,
}

/// Takes a spare from `pool` and gives it the session `setup`.
pub(crate) async fn start_worker(pool: &WorkerPool, setup: &WorkerSetup) -> Result<Worker> {
    let unavailable = |reason: String| Error::backend_unavailable("deno", reason);
    let taken = pool.take().await;
    let started = match taken {
        Ok(spawned) => Worker::start(spawned, setup)
            .await
            .map_err(|e| unavailable(format!("the deno worker did not start: {e}")).with_source(e)),
        Err(e) => Err(unavailable(format!("cannot start a deno worker process: {e}")).with_source(e)),
    };
    pool.refill();
    started
}

impl ProcessSandbox {
    pub fn new(parts: ProcessSandboxParts) -> Self {
        let killer = parts.worker.killer();
        parts.pid.store(killer.pid(), Ordering::Release);
        ProcessSandbox {
            id: parts.id,
            workspace: parts.workspace,
            setup: parts.setup,
            _lease: parts.lease,
            worker_ids: parts.worker_ids,
            pool: parts.pool,
            slot: Mutex::new(Slot { worker: Some(parts.worker), unreported_reset: None }),
            killer: std::sync::Mutex::new(Some(killer)),
            pauses: Pauses::default(),
            closing: AtomicBool::new(false),
            interrupt_grace: parts.interrupt_grace,
            pid: parts.pid,
            live: parts.live,
        }
    }

    fn killer(&self) -> std::sync::MutexGuard<'_, Option<Killer>> {
        self.killer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_killer(&self, killer: Option<Killer>) {
        self.pid.store(killer.as_ref().map_or(0, Killer::pid), Ordering::Release);
        let mut current = self.killer();
        if let Some(killer) = killer.as_ref().filter(|_| self.pauses.is_paused()) {
            pause::stop(killer);
        }
        *current = killer;
    }

    /// The answer to a command while the session is paused.
    fn refuse_if_paused(&self) -> Result<()> {
        if self.pauses.is_paused() {
            return Err(Error::invalid_input(format!(
                "the session is paused (sandbox {}): resume it before sending commands",
                self.id
            )));
        }
        Ok(())
    }

    /// The slot's worker if it is healthy, else a fresh one (the reset noted in the slot).
    async fn healthy_worker(&self, slot: &mut Slot) -> Result<Worker> {
        match slot.worker.take() {
            Some(worker) if worker.is_idle() => return Ok(worker),
            Some(_dead) => {
                slot.unreported_reset.get_or_insert("the session's worker process died between commands");
            }
            None => {}
        }
        let worker = start_worker(&self.pool, &self.setup).await?;
        self.set_killer(Some(worker.killer()));
        Ok(worker)
    }

    async fn execute_code(&self, code: String, context: ExecContext) -> Result<CommandResult> {
        let mut slot = self.slot.lock().await;
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::session_closed(self.id.clone()));
        }
        // Paused while this command waited for the slot.
        self.refuse_if_paused()?;
        let mut worker = self.healthy_worker(&mut slot).await?;
        // From here until the worker is back in the slot, a dropped future kills the worker
        // (it is owned by this future) and the next command reports the reset.
        let earlier_reset = slot.unreported_reset.replace("the previous command was abandoned midway");
        let started = Instant::now();
        let grace = self.interrupt_grace;
        let run = WorkerRun {
            code,
            timeout_ms: u64::try_from(context.timeout.as_millis()).unwrap_or(u64::MAX),
            output_limit: context.output_limit,
            stream: context.output.is_some(),
        };
        let end = worker.run(run, context.output, started + context.timeout + grace, &self.pauses).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut result = match end {
            RunEnd::Done { result, memory_exceeded: false } => {
                slot.worker = Some(worker);
                result
            }
            RunEnd::Done { mut result, memory_exceeded: true } => {
                let message = result.error.take().unwrap_or_else(|| "memory limit exceeded".into());
                result.error = Some(format!("{message}; the worker was replaced and {STATE_RESET}"));
                result.state_reset = true;
                result
            }
            RunEnd::Killed { partial, usage } => {
                let timeout_ms = context.timeout.as_millis();
                let message = format!(
                    "Command timed out after {timeout_ms} ms and its code did not stop within {} ms of being interrupted: the worker process was killed and {STATE_RESET}",
                    grace.as_millis()
                );
                let mut result = partial.into_code_result(-1, Some(message), duration_ms, false);
                result.usage = Some(usage);
                result.state_reset = true;
                result
            }
            RunEnd::Lost { reason, partial, usage } => {
                let message = if self.closing.load(Ordering::Acquire) {
                    "Interrupted: the session was closed".to_owned()
                } else {
                    format!("The session's worker process failed ({reason}); {STATE_RESET}")
                };
                let mut result = partial.into_code_result(-1, Some(message), duration_ms, false);
                result.usage = Some(usage);
                result.state_reset = true;
                result
            }
        };
        if slot.worker.is_none() {
            self.set_killer(None);
        }
        // A reset before this command (a worker that died while idle) is reported once.
        slot.unreported_reset = None;
        if let Some(cause) = earlier_reset.filter(|_| !result.state_reset) {
            result.state_reset = true;
            result.stderr.push_str(&format!("[codebeaker] {cause}: {STATE_RESET}\n"));
        }
        Ok(CommandResult::ExecuteCode(result))
    }
}

#[async_trait]
impl Sandbox for ProcessSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn execute(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        self.refuse_if_paused()?;
        dispatch(&self.id, &self.workspace, command, |code| self.execute_code(code, context)).await
    }

    fn file_streams(&self) -> Option<&dyn FileStreams> {
        // The workspace lives on the host: the server streams it directly, under its quota.
        Some(self.workspace.as_ref())
    }

    fn archives(&self) -> Option<&dyn codebeaker::Archives> {
        // The same host workspace, archived under its owner's rights and quota.
        Some(self.workspace.as_ref())
    }

    fn pausing(&self) -> Option<&dyn Pausing> {
        Some(self)
    }

    fn forking(&self) -> Option<&dyn Forking> {
        Some(self)
    }

    async fn close(&self) -> Result<()> {
        self.closing.store(true, Ordering::Release);
        // Stop what runs first: the command holding the slot then ends at once.
        if let Some(killer) = self.killer().as_ref() {
            killer.kill();
        }
        let worker = self.slot.lock().await.worker.take();
        drop(worker);
        self.set_killer(None);
        close_workspace(&self.id, &self.workspace, &self.live).await
    }
}

#[async_trait]
impl Pausing for ProcessSandbox {
    /// Stops the session's worker (`SIGSTOP`), and returns once the kernel shows it
    /// stopped; a cell running then stays where it is. Pausing a paused session does
    /// nothing; so does pausing one between workers (the next is stopped on arrival).
    async fn pause(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::session_closed(self.id.clone()));
        }
        let stopped = {
            let killer = self.killer();
            if !self.pauses.begin() {
                return Ok(());
            }
            killer.as_ref().map(|killer| {
                pause::stop(killer);
                killer.pid()
            })
        };
        if let Some(pid) = stopped {
            pause::until_stopped(pid).await;
        }
        tracing::debug!(sandbox = %self.id, "deno session paused");
        Ok(())
    }

    /// Lets the worker go on (`SIGCONT`). Resuming a running session does nothing.
    async fn resume(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::session_closed(self.id.clone()));
        }
        let killer = self.killer();
        if self.pauses.end() {
            if let Some(killer) = killer.as_ref() {
                pause::go_on(killer);
            }
            tracing::debug!(sandbox = %self.id, "deno session resumed");
        }
        Ok(())
    }
}

#[async_trait]
impl Forking for ProcessSandbox {
    /// A live copy of the session: its worker process copies itself between two commands
    /// (globals and module state kept, see `live_fork`), beside a copy of its workspace in
    /// the same lineage directory, under a uid of its own. Declined (`Unsupported`: the
    /// fork then carries the files) when the session's worker is gone, and its state with
    /// it, or is itself a copy that cannot give a copy a uid of its own.
    async fn fork(&self, limits: &SessionLimits) -> Result<Box<dyn Sandbox>> {
        let mut slot = self.slot.lock().await;
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::session_closed(self.id.clone()));
        }
        self.refuse_if_paused()?;
        let Some(original) = slot.worker.as_ref().filter(|worker| worker.is_idle()) else {
            return Err(Error::unsupported("a live fork of a session whose worker is gone, and its state with it"));
        };
        if !original.can_fork_live() {
            return Err(Error::unsupported(
                "a live fork of a live fork on a server giving sessions uids of their own (its copy could not get a uid of its own)",
            ));
        }
        let id = format!("deno-{}", uuid::Uuid::new_v4().simple());
        let lease = Lease::take(&self.worker_ids).map_err(|reason| Error::backend_unavailable("deno", reason))?;
        let owner = lease.as_ref().map(Lease::identity);
        let (lineage, fork_id, quota) =
            (crate::workspaces::lineage_of(self.workspace.root()).to_path_buf(), id.clone(), limits.workspace_bytes);
        let workspace =
            tokio::task::spawn_blocking(move || crate::workspaces::open_in_lineage(&lineage, &fork_id, quota, owner))
                .await
                .map_err(|e| Error::internal(format!("workspace task failed: {e}")).with_source(e))??;
        let workspace = Arc::new(workspace);
        let setup = WorkerSetup {
            workspace: workspace.root().to_path_buf(),
            permissions: self.setup.permissions.clone(),
            memory_limit_mb: limits.memory_mb,
            limits: limits.into(),
            identity: owner,
        };
        let worker = match self.copy_into(&mut slot, &workspace, &setup, limits).await {
            Ok(worker) => worker,
            Err(error) => {
                let _ = crate::workspaces::remove_session(workspace.root());
                return Err(error);
            }
        };
        let pid = self.live.insert(id.clone());
        tracing::debug!(sandbox = %self.id, fork = %id, "deno session forked live");
        Ok(Box::new(ProcessSandbox::new(ProcessSandboxParts {
            id,
            workspace,
            setup,
            lease,
            worker_ids: self.worker_ids.clone(),
            pool: self.pool.clone(),
            worker,
            interrupt_grace: limits.graces.interrupt,
            pid,
            live: self.live.clone(),
        })))
    }
}

impl ProcessSandbox {
    /// Copies the workspace into the fork's `workspace`, then the slot's (idle) worker
    /// into the fork's, assigned `setup`. A worker that fails midway is replaced (its
    /// next command says so).
    async fn copy_into(
        &self,
        slot: &mut Slot,
        workspace: &HostWorkspace,
        setup: &WorkerSetup,
        limits: &SessionLimits,
    ) -> Result<Worker> {
        // An archive's headers add to its files: room for them beyond the workspace.
        let archive = self.workspace.export(limits.workspace_bytes.saturating_mul(2).saturating_add(1 << 20)).await?;
        workspace.import(archive.reader).await?;
        let original = slot.worker.as_mut().ok_or_else(|| Error::internal("the session's worker left the slot"))?;
        match original.fork(setup).await {
            Ok(copy) => Ok(copy),
            Err((error, replace)) => {
                if replace {
                    original.killer().kill();
                    slot.worker = None;
                    slot.unreported_reset.get_or_insert("the session's worker failed while being forked");
                    self.set_killer(None);
                }
                let reason = format!("the deno worker of {} could not be forked: {error}", self.id);
                Err(Error::sandbox_failed(reason).with_source(error))
            }
        }
    }
}
