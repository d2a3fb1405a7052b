//! Every Docker language: hello world through `execute_code`, and every example of the
//! original CodeBeaker user guide (its examples are quoted in `docs/protocol.md`) for python, javascript, go and csharp.

mod common;

use std::time::Duration;

use codebeaker::{Command, Language, SessionConfig, SessionManager};
use codebeaker_docker::DockerOptions;
use common::{run, run_with, session, shell};

/// Writes `path`, runs `program args`, and returns stdout (asserting exit code 0).
async fn write_and_run(
    manager: &SessionManager,
    id: &str,
    path: &str,
    content: &str,
    program: &str,
    args: &[&str],
) -> String {
    let written = run(manager, id, Command::write_file(path, content).unwrap()).await;
    assert!(written.success, "{:?}", written.to_json());
    // Compilers are slow on a cold cache on 2 cores: give them room.
    let ran = run_with(manager, id, Command::shell(program, args.to_vec()), Duration::from_secs(120)).await;
    let result = shell(&ran);
    assert_eq!(result.exit_code, 0, "{program} {args:?}: {:?}", ran.to_json());
    result.stdout.clone()
}

async fn hello(manager: &SessionManager, language: Language, code: &str) {
    let id = session(manager, language).await;
    let outcome = run_with(manager, &id, Command::code(code), Duration::from_secs(120)).await;
    assert_eq!(outcome.to_json()["result"], "hello from codebeaker", "{language}: {:?}", outcome.to_json());
    manager.close(&id).await.expect("close");
}

async fn code_failures(manager: &SessionManager, language: Language, code: &str, expected: &str) {
    let id = session(manager, language).await;
    let outcome = run_with(manager, &id, Command::code(code), Duration::from_secs(120)).await;
    let error = outcome.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        !outcome.success && error.contains(expected),
        "{language}: expected an error with {expected:?}: {:?}",
        outcome.to_json()
    );
    manager.close(&id).await.expect("close");
}

async fn seed_python(manager: &SessionManager) {
    let id = session(manager, Language::Python).await;
    // "Python 예제": write a script, run it with execute_shell.
    let out = write_and_run(
        manager,
        &id,
        "/workspace/script.py",
        "for i in range(5):\n    print(f\"Count: {i}\")",
        "python3",
        &["/workspace/script.py"],
    )
    .await;
    assert_eq!(out, "Count: 0\nCount: 1\nCount: 2\nCount: 3\nCount: 4\n");
    // Scenario 1: modules importing each other.
    run(manager, &id, Command::write_file("/workspace/data.py", "x = 10\ny = 20").unwrap()).await;
    let out = write_and_run(
        manager,
        &id,
        "/workspace/calc.py",
        "from data import x, y\nprint(f\"Sum: {x + y}\")",
        "python3",
        &["/workspace/calc.py"],
    )
    .await;
    assert_eq!(out, "Sum: 30\n");
    // Scenario 3: a CSV file processed and read back.
    run(manager, &id, Command::write_file("/workspace/data.csv", "name,age\nAlice,30\nBob,25\nCharlie,35").unwrap())
        .await;
    let process = "\nimport csv\nwith open('/workspace/data.csv', 'r') as f:\n    reader = csv.DictReader(f)\n    total_age = sum(int(row['age']) for row in reader)\nprint(f\"Total age: {total_age}\")\n";
    let out =
        write_and_run(manager, &id, "/workspace/process.py", process, "python3", &["/workspace/process.py"]).await;
    assert_eq!(out, "Total age: 90\n");
    let csv = run(manager, &id, Command::read_file("/workspace/data.csv").unwrap()).await;
    assert_eq!(csv.to_json()["result"]["content"], "name,age\nAlice,30\nBob,25\nCharlie,35");
    // Scenario 2 installs `requests` with pip, through the agent's egress proxy. Under the
    // default policy a registry that resolves to a non-public address (as on this
    // network) is refused by the proxy (403), clearly and at once; where it resolves to a
    // public one, the install and the import work (tests/egress.rs covers both).
    let pip = run_with(
        manager,
        &id,
        Command::shell("pip", ["install", "--no-cache-dir", "requests"]),
        Duration::from_secs(120),
    )
    .await;
    let pip = shell(&pip);
    if pip.exit_code == 0 {
        let script = "import requests\nprint('requests version:', requests.__version__)";
        let used = run_with(manager, &id, Command::code(script), Duration::from_secs(60)).await;
        assert!(used.to_json()["result"].as_str().unwrap_or_default().starts_with("requests version: "));
    } else {
        assert!(pip.stderr.contains("403"), "refused by the egress policy, not a hang: {pip:?}");
    }
    manager.close(&id).await.expect("close");
}

