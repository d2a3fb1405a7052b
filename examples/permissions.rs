//! Deno permission sets: what a session may touch by default, how to grant more, and the
//! exact errors code gets when it reaches past them. `cargo run --example permissions`
use codebeaker::{
    Allowlist, Command, DenoPermissions, ExecOptions, Language, ManagerConfig, Policy, SessionConfig, SessionManager,
};
use codebeaker_deno::{DenoBackend, DenoConfig};

/// Runs `code` and checks that it was allowed, or denied with an error containing `denial`.
async fn attempt(manager: &SessionManager, id: &str, what: &str, code: &str, denial: Option<&str>) {
    let outcome =
        manager.execute(id, Command::code(code), ExecOptions::default()).await.expect("the session runs code");
    let json = outcome.to_json();
    match denial {
        None => {
            println!("  allowed  {what:<38} -> {}", json["result"]);
            assert!(outcome.success, "{what} should be allowed: {json}");
        }
        Some(expected) => {
            println!("  denied   {what:<38} -> {}", json["error"]);
            let error = json["error"].as_str().unwrap_or_default();
            assert!(!outcome.success && error.contains(expected), "{what} should fail with {expected:?}: {json}");
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
    let policy = Policy { grantable_paths: vec![shared.path().to_path_buf()], ..Policy::default() };
    let manager = SessionManager::new(
        vec![DenoBackend::new(DenoConfig::default())?],
        ManagerConfig { policy, ..ManagerConfig::default() },
    );

    println!("default permissions: the session's own workspace, nothing else");
    let id = manager.create(SessionConfig::new(Language::Deno)).await?.session_id;
    let write_read =
        "await Deno.writeTextFile('/workspace/data.txt', 'Hello!');\nconsole.log(await Deno.readTextFile('data.txt'));";
    attempt(&manager, &id, "write and read /workspace/data.txt", write_read, None).await;
    let host_file = "console.log(await Deno.readTextFile('/etc/hostname'));";
    attempt(
        &manager,
        &id,
        "read /etc/hostname",
        host_file,
        Some("PermissionDenied: Requires read access to \"/etc/hostname\""),
    )
    .await;
    let escape = "await Deno.writeTextFile('../escaped.txt', 'x');";
    attempt(&manager, &id, "write ../escaped.txt", escape, Some("PermissionDenied: Requires write access")).await;
    let net = "await fetch('https://api.github.com');";
    attempt(
        &manager,
        &id,
        "fetch https://api.github.com",
        net,
        Some("PermissionDenied: Requires net access to \"api.github.com\""),
    )
    .await;
    let env = "console.log(Deno.env.get('HOME'));";
    attempt(&manager, &id, "read $HOME", env, Some("PermissionDenied: Requires env access to \"HOME\"")).await;
    manager.close(&id).await?;

    println!("\ngranted: read one host directory, and the GREETING variable");
    std::fs::write(shared.path().join("dataset.csv"), "name,age\nAlice,30\n")?;
    let shared_dir = shared.path().display().to_string();
    let mut config = SessionConfig::new(Language::Deno);
    config.permissions = DenoPermissions {
        allow_read: vec!["/workspace".into(), shared_dir.clone()],
        allow_write: vec!["/workspace".into()],
        allow_net: Allowlist::None,
        allow_env: Allowlist::Only(vec!["GREETING".into()]),
    };
    let id = manager.create(config).await?.session_id;
    let read_shared = format!("console.log(await Deno.readTextFile('{shared_dir}/dataset.csv'));");
    attempt(&manager, &id, "read the granted dataset.csv", &read_shared, None).await;
    let write_shared = format!("await Deno.writeTextFile('{shared_dir}/dataset.csv', 'overwritten');");
    attempt(
        &manager,
        &id,
        "write the read-only dataset.csv",
        &write_shared,
        Some("PermissionDenied: Requires write access"),
    )
    .await;
    let greeting = "Deno.env.set('GREETING', 'hi');\nconsole.log(Deno.env.get('GREETING'));";
    attempt(&manager, &id, "set and get GREETING", greeting, None).await;
    attempt(&manager, &id, "read $HOME", env, Some("PermissionDenied: Requires env access to \"HOME\"")).await;
    manager.close(&id).await?;
    Ok(())
}
