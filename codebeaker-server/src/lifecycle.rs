//! The methods of a session's life beyond commands: `session.pause`, `session.resume`,
//! `session.snapshot`, `session.fork`, `snapshot.list` and `snapshot.delete`.

use serde_json::Value;

use crate::api::{Api, Caller};
use crate::methods::{by_name, reply, Reply};
use crate::protocol::{
    SessionCreated, SessionForked, SessionParams, SessionPaused, SnapshotDeleteParams, SnapshotDeleted,
    SnapshotListParams,
};
use crate::rpc::{self, RpcError};

/// The method names.
pub(crate) const METHODS: [&str; 6] =
    ["session.pause", "session.resume", "session.snapshot", "session.fork", "snapshot.list", "snapshot.delete"];

/// Starts `method` (one of [`METHODS`]) for `caller`.
pub(crate) fn call(api: &Api, method: &str, params: Option<Value>, caller: &Caller) -> Result<Reply, RpcError> {
    let (api, caller) = (api.clone(), caller.clone());
    Ok(match method {
        "session.pause" | "session.resume" => {
            let SessionParams { session_id } = by_name(params)?;
            let pause = method == "session.pause";
            Box::pin(async move {
                let info = api.set_paused(&caller, &session_id, pause).await?;
                reply(&SessionPaused { session_id: info.session_id.to_string(), paused: pause })
            })
        }
        "session.snapshot" => {
            let SessionParams { session_id } = by_name(params)?;
            Box::pin(async move { reply(&api.snapshot(&caller, &session_id).await?) })
        }
        "session.fork" => {
            let SessionParams { session_id } = by_name(params)?;
            Box::pin(async move {
                let forked = api.fork(&caller, &session_id).await?;
                let session = SessionCreated::from(&forked.info);
                reply(&SessionForked { session, forked_from: session_id, state_reset: forked.state_reset })
            })
        }
        "snapshot.list" => {
            match params {
                None => {}
                Some(Value::Array(items)) if items.is_empty() => {}
                Some(params) => {
                    by_name::<SnapshotListParams>(Some(params))?;
                }
            }
            let result = reply(&api.snapshots(&caller));
            Box::pin(futures::future::ready(result))
        }
        "snapshot.delete" => {
            let SnapshotDeleteParams { snapshot_id } = by_name(params)?;
            Box::pin(async move {
                api.delete_snapshot(&caller, &snapshot_id).await?;
                reply(&SnapshotDeleted { snapshot_id, deleted: true })
            })
        }
        other => return Err(RpcError::new(rpc::METHOD_NOT_FOUND, format!("no method {other:?}"))),
    })
}
