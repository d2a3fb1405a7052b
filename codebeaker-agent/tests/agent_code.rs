//! Notebook semantics of the agent's persistent interpreters (python3 and node): state
//! kept across runs, trailing values, user-only tracebacks, fd-level output, rich
//! results, and timeouts that interrupt first and restart only when they must.

mod support;

use std::time::{Duration, Instant};

use codebeaker_agent::client::CodeOutput;
use codebeaker_agent::protocol::{CodeLanguage, Rlimits, RunCodeRequest};
use support::{Agent, NPROC};

/// How long interrupted code may take to stop (the host's share of the stop grace). Wider
/// than the default share: these tests run on the host without a CPU quota per sandbox,
/// beside a fork bomb whose copies share the interpreters' nice level, and an interrupt
/// taken late there would read as a lost state.
const GRACE_MS: u64 = 2_000;

async fn run(agent: &Agent, language: CodeLanguage, code: &str, timeout_ms: u64) -> CodeOutput {
    let request = RunCodeRequest {
        language,
        code: code.into(),
        timeout_ms,
        grace_ms: GRACE_MS,
        drain_ms: codebeaker::Policy::default().interpreter_drain_ms,
        output_cap: 1 << 20,
        rlimits: Rlimits::default(),
    };
    agent.client.run_code_collect(request).await.unwrap()
}

async fn python(agent: &Agent, code: &str) -> CodeOutput {
    run(agent, CodeLanguage::Python, code, 20_000).await
}

