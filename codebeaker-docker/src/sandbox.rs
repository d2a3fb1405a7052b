//! [`DockerSandbox`]: one session's container, and how each command runs in it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use codebeaker::command::{ExecuteCode, ExecuteShell};
use codebeaker::{
    Command, CommandResult, Error, ExecContext, Language, OutputCollector, OutputStream, Result, Sandbox,
    SessionLimits, WorkspacePath,
};
use tracing::{debug, info_span, Instrument};

use crate::agent_commands;
use crate::agent_link::AgentLink;
use crate::archive::Owner;
use crate::code;
use crate::config::DockerConfig;
use crate::container::{self, short, ContainerState, Started};
use crate::exec::{self, ExecOutcome, ExecRequest};
use crate::files::{self, Files};
use crate::hardening::SandboxSpec;

/// Ids of the session containers a backend has handed out and not yet removed.
pub(crate) type LiveSet = Arc<Mutex<HashSet<String>>>;

/// Exit code of a process killed by `SIGKILL` (the memory limit's OOM killer, or a kill).
const SIGKILL_EXIT: i64 = 137;
/// How long `delete_file`'s `rm` or `list_directory`'s `find` may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a helper's answer (a listing of some 100 000 entries).
const HELPER_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// A session's hardened container (see [`crate::hardening`]).
pub struct DockerSandbox {
    id: String,
    docker: Docker,
    config: Arc<DockerConfig>,
    language: Language,
    memory_limit_mb: u64,
    /// The operator's stop grace: how long stopping a timed-out command may take.
    stop_grace: Duration,
    /// Size of the workspace: `RLIMIT_FSIZE` of every command.
    workspace_bytes: u64,
    /// The connection to the container's agent; `None` when the container runs without
    /// one (commands then use the exec API and files the archive API).
    agent: Option<AgentLink>,
    live: LiveSet,
    /// Why the container can no longer run commands, once known.
    failed: Mutex<Option<String>>,
    closed: AtomicBool,
}

