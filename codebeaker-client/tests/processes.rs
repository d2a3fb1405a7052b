//! The client's process handles against a live server on the temp-dir test backend's
//! script processes: output read as it comes, a handle resumed after a lost connection
//! from where it stopped, stdin, signals, wait and list.

use std::sync::Arc;
use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{
    Backend, Language, ProcessCommand, ProcessEvent, ProcessSignal, ProcessSpec, ProcessState, SessionConfig,
};
use codebeaker_client::Client;
use codebeaker_server::{Backends, Server, ServerConfig};

fn script(lines: Vec<String>) -> ProcessSpec {
    ProcessSpec::new(ProcessCommand::new("script", lines))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_handle_reads_resumes_feeds_and_signals() {
    let backend: Arc<dyn Backend> = TempDirBackend::named("deno", &[Language::TypeScript]);
    let server = Server::bind(ServerConfig::ephemeral(), Backends::from_backends(vec![backend])).await.unwrap().spawn();
    let client = Client::connect(server.ws_url()).await.unwrap();
    let session = client.create(SessionConfig::new(Language::TypeScript)).await.unwrap();

    let lines = (1..=20).flat_map(|i| [format!("print tick {i}"), "sleep 30".to_owned()]).collect();
    let mut ticker = session.start_process(&script(lines)).await.unwrap();
    let mut first = String::new();
    while first.matches("tick").count() < 3 {
        match ticker.next().await {
            Some(ProcessEvent::Output(chunk)) => first.push_str(&chunk.data),
            other => panic!("expected output, got {other:?}"),
        }
    }
    // Another handle from where this one stopped (as after a reconnect): the rest, once.
    let mut rest = session.attach_process(ticker.pid(), ticker.resume_offset()).await.unwrap();
    assert_eq!(rest.dropped_at_attach(), 0);
    let mut text = String::new();
    let exit = loop {
        match rest.next().await.expect("events until the exit") {
            ProcessEvent::Output(chunk) => text.push_str(&chunk.data),
            ProcessEvent::Exit(exit) => break exit,
        }
    };
    let all: String = (1..=20).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(first + &text, all);
    assert_eq!(exit.exit_code, Some(0));
    assert_eq!(session.processes().await.unwrap()[0].state, ProcessState::Exited);

    let cat = session.start_process(&script(vec!["cat".into()])).await.unwrap();
    cat.write("fed\n").await.unwrap();
    cat.close_stdin().await.unwrap();
    let (output, exit) = cat.output_and_exit().await.unwrap();
    assert_eq!((output.as_str(), exit.exit_code), ("fed\n", Some(0)));

    let sleeper = session.start_process(&script(vec!["sleep 60000".into()])).await.unwrap();
    let waited = sleeper.wait(Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(waited.code(), Some(-32603), "{waited}");
    sleeper.signal(ProcessSignal::Int).await.unwrap();
    let exit = sleeper.wait(Duration::from_secs(10)).await.unwrap();
    assert_eq!((exit.exit_code, exit.signal.as_deref()), (Some(130), Some("INT")));
    let error = sleeper.resize(80, 24).await.unwrap_err();
    assert_eq!(error.code(), Some(-32602), "{error}");
    session.close().await.unwrap();
    server.shutdown().await;
}
