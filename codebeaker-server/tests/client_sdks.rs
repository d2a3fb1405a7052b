//! The client SDKs against the real server binary, each running its own suite with
//! `CODEBEAKER_URL` pointing at a server with the Deno backend, and the Docker backend too
//! when `CODEBEAKER_REQUIRE_DOCKER=1` (CI):
//! - Python (`clients/python`): pytest on `clients/python/tests`, the package taken from
//!   the repository (`PYTHONPATH`), never an installed copy; python3 needs `websockets`,
//!   `pytest` and `jsonschema` (every message exchanged is checked against `docs/schema/`).
//! - TypeScript (`clients/typescript`): built from its sources with its own `tsc`, then
//!   `node --test`; needs node and the package's `npm install` (scripts/test.sh runs it).
//!
//! `CODEBEAKER_REQUIRE_CLIENTS=1` makes a missing tool a failure rather than a skip.

mod mcp_support;

use std::path::Path;
use std::time::Duration;

use mcp_support::{python_with, Spawned};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients");

fn docker_required() -> bool {
    std::env::var("CODEBEAKER_REQUIRE_DOCKER").as_deref() == Ok("1")
}

/// A server with Deno, and Docker when required (containers under `owner`).
async fn server(owner: &str) -> Spawned {
    if docker_required() {
        Spawned::start_on("deno,docker", &["--docker-owner", owner, "--docker-pool-size", "1"]).await
    } else {
        Spawned::start(&[]).await
    }
}

/// A Deno server admitting 1 request/s with a burst of 2: the suites' rate-limit tests.
async fn rate_limited() -> Spawned {
    Spawned::start(&["--rate-limit", "1", "--rate-burst", "2"]).await
}

/// Runs `program` with `args` in `dir` against `server` (and `limited` as the
/// rate-limited one); panics with its output unless it succeeds.
async fn suite(
    (server, limited): (&Spawned, &Spawned),
    dir: &str,
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> String {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env("CODEBEAKER_URL", format!("ws://{}", server.addr))
        .env("CODEBEAKER_RATE_LIMITED_URL", format!("ws://{}", limited.addr))
        .env("CODEBEAKER_SDK_DOCKER", if docker_required() { "1" } else { "0" })
        .kill_on_drop(true);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("the suite finishes within 10 minutes")
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_passes_its_suite_against_the_live_server() {
    if !python_with(&["websockets", "pytest", "jsonschema"], "the Python SDK suite") {
        return;
    }
    let (server, limited) = (server("codebeaker-test-python-sdk").await, rate_limited().await);
    let sdk = format!("{CLIENTS}/python");
    let envs = [("PYTHONPATH", sdk.as_str()), ("PYTHONDONTWRITEBYTECODE", "1")];
    let pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"];
    let out = suite((&server, &limited), &sdk, "python3", &pytest, &envs).await;
    assert!(!(docker_required() && out.contains("skipped")), "with Docker required nothing may be skipped:\n{out}");
    server.stop().await;
    limited.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_builds_and_passes_its_suite_against_the_live_server() {
    let sdk = format!("{CLIENTS}/typescript");
    let tsc = format!("{sdk}/node_modules/typescript/bin/tsc");
    let node = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !node || !Path::new(&tsc).exists() {
        let reason = format!("node and {sdk}/node_modules (npm install there) are needed");
        if std::env::var("CODEBEAKER_REQUIRE_CLIENTS").as_deref() == Ok("1") {
            panic!("CODEBEAKER_REQUIRE_CLIENTS=1 but {reason}");
        }
        eprintln!("SKIPPED the TypeScript SDK suite: {reason}");
        return;
    }
    let built =
        std::process::Command::new("node").args([tsc.as_str(), "-p", "tsconfig.json"]).current_dir(&sdk).output();
    let built = built.expect("node runs tsc");
    assert!(built.status.success(), "tsc failed:\n{}", String::from_utf8_lossy(&built.stdout));
    let (server, limited) = (server("codebeaker-test-typescript-sdk").await, rate_limited().await);
    let out = suite((&server, &limited), &sdk, "node", &["--test", "test/"], &[]).await;
    assert!(out.contains("# fail 0"), "{out}");
    assert!(!docker_required() || out.contains("# skipped 0"), "with Docker required nothing may be skipped:\n{out}");
    server.stop().await;
    limited.stop().await;
}
