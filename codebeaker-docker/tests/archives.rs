//! Workspace archives of real containers (`Archives` through the agent): a workspace with
//! files, a symbolic link, a fifo and a user-installed package moves from one session's
//! container into a fresh one; the package directories `pip install --user` uses lie
//! beneath /workspace, so they travel with it.

mod common;

use std::time::Duration;

use codebeaker::{Backend as _, CommandResult, ExecContext, Language, Sandbox, SessionConfig};
use common::{backend, sh};
use tokio::io::AsyncReadExt as _;

async fn run(sandbox: &dyn Sandbox, script: &str) -> String {
    let result = sandbox.execute(sh(script), ExecContext::new(Duration::from_secs(30))).await.expect("execute");
    match result {
        CommandResult::ExecuteShell(r) => {
            assert_eq!(r.exit_code, 0, "{script}: {r:?}");
            r.stdout
        }
        other => panic!("expected a shell result, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_moves_into_a_fresh_container_with_its_packages() {
    let Some(backend) = backend("archives", 0).await else { return };
    assert!(backend.capabilities(Language::Python).snapshots);
    let config = SessionConfig::new(Language::Python);
    let limits = backend.config().policy.limits_for(&config).expect("limits");
    let from = backend.create_sandbox(&config, &limits).await.expect("create");
    // Where `pip install --user` puts packages and scripts: beneath the workspace.
    let site = run(from.as_ref(), "python3 -m site --user-site; python3 -m site --user-base").await;
    assert!(site.lines().all(|l| l.starts_with("/workspace/")), "{site}");
    let site_dir = site.lines().next().unwrap().to_owned();
    run(
        from.as_ref(),
        &format!(
            "mkdir -p {site_dir}/tinypkg && echo 'ANSWER = 42' > {site_dir}/tinypkg/__init__.py \
             && mkdir -p data && head -c 2000000 /dev/urandom > data/big.bin && echo hello > hi.txt \
             && ln -s hi.txt alias && mkfifo pipe"
        ),
    )
    .await;
    let before = run(from.as_ref(), "cd /workspace && find . -type f -exec md5sum {} + | sort").await;

    let mut export = from.archives().expect("archives").export(256 << 20).await.expect("export");
    let mut archive = Vec::new();
    export.reader.read_to_end(&mut archive).await.expect("the whole archive");

    let to = backend.create_sandbox(&config, &limits).await.expect("create");
    let body: codebeaker::workspace::UploadBody = Box::pin(std::io::Cursor::new(archive));
    let written = to.archives().expect("archives").import(body).await.expect("import");
    assert!(written > 2_000_000, "{written}");
    let after = run(to.as_ref(), "cd /workspace && find . -type f -exec md5sum {} + | sort").await;
    assert_eq!(after, before, "files equal");
    let kinds = run(to.as_ref(), "cd /workspace && stat -c '%F %u' alias hi.txt; test ! -e pipe && echo no-fifo").await;
    let owner = run(to.as_ref(), "id -u").await;
    let owner = owner.trim();
    assert_eq!(kinds, format!("symbolic link {owner}\nregular file {owner}\nno-fifo\n"));
    assert_eq!(run(to.as_ref(), "python3 -c 'import tinypkg; print(tinypkg.ANSWER)'").await.trim(), "42");

    // Past its limit, the archive ends with LimitReached.
    let mut export = from.archives().unwrap().export(1 << 20).await.expect("export");
    let err = export.reader.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(codebeaker::workspace::archive_error(err, "export").kind(), codebeaker::ErrorKind::LimitReached);

    from.close().await.unwrap();
    to.close().await.unwrap();
    common::finish(backend).await;
}
