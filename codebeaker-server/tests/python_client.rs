//! A client in another language: `tests/clients/seed_client.py` (the seed guide's Python
//! example, then its walkthrough) against a live server, with `websockets` from PyPI.
//!
//! Skipped loudly when python3 or `websockets` is missing, unless
//! `CODEBEAKER_REQUIRE_CLIENTS=1` makes that a failure (CI sets it and installs
//! `websockets`).

mod common;

use std::time::Duration;

use codebeaker_server::ServerConfig;
use common::real_server;

fn python_with_websockets() -> Result<(), String> {
    let output = std::process::Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .map_err(|e| format!("python3 cannot run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 cannot import websockets (pip install websockets): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[tokio::test]
async fn python_client_runs_the_guide_example() {
    if let Err(reason) = python_with_websockets() {
        if std::env::var("CODEBEAKER_REQUIRE_CLIENTS").as_deref() == Ok("1") {
            panic!("CODEBEAKER_REQUIRE_CLIENTS=1 but {reason}");
        }
        eprintln!(
            "SKIPPED python_client_runs_the_guide_example: {reason}; set CODEBEAKER_REQUIRE_CLIENTS=1 to fail instead"
        );
        return;
    }
    let server = real_server("python-client", ServerConfig::ephemeral()).await;
    let docker = server.docker_or_skip("python_client_runs_the_guide_example (python sessions)");
    server.require_deno();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/seed_client.py");
    let mut command = tokio::process::Command::new("python3");
    command.arg(script).arg(server.handle.ws_url());
    let run = tokio::time::timeout(Duration::from_secs(120), command.kill_on_drop(true).output())
        .await
        .expect("the Python client finished within 120 s")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the Python client failed ({}):\n{stdout}\n{stderr}", run.status);
    eprintln!("{stdout}");
    // The guide's example prints the session.create response as a Python dict.
    assert!(stdout.lines().next().is_some_and(|l| l.starts_with("{'jsonrpc': '2.0', 'id': 1")), "{stdout}");
    if docker {
        assert!(stdout.contains("python walkthrough: ok"), "{stdout}");
    }
    assert!(stdout.contains("deno walkthrough: ok"), "{stdout}");
    assert_eq!(server.handle.manager().count(), 0, "the client left sessions open");
    server.handle.shutdown().await;
}
