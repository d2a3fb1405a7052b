//! The E2B-shaped [`Sandbox`] against a live `codebeaker-server` started in this
//! process: with the real Deno backend (code, files, reattach, timeouts, close, rate
//! limits, tokens), and with the temp-dir test backend for background processes, which
//! Deno sessions do not have.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{Backend, EntryType, Language, ProcessCommand, ProcessSpec, ProcessState, PtySize};
use codebeaker_client::{error::codes, ClientError, ConnectOptions, CreateOptions, OutputOptions, Sandbox};
use codebeaker_server::rate::Rate;
use codebeaker_server::{Backends, Server, ServerConfig, ServerHandle};
use common::{deno_server, workspaces};

/// A server whose TypeScript sessions are the temp-dir test backend's, which runs
/// background `script` processes (see `codebeaker::testing`).
async fn process_server(config: ServerConfig) -> ServerHandle {
    let backend: Arc<dyn Backend> = TempDirBackend::named("deno", &[Language::TypeScript]);
    Server::bind(config, Backends::from_backends(vec![backend])).await.expect("bind").spawn()
}

/// The server's URL as the SDKs take it: `ws://host:port`, without the JSON-RPC path.
fn url(server: &ServerHandle) -> String {
    format!("ws://{}", server.local_addr())
}

async fn typescript(server: &ServerHandle) -> Sandbox {
    Sandbox::create(CreateOptions::new("typescript").url(url(server))).await.expect("a sandbox")
}

/// A place output handlers write to, and a way to read it.
fn collector() -> (Arc<Mutex<String>>, impl FnMut(&str) + Send + 'static) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    (text, move |data: &str| sink.lock().unwrap().push_str(data))
}

