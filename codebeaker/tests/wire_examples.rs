//! Every command and session-config example of `docs/protocol.md` and the original guide,
//! sent as written, parses; serializing it again gives the same JSON with the documented
//! defaults filled in and paths normalised; and the guide's responses are reproduced by
//! the typed results.

use codebeaker::result::{ReadFileResult, WriteFileResult};
use codebeaker::{Command, CommandOutcome, CommandResult, Error, SessionConfig, ShellResult, WorkspacePath};
use serde_json::{json, Value};

/// `sent` parses as a command whose JSON is `sent` plus `defaults`, its paths written
/// back normalised (`calculator.ts` as `/workspace/calculator.ts`).
fn round_trips(sent: Value, defaults: Value) -> Command {
    let command: Command = serde_json::from_value(sent.clone()).unwrap_or_else(|e| panic!("{sent} did not parse: {e}"));
    let mut expected = sent;
    let fields = expected.as_object_mut().unwrap();
    for (key, value) in defaults.as_object().unwrap() {
        fields.entry(key.clone()).or_insert(value.clone());
    }
    for key in ["path", "sourcePath", "destinationPath", "workingDirectory"] {
        if let Some(Value::String(path)) = fields.get_mut(key) {
            *path = WorkspacePath::new(path).unwrap().to_string();
        }
    }
    assert_eq!(serde_json::to_value(&command).unwrap(), expected, "round trip of {command:?}");
    command
}

#[test]
fn guide_commands_round_trip() {
    let none = json!({});
    let write = json!({"mode": "Create"});
    let shell = json!({"args": [], "workingDirectory": "/workspace"});
    let cases = [
        (
            json!({"type": "write_file", "path": "/workspace/hello.py", "content": "print('Hello, World!')", "mode": "Create"}),
            &write,
        ),
        (
            json!({"type": "execute_shell", "commandName": "python3", "args": ["/workspace/hello.py"], "workingDirectory": "/workspace"}),
            &shell,
        ),
        (json!({"type": "read_file", "path": "/workspace/hello.py"}), &none),
        (
            json!({"type": "write_file", "path": "/workspace/script.py", "content": "for i in range(5):\n    print(f\"Count: {i}\")"}),
            &write,
        ),
        (json!({"type": "execute_shell", "commandName": "python3", "args": ["/workspace/script.py"]}), &shell),
        (
            json!({"type": "write_file", "path": "/workspace/app.js", "content": "const numbers = [1, 2, 3, 4, 5];\nconst sum = numbers.reduce((a, b) => a + b, 0);\nconsole.log(`Sum: ${sum}`);"}),
            &write,
        ),
        (json!({"type": "execute_shell", "commandName": "node", "args": ["/workspace/app.js"]}), &shell),
        (
            json!({"type": "write_file", "path": "/workspace/main.go", "content": "package main\n\nimport \"fmt\"\n\nfunc main() {\n    fmt.Println(\"Hello from Go\")\n}"}),
            &write,
        ),
        (json!({"type": "execute_shell", "commandName": "go", "args": ["run", "/workspace/main.go"]}), &shell),
        (
            json!({"type": "write_file", "path": "/workspace/Program.cs", "content": "using System;\n\nclass Program\n{\n    static void Main()\n    {\n        Console.WriteLine(\"Hello from C#\");\n    }\n}"}),
            &write,
        ),
        (
            json!({"type": "execute_shell", "commandName": "dotnet", "args": ["script", "/workspace/Program.cs"]}),
            &shell,
        ),
        (
            json!({"type": "execute_code", "code": "const greeting: string = 'Hello from Deno!';\nconsole.log(greeting);\nconst sum = (a: number, b: number): number => a + b;\nconsole.log(`Sum: ${sum(10, 20)}`);"}),
            &none,
        ),
        (
            json!({"type": "write_file", "path": "calculator.ts", "content": "interface Calculator {\n  add(a: number, b: number): number;\n}\n\nconst calc: Calculator = {\n  add: (a, b) => a + b\n};\n\nconsole.log('Result:', calc.add(15, 25));"}),
            &write,
        ),
        (json!({"type": "execute_code", "code": "// Import from file\nimport('./calculator.ts');"}), &none),
        (
            json!({"type": "execute_code", "code": "await Deno.writeTextFile('/workspace/data.txt', 'Hello!');\nconst content = await Deno.readTextFile('/workspace/data.txt');\nconsole.log(content);"}),
            &none,
        ),
        (json!({"type": "execute_code", "code": "const response = await fetch('https://api.github.com');"}), &none),
        (json!({"type": "execute_code", "code": "console.log('Iteration 3');"}), &none),
        (
            json!({"type": "write_file", "path": "/workspace/file.txt", "content": "파일 내용", "mode": "Create"}),
            &write,
        ),
        (json!({"type": "read_file", "path": "/workspace/file.txt"}), &none),
        (
            json!({"type": "execute_shell", "commandName": "python3", "args": ["/workspace/script.py"], "workingDirectory": "/workspace"}),
            &shell,
        ),
        (json!({"type": "create_directory", "path": "/workspace/data"}), &none),
        (
            json!({"type": "copy_file", "sourcePath": "/workspace/file1.txt", "destinationPath": "/workspace/file2.txt"}),
            &none,
        ),
        (json!({"type": "delete_file", "path": "/workspace/file.txt"}), &none),
        (json!({"type": "list_directory", "path": "/workspace"}), &none),
        (json!({"type": "write_file", "path": "/workspace/data.py", "content": "x = 10\ny = 20"}), &write),
        (
            json!({"type": "write_file", "path": "/workspace/calc.py", "content": "from data import x, y\nprint(f\"Sum: {x + y}\")"}),
            &write,
        ),
        (
            json!({"type": "execute_shell", "commandName": "pip", "args": ["install", "--no-cache-dir", "requests"]}),
            &shell,
        ),
        (
            json!({"type": "write_file", "path": "/workspace/data.csv", "content": "name,age\nAlice,30\nBob,25\nCharlie,35"}),
            &write,
        ),
        (json!({"type": "write_file", "path": "/workspace/script.py", "content": "x = 10\nprint(x * 2)"}), &write),
    ];
    for (sent, defaults) in cases {
        round_trips(sent, defaults.clone());
    }
}

