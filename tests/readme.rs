//! The README's Rust example, run as written: the body of `readme_rust_example_runs` is
//! the README's block line for line, and `readme_block_matches_this_test` fails when the
//! two drift apart. (scripts/examples.sh runs the README's Python example.)

const START: &str = "// README example: start\n";
const END: &str = "    // README example: end";

#[tokio::test(flavor = "multi_thread")]
async fn readme_rust_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    // README example: start
    use codebeaker::{Language, ManagerConfig, SessionConfig, SessionManager};
    use codebeaker_deno::{DenoBackend, DenoConfig};

    let manager = SessionManager::new(vec![DenoBackend::new(DenoConfig::default())?], ManagerConfig::default());
    let session = manager.open(SessionConfig::new(Language::TypeScript)).await?;
    session.write_file("greet.ts", "export const hi = (n: string) => `hi ${n}`;").await?;
    let ran = session.run_code("console.log((await import('./greet.ts')).hi('agent'))").await?;
    assert!(ran.succeeded(), "{:?}", ran.error());
    assert_eq!(ran.output(), "hi agent");
    // Dropped without close(), a session closes in the background.
    session.close().await?;
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
