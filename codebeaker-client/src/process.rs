//! [`RemoteProcess`]: a background process on the server (`process.*`), its output as it
//! comes, and what a client may do to it.

use std::time::Duration;

use codebeaker::{ProcessEvent, ProcessExit, ProcessInfo, ProcessOutput, ProcessSignal, ProcessSpec, SessionId};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{ClientError, Result};
use crate::session::RemoteSession;
use crate::Client;

/// A background process of a [`RemoteSession`], attached to this client's connection:
/// [`RemoteProcess::next`] reads its output, then its exit. The process outlives the
/// handle and the connection; after a lost connection ([`RemoteProcess::next`] answers
/// `None` before the exit), [`RemoteSession::attach_process`] with
/// [`RemoteProcess::resume_offset`] reads on where this one stopped.
#[derive(Debug)]
pub struct RemoteProcess {
    controls: Controls,
    events: mpsc::UnboundedReceiver<Value>,
    /// The offset this handle attached from.
    from_offset: u64,
    /// The offset after the last chunk read, of each stream that had one (stdout,
    /// stderr, pty).
    read: [Option<u64>; 3],
    /// Bytes discarded before the attach (older than the server's retention).
    dropped: u64,
    done: bool,
}

/// A `process.output` notification's params as they travel.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputParams {
    stream: codebeaker::ProcessStream,
    data: String,
    offset: u64,
    #[serde(default)]
    dropped: u64,
}

impl RemoteSession {
    /// Starts a background process (`process.start`); its handle reads its output from
    /// the first byte.
    pub async fn start_process(&self, spec: &ProcessSpec) -> Result<RemoteProcess> {
        let mut params = json!({"sessionId": self.id(), "command": spec.command});
        if let Some(pty) = spec.pty {
            params["pty"] = json!(pty);
        }
        if let Some(timeout) = spec.timeout_ms {
            params["timeoutMs"] = json!(timeout);
        }
        let client = self.client();
        let (result, events) = client.call_attaching("process.start", self.id(), params).await?;
        let pid = pid_of(&result)?;
        Ok(RemoteProcess::new(client.clone(), self.id().clone(), pid, events))
    }

    /// Attaches to the session's process `pid` (`process.attach`), from `from_offset`
    /// of each stream: e.g. one started by another connection, or before a reconnect.
    pub async fn attach_process(&self, pid: u32, from_offset: u64) -> Result<RemoteProcess> {
        let params = json!({"sessionId": self.id(), "pid": pid, "fromOffset": from_offset});
        let client = self.client();
        let (result, events) = client.call_attaching("process.attach", self.id(), params).await?;
        let dropped = result.get("dropped").and_then(Value::as_u64).unwrap_or(0);
        let process = RemoteProcess::new(client.clone(), self.id().clone(), pid, events);
        Ok(RemoteProcess { from_offset, dropped, ..process })
    }

    /// The controls of the session's process `pid`, without reading its output.
    pub(crate) fn process_controls(&self, pid: u32) -> Controls {
        Controls { client: self.client().clone(), session: self.id().clone(), pid }
    }

    /// The session's background processes (`process.list`), oldest first.
    pub async fn processes(&self) -> Result<Vec<ProcessInfo>> {
        let listed = self.client().call("process.list", json!({"sessionId": self.id()})).await?;
        Ok(serde_json::from_value(listed)?)
    }
}

fn pid_of(result: &Value) -> Result<u32> {
    result
        .get("pid")
        .and_then(Value::as_u64)
        .and_then(|pid| u32::try_from(pid).ok())
        .ok_or_else(|| ClientError::Protocol(format!("a process reply without a pid: {result}")))
}

impl RemoteProcess {
    fn new(client: Client, session: SessionId, pid: u32, events: mpsc::UnboundedReceiver<Value>) -> Self {
        let controls = Controls { client, session, pid };
        RemoteProcess { controls, events, from_offset: 0, read: [None; 3], dropped: 0, done: false }
    }

    /// Its pid in the sandbox.
    pub fn pid(&self) -> u32 {
        self.controls.pid
    }

    /// Its controls, apart from this handle (which reading borrows mutably).
    pub(crate) fn controls(&self) -> Controls {
        self.controls.clone()
    }