async fn seed_javascript(manager: &SessionManager) {
    let id = session(manager, Language::JavaScript).await;
    let app = "const numbers = [1, 2, 3, 4, 5];\nconst sum = numbers.reduce((a, b) => a + b, 0);\nconsole.log(`Sum: ${sum}`);";
    let out = write_and_run(manager, &id, "/workspace/app.js", app, "node", &["/workspace/app.js"]).await;
    assert_eq!(out, "Sum: 15\n");
    manager.close(&id).await.expect("close");
}

async fn seed_go(manager: &SessionManager) {
    let id = session(manager, Language::Go).await;
    let main = "package main\n\nimport \"fmt\"\n\nfunc main() {\n    fmt.Println(\"Hello from Go\")\n}";
    let out = write_and_run(manager, &id, "/workspace/main.go", main, "go", &["run", "/workspace/main.go"]).await;
    assert_eq!(out, "Hello from Go\n");
    manager.close(&id).await.expect("close");
}

async fn seed_csharp(manager: &SessionManager) {
    let id = session(manager, Language::CSharp).await;
    let program = "using System;\n\nclass Program\n{\n    static void Main()\n    {\n        Console.WriteLine(\"Hello from C#\");\n    }\n}";
    // The guide runs `dotnet script Program.cs`; the images carry Mono, so the same
    // program is compiled with `mcs` and run with `mono`. `dotnet` itself is reported
    // as missing, clearly.
    run(manager, &id, Command::write_file("/workspace/Program.cs", program).unwrap()).await;
    let dotnet = run(manager, &id, Command::shell("dotnet", ["script", "/workspace/Program.cs"])).await;
    let dotnet = shell(&dotnet);
    assert_eq!(dotnet.exit_code, 127, "{dotnet:?}");
    assert!(dotnet.stderr.contains("dotnet: command not found"), "{dotnet:?}");
    let out = write_and_run(
        manager,
        &id,
        "/workspace/Program.cs",
        program,
        "sh",
        &["-c", "mcs -nologo -out:/tmp/Program.exe /workspace/Program.cs && mono /tmp/Program.exe"],
    )
    .await;
    assert_eq!(out, "Hello from C#\n");
    manager.close(&id).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_language_runs_hello_and_the_guide_examples() {
    let Some(backend) = common::backend("languages", 0).await else { return };
    let manager = common::manager(&backend);
    let m = &manager;
    tokio::join!(
        hello(m, Language::Python, "print('hello from codebeaker')"),
        hello(m, Language::JavaScript, "console.log('hello from codebeaker')"),
        hello(m, Language::Go, "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from codebeaker\") }"),
        hello(
            m,
            Language::CSharp,
            "class P { static void Main() { System.Console.WriteLine(\"hello from codebeaker\"); } }"
        ),
        code_failures(m, Language::JavaScript, "console.log('partial'); throw new Error('boom')", "Error: boom"),
        code_failures(m, Language::Go, "package main\nfunc main() { panic(\"boom\") }", "panic: boom"),
        code_failures(
            m,
            Language::CSharp,
            "class P { static void Main() { throw new System.Exception(\"boom\"); } }",
            "boom"
        ),
        code_failures(m, Language::CSharp, "class P { static void Main() { int x = } }", "error CS"),
        seed_python(m),
        seed_javascript(m),
        seed_go(m),
        seed_csharp(m),
    );
    // A session may name its image (the guide's `dockerImage`).
    let options = DockerOptions { image: Some("codebeaker-python:latest".into()) };
    let config = options.apply(SessionConfig::new(Language::Python)).expect("options");
    let custom = manager.create(config).await.expect("custom image session");
    let ran = run(&manager, &custom.session_id, Command::code("print('custom')")).await;
    assert_eq!(ran.to_json()["result"], "custom");
    manager.close(&custom.session_id).await.expect("close");
    let options = DockerOptions { image: Some("codebeaker-no-such-image:latest".into()) };
    let missing = options.apply(SessionConfig::new(Language::Python)).expect("options");
    let err = manager.create(missing).await.expect_err("a missing image fails");
    assert!(err.to_string().contains("codebeaker-no-such-image"), "{err}");
    common::finish(backend).await;
}
