//! The `process.*` methods, and the forwarding of attached processes' output to a
//! connection as `process.output` and `process.exit` notifications.
//!
//! A connection is attached to a process by `process.start` (the connection that
//! started it) and by `process.attach` (any connection of the session's tenant, e.g.
//! after a reconnect). Each attachment is a task that reads the process's retained
//! output from an offset and sends it on; it starts only once the method's response is
//! queued, so a client always reads the `pid` before that process's first notification.
//! A connection that reads slowly is not closed for it: its attachments wait for the
//! connection's outbound queue to drain, fall behind, and tell it how many bytes the
//! retention discarded meanwhile (`dropped`). Attachments end with the process's exit or
//! the connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codebeaker::{ProcessAttachment, ProcessEvent};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::api::{Api, Caller, ProcessAction};
use crate::methods::{by_name, reply, Reply};
use crate::outbox::Outbox;
use crate::protocol::{
    ProcessAttachParams, ProcessAttached, ProcessDone, ProcessExitNotification, ProcessListParams,
    ProcessOutputNotification, ProcessParams, ProcessResizeParams, ProcessSignalParams, ProcessStartParams,
    ProcessStarted, ProcessWaitParams, ProcessWriteParams,
};
use crate::rpc::{self, RpcError};

/// Most processes one connection may be attached to at once.
pub const MAX_ATTACHMENTS: usize = 1024;

/// The `process.*` method names.
pub(crate) const METHODS: [&str; 8] = [
    "process.start",
    "process.list",
    "process.attach",
    "process.write",
    "process.closeStdin",
    "process.resize",
    "process.signal",
    "process.wait",
];

/// Fires once the response to the request being handled is queued (or the request
/// will get none).
pub(crate) type Answered = oneshot::Receiver<()>;

/// What one connection offers a request beside its params: where its notifications go,
/// the processes it is attached to, and when its response is out.
pub(crate) struct Peer {
    /// The connection's outbound queue.
    pub outbox: Outbox,
    /// The connection's attachments.
    pub attachments: Attachments,
    /// When this request's response is queued.
    pub answered: Answered,
    /// Its forwarding to other nodes (a client connection of a cluster node).
    pub forwarder: Option<Arc<crate::cluster::link::Forwarder>>,
}

/// The processes one connection is attached to: a forwarding task each. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Attachments {
    tasks: Arc<Mutex<HashMap<(String, u32), AbortHandle>>>,
}

impl Attachments {
    /// Forwards `attachment` of process `pid` to `outbox` once `answered` fires,
    /// replacing an earlier attachment of this connection to the same process (so no
    /// byte comes twice). `Err` past [`MAX_ATTACHMENTS`].
    fn forward(
        &self,
        session_id: String,
        pid: u32,
        attachment: ProcessAttachment,
        outbox: Outbox,
        answered: Answered,
    ) -> Result<(), RpcError> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|_, task| !task.is_finished());
        let key = (session_id.clone(), pid);
        if let Some(earlier) = tasks.remove(&key) {
            earlier.abort();
        } else if tasks.len() >= MAX_ATTACHMENTS {
            return Err(RpcError::limit_reached(format!(
                "this connection is attached to {MAX_ATTACHMENTS} processes, the most it may be; \
                 attachments end with their process's exit"
            )));
        }
        let task = tokio::spawn(forward(session_id, pid, attachment, outbox, answered));
        tasks.insert(key, task.abort_handle());
        Ok(())
    }

    /// Ends every attachment (the connection is gone).
    pub(crate) fn end_all(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks.into_values() {
            task.abort();
        }
    }
}

