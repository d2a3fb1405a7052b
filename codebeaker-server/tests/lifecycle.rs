//! `session.snapshot`, `snapshot.list`, `snapshot.delete`, `session.create` with
//! `fromSnapshot`, `session.fork`, and `session.pause` where it is not offered, over the
//! WebSocket on the temp-dir test backend, each reply checked against its schema.

mod common;

use codebeaker::snapshot::SnapshotStore;
use codebeaker_server::ServerConfig;
use common::{tempdir_server, Client};
use serde_json::{json, Value};

fn schema(file: &str) -> jsonschema::Validator {
    let path = format!("{}/../docs/schema/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn check(file: &str, value: &Value) {
    let validator = schema(file);
    let errors: Vec<String> = validator.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{file}: {errors:?} in {value}");
}

#[tokio::test]
async fn snapshots_forks_and_pause_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::ephemeral();
    config.manager.snapshots = Some(SnapshotStore::open(dir.path(), 10 << 20).unwrap());
    let (handle, _) = tempdir_server(config).await;
    let mut c = Client::connect(&handle.ws_url()).await;
    let session = c.create(json!({"language": "deno"})).await;
    let write = |content: &str| json!({"type": "write_file", "path": "kept.txt", "content": content});
    c.execute(&session, write("first")).await;

    let taken = c.call("session.snapshot", json!({"sessionId": session})).await;
    check("session.snapshot.result.json", &taken);
    let snapshot = taken["snapshotId"].as_str().expect("snapshotId").to_owned();
    assert!(taken["bytes"].as_u64().unwrap() > 0, "{taken}");
    c.execute(&session, write("second")).await;
    let listed = c.call("snapshot.list", json!({})).await;
    check("snapshot.list.result.json", &listed);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let created = c.call("session.create", json!({"language": "deno", "fromSnapshot": snapshot})).await;
    let restored = created["sessionId"].as_str().unwrap().to_owned();
    let read = c.execute(&restored, json!({"type": "read_file", "path": "kept.txt"})).await;
    assert_eq!(read["result"]["content"], "first", "{read}");

    let forked = c.call("session.fork", json!({"sessionId": session})).await;
    check("session.fork.result.json", &forked);
    assert_eq!((forked["forkedFrom"].as_str(), forked["stateReset"].as_bool()), (Some(session.as_str()), Some(true)));
    let fork = forked["sessionId"].as_str().unwrap();
    let read = c.execute(fork, json!({"type": "read_file", "path": "kept.txt"})).await;
    assert_eq!(read["result"]["content"], "second", "{read}");

    // Not offered by this backend: a clear capability error.
    let (code, error) = c.call_err("session.pause", json!({"sessionId": session})).await;
    assert_eq!(code, -32602, "{error}");
    assert!(error["data"].as_str().unwrap_or_default().contains("pausing"), "{error}");
    let (code, _) = c.call_err("session.create", json!({"language": "deno", "fromSnapshot": "0".repeat(32)})).await;
    assert_eq!(code, -32602);

    let deleted = c.call("snapshot.delete", json!({"snapshotId": snapshot})).await;
    check("snapshot.delete.result.json", &deleted);
    assert_eq!(c.call("snapshot.list", json!({})).await, json!([]));
    handle.shutdown().await;
}
