//! Helpers shared by the integration tests: servers on free ports and a small
//! WebSocket JSON-RPC client over tokio-tungstenite.
#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;
use std::time::Duration;

use codebeaker::testing::TempDirBackend;
use codebeaker::{Backend, Language};
use codebeaker_server::{Backends, Server, ServerConfig, ServerHandle};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// A server over the temp-dir test backend standing in for `deno` (it is named so and
/// serves typescript, so clients' `{"language": "deno"}` reaches it; not a sandbox: for
/// tests of the protocol's mechanics only), and the backend to inspect.
pub async fn tempdir_server(config: ServerConfig) -> (ServerHandle, Arc<TempDirBackend>) {
    let backend = TempDirBackend::named("deno", &[Language::TypeScript]);
    let backends = Backends::from_backends(vec![backend.clone() as Arc<dyn Backend>]);
    let server = Server::bind(config, backends).await.expect("bind");
    (server.spawn(), backend)
}

/// A WebSocket JSON-RPC client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Notifications received while waiting for responses.
    pub notifications: Vec<Value>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Client::from_stream(ws)
    }

    /// A client over a WebSocket the test opened itself.
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client { ws, next_id: 1000, notifications: Vec::new() }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.expect("send");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next message of any kind, or `None` when the connection ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(FRAME_TIMEOUT, self.ws.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(Some(Err(_))) | Ok(None) => None,
            Err(_) => panic!("no frame within {FRAME_TIMEOUT:?}"),
        }
    }

    /// The next text frame, parsed.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.next_message().await {
                Some(Message::Text(text)) => {
                    return serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
                }
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Whether a text frame arrives within `wait` (for "no reply at all" checks).
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => Some(serde_json::from_str(&text).expect("JSON")),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => None,
        }
    }

    /// Sends a request and returns its whole response, keeping notifications aside.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        self.response_to(&json!(id)).await
    }

    /// Waits for the response with `id`, keeping notifications and panicking on others.
    pub async fn response_to(&mut self, id: &Value) -> Value {
        loop {
            let message = self.recv().await;
            if message.get("id") == Some(id) {
                return message;
            }
            if message.get("method").is_some() && message.get("id").is_none() {
                self.notifications.push(message);
                continue;
            }
            panic!("expected the response to {id}, got {message}");
        }
    }

    /// The `result` of a request that must succeed.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        match response.get("result") {
            Some(result) => result.clone(),
            None => panic!("{method} failed: {response}"),
        }
    }

    /// The error `code` of a request that must fail.
    pub async fn call_err(&mut self, method: &str, params: Value) -> (i64, Value) {
        let response = self.request(method, params).await;
        let error = response.get("error").unwrap_or_else(|| panic!("{method} should fail: {response}"));
        (error["code"].as_i64().expect("code"), error.clone())
    }

    /// Creates a session and returns its id.
    pub async fn create(&mut self, params: Value) -> String {
        let result = self.call("session.create", params).await;
        result["sessionId"].as_str().expect("sessionId").to_owned()
    }

    /// Runs a command and returns the result envelope.
    pub async fn execute(&mut self, session: &str, command: Value) -> Value {
        self.call("session.execute", json!({"sessionId": session, "command": command})).await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// Drops the TCP connection without a close handshake.
    pub fn abort(self) {
        drop(self.ws);
    }
}

/// Asserts an error response's shape and code.
pub fn assert_error(response: &Value, id: Value, code: i64) {
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(response["id"], id, "{response}");
    assert_eq!(response["error"]["code"], code, "{response}");
    assert!(response["error"]["message"].is_string(), "{response}");
    assert!(response.get("result").is_none(), "{response}");
}

/// Sends a raw HTTP request and returns the status code and body.
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// `GET /health`, parsed.
pub async fn health(addr: std::net::SocketAddr) -> Value {
    let (status, body) = raw_http(addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("health is not JSON ({e}): {body}"))
}

/// A server over the real backends: Deno always, Docker when an engine answers.
pub struct RealServer {
    pub handle: ServerHandle,
    /// Why Docker is off, if it is.
    pub docker_off: Option<String>,
    /// Why Deno is off, if it is.
    pub deno_off: Option<String>,
}

/// Starts a real-backend server. `owner` labels its Docker containers: give each test
/// its own, since a backend removes containers of its owner left by earlier runs.
pub async fn real_server(owner: &str, config: ServerConfig) -> RealServer {
    use codebeaker_server::{BackendChoice, BackendOptions};
    let options = BackendOptions {
        choice: BackendChoice::Auto,
        docker: codebeaker_docker::DockerConfig::default()
            .with_owner(format!("codebeaker-server-test-{owner}"))
            .with_pool_size(0),
        deno: codebeaker_deno::DenoConfig { pool_size: 2, ..codebeaker_deno::DenoConfig::default() },
        policy: config.manager.policy.clone(),
    };
    let backends = Backends::start(options).await.expect("auto selection never fails");
    let off = |name: &str| backends.disabled.iter().find(|(n, _)| n == name).map(|(_, reason)| reason.clone());
    let (docker_off, deno_off) = (off("docker"), off("deno"));
    let handle = Server::bind(config, backends).await.expect("bind").spawn();
    RealServer { handle, docker_off, deno_off }
}

impl RealServer {
    /// Whether Docker sessions can be tested. Without an engine the test is skipped
    /// loudly, or fails when `CODEBEAKER_REQUIRE_DOCKER=1`.
    pub fn docker_or_skip(&self, test: &str) -> bool {
        let Some(reason) = &self.docker_off else { return true };
        if std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("{test}: CODEBEAKER_REQUIRE_DOCKER=1 but the Docker backend is off: {reason}");
        }
        eprintln!("SKIPPED (Docker part of {test}): the Docker backend is off: {reason}; set CODEBEAKER_REQUIRE_DOCKER=1 to fail instead");
        false
    }

    /// Deno is always on: a server without it is a failure.
    pub fn require_deno(&self) {
        if let Some(reason) = &self.deno_off {
            panic!("the Deno backend is off: {reason}");
        }
    }
}

/// Asserts the `{success, result, error, durationMs}` envelope.
pub fn assert_envelope(envelope: &Value) {
    let object = envelope.as_object().unwrap_or_else(|| panic!("not an envelope: {envelope}"));
    assert!(object["success"].is_boolean(), "{envelope}");
    assert!(object.contains_key("result"), "{envelope}");
    assert!(object["error"].is_null() || object["error"].is_string(), "{envelope}");
    assert!(object["durationMs"].is_u64(), "{envelope}");
    // The optional protocol extensions (`usage`, `outputs`, `stateReset`) may be present.
    let mut keys: Vec<&str> =
        object.keys().map(String::as_str).filter(|k| !["usage", "outputs", "stateReset"].contains(k)).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["durationMs", "error", "result", "success"], "{envelope}");
}

/// Asserts a successful envelope and returns its `result`.
pub fn succeeded(envelope: &Value) -> &Value {
    assert_envelope(envelope);
    assert_eq!(envelope["success"], true, "{envelope}");
    assert!(envelope["error"].is_null(), "{envelope}");
    &envelope["result"]
}