/// Sends `attachment`'s events as notifications until the exit, waiting for the
/// connection to drain rather than overflowing it.
async fn forward(session_id: String, pid: u32, mut attachment: ProcessAttachment, outbox: Outbox, answered: Answered) {
    // The response (with the pid) goes first; a request answered with nothing fires too.
    let _ = answered.await;
    let high_water = outbox.max() / 2;
    while let Some(event) = attachment.next().await {
        if outbox.queued() > high_water {
            tokio::select! {
                () = outbox.drained(high_water) => {}
                () = outbox.overflowed() => return,
            }
        }
        let text = match event {
            ProcessEvent::Output(output) => {
                rpc::notification("process.output", &ProcessOutputNotification::new(&session_id, pid, output))
            }
            ProcessEvent::Exit(exit) => rpc::notification(
                "process.exit",
                &ProcessExitNotification { session_id: session_id.clone(), pid, exit },
            ),
        };
        if !outbox.send_text(text).await {
            return;
        }
    }
}

/// A reply that does `action` to a running process, audited as `method`.
fn control(
    api: Api,
    caller: Caller,
    method: &'static str,
    session_id: String,
    pid: u32,
    action: ProcessAction,
) -> Reply {
    Box::pin(async move {
        api.control_process(&caller, method, &session_id, pid, action).await?;
        reply(&ProcessDone::default())
    })
}

/// Starts `method` (one of [`METHODS`]) for `caller`.
pub(crate) fn call(
    api: &Api,
    method: &str,
    params: Option<Value>,
    caller: &Caller,
    peer: Peer,
) -> Result<Reply, RpcError> {
    let (api, caller) = (api.clone(), caller.clone());
    Ok(match method {
        "process.start" => {
            let params: ProcessStartParams = by_name(params)?;
            Box::pin(async move {
                let info = api.start_process(&caller, &params.session_id, params.spec()).await?;
                // The starting connection is attached from the first byte (at most
                // MAX_ATTACHMENTS: past it, the process runs and process.attach reads it).
                let attached =
                    api.attach_process(&caller, &params.session_id, info.pid, 0).await.map_err(RpcError::from);
                let Peer { outbox, attachments, answered, .. } = peer;
                let forwarded =
                    attached.and_then(|a| attachments.forward(params.session_id, info.pid, a, outbox, answered));
                if let Err(error) = forwarded {
                    tracing::debug!(pid = info.pid, ?error, "a started process is not forwarded to its connection");
                }
                reply(&ProcessStarted { pid: info.pid })
            })
        }
        "process.list" => {
            let ProcessListParams { session_id } = by_name(params)?;
            Box::pin(async move { reply(&api.list_processes(&caller, &session_id)?) })
        }
        "process.attach" => {
            let ProcessAttachParams { session_id, pid, from_offset } = by_name(params)?;
            Box::pin(async move {
                let attachment = api.attach_process(&caller, &session_id, pid, from_offset).await?;
                let dropped = attachment.dropped_at_attach();
                let Peer { outbox, attachments, answered, .. } = peer;
                attachments.forward(session_id, pid, attachment, outbox, answered)?;
                reply(&ProcessAttached { pid, dropped })
            })
        }
        "process.write" => {
            let ProcessWriteParams { session_id, pid, data } = by_name(params)?;
            control(api, caller, "process.write", session_id, pid, ProcessAction::Write(data.into_bytes()))
        }
        "process.closeStdin" => {
            let ProcessParams { session_id, pid } = by_name(params)?;
            control(api, caller, "process.closeStdin", session_id, pid, ProcessAction::CloseStdin)
        }
        "process.resize" => {
            let ProcessResizeParams { session_id, pid, cols, rows } = by_name(params)?;
            control(
                api,
                caller,
                "process.resize",
                session_id,
                pid,
                ProcessAction::Resize(codebeaker::PtySize { cols, rows }),
            )
        }
        "process.signal" => {
            let ProcessSignalParams { session_id, pid, signal } = by_name(params)?;
            control(api, caller, "process.signal", session_id, pid, ProcessAction::Signal(signal))
        }
        "process.wait" => {
            let ProcessWaitParams { session_id, pid, timeout_ms } = by_name(params)?;
            let timeout = timeout_ms.map_or(Duration::MAX, Duration::from_millis);
            Box::pin(async move { reply(&api.wait_process(&caller, &session_id, pid, timeout).await?) })
        }
        other => return Err(RpcError::new(rpc::METHOD_NOT_FOUND, format!("no method {other:?}"))),
    })
}
