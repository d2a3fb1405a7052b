//! Routing through the public API: a session's named backend, the operator's table, the
//! one backend that runs a language, and the errors that say which backends would do.

use std::sync::Arc;

use codebeaker::testing::TempDirBackend;
use codebeaker::{Backend, Language, ManagerConfig, Routes, SessionConfig, SessionManager};
use serde_json::json;

fn manager(backends: Vec<Arc<dyn Backend>>, routes: Routes) -> SessionManager {
    SessionManager::new(backends, ManagerConfig { routes, ..ManagerConfig::default() })
}

#[tokio::test]
async fn the_named_backend_then_the_table_then_the_only_one() {
    let alpha = TempDirBackend::named("alpha", &[Language::Python, Language::TypeScript]);
    let beta = TempDirBackend::named("beta", &[Language::Python]);
    let mut routes = Routes::empty();
    routes.set(Language::Python, "beta");
    let manager = manager(vec![alpha.clone(), beta.clone()], routes);
    let routed = manager.create(SessionConfig::new(Language::Python)).await.unwrap();
    assert_eq!((routed.backend.as_str(), routed.config.backend.as_deref()), ("beta", Some("beta")));
    let named = manager.create(SessionConfig::new(Language::Python).with_backend("alpha")).await.unwrap();
    assert_eq!(named.backend, "alpha");
    let only = manager.create(SessionConfig::new(Language::TypeScript)).await.unwrap();
    assert_eq!(only.backend, "alpha", "no route, one backend runs typescript");
    assert_eq!(serde_json::to_value(&only).unwrap()["backend"], "alpha", "the info reports its backend");
    manager.shutdown().await;
}

#[tokio::test]
async fn several_backends_and_no_route_is_a_clear_refusal() {
    let alpha = TempDirBackend::named("alpha", &[Language::Go]);
    let beta = TempDirBackend::named("beta", &[Language::Go]);
    let manager = manager(vec![alpha, beta], Routes::empty());
    let refused = manager.create(SessionConfig::new(Language::Go)).await.unwrap_err();
    assert!(
        refused.kind() == codebeaker::ErrorKind::BackendUnavailable
            && refused.message().contains("alpha, beta")
            && refused.message().contains("route"),
        "{refused:?}"
    );
    manager.shutdown().await;
}

#[tokio::test]
async fn a_backend_that_does_not_run_the_language_names_those_that_do() {
    let alpha = TempDirBackend::named("alpha", &[Language::Python]);
    let beta = TempDirBackend::named("beta", &[Language::Go]);
    let manager = manager(vec![alpha, beta], Routes::default());
    let wrong = manager.create(SessionConfig::new(Language::Go).with_backend("alpha")).await.unwrap_err();
    assert!(
        wrong.kind() == codebeaker::ErrorKind::InvalidInput
            && wrong.message().contains("alpha does not run go")
            && wrong.message().contains("that run go: beta"),
        "{wrong:?}"
    );
    let unknown = manager.create(SessionConfig::new(Language::Go).with_backend("lxc")).await.unwrap_err();
    assert!(
        unknown.kind() == codebeaker::ErrorKind::InvalidInput && unknown.message().contains("\"lxc\" is not enabled"),
        "{unknown:?}"
    );
    // Options for another backend than the serving one are refused, not ignored.
    let config = SessionConfig::new(Language::Go).with_options("docker", json!({"image": "golang:1"})).unwrap();
    let misplaced = manager.create(config).await.unwrap_err();
    assert!(
        misplaced.kind() == codebeaker::ErrorKind::InvalidInput
            && misplaced.message().contains("backendOptions.docker")
            && misplaced.message().contains("runs on beta"),
        "{misplaced:?}"
    );
    assert_eq!(manager.count(), 0);
    manager.shutdown().await;
}

#[test]
fn the_table_is_checked_against_what_backends_run() {
    let alpha: Arc<dyn Backend> = TempDirBackend::named("alpha", &[Language::Python]);
    let mut routes = Routes::default();
    routes.set(Language::Go, "alpha");
    let error = routes.check(&[alpha]).unwrap_err().to_string();
    assert!(error.contains("go=alpha") && error.contains("does not run go"), "{error}");
}
