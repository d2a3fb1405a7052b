//! Sessions through the in-container agent on the real engine: notebook semantics of the
//! persistent python and node interpreters, rich outputs, usage and capabilities (the
//! agent's walls against guest code are in `walls.rs`).

mod common;

use std::time::Duration;

use codebeaker::{Command, CommandResult, ErrorKind, Language, SessionManager};
use common::{run, run_with, session, sh, shell};

fn result_text(outcome: &codebeaker::CommandOutcome) -> String {
    outcome.to_json()["result"].as_str().unwrap_or_default().to_owned()
}

fn code_result(outcome: &codebeaker::CommandOutcome) -> &codebeaker::CodeResult {
    match &outcome.result {
        Some(CommandResult::ExecuteCode(r)) => r,
        other => panic!("expected a code result, got {other:?} ({:?})", outcome.error),
    }
}

async fn python_notebook(manager: &SessionManager) {
    let id = session(manager, Language::Python).await;
    let info = manager.info(&id).expect("info");
    let caps = info.capabilities;
    assert!(caps.persistent_state && caps.rich_outputs && caps.stdin && caps.streaming && caps.shell, "{caps:?}");

    // A function defined in one call and used in the next; an import kept.
    let defined = run(manager, &id, Command::code("import math\ndef area(r):\n    return math.pi * r * r")).await;
    assert!(defined.success, "{:?}", defined.to_json());
    let called = run(manager, &id, Command::code("print(round(area(2), 3))\nprint(math.sqrt(16))")).await;
    assert_eq!(result_text(&called), "12.566\n4.0");
    // A trailing expression is shown like a REPL shows it.
    let trailing = run(manager, &id, Command::code("x = [1, 2]\nx + [3]")).await;
    assert_eq!(result_text(&trailing), "[1, 2, 3]");
    // Errors carry the user's traceback, not the driver's.
    let failed = run(manager, &id, Command::code("def f():\n    raise ValueError('boom')\nf()")).await;
    let error = failed.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("ValueError: boom"), "{:?}", failed.to_json());
    let stderr = &code_result(&failed).stderr;
    assert!(stderr.contains("line 2, in f") && !stderr.contains("driver"), "{stderr}");
    // Usage is reported.
    let usage = code_result(&called).usage.clone().expect("usage of a run");
    assert!(usage.output_bytes > 0, "{usage:?}");

    // A matplotlib figure comes back as a PNG.
    let plot = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')";
    let plotted = run_with(manager, &id, Command::code(plot), Duration::from_secs(120)).await;
    let outputs = &code_result(&plotted).outputs;
    let png = outputs.iter().find(|o| o.mime == "image/png").unwrap_or_else(|| panic!("{:?}", plotted.to_json()));
    assert!(png.data.starts_with("iVBORw0KGgo"), "base64 of a PNG signature: {}", &png.data[..20.min(png.data.len())]);
    assert_eq!(plotted.to_json()["outputs"][0]["mime"], "image/png", "on the wire too");

    // A timed-out infinite loop, then a working command, state kept or said lost.
    let spin = run_with(manager, &id, Command::code("while True:\n    pass"), Duration::from_secs(2)).await;
    assert!(spin.error.as_ref().map(|e| e.kind()) == Some(ErrorKind::TimedOut), "{:?}", spin.to_json());
    let after = run(manager, &id, Command::code("print(area(1) > 3)")).await;
    let reset = code_result(&spin).state_reset;
    if reset {
        assert!(after.error.is_some(), "state was reset, yet area() still exists: {:?}", after.to_json());
        let again = run(manager, &id, Command::code("print('works')")).await;
        assert_eq!(result_text(&again), "works");
    } else {
        assert_eq!(result_text(&after), "True", "state kept after the interrupt: {:?}", after.to_json());
    }
    manager.close(&id).await.expect("close");
}

async fn javascript_notebook(manager: &SessionManager) {
    let id = session(manager, Language::JavaScript).await;
    let defined =
        run(manager, &id, Command::code("function twice(x) { return 2 * x }\nconst path = require('path')")).await;
    assert!(defined.success, "{:?}", defined.to_json());
    let called = run(manager, &id, Command::code("console.log(twice(21)); path.basename('/a/b.txt')")).await;
    assert_eq!(result_text(&called), "42\n'b.txt'");
    let failed = run(manager, &id, Command::code("undefinedThing + 1")).await;
    let error = failed.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("ReferenceError"), "{:?}", failed.to_json());
    manager.close(&id).await.expect("close");
}

async fn shell_through_the_agent(manager: &SessionManager) {
    let id = session(manager, Language::Go).await;
    let caps = manager.info(&id).expect("info").capabilities;
    assert!(!caps.persistent_state && caps.shell && caps.streaming, "{caps:?}");
    let mut cat = Command::shell("cat", Vec::<String>::new());
    if let Command::ExecuteShell(c) = &mut cat {
        c.stdin = Some("from stdin".into());
    }
    let echoed = run(manager, &id, cat).await;
    let result = shell(&echoed);
    assert_eq!(result.stdout, "from stdin");
    let usage = result.usage.clone().expect("usage of a command");
    assert_eq!(usage.output_bytes, 10, "{usage:?}");
    let busy = run(manager, &id, sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo $i")).await;
    assert!(shell(&busy).usage.clone().expect("usage").cpu_ms > 0, "{:?}", busy.to_json());
    let missing = run(manager, &id, Command::shell("no-such-program", Vec::<String>::new())).await;
    let result = shell(&missing);
    assert_eq!(result.exit_code, 127, "{result:?}");
    assert!(result.stderr.contains("command not found"), "{result:?}");
    let go = run_with(
        manager,
        &id,
        Command::code("package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hi from go\") }"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(result_text(&go), "hi from go", "{:?}", go.to_json());
    manager.close(&id).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_through_the_agent() {
    let Some(backend) = common::agent_backend("agent", 0).await else { return };
    let manager = common::manager(&backend);
    let m = &manager;
    tokio::join!(python_notebook(m), javascript_notebook(m), shell_through_the_agent(m));
    manager.shutdown().await;
    common::finish(backend).await;
}