#[test]
fn protocol_extensions_round_trip_and_stay_out_of_the_way() {
    let command = round_trips(
        json!({"type": "execute_shell", "commandName": "cat", "args": [], "workingDirectory": "/workspace/sub", "env": {"A": "1"}, "stdin": "hi"}),
        json!({}),
    );
    assert!(matches!(command, Command::ExecuteShell(ref s) if s.stdin.as_deref() == Some("hi") && s.env["A"] == "1"));
    round_trips(
        json!({"type": "write_file", "path": "b.bin", "content": "AAE=", "mode": "Append", "encoding": "base64"}),
        json!({}),
    );
    round_trips(json!({"type": "read_file", "path": "b.bin", "encoding": "base64"}), json!({}));
    // Defaults of extensions are not written out: seed-era clients see seed shapes.
    let plain = serde_json::to_value(Command::read_file("x").unwrap()).unwrap();
    assert_eq!(plain, json!({"type": "read_file", "path": "/workspace/x"}));
}

#[test]
fn a_typed_command_round_trips_through_json() {
    let typed = [
        Command::copy_file("src/../a.txt", "/workspace/b/./c.txt").unwrap(),
        Command::read_range(WorkspacePath::new("big.bin").unwrap(), 10, 20).unwrap(),
        Command::delete_file(WorkspacePath::root().to_string()).unwrap(),
    ];
    for command in typed {
        let wire = serde_json::to_value(&command).unwrap();
        assert_eq!(serde_json::from_value::<Command>(wire.clone()).unwrap(), command, "{wire}");
    }
    let copy = serde_json::to_value(Command::copy_file("src/../a.txt", "b/./c.txt").unwrap()).unwrap();
    assert_eq!(
        copy,
        json!({"type": "copy_file", "sourcePath": "/workspace/a.txt", "destinationPath": "/workspace/b/c.txt"})
    );
}

