//! Workspace archives of Deno sandboxes (`Archives` on their host workspaces): what one
//! session's code wrote moves into a fresh session, owned by the new sandbox's uid and
//! readable by its code; `snapshots` is declared.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use codebeaker::{Backend as _, Command, CommandResult, ExecContext, Language, Policy, Sandbox, SessionConfig};
use common::*;
use tokio::io::AsyncReadExt as _;

async fn run(sandbox: &dyn Sandbox, command: Command) -> CommandResult {
    sandbox.execute(command, ExecContext::new(Duration::from_secs(30))).await.expect("execute")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_moves_into_a_fresh_session() {
    let (_root, backend) = backend();
    assert!(backend.capabilities(Language::TypeScript).snapshots);
    let config = SessionConfig::new(Language::TypeScript);
    let limits = Policy::default().limits_for(&config).expect("limits");
    let from = backend.create_sandbox(&config, &limits).await.expect("create");
    run(
        from.as_ref(),
        Command::code(
            "await Deno.mkdir('lib', { recursive: true }); await Deno.writeTextFile('lib/a.txt', 'from deno');",
        ),
    )
    .await;
    let mut export = from.archives().expect("archives").export(64 << 20).await.expect("export");
    let mut archive = Vec::new();
    export.reader.read_to_end(&mut archive).await.expect("the whole archive");

    let to = backend.create_sandbox(&config, &limits).await.expect("create");
    let body: codebeaker::workspace::UploadBody = Box::pin(std::io::Cursor::new(archive));
    assert_eq!(to.archives().expect("archives").import(body).await.expect("import"), 9);
    match run(to.as_ref(), Command::code("console.log(await Deno.readTextFile('lib/a.txt'))")).await {
        CommandResult::ExecuteCode(result) => assert_eq!(result.stdout.trim(), "from deno", "{result:?}"),
        other => panic!("{other:?}"),
    }
    let workspace = backend.workspace_of(to.id()).expect("the sandbox has a workspace");
    let owner = std::fs::metadata(&workspace).unwrap().uid();
    assert_eq!(std::fs::metadata(workspace.join("lib/a.txt")).unwrap().uid(), owner, "the new sandbox owns it");
    from.close().await.unwrap();
    to.close().await.unwrap();
}
