//! `GET /health` over the real HTTP stack: `ok` only when every backend that should run
//! is usable, `degraded` when some are not, `down` with HTTP 503 when none is.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use codebeaker::testing::TempDirBackend;
use codebeaker::{Backend, BackendHealth, Capabilities, Language, Sandbox, SessionConfig, SessionLimits};
use codebeaker_server::backends::NOT_SELECTED;
use codebeaker_server::{Backends, Server, ServerConfig};
use common::raw_http;
use serde_json::{json, Value};

/// A backend whose engine is gone.
struct EngineDown;

#[async_trait]
impl Backend for EngineDown {
    fn name(&self) -> &'static str {
        "engine"
    }

    fn languages(&self) -> &[Language] {
        &[Language::Python]
    }

    async fn create_sandbox(&self, _: &SessionConfig, _: &SessionLimits) -> codebeaker::Result<Box<dyn Sandbox>> {
        Err(codebeaker::Error::backend_unavailable("engine", "no engine answers"))
    }

    fn capabilities(&self, _: Language) -> Capabilities {
        Capabilities::default()
    }

    async fn health(&self) -> BackendHealth {
        BackendHealth::Unavailable("no engine answers".into())
    }

    async fn live_sandboxes(&self) -> codebeaker::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

async fn health_of(backends: Backends) -> (u16, Value) {
    let server = Server::bind(ServerConfig::ephemeral(), backends).await.expect("bind").spawn();
    let (status, body) = raw_http(server.local_addr(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    server.shutdown().await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
}

fn tempdir() -> Arc<dyn Backend> {
    TempDirBackend::new(&[Language::TypeScript])
}

#[tokio::test]
async fn health_reports_ok_degraded_and_down() {
    // Every backend usable; one the operator did not select does not count.
    let mut all_up = Backends::from_backends(vec![tempdir()]);
    all_up.disabled.push(("docker".into(), NOT_SELECTED.into()));
    let (status, body) = health_of(all_up).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    assert_eq!(body["details"]["docker"], json!({"state": "off", "reason": NOT_SELECTED}), "{body}");
    assert_eq!(body["details"]["tempdir"], json!({"state": "ok"}), "{body}");

    // One enabled backend down.
    let (status, body) = health_of(Backends::from_backends(vec![tempdir(), Arc::new(EngineDown)])).await;
    assert_eq!((status, &body["status"]), (200, &json!("degraded")), "{body}");
    assert_eq!(body["backends"]["engine"], "unavailable: no engine answers", "{body}");

    assert_eq!(body["details"]["engine"], json!({"state": "unavailable", "reason": "no engine answers"}), "{body}");

    // One backend failed to start (auto mode without an engine): the reason, and the
    // script it names as the fix, apart.
    let mut failed = Backends::from_backends(vec![tempdir()]);
    let reason = "no Docker engine answers (connection refused); start one with scripts/docker-engine.sh";
    failed.disabled.push(("docker".into(), reason.into()));
    let (status, body) = health_of(failed).await;
    assert_eq!((status, &body["status"]), (200, &json!("degraded")), "{body}");
    assert_eq!(body["backends"]["docker"], format!("unavailable: {reason}"), "{body}");
    let fix = "scripts/docker-engine.sh";
    assert_eq!(body["details"]["docker"], json!({"state": "unavailable", "reason": reason, "fix": fix}), "{body}");

    // Nothing usable.
    let mut none = Backends::from_backends(vec![Arc::new(EngineDown)]);
    none.disabled.push(("docker".into(), "no Docker engine answers".into()));
    let (status, body) = health_of(none).await;
    assert_eq!((status, &body["status"]), (503, &json!("down")), "{body}");
    assert_eq!(body["sessions"], 0, "{body}");
}
