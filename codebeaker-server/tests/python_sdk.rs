//! The Python SDK (`clients/python`) against the real server binary: its pytest suite
//! (`clients/python/tests`) runs with `CODEBEAKER_URL` pointing at a server with the Deno
//! backend, and the Docker backend too when `CODEBEAKER_REQUIRE_DOCKER=1` (CI). The suite
//! is taken from the repository (`PYTHONPATH`), never from an installed copy; python3
//! needs `websockets` and `pytest` (`CODEBEAKER_REQUIRE_CLIENTS=1` makes their absence a
//! failure).

mod mcp_support;

use std::time::Duration;

use mcp_support::{python_with, Spawned};

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_passes_its_suite_against_the_live_server() {
    if !python_with(&["websockets", "pytest"], "the Python SDK suite") {
        return;
    }
    let docker = std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() == Ok("1");
    let server = if docker {
        Spawned::start_on("deno,docker", &["--docker-owner", "codebeaker-test-python-sdk", "--docker-pool-size", "1"])
            .await
    } else {
        Spawned::start(&[]).await
    };
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python");
    let run = tokio::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(sdk)
        .env("PYTHONPATH", sdk)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CODEBEAKER_URL", format!("ws://{}", server.addr))
        .env("CODEBEAKER_SDK_DOCKER", if docker { "1" } else { "0" })
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the suite finishes within 10 minutes")
        .expect("python3 runs pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python SDK suite failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let skipped = stdout.contains("skipped");
    assert!(!(docker && skipped), "with Docker required nothing may be skipped:\n{stdout}");
    server.stop().await;
}
