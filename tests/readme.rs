//! The README's Rust example, run as written: the body of `readme_rust_example_runs` is
//! the README's block line for line, and `readme_block_matches_this_test` fails when the
//! two drift apart. (scripts/examples.sh runs the README's Python example.)

const START: &str = "// README example: start\n";
const END: &str = "    // README example: end";

#[tokio::test(flavor = "multi_thread")]
async fn readme_rust_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    // README example: start
    use codebeaker::{Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
    use codebeaker_deno::{DenoBackend, DenoConfig};

    let manager = SessionManager::new(vec![DenoBackend::new(DenoConfig::default())?], ManagerConfig::default());
    let session = manager.create(SessionConfig::new(Language::Deno)).await?;
    let id = &session.session_id;
    manager
        .execute(
            id,
            Command::write_file("greet.ts", "export const hi = (n: string) => `hi ${n}`;"),
            ExecOptions::default(),
        )
        .await?;
    let out = manager
        .execute(id, Command::code("console.log((await import('./greet.ts')).hi('agent'))"), ExecOptions::default())
        .await?;
    assert_eq!(out.to_json()["result"], "hi agent");
    manager.close(id).await?;
    // README example: end
    Ok(())
}

#[test]
fn readme_block_matches_this_test() {
    let readme = include_str!("../README.md");
    let block =
        readme.split("```rust\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a rust block in README.md");
    let source = include_str!("readme.rs");
    let body = source.split(START).nth(1).and_then(|rest| rest.split(END).next()).expect("the example in this test");
    let dedented: String =
        body.lines().map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line))).collect();
    assert_eq!(dedented, block, "README.md's Rust example and tests/readme.rs differ");
}
