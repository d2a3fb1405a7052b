//! Who may drive the server and what they may ask for, over the real HTTP stack: browser
//! origins refused (403), operator caps answered with `-32602` naming the cap, and a bad
//! policy or keys file stopping the binary before it listens.
//!
//! Protocol mechanics only, so these run on the temp-dir test backend.

mod common;

use std::process::Command as Process;

use codebeaker_server::ServerConfig;
use common::{raw_http, tempdir_server, Client};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws/jsonrpc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn browser_origins_are_refused_unless_allowed() {
    let config = ServerConfig {
        allowed_origins: vec!["https://app.example.com".into()],
        token: Some("s3cret-token".into()),
        ..ServerConfig::ephemeral()
    };
    let (server, backend) = tempdir_server(config).await;
    let addr = server.local_addr();
    let token = "Authorization: Bearer s3cret-token\r\n";

    // A page of another origin is refused even with a valid token, and nothing is touched.
    for origin in ["http://127.0.0.1:5000", "null", "https://app.example.com.evil.example", "https://evil.example"] {
        let (status, body) = raw_http(addr, &upgrade_request(&format!("{token}Origin: {origin}\r\n"))).await;
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(body.contains("--allowed-origins"), "{body}");
    }
    let mut request = format!("{}?token=s3cret-token", server.ws_url()).into_client_request().unwrap();
    request.headers_mut().insert("Origin", "https://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await.expect_err("a foreign origin");
    assert!(refused.to_string().contains("403"), "{refused}");
    assert_eq!(backend.created(), 0);

    // The allowed origin (any case) and clients without Origin are served.
    let mut request = format!("{}?token=s3cret-token", server.ws_url()).into_client_request().unwrap();
    request.headers_mut().insert("Origin", "HTTPS://App.Example.com".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("the allowed origin");
    drop(ws);
    let mut plain = Client::connect(&format!("{}?token=s3cret-token", server.ws_url())).await;
    assert_eq!(plain.call("session.list", json!({})).await["count"], 0);
    plain.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn requests_over_the_operators_caps_name_the_cap() {
    let mut config = ServerConfig::ephemeral();
    config.manager.policy.max_memory_mb = 1024;
    config.manager.policy.max_lifetime_minutes = 180.0;
    let (server, backend) = tempdir_server(config).await;
    let mut c = Client::connect(&server.ws_url()).await;
    for (params, setting, cap) in [
        (json!({"language": "deno", "memoryLimitMB": 4096}), "memoryLimitMB", "max-memory-mb = 1024"),
        (json!({"language": "deno", "maxLifetimeMinutes": 600}), "maxLifetimeMinutes", "max-lifetime-minutes = 180"),
        (json!({"language": "deno", "defaultTimeoutMs": 999_999_999u64}), "defaultTimeoutMs", "3600000"),
    ] {
        let (code, error) = c.call_err("session.create", params.clone()).await;
        assert_eq!(code, -32602, "{params}: {error}");
        let data = error["data"].as_str().unwrap_or_default();
        assert!(data.contains(setting) && data.contains(cap), "{params}: {error}");
    }
    assert_eq!(backend.created(), 0);
    // Within the caps is fine.
    c.create(json!({"language": "deno", "memoryLimitMB": 1024})).await;
    c.close().await;
    server.shutdown().await;
}

fn server_binary(args: &[&str]) -> (bool, String) {
    let output = Process::new(env!("CARGO_BIN_EXE_codebeaker-server"))
        .args(["--listen", "127.0.0.1:0", "--backends", "deno"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the server binary");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_policies_and_key_files_stop_the_binary_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "max-memory-mb = 1024\nworkspace-mb = 0\n").unwrap();
    let (ok, stderr) = server_binary(&["--policy", policy.to_str().unwrap()]);
    assert!(!ok && stderr.contains("workspace-mb"), "{stderr}");

    std::fs::write(&policy, "[net]\negres = false\n").unwrap();
    let (ok, stderr) = server_binary(&["--policy", policy.to_str().unwrap()]);
    assert!(!ok && stderr.contains("egres"), "{stderr}");

    let (ok, stderr) = server_binary(&["--max-memory-mb", "1"]);
    assert!(!ok && stderr.contains("max-memory-mb"), "{stderr}");

    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# tenants\nalice alice-token-123\nbob\n").unwrap();
    let (ok, stderr) = server_binary(&["--api-keys", keys.to_str().unwrap()]);
    assert!(!ok && stderr.contains("line 3"), "{stderr}");

    let (ok, stderr) = server_binary(&["--api-keys", "/nonexistent/keys"]);
    assert!(!ok && stderr.contains("/nonexistent/keys"), "{stderr}");
}
