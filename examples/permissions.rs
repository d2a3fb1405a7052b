//! Deno permission sets: what a session may touch by default, how to grant more, and the
//! exact errors code gets when it reaches past them. `cargo run --example permissions`
use codebeaker::{Allowlist, Language, ManagerConfig, Policy, Session, SessionConfig, SessionManager};
use codebeaker_deno::{DenoBackend, DenoConfig, DenoOptions, DenoPermissions};

/// Runs `code` and checks that it was allowed, or denied with an error containing `denial`.
async fn attempt(session: &Session, what: &str, code: &str, denial: Option<&str>) {
    let ran = session.run_code(code).await.expect("the session runs code");
    match denial {
        None => {
            println!("  allowed  {what:<38} -> {:?}", ran.output());
            assert!(ran.succeeded(), "{what} should be allowed: {ran:?}");
        }
        Some(expected) => {
            let error = ran.error().unwrap_or_default();
            println!("  denied   {what:<38} -> {error:?}");
            assert!(!ran.succeeded() && error.contains(expected), "{what} should fail with {expected:?}: {ran:?}");
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Deno sessions run in worker processes that are this executable started again.
    codebeaker_deno::run_worker_if_requested();
    run()
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Host paths are the operator's to make grantable; sessions may then ask for them.
    let shared = tempfile::tempdir()?;
    // They live in the Deno backend's table of the policy (`[backends.deno]`).
    let mut policy = Policy::default();
    policy.backends.insert("deno".into(), serde_json::json!({"grantable-paths": [shared.path()]}));
    let manager = SessionManager::new(
        vec![DenoBackend::new(DenoConfig::default())?],
        ManagerConfig { policy, ..ManagerConfig::default() },
    );

    println!("default permissions: the session's own workspace, nothing else");
    let session = manager.open(SessionConfig::new(Language::TypeScript)).await?;
    let write_read =
        "await Deno.writeTextFile('/workspace/data.txt', 'Hello!');\nconsole.log(await Deno.readTextFile('data.txt'));";
    attempt(&session, "write and read /workspace/data.txt", write_read, None).await;
    let host_file = "console.log(await Deno.readTextFile('/etc/hostname'));";
    attempt(
        &session,
        "read /etc/hostname",
        host_file,
        Some("PermissionDenied: Requires read access to \"/etc/hostname\""),
    )
    .await;
    let escape = "await Deno.writeTextFile('../escaped.txt', 'x');";
    attempt(&session, "write ../escaped.txt", escape, Some("PermissionDenied: Requires write access")).await;
    let net = "await fetch('https://api.github.com');";
    attempt(
        &session,
        "fetch https://api.github.com",
        net,
        Some("PermissionDenied: Requires net access to \"api.github.com\""),
    )
    .await;
    let env = "console.log(Deno.env.get('HOME'));";
    attempt(&session, "read $HOME", env, Some("PermissionDenied: Requires env access to \"HOME\"")).await;
    session.close().await?;

    println!("\ngranted: read one host directory, and the GREETING variable");
    std::fs::write(shared.path().join("dataset.csv"), "name,age\nAlice,30\n")?;
    let shared_dir = shared.path().display().to_string();
    let permissions = DenoPermissions {
        allow_read: vec!["/workspace".into(), shared_dir.clone()],
        allow_write: vec!["/workspace".into()],
        allow_net: Allowlist::None,
        allow_env: Allowlist::Only(vec!["GREETING".into()]),
    };
    // The Deno backend's own options, under its name in `backendOptions`.
    let config = DenoOptions { permissions }.apply(SessionConfig::new(Language::TypeScript))?;
    let session = manager.open(config).await?;
    let read_shared = format!("console.log(await Deno.readTextFile('{shared_dir}/dataset.csv'));");
    attempt(&session, "read the granted dataset.csv", &read_shared, None).await;
    let write_shared = format!("await Deno.writeTextFile('{shared_dir}/dataset.csv', 'overwritten');");
    attempt(
        &session,
        "write the read-only dataset.csv",
        &write_shared,
        Some("PermissionDenied: Requires write access"),
    )
    .await;
    let greeting = "Deno.env.set('GREETING', 'hi');\nconsole.log(Deno.env.get('GREETING'));";
    attempt(&session, "set and get GREETING", greeting, None).await;
    attempt(&session, "read $HOME", env, Some("PermissionDenied: Requires env access to \"HOME\"")).await;
    session.close().await?;
    Ok(())
}
