//! The permission matrix: reads and writes inside and outside the allowed paths (host
//! paths only where the operator's policy makes them grantable), `../` and symlink
//! escapes, the session's own environment, and `fetch` allowed and denied (against a
//! loopback HTTP server the operator's policy lets sessions reach).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use codebeaker::{Allowlist, NetPolicy, Policy};
use codebeaker_deno::DenoPermissions;
use common::*;

const DENIED_READ: &str = "PermissionDenied: Requires read access to";
const DENIED_WRITE: &str = "PermissionDenied: Requires write access to";

#[tokio::test(flavor = "multi_thread")]
async fn default_permissions_allow_the_workspace_only() {
    let (_root, backend, manager) = manager();
    let id = session(&manager).await;
    let ok = "await Deno.mkdir('dir/sub', { recursive: true });\nawait Deno.writeTextFile('dir/sub/a.txt', 'one');\nawait Deno.writeTextFile('/workspace/dir/sub/a.txt', '+two', { append: true });\nconst names = [];\nfor await (const e of Deno.readDir('dir/sub')) names.push(e.name + (e.isFile ? ':file' : ''));\nconst info = await Deno.stat('dir/sub/a.txt');\nconsole.log(await Deno.readTextFile('dir/sub/a.txt'), names.join(','), info.size, info.isFile);\nawait Deno.writeFile('bin', new Uint8Array([1, 2, 3]));\nconsole.log((await Deno.readFile('bin')).length);\nawait Deno.remove('dir', { recursive: true });";
    assert_eq!(output(&manager, &id, ok).await, "one+two a.txt:file 7 true\n3");
    let missing = error(&manager, &id, "await Deno.readTextFile('nope.txt')").await;
    assert!(missing.starts_with("NotFound: ") && missing.contains("/workspace/nope.txt"), "{missing}");
    assert_eq!(
        error(&manager, &id, "await Deno.readTextFile('/etc/passwd')").await,
        format!("{DENIED_READ} \"/etc/passwd\"")
    );
    assert_eq!(
        error(&manager, &id, "await Deno.readTextFile('../../../etc/passwd')").await,
        format!("{DENIED_READ} \"/etc/passwd\"")
    );
    assert_eq!(
        error(&manager, &id, "await Deno.writeTextFile('/tmp/owned.txt', 'x')").await,
        format!("{DENIED_WRITE} \"/tmp/owned.txt\"")
    );
    // The workspaces of other sessions are outside too.
    let other = backend.workspaces_dir().display().to_string();
    let escape = error(&manager, &id, &format!("await Deno.readDir({other:?})[Symbol.asyncIterator]().next()")).await;
    assert!(escape.starts_with(DENIED_READ), "{escape}");
    let caught = output(&manager, &id, "try { await Deno.readTextFile('/etc/hostname') } catch (e) { console.log(e instanceof Deno.errors.PermissionDenied, e.name) }").await;
    assert_eq!(caught, "true PermissionDenied");
    assert!(!std::path::Path::new("/tmp/owned.txt").exists());
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_are_judged_by_where_they_lead() {
    let (_root, backend, manager) = manager();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "host secret").unwrap();
    let id = session(&manager).await;
    let listed = manager.list();
    let sandbox = &listed.iter().find(|s| s.session_id == id).unwrap().container_id;
    let workspace = backend.workspace_of(sandbox).expect("the session has a workspace");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), workspace.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.join("dirlink")).unwrap();
    std::os::unix::fs::symlink("inside.txt", workspace.join("alias.txt")).unwrap();
    std::fs::write(workspace.join("inside.txt"), "inside").unwrap();
    assert!(error(&manager, &id, "await Deno.readTextFile('link.txt')").await.starts_with(DENIED_READ));
    assert!(error(&manager, &id, "await Deno.writeTextFile('dirlink/planted.txt', 'x')")
        .await
        .starts_with(DENIED_WRITE));
    assert!(error(&manager, &id, "await import('./dirlink/secret.txt')").await.contains("Requires read access"));
    assert_eq!(output(&manager, &id, "console.log(await Deno.readTextFile('alias.txt'))").await, "inside");
    assert!(!outside.path().join("planted.txt").exists());
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_paths_can_be_granted_separately_for_read_and_write() {
    let shared = passable_tempdir();
    let policy = Policy {
        backends: [("deno".into(), serde_json::json!({"grantable-paths": vec![shared.path().to_path_buf()]}))].into(),
        ..Policy::default()
    };
    let (_root, _backend, manager) = manager_with_policy(policy);
    std::fs::write(shared.path().join("input.csv"), "a,b").unwrap();
    let data = shared.path().display().to_string();
    let id =
        session_with(&manager, DenoPermissions { allow_read: vec![data.clone()], ..DenoPermissions::default() }).await;
    assert_eq!(
        output(&manager, &id, &format!("console.log(await Deno.readTextFile({:?}))", format!("{data}/input.csv")))
            .await,
        "a,b"
    );
    let write = error(&manager, &id, &format!("await Deno.writeTextFile({:?}, 'x')", format!("{data}/out.txt"))).await;
    assert!(write.starts_with(DENIED_WRITE), "{write}");
    let sibling = error(&manager, &id, &format!("await Deno.readTextFile({:?})", format!("{data}/../x"))).await;
    assert!(sibling.starts_with(DENIED_READ), "{sibling}");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn env_is_the_sessions_own_map() {
    let (_root, _backend, manager) = manager();
    std::env::set_var("CODEBEAKER_HOST_SECRET", "host-only");
    let denied = session(&manager).await;
    assert_eq!(
        error(&manager, &denied, "Deno.env.get('HOME')").await,
        "PermissionDenied: Requires env access to \"HOME\""
    );
    assert!(error(&manager, &denied, "Deno.env.toObject()").await.starts_with("PermissionDenied"));
    let some = session_with(
        &manager,
        DenoPermissions { allow_env: Allowlist::Only(vec!["API_KEY".into()]), ..Default::default() },
    )
    .await;
    assert_eq!(
        output(&manager, &some, "Deno.env.set('API_KEY', 'k1'); console.log(Deno.env.get('API_KEY'))").await,
        "k1"
    );
    assert!(error(&manager, &some, "Deno.env.set('PATH', '/evil')").await.starts_with("PermissionDenied"));
    let all = session_with(&manager, DenoPermissions { allow_env: Allowlist::All, ..Default::default() }).await;
    assert_eq!(
        output(&manager, &all, "console.log(Deno.env.get('CODEBEAKER_HOST_SECRET'), Deno.env.get('HOME'), JSON.stringify(Deno.env.toObject()))").await,
        "undefined undefined {}",
        "the host's environment is never visible"
    );
    for id in [denied, some, all] {
        manager.close(&id).await.unwrap();
    }
}

/// A loopback HTTP server answering every request with `hello from loopback` and the
/// request line; returns its port.
fn loopback_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
            let line = request.lines().next().unwrap_or_default().to_owned();
            let body = format!("hello from loopback: {line}");
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-test: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_follows_allow_net() {
    // The operator lets sessions reach this loopback address; `allowNet` still decides.
    let net = NetPolicy { allowed_private: vec!["127.0.0.1/32".into()], ..NetPolicy::default() };
    let (_root, _backend, manager) = manager_with_policy(Policy { net, ..Policy::default() });
    let port = loopback_server();
    let url = format!("http://127.0.0.1:{port}/data?x=1");
    let none = session(&manager).await;
    assert_eq!(
        error(&manager, &none, &format!("await fetch({url:?})")).await,
        format!("PermissionDenied: Requires net access to \"127.0.0.1:{port}\"")
    );
    let exact = session_with(
        &manager,
        DenoPermissions { allow_net: Allowlist::Only(vec![format!("127.0.0.1:{port}")]), ..Default::default() },
    )
    .await;
    let code = format!("const r = await fetch({url:?}, {{ method: 'POST', body: 'hi' }});\nconsole.log(r.status, r.ok, r.headers.get('x-test'), await r.text());");
    assert_eq!(
        output(&manager, &exact, &code).await,
        format!("200 true yes hello from loopback: POST /data?x=1 HTTP/1.1")
    );
    let other_host = error(&manager, &exact, "await fetch('http://localhost:1/')").await;
    assert_eq!(other_host, "PermissionDenied: Requires net access to \"localhost:1\"");
    let all = session_with(&manager, DenoPermissions { allow_net: Allowlist::All, ..Default::default() }).await;
    assert_eq!(
        output(&manager, &all, &format!("console.log((await (await fetch({url:?})).text()).length > 0)")).await,
        "true"
    );
    for id in [none, exact, all] {
        manager.close(&id).await.unwrap();
    }
}
