//! [`DockerSandbox`]: one session's container, and how each command runs in it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use codebeaker::command::{ExecuteCode, ExecuteShell};
use codebeaker::{
    Command, CommandResult, Error, ErrorKind, ExecContext, Graces, Language, OutputCollector, OutputStream, Result,
    Sandbox, SessionLimits, WorkspacePath,
};
use tracing::{debug, info_span, Instrument};

use crate::agent_commands::{self, ExecOutcome, ExecRequest, Limits};
use crate::agent_link::AgentLink;
use crate::code;
use crate::config::DockerConfig;
use crate::container::{self, short, Started};
use crate::hardening::SandboxSpec;
use crate::reaper::Reaper;

/// Ids of the session containers a backend has handed out and not yet removed.
pub(crate) type LiveSet = Arc<Mutex<HashSet<String>>>;

/// How long freezing a closed session's container may take before close reports it.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code of a process killed by `SIGKILL` (the memory limit's OOM killer, or a kill).
const SIGKILL_EXIT: i64 = 137;

/// A session's hardened container (see [`crate::hardening`]).
pub struct DockerSandbox {
    id: String,
    docker: Docker,
    language: Language,
    memory_limit_mb: u64,
    /// The operator's timings.
    graces: Graces,
    /// What every command runs under.
    limits: Limits,
    /// The connection to the container's agent, which runs every command.
    agent: AgentLink,
    live: LiveSet,
    /// Removes the container once the session is closed.
    reaper: Arc<Reaper>,
    /// Why the container can no longer run commands, once known.
    failed: Mutex<Option<String>>,
    closed: AtomicBool,
    /// The engine has paused the container (`session.pause`).
    paused: AtomicBool,
}

impl DockerSandbox {
    pub(crate) fn new(
        started: Started,
        docker: Docker,
        config: Arc<DockerConfig>,
        spec: &SandboxSpec,
        limits: &SessionLimits,
        live: LiveSet,
        reaper: Arc<Reaper>,
    ) -> Self {
        DockerSandbox {
            id: started.id,
            agent: started.agent,
            limits: Limits {
                rlimits: agent_commands::rlimits(spec.workspace_bytes, config.pids_limit),
                graces: limits.graces,
                pids_limit: config.pids_limit,
            },
            docker,
            language: spec.language,
            memory_limit_mb: spec.memory_limit_mb,
            graces: limits.graces,
            live,
            reaper,
            failed: Mutex::new(None),
            closed: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        }
    }

    /// The connection to the container's agent.
    pub(crate) fn agent_link(&self) -> &AgentLink {
        &self.agent
    }

