//! [`Engine`]: one `JsRuntime` with our extension, and how a cell runs on it.
//!
//! An engine lives on one thread for its whole life (a `JsRuntime` is not `Send`, and the
//! QuickJS engine keeps a thread-local "current isolate": two runtimes alive on one thread
//! corrupt each other). It owns a current-thread tokio runtime for its event loop.
//!
//! Limits, as measured with the QuickJS engine:
//! - Time: the [`Watchdog`] terminates JS at the deadline; the event loop also runs under a
//!   tokio timeout for code that waits rather than spins. Afterwards termination is
//!   cancelled and every user timer is cancelled, so the session stays usable and nothing
//!   of the timed-out command keeps running.
//! - Memory: the heap limit is QuickJS's own allocator limit. Reaching it makes the engine
//!   terminate execution (even when the code catches its own out-of-memory error) and lift
//!   the cap by a fixed margin to unwind; the limit is set back after the command. No
//!   near-heap-limit callback is installed: with one, a bomb that catches its error keeps
//!   growing.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::DenoPermissions;
use codebeaker::{CodeResult, OutputCollector, OutputSink};
use deno_core::error::{CoreError, CoreErrorKind, JsError};
use deno_core::{v8, JsRuntime, PollEventLoopOptions, RuntimeOptions};

use crate::module_loader::{SharedPermissions, WorkspaceModuleLoader};
use crate::ops::{self, CommandOutput, Hooks, SessionContext};
use crate::permissions::Permissions;
use crate::transpile;
use crate::watchdog::Watchdog;

/// The name cells run under: relative imports in a cell resolve against `/workspace`.
const CELL_NAME: &str = "file:///workspace/$cell";
/// Heap limit of a spare runtime before a session sets its own.
const SPARE_HEAP_LIMIT: usize = 512 * 1024 * 1024;

/// What a session hands its runtime.
#[derive(Debug, Clone)]
pub(crate) struct SessionSetup {
    /// Host directory standing for `/workspace`.
    pub workspace: std::path::PathBuf,
    /// What the code may touch beyond it.
    pub permissions: DenoPermissions,
    /// Heap limit, in MiB.
    pub memory_limit_mb: u64,
    /// What the operator's policy lets the ops use.
    pub limits: ops::OpLimits,
}

/// How one `execute_code` runs.
pub(crate) struct Run {
    pub code: String,
    pub timeout: Duration,
    pub output_limit: usize,
    pub output: Option<OutputSink>,
}

/// How a cell ended.
pub(crate) struct Ran {
    /// What it printed and how it ended.
    pub result: CodeResult,
    /// It was stopped at the heap limit: memory held by globals may keep the runtime at the
    /// limit, so the session's state is reset (a fresh runtime replaces this one).
    pub memory_exceeded: bool,
    /// Destinations the egress policy refused while it ran.
    pub egress_refused: u64,
}

/// The single-threaded tokio runtime that drives an engine's event loop.
fn event_loop() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime's event loop: {e}"))
}

/// A JS runtime and the tokio runtime that drives its event loop.
pub(crate) struct Engine {
    runtime: JsRuntime,
    tokio: tokio::runtime::Runtime,
    permissions: SharedPermissions,
    heap_limit: usize,
}

impl Engine {
    /// Creates the runtime and runs the bootstrap. Call on the thread that will own it.
    pub fn new() -> Result<Self, String> {
        let tokio = event_loop()?;
        let permissions = SharedPermissions::default();
        let loader = WorkspaceModuleLoader { permissions: permissions.clone() };
        let _context = tokio.enter();
        let runtime = JsRuntime::try_new(RuntimeOptions {
            extensions: vec![ops::extension()],
            module_loader: Some(Rc::new(loader)),
            create_params: Some(v8::CreateParams::default().heap_limits(0, SPARE_HEAP_LIMIT)),
            ..Default::default()
        })
        .map_err(|e| format!("cannot create the JS runtime: {e}"))?;
        let mut engine = Engine { runtime, tokio, permissions, heap_limit: SPARE_HEAP_LIMIT };
        engine.install_heap_guard();
        Ok(engine)
    }

