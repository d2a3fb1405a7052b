//! Tenants over the real WebSocket: each token's sessions are its own. Another tenant's
//! session id answers `-32001` exactly like an unknown one, `session.list` shows only
//! your own, and the per-tenant cap stands beside the global one.
//!
//! Protocol mechanics only, so these run on the temp-dir test backend.

mod common;

use codebeaker_server::{ApiKeys, ServerConfig};
use common::{raw_http, tempdir_server, Client};
use serde_json::{json, Value};

const KEYS: &str = "# tenant token\nalice alice-token-0001\nbob bob-token-0002\n";

fn tenants_config(per_tenant: usize) -> ServerConfig {
    let mut config = ServerConfig { api_keys: ApiKeys::parse(KEYS).unwrap(), ..ServerConfig::ephemeral() };
    config.manager.policy.max_sessions_per_tenant = Some(per_tenant);
    config
}

async fn connect_as(url: &str, token: &str) -> Client {
    Client::connect(&format!("{url}?token={token}")).await
}

/// The error of a request that must fail, with every occurrence of `id` blanked out.
async fn error_without(c: &mut Client, method: &str, params: Value, id: &str) -> (i64, String) {
    let (code, error) = c.call_err(method, params).await;
    (code, error.to_string().replace(id, "ID"))
}

#[tokio::test]
async fn another_tenants_session_looks_exactly_like_an_unknown_one() {
    let (server, backend) = tempdir_server(tenants_config(100)).await;
    let url = server.ws_url();
    let mut alice = connect_as(&url, "alice-token-0001").await;
    let mut bob = Client::connect(&format!("{url}?token=bob%2Dtoken%2D0002")).await;
    let mine = alice.create(json!({"language": "deno"})).await;
    let theirs = bob.create(json!({"language": "deno"})).await;
    let unknown = "00000000-0000-4000-8000-000000000000";

    for (method, params) in [
        ("session.execute", json!({"sessionId": "SID", "command": {"type": "execute_code", "code": "print x"}})),
        ("session.execute", json!({"sessionId": "SID", "command": {"type": "read_file", "path": "a"}})),
        ("session.close", json!({"sessionId": "SID"})),
    ] {
        let with = |id: &str| serde_json::from_str::<Value>(&params.to_string().replace("SID", id)).unwrap();
        let foreign = error_without(&mut bob, method, with(&mine), &mine).await;
        let missing = error_without(&mut bob, method, with(unknown), unknown).await;
        assert_eq!(foreign.0, -32001, "{method}: {}", foreign.1);
        assert_eq!(foreign, missing, "{method}: another tenant's session must look unknown");
    }
    let listed = bob.call("session.list", json!({})).await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["sessions"][0]["sessionId"], theirs.as_str(), "{listed}");
    let listed = alice.call("session.list", json!({})).await;
    assert_eq!((listed["count"].clone(), listed["sessions"][0]["sessionId"].clone()), (json!(1), json!(mine)));
    // Alice's session survived Bob's attempts and is still hers.
    let run = alice.execute(&mine, json!({"type": "execute_code", "code": "print still mine"})).await;
    assert_eq!(run["result"], "still mine", "{run}");
    assert_eq!(backend.closes(), 0);
    alice.close().await;
    bob.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn tenants_need_their_token_and_have_their_own_cap() {
    let (server, _backend) = tempdir_server(tenants_config(2)).await;
    let url = server.ws_url();
    let upgrade = |token: &str| {
        format!(
            "GET /ws/jsonrpc?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    for token in ["", "alice-token-000", "alice-token-00011", "ALICE-TOKEN-0001"] {
        let (status, body) = raw_http(server.local_addr(), &upgrade(token)).await;
        assert_eq!(status, 401, "{token:?}: {body}");
    }
    let mut alice = connect_as(&url, "alice-token-0001").await;
    let mut bob = connect_as(&url, "bob-token-0002").await;
    alice.create(json!({"language": "deno"})).await;
    alice.create(json!({"language": "deno"})).await;
    let (code, error) = alice.call_err("session.create", json!({"language": "deno"})).await;
    assert_eq!(code, -32002, "{error}");
    assert!(error["data"].as_str().unwrap_or_default().contains('2'), "{error}");
    // Bob's cap is his own.
    bob.create(json!({"language": "deno"})).await;
    bob.create(json!({"language": "deno"})).await;
    alice.close().await;
    bob.close().await;
    server.shutdown().await;
}