impl DockerSandbox {
    pub(crate) fn new(
        started: Started,
        docker: Docker,
        config: Arc<DockerConfig>,
        spec: &SandboxSpec,
        limits: &SessionLimits,
        live: LiveSet,
    ) -> Self {
        DockerSandbox {
            id: started.id,
            agent: started.agent,
            workspace_bytes: spec.workspace_bytes,
            docker,
            config,
            language: spec.language,
            memory_limit_mb: spec.memory_limit_mb,
            stop_grace: limits.stop_grace,
            live,
            failed: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    fn files(&self) -> Files<'_> {
        let (uid, gid) = self.config.sandbox_ids();
        Files { docker: &self.docker, container: &self.id, owner: Owner { uid, gid } }
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs a command, then, if it failed in a way that may mean the container is gone,
    /// asks the engine and turns that into a [`Error::SandboxFailed`] that says why.
    async fn run(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        // The archive API works on stopped containers too: without this look, file
        // commands would quietly succeed in a sandbox that died. Execs (and the agent)
        // fail on their own.
        let is_program = matches!(command, Command::ExecuteShell(_) | Command::ExecuteCode(_));
        if self.agent.is_none() && !is_program {
            if let Some(reason) = container::diagnose(&self.docker, &self.id, self.memory_limit_mb).await {
                return Err(self.mark_failed(reason));
            }
        }
        let timeout = context.timeout;
        let running = async {
            match (&self.agent, command) {
                (Some(link), Command::WriteFile(c)) => {
                    agent_commands::write_file(link, &c).await.map(CommandResult::WriteFile)
                }
                (Some(link), Command::ReadFile(c)) => {
                    agent_commands::read_file(link, &c).await.map(CommandResult::ReadFile)
                }
                (Some(link), Command::CreateDirectory(c)) => {
                    agent_commands::create_directory(link, &c).await.map(CommandResult::CreateDirectory)
                }
                (Some(link), Command::CopyFile(c)) => {
                    agent_commands::copy_file(link, &c).await.map(CommandResult::CopyFile)
                }
                (Some(link), Command::ListDirectory(c)) => {
                    agent_commands::list_directory(link, &c).await.map(CommandResult::ListDirectory)
                }
                (Some(link), Command::DeleteFile(c)) => {
                    agent_commands::delete_file(link, &c).await.map(CommandResult::DeleteFile)
                }
                (None, Command::WriteFile(c)) => Ok(CommandResult::WriteFile(self.files().write_file(&c).await?)),
                (None, Command::ReadFile(c)) => Ok(CommandResult::ReadFile(self.files().read_file(&c).await?)),
                (None, Command::CreateDirectory(c)) => {
                    Ok(CommandResult::CreateDirectory(self.files().create_directory(&c).await?))
                }
                (None, Command::CopyFile(c)) => Ok(CommandResult::CopyFile(self.files().copy_file(&c).await?)),
                (None, Command::ListDirectory(c)) => self.list(&c).await.map(CommandResult::ListDirectory),
                (None, Command::DeleteFile(c)) => self.delete(&c).await.map(CommandResult::DeleteFile),
                (_, Command::ExecuteShell(c)) => self.shell(c, &context).await.map(CommandResult::ExecuteShell),
                (_, Command::ExecuteCode(c)) => self.code(c, &context).await.map(CommandResult::ExecuteCode),
            }
        };
        // Programs enforce their own timeout (kill, then drain, within most of the stop
        // grace); this bounds everything else, such as the engine calls of file commands,
        // and answers before the session manager's backstop (timeout + the same grace).
        // Dropping `running` cancels its engine requests.
        let result = match tokio::time::timeout(timeout + self.stop_grace.mul_f64(0.9), running).await {
            Ok(result) => result,
            Err(_) => Err(Error::Internal(format!(
                "the docker engine did not finish the command within {} ms",
                timeout.as_millis()
            ))),
        };
        match (&self.agent, result) {
            // The agent link already asked the engine what a broken channel means.
            (Some(_), Err(Error::SandboxFailed(reason))) => Err(self.mark_failed(reason)),
            (Some(link), Ok(mut result)) if is_program => {
                result.count_egress_refused(link.take_egress_refused());
                Ok(result)
            }
            (Some(_), other) => other,
            (
                None,
                Err(
                    e @ (Error::SandboxFailed(_)
                    | Error::Internal(_)
                    | Error::BackendUnavailable { .. }
                    | Error::NotFound { .. }),
                ),
            ) => match container::state(&self.docker, &self.id, self.memory_limit_mb).await {
                ContainerState::Dead(reason) => Err(self.mark_failed(reason)),
                // An engine that is down may come back with the container (live restore).
                ContainerState::Running | ContainerState::EngineDown(_) => Err(e),
            },
            (None, other) => other,
        }
    }

    fn mark_failed(&self, reason: String) -> Error {
        debug!(container = %short(&self.id), %reason, "sandbox failed");
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
        Error::SandboxFailed(reason)
    }

    /// Runs a program through the agent, or the exec API without one.
    async fn exec(
        &self,
        request: ExecRequest,
        output: &mut OutputCollector,
        output_cap: usize,
        timeout: Duration,
    ) -> Result<ExecOutcome> {
        match &self.agent {
            Some(link) => {
                let rlimits = agent_commands::rlimits(self.workspace_bytes);
                let pids = self.config.pids_limit;
                agent_commands::exec(link, &request, output, output_cap, timeout, rlimits, pids).await
            }
            None => {
                exec::run(&self.docker, &self.id, request, output, timeout, self.stop_grace, self.config.pids_limit)
                    .await
            }
        }
    }

    /// After a run killed by `SIGKILL` that was not our timeout: the container died (the
    /// error says why), or the kernel's OOM killer took the program (`Some(message)`).
    async fn after_sigkill(&self, outcome: &ExecOutcome) -> Result<Option<String>> {
        if outcome.timed_out || outcome.exit_code != Some(SIGKILL_EXIT) {
            return Ok(None);
        }
        if exec::oom_since(&self.docker, &self.id, outcome.started_at).await {
            if let Some(reason) = container::diagnose(&self.docker, &self.id, self.memory_limit_mb).await {
                return Err(self.mark_failed(reason));
            }
            return Ok(Some(format!(
                "the program was killed: out of memory (sandbox memory limit {} MB)",
                self.memory_limit_mb
            )));
        }
        // Killed, not for memory: maybe the whole container was (the exec's stream can end
        // before the engine records the container as stopped, so look a few times).
        for _ in 0..5 {
            if let Some(reason) = container::diagnose(&self.docker, &self.id, self.memory_limit_mb).await {
                return Err(self.mark_failed(reason));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    async fn shell(&self, command: ExecuteShell, context: &ExecContext) -> Result<codebeaker::ShellResult> {
        if command.command_name.is_empty() {
            return Err(Error::InvalidInput("commandName must not be empty".into()));
        }
        let working_dir = WorkspacePath::parse(&command.working_directory)?;
        let mut env = Vec::with_capacity(command.env.len());
        for (name, value) in &command.env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(Error::InvalidInput(format!("invalid environment variable name {name:?}")));
            }
            env.push(format!("{name}={value}"));
        }
        let mut argv = vec![command.command_name.clone()];
        argv.extend(command.args);
        let request = ExecRequest {
            argv,
            env,
            working_dir: working_dir.to_string(),
            stdin: command.stdin.map(String::into_bytes),
            user: self.config.sandbox_user.clone(),
        };
        let mut output = OutputCollector::new(context.output_limit, context.output.clone());
        let outcome = self.exec(request, &mut output, context.output_limit, context.timeout).await?;
        if let Some(note) = self.after_sigkill(&outcome).await? {
            output.push(OutputStream::Stderr, format!("\ncodebeaker: {note}\n").as_bytes());
        }
        let exit_code = outcome.exit_code.unwrap_or(-1);
        let mut result = output.into_shell_result(exit_code, millis(outcome.duration), outcome.timed_out);
        result.truncated |= outcome.truncated;
        result.usage = outcome.usage;
        if result.exit_code == 126 && result.stdout.starts_with("OCI runtime exec failed") {
            // The program could not start: its own fault, or a container that just died.
            if let Some(reason) = container::diagnose(&self.docker, &self.id, self.memory_limit_mb).await {
                return Err(self.mark_failed(reason));
            }
        }
        explain_start_failure(&mut result, &command.command_name, &working_dir);
        Ok(result)
    }

    async fn code(&self, command: ExecuteCode, context: &ExecContext) -> Result<codebeaker::CodeResult> {
        if let (Some(link), Some(language)) = (&self.agent, code::interpreter(self.language)) {
            let rlimits = agent_commands::rlimits(self.workspace_bytes);
            let started_at = std::time::SystemTime::now();
            let mut result = agent_commands::code(link, language, command.code, context, rlimits).await?;
            // An interpreter that died under the code: say so when it was the memory limit.
            if result.state_reset && !result.timed_out && exec::oom_since(&self.docker, &self.id, started_at).await {
                result.error = Some(format!(
                    "the program was killed: out of memory (sandbox memory limit {} MB); the interpreter restarts \
                     with a fresh state",
                    self.memory_limit_mb
                ));
            }
            return Ok(result);
        }
        let Some((argv, env)) = code::runner(self.language) else {
            return Err(Error::Unsupported(format!("execute_code in {} on the docker backend", self.language)));
        };
        let request = ExecRequest {
            argv,
            env,
            working_dir: codebeaker::WORKSPACE_ROOT.to_owned(),
            stdin: Some(command.code.into_bytes()),
            user: self.config.sandbox_user.clone(),
        };
        let mut output = OutputCollector::new(context.output_limit, context.output.clone());
        let outcome = self.exec(request, &mut output, context.output_limit, context.timeout).await?;
        let oom = self.after_sigkill(&outcome).await?;
        let exit_code = outcome.exit_code.unwrap_or(-1);
        let mut result = output.into_code_result(exit_code, None, millis(outcome.duration), outcome.timed_out);
        result.truncated |= outcome.truncated;
        result.usage = outcome.usage;
        if !outcome.timed_out && exit_code != 0 {
            result.error = Some(match oom {
                Some(note) => note,
                None => code::failure_message(self.language, &result.stderr, exit_code),
            });
        }
        Ok(result)
    }

    /// Runs a backend helper program (`find`, `rm`) with argv only, as the sandbox user,
    /// within `timeout`; its stdout, or an error with its stderr.
    async fn helper(&self, argv: Vec<String>, doing: &str, timeout: Duration) -> Result<String> {
        let request = ExecRequest {
            argv,
            env: Vec::new(),
            working_dir: codebeaker::WORKSPACE_ROOT.to_owned(),
            stdin: None,
            user: self.config.sandbox_user.clone(),
        };
        let mut output = OutputCollector::new(HELPER_OUTPUT_LIMIT, None);
        let outcome = self.exec(request, &mut output, HELPER_OUTPUT_LIMIT, timeout).await?;
        let truncated = output.truncated();
        let result = output.into_shell_result(outcome.exit_code.unwrap_or(-1), 0, outcome.timed_out);
        if outcome.timed_out {
            return Err(Error::Internal(format!(
                "cannot {doing}: it did not finish within {} ms",
                timeout.as_millis()
            )));
        }
        if outcome.exit_code != Some(0) {
            return Err(Error::Internal(format!("cannot {doing}: {}", result.stderr.trim())));
        }
        if truncated {
            return Err(Error::LimitReached(format!(
                "cannot {doing}: the answer is over {HELPER_OUTPUT_LIMIT} bytes (too many entries)"
            )));
        }
        Ok(result.stdout)
    }

    async fn delete(&self, command: &codebeaker::command::DeleteFile) -> Result<codebeaker::result::DeleteFileResult> {
        let (path, real) = self.files().deletion_target(command).await?;
        // The archive API cannot delete; `rm` with argv only, on the resolved path.
        let argv = vec!["rm".into(), "-rf".into(), "--".into(), real.to_string()];
        self.helper(argv, &format!("delete {path}"), HELPER_TIMEOUT).await?;
        Ok(files::deleted(&path))
    }

    async fn list(
        &self,
        command: &codebeaker::command::ListDirectory,
    ) -> Result<codebeaker::result::ListDirectoryResult> {
        let (path, real) = self.files().listing_target(command).await?;
        let listing = self.helper(files::listing_argv(&real), &format!("list {path}"), HELPER_TIMEOUT).await?;
        Ok(codebeaker::result::ListDirectoryResult { path: path.to_string(), entries: files::parse_listing(&listing) })
    }
}

/// The engine reports a program that could not start (missing, not executable, bad
/// working directory) as exit code 126 with runc's message on stdout. Say it the way a
/// shell would: on stderr, with 127 for a missing program.
fn explain_start_failure(result: &mut codebeaker::ShellResult, program: &str, working_dir: &WorkspacePath) {
    if result.exit_code != 126 || !result.stdout.starts_with("OCI runtime exec failed") {
        return;
    }
    let detail = std::mem::take(&mut result.stdout);
    let detail = detail.trim_end();
    result.stderr = if detail.contains("executable file not found")
        || (detail.contains("no such file or directory") && !detail.contains("chdir"))
    {
        result.exit_code = 127;
        format!("{program}: command not found ({detail})\n")
    } else if detail.contains("chdir") {
        format!("cannot run {program}: working directory {working_dir} does not exist ({detail})\n")
    } else if detail.contains("permission denied") {
        format!("{program}: permission denied ({detail})\n")
    } else {
        format!("cannot run {program}: {detail}\n")
    };
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn execute(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        if let Some(reason) = self.failure() {
            return Err(Error::SandboxFailed(reason));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::SandboxFailed("sandbox is closed".into()));
        }
        let span =
            info_span!("command", container = %short(&self.id), language = %self.language, kind = command.kind());
        self.run(command, context).instrument(span).await
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let removed = container::remove(&self.docker, &self.id).await;
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        if removed {
            Ok(())
        } else {
            Err(Error::Internal(format!("could not remove container {}", short(&self.id))))
        }
    }
}