    /// Gives a worker forked from the zygote an event loop of its own. The inherited one's
    /// epoll instance is shared with the zygote and every sibling, so it is never polled
    /// again; it is forgotten rather than dropped, since its drop would deregister from
    /// that shared instance.
    pub fn renew_after_fork(&mut self) -> Result<(), String> {
        std::mem::forget(std::mem::replace(&mut self.tokio, event_loop()?));
        Ok(())
    }

    /// Collects garbage and hands the allocator's free pages back to the kernel: an idle
    /// worker then keeps only what its session's state needs.
    pub fn compact(&mut self) {
        self.runtime.v8_isolate().low_memory_notification();
        // SAFETY: malloc_trim only returns free memory; no pointer is invalidated.
        unsafe { libc::malloc_trim(0) };
    }

    /// A handle other threads use to terminate what runs here.
    pub fn isolate_handle(&mut self) -> v8::IsolateHandle {
        self.runtime.v8_isolate().thread_safe_handle()
    }

    /// Waits for `future` on this thread while no JS runs (the next job, typically).
    pub fn block_on_idle<F: std::future::Future>(&self, future: F) -> F::Output {
        self.tokio.block_on(future)
    }

    /// Makes this runtime a session's: its workspace, permissions, environment and heap limit.
    pub fn assign(&mut self, setup: &SessionSetup) {
        let permissions = Rc::new(Permissions::new(&setup.workspace, &setup.permissions));
        *self.permissions.borrow_mut() = Some(permissions.clone());
        self.runtime.op_state().borrow_mut().put(SessionContext::new(permissions, &setup.limits));
        let mb = usize::try_from(setup.memory_limit_mb).unwrap_or(usize::MAX);
        self.heap_limit = mb.saturating_mul(1024 * 1024);
        self.reset_heap_limit();
    }

    /// Runs one cell and reports what it printed and how it ended.
    pub fn run(&mut self, run: Run, watchdog: &Watchdog, closing: &AtomicBool) -> Ran {
        let started = Instant::now();
        // A termination requested after the previous command ended (the allocator limit
        // tripping while it wound down) belongs to no command: drop it.
        let isolate = self.runtime.v8_isolate();
        if isolate.is_execution_terminating() {
            isolate.cancel_terminate_execution();
        }
        let collector = OutputCollector::new(run.output_limit, run.output);
        self.runtime.op_state().borrow_mut().put(CommandOutput(Some(collector)));
        let outcome = match transpile::compile_cell(&run.code) {
            Ok(cell) => self.evaluate(cell.script, run.timeout, started, watchdog),
            Err(message) => Outcome::Failed(message),
        };
        // The watchdog's termination is a timeout and a close is told apart by its flag, so
        // a failure of a terminated isolate, or of one whose heap limit the engine lifted to
        // unwind, is the heap limit's. Both are the engine's state, never the error's text.
        let terminated = self.runtime.v8_isolate().is_execution_terminating();
        let heap_exhausted = terminated || self.heap_limit_lifted();
        let mut memory_exceeded = false;
        let outcome = match outcome {
            _ if closing.load(Ordering::Acquire) => Outcome::Failed("Interrupted: the session was closed".into()),
            Outcome::Failed(_) if heap_exhausted => {
                memory_exceeded = true;
                Outcome::Failed(format!(
                    "RangeError: memory limit exceeded: the session's heap reached memoryLimitMB ({} MB) and the command was stopped",
                    self.heap_limit / (1024 * 1024)
                ))
            }
            other => other,
        };
        if !matches!(outcome, Outcome::Finished) {
            self.recover();
        }
        let collector = self.runtime.op_state().borrow_mut().borrow_mut::<CommandOutput>().0.take();
        let collector = collector.unwrap_or_else(|| OutputCollector::new(0, None));
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let result = match outcome {
            Outcome::Finished => collector.into_code_result(0, None, duration_ms, false),
            Outcome::TimedOut => collector.into_code_result(-1, None, duration_ms, true),
            Outcome::Failed(message) => collector.into_code_result(1, Some(message), duration_ms, false),
        };
        let egress_refused = ops::session(&self.runtime.op_state().borrow()).map_or(0, |s| s.net.take_refused());
        Ran { result, memory_exceeded, egress_refused }
    }

