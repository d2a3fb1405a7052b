//! Quickstart: the SDK in-process with a Deno session. Write a TypeScript module, run code
//! that imports it, read the file it wrote, close. `cargo run --example quickstart`
use codebeaker::{Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_deno::{DenoBackend, DenoConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Deno sessions run in worker processes that are this executable started again.
    codebeaker_deno::run_worker_if_requested();
    run()
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let manager = SessionManager::new(vec![DenoBackend::new(DenoConfig::default())?], ManagerConfig::default());
    let session = manager.create(SessionConfig::new(Language::Deno)).await?;
    let id = session.session_id.as_str();
    let run = |command| manager.execute(id, command, ExecOptions::default());

    let module = "export const greet = (name: string): string => `Hello, ${name}!`;";
    run(Command::write_file("greet.ts", module)).await?;

    let code = r#"
        const { greet } = await import('./greet.ts');
        const message: string = greet('agent');
        await Deno.writeTextFile('message.txt', message);
        console.log(message);
    "#;
    let ran = run(Command::code(code)).await?;
    println!("execute_code -> {}", ran.to_json());
    assert!(ran.success, "the code should run: {:?}", ran.error);

    let read = run(Command::read_file("message.txt")).await?;
    println!("read_file    -> {}", read.to_json()["result"]["content"]);
    assert_eq!(read.to_json()["result"]["content"], "Hello, agent!");

    manager.close(id).await?;
    println!("session {id} closed");
    Ok(())
}
