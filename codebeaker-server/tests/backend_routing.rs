//! Language apart from backend, over the real WebSocket: a session names a language and,
//! optionally, a backend; otherwise the operator's routing table picks one. The old
//! language `deno` still works end to end on the real Deno backend, and a backend that
//! does not run the language is a clear `-32602`.

mod common;

use std::sync::Arc;

use codebeaker::testing::TempDirBackend;
use codebeaker::{Backend, Language, Routes};
use codebeaker_deno::{DenoBackend, DenoConfig};
use codebeaker_server::{Backends, Server, ServerConfig};
use common::Client;
use serde_json::json;

fn deno() -> Arc<dyn Backend> {
    DenoBackend::new(DenoConfig { pool_size: 1, ..DenoConfig::default() }).expect("deno backend")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_language_deno_is_typescript_on_the_deno_backend() {
    let backends = Backends::from_backends(vec![deno()]);
    let server = Server::bind(ServerConfig::ephemeral(), backends).await.expect("bind").spawn();
    let mut c = Client::connect(&server.ws_url()).await;
    // An old client: `deno` as the language, `permissions` at the top level.
    let created =
        c.call("session.create", json!({"language": "deno", "permissions": {"allowEnv": ["GREETING"]}})).await;
    assert_eq!((created["language"].as_str(), created["backend"].as_str()), (Some("typescript"), Some("deno")));
    assert_eq!(created["config"]["backendOptions"]["deno"]["permissions"]["allowEnv"], json!(["GREETING"]));
    let id = created["sessionId"].as_str().unwrap().to_owned();
    let code = "Deno.env.set('GREETING', 'hi'); const n: number = 6 * 7; console.log(Deno.env.get('GREETING'), n)";
    let ran = c.execute(&id, json!({"type": "execute_code", "code": code})).await;
    assert_eq!((ran["success"].as_bool(), ran["result"].as_str()), (Some(true), Some("hi 42")), "{ran}");
    let listed = c.call("session.list", json!({})).await;
    assert_eq!(listed["sessions"][0]["backend"], "deno", "{listed}");
    // Today's shape: a language, the backend's options under its name.
    let today = c
        .call(
            "session.create",
            json!({"language": "javascript", "backend": "deno", "backendOptions": {"deno": {"permissions": {}}}}),
        )
        .await;
    assert_eq!((today["language"].as_str(), today["backend"].as_str()), (Some("javascript"), Some("deno")));
    // The one-shot run reads `deno` the same way.
    let run = c.call("execution.run", json!({"language": "deno", "code": "console.log(1 as number + 1)"})).await;
    assert_eq!(run["result"]["stdout"], "2\n", "{run}");
    c.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_does_not_run_the_language_is_a_clear_error() {
    let backends = Backends::from_backends(vec![deno()]);
    let server = Server::bind(ServerConfig::ephemeral(), backends).await.expect("bind").spawn();
    let mut c = Client::connect(&server.ws_url()).await;
    let (code, error) = c.call_err("session.create", json!({"language": "typescript", "backend": "docker"})).await;
    let data = error["data"].as_str().unwrap_or_default();
    assert_eq!(code, -32602, "{error}");
    assert!(data.contains("\"docker\" is not enabled") && data.contains("typescript: deno"), "{error}");
    let (code, error) = c.call_err("session.create", json!({"language": "go", "backend": "deno"})).await;
    let data = error["data"].as_str().unwrap_or_default();
    assert_eq!(code, -32602, "{error}");
    assert!(data.contains("deno does not run go") && data.contains("javascript, typescript"), "{error}");
    // `deno` names its backend: another backend beside it is a contradiction.
    let (code, error) = c.call_err("session.create", json!({"language": "deno", "backend": "tempdir"})).await;
    assert_eq!(code, -32602, "{error}");
    // Options for a backend the session does not run on are refused, not ignored.
    let (code, error) =
        c.call_err("session.create", json!({"language": "typescript", "dockerImage": "python:3"})).await;
    assert_eq!(code, -32602, "{error}");
    assert!(error["data"].as_str().unwrap_or_default().contains("backendOptions.docker"), "{error}");
    // And a Deno option the backend does not know is refused by the backend.
    let (code, error) = c
        .call_err("session.create", json!({"language": "typescript", "backendOptions": {"deno": {"allowAll": true}}}))
        .await;
    assert_eq!(code, -32602, "{error}");
    assert!(error["data"].as_str().unwrap_or_default().contains("allowAll"), "{error}");
    assert_eq!(c.call("session.list", json!({})).await["count"], 0);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routing_table_picks_the_backend_unless_the_session_names_one() {
    let alpha = TempDirBackend::named("alpha", &[Language::Python]);
    let beta = TempDirBackend::named("beta", &[Language::Python, Language::Go]);
    let backends = Backends::from_backends(vec![alpha.clone() as Arc<dyn Backend>, beta.clone()]);
    let mut config = ServerConfig::ephemeral();
    let mut routes = Routes::default();
    routes.set(Language::Python, "beta");
    config.manager.routes = routes;
    let server = Server::bind(config, backends).await.expect("bind").spawn();
    let mut c = Client::connect(&server.ws_url()).await;
    let routed = c.call("session.create", json!({"language": "python"})).await;
    assert_eq!(routed["backend"], "beta", "the table routes python to beta: {routed}");
    let named = c.call("session.create", json!({"language": "python", "backend": "alpha"})).await;
    assert_eq!(named["backend"], "alpha", "a named backend wins over the table: {named}");
    // Go's route (docker) is not enabled: the one backend that runs go serves it.
    let go = c.call("session.create", json!({"language": "golang"})).await;
    assert_eq!((go["language"].as_str(), go["backend"].as_str()), (Some("go"), Some("beta")));
    assert_eq!((alpha.created(), beta.created()), (1, 2));
    c.close().await;
    server.shutdown().await;
}