    /// Bytes from the offset asked for that the server had discarded when this handle
    /// attached (0: the replay is complete).
    pub fn dropped_at_attach(&self) -> u64 {
        self.dropped
    }

    /// The offset to attach from again to read on: the least read offset of the
    /// streams it wrote to. Exact for a process with one stream (a terminal, or output
    /// on stdout only); with both stdout and stderr, bytes of the stream read further
    /// may come again (nothing is missed).
    pub fn resume_offset(&self) -> u64 {
        self.read.iter().flatten().copied().min().unwrap_or(self.from_offset)
    }

    /// The next event: output chunks, then the exit; `None` after the exit, or when the
    /// connection was lost before it.
    pub async fn next(&mut self) -> Option<ProcessEvent> {
        if self.done {
            return None;
        }
        let Some(params) = self.events.recv().await else {
            self.done = true;
            return None;
        };
        if params.get("method").and_then(Value::as_str) == Some("process.exit") {
            self.done = true;
            return serde_json::from_value::<ProcessExit>(params).ok().map(ProcessEvent::Exit);
        }
        let OutputParams { stream, data, offset, dropped } = serde_json::from_value(params).ok()?;
        let index = match stream {
            codebeaker::ProcessStream::Stdout => 0,
            codebeaker::ProcessStream::Stderr => 1,
            _ => 2,
        };
        self.read[index] = Some(offset + data.len() as u64);
        Some(ProcessEvent::Output(ProcessOutput { stream, data, offset, dropped }))
    }

    /// Reads to the exit: everything it wrote (all streams, in order) and how it ended.
    pub async fn output_and_exit(mut self) -> Result<(String, ProcessExit)> {
        let mut text = String::new();
        while let Some(event) = self.next().await {
            match event {
                ProcessEvent::Output(chunk) => text.push_str(&chunk.data),
                ProcessEvent::Exit(exit) => return Ok((text, exit)),
            }
        }
        Err(ClientError::Disconnected)
    }

    /// Writes `data` to its stdin (`process.write`; its terminal's input with a pty).
    pub async fn write(&self, data: impl Into<String>) -> Result<()> {
        self.controls.write(data.into()).await
    }

    /// Closes its stdin (`process.closeStdin`).
    pub async fn close_stdin(&self) -> Result<()> {
        self.controls.close_stdin().await
    }

    /// Resizes its terminal (`process.resize`).
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.controls.resize(cols, rows).await
    }

    /// Sends it `signal` (`process.signal`).
    pub async fn signal(&self, signal: ProcessSignal) -> Result<()> {
        self.controls.signal(signal).await
    }

    /// Waits at most `timeout` for it to end (`process.wait`).
    pub async fn wait(&self, timeout: Duration) -> Result<ProcessExit> {
        self.controls.wait(timeout).await
    }
}

/// What a client may do to a background process besides reading its output: the
/// `process.*` control methods, on one session's process `pid`.
#[derive(Debug, Clone)]
pub(crate) struct Controls {
    client: Client,
    session: SessionId,
    pid: u32,
}

impl Controls {
    /// Its pid in the sandbox.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The result of `method` on this process, with `params`.
    async fn call(&self, method: &str, mut params: Value) -> Result<Value> {
        params["sessionId"] = json!(self.session);
        params["pid"] = json!(self.pid);
        self.client.call(method, params).await
    }

    /// `process.write`.
    pub(crate) async fn write(&self, data: String) -> Result<()> {
        self.call("process.write", json!({"data": data})).await.map(drop)
    }

    /// `process.closeStdin`.
    pub(crate) async fn close_stdin(&self) -> Result<()> {
        self.call("process.closeStdin", json!({})).await.map(drop)
    }

    /// `process.resize`.
    pub(crate) async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.call("process.resize", json!({"cols": cols, "rows": rows})).await.map(drop)
    }

    /// `process.signal`.
    pub(crate) async fn signal(&self, signal: ProcessSignal) -> Result<()> {
        self.call("process.signal", json!({"signal": signal})).await.map(drop)
    }

    /// `process.wait`, at most `timeout`.
    pub(crate) async fn wait(&self, timeout: Duration) -> Result<ProcessExit> {
        let exit = self.call("process.wait", json!({"timeoutMs": timeout.as_millis() as u64})).await?;
        Ok(serde_json::from_value(exit)?)
    }
}
