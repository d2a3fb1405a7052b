//! A third backend, registered from outside core and server: the temp-dir test backend
//! behind a [`BackendFactory`] defined here, added to the server's registry with one
//! line, configured from its own policy table, reached over JSON-RPC by name and by
//! route, and put through the whole conformance suite.

use async_trait::async_trait;
use codebeaker::conformance::{Programs, Suite};
use codebeaker::testing::TempDirBackend;
use codebeaker::{BackendFactory, Language, Policy, Result, Routes, Started};
use codebeaker_server::{BackendChoice, BackendOptions, Backends, Server, ServerConfig};
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The operator's `[backends.tempdir]` table, which only this backend knows.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct TempDirPolicy {
    languages: Vec<Language>,
}

struct TempDirFactory;

#[async_trait]
impl BackendFactory for TempDirFactory {
    fn name(&self) -> &'static str {
        "tempdir"
    }

    fn description(&self) -> &'static str {
        "the temp-dir test backend (not a sandbox)"
    }

    async fn start(&self, policy: &Policy) -> Result<Started> {
        let table: TempDirPolicy = policy.validate_backend(self.name())?;
        Ok(Started::new(TempDirBackend::named("tempdir", &table.languages), "a test backend"))
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `session.create` with `params` and returns the response.
async fn create(ws: &mut Ws, params: Value) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "session.create", "params": params});
    ws.send(Message::text(request.to_string())).await.expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
            Some(Ok(_)) => continue,
            other => panic!("no response: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_backend_registers_from_outside_and_passes_the_conformance_suite() {
    let mut policy = Policy::default();
    policy.backends.insert("tempdir".into(), json!({"languages": ["python", "go"]}));
    let options = BackendOptions {
        choice: BackendChoice::Only(vec!["tempdir".into()]),
        policy: policy.clone(),
        ..BackendOptions::default()
    };
    // The one registration line: the server's own backends, then ours.
    let mut registry = options.registry();
    registry.register(TempDirFactory).expect("a new name");
    let backends = Backends::start_with(&registry, &options.choice, &policy).await.expect("tempdir starts");
    assert_eq!(backends.enabled.iter().map(|b| b.name()).collect::<Vec<_>>(), ["tempdir"]);
    assert!(backends.disabled.iter().all(|(_, reason)| reason == codebeaker_server::backends::NOT_SELECTED));
    let backend = backends.enabled[0].clone();

    // Reached over the wire, by name and by the operator's route.
    let mut config = ServerConfig::ephemeral();
    config.manager.policy = policy;
    let mut routes = Routes::default();
    routes.set(Language::Go, "tempdir");
    config.manager.routes = routes;
    let server = Server::bind(config, backends).await.expect("bind").spawn();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await.expect("connect");
    let named = create(&mut ws, json!({"language": "python", "backend": "tempdir"})).await;
    assert_eq!(named["result"]["backend"], "tempdir", "{named}");
    let routed = create(&mut ws, json!({"language": "go"})).await;
    assert_eq!(routed["result"]["backend"], "tempdir", "{routed}");
    let refused = create(&mut ws, json!({"language": "csharp", "backend": "tempdir"})).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(refused["error"]["data"].as_str().unwrap_or_default().contains("tempdir does not run csharp"));
    let _ = ws.close(None).await;
    server.shutdown().await;

    // The whole conformance suite, on the backend the registry started.
    Suite::new(backend, Language::Python, Programs::tempdir_script()).run_all().await;
}

#[tokio::test]
async fn a_typo_in_the_third_backends_table_stops_it() {
    let mut policy = Policy::default();
    policy.backends.insert("tempdir".into(), json!({"langauges": ["python"]}));
    let mut registry = BackendOptions::default().registry();
    registry.register(TempDirFactory).expect("a new name");
    let choice = BackendChoice::Only(vec!["tempdir".into()]);
    let error = Backends::start_with(&registry, &choice, &policy).await.err().expect("refused");
    assert!(error.to_string().contains("backends.tempdir") && error.to_string().contains("langauges"), "{error}");
    let unknown = BackendChoice::Only(vec!["lxc".into()]);
    let error = Backends::start_with(&registry, &unknown, &policy).await.err().expect("refused");
    assert!(error.to_string().contains("docker, deno, tempdir"), "{error}");
}
