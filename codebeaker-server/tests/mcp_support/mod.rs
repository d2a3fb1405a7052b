//! Helpers of the MCP, metrics, rate-limit and audit tests: the real `codebeaker-server`
//! binary on a free loopback port (Deno backend only: these tests must not touch the
//! shared Docker engine), a minimal HTTP/1.1 client, and the Python clients.
#![allow(dead_code)] // each test file uses a different part

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The server binary cargo built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_codebeaker-server");
/// The Python test clients.
pub const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");

/// A running server process, killed when dropped.
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Spawned {
    /// Starts the binary with `args` (beside `--listen` and `--backends deno`) and waits
    /// until `/health` answers.
    pub async fn start(args: &[&str]) -> Spawned {
        Spawned::start_on("deno", args).await
    }

    /// [`Spawned::start`] with `--backends backends`; the Docker engine is reachable only
    /// when they name docker (the caller then gives its own `--docker-owner`).
    pub async fn start_on(backends: &str, args: &[&str]) -> Spawned {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(BINARY);
        if !backends.contains("docker") {
            command.env("DOCKER_HOST", "unix:///nonexistent.sock");
        }
        let child = command
            .args(["--listen", &addr.to_string(), "--backends", backends, "--deno-pool-size", "1"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let spawned = Spawned { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(response) = http(addr, "GET", "/health", &[], "").await {
                if response.status == 200 {
                    return spawned;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server on {addr} did not answer /health within 60 s");
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/jsonrpc", self.addr)
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY-free: plain kill(2) on our own child.
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`, `Host: ADDR` unless `headers` name one);
/// the body is read to the end.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    http_over(TcpStream::connect(addr).await?, addr, method, path, headers, body).await
}

/// A TCP connection to `addr` from the loopback address `source` (any 127.x.y.z works on
/// Linux), so a test can be several clients' addresses at once.
pub async fn connect_from(source: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// [`http`] from the loopback address `source`.
pub async fn http_from(
    source: [u8; 4],
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    http_over(connect_from(source, addr).await?, addr, method, path, headers, body).await
}

async fn http_over(
    mut stream: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no complete HTTP response within 30 s"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Whether python3 can import `modules`; `Err` says what is missing. With
/// `CODEBEAKER_REQUIRE_CLIENTS=1` a missing client is a failure, not a skip.
pub fn python_with(modules: &[&str], test: &str) -> bool {
    let import = format!("import {}", modules.join(", "));
    let found = std::process::Command::new("python3").args(["-c", &import]).output();
    let reason = match found {
        Ok(output) if output.status.success() => return true,
        Ok(output) => format!(
            "python3 cannot {import} (pip install {}): {}",
            modules.join(" ").replace('_', "-"),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => format!("python3 cannot run: {error}"),
    };
    if std::env::var("CODEBEAKER_REQUIRE_CLIENTS").as_deref() == Ok("1") {
        panic!("CODEBEAKER_REQUIRE_CLIENTS=1 but {reason}");
    }
    eprintln!("SKIPPED {test}: {reason}; set CODEBEAKER_REQUIRE_CLIENTS=1 to fail instead");
    false
}

/// Runs a Python script of `tests/python` with `args`; panics with its output on failure.
pub async fn run_python(script: &str, args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> String {
    let path = Path::new(PYTHON_DIR).join(script);
    let mut command = Command::new("python3");
    command.arg(&path).args(args).kill_on_drop(true).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("python3 runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 180 s"))
        .expect("python3 output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} {args:?} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}
