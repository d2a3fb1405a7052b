//! The shape of a real agent loop, with a scripted "model" in place of an LLM: it writes
//! code, runs it, sees the failure, fixes the file, runs again and reads the result.
//!
//! Runs Python in a Docker session when an engine answers, and TypeScript in a Deno
//! session otherwise. `cargo run --example agent_loop`
use std::sync::Arc;
use std::time::Duration;

use codebeaker::{
    Backend, Command, CommandOutcome, CommandResult, Language, ManagerConfig, SessionConfig, SessionManager,
};
use codebeaker_deno::{DenoBackend, DenoConfig};
use codebeaker_docker::{DockerBackend, DockerConfig};

/// One step the model asks for, and what it expects to learn from it.
struct ToolCall {
    thought: &'static str,
    command: Command,
}

/// The model's script for each language: the first program has a bug (a misspelt name).
fn script(language: Language) -> codebeaker::Result<Vec<ToolCall>> {
    let (file, buggy, fixed, run) = match language {
        Language::Python => (
            "stats.py",
            "import json\nvalues = [3, 1, 4, 1, 5, 9, 2, 6]\nmean = sum(values) / len(value)\njson.dump({'mean': mean, 'max': max(values)}, open('result.json', 'w'))\nprint(f'mean={mean}')\n",
            "import json\nvalues = [3, 1, 4, 1, 5, 9, 2, 6]\nmean = sum(values) / len(values)\njson.dump({'mean': mean, 'max': max(values)}, open('result.json', 'w'))\nprint(f'mean={mean}')\n",
            Command::shell("python3", ["stats.py"]),
        ),
        _ => (
            "stats.ts",
            "const values: number[] = [3, 1, 4, 1, 5, 9, 2, 6];\nconst mean = values.reduce((a, b) => a + b, 0) / value.length;\nawait Deno.writeTextFile('result.json', JSON.stringify({ mean, max: Math.max(...values) }));\nconsole.log(`mean=${mean}`);\n",
            "const values: number[] = [3, 1, 4, 1, 5, 9, 2, 6];\nconst mean = values.reduce((a, b) => a + b, 0) / values.length;\nawait Deno.writeTextFile('result.json', JSON.stringify({ mean, max: Math.max(...values) }));\nconsole.log(`mean=${mean}`);\n",
            Command::code("await import('./stats.ts');"),
        ),
    };
    Ok(vec![
        ToolCall { thought: "write a script that computes statistics", command: Command::write_file(file, buggy)? },
        ToolCall { thought: "run it", command: run.clone() },
        ToolCall {
            thought: "the run failed: fix the misspelt name and write the file again",
            command: Command::write_file(file, fixed)?,
        },
        ToolCall { thought: "run it again", command: run },
        ToolCall { thought: "read the result file", command: Command::read_file("result.json")? },
    ])
}

/// Docker when an engine answers, else the in-process Deno backend.
async fn pick_backend() -> Result<(Arc<dyn Backend>, Language), codebeaker::Error> {
    let docker = DockerBackend::connect(DockerConfig::default().with_pool_size(0));
    match tokio::time::timeout(Duration::from_secs(15), docker).await {
        Ok(Ok(backend)) => return Ok((backend, Language::Python)),
        Ok(Err(error)) => println!("Docker is unavailable ({error}); falling back to Deno"),
        Err(_) => println!("Docker did not answer in 15 s; falling back to Deno"),
    }
    Ok((DenoBackend::new(DenoConfig::default())?, Language::TypeScript))
}

/// What the model sees of a tool call: the essentials, the way a prompt would carry them.
fn observe(outcome: &CommandOutcome) -> String {
    match (outcome.is_success(), outcome.result()) {
        (true, Some(CommandResult::ExecuteShell(shell))) if shell.exit_code() != 0 => {
            format!("exit code {}; stderr: {}", shell.exit_code(), last_line(shell.stderr()))
        }
        (true, Some(CommandResult::ExecuteShell(shell))) => format!("exit code 0; stdout: {}", shell.stdout().trim()),
        (true, Some(result)) => format!("ok: {}", result.to_json()),
        _ => format!("failed: {}", last_line(&outcome.error_message().unwrap_or_default())),
    }
}

fn last_line(text: &str) -> String {
    text.trim().lines().last().unwrap_or("").to_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Deno sessions run in worker processes that are this executable started again.
    codebeaker_deno::run_worker_if_requested();
    run()
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (backend, language) = pick_backend().await?;
    println!("agent session: {language} on the {} backend\n", backend.name());
    let manager = SessionManager::new(vec![backend], ManagerConfig::default());
    let session = manager.open(SessionConfig::new(language)).await?;

    let mut observations = Vec::new();
    for (step, call) in script(language)?.into_iter().enumerate() {
        println!("step {}: {}", step + 1, call.thought);
        println!("  -> {}", serde_json::to_string(&call.command)?.chars().take(110).collect::<String>());
        let outcome = session.execute(call.command).await?;
        let seen = observe(&outcome);
        println!("  <- {seen} ({} ms)\n", outcome.duration_ms);
        observations.push((outcome, seen));
    }
    session.close().await?;
    // A closed Docker session's container is removed in the background; shutdown waits for
    // that (a program that just exits leaves it to the next start-up sweep of its owner).
    manager.shutdown().await;

    // The loop worked if the first run failed, the second succeeded and the result is right.
    assert!(observations[1].1.contains("value"), "the buggy run should fail naming the typo: {}", observations[1].1);
    assert!(observations[3].1.contains("mean=3.875"), "the fixed run should print the mean: {}", observations[3].1);
    let report = observations[4].0.result().and_then(CommandResult::as_read_file).map(|read| read.content.as_str());
    let result: serde_json::Value = serde_json::from_str(report.unwrap_or("{}"))?;
    assert_eq!((result["mean"].as_f64(), result["max"].as_i64()), (Some(3.875), Some(9)));
    println!("final answer: mean {} and max {}", result["mean"], result["max"]);
    Ok(())
}
