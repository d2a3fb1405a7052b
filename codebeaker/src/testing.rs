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
//! | `crash` | the sandbox dies (`ErrorKind::SandboxFailed`) |
//! | `cat` | copies stdin to stdout until it is closed (background processes only) |
//! | `yes TEXT` | writes `TEXT` and a newline to stdout, forever |
//!
//! Background processes ([`crate::backend::Processes`]) run the same language:
//! `process.start` with `commandName` `script` runs its `args` as the script's lines, on
//! pipes (no terminal). `process.signal` ends one as that signal would (exit code
//! `128 + n`), and closing the session ends them all with `KILL`.
//!
//! `execute_shell` is [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), as in a Deno session; the backend declares
//! `streaming` and `processes` only (see [`crate::conformance`] for what declarations promise).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{
    Backend, BackendHealth, ExecContext, OutputStream, ProcessControl, Processes, Sandbox, SpawnedProcess,
};
use crate::command::Command;
use crate::config::SessionConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::language::Language;
use crate::output::OutputCollector;
use crate::process::{ProcessExit, ProcessSignal, ProcessSink, ProcessSpec, ProcessStream, PtySize};
use crate::result::CommandResult;
use crate::workspace::HostWorkspace;

/// A temp-dir backend for manager tests. See the module docs.
pub struct TempDirBackend {
    name: &'static str,
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
    /// A backend named `tempdir` serving `languages`, with its workspaces under a fresh
    /// temporary directory.
    pub fn new(languages: &[Language]) -> Arc<Self> {
        Self::named("tempdir", languages)
    }

    /// A backend named `name` (e.g. to route between two of them) serving `languages`.
    pub fn named(name: &'static str, languages: &[Language]) -> Arc<Self> {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        Arc::new(TempDirBackend { name, languages: languages.to_vec(), root, state: Arc::default() })
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
        self.name
    }

    fn languages(&self) -> &[Language] {
        &self.languages
    }

    fn capabilities(&self, _language: Language) -> crate::Capabilities {
        crate::Capabilities::default().with_streaming().with_processes().with_snapshots()
    }

    async fn create_sandbox(&self, _config: &SessionConfig, limits: &crate::SessionLimits) -> Result<Box<dyn Sandbox>> {
        let failing = &self.state.failing_creates;
        if failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::backend_unavailable(self.name, "failure injected by the test"));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let workspace = HostWorkspace::open(self.root.path().join(&id))?.with_quota(limits.workspace_bytes);
        let workspace = Arc::new(workspace);
        self.state.live.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
        self.state.created.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(TempDirSandbox {
            id,
            workspace,
            state: self.state.clone(),
            closed: Mutex::new(false),
            processes: ScriptProcesses::default(),
        }))
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
    processes: ScriptProcesses,
}

#[async_trait]
impl Sandbox for TempDirSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn execute(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        match command {
            Command::ExecuteCode(code) => run_script(&code.code, &context).await,
            Command::ExecuteShell(_) => Err(Error::unsupported("execute_shell in tempdir test sessions")),
            file_command => {
                let workspace = self.workspace.clone();
                tokio::task::spawn_blocking(move || workspace.execute(&file_command))
                    .await
                    .map_err(|e| Error::internal(e.to_string()).with_source(e))?
                    .unwrap_or_else(|| Err(Error::internal("not a file command")))
            }
        }
    }

    fn file_streams(&self) -> Option<&dyn crate::backend::FileStreams> {
        Some(self.workspace.as_ref())
    }

    fn archives(&self) -> Option<&dyn crate::backend::Archives> {
        Some(self.workspace.as_ref())
    }

    fn processes(&self) -> Option<&dyn Processes> {
        Some(&self.processes)
    }

    async fn close(&self) -> Result<()> {
        self.processes.closed.cancel();
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            *closed = true;
            self.state.closes.fetch_add(1, Ordering::SeqCst);
            self.state.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
            std::fs::remove_dir_all(self.workspace.root())
                .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        }
        Ok(())
    }
}

/// Where a script writes, and what it reads.
trait ScriptIo: Send {
    fn push(&mut self, stream: OutputStream, bytes: &[u8]);

    /// The next piece of stdin; `None` at its end (a command has none).
    async fn read(&mut self) -> Option<Vec<u8>>;
}

impl ScriptIo for OutputCollector {
    fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        OutputCollector::push(self, stream, bytes);
    }

    async fn read(&mut self) -> Option<Vec<u8>> {
        None
    }
}

/// A background script's pipes.
struct ProcessIo {
    sink: ProcessSink,
    stdin: mpsc::Receiver<Vec<u8>>,
}

impl ScriptIo for ProcessIo {
    fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let stream = match stream {
            OutputStream::Stdout => ProcessStream::Stdout,
            OutputStream::Stderr => ProcessStream::Stderr,
        };
        self.sink.output(stream, bytes);
    }

    async fn read(&mut self) -> Option<Vec<u8>> {
        self.stdin.recv().await
    }
}

