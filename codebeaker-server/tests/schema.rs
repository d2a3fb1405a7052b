//! `docs/schema/`, the machine-readable protocol: the committed files are exactly what the
//! wire types generate (regenerate with `CODEBEAKER_BLESS=1 cargo test -p
//! codebeaker-server --test schema`), each is a valid JSON Schema 2020-12, and what a live
//! server (real Deno sessions) really sends and accepts validates against them: every
//! method's params and result, the `session.output` notification and error objects.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use codebeaker_server::schema::{self, REGENERATE};
use codebeaker_server::{BackendChoice, BackendOptions, Backends, Server, ServerConfig};
use common::Client;
use serde_json::{json, Value};

fn directory() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(schema::DIRECTORY)
}

#[test]
fn committed_schema_is_what_the_types_generate() {
    let directory = directory();
    let generated = schema::files();
    let committed_json = || {
        std::fs::read_dir(&directory)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .filter(|name| name.ends_with(".json"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    if std::env::var("CODEBEAKER_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(&directory).expect("create docs/schema");
        for name in committed_json() {
            if !generated.iter().any(|(file, _)| *file == name) {
                std::fs::remove_file(directory.join(&name)).expect("remove a stale schema file");
            }
        }
        for (name, content) in &generated {
            std::fs::write(directory.join(name), content).expect("write a schema file");
        }
        return;
    }
    let mut drifted: Vec<String> = generated
        .iter()
        .filter(|(name, content)| std::fs::read_to_string(directory.join(name)).ok().as_ref() != Some(content))
        .map(|(name, _)| format!("{}/{name}", schema::DIRECTORY))
        .collect();
    for name in committed_json() {
        if !generated.iter().any(|(file, _)| *file == name) {
            drifted.push(format!("{}/{name} (no longer generated)", schema::DIRECTORY));
        }
    }
    assert!(
        drifted.is_empty(),
        "the committed JSON Schema differs from what the Rust wire types generate: {drifted:?}.\n\
         Regenerate with `{REGENERATE}` and commit docs/schema/."
    );
}

#[test]
fn every_file_is_valid_json_schema_2020_12() {
    for (name, content) in schema::files() {
        let value: Value = serde_json::from_str(&content).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        if name == "index.json" {
            continue;
        }
        assert_eq!(value["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        if let Err(error) = jsonschema::meta::validate(&value) {
            panic!("{name} is not a valid schema: {error}");
        }
        jsonschema::validator_for(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Validators of every schema file, by file name.
struct Schemas(BTreeMap<String, jsonschema::Validator>);

impl Schemas {
    fn load() -> Self {
        let validators = schema::files()
            .into_iter()
            .filter(|(name, _)| name != "index.json")
            .map(|(name, content)| {
                let value: Value = serde_json::from_str(&content).expect("JSON");
                let validator = jsonschema::validator_for(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, validator)
            })
            .collect();
        Schemas(validators)
    }

    /// Asserts that `instance` matches the schema of `file`.
    fn check(&self, file: &str, instance: &Value) {
        let validator = self.0.get(file).unwrap_or_else(|| panic!("no schema file {file}"));
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|error| format!("{error} (at {})", error.instance_path())).collect();
        assert!(errors.is_empty(), "{file} does not accept\n{instance:#}\n{errors:#?}");
    }

    /// Asserts that `instance` does not match the schema of `file`.
    fn refuses(&self, file: &str, instance: &Value) {
        assert!(!self.0[file].is_valid(instance), "{file} should refuse {instance}");
    }
}

#[test]
fn language_names_in_the_schema_are_those_the_server_parses() {
    let schemas = Schemas::load();
    for name in [
        "python",
        "PyThOn3",
        "py",
        "JS",
        "nodejs",
        "golang",
        "C#",
        "dotnet",
        "deno",
        "TypeScript",
        "ts",
        "cobol",
        "pythons",
        "",
        " go",
        "c",
    ] {
        let params = json!({"language": name, "code": ""});
        let parses = name.parse::<codebeaker::Language>().is_ok();
        assert_eq!(schemas.0["execution.run.params.json"].is_valid(&params), parses, "{name:?}");
    }
}

/// Sends `method` with `params`, checking the params against their schema first and the
/// response against the result or error schema; returns the response.
async fn exchange(client: &mut Client, schemas: &Schemas, method: &str, params: Value) -> Value {
    schemas.check(&format!("{method}.params.json"), &params);
    let response = client.request(method, params).await;
    match (response.get("result"), response.get("error")) {
        (Some(result), None) => schemas.check(&format!("{method}.result.json"), result),
        (None, Some(error)) => schemas.check("error.json", error),
        _ => panic!("neither a result nor an error: {response}"),
    }
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_replies_match_their_schemas() {
    let schemas = Schemas::load();
    let options = BackendOptions {
        choice: BackendChoice::Only(vec!["deno".to_owned()]),
        deno: codebeaker_deno::DenoConfig { pool_size: 1, ..codebeaker_deno::DenoConfig::default() },
        ..BackendOptions::default()
    };
    let backends = Backends::start(options).await.expect("the Deno backend starts");
    let handle = Server::bind(ServerConfig::ephemeral(), backends).await.expect("bind").spawn();
    let mut client = Client::connect(&handle.ws_url()).await;

    // session.create, by an alias, with permissions: the reply shows them (a Deno session).
    let params = json!({"language": "TS", "idleTimeoutMinutes": 0.5, "permissions": {"allowNet": ["example.org"]}});
    let created = exchange(&mut client, &schemas, "session.create", params).await;
    let created = &created["result"];
    assert_eq!(
        created["config"]["backendOptions"]["deno"]["permissions"]["allowNet"],
        json!(["example.org"]),
        "{created}"
    );
    let session = created["sessionId"].as_str().expect("sessionId").to_owned();

    // session.execute: every command, successes and failures, streamed and not.
    let mut commands = file_commands();
    commands.extend([
        json!({"type": "execute_shell", "commandName": "ls"}),
        json!({"type": "execute_code", "code": "console.log(6 * 7)"}),
        json!({"type": "execute_code", "code": "console.log('before'); throw new TypeError('boom')"}),
    ]);
    for command in commands {
        let response =
            exchange(&mut client, &schemas, "session.execute", json!({"sessionId": session, "command": command})).await;
        assert!(response["result"]["success"].is_boolean(), "{command}: {response}");
    }
    let streamed = json!({"sessionId": session, "stream": true, "timeoutMs": 30000,
                          "command": {"type": "execute_code", "code": "console.log('out'); console.error('err')"}});
    let response = exchange(&mut client, &schemas, "session.execute", streamed).await;
    assert_eq!(response["result"]["success"], true, "{response}");
    check_notifications(&mut client, &schemas);

    // Background processes are not a Deno capability: a clear error, no hang.
    assert_eq!(created["capabilities"]["processes"], false, "{created}");
    let start = json!({"sessionId": session, "command": {"commandName": "ls"}});
    let refused = exchange(&mut client, &schemas, "process.start", start).await;
    let data = refused["error"]["data"].as_str().unwrap_or_default();
    assert!(data.contains("background processes") && data.contains("deno"), "{refused}");

    // session.list, with and without params.
    let listed = exchange(&mut client, &schemas, "session.list", json!({})).await;
    assert_eq!(listed["result"]["count"], 1, "{listed}");
    let response = client.request("session.list", json!([])).await;
    schemas.check("session.list.result.json", &response["result"]);

    // execution.run.
    let run =
        exchange(&mut client, &schemas, "execution.run", json!({"language": "deno", "code": "console.log(1)"})).await;
    assert_eq!(run["result"]["success"], true, "{run}");

    // Errors: invalid params, an unknown session, an unknown method.
    let bad = client.request("session.create", json!({"language": "cobol"})).await;
    schemas.check("error.json", &bad["error"]);
    schemas.refuses("session.create.params.json", &json!({"language": "cobol"}));
    schemas.refuses("session.create.params.json", &json!({"language": "deno", "memoryLimit": 5}));
    schemas.refuses(
        "session.execute.params.json",
        &json!({"sessionId": session, "command": {"type": "write_file", "path": "a", "content": "", "workingDir": "/"}}),
    );
    let unknown = exchange(&mut client, &schemas, "session.close", json!({"sessionId": "no-such-session"})).await;
    assert_eq!(unknown["error"]["code"], -32001, "{unknown}");
    let missing = client.request("session.nothing", json!({})).await;
    schemas.check("error.json", &missing["error"]);

    // session.close.
    let closed = exchange(&mut client, &schemas, "session.close", json!({"sessionId": session})).await;
    assert_eq!(closed["result"], json!({"sessionId": session, "closed": true}));

    client.close().await;
    handle.shutdown().await;
}

/// The envelopes of the temp-dir test backend's scripted outcomes (streamed output, a
/// timeout, output cut at the 1 MiB limit, a thrown error, a crashed sandbox) match the
/// schema too.
#[tokio::test]
async fn scripted_outcomes_match_their_schemas() {
    let schemas = Schemas::load();
    let (handle, _backend) = common::tempdir_server(ServerConfig::ephemeral()).await;
    let mut client = Client::connect(&handle.ws_url()).await;
    let created = exchange(&mut client, &schemas, "session.create", json!({"language": "deno"})).await;
    let session = created["result"]["sessionId"].as_str().expect("sessionId").to_owned();
    for command in file_commands() {
        exchange(&mut client, &schemas, "session.execute", json!({"sessionId": session, "command": command})).await;
    }
    let scripts = [
        (json!({"stream": true}), "print out\nwarn err", "success", true),
        (json!({"timeoutMs": 50}), "spin", "success", false),
        (json!({}), "flood 1100000", "success", true),
        (json!({}), "throw boom", "success", false),
        (json!({}), "crash", "success", false),
    ];
    for (extra, script, field, expected) in scripts {
        let mut params = json!({"sessionId": session, "command": {"type": "execute_code", "code": script}});
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let response = exchange(&mut client, &schemas, "session.execute", params).await;
        assert_eq!(response["result"][field], expected, "{script}: {response}");
    }
    check_notifications(&mut client, &schemas);
    client.close().await;
    handle.shutdown().await;
}

/// The `process.*` replies and notifications, on the temp-dir test backend's script
/// processes, match their schemas.
#[tokio::test]
async fn process_replies_match_their_schemas() {
    let schemas = Schemas::load();
    let (handle, _backend) = common::tempdir_server(ServerConfig::ephemeral()).await;
    let mut client = Client::connect(&handle.ws_url()).await;
    let created = exchange(&mut client, &schemas, "session.create", json!({"language": "deno"})).await;
    let session = created["result"]["sessionId"].as_str().expect("sessionId").to_owned();
    let start = json!({"sessionId": session, "command": {"commandName": "script", "args": ["cat", "warn done"]},
                       "timeoutMs": 0});
    let started = exchange(&mut client, &schemas, "process.start", start).await;
    let pid = started["result"]["pid"].as_u64().expect("pid");
    let one = json!({"sessionId": session, "pid": pid});
    exchange(&mut client, &schemas, "process.list", json!({"sessionId": session})).await;
    let write = json!({"sessionId": session, "pid": pid, "data": "héllo\n"});
    exchange(&mut client, &schemas, "process.write", write).await;
    let resize = json!({"sessionId": session, "pid": pid, "cols": 80, "rows": 24});
    let refused = exchange(&mut client, &schemas, "process.resize", resize).await;
    assert!(refused["error"].is_object(), "a process on pipes has no terminal: {refused}");
    exchange(&mut client, &schemas, "process.closeStdin", one.clone()).await;
    let wait = json!({"sessionId": session, "pid": pid, "timeoutMs": 10000});
    let waited = exchange(&mut client, &schemas, "process.wait", wait).await;
    assert_eq!(waited["result"]["exitCode"], 0, "{waited}");
    let attach = json!({"sessionId": session, "pid": pid, "fromOffset": 1});
    exchange(&mut client, &schemas, "process.attach", attach).await;
    let sleeper = json!({"sessionId": session, "command": {"commandName": "script", "args": ["sleep 60000"]}});
    let sleeper = exchange(&mut client, &schemas, "process.start", sleeper).await["result"]["pid"].clone();
    let signal = json!({"sessionId": session, "pid": sleeper, "signal": "HUP"});
    exchange(&mut client, &schemas, "process.signal", signal).await;
    let wait = json!({"sessionId": session, "pid": sleeper, "timeoutMs": 10000});
    let waited = exchange(&mut client, &schemas, "process.wait", wait).await;
    assert_eq!(waited["result"]["signal"], "HUP", "{waited}");
    schemas.refuses("process.signal.params.json", &json!({"sessionId": session, "pid": 1, "signal": "STOP"}));
    schemas.refuses("process.start.params.json", &json!({"sessionId": session, "command": {"args": []}}));
    // Let the notifications of both processes (two attachments to the first) arrive.
    while client.notifications.iter().filter(|n| n["method"] == "process.exit").count() < 3 {
        let message = client.recv().await;
        client.notifications.push(message);
    }
    let mut methods = std::collections::BTreeSet::new();
    for notification in client.notifications.drain(..) {
        let method = notification["method"].as_str().expect("method").to_owned();
        schemas.check(&format!("{method}.params.json"), &notification["params"]);
        methods.insert(method);
    }
    assert_eq!(methods.into_iter().collect::<Vec<_>>(), ["process.exit", "process.output"]);
    client.close().await;
    handle.shutdown().await;
}

/// Checks the `session.output` notifications received so far (there must be some).
fn check_notifications(client: &mut Client, schemas: &Schemas) {
    let outputs: Vec<Value> = client.notifications.drain(..).collect();
    assert!(!outputs.is_empty(), "a streamed command sends session.output notifications");
    for notification in &outputs {
        assert_eq!(notification["method"], "session.output", "{notification}");
        schemas.check("session.output.params.json", &notification["params"]);
    }
}

/// File commands of every kind, succeeding and failing.
fn file_commands() -> Vec<Value> {
    vec![
        json!({"type": "create_directory", "path": "data"}),
        json!({"type": "write_file", "path": "data/a.txt", "content": "one\n"}),
        json!({"type": "write_file", "path": "data/a.txt", "content": "two\n", "append": true}),
        json!({"type": "write_file", "path": "data/b.bin", "content": "AAEC", "encoding": "base64", "mode": "Create"}),
        json!({"type": "read_file", "path": "data/a.txt"}),
        json!({"type": "read_file", "path": "data/b.bin", "encoding": "base64", "offset": 1, "length": 1}),
        json!({"type": "copy_file", "sourcePath": "data/a.txt", "destinationPath": "data/c.txt"}),
        json!({"type": "list_directory", "path": "data"}),
        json!({"type": "delete_file", "path": "data/c.txt"}),
        json!({"type": "read_file", "path": "missing.txt"}),
    ]
}