#[test]
fn a_path_outside_the_workspace_is_refused_while_parsing_naming_it() {
    for (bad, path) in [
        (json!({"type": "read_file", "path": "../x"}), "../x"),
        (json!({"type": "write_file", "path": "/etc/passwd", "content": "y"}), "/etc/passwd"),
        (
            json!({"type": "copy_file", "sourcePath": "a", "destinationPath": "/workspace/../../x"}),
            "/workspace/../../x",
        ),
        (json!({"type": "execute_shell", "commandName": "ls", "workingDirectory": "/tmp"}), "/tmp"),
        (json!({"type": "list_directory", "path": "a/../../b"}), "a/../../b"),
    ] {
        let err = serde_json::from_value::<Command>(bad.clone()).unwrap_err().to_string();
        assert!(err.contains(&format!("{path} is outside /workspace")), "{bad}: {err}");
    }
    let empty = serde_json::from_value::<Command>(json!({"type": "delete_file", "path": ""})).unwrap_err();
    assert!(empty.to_string().contains("path must not be empty"), "{empty}");
    let outside = Command::write_file("../out.txt", "x").unwrap_err();
    assert_eq!(outside, Error::permission_denied("../out.txt is outside /workspace"));
}

#[test]
fn malformed_commands_are_refused_with_the_reason() {
    for (bad, reason) in [
        (json!({"type": "format_disk"}), "unknown variant"),
        (json!({"path": "/workspace/x"}), "missing field `type`"),
        (json!({"type": "read_file"}), "missing field `path`"),
        (json!({"type": "execute_shell", "commandName": "ls", "workingDir": "/"}), "unknown field `workingDir`"),
        (json!({"type": "execute_shell", "commandName": "ls", "args": "-la"}), "invalid type"),
        (json!({"type": "write_file", "path": "x", "content": "y", "mode": "Truncate"}), "unknown variant"),
        (json!({"type": "write_file", "path": 5, "content": "y"}), "invalid type"),
    ] {
        let err = serde_json::from_value::<Command>(bad.clone()).unwrap_err().to_string();
        assert!(err.contains(reason), "{bad} should fail with {reason:?}, got {err:?}");
    }
}

#[test]
fn guide_session_configs_parse() {
    for params in [
        json!({"language": "python", "idleTimeoutMinutes": 30, "maxLifetimeMinutes": 120, "memoryLimitMB": 512}),
        json!({"language": "python"}),
        json!({"language": "javascript"}),
        json!({"language": "go"}),
        json!({"language": "csharp"}),
        json!({"language": "deno", "idleTimeoutMinutes": 30}),
        json!({"language": "deno", "permissions": {"allowRead": ["/workspace"], "allowWrite": ["/workspace"], "allowNet": false, "allowEnv": false}}),
        json!({"language": "python", "idleTimeoutMinutes": 30, "maxLifetimeMinutes": 120, "memoryLimitMB": 512, "cpuShares": 1024, "dockerImage": "codebeaker-python:latest"}),
    ] {
        let config: SessionConfig = serde_json::from_value(params.clone()).unwrap_or_else(|e| panic!("{params}: {e}"));
        config.validate().unwrap_or_else(|e| panic!("{params}: {e}"));
        let echoed = serde_json::to_value(&config).unwrap();
        for (key, value) in params.as_object().unwrap() {
            // Earlier versions' names are echoed in today's shape.
            let echoed = match key.as_str() {
                "language" if value == "deno" => {
                    assert_eq!(echoed["backend"], "deno");
                    json!("deno")
                }
                "dockerImage" => echoed["backendOptions"]["docker"]["image"].clone(),
                "permissions" => echoed["backendOptions"]["deno"]["permissions"].clone(),
                _ => echoed[key].clone(),
            };
            assert_eq!(&echoed, value, "config echoes {key} as sent");
        }
        assert_eq!(
            echoed["idleTimeoutMinutes"].as_f64(),
            params.get("idleTimeoutMinutes").and_then(Value::as_f64).or(Some(30.0))
        );
    }
}