/// A sandbox's background scripts.
#[derive(Default)]
struct ScriptProcesses {
    next_pid: AtomicU32,
    /// Fires when the sandbox closes: every script ends with `KILL`.
    closed: CancellationToken,
}

#[async_trait]
impl Processes for ScriptProcesses {
    async fn spawn(&self, spec: &ProcessSpec, sink: ProcessSink) -> Result<SpawnedProcess> {
        if spec.pty.is_some() {
            return Err(Error::unsupported("terminals (pty) in tempdir test sessions"));
        }
        if spec.command.command_name != "script" {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("cannot run {}: tempdir test sessions run only `script`", spec.command.command_name),
            ));
        }
        let script = spec.command.args.join("\n");
        let pid = 100 + self.next_pid.fetch_add(1, Ordering::SeqCst);
        let (stdin_tx, stdin) = mpsc::channel(16);
        let signalled = CancellationToken::new();
        let signal = Arc::new(AtomicU32::new(0));
        let control =
            ScriptControl { stdin: Mutex::new(Some(stdin_tx)), signalled: signalled.clone(), signal: signal.clone() };
        let closed = self.closed.clone();
        let timeout = spec.timeout_ms.map_or(Duration::MAX, Duration::from_millis);
        tokio::spawn(async move {
            let mut io = ProcessIo { sink: sink.clone(), stdin };
            let exit = tokio::select! {
                ran = tokio::time::timeout(timeout, interpret(&script, &mut io)) => match ran {
                    Ok(Ok(())) => ProcessExit::new(Some(0), None),
                    Ok(Err(error)) => {
                        io.push(OutputStream::Stderr, format!("{error}\n").as_bytes());
                        ProcessExit::new(Some(1), None)
                    }
                    Err(_) => ProcessExit { reason: Some("its timeout passed".to_owned()), ..ProcessExit::new(None, Some(9)) },
                },
                () = signalled.cancelled() => ProcessExit::new(None, Some(signal.load(Ordering::SeqCst) as i32)),
                () = closed.cancelled() => ProcessExit::new(None, Some(9)),
            };
            sink.exit(exit);
        });
        Ok(SpawnedProcess { pid, control: Box::new(control) })
    }
}

/// A background script's control.
struct ScriptControl {
    stdin: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    signalled: CancellationToken,
    signal: Arc<AtomicU32>,
}

#[async_trait]
impl ProcessControl for ScriptControl {
    async fn write(&self, data: Vec<u8>) -> Result<()> {
        let stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stdin = stdin.ok_or_else(|| Error::invalid_input("the process's stdin is closed"))?;
        stdin.send(data).await.map_err(|_| Error::invalid_input("the process no longer reads its stdin"))
    }

    async fn close_stdin(&self) -> Result<()> {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }

    async fn resize(&self, _size: PtySize) -> Result<()> {
        Err(Error::invalid_input("the process has no terminal to resize"))
    }

    async fn signal(&self, signal: ProcessSignal) -> Result<()> {
        self.signal.store(signal.number() as u32, Ordering::SeqCst);
        self.signalled.cancel();
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
        Ok(Err(error)) if error.kind() == ErrorKind::SandboxFailed => Err(error),
        Ok(Err(error)) => {
            Ok(CommandResult::ExecuteCode(output.into_code_result(1, Some(error.to_string()), elapsed, false)))
        }
        Ok(Ok(())) => Ok(CommandResult::ExecuteCode(output.into_code_result(0, None, elapsed, false))),
    }
}

async fn interpret(script: &str, output: &mut impl ScriptIo) -> Result<()> {
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (op, arg) = line.split_once(' ').unwrap_or((line, ""));
        match op {
            "print" => output.push(OutputStream::Stdout, format!("{arg}\n").as_bytes()),
            "warn" => output.push(OutputStream::Stderr, format!("{arg}\n").as_bytes()),
            "sleep" => tokio::time::sleep(Duration::from_millis(number(arg)?)).await,
            "spin" | "hang" => std::future::pending::<()>().await,
            "flood" => output.push(OutputStream::Stdout, &vec![b'x'; number(arg)? as usize]),
            "throw" => return Err(Error::program_failed(format!("Error: {arg}"))),
            "crash" => return Err(Error::sandbox_failed("the tempdir sandbox crashed on request")),
            "cat" => {
                while let Some(bytes) = output.read().await {
                    output.push(OutputStream::Stdout, &bytes);
                }
            }
            "yes" => loop {
                output.push(OutputStream::Stdout, format!("{arg}\n").repeat(4096).as_bytes());
                tokio::task::yield_now().await;
            },
            _ => return Err(Error::program_failed(format!("SyntaxError: unknown instruction {op:?}"))),
        }
    }
    Ok(())
}

fn number(arg: &str) -> Result<u64> {
    arg.parse().map_err(|_| Error::program_failed(format!("SyntaxError: {arg:?} is not a number")))
}
