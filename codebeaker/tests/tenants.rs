//! Tenants on the temp-dir test backend: each tenant sees and acts on its own sessions
//! only, another tenant's session id answers exactly like an unknown one, and the
//! per-tenant cap holds under concurrent creates.

use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{
    Command, Error, ErrorKind, ExecEvent, ExecOptions, Language, ManagerConfig, Policy, SessionConfig, SessionManager,
};
use futures::StreamExt as _;

fn manager(max_sessions: usize, per_tenant: usize) -> SessionManager {
    let backend = TempDirBackend::new(&[Language::Python]);
    let policy = Policy { max_sessions_per_tenant: Some(per_tenant), ..Policy::default() };
    SessionManager::new(vec![backend], ManagerConfig { max_sessions, policy, ..ManagerConfig::default() })
}

fn python() -> SessionConfig {
    SessionConfig::new(Language::Python)
}

/// What an unknown id answers, to compare other answers with byte for byte.
fn unknown(id: &str) -> String {
    Error::session_not_found(id.to_owned()).to_string()
}

#[tokio::test(start_paused = true)]
async fn another_tenants_session_answers_like_an_unknown_id() {
    let manager = manager(10, 10);
    let alice = manager.create_as(Some("alice"), python()).await.unwrap();
    assert_eq!(alice.tenant.as_deref(), Some("alice"));
    let id = alice.session_id.as_str();

    let executed = manager.execute_as(Some("mallory"), id, Command::code("print hi"), ExecOptions::default()).await;
    assert_eq!(executed.unwrap_err().to_string(), unknown(id));
    let info = manager.info_as(Some("mallory"), id);
    assert_eq!(info.unwrap_err().to_string(), unknown(id));
    let closed = manager.close_as(Some("mallory"), id).await;
    assert_eq!(closed.as_ref().err(), Some(&Error::session_not_found(id)), "{closed:?}");
    let run = manager.run_once_as(Some("mallory"), Language::Python, "print x".into(), None).await;
    assert!(run.unwrap().success, "one-shot runs need no session");
    let mut stream = manager.execute_stream_as(Some("mallory"), id, Command::code("print hi"), None);
    match stream.next().await {
        Some(ExecEvent::Finished(Err(error))) => assert_eq!(error.to_string(), unknown(id)),
        other => panic!("expected a not-found outcome, got {other:?}"),
    }
    // Probing with the real id and a made-up one gives the same shape of answer.
    let made_up = "00000000-0000-0000-0000-000000000000";
    let probe = manager.info_as(Some("mallory"), made_up).unwrap_err().to_string();
    assert_eq!(probe, unknown(made_up));

    // Nothing happened to Alice's session, which she and the operator still reach.
    let outcome =
        manager.execute_as(Some("alice"), id, Command::code("print mine"), ExecOptions::default()).await.unwrap();
    assert_eq!(outcome.to_json()["result"], "mine");
    assert_eq!(manager.info(id).unwrap().execution_count, 1, "mallory's command never ran");
    assert_eq!(manager.info_as(Some("alice"), id).unwrap().tenant.as_deref(), Some("alice"));
    manager.close_as(Some("alice"), id).await.unwrap();
    assert_eq!(manager.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn list_shows_a_tenant_only_its_own_sessions_and_the_operator_all() {
    let manager = manager(10, 10);
    let a1 = manager.create_as(Some("a"), python()).await.unwrap().session_id;
    let b1 = manager.create_as(Some("b"), python()).await.unwrap().session_id;
    let a2 = manager.create_as(Some("a"), python()).await.unwrap().session_id;
    let op = manager.create(python()).await.unwrap().session_id;
    let ids = |tenant| manager.list_as(tenant).into_iter().map(|s| s.session_id).collect::<Vec<_>>();
    let mut a = ids(Some("a"));
    a.sort();
    let mut expected = vec![a1.clone(), a2.clone()];
    expected.sort();
    assert_eq!(a, expected);
    assert_eq!(ids(Some("b")), std::slice::from_ref(&b1));
    assert!(ids(Some("c")).is_empty());
    assert_eq!(ids(None).len(), 4);
    assert_eq!(manager.list().len(), 4);
    assert!(manager.info_as(Some("a"), &op).is_err(), "a tenant does not see the operator's sessions");
    // The operator acts on every session.
    manager.close(&b1).await.unwrap();
    assert!(ids(Some("b")).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_per_tenant_cap_holds_under_concurrent_creates() {
    let manager = manager(100, 2);
    let creates = (0..6).map(|_| manager.create_as(Some("greedy"), python()));
    let results = futures::future::join_all(creates).await;
    let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 2, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            refused.kind() == ErrorKind::LimitReached
                && refused.message().contains("max-sessions-per-tenant")
                && refused.message().contains("maximum is 2"),
            "{refused:?}"
        );
    }
    // Other tenants and the operator are not affected by one tenant's cap.
    manager.create_as(Some("other"), python()).await.expect("another tenant has its own cap");
    for _ in 0..3 {
        manager.create(python()).await.expect("the operator has no per-tenant cap");
    }
    // One-shot runs count against the cap while they run.
    let refused = manager.run_once_as(Some("greedy"), Language::Python, "print x".into(), None).await;
    assert!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.kind() == ErrorKind::LimitReached && e.message().contains("max-sessions-per-tenant")),
        "{refused:?}"
    );
    // Closing gives the place back.
    manager.close_as(Some("greedy"), &created[0].session_id).await.unwrap();
    manager.create_as(Some("greedy"), python()).await.expect("a closed session frees its tenant's place");
}

#[tokio::test(start_paused = true)]
async fn the_global_cap_still_counts_every_tenant() {
    let manager = manager(3, 2);
    manager.create_as(Some("a"), python()).await.unwrap();
    manager.create_as(Some("a"), python()).await.unwrap();
    manager.create_as(Some("b"), python()).await.unwrap();
    let refused = manager.create_as(Some("c"), python()).await;
    assert!(
        refused.as_ref().err().is_some_and(|e| e.kind() == ErrorKind::LimitReached
            && e.message().contains("max-sessions")
            && e.message().contains("3")),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn expired_and_failed_sessions_give_their_tenant_place_back() {
    let manager = manager(10, 1);
    let mut config = python();
    config.idle_timeout_minutes = 1.0;
    let id = manager.create_as(Some("t"), config).await.unwrap().session_id;
    tokio::time::sleep(Duration::from_secs(62)).await;
    assert_eq!(manager.count(), 0, "idle session not closed");
    let id2 = manager.create_as(Some("t"), python()).await.expect("expiry frees the place").session_id;
    assert_ne!(id, id2);
    let crashed = manager.execute_as(Some("t"), &id2, Command::code("crash"), ExecOptions::default()).await.unwrap();
    assert!(!crashed.success);
    manager.create_as(Some("t"), python()).await.expect("a failed sandbox frees the place");
}
