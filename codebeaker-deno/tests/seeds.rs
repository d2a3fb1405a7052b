//! Every Deno example of the original user guide (quoted in `docs/protocol.md`), as an agent sends it.

mod common;

use codebeaker::{Allowlist, Command};
use codebeaker_deno::DenoPermissions;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn typescript_greeting() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let code = "const greeting: string = 'Hello from Deno!';\nconsole.log(greeting);\nconst sum = (a: number, b: number): number => a + b;\nconsole.log(`Sum: ${sum(10, 20)}`);";
    let outcome = run(&manager, &id, code).await;
    assert!(outcome.success, "{:?}", outcome.to_json());
    assert_eq!(outcome.to_json()["result"], "Hello from Deno!\nSum: 30");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_then_importing_calculator_ts() {
    let (_root, _backend, manager) = manager();
    let id = session(&manager).await;
    let content = "interface Calculator {\n  add(a: number, b: number): number;\n}\n\nconst calc: Calculator = {\n  add: (a, b) => a + b\n};\n\nconsole.log('Result:', calc.add(15, 25));";
    let written = command(&manager, &id, Command::write_file("calculator.ts", content).unwrap()).await;
    assert!(written.success, "{:?}", written.to_json());
    let outcome = run(&manager, &id, "// Import from file\nimport('./calculator.ts');").await;
    assert!(outcome.success, "{:?}", outcome.to_json());
    assert_eq!(outcome.to_json()["result"], "Result: 40");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_example_reads_and_writes_but_no_net() {
    let (_root, _backend, manager) = manager();
    let permissions = DenoPermissions {
        allow_read: vec!["/workspace".into()],
        allow_write: vec!["/workspace".into()],
        allow_net: Allowlist::None,
        allow_env: Allowlist::None,
    };
    let id = session_with(&manager, permissions).await;
    let code = "await Deno.writeTextFile('/workspace/data.txt', 'Hello!');\nconst content = await Deno.readTextFile('/workspace/data.txt');\nconsole.log(content);";
    assert_eq!(output(&manager, &id, code).await, "Hello!");
    let read = command(&manager, &id, Command::read_file("data.txt").unwrap()).await;
    assert_eq!(read.to_json()["result"]["content"], "Hello!", "the file is in the workspace");
    let denied = error(&manager, &id, "const response = await fetch('https://api.github.com');").await;
    assert_eq!(denied, "PermissionDenied: Requires net access to \"api.github.com\"");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_iterations_like_the_agent_scenario() {
    let (_root, _backend, manager) = manager();
    for i in 0..10 {
        let id = session(&manager).await;
        assert_eq!(output(&manager, &id, &format!("console.log('Iteration {i}');")).await, format!("Iteration {i}"));
        manager.close(&id).await.unwrap();
    }
}
