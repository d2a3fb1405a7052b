//! A client cannot grant a Deno session the host: `allowRead`/`allowWrite` outside the
//! session's workspace (and the operator's grantable paths) is refused at
//! `session.create` with `-32602`, over the real WebSocket and the real Deno backend.

mod common;

use codebeaker_server::ServerConfig;
use common::{real_server, Client};
use serde_json::json;

#[tokio::test]
async fn deno_sessions_cannot_be_granted_the_host() {
    let server = real_server("grants", ServerConfig::ephemeral()).await;
    server.require_deno();
    let mut c = Client::connect(&server.handle.ws_url()).await;
    for permissions in [
        json!({"allowRead": ["/"]}),
        json!({"allowWrite": ["/"]}),
        json!({"allowRead": ["/etc"]}),
        json!({"allowWrite": ["/tmp"]}),
        json!({"allowRead": ["/workspace/../.."]}),
    ] {
        let (code, error) =
            c.call_err("session.create", json!({"language": "deno", "permissions": permissions.clone()})).await;
        assert_eq!(code, -32602, "{permissions}: {error}");
    }
    let listed = c.call("session.list", json!({})).await;
    assert_eq!(listed["count"], 0, "{listed}");
    // Paths inside the session's own workspace may be granted.
    c.create(
        json!({"language": "deno", "permissions": {"allowRead": ["/workspace"], "allowWrite": ["/workspace/out"]}}),
    )
    .await;
    c.close().await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn the_operators_grantable_paths_can_be_granted_and_nothing_else() {
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("hello.txt"), "from the host").unwrap();
    let mut config = ServerConfig::ephemeral();
    config.manager.policy.backends.insert("deno".into(), json!({"grantable-paths": [shared.path()]}));
    let server = real_server("grantable", config).await;
    server.require_deno();
    let mut c = Client::connect(&server.handle.ws_url()).await;
    let granted = shared.path().to_str().unwrap();
    let session = c.create(json!({"language": "deno", "permissions": {"allowRead": [granted]}})).await;
    let file = shared.path().join("hello.txt");
    let code = format!("console.log(await Deno.readTextFile({:?}))", file.to_str().unwrap());
    let read = c.execute(&session, json!({"type": "execute_code", "code": code})).await;
    assert_eq!(read["success"], true, "{read}");
    assert!(read["result"].as_str().unwrap_or_default().contains("from the host"), "{read}");
    let (code, error) =
        c.call_err("session.create", json!({"language": "deno", "permissions": {"allowRead": ["/etc"]}})).await;
    assert_eq!(code, -32602, "{error}");
    assert!(error["data"].as_str().unwrap_or_default().contains("/etc"), "{error}");
    c.close().await;
    server.handle.shutdown().await;
}
