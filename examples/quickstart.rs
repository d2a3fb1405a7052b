//! Quickstart: the SDK in-process with a Deno session. Write a TypeScript module, run code
//! that imports it, read the file it wrote, close. `cargo run --example quickstart`
use codebeaker::{Language, ManagerConfig, SessionConfig, SessionManager};
use codebeaker_deno::{DenoBackend, DenoConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Deno sessions run in worker processes that are this executable started again.
    codebeaker_deno::run_worker_if_requested();
    run()
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let manager = SessionManager::new(vec![DenoBackend::new(DenoConfig::default())?], ManagerConfig::default());
    let session = manager.open(SessionConfig::new(Language::TypeScript)).await?;

    let module = "export const greet = (name: string): string => `Hello, ${name}!`;";
    session.write_file("greet.ts", module).await?;

    let code = r#"
        const { greet } = await import('./greet.ts');
        const message: string = greet('agent');
        await Deno.writeTextFile('message.txt', message);
        console.log(message);
    "#;
    let ran = session.run_code(code).await?;
    println!("execute_code -> {:?} in {} ms", ran.output(), ran.duration_ms);
    assert!(ran.succeeded(), "the code should run: {:?}", ran.error());

    let read = session.read_file("message.txt").await?;
    println!("read_file    -> {:?}", read.content);
    assert_eq!(read.content, "Hello, agent!");

    let id = session.id().clone();
    session.close().await?;
    println!("session {id} closed");
    Ok(())
}
