//! The client against a live `codebeaker-server` started in this process, with the real
//! Deno backend: create, execute, streaming, list, close, batches, reconnects, tokens.

mod common;

use std::time::{Duration, Instant};

use codebeaker::{Command, CommandResult, Language, SessionConfig};
use codebeaker_client::{error::codes, BatchReply, Client, ClientError, OutputEvent};
use codebeaker_server::ServerConfig;
use common::{deno_server, workspaces};
use futures::StreamExt as _;

fn deno() -> SessionConfig {
    SessionConfig::new(Language::TypeScript)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_execute_list_and_close_with_typed_results() {
    let root = workspaces();
    let server = deno_server(&root, ServerConfig::ephemeral()).await;
    let client = Client::connect(server.ws_url()).await.unwrap();

    let session = client.create(deno()).await.unwrap();
    let created = session.created().unwrap();
    assert_eq!(created.language, Language::TypeScript);
    assert!(!created.container_id.is_empty());

    let outcome = session.run_code("const x: number = 6; console.log(x * 7)").await.unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.output(), Some("42"));
    session.execute(Command::write_file("a.txt", "hello").unwrap()).await.unwrap().into_result().unwrap();
    let read = session.execute(Command::read_file("a.txt").unwrap()).await.unwrap().into_result().unwrap();
    assert_eq!(read.into_read_file().unwrap().content, "hello");
    let thrown = session.run_code("undefinedName").await.unwrap();
    assert!(!thrown.is_success());
    assert!(thrown.error_message().unwrap().contains("ReferenceError"), "{thrown:?}");
    let missing = session.execute(Command::read_file("missing.txt").unwrap()).await.unwrap();
    assert_eq!(missing.into_result(), Err(codebeaker::Error::not_found("/workspace/missing.txt")));

    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session_id, *session.id());
    assert_eq!(listed[0].execution_count, 5);
    assert!(session.capabilities().await.unwrap().persistent_state);

    let id = session.id().clone();
    session.close().await.unwrap();
    assert!(client.list().await.unwrap().is_empty());
    let gone = client.session(id).run_code("1").await.unwrap_err();
    assert!(gone.is_session_not_found(), "{gone}");
    let bad = client.create(SessionConfig { memory_limit_mb: 1, ..deno() }).await.unwrap_err();
    assert_eq!(bad.code(), Some(codes::INVALID_PARAMS), "{bad}");
    assert!(bad.detail().is_some_and(|d| d.contains("memoryLimitMB")), "{bad}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_output_arrives_while_the_command_runs_then_the_outcome() {
    let root = workspaces();
    let server = deno_server(&root, ServerConfig::ephemeral()).await;
    let client = Client::connect(server.ws_url()).await.unwrap();
    let session = client.create(deno()).await.unwrap();

    let code = "console.log('first');\nawait new Promise((r) => setTimeout(r, 1500));\nconsole.error('second');";
    let mut events = session.execute_stream(Command::code(code)).await.unwrap();
    let mut chunks = Vec::new();
    let mut first_chunk_at = None;
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(60), events.next()).await.expect("an event within 60 s") {
            Some(OutputEvent::Output(chunk)) => {
                first_chunk_at.get_or_insert_with(Instant::now);
                chunks.push(chunk);
            }
            Some(OutputEvent::Finished(outcome)) => break outcome.unwrap(),
            None => panic!("the stream ended without an outcome"),
        }
    };
    // The program slept 1.5 s after its first line: that line came while it ran.
    let early = first_chunk_at.expect("output before the outcome").elapsed();
    assert!(early >= Duration::from_secs(1), "the first chunk came only {early:?} before the outcome");
    assert!(events.next().await.is_none(), "nothing after the outcome");
    let joined: String = chunks.iter().map(|c| c.data.as_str()).collect();
    assert_eq!(joined, "first\nsecond\n");
    assert_eq!(chunks.first().map(|c| c.stream), Some(codebeaker::OutputStream::Stdout));
    assert_eq!(chunks.last().map(|c| c.stream), Some(codebeaker::OutputStream::Stderr));
    assert_eq!(outcome.output(), Some("first\nsecond"));
    session.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_answered_in_order_with_typed_replies() {
    let root = workspaces();
    let server = deno_server(&root, ServerConfig::ephemeral()).await;
    let client = Client::connect(server.ws_url()).await.unwrap();

    let created = client.batch().create(&deno()).unwrap().create(&deno()).unwrap().send().await.unwrap();
    let ids: Vec<_> = created
        .into_iter()
        .map(|reply| match reply.unwrap() {
            BatchReply::Created(created) => created.session_id,
            other => panic!("expected a created session, got {other:?}"),
        })
        .collect();
    assert_ne!(ids[0], ids[1]);

    let replies = client
        .batch()
        .execute(&ids[0], &Command::code("console.log('zero')"))
        .execute(&ids[1], &Command::code("console.log('one')"))
        .execute(&"no-such-session".into(), &Command::code("1"))
        .list()
        .send()
        .await
        .unwrap();
    assert_eq!(replies.len(), 4);
    let output = |reply: &Result<BatchReply, ClientError>| match reply {
        Ok(BatchReply::Executed(outcome)) => {
            outcome.result().and_then(CommandResult::as_code).map(|c| c.output.clone())
        }
        other => panic!("expected an envelope, got {other:?}"),
    };
    assert_eq!(output(&replies[0]).as_deref(), Some("zero"));
    assert_eq!(output(&replies[1]).as_deref(), Some("one"));
    assert!(replies[2].as_ref().is_err_and(ClientError::is_session_not_found), "{:?}", replies[2]);
    assert!(matches!(&replies[3], Ok(BatchReply::Listed(sessions)) if sessions.len() == 2), "{:?}", replies[3]);

    // The requests of a batch run concurrently: closing goes in a batch of its own.
    let closed = client.batch().close(&ids[0]).close(&ids[1]).send().await.unwrap();
    let closed: Vec<_> = closed
        .into_iter()
        .map(|reply| match reply.unwrap() {
            BatchReply::Closed(id) => id,
            other => panic!("expected a closed session, got {other:?}"),
        })
        .collect();
    assert_eq!(closed, ids);
    assert!(client.list().await.unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_server_dropped_is_reopened_and_sessions_carry_on() {
    let root = workspaces();
    let mut config = ServerConfig::ephemeral();
    config.limits.connection_idle = Duration::from_secs(1);
    let server = deno_server(&root, config).await;
    let client = Client::connect(server.ws_url()).await.unwrap();
    let session = client.create(deno()).await.unwrap();
    session.run_code("globalThis.kept = 41").await.unwrap();

    // Idle past the server's limit: it closes the connection.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let outcome = session.run_code("console.log(kept + 1)").await.unwrap();
    assert_eq!(outcome.output(), Some("42"), "the session and its state outlive the connection");

    // A server that is gone: calls fail (after the backoff) instead of hanging.
    let url = server.ws_url();
    server.shutdown().await;
    let error = client.list().await.unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. } | ClientError::Disconnected), "{error}");
    let refused = Client::connect(url).await.unwrap_err();
    assert!(matches!(refused, ClientError::Connect { .. }), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_token_is_refused() {
    let root = workspaces();
    let config = ServerConfig { token: Some("s3cret".into()), ..ServerConfig::ephemeral() };
    let server = deno_server(&root, config).await;
    let url = server.ws_url();
    assert!(matches!(Client::connect(&url).await, Err(ClientError::Authentication)));
    assert!(matches!(Client::connect(&url).token("wrong").await, Err(ClientError::Authentication)));
    let client = Client::connect(&url).token("s3cret").await.unwrap();
    assert!(client.list().await.unwrap().is_empty());
    server.shutdown().await;
}