#[test]
fn guide_responses_are_reproduced() {
    let written = CommandOutcome::from_result(
        Ok(CommandResult::WriteFile(WriteFileResult { path: "/workspace/hello.py".into(), bytes: 22 })),
        45,
    );
    assert_eq!(
        written.to_json(),
        json!({"success": true, "result": {"path": "/workspace/hello.py", "bytes": 22}, "error": null, "durationMs": 45})
    );
    let read = CommandOutcome::from_result(
        Ok(CommandResult::ReadFile(ReadFileResult {
            content: "print('Hello, World!')".into(),
            bytes: 22,
            size: 22,
            eof: true,
        })),
        35,
    );
    assert_eq!(
        read.to_json(),
        json!({"success": true, "result": {"content": "print('Hello, World!')", "bytes": 22, "size": 22, "eof": true}, "error": null, "durationMs": 35})
    );
    let ran = CommandOutcome::from_result(
        Ok(CommandResult::ExecuteShell(ShellResult {
            exit_code: 0,
            stdout: "Hello, World!\n".into(),
            stderr: String::new(),
            duration_ms: 120,
            timed_out: false,
            truncated: false,
            usage: None,
        })),
        125,
    );
    // The guide's fields, exactly, plus the two documented extensions.
    assert_eq!(
        ran.to_json(),
        json!({"success": true, "result": {"exitCode": 0, "stdout": "Hello, World!\n", "stderr": "", "durationMs": 120, "timedOut": false, "truncated": false}, "error": null, "durationMs": 125})
    );
    let missing = CommandOutcome::from_result(Err(Error::not_found("/workspace/missing.py")), 15);
    assert_eq!(
        missing.to_json(),
        json!({"success": false, "result": null, "error": "File not found: /workspace/missing.py", "durationMs": 15})
    );
    let code = CommandOutcome::from_result(
        Ok(CommandResult::ExecuteCode(codebeaker::CodeResult {
            output: "Hello from Deno!\nSum: 30".into(),
            ..Default::default()
        })),
        50,
    );
    assert_eq!(code.to_json()["result"], "Hello from Deno!\nSum: 30");
    let denied = CommandOutcome::from_result(
        Ok(CommandResult::ExecuteCode(codebeaker::CodeResult {
            exit_code: 1,
            error: Some("PermissionDenied: Requires net access to \"api.github.com\"".into()),
            ..Default::default()
        })),
        3,
    );
    assert_eq!(denied.to_json()["success"], false);
    assert_eq!(denied.to_json()["error"], "PermissionDenied: Requires net access to \"api.github.com\"");
}

#[test]
fn write_file_takes_append_as_well_as_mode() {
    use codebeaker::command::{WriteFile, WriteMode};
    let parse = |value: Value| serde_json::from_value::<Command>(value);
    let mode_of = |value: Value| match parse(value.clone()) {
        Ok(Command::WriteFile(WriteFile { mode, .. })) => mode,
        other => panic!("{value} gave {other:?}"),
    };
    let base = |extra: Value| {
        let mut value = json!({"type": "write_file", "path": "log.txt", "content": "more"});
        value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        value
    };
    assert_eq!(mode_of(base(json!({"append": true}))), WriteMode::Append);
    assert_eq!(mode_of(base(json!({"append": false}))), WriteMode::Create);
    assert_eq!(mode_of(base(json!({"append": true, "mode": "Append"}))), WriteMode::Append);
    assert_eq!(mode_of(base(json!({}))), WriteMode::Create);
    let clash = parse(base(json!({"append": true, "mode": "Create"}))).expect_err("a clash is refused");
    assert!(clash.to_string().contains("`append` and `mode` disagree"), "{clash}");
    let typo = parse(base(json!({"apend": true}))).expect_err("unknown fields are still refused");
    assert!(typo.to_string().contains("apend"), "{typo}");
    // What is sent back is the one documented form.
    let command = parse(base(json!({"append": true}))).unwrap();
    assert_eq!(serde_json::to_value(&command).unwrap()["mode"], "Append");
}
