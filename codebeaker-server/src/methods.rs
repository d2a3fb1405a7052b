//! The methods of the protocol, dispatched by name onto the typed [`Api`] (the
//! `process.*` ones by [`crate::processes`]).
//!
//! [`Methods::call`] is split in two on purpose. Its synchronous part runs in the
//! connection's read loop, in arrival order: it checks the params and, for
//! `session.execute`, takes the session's queue ticket, so commands sent back to back on
//! one session run in the order they were sent even though each request is then served
//! by a task of its own. The returned future does the waiting.

use std::sync::Arc;
use std::time::Duration;

use codebeaker::{OutputSink, SessionConfig};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::{Api, ApiError, Caller};
use crate::cluster;
use crate::lifecycle;
use crate::metrics::{Metrics, RefusalKind};
use crate::outbox::Outbox;
use crate::processes::{self, Peer};
use crate::protocol::{
    CloseParams, ExecuteParams, ListParams, OutputNotification, RunParams, SessionClosed, SessionCreated, SessionList,
};
use crate::rpc::{self, Request, RpcError, METHOD_NOT_FOUND};

/// What a method eventually answers.
pub(crate) type Reply = BoxFuture<'static, Result<Value, RpcError>>;

/// The method table of one server. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Methods {
    api: Api,
    metrics: Arc<Metrics>,
}

impl Methods {
    pub(crate) fn new(api: Api, metrics: Arc<Metrics>) -> Self {
        Methods { api, metrics }
    }

    /// Starts handling `request` for `caller` (see the module docs); `peer` is the
    /// connection it came on: its outbox receives the `session.output` notifications of
    /// a streamed command and the output of the processes it attaches to.
    pub(crate) fn call(&self, request: Request, caller: &Caller, peer: Peer) -> Reply {
        // Every request counts against the rate, each one of a batch too; a link's were
        // counted by the node the client reached.
        let metrics = self.metrics.clone();
        let reply = match peer.forwarder.clone() {
            Some(forwarder) if self.api.rate_limiter().is_some_and(|rate| rate.clustered()) => {
                let (api, counted, method) = (self.api.clone(), caller.clone(), request.method.clone());
                let check =
                    Box::pin(async move { api.admit_everywhere(&counted, &method).await.map_err(RpcError::from) });
                let (methods, caller, route) = (self.clone(), caller.clone(), forwarder.clone());
                let start = Box::new(move || cluster::route::route(&methods, &route, request, &caller, peer));
                forwarder.admit(check, start)
            }
            forwarder => {
                if !caller.forwarded {
                    if let Err(limited) = self.api.admit(caller, &request.method) {
                        return Box::pin(futures::future::ready(Err(limited.into())));
                    }
                }
                match forwarder {
                    Some(forwarder) => cluster::route::route(self, &forwarder, request, caller, peer),
                    None => self.dispatch(request, caller, peer),
                }
            }
        };
        // Requests refused at a limit (sessions, per-tenant sessions) are counted here.
        Box::pin(async move {
            let answer = reply.await;
            if answer.as_ref().is_err_and(|error| error.code == rpc::LIMIT_REACHED) {
                metrics.refused(RefusalKind::Limit);
            }
            answer
        })
    }

