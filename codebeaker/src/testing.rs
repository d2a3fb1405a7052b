//! [`TempDirBackend`]: a backend for testing the [`SessionManager`](crate::SessionManager)
//! itself. It is **not a sandbox** and runs no program: file commands act on a temporary
//! host directory through [`HostWorkspace`], and `execute_code` interprets a tiny script
//! language, one instruction per line, so tests can make commands that print, fail,
//! sleep, spin or crash on cue:
//!
//! | line | effect |
//! |---|---|
//! | `print TEXT` | writes `TEXT` and a newline to stdout |
//! | `warn TEXT` | writes `TEXT` and a newline to stderr |
//! | `sleep MS` | waits `MS` milliseconds (Tokio time, so paused clocks apply) |
//! | `spin` | runs until the command's timeout stops it |
//! | `hang` | never finishes and ignores the timeout (a stuck sandbox) |
//! | `flood BYTES` | writes `BYTES` bytes of `x` to stdout |
//! | `throw TEXT` | fails with `Error: TEXT` |
//! | `crash` | the sandbox dies (`Error::SandboxFailed`) |
//!
//! `execute_shell` is [`Error::Unsupported`], as in a Deno session.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::backend::{Backend, BackendHealth, ExecContext, OutputStream, Sandbox};
use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::language::Language;
use crate::output::OutputCollector;
use crate::result::CommandResult;
use crate::workspace::HostWorkspace;

/// A temp-dir backend for manager tests. See the module docs.
pub struct TempDirBackend {
    languages: Vec<Language>,
    root: tempfile::TempDir,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    live: Mutex<HashSet<String>>,
    failing_creates: AtomicUsize,
    closes: AtomicUsize,
    created: AtomicUsize,
}

impl TempDirBackend {
    /// A backend serving `languages`, with its workspaces under a fresh temporary directory.
    pub fn new(languages: &[Language]) -> Arc<Self> {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        Arc::new(TempDirBackend { languages: languages.to_vec(), root, state: Arc::default() })
    }

    /// Makes the next `count` sandbox creations fail with `BackendUnavailable`.
    pub fn fail_next_creates(&self, count: usize) {
        self.state.failing_creates.store(count, Ordering::SeqCst);
    }

    /// How many times a sandbox's `close` actually ran.
    pub fn closes(&self) -> usize {
        self.state.closes.load(Ordering::SeqCst)
    }

    /// How many sandboxes were created.
    pub fn created(&self) -> usize {
        self.state.created.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Backend for TempDirBackend {
    fn name(&self) -> &'static str {
        "tempdir"
    }

    fn languages(&self) -> &[Language] {
        &self.languages
    }

    fn capabilities(&self, _language: Language) -> crate::Capabilities {
        crate::Capabilities { shell: true, ..crate::Capabilities::default() }
    }

    async fn create_sandbox(
        &self,
        _config: &SessionConfig,
        _limits: &crate::SessionLimits,
    ) -> Result<Box<dyn Sandbox>> {
        let failing = &self.state.failing_creates;
        if failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::BackendUnavailable {
                backend: "tempdir".into(),
                reason: "failure injected by the test".into(),
            });
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let workspace = Arc::new(HostWorkspace::open(self.root.path().join(&id))?);
        self.state.live.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
        self.state.created.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(TempDirSandbox { id, workspace, state: self.state.clone(), closed: Mutex::new(false) }))
    }

    async fn health(&self) -> BackendHealth {
        BackendHealth::Ok
    }

    async fn live_sandboxes(&self) -> Result<Vec<String>> {
        Ok(self.state.live.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect())
    }
}

struct TempDirSandbox {
    id: String,
    workspace: Arc<HostWorkspace>,
    state: Arc<State>,
    closed: Mutex<bool>,
}

#[async_trait]
impl Sandbox for TempDirSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn execute(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        match command {
            Command::ExecuteCode(code) => run_script(&code.code, &context).await,
            Command::ExecuteShell(_) => Err(Error::Unsupported("execute_shell in tempdir test sessions".into())),
            file_command => {
                let workspace = self.workspace.clone();
                tokio::task::spawn_blocking(move || workspace.execute(&file_command))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .unwrap_or_else(|| Err(Error::Internal("not a file command".into())))
            }
        }
    }

    async fn close(&self) -> Result<()> {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            *closed = true;
            self.state.closes.fetch_add(1, Ordering::SeqCst);
            self.state.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
            std::fs::remove_dir_all(self.workspace.root()).map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(())
    }
}

async fn run_script(script: &str, context: &ExecContext) -> Result<CommandResult> {
    let started = Instant::now();
    let mut output = OutputCollector::new(context.output_limit, context.output.clone());
    let ignores_timeout = script.lines().any(|line| line.trim() == "hang");
    let run = interpret(script, &mut output);
    let finished = if ignores_timeout { Ok(run.await) } else { tokio::time::timeout(context.timeout, run).await };
    let elapsed = started.elapsed().as_millis() as u64;
    match finished {
        Err(_) => Ok(CommandResult::ExecuteCode(output.into_code_result(-1, None, elapsed, true))),
        Ok(Err(error @ Error::SandboxFailed(_))) => Err(error),
        Ok(Err(error)) => {
            Ok(CommandResult::ExecuteCode(output.into_code_result(1, Some(error.to_string()), elapsed, false)))
        }
        Ok(Ok(())) => Ok(CommandResult::ExecuteCode(output.into_code_result(0, None, elapsed, false))),
    }
}

async fn interpret(script: &str, output: &mut OutputCollector) -> Result<()> {
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (op, arg) = line.split_once(' ').unwrap_or((line, ""));
        match op {
            "print" => output.push(OutputStream::Stdout, format!("{arg}\n").as_bytes()),
            "warn" => output.push(OutputStream::Stderr, format!("{arg}\n").as_bytes()),
            "sleep" => tokio::time::sleep(Duration::from_millis(number(arg)?)).await,
            "spin" | "hang" => std::future::pending::<()>().await,
            "flood" => output.push(OutputStream::Stdout, &vec![b'x'; number(arg)? as usize]),
            "throw" => return Err(Error::ProgramFailed(format!("Error: {arg}"))),
            "crash" => return Err(Error::SandboxFailed("the tempdir sandbox crashed on request".into())),
            _ => return Err(Error::ProgramFailed(format!("SyntaxError: unknown instruction {op:?}"))),
        }
    }
    Ok(())
}

fn number(arg: &str) -> Result<u64> {
    arg.parse().map_err(|_| Error::ProgramFailed(format!("SyntaxError: {arg:?} is not a number")))
}