    fn evaluate(&mut self, script: String, timeout: Duration, started: Instant, watchdog: &Watchdog) -> Outcome {
        let guard = watchdog.arm(started + timeout, self.isolate_handle());
        let runtime = &mut self.runtime;
        let ran = self.tokio.block_on(async {
            tokio::time::timeout(timeout, async {
                let value = runtime.execute_script(CELL_NAME, script).map_err(|e| js_message(&e))?;
                let settled = runtime.resolve(value);
                runtime
                    .with_event_loop_promise(settled, PollEventLoopOptions::default())
                    .await
                    .map_err(core_message)?;
                runtime.run_event_loop(PollEventLoopOptions::default()).await.map_err(core_message)
            })
            .await
        });
        let fired = guard.disarm();
        match ran {
            _ if fired => Outcome::TimedOut,
            Err(_elapsed) => Outcome::TimedOut,
            Ok(Ok(())) => Outcome::Finished,
            Ok(Err(message)) => Outcome::Failed(message),
        }
    }

    /// Makes the runtime usable after a command that failed, timed out or was terminated.
    fn recover(&mut self) {
        let isolate = self.runtime.v8_isolate();
        if isolate.is_execution_terminating() {
            isolate.cancel_terminate_execution();
        }
        let hook = self.runtime.op_state().borrow().borrow::<Hooks>().cancel_timers.clone();
        if let Some(hook) = hook {
            let _context = self.tokio.enter();
            let call = self.runtime.call(&hook);
            let runtime = &mut self.runtime;
            let cancelled = self.tokio.block_on(async {
                tokio::time::timeout(Duration::from_secs(1), runtime.with_event_loop_promise(call, Default::default()))
                    .await
            });
            if !matches!(cancelled, Ok(Ok(_))) {
                tracing::warn!("cancelling the timers of a stopped command failed");
            }
        }
        self.reset_heap_limit();
    }

    /// Whether the engine lifted the heap limit above the session's: it does so (QuickJS's
    /// allocator-limit handler, or the V8 heap guard) only when the limit was reached, to
    /// let the terminated code unwind; [`Engine::reset_heap_limit`] sets it back.
    fn heap_limit_lifted(&mut self) -> bool {
        self.runtime.v8_isolate().get_heap_statistics().heap_size_limit() > self.heap_limit
    }

    /// Sets the heap limit back to the session's (the engine lifts it to unwind an
    /// out-of-memory termination).
    fn reset_heap_limit(&mut self) {
        // Adding then removing a near-heap-limit callback is the API that sets a limit on a
        // live isolate; the QuickJS engine applies `heap_limit` exactly.
        self.runtime.add_near_heap_limit_callback(|current, _initial| current);
        self.runtime.remove_near_heap_limit_callback(self.heap_limit);
        self.install_heap_guard();
    }

    /// V8 treats an exhausted heap as fatal: terminate first and give room to unwind. The
    /// QuickJS engine needs no callback (see the module docs) and must not get one.
    #[cfg(not(feature = "quickjs"))]
    fn install_heap_guard(&mut self) {
        let isolate = self.isolate_handle();
        self.runtime.add_near_heap_limit_callback(move |current, _initial| {
            isolate.terminate_execution();
            current.saturating_mul(2)
        });
    }

    #[cfg(feature = "quickjs")]
    fn install_heap_guard(&mut self) {}
}

enum Outcome {
    Finished,
    TimedOut,
    Failed(String),
}

/// `Name: message` of an uncaught error, as agents expect to read it.
fn js_message(error: &JsError) -> String {
    match (&error.name, &error.message) {
        (Some(name), Some(message)) if !message.is_empty() => format!("{name}: {message}"),
        (Some(name), _) => name.clone(),
        _ => error.exception_message.trim_start_matches("Uncaught ").trim_start_matches("(in promise) ").to_owned(),
    }
}

fn core_message(error: CoreError) -> String {
    match *error.0 {
        CoreErrorKind::Js(js) => js_message(&js),
        CoreErrorKind::PendingPromiseResolution => {
            "Top-level await promise never resolved: nothing is left that could settle it".to_owned()
        }
        other => other.to_string(),
    }
}

/// A shared "this session is closing" flag, read by the engine to word an interrupted run.
pub(crate) type ClosingFlag = Arc<AtomicBool>;