#[tokio::test(flavor = "multi_thread")]
async fn run_code_gives_logs_the_programs_own_error_and_timeouts() {
    let root = workspaces();
    let server = deno_server(&root, ServerConfig::ephemeral()).await;
    let sb = typescript(&server).await;
    assert_eq!((sb.language(), sb.backend(), sb.node()), ("typescript", "deno", None));

    let execution = sb.run_code("console.log(6*7)").await.unwrap();
    assert_eq!(execution.logs.stdout, ["42\n"]);
    assert!(execution.logs.stderr.is_empty());
    assert_eq!((&execution.error, execution.execution_count), (&None, 1));
    assert_eq!(execution.text(), None, "Deno gives no rich outputs");

    let (stdout, on_stdout) = collector();
    let (stderr, on_stderr) = collector();
    let options = OutputOptions::new().on_stdout(on_stdout).on_stderr(on_stderr);
    let execution = sb.run_code_with("globalThis.x = 41; console.log('out'); console.error('err')", options).await;
    let execution = execution.unwrap();
    assert_eq!((execution.logs.stdout, execution.logs.stderr), (vec!["out\n".to_owned()], vec!["err\n".to_owned()]));
    assert_eq!((stdout.lock().unwrap().as_str(), stderr.lock().unwrap().as_str()), ("out\n", "err\n"));
    assert_eq!(sb.run_code("console.log(x + 1)").await.unwrap().logs.stdout, ["42\n"], "state is kept");

    // The program's own error is the execution's, not an Err.
    let thrown = sb.run_code("throw new Error('boom')").await.unwrap();
    let error = thrown.error.expect("the thrown error");
    assert_eq!(error.name, "Error", "{error:?}");
    assert!(error.value.contains("boom"), "{error:?}");
    assert!(error.traceback.contains("boom"), "{error:?}");
    assert_eq!(thrown.execution_count, 4);

    // A timeout is not the program's error: it is an Err the SDKs call TimeoutError.
    let options = OutputOptions::new().timeout(Duration::from_millis(500));
    let timed_out = sb.run_code_with("while (true) {}", options).await.unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");
    assert_eq!(timed_out.kind(), Some("timed_out"));
    assert!(sb.run_code("console.log('after')").await.is_ok(), "the session goes on");

    // Deno sessions have no shell, background processes or terminals: clear errors.
    let refused = sb.commands().run("echo hi").await.unwrap_err();
    assert_eq!(refused.kind(), Some("unsupported"), "{refused}");
    let refused = sb.commands().run_background("cat").await.unwrap_err();
    assert_eq!(refused.code(), Some(codes::INVALID_PARAMS), "{refused}");
    let refused = sb.pty().create(PtySize { cols: 80, rows: 24 }).await.unwrap_err();
    assert_eq!(refused.code(), Some(codes::INVALID_PARAMS), "{refused}");
    let unknown = Sandbox::create(CreateOptions::new("cobol").url(url(&server))).await.unwrap_err();
    assert_eq!(unknown.kind(), Some("invalid_input"), "{unknown}");

    assert!(sb.is_running().await.unwrap());
    sb.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_written_read_listed_removed_and_moved_by_the_megabyte() {
    let root = workspaces();
    let server = deno_server(&root, ServerConfig::ephemeral()).await;
    let sb = typescript(&server).await;
    let files = sb.files();

    let written = files.write("a.txt", "hello").await.unwrap();
    assert_eq!((written.name.as_str(), written.r#type, written.size), ("a.txt", EntryType::File, 5));
    assert_eq!(files.read("a.txt").await.unwrap(), "hello");
    let binary = [0u8, 255, 1, 2, 0xc3];
    assert_eq!(files.write("/workspace/b.bin", binary).await.unwrap().size, 5);
    assert_eq!(files.read_bytes("b.bin").await.unwrap(), binary);
    let not_text = files.read("b.bin").await.unwrap_err();
    assert_eq!(not_text.kind(), Some("invalid_input"), "{not_text}");

    files.make_dir("d/e").await.unwrap();
    files.write("d/e/f.txt", "x").await.unwrap();
    let listed = files.list("d/e").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].path.as_str()), ("f.txt", "/workspace/d/e/f.txt"));
    let root_entries = files.list(".").await.unwrap();
    let names: Vec<_> = root_entries.iter().map(|e| (e.name.as_str(), e.r#type)).collect();
    assert_eq!(names, [("a.txt", EntryType::File), ("b.bin", EntryType::File), ("d", EntryType::Directory)]);
    assert!(files.exists("a.txt").await.unwrap());
    assert!(files.exists("/workspace/d/e/f.txt").await.unwrap());
    assert!(!files.exists("missing.txt").await.unwrap());
    assert!(!files.exists("no/such/dir/file").await.unwrap());

    files.remove("a.txt").await.unwrap();
    assert!(!files.exists("a.txt").await.unwrap());
    let missing = files.remove("a.txt").await.unwrap_err();
    assert_eq!(missing.kind(), Some("not_found"), "{missing}");
    let outside = files.read("../etc/passwd").await.unwrap_err();
    assert_eq!(outside.kind(), Some("permission_denied"), "{outside}");

    // About 3 MiB that is not text: moved in several chunks each way.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 12345u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert_eq!(files.upload("big.bin", &big).await.unwrap(), big.len() as u64);
    assert!(files.download("big.bin").await.unwrap() == big, "the download differs from the upload");
    let sizes: Vec<_> =
        files.list(".").await.unwrap().into_iter().filter(|e| e.name == "big.bin").map(|e| e.size).collect();
    assert_eq!(sizes, [big.len() as u64]);
    // A text over one chunk is written as an upload, and read back whole.
    let text = "line of text é\n".repeat(100_000);
    assert_eq!(files.write("big.txt", &text).await.unwrap().size, text.len() as u64);
    assert!(files.read("big.txt").await.unwrap() == text, "the text read back differs");

    sb.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_reattaches_and_a_closed_session_is_not_found() {
    let root = workspaces();
    let server = deno_server(&root, ServerConfig::ephemeral()).await;
    let sb = typescript(&server).await;
    sb.run_code("globalThis.kept = 41").await.unwrap();
    let id = sb.session_id().clone();

    let again = Sandbox::connect(id.clone(), ConnectOptions::new().url(url(&server))).await.unwrap();
    assert_eq!(again.session_id(), &id);
    assert_eq!((again.language(), again.backend()), ("typescript", "deno"));
    let execution = again.run_code("console.log(kept + 1)").await.unwrap();
    assert_eq!(execution.logs.stdout, ["42\n"], "the same session, its state kept");
    assert_eq!(execution.execution_count, 2, "counted on from the session's");

    sb.close().await.unwrap();
    assert!(!again.is_running().await.unwrap());
    let gone = Sandbox::connect(id.clone(), ConnectOptions::new().url(url(&server))).await.unwrap_err();
    assert!(gone.is_session_not_found(), "{gone}");
    assert_eq!(gone.code(), Some(codes::SESSION_NOT_FOUND));
    let gone = again.run_code("1").await.unwrap_err();
    assert!(gone.is_session_not_found(), "{gone}");
    again.close().await.expect("closing a session already gone is not an error");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_server_says_when_to_retry() {
    let root = workspaces();
    let config = ServerConfig { rate_limit: Some(Rate { per_second: 1.0, burst: 2 }), ..ServerConfig::ephemeral() };
    let server = deno_server(&root, config).await;
    let sb = typescript(&server).await;
    let mut refused = None;
    for _ in 0..5 {
        if let Err(error) = sb.is_running().await {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("a request over 1/s with a burst of 2 is refused");
    assert!(refused.is_rate_limited(), "{refused}");
    assert_eq!(refused.code(), Some(codes::LIMIT_REACHED), "{refused}");
    assert!(refused.retry_after().is_some_and(|wait| wait > Duration::ZERO), "{refused:?}");
    assert!(!refused.is_timeout() && !refused.is_session_not_found());
    tokio::time::sleep(refused.retry_after().unwrap() + Duration::from_millis(50)).await;
    sb.close().await.expect("admitted after the wait");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_token_is_an_authentication_error() {
    let root = workspaces();
    let config = ServerConfig { token: Some("s3cret".into()), ..ServerConfig::ephemeral() };
    let server = deno_server(&root, config).await;
    let create = |token: Option<&str>| {
        let options = CreateOptions::new("ts").url(url(&server));
        Sandbox::create(match token {
            Some(token) => options.token(token),
            None => options,
        })
    };
    assert!(matches!(create(Some("wrong")).await, Err(ClientError::Authentication)));
    let sb = create(Some("s3cret")).await.unwrap();
    assert_eq!(sb.language(), "typescript");
    sb.close().await.unwrap();
    server.shutdown().await;
}

fn script(lines: &[&str]) -> ProcessSpec {
    ProcessSpec::new(ProcessCommand::new("script", lines.iter().copied()))
}

#[tokio::test(flavor = "multi_thread")]
async fn command_handles_feed_wait_time_out_and_kill() {
    let server = process_server(ServerConfig::ephemeral()).await;
    let sb = typescript(&server).await;

    // This backend has no shell and runs only its `script` processes.
    let refused = sb.commands().run("echo hi").await.unwrap_err();
    assert_eq!(refused.kind(), Some("unsupported"), "{refused}");
    let refused = sb.commands().run_background("cat").await.unwrap_err();
    assert!(refused.code().is_some(), "{refused}");

    // `cat` started through the protocol-shaped session, reached with commands().connect.
    let pid = sb.session().start_process(&script(&["cat"])).await.unwrap().pid();
    let (seen, on_stdout) = collector();
    let cat = sb.commands().connect_with(pid, OutputOptions::new().on_stdout(on_stdout)).await.unwrap();
    assert_eq!(cat.pid(), pid);
    cat.send_stdin("fed\n").await.unwrap();
    cat.close_stdin().await.unwrap();
    let done = cat.wait().await.unwrap();
    assert_eq!((done.exit_code, done.stdout.as_str(), done.stderr.as_str()), (0, "fed\n", ""));
    assert_eq!((seen.lock().unwrap().as_str(), cat.stdout(), cat.exit_code()), ("fed\n", "fed\n".to_owned(), Some(0)));

    let failing = sb.session().start_process(&script(&["print partial", "warn oops", "throw boom"])).await.unwrap();
    let failing = sb.commands().connect(failing.pid()).await.unwrap();
    match failing.wait().await {
        Err(ClientError::CommandExit { exit_code, stdout, stderr }) => {
            assert_ne!(exit_code, 0);
            assert_eq!(stdout, "partial\n");
            assert!(stderr.starts_with("oops\n"), "{stderr:?}");
        }
        other => panic!("expected a non-zero exit, got {other:?}"),
    }

    let pid = sb.session().start_process(&script(&["sleep 60000"])).await.unwrap().pid();
    let sleeper = sb.commands().connect(pid).await.unwrap();
    let waited = sleeper.wait_timeout(Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(waited, ClientError::Timeout(_)) && waited.is_timeout(), "{waited}");
    let running = sb.commands().list().await.unwrap();
    assert!(running.iter().any(|p| p.pid == pid && p.state == ProcessState::Running), "{running:?}");
    let resize = sleeper.resize(80, 24).await.unwrap_err();
    assert_eq!(resize.code(), Some(codes::INVALID_PARAMS), "not a terminal: {resize}");
    assert!(sleeper.kill().await.unwrap());
    match sleeper.wait_timeout(Duration::from_secs(10)).await {
        Err(ClientError::CommandExit { exit_code: 137, .. }) => {}
        other => panic!("expected the KILL's exit code, got {other:?}"),
    }
    assert!(!sleeper.kill().await.unwrap(), "it had ended");
    assert!(!sb.commands().kill(pid).await.unwrap(), "it had ended");
    assert!(!sb.commands().kill(4_000_000).await.unwrap(), "no such process");
    sleeper.disconnect();

    sb.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_handle_reads_on_after_the_server_dropped_its_connection() {
    let mut config = ServerConfig::ephemeral();
    config.limits.connection_idle = Duration::from_secs(1);
    let server = process_server(config).await;
    let sb = typescript(&server).await;

    // Output on both streams, then a silence past the server's idle limit, which closes
    // the connection; the handle attaches again and reads the rest, each byte once.
    let lines = ["print first", "warn e", "sleep 2500", "print last", "warn f"];
    let pid = sb.session().start_process(&script(&lines)).await.unwrap().pid();
    let handle = sb.commands().connect(pid).await.unwrap();
    let done = handle.wait_timeout(Duration::from_secs(30)).await.unwrap();
    assert_eq!((done.stdout.as_str(), done.stderr.as_str()), ("first\nlast\n", "e\nf\n"));
    assert!(sb.is_running().await.unwrap(), "the sandbox carries on over a new connection");
    sb.close().await.unwrap();
    server.shutdown().await;
}