    /// The typed operations behind the methods.
    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    /// Handles `request` on this server (see [`Methods::call`], which may send it to
    /// another node of a cluster instead).
    pub(crate) fn dispatch(&self, request: Request, caller: &Caller, peer: Peer) -> Reply {
        let started = match request.method.as_str() {
            "session.create" => self.create(request.params, caller),
            "session.execute" => self.execute(request.params, request.id, caller, &peer.outbox),
            "session.list" => self.list(request.params, caller),
            "session.close" => self.close(request.params, caller),
            "execution.run" => self.run(request.params, caller),
            method if processes::METHODS.contains(&method) => {
                processes::call(&self.api, method, request.params, caller, peer)
            }
            method if lifecycle::METHODS.contains(&method) => {
                lifecycle::call(&self.api, method, request.params, caller)
            }
            other => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!(
                    "no method {:?}; the methods are session.create, session.execute, session.list, \
                     session.close, execution.run, {} and {}",
                    other.chars().take(64).collect::<String>(),
                    lifecycle::METHODS.join(", "),
                    processes::METHODS.join(", ")
                ),
            )),
        };
        started.unwrap_or_else(|error| Box::pin(futures::future::ready(Err(error))))
    }

    fn create(&self, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
        let object = match params {
            Some(Value::Object(object)) => object,
            Some(_) => return Err(by_name_only()),
            None => return Err(RpcError::invalid_params("session.create needs params with at least a language")),
        };
        // Without `defaultTimeoutMs` the manager applies the operator's default.
        let config: SessionConfig =
            serde_json::from_value(Value::Object(object)).map_err(|e| RpcError::invalid_params(e.to_string()))?;
        let (api, caller) = (self.api.clone(), caller.clone());
        Ok(Box::pin(async move { reply(&SessionCreated::from(&api.create(&caller, config).await?)) }))
    }

    fn execute(
        &self,
        params: Option<Value>,
        id: Option<Value>,
        caller: &Caller,
        outbox: &Outbox,
    ) -> Result<Reply, RpcError> {
        let asked = |name: &str| params.as_ref().and_then(|p| p.get(name));
        let kinds = asked("errorKinds").and_then(Value::as_bool).unwrap_or(false);
        let answer = move |outcome: codebeaker::CommandOutcome| match kinds {
            true => reply(&outcome.with_kinds()),
            false => reply(&outcome),
        };
        // A path out of the workspace fails the command (`success: false`), as the
        // protocol has it, in a session the caller may see; every other defect of the
        // params is -32602 below.
        if let Some(refused) = asked("command").and_then(codebeaker::command::refused_path) {
            let session_id = asked("sessionId").and_then(Value::as_str).unwrap_or_default();
            self.api.manager().info_as(caller.tenant.as_deref(), session_id)?;
            let outcome = codebeaker::CommandOutcome::from_result(Err(refused), 0);
            return Ok(Box::pin(futures::future::ready(answer(outcome))));
        }
        let params: ExecuteParams = by_name(params)?;
        let timeout = params.timeout_ms.map(Duration::from_millis);
        // A notification has no id for its output to refer to, so it is not streamed.
        let streaming = params.stream.then_some(id).flatten();
        let Some(request_id) = streaming else {
            let run = self.api.execute(caller, &params.session_id, params.command, timeout, None);
            return Ok(Box::pin(async move { answer(run.await?) }));
        };
        let (sink, mut chunks) = OutputSink::channel();
        // Dropping this reply gives up a command still waiting for its turn; one already
        // running goes on to its end (the manager runs it in a task of its own).
        let run = self.api.execute(caller, &params.session_id, params.command, timeout, Some(sink));
        let outbox = outbox.clone();
        let session_id = params.session_id;
        Ok(Box::pin(async move {
            let notify =
                |chunk| rpc::notification("session.output", &OutputNotification::new(&session_id, &request_id, chunk));
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
            answer(outcome?)
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
        let result = reply(&SessionList::from(self.api.list(caller)));
        Ok(Box::pin(futures::future::ready(result)))
    }

    fn close(&self, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
        let CloseParams { session_id } = by_name(params)?;
        let (api, caller) = (self.api.clone(), caller.clone());
        Ok(Box::pin(async move {
            api.close(&caller, &session_id).await?;
            reply(&SessionClosed::new(session_id))
        }))
    }

    fn run(&self, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
        let RunParams { language, backend, code, timeout_ms } = by_name(params)?;
        // The same rules as session.create: `deno` is typescript on the deno backend.
        let config: SessionConfig = serde_json::from_value(json!({"language": language, "backend": backend}))
            .map_err(|e| RpcError::invalid_params(e.to_string()))?;
        let (api, caller) = (self.api.clone(), caller.clone());
        Ok(Box::pin(
            async move { reply(&api.run(&caller, config, code, timeout_ms.map(Duration::from_millis)).await?) },
        ))
    }
}

impl From<ApiError> for RpcError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Sdk(error) => error.into(),
            ApiError::RateLimited(limited) => RpcError::rate_limited(limited.to_string(), limited.retry_after),
        }
    }
}

/// Deserializes by-name params; serde's message names the field and the expected type.
pub(crate) fn by_name<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
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

/// A method's typed reply as the response's `result`.
pub(crate) fn reply(result: &impl Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(result).map_err(|error| RpcError::new(rpc::INTERNAL_ERROR, error.to_string()))
}
