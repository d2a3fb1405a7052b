//! The five methods of the protocol, dispatched by name onto the typed [`Api`].
//!
//! [`Methods::call`] is split in two on purpose. Its synchronous part runs in the
//! connection's read loop, in arrival order: it checks the params and, for
//! `session.execute`, takes the session's queue ticket, so commands sent back to back on
//! one session run in the order they were sent even though each request is then served
//! by a task of its own. The returned future does the waiting.

use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Command, Language, OutputSink, SessionConfig};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{Api, ApiError, Caller};
use crate::metrics::{Metrics, RefusalKind};
use crate::outbox::Outbox;
use crate::rpc::{self, Request, RpcError, METHOD_NOT_FOUND};

/// What a method eventually answers.
pub(crate) type Reply = BoxFuture<'static, Result<Value, RpcError>>;

/// The method table of one server.
pub(crate) struct Methods {
    api: Api,
    metrics: Arc<Metrics>,
}

/// `session.execute` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecuteParams {
    session_id: String,
    command: Command,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    stream: bool,
}

/// `session.close` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CloseParams {
    session_id: String,
}

/// `execution.run` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunParams {
    language: Language,
    code: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// `session.list` takes no params; anything named is a mistake worth reporting.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {}

impl Methods {
    pub(crate) fn new(api: Api, metrics: Arc<Metrics>) -> Self {
        Methods { api, metrics }
    }

