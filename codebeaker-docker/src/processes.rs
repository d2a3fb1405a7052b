//! Background processes in a container: each is a long-lived `exec` of the agent (no
//! timeout unless the client set one, no output cap: the session's process table keeps
//! what it retains), with stdin streamed, on a real terminal when asked (the agent opens
//! a pty, starts the program in a new session with it as controlling terminal, and
//! passes resizes and signals on).
//!
//! Closing the session kills every process through the agent's shutdown (it kills every
//! guest process, whatever it did to its stdio or signal handlers), and the container
//! goes after it.

use async_trait::async_trait;
use codebeaker::{
    Error, ProcessControl, ProcessExit, ProcessSignal, ProcessSink, ProcessSpec, ProcessStream, Processes, PtySize,
    Result, SpawnedProcess,
};
use codebeaker_agent::client::{AgentError, ExecControl, ExecEvent, ExecStream};
use codebeaker_agent::protocol::{ExecCommand, ExecRequest as AgentExec, PtySize as AgentPty};

use crate::agent_commands::millis;
use crate::sandbox::DockerSandbox;

#[async_trait]
impl Processes for DockerSandbox {
    async fn spawn(&self, spec: &ProcessSpec, sink: ProcessSink) -> Result<SpawnedProcess> {
        let link = self.agent_link();
        let client = link.client().await?;
        let command = &spec.command;
        let argv = std::iter::once(command.command_name.clone()).chain(command.args.iter().cloned()).collect();
        let mut request = AgentExec::new(ExecCommand::Argv(argv), spec.timeout_ms.unwrap_or(u64::MAX), u64::MAX);
        request.env = command.env.clone();
        request.cwd = Some(command.cwd.relative().to_owned());
        request.stdin_stream = true;
        let limits = self.limits();
        request.rlimits = limits.rlimits;
        request.grace_ms = millis(limits.graces.interrupt);
        request.drain_ms = millis(limits.graces.output_drain);
        request.pty = spec.pty.map(|size| AgentPty { cols: size.cols, rows: size.rows });
        let mut stream = match client.exec(request).await {
            Ok(stream) => stream,
            Err(e) => return Err(link.explain(e).await),
        };
        let pid = match stream.next().await {
            Some(Ok(ExecEvent::Started { pid })) => pid,
            Some(Err(AgentError::Remote(reply))) => return Err(reply.into()),
            Some(Err(e)) => return Err(link.explain(e).await),
            other => return Err(Error::internal(format!("the agent started a process with {other:?}"))),
        };
        let control = AgentProcess { control: stream.control(), pty: spec.pty.is_some() };
        let stream_of_stdout = if spec.pty.is_some() { ProcessStream::Pty } else { ProcessStream::Stdout };
        tokio::spawn(forward(stream, sink, stream_of_stdout));
        Ok(SpawnedProcess { pid, control: Box::new(control) })
    }
}

/// Moves a process's events into its sink until it ends.
async fn forward(mut stream: ExecStream, sink: ProcessSink, stdout: ProcessStream) {
    while let Some(event) = stream.next().await {
        match event {
            Ok(ExecEvent::Started { .. }) => {}
            Ok(ExecEvent::Stdout(bytes)) => sink.output(stdout, &bytes),
            Ok(ExecEvent::Stderr(bytes)) => sink.output(ProcessStream::Stderr, &bytes),
            Ok(ExecEvent::Exited(exited)) => {
                let mut exit = ProcessExit::new(exited.code, exited.signal).with_usage(exited.usage.into());
                if exited.timed_out {
                    exit.reason = Some("its timeoutMs passed".to_owned());
                }
                sink.exit(exit);
                return;
            }
            Err(error) => {
                sink.exit(ProcessExit::lost(format!("the sandbox's agent stopped answering for it: {error}")));
                return;
            }
        }
    }
    sink.exit(ProcessExit::lost("the sandbox's agent ended the process without its exit"));
}

/// A running process's control: the agent's handle on its exec.
struct AgentProcess {
    control: ExecControl,
    pty: bool,
}

fn sent(result: std::result::Result<(), AgentError>) -> Result<()> {
    result.map_err(|e| Error::sandbox_failed(format!("the sandbox's agent did not take it: {e}")).with_source(e))
}

#[async_trait]
impl ProcessControl for AgentProcess {
    async fn write(&self, data: Vec<u8>) -> Result<()> {
        sent(self.control.write_stdin(data, false).await)
    }

    async fn close_stdin(&self) -> Result<()> {
        sent(self.control.write_stdin(Vec::new(), true).await)
    }

    async fn resize(&self, size: PtySize) -> Result<()> {
        if !self.pty {
            return Err(Error::invalid_input("the process has no terminal to resize (start it with pty)"));
        }
        sent(self.control.resize(size.cols, size.rows).await)
    }

    async fn signal(&self, signal: ProcessSignal) -> Result<()> {
        sent(self.control.signal(signal.number()).await)
    }
}
