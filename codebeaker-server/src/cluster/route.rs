//! Which node serves a client's request: the one decision of a cluster node's methods.
//!
//! - A request about a session (`sessionId`) is served here when this node holds the
//!   session, else forwarded to the node that does (found in Redis, then remembered).
//! - `session.create` and `execution.run` are placed ([`Cluster::place`]); a session
//!   made from a snapshot goes to the node whose disk holds the snapshot, and so does
//!   `snapshot.delete`.
//! - `session.list` and `snapshot.list` ask every live node and answer the union.
//!
//! Requests whose params cannot be read are served here: the local method answers them
//! with the usual `-32602`.

use serde_json::Value;

use super::link::{Forwarder, Target};
use super::Cluster;
use crate::api::Caller;
use crate::methods::{Methods, Reply};
use crate::processes::{self, Peer};
use crate::rpc::{Request, RpcError};

/// Placements tried for one session before giving up (each avoids the nodes found
/// unreachable by the ones before).
const PLACEMENT_ATTEMPTS: usize = 3;

/// Methods about one session, named by their `sessionId` param (the `process.*` ones
/// too).
const SESSION_METHODS: [&str; 6] =
    ["session.execute", "session.close", "session.pause", "session.resume", "session.snapshot", "session.fork"];

/// Serves `request` here or on the node it belongs to.
pub(crate) fn route(
    methods: &Methods,
    forwarder: &std::sync::Arc<Forwarder>,
    request: Request,
    caller: &Caller,
    peer: Peer,
) -> Reply {
    let param = |name: &str| request.params.as_ref().and_then(|p| p.get(name)).cloned();
    let text = |name: &str| param(name).and_then(|value| value.as_str().map(str::to_owned));
    let cluster = forwarder.cluster().clone();
    match request.method.as_str() {
        method if SESSION_METHODS.contains(&method) || processes::METHODS.contains(&method) => {
            match text("sessionId") {
                Some(id) if methods.api().manager().info(&id).is_err() => {
                    forwarder.forward(request, Target::Session(id), Some(peer.answered))
                }
                _ => methods.dispatch(request, caller, peer),
            }
        }
        "session.create" | "execution.run" => {
            let snapshot = text("fromSnapshot");
            // The language and backend as session.create reads them (`deno` included).
            let wanted = serde_json::json!({"language": param("language"), "backend": param("backend")});
            let Ok(config) = serde_json::from_value::<codebeaker::SessionConfig>(wanted) else {
                return methods.dispatch(request, caller, peer);
            };
            let (language, backend) = (config.language, config.backend);
            let (methods, caller, forwarder) = (methods.clone(), caller.clone(), forwarder.clone());
            Box::pin(async move {
                let mut answered = Some(peer.answered);
                // A node found unreachable is avoided by the next placement: try another.
                for _ in 0..PLACEMENT_ATTEMPTS {
                    let node = match &snapshot {
                        Some(id) => cluster.snapshot_node(id).await?,
                        None => Some(cluster.place(language, backend.as_deref()).await?),
                    };
                    match node {
                        Some(url) if url != cluster.node_url() => {
                            let _placing = cluster.placing(&url);
                            let sent = forwarder.forward(request.clone(), Target::Node(url.clone()), answered.take());
                            match sent.await {
                                Err(_) if snapshot.is_none() && cluster.avoids(&url) => continue,
                                answer => return answer,
                            }
                        }
                        _ => {
                            // Counted as this node's load until it is (concurrent placements).
                            let _placing = cluster.placing(cluster.node_url());
                            let answered = answered.unwrap_or_else(|| tokio::sync::oneshot::channel().1);
                            let peer = Peer { answered, ..peer };
                            return methods.dispatch(request, &caller, peer).await;
                        }
                    }
                }
                Err(RpcError::from(codebeaker::Error::backend_unavailable(
                    "cluster",
                    format!(
                        "no node of the cluster could be reached to create the session ({PLACEMENT_ATTEMPTS} tried)"
                    ),
                )))
            })
        }
        "snapshot.delete" => match text("snapshotId") {
            Some(id) => {
                let (methods, caller, forwarder) = (methods.clone(), caller.clone(), forwarder.clone());
                Box::pin(async move {
                    match cluster.snapshot_node(&id).await? {
                        Some(url) => forwarder.forward(request, Target::Node(url), Some(peer.answered)).await,
                        None => methods.dispatch(request, &caller, peer).await,
                    }
                })
            }
            None => methods.dispatch(request, caller, peer),
        },
        "session.list" | "snapshot.list" => {
            let (methods, caller, forwarder) = (methods.clone(), caller.clone(), forwarder.clone());
            Box::pin(everywhere(cluster, methods, forwarder, request, caller, peer))
        }
        _ => methods.dispatch(request, caller, peer),
    }
}

/// Asks every live node (this one included) and answers the union of their lists.
async fn everywhere(
    cluster: Cluster,
    methods: Methods,
    forwarder: std::sync::Arc<Forwarder>,
    request: Request,
    caller: Caller,
    peer: Peer,
) -> Result<Value, RpcError> {
    cluster.check_redis()?;
    let key = if request.method == "session.list" { "sessions" } else { "snapshots" };
    let others: Vec<String> =
        cluster.table().live().map(|node| node.url.clone()).filter(|url| url != cluster.node_url()).collect();
    let remote: Vec<Reply> =
        others.iter().map(|url| forwarder.forward(request.clone(), Target::Node(url.clone()), None)).collect();
    let mut answer = methods.dispatch(request, &caller, peer).await?;
    let mut items = match answer.get_mut(key).map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    for (url, reply) in others.iter().zip(futures::future::join_all(remote).await) {
        match reply {
            Ok(mut part) => {
                if let Some(Value::Array(more)) = part.get_mut(key).map(Value::take) {
                    items.extend(more);
                }
            }
            Err(error) => {
                // A node that cannot answer is left out of the list, not the whole list.
                tracing::warn!(node = %url, ?error, "a cluster node did not answer {}", key);
            }
        }
    }
    if let Some(object) = answer.as_object_mut() {
        if object.contains_key("count") {
            object.insert("count".into(), Value::from(items.len()));
        }
        object.insert(key.into(), Value::Array(items));
    }
    Ok(answer)
}