    /// Starts handling `request` for `caller` (see the module docs); `outbox` receives
    /// the `session.output` notifications of a streamed command.
    pub(crate) fn call(&self, request: Request, caller: &Caller, outbox: &Outbox) -> Reply {
        // Every request counts against the rate, each one of a batch too; a connection is
        // told apart by its peer address.
        let connection = caller.remote.map(|addr| addr.to_string()).unwrap_or_default();
        if let Err(limited) = self.api.admit(caller, &connection, &request.method) {
            return Box::pin(futures::future::ready(Err(limited.into())));
        }
        let metrics = self.metrics.clone();
        let started = match request.method.as_str() {
            "session.create" => self.create(request.params, caller),
            "session.execute" => self.execute(request.params, request.id, caller, outbox),
            "session.list" => self.list(request.params, caller),
            "session.close" => self.close(request.params, caller),
            "execution.run" => self.run(request.params, caller),
            other => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!(
                    "no method {:?}; the methods are session.create, session.execute, session.list, \
                     session.close and execution.run",
                    other.chars().take(64).collect::<String>()
                ),
            )),
        };
        let reply = started.unwrap_or_else(|error| Box::pin(futures::future::ready(Err(error))));
        // Requests refused at a limit (sessions, per-tenant sessions) are counted here.
        Box::pin(async move {
            let answer = reply.await;
            if answer.as_ref().is_err_and(|error| error.code == rpc::LIMIT_REACHED) {
                metrics.refused(RefusalKind::Limit);
            }
            answer
        })
    }

    fn create(&self, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
        let mut object = match params {
            Some(Value::Object(object)) => object,
            Some(_) => return Err(by_name_only()),
            None => return Err(RpcError::invalid_params("session.create needs params with at least a language")),
        };
        // The server's default command timeout applies unless the client chose one.
        object.entry("defaultTimeoutMs").or_insert_with(|| json!(millis(self.api.command_timeout())));
        let config: SessionConfig =
            serde_json::from_value(Value::Object(object)).map_err(|e| RpcError::invalid_params(e.to_string()))?;
        let (api, caller) = (self.api.clone(), caller.clone());
        Ok(Box::pin(async move {
            let info = api.create(&caller, config).await?;
            let mut config = serde_json::to_value(&info.config).map_err(internal)?;
            if let Some(object) = config.as_object_mut() {
                object.remove("language");
                // Permissions are a Deno setting; other sessions would only show defaults.
                if info.language != Language::Deno {
                    object.remove("permissions");
                }
            }
            Ok(json!({
                "sessionId": info.session_id,
                "containerId": info.container_id,
                "language": info.language,
                "createdAt": info.created_at,
                "state": info.state,
                "config": config,
            }))
        }))
    }

    fn execute(
        &self,
        params: Option<Value>,
        id: Option<Value>,
        caller: &Caller,
        outbox: &Outbox,
    ) -> Result<Reply, RpcError> {
        let params: ExecuteParams = by_name(params)?;
        let timeout = params.timeout_ms.map(Duration::from_millis);
        // A notification has no id for its output to refer to, so it is not streamed.
        let streaming = params.stream.then_some(id).flatten();
        let Some(request_id) = streaming else {
            let run = self.api.execute(caller, &params.session_id, params.command, timeout, None);
            return Ok(Box::pin(async move { Ok(run.await?.to_json()) }));
        };
        let (sink, mut chunks) = OutputSink::channel();
        // Dropping this reply gives up a command still waiting for its turn; one already
        // running goes on to its end (the manager runs it in a task of its own).
        let run = self.api.execute(caller, &params.session_id, params.command, timeout, Some(sink));
        let outbox = outbox.clone();
        let session_id = params.session_id;
        Ok(Box::pin(async move {
            let notify = |chunk: codebeaker::OutputChunk| {
                let mut params = Map::with_capacity(4);
                params.insert("sessionId".into(), session_id.clone().into());
                params.insert("requestId".into(), request_id.clone());
                params.insert("stream".into(), serde_json::to_value(chunk.stream).unwrap_or(Value::Null));
                params.insert("data".into(), chunk.data.into());
                rpc::notification("session.output", params)
            };
            tokio::pin!(run);
            let outcome = loop {
                tokio::select! {
                    biased;
                    Some(chunk) = chunks.recv() => {
                        // A client that went away misses its output; the command still ends.
                        outbox.send_text(notify(chunk)).await;
                    }
                    outcome = &mut run => break outcome,
                }
            };
            // Everything the backend sent is queued already: no chunk after the outcome.
            while let Ok(chunk) = chunks.try_recv() {
                outbox.send_text(notify(chunk)).await;
            }
            Ok(outcome?.to_json())
        }))
    }

    fn list(&self, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
        match params {
            None => {}
            Some(Value::Array(items)) if items.is_empty() => {}
            Some(params) => {
                by_name::<ListParams>(Some(params))?;
            }
        }
        let sessions = self.api.list(caller);
        let result = json!({"count": sessions.len(), "sessions": sessions});
        Ok(Box::pin(futures::future::ready(Ok(result))))
    }

    fn close(&self, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
        let CloseParams { session_id } = by_name(params)?;
        let (api, caller) = (self.api.clone(), caller.clone());
        Ok(Box::pin(async move {
            api.close(&caller, &session_id).await?;
            Ok(json!({"sessionId": session_id, "closed": true}))
        }))
    }

    fn run(&self, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
        let RunParams { language, code, timeout_ms } = by_name(params)?;
        let (api, caller) = (self.api.clone(), caller.clone());
        Ok(Box::pin(async move {
            Ok(api.run(&caller, language, code, timeout_ms.map(Duration::from_millis)).await?.to_json())
        }))
    }
}

impl From<ApiError> for RpcError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Sdk(error) => error.into(),
            ApiError::RateLimited(limited) => RpcError::limit_reached(limited.to_string()),
        }
    }
}

/// Deserializes by-name params; serde's message names the field and the expected type.
fn by_name<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
    match params {
        Some(Value::Object(object)) => {
            serde_json::from_value(Value::Object(object)).map_err(|e| RpcError::invalid_params(e.to_string()))
        }
        Some(_) => Err(by_name_only()),
        None => Err(RpcError::invalid_params("params are missing")),
    }
}

fn by_name_only() -> RpcError {
    RpcError::invalid_params("params must be an object (by-name); positional params are not supported")
}

fn internal(error: impl std::fmt::Display) -> RpcError {
    RpcError::new(rpc::INTERNAL_ERROR, error.to_string())
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}
