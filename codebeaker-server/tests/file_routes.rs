//! The streamed file routes (`GET`/`PUT /v1/sessions/{sessionId}/files/{path}`) over real
//! HTTP: round trips bigger than any chunk, offsets and appends, the same refusals as the
//! WebSocket (another tenant's session is 404 like an unknown one, a foreign Origin 403,
//! no token 401), 413 over the workspace size, 400 for a path out of `/workspace`, and the
//! server's memory staying flat while 256 MiB go through each way.
//!
//! The routes' mechanics, so these run on the temp-dir test backend (whose workspace is a
//! host directory, as Deno's is); the Docker and Deno paths are the conformance suite's.

mod common;

use std::net::SocketAddr;

use codebeaker_server::{ApiKeys, ServerConfig};
use common::{tempdir_server, Client};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const KEYS: &str = "alice alice-token-0001\nbob bob-token-0002\n";
const ALICE: &str = "alice-token-0001";

fn config() -> ServerConfig {
    ServerConfig {
        api_keys: ApiKeys::parse(KEYS).unwrap(),
        allowed_origins: vec!["https://app.example.com".into()],
        ..ServerConfig::ephemeral()
    }
}

/// A response: status, headers (lowercased names) and the body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request whose body is `len` bytes made by `fill(offset, buffer)`, streamed
/// 1 MiB at a time, and reads the response, passing its body 1 MiB at a time to `sink`
/// (the reply keeps the body only when `keep`).
async fn request(
    addr: SocketAddr,
    head: &str,
    len: Option<u64>,
    mut fill: impl FnMut(u64, &mut [u8]),
    mut sink: impl FnMut(u64, &[u8]),
    keep: bool,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let length = len.map(|len| format!("Content-Length: {len}\r\n")).unwrap_or_default();
    stream.write_all(format!("{head}Host: x\r\n{length}\r\n").as_bytes()).await.expect("head");
    let mut buffer = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    while sent < len.unwrap_or(0) {
        let n = (len.unwrap_or(0) - sent).min(buffer.len() as u64) as usize;
        fill(sent, &mut buffer[..n]);
        if stream.write_all(&buffer[..n]).await.is_err() {
            break; // refused early: the response says why
        }
        sent += n as u64;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.expect("read head"), 1, "connection closed in the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let mut body = Vec::new();
    let mut received = 0u64;
    loop {
        let n = stream.read(&mut buffer).await.expect("read body");
        if n == 0 {
            break;
        }
        sink(received, &buffer[..n]);
        received += n as u64;
        if keep {
            body.extend_from_slice(&buffer[..n]);
        }
    }
    Reply { status, headers, body }
}

fn pattern(offset: u64, buffer: &mut [u8]) {
    for (i, b) in buffer.iter_mut().enumerate() {
        *b = ((offset + i as u64) % 251) as u8;
    }
}

async fn put(addr: SocketAddr, session: &str, path: &str, data: &[u8], extra: &str) -> Reply {
    let head = format!("PUT /v1/sessions/{session}/files/{path} HTTP/1.1\r\n{extra}");
    request(
        addr,
        &head,
        Some(data.len() as u64),
        |at, b| b.copy_from_slice(&data[at as usize..][..b.len()]),
        |_, _| {},
        true,
    )
    .await
}

async fn get(addr: SocketAddr, session: &str, path: &str, extra: &str) -> Reply {
    let head = format!("GET /v1/sessions/{session}/files/{path} HTTP/1.1\r\n{extra}");
    request(addr, &head, None, |_, _| {}, |_, _| {}, true).await
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_stream_in_and_out_with_offsets_and_appends() {
    let (server, _backend) = tempdir_server(config()).await;
    let addr = server.local_addr();
    let mut alice = Client::connect(&format!("{}?token={ALICE}", server.ws_url())).await;
    let id = alice.create(json!({"language": "deno"})).await;
    let mut data = vec![0u8; 3 * 1024 * 1024 + 777];
    pattern(0, &mut data);

    let put1 = put(addr, &id, "big/data.bin", &data, &bearer(ALICE)).await;
    assert_eq!(put1.status, 200, "{}", String::from_utf8_lossy(&put1.body));
    assert_eq!(put1.json(), json!({"path": "/workspace/big/data.bin", "bytes": data.len()}));
    let got = get(addr, &id, "big/data.bin", &bearer(ALICE)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("x-file-size"), Some(data.len().to_string().as_str()));
    assert!(got.body == data, "the download is the upload ({} bytes back)", got.body.len());

    let appended = put(addr, &id, "big/data.bin?append=true", b"!tail", &bearer(ALICE)).await;
    assert_eq!(appended.json()["bytes"], 5);
    let from = get(addr, &id, "big/data.bin?offset=3145728", &bearer(ALICE)).await;
    let mut expected = data[3145728..].to_vec();
    expected.extend_from_slice(b"!tail");
    assert_eq!(from.header("content-length"), Some(expected.len().to_string().as_str()));
    assert!(from.body == expected, "offset download: {} bytes", from.body.len());
    let past = get(addr, &id, "big/data.bin?offset=999999999", &bearer(ALICE)).await;
    assert_eq!((past.status, past.body.len()), (200, 0), "an offset past the end gives no bytes");

    // What the routes wrote, the commands see: a range of it over the WebSocket.
    let read = alice
        .execute(&id, json!({"type": "read_file", "path": "big/data.bin", "encoding": "base64", "offset": 3145728 + 777, "length": 100}))
        .await;
    assert_eq!(read["result"]["content"], "IXRhaWw=", "{read}");
    assert_eq!((read["result"]["bytes"].clone(), read["result"]["eof"].clone()), (json!(5), json!(true)), "{read}");
    assert_eq!(read["result"]["size"], data.len() + 5, "{read}");

    let missing = get(addr, &id, "nothing.bin", &bearer(ALICE)).await;
    assert_eq!((missing.status, missing.json()["error"]["code"].clone()), (404, json!("not_found")));
    let directory = get(addr, &id, "big", &bearer(ALICE)).await;
    assert_eq!(directory.status, 400, "{}", String::from_utf8_lossy(&directory.body));
    let escape = put(addr, &id, "..%2F..%2Fescape.txt", b"x", &bearer(ALICE)).await;
    assert_eq!(escape.status, 400, "{}", String::from_utf8_lossy(&escape.body));
    assert!(escape.json()["error"]["message"].as_str().unwrap().contains("outside /workspace"), "{}", escape.json());
    server.shutdown().await;
}

#[tokio::test]
async fn the_routes_refuse_other_tenants_foreign_origins_and_missing_tokens() {
    let (server, _backend) = tempdir_server(config()).await;
    let addr = server.local_addr();
    let mut alice = Client::connect(&format!("{}?token={ALICE}", server.ws_url())).await;
    let id = alice.create(json!({"language": "deno"})).await;
    assert_eq!(put(addr, &id, "secret.txt", b"alice's", &bearer(ALICE)).await.status, 200);
    let unknown = "00000000-0000-4000-8000-000000000000";

    let bob = bearer("bob-token-0002");
    for (foreign, missing) in [
        (get(addr, &id, "secret.txt", &bob).await, get(addr, unknown, "secret.txt", &bob).await),
        (put(addr, &id, "secret.txt", b"bob's", &bob).await, put(addr, unknown, "secret.txt", b"bob's", &bob).await),
    ] {
        assert_eq!(foreign.status, 404);
        let blank = |reply: &Reply, session: &str| String::from_utf8_lossy(&reply.body).replace(session, "ID");
        assert_eq!(blank(&foreign, &id), blank(&missing, unknown), "another tenant's session must look unknown");
    }
    let origin = format!("{}Origin: https://evil.example\r\n", bearer(ALICE));
    assert_eq!(get(addr, &id, "secret.txt", &origin).await.status, 403);
    assert_eq!(put(addr, &id, "secret.txt", b"evil", &origin).await.status, 403);
    let allowed = format!("{}Origin: https://app.example.com\r\n", bearer(ALICE));
    assert_eq!(get(addr, &id, "secret.txt", &allowed).await.status, 200);
    assert_eq!(get(addr, &id, "secret.txt", "").await.status, 401);
    assert_eq!(put(addr, &id, "secret.txt", b"anon", &bearer("wrong-token")).await.status, 401);
    let kept = get(addr, &id, "secret.txt", &bearer(ALICE)).await;
    assert_eq!(kept.body, b"alice's", "no refused request changed the file");
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_over_the_workspace_size_is_413() {
    let mut config = config();
    config.manager.policy.workspace_mb = 1;
    let (server, _backend) = tempdir_server(config).await;
    let addr = server.local_addr();
    let mut alice = Client::connect(&format!("{}?token={ALICE}", server.ws_url())).await;
    let id = alice.create(json!({"language": "deno"})).await;
    let big = vec![7u8; 2 * 1024 * 1024];
    let refused = put(addr, &id, "big.bin", &big, &bearer(ALICE)).await;
    assert_eq!((refused.status, refused.json()["error"]["code"].clone()), (413, json!("limit_reached")));
    let listed = alice.execute(&id, json!({"type": "list_directory", "path": "/workspace"})).await;
    assert_eq!(listed["result"]["entries"], json!([]), "nothing of a refused upload stays: {listed}");
    server.shutdown().await;
}

/// Resident and peak-resident memory of this process (the server runs in it), in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    (field("VmRSS:").expect("VmRSS") * 1024, field("VmHWM:").expect("VmHWM") * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_while_256_mib_go_through_each_way() {
    const SIZE: u64 = 256 * 1024 * 1024;
    const ALLOWED_GROWTH: u64 = 64 * 1024 * 1024;
    let mut config = config();
    // Room for the file and the warm-up beside it (the temp-dir backend keeps the quota).
    config.manager.policy.workspace_mb = 2 * SIZE / (1024 * 1024);
    let (server, _backend) = tempdir_server(config).await;
    let addr = server.local_addr();
    let mut alice = Client::connect(&format!("{}?token={ALICE}", server.ws_url())).await;
    let id = alice.create(json!({"language": "deno"})).await;
    // A first small transfer warms the allocator and the runtime's blocking pool.
    assert_eq!(put(addr, &id, "warm.bin", &[1u8; 4096], &bearer(ALICE)).await.status, 200);
    // Reset the peak so it measures from here (writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    let (start, _) = memory();

    let head = format!("PUT /v1/sessions/{id}/files/huge.bin HTTP/1.1\r\n{}", bearer(ALICE));
    let up = request(addr, &head, Some(SIZE), pattern, |_, _| {}, true).await;
    assert_eq!(up.status, 200, "{}", String::from_utf8_lossy(&up.body));
    let head = format!("GET /v1/sessions/{id}/files/huge.bin HTTP/1.1\r\n{}", bearer(ALICE));
    let mut mismatch = None;
    let mut total = 0u64;
    let down = request(
        addr,
        &head,
        None,
        |_, _| {},
        |at, bytes| {
            let mut want = vec![0u8; bytes.len()];
            pattern(at, &mut want);
            if mismatch.is_none() && want != bytes {
                mismatch = Some(at);
            }
            total = at + bytes.len() as u64;
        },
        false,
    )
    .await;
    assert_eq!((down.status, total, mismatch), (200, SIZE, None), "the download is the upload");
    let (_, peak) = memory();
    let growth = peak.saturating_sub(start);
    assert!(
        growth <= ALLOWED_GROWTH,
        "the server's peak RSS grew by {} MiB moving 256 MiB each way (bound: 64 MiB)",
        growth / (1024 * 1024)
    );
    server.shutdown().await;
}