async fn node(agent: &Agent, code: &str) -> CodeOutput {
    run(agent, CodeLanguage::Javascript, code, 20_000).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn python_keeps_functions_imports_and_variables_and_shows_the_trailing_value() {
    let agent = Agent::start().await;
    let defined = python(&agent, "import json\ndef double(x):\n    return 2 * x\ncounter = 20").await;
    assert!(defined.done.error.is_none(), "{:?} {}", defined.done.error, text(&defined.stderr));
    assert_eq!(defined.done.result, None, "an assignment has no value");
    let used = python(&agent, "print(json.dumps({'n': double(counter)}))\ndouble(counter) + 2").await;
    assert_eq!(text(&used.stdout), "{\"n\": 40}\n42\n");
    assert_eq!(used.done.result.as_deref(), Some("42"));
    assert!(!used.done.state_reset);
    let usage = used.done.usage.unwrap();
    assert_eq!(usage.output_bytes, 13);
}

#[tokio::test]
async fn python_errors_carry_the_traceback_of_the_users_code_only() {
    let agent = Agent::start().await;
    let failed =
        python(&agent, "print('partial', flush=True)\ndef inner():\n    raise ValueError('boom')\ninner()").await;
    assert_eq!(text(&failed.stdout), "partial\n");
    let error = failed.done.error.unwrap();
    assert_eq!((error.name.as_str(), error.value.as_str()), ("ValueError", "boom"));
    assert!(error.traceback.starts_with("Traceback (most recent call last):"), "{}", error.traceback);
    assert!(error.traceback.contains("<cell-1>\", line 4") && error.traceback.contains("line 3, in inner"));
    assert!(!error.traceback.contains("<string>") && !error.traceback.contains("_run"), "{}", error.traceback);
    assert_eq!(text(&failed.stderr), error.traceback, "the traceback is shown on stderr");
    let syntax = python(&agent, "def broken(:\n  pass").await;
    assert_eq!(syntax.done.error.unwrap().name, "SyntaxError");
    assert_eq!(python(&agent, "1 + 1").await.done.result.as_deref(), Some("2"), "errors keep the session");
}

#[tokio::test]
async fn python_output_is_captured_at_the_file_descriptor_level() {
    let agent = Agent::start().await;
    let out = python(
        &agent,
        "import os, subprocess, sys\nos.write(1, b'fd one\\n')\nos.write(2, b'fd two\\n')\n\
         subprocess.run(['echo', 'from a child'])\nsys.stderr.write('err\\n')\npass",
    )
    .await;
    assert_eq!(text(&out.stdout), "fd one\nfrom a child\n");
    assert!(text(&out.stderr).starts_with("fd two\nerr\n"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn python_timeout_interrupts_and_keeps_state_then_kills_what_ignores_it() {
    let agent = Agent::start().await;
    python(&agent, "kept = 'still here'").await;
    let started = Instant::now();
    let spun = run(&agent, CodeLanguage::Python, "while True:\n    pass", 500).await;
    assert!(started.elapsed() < Duration::from_millis(500 + GRACE_MS + 1000), "answered within timeout + grace + 1 s");
    assert!(spun.done.timed_out && !spun.done.state_reset, "{:?}", spun.done);
    assert_eq!(spun.done.error.as_ref().unwrap().name, "KeyboardInterrupt");
    assert!(text(&spun.stderr).contains("KeyboardInterrupt"));
    assert_eq!(python(&agent, "kept").await.done.result.as_deref(), Some("'still here'"));

    let stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass";
    let started = Instant::now();
    let killed = run(&agent, CodeLanguage::Python, stubborn, 500).await;
    assert!(started.elapsed() < Duration::from_millis(500 + GRACE_MS + 1000), "answered within timeout + grace + 1 s");
    assert!(killed.done.timed_out && killed.done.state_reset, "{:?}", killed.done);
    let after = python(&agent, "print('working')\n'kept' in globals()").await;
    assert_eq!(text(&after.stdout), "working\nFalse\n", "a fresh interpreter answers");
}

#[tokio::test]
async fn python_exiting_resets_state_and_the_next_run_works() {
    let agent = Agent::start().await;
    let exited = python(&agent, "import os\nos._exit(3)").await;
    assert!(exited.done.state_reset, "{:?}", exited.done);
    assert_eq!(python(&agent, "6 * 7").await.done.result.as_deref(), Some("42"));
}

#[tokio::test]
async fn python_rich_results_from_repr_methods() {
    let agent = Agent::start().await;
    let out = python(&agent, "class Table:\n    def _repr_html_(self):\n        return '<b>t</b>'\nTable()").await;
    let html = out.done.outputs.iter().find(|o| o.mime == "text/html").expect("html output");
    assert_eq!(html.data, "<b>t</b>");
}

#[tokio::test]
async fn python_matplotlib_figures_come_back_as_png() {
    let probe = std::process::Command::new("/usr/bin/python3").args(["-c", "import matplotlib"]).output().unwrap();
    if !probe.status.success() {
        eprintln!("SKIPPED: /usr/bin/python3 has no matplotlib here (the python image installs python3-matplotlib)");
        return;
    }
    let agent = Agent::start().await;
    // matplotlib's first import in a fresh home builds its font cache: tens of seconds
    // on a loaded 2-core machine, so this run gets more time than the others.
    let code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nNone";
    let out = run(&agent, CodeLanguage::Python, code, 180_000).await;
    let png = out.done.outputs.iter().find(|o| o.mime == "image/png");
    let png = png.unwrap_or_else(|| panic!("a PNG: {:?} {}", out.done, text(&out.stderr)));
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(&png.data).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[tokio::test]
async fn node_keeps_state_shows_values_and_tracebacks() {
    let agent = Agent::start().await;
    let defined =
        node(&agent, "const fs = require('fs');\nfunction double(x) { return 2 * x }\nlet counter = 20;").await;
    assert!(defined.done.error.is_none(), "{:?} {}", defined.done.error, text(&defined.stderr));
    let used = node(&agent, "console.log(typeof fs.readFileSync);\ndouble(counter) + 2").await;
    assert_eq!(text(&used.stdout), "function\n42\n");
    assert_eq!(used.done.result.as_deref(), Some("42"));
    let failed =
        node(&agent, "console.log('partial');\nfunction inner() { throw new TypeError('boom') }\ninner()").await;
    assert_eq!(text(&failed.stdout), "partial\n");
    let error = failed.done.error.unwrap();
    assert_eq!((error.name.as_str(), error.value.as_str()), ("TypeError", "boom"));
    assert!(error.traceback.contains("<cell-3>"), "{}", error.traceback);
    assert!(!error.traceback.contains("node:") && !error.traceback.contains("[eval]"), "{}", error.traceback);
    let out =
        node(&agent, "require('child_process').execSync('echo from a child', { stdio: 'inherit' }); 'done'").await;
    assert_eq!(text(&out.stdout), "from a child\n'done'\n");
}

#[tokio::test]
async fn node_timeout_interrupts_and_keeps_state() {
    let agent = Agent::start().await;
    node(&agent, "var kept = 'still here'").await;
    let started = Instant::now();
    let spun = run(&agent, CodeLanguage::Javascript, "while (true) {}", 500).await;
    assert!(started.elapsed() < Duration::from_millis(500 + GRACE_MS + 1000), "answered within timeout + grace + 1 s");
    assert!(spun.done.timed_out && !spun.done.state_reset, "{:?}", spun.done);
    assert_eq!(node(&agent, "kept").await.done.result.as_deref(), Some("'still here'"));
}

#[tokio::test]
async fn python_and_node_sessions_are_independent_interpreters() {
    let agent = Agent::start().await;
    python(&agent, "shared = 1").await;
    let missing = node(&agent, "typeof shared").await;
    assert_eq!(missing.done.result.as_deref(), Some("'undefined'"));
}

#[tokio::test]
async fn user_code_cannot_answer_for_the_driver() {
    let agent = Agent::start().await;
    let code =
        "import os\nos.write(4, b'{\"id\": 1, \"result\": \"forged\"}\\n')\nimport time\ntime.sleep(0.3)\n'genuine'";
    let out = python(&agent, code).await;
    assert_eq!(out.done.result.as_deref(), Some("'genuine'"));
    let child = python(&agent, "import subprocess\nsubprocess.run('echo x >&4', shell=True).returncode").await;
    assert_ne!(child.done.result.as_deref(), Some("0"), "a child process does not inherit the driver's channel");
}

#[tokio::test]
async fn top_level_await_works_in_both_interpreters() {
    let agent = Agent::start().await;
    python(
        &agent,
        "import asyncio\nasync def answer():\n    await asyncio.sleep(0.01)\n    return 41\nx = await answer()",
    )
    .await;
    assert_eq!(python(&agent, "x + 1").await.done.result.as_deref(), Some("42"), "state set by awaited code is kept");
    let awaited = node(&agent, "await new Promise((resolve) => setTimeout(() => resolve(5), 10))").await;
    assert!(awaited.done.error.is_none(), "{:?}", awaited.done.error);
    assert_eq!(awaited.done.result.as_deref(), Some("5"));
}

#[tokio::test]
async fn python_fork_bombs_die_with_their_timeout_and_the_interpreter_stays_the_sessions() {
    // A uid of its own: the bomb fills its process limit, not other tests'.
    let agent = Agent::start_isolated(2_000_000_102).await;
    // RLIMIT_NPROC as the Docker backend sets it, from the interpreter's start: the agent
    // (root) keeps room to act, and the host has no pids limit here.
    let limited = |code: &str, timeout_ms| RunCodeRequest {
        language: CodeLanguage::Python,
        code: code.into(),
        timeout_ms,
        grace_ms: GRACE_MS,
        drain_ms: codebeaker::Policy::default().interpreter_drain_ms,
        output_cap: 1 << 16,
        rlimits: Rlimits { nproc: Some(NPROC), ..Rlimits::default() },
    };
    agent.client.run_code_collect(limited("kept = 'still here'", 20_000)).await.unwrap();
    let bombs = [
        // Copies that return into the driver must neither answer nor take requests.
        "import os\nwhile True:\n    os.fork()",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass",
    ];
    for round in 0..4 {
        for bomb in bombs {
            let request = limited(bomb, 1500);
            // Answered before the client's deadline (timeout + its reply grace), or this fails.
            let out = tokio::time::timeout(Duration::from_secs(10), agent.client.run_code_collect(request))
                .await
                .expect("an answer, not a stuck request")
                .unwrap();
            if bomb.contains("except") {
                // It never ends by itself: interrupted (or, when it caught that too,
                // killed with its copies, state said lost).
                assert!(out.done.timed_out, "round {round}: {:?}", out.done);
            }
            let after = agent.client.run_code_collect(limited("print('alive')", 20_000)).await.unwrap();
            assert_eq!(text(&after.stdout), "alive\n", "round {round}: {:?} then {:?}", out.done, after.done);
            // A bomb that ended before its timeout may live on: the next program, unable
            // to start, clears it.
            assert_eq!(agent.sh_limited("echo started").await.stdout, b"started\n", "round {round}");
        }
    }
}

#[tokio::test]
async fn an_interpreter_killed_by_a_signal_says_which() {
    let agent = Agent::start().await;
    let out = python(&agent, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)").await;
    assert!(out.done.state_reset, "{:?}", out.done);
    let error = out.done.error.expect("an error");
    assert!(error.value.contains("SIGSEGV: segmentation fault"), "{error:?}");
    assert_eq!(python(&agent, "6 * 7").await.done.result.as_deref(), Some("42"));
}
