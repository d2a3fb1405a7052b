//! [`RuntimeThread`]: an [`Engine`] on its own OS thread, driven over channels.
//!
//! The async API never blocks tokio: a command is a message to the thread and a oneshot
//! answer back. The thread builds its engine first (that is the slow part, ~30 ms in a
//! release build), so a thread can be started ahead of need and handed out ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use codebeaker::{Error, Result, Usage};
use deno_core::v8::IsolateHandle;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{ClosingFlag, Engine, Ran, Run, SessionSetup};
use crate::rusage::{cpu_ms, peak_rss_kb};
use crate::watchdog::Watchdog;

/// Stack of a runtime thread: QuickJS stops recursion at 1 MiB of its own, and the ops
/// and the Rust side need room beyond that. Only touched pages count towards RSS.
const STACK_BYTES: usize = 8 * 1024 * 1024;

enum Job {
    Assign(SessionSetup, oneshot::Sender<()>),
    Run(Run, oneshot::Sender<Ran>),
}

/// A runtime thread whose engine may still be starting.
pub(crate) struct StartingRuntime {
    jobs: mpsc::UnboundedSender<Job>,
    ready: oneshot::Receiver<std::result::Result<IsolateHandle, String>>,
    exited: oneshot::Receiver<()>,
    closing: ClosingFlag,
}

/// Stops a runtime from any thread, even while it runs JS.
#[derive(Clone)]
pub(crate) struct Interrupter {
    isolate: IsolateHandle,
    closing: ClosingFlag,
}

impl Interrupter {
    /// Marks the session closing and terminates the JS that runs now, if any.
    pub fn interrupt(&self) {
        self.closing.store(true, Ordering::Release);
        self.isolate.terminate_execution();
    }
}

/// A runtime thread with a ready engine.
pub(crate) struct RuntimeThread {
    jobs: mpsc::UnboundedSender<Job>,
    isolate: IsolateHandle,
    exited: oneshot::Receiver<()>,
    closing: ClosingFlag,
}

impl StartingRuntime {
    /// Starts a thread that builds an engine and then waits for jobs.
    pub fn spawn(watchdog: Arc<Watchdog>) -> Result<Self> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready) = oneshot::channel();
        let (exited_tx, exited) = oneshot::channel::<()>();
        let closing: ClosingFlag = Arc::new(AtomicBool::new(false));
        let closing_seen = closing.clone();
        std::thread::Builder::new()
            .name("cb-deno-runtime".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let _exited = exited_tx;
                let mut engine = match Engine::new() {
                    Ok(engine) => engine,
                    Err(reason) => {
                        let _ = ready_tx.send(Err(reason));
                        return;
                    }
                };
                if ready_tx.send(Ok(engine.isolate_handle())).is_err() {
                    return;
                }
                while let Some(job) = engine.block_on_idle(queue.recv()) {
                    match job {
                        Job::Assign(setup, done) => {
                            engine.assign(&setup);
                            let _ = done.send(());
                        }
                        Job::Run(run, reply) => {
                            let before = cpu_ms(libc::RUSAGE_THREAD);
                            let mut ran = engine.run(run, &watchdog, &closing_seen);
                            let result = &mut ran.result;
                            result.usage = Some(Usage {
                                cpu_ms: cpu_ms(libc::RUSAGE_THREAD).saturating_sub(before),
                                max_rss_kb: peak_rss_kb(),
                                output_bytes: (result.stdout.len() + result.stderr.len()) as u64,
                                egress_refused: ran.egress_refused,
                            });
                            let _ = reply.send(ran);
                        }
                    }
                    if closing_seen.load(Ordering::Acquire) {
                        break;
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start a deno runtime thread: {e}")).with_source(e))?;
        Ok(StartingRuntime { jobs, ready, exited, closing })
    }

    /// Waits until the engine is built.
    pub async fn ready(self) -> Result<RuntimeThread> {
        let unavailable = |reason: String| Error::backend_unavailable("deno", reason);
        let isolate = self
            .ready
            .await
            .map_err(|_| unavailable("the runtime thread ended while starting".into()))?
            .map_err(unavailable)?;
        Ok(RuntimeThread { jobs: self.jobs, isolate, exited: self.exited, closing: self.closing })
    }
}

impl RuntimeThread {
    /// Gives the runtime to a session.
    pub async fn assign(&self, setup: SessionSetup) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.send(Job::Assign(setup, done))?;
        answer.await.map_err(|_| self.gone())
    }

    /// Runs one `execute_code`.
    pub async fn run(&self, run: Run) -> Result<Ran> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run(run, reply))?;
        answer.await.map_err(|_| self.gone())
    }

    /// What stops this runtime from another task or thread.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter { isolate: self.isolate.clone(), closing: self.closing.clone() }
    }

    /// Stops what runs, ends the thread and waits (bounded) until its engine is dropped.
    pub async fn close(self, wait: std::time::Duration) {
        self.interrupter().interrupt();
        drop(self.jobs);
        if tokio::time::timeout(wait, self.exited).await.is_err() {
            tracing::warn!("a deno runtime thread did not stop within {wait:?}");
        }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| self.gone())
    }

    fn gone(&self) -> Error {
        Error::sandbox_failed("the session's JS runtime stopped")
    }
}
