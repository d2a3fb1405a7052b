//! `session.fork` of a Deno session over the WebSocket, on the real server binary with its
//! process-isolated Deno backend: the fork is live (`stateReset: false`, capability
//! `liveFork`), keeps the interpreter's globals, then diverges; forks count toward the
//! session cap, so a fork bomb meets `-32002`.

mod common;
mod mcp_support;

use common::Client;
use mcp_support::Spawned;
use serde_json::{json, Value};

async fn printed(c: &mut Client, session: &str, code: &str) -> String {
    let ran = c.execute(session, json!({"type": "execute_code", "code": code})).await;
    assert_eq!(ran["success"], true, "{ran}");
    ran["result"].as_str().unwrap_or_default().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deno_fork_keeps_the_interpreter_then_diverges_and_forks_meet_the_cap() {
    let server = Spawned::start(&["--max-sessions", "4"]).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let created = c.call("session.create", json!({"language": "typescript"})).await;
    assert_eq!(created["capabilities"]["liveFork"], true, "{created}");
    let session = created["sessionId"].as_str().unwrap().to_owned();
    printed(&mut c, &session, "globalThis.x = 41").await;

    let forked: Value = c.call("session.fork", json!({"sessionId": session})).await;
    assert_eq!((forked["forkedFrom"].as_str(), forked["stateReset"].as_bool()), (Some(session.as_str()), Some(false)));
    let fork = forked["sessionId"].as_str().unwrap().to_owned();
    assert_ne!(fork, session);
    assert_eq!(printed(&mut c, &fork, "console.log(++globalThis.x)").await, "42");
    assert_eq!(printed(&mut c, &session, "console.log(globalThis.x)").await, "41");

    // A fork bomb: every fork is a session, and the cap of 4 holds.
    let mut refused = None;
    for _ in 0..4 {
        let answer = c.request("session.fork", json!({"sessionId": session})).await;
        if let Some(error) = answer.get("error") {
            refused = Some(error.clone());
            break;
        }
    }
    let refused = refused.expect("the cap refuses a fork");
    assert_eq!(refused["code"], -32002, "{refused}");
    assert_eq!(refused["kind"], "limit_reached", "{refused}");
    let listed = c.call("session.list", json!({})).await;
    assert_eq!(listed["count"], 4, "{listed}");
    // The original is unharmed.
    assert_eq!(printed(&mut c, &session, "console.log(globalThis.x + 1)").await, "42");
    server.stop().await;
}
