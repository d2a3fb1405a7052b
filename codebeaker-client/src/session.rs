//! [`RemoteSession`]: a session on the server, and its streamed output.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use codebeaker::{Capabilities, Command, CommandOutcome, Language, OutputChunk, OutputStream, SessionId, SessionInfo};
use futures::Stream;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{ClientError, Result};
use crate::{execute_params, result_of, Client};

/// What `session.create` answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreatedSession {
    /// The session's id.
    pub session_id: SessionId,
    /// The backend's sandbox id (Docker container, Deno worker).
    pub container_id: String,
    /// The session's language.
    pub language: Language,
    /// The backend serving the session (`docker`, `deno`…); empty from a server that
    /// does not say.
    #[serde(default)]
    pub backend: String,
    /// The cluster node holding the session (its URL), on a server that is a node of a
    /// cluster.
    #[serde(default)]
    pub node: Option<String>,
    /// When the session was created.
    pub created_at: DateTime<Utc>,
    /// The settings the server applied (its defaults filled in), without the language.
    #[serde(default)]
    pub config: Value,
}

/// A session on the server. Cheap to clone; every clone acts on the same session.
///
/// The session lives on the server until [`RemoteSession::close`], its idle timeout or
/// its lifetime: dropping the handle does not close it (another client, or this one
/// after a reconnect, may go on using its id with [`Client::session`]).
#[derive(Debug, Clone)]
pub struct RemoteSession {
    client: Client,
    id: SessionId,
    created: Option<CreatedSession>,
}

impl RemoteSession {
    pub(crate) fn new(client: Client, created: CreatedSession) -> Self {
        RemoteSession { client, id: created.session_id.clone(), created: Some(created) }
    }

    pub(crate) fn attach(client: Client, id: SessionId) -> Self {
        RemoteSession { client, id, created: None }
    }

    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The client this handle calls through.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// What the server answered when this handle created the session (`None` for a
    /// handle from [`Client::session`]).
    pub fn created(&self) -> Option<&CreatedSession> {
        self.created.as_ref()
    }

    /// Runs `command` with the session's default timeout (`session.execute`). A command
    /// that ran and failed is `Ok` with `success: false`.
    pub async fn execute(&self, command: Command) -> Result<CommandOutcome> {
        self.execute_with_timeout(command, None).await
    }

    /// Runs `command` with its own wall-clock limit (`timeoutMs`), or the session's.
    pub async fn execute_with_timeout(&self, command: Command, timeout: Option<Duration>) -> Result<CommandOutcome> {
        let outcome = self.client.call("session.execute", execute_params(&self.id, &command, timeout, false)).await?;
        Ok(serde_json::from_value(outcome)?)
    }

    /// Runs `command` with `"stream": true`: its output as it is written, then its outcome
    /// ([`OutputEvent::Finished`], always last).
    pub async fn execute_stream(&self, command: Command) -> Result<OutputEvents> {
        self.execute_stream_with_timeout(command, None).await
    }

    /// [`RemoteSession::execute_stream`] with its own wall-clock limit (`timeoutMs`), or
    /// the session's.
    pub async fn execute_stream_with_timeout(
        &self,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<OutputEvents> {
        let params = execute_params(&self.id, &command, timeout, true);
        let answers = self.client.call_streamed("session.execute", params).await?;
        Ok(OutputEvents { answers, finished: false })
    }

    /// Runs `code` (`execute_code`).
    pub async fn run_code(&self, code: impl Into<String>) -> Result<CommandOutcome> {
        self.execute(Command::code(code)).await
    }

    /// This session as `session.list` shows it ([`ClientError::Rpc`] with code
    /// `-32001` once it is closed).
    pub async fn info(&self) -> Result<SessionInfo> {
        let listed = self.client.list().await?;
        listed
            .into_iter()
            .find(|info| info.session_id == self.id)
            .ok_or_else(|| ClientError::session_not_found(&self.id))
    }

    /// What the session's sandbox can do.
    pub async fn capabilities(&self) -> Result<Capabilities> {
        Ok(self.info().await?.capabilities)
    }

    /// Closes the session and removes its sandbox (`session.close`).
    pub async fn close(self) -> Result<()> {
        self.client.close_session(&self.id).await
    }
}

/// One event of a streamed command.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // the outcome comes once per command
pub enum OutputEvent {
    /// Output written while the command runs.
    Output(OutputChunk),
    /// The command's outcome (with the complete output again), or why it has none;
    /// always the last event.
    Finished(Result<CommandOutcome>),
}

/// The events of one streamed command, from [`RemoteSession::execute_stream`].
#[derive(Debug)]
pub struct OutputEvents {
    answers: mpsc::UnboundedReceiver<Value>,
    finished: bool,
}

/// A `session.output` notification's params as they travel.
#[derive(Deserialize)]
struct Notification {
    stream: OutputStream,
    data: String,
}

impl Stream for OutputEvents {
    type Item = OutputEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<OutputEvent>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let answer = match self.answers.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(answer) => answer,
        };
        let event = match answer {
            // The connection was lost before the response.
            None => OutputEvent::Finished(Err(ClientError::Disconnected)),
            Some(params) if params.get("requestId").is_some() => match serde_json::from_value::<Notification>(params) {
                Ok(Notification { stream, data }) => {
                    return Poll::Ready(Some(OutputEvent::Output(OutputChunk { stream, data })))
                }
                Err(error) => OutputEvent::Finished(Err(error.into())),
            },
            Some(response) => {
                OutputEvent::Finished(result_of(response).and_then(|v| serde_json::from_value(v).map_err(Into::into)))
            }
        };
        self.finished = true;
        Poll::Ready(Some(event))
    }
}

/// What `session.fork` answers: the new session, and whether its state was carried.
#[derive(Debug, Clone)]
pub struct ForkedSession {
    /// The new session.
    pub session: RemoteSession,
    /// `true` when only the files (and installed packages) were carried.
    pub state_reset: bool,
}

impl RemoteSession {
    /// Pauses the session (`session.pause`): no CPU, memory kept.
    pub async fn pause(&self) -> Result<()> {
        self.client.call("session.pause", serde_json::json!({"sessionId": self.id})).await.map(drop)
    }

    /// Resumes the paused session (`session.resume`).
    pub async fn resume(&self) -> Result<()> {
        self.client.call("session.resume", serde_json::json!({"sessionId": self.id})).await.map(drop)
    }

    /// Keeps the session's workspace as a snapshot (`session.snapshot`).
    pub async fn snapshot(&self) -> Result<codebeaker::snapshot::SnapshotInfo> {
        let taken = self.client.call("session.snapshot", serde_json::json!({"sessionId": self.id})).await?;
        Ok(serde_json::from_value(taken)?)
    }

    /// A new session that starts as this one is (`session.fork`).
    pub async fn fork(&self) -> Result<ForkedSession> {
        let forked = self.client.call("session.fork", serde_json::json!({"sessionId": self.id})).await?;
        let state_reset = forked.get("stateReset").and_then(Value::as_bool).unwrap_or(true);
        let created: CreatedSession = serde_json::from_value(forked)?;
        Ok(ForkedSession { session: RemoteSession::new(self.client.clone(), created), state_reset })
    }
}
