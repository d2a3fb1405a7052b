//! [`Batch`]: several requests in one JSON-RPC batch message.

use codebeaker::{Command, CommandOutcome, SessionConfig, SessionId, SessionInfo};
use serde_json::{json, Value};

use crate::error::Result;
use crate::session::CreatedSession;
use crate::{create_params, execute_params, Client};

/// Requests to send as one message; [`Batch::send`] answers each, in the order added.
/// The server runs them concurrently (commands on one session still in order).
#[derive(Debug)]
#[must_use = "a batch is sent only by Batch::send"]
pub struct Batch {
    client: Client,
    requests: Vec<(&'static str, Value)>,
}

/// The typed answer to one request of a batch.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // answers are read once
#[non_exhaustive]
pub enum BatchReply {
    /// `session.create`'s answer.
    Created(CreatedSession),
    /// `session.execute`'s envelope.
    Executed(CommandOutcome),
    /// `session.list`'s sessions.
    Listed(Vec<SessionInfo>),
    /// `session.close` closed this session.
    Closed(SessionId),
}

impl Batch {
    pub(crate) fn new(client: Client) -> Self {
        Batch { client, requests: Vec::new() }
    }

    /// Adds `session.create`.
    pub fn create(mut self, config: &SessionConfig) -> Result<Self> {
        self.requests.push(("session.create", create_params(config)?));
        Ok(self)
    }

    /// Adds `session.execute` of `command` on session `id`.
    pub fn execute(mut self, id: &SessionId, command: &Command) -> Self {
        self.requests.push(("session.execute", execute_params(id, command, None, false)));
        self
    }

    /// Adds `session.list`.
    pub fn list(mut self) -> Self {
        self.requests.push(("session.list", json!({})));
        self
    }

    /// Adds `session.close` of session `id`.
    pub fn close(mut self, id: &SessionId) -> Self {
        self.requests.push(("session.close", json!({"sessionId": id})));
        self
    }

    /// How many requests the batch holds.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the batch holds no request (the server refuses an empty batch).
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Sends the batch; `Err` when it could not be sent or answered at all, otherwise
    /// each request's answer or error, in the order they were added.
    pub async fn send(self) -> Result<Vec<Result<BatchReply>>> {
        let methods: Vec<&'static str> = self.requests.iter().map(|(method, _)| *method).collect();
        let answers = self.client.call_batch(self.requests).await?;
        Ok(methods
            .into_iter()
            .zip(answers)
            .map(|(method, answer)| answer.and_then(|value| typed(method, value)))
            .collect())
    }
}

fn typed(method: &str, value: Value) -> Result<BatchReply> {
    Ok(match method {
        "session.create" => BatchReply::Created(serde_json::from_value(value)?),
        "session.execute" => BatchReply::Executed(serde_json::from_value(value)?),
        "session.list" => {
            let sessions = value.get("sessions").cloned().unwrap_or(Value::Null);
            BatchReply::Listed(serde_json::from_value(sessions)?)
        }
        _ => BatchReply::Closed(serde_json::from_value(value.get("sessionId").cloned().unwrap_or(Value::Null))?),
    })
}