    /// What every program in this sandbox runs under.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// The failure that ended this sandbox, told again to a later command.
    fn failure(&self) -> Option<Error> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.as_ref().map(|message| Error::new(ErrorKind::SandboxFailed, message.as_str()))
    }

    /// Runs a command through the agent; a broken channel becomes a
    /// [`ErrorKind::SandboxFailed`] that says why (the agent link asks the engine).
    async fn run(&self, command: Command, context: ExecContext) -> Result<CommandResult> {
        let is_program = matches!(command, Command::ExecuteShell(_) | Command::ExecuteCode(_));
        let timeout = context.timeout;
        let link = &self.agent;
        let running = async {
            match command {
                Command::WriteFile(c) => agent_commands::write_file(link, &c).await.map(CommandResult::WriteFile),
                Command::ReadFile(c) => agent_commands::read_file(link, &c).await.map(CommandResult::ReadFile),
                Command::CreateDirectory(c) => {
                    agent_commands::create_directory(link, &c).await.map(CommandResult::CreateDirectory)
                }
                Command::CopyFile(c) => agent_commands::copy_file(link, &c).await.map(CommandResult::CopyFile),
                Command::ListDirectory(c) => {
                    agent_commands::list_directory(link, &c).await.map(CommandResult::ListDirectory)
                }
                Command::DeleteFile(c) => agent_commands::delete_file(link, &c).await.map(CommandResult::DeleteFile),
                Command::ExecuteShell(c) => self.shell(c, &context).await.map(CommandResult::ExecuteShell),
                Command::ExecuteCode(c) => self.code(c, &context).await.map(CommandResult::ExecuteCode),
                other => Err(Error::unsupported(format!("{} in docker sessions", other.kind()))),
            }
        };
        // Programs enforce their own timeout (the agent kills and answers within the
        // interrupt grace); this bounds everything else and answers before the session
        // manager's backstop (timeout + the stop grace). Dropping `running` cancels its
        // requests.
        let result = match tokio::time::timeout(timeout + self.graces.answer, running).await {
            Ok(result) => result,
            Err(_) => Err(Error::internal(format!(
                "the sandbox did not finish the command within {} ms",
                timeout.as_millis()
            ))),
        };
        match result {
            // The agent link already asked the engine what a broken channel means.
            Err(error) if error.kind() == ErrorKind::SandboxFailed => Err(self.mark_failed(error)),
            Ok(mut result) if is_program => {
                result.count_egress_refused(link.take_egress_refused());
                Ok(result)
            }
            other => other,
        }
    }

    /// Remembers `error` (a [`ErrorKind::SandboxFailed`]) as the end of this sandbox.
    fn mark_failed(&self, error: Error) -> Error {
        debug!(container = %short(&self.id), %error, "sandbox failed");
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.message().to_owned());
        error
    }

    /// Runs a program through the agent.
    async fn exec(
        &self,
        request: ExecRequest,
        output: &mut OutputCollector,
        output_cap: usize,
        timeout: Duration,
    ) -> Result<ExecOutcome> {
        agent_commands::exec(&self.agent, &request, output, output_cap, timeout, self.limits).await
    }

    /// After a run killed by `SIGKILL` that was not our timeout: the container died (the
    /// error says why), or the kernel's OOM killer took the program (`Some(message)`).
    async fn after_sigkill(&self, outcome: &ExecOutcome) -> Result<Option<String>> {
        if outcome.timed_out || outcome.exit_code != Some(SIGKILL_EXIT) {
            return Ok(None);
        }
        if container::oom_since(&self.docker, &self.id, outcome.started_at).await {
            if let Some(reason) = container::diagnose(&self.docker, &self.id, self.memory_limit_mb).await {
                return Err(self.mark_failed(Error::sandbox_failed(reason)));
            }
            return Ok(Some(format!(
                "the program was killed: out of memory (sandbox memory limit {} MB)",
                self.memory_limit_mb
            )));
        }
        Ok(None)
    }

    async fn shell(&self, command: ExecuteShell, context: &ExecContext) -> Result<codebeaker::ShellResult> {
        if command.command_name.is_empty() {
            return Err(Error::invalid_input("commandName must not be empty"));
        }
        let mut env = Vec::with_capacity(command.env.len());
        for (name, value) in &command.env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(Error::invalid_input(format!("invalid environment variable name {name:?}")));
            }
            env.push(format!("{name}={value}"));
        }
        let mut argv = vec![command.command_name.clone()];
        argv.extend(command.args);
        let request = ExecRequest {
            argv,
            env,
            working_dir: command.working_directory,
            stdin: command.stdin.map(String::into_bytes),
        };
        let mut output = OutputCollector::new(context.output_limit, context.output.clone());
        let outcome = self.exec(request, &mut output, context.output_limit, context.timeout).await?;
        // Why it ended, when a signal ended it: out of memory, else the signal's name.
        let note = self.after_sigkill(&outcome).await?.or_else(|| outcome.signal_note.clone());
        if let Some(note) = note {
            output.push(OutputStream::Stderr, format!("\ncodebeaker: {note}\n").as_bytes());
        }
        let exit_code = outcome.exit_code.unwrap_or(-1);
        let mut result = output.into_shell_result(exit_code, millis(outcome.duration), outcome.timed_out);
        result.truncated |= outcome.truncated;
        result.usage = outcome.usage;
        Ok(result)
    }

    async fn code(&self, command: ExecuteCode, context: &ExecContext) -> Result<codebeaker::CodeResult> {
        if let Some(language) = code::interpreter(self.language) {
            let started_at = std::time::SystemTime::now();
            let mut result = agent_commands::code(&self.agent, language, command.code, context, self.limits).await?;
            // An interpreter that died under the code: say so when it was the memory limit.
            if result.state_reset && !result.timed_out && container::oom_since(&self.docker, &self.id, started_at).await
            {
                result.error = Some(format!(
                    "the program was killed: out of memory (sandbox memory limit {} MB); the interpreter restarts \
                     with a fresh state",
                    self.memory_limit_mb
                ));
            }
            return Ok(result);
        }
        let Some((argv, env)) = code::runner(self.language) else {
            return Err(Error::unsupported(format!("execute_code in {} on the docker backend", self.language)));
        };
        let request =
            ExecRequest { argv, env, working_dir: WorkspacePath::root(), stdin: Some(command.code.into_bytes()) };
        let mut output = OutputCollector::new(context.output_limit, context.output.clone());
        let outcome = self.exec(request, &mut output, context.output_limit, context.timeout).await?;
        let oom = self.after_sigkill(&outcome).await?;
        let exit_code = outcome.exit_code.unwrap_or(-1);
        let mut result = output.into_code_result(exit_code, None, millis(outcome.duration), outcome.timed_out);
        result.truncated |= outcome.truncated;
        result.usage = outcome.usage;
        if !outcome.timed_out && exit_code != 0 {
            result.error = Some(match (oom, &outcome.signal_note) {
                (Some(note), _) => note,
                (None, Some(note)) => note.clone(),
                (None, None) => code::failure_message(self.language, &result.stderr, exit_code),
            });
        }
        Ok(result)
    }
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
        if let Some(failed) = self.failure() {
            return Err(failed);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::sandbox_failed("sandbox is closed"));
        }
        let span = info_span!("docker.execute", container = %short(&self.id), language = %self.language, kind = command.kind());
        self.run(command, context).instrument(span).await
    }

    fn file_streams(&self) -> Option<&dyn codebeaker::FileStreams> {
        Some(&self.agent as &dyn codebeaker::FileStreams)
    }

    fn archives(&self) -> Option<&dyn codebeaker::Archives> {
        Some(&self.agent as &dyn codebeaker::Archives)
    }

    fn processes(&self) -> Option<&dyn codebeaker::Processes> {
        Some(self)
    }

    fn pausing(&self) -> Option<&dyn codebeaker::Pausing> {
        Some(self)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Tunnels end with the session, whoever still holds this sandbox.
        self.agent.stop_egress().await;
        // Answers once the container runs nothing more: the agent (PID 1) killed every
        // guest process and starts none any more (a few ms), or, when it does not answer
        // in time (dead, stuck, babbling: the agent is untrusted), the engine froze the
        // container (~20 ms, against 70-130 ms for its kill). Removing it and its
        // workspace volume goes on in the background, retried, and waited for by the
        // backend's shutdown.
        // The agent answers in ~1-5 ms; one fighting a fork bomb inside a CPU quota the
        // bomb exhausts can take seconds, and a dead or stuck agent never answers: after
        // the operator's close-wait-ms the freeze (~20-50 ms) bounds close.
        // A paused container runs nothing already (its cgroup is frozen, the agent too).
        let shutdown = async {
            if self.paused.load(Ordering::SeqCst) {
                return Err(codebeaker_agent::client::AgentError::Closed("the container is paused".to_owned()));
            }
            self.agent.shutdown(self.graces.close_wait, self.graces.close_kill).await
        };
        let stopped = match shutdown.await {
            Ok(killed) => {
                debug!(container = %short(&self.id), killed, "the agent stopped the guest");
                Ok(Ok(()))
            }
            Err(e) => {
                debug!(container = %short(&self.id), error = %e, "the agent did not stop the guest; freezing");
                tokio::time::timeout(FREEZE_TIMEOUT, container::freeze(&self.docker, &self.id)).await
            }
        };
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        self.reaper.remove(self.id.clone());
        match stopped {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::internal(format!(
                "could not stop container {} ({e}); its removal is retried in the background",
                short(&self.id)
            ))
            .with_source(e)),
            Err(_) => Err(Error::internal(format!(
                "container {} did not freeze within {} s; its removal is retried in the background",
                short(&self.id),
                FREEZE_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Pausing is the engine's: the container's cgroup frozen (every process of it, the
/// agent included, stops using CPU; memory stays), then thawed where it was.
#[async_trait]
impl codebeaker::Pausing for DockerSandbox {
    async fn pause(&self) -> Result<()> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        self.docker.pause_container(&self.id).await.map_err(|e| {
            Error::sandbox_failed(format!("the engine did not pause container {}: {e}", short(&self.id))).with_source(e)
        })?;
        self.paused.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn resume(&self) -> Result<()> {
        self.docker.unpause_container(&self.id).await.map_err(|e| {
            Error::sandbox_failed(format!("the engine did not resume container {}: {e}", short(&self.id)))
                .with_source(e)
        })?;
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }
}
