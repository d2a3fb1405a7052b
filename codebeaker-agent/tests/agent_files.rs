//! The agent binary's file operations: the SDK's results and errors, links that lead
//! out refused, sizes checked while reading, and files owned by the command user.

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use codebeaker::{Error, ErrorKind};
use codebeaker_agent::client::AgentError;
use codebeaker_agent::protocol::{Base64Bytes, EntryKind, FsEntry, FsReply, FsRequest};
use support::{command_uid, Agent};

const MAX: u64 = 16 * 1024 * 1024;

fn write(path: &str, data: &[u8]) -> FsRequest {
    FsRequest::Write { path: path.into(), data: Base64Bytes(data.to_vec()), append: false }
}

fn read(path: &str) -> FsRequest {
    FsRequest::Read { path: path.into(), max_bytes: MAX, offset: 0, length: None }
}

fn sdk(err: AgentError) -> Error {
    err.into()
}

#[tokio::test]
async fn write_read_append_copy_list_delete() {
    let agent = Agent::start().await;
    let c = &agent.client;
    assert_eq!(c.fs(write("/workspace/src/app/main.txt", b"12345")).await.unwrap(), FsReply::Written { bytes: 5 });
    let append = FsRequest::Write { path: "src/app/main.txt".into(), data: Base64Bytes(b"67".to_vec()), append: true };
    c.fs(append).await.unwrap();
    assert_eq!(
        c.fs(read("src/app/main.txt")).await.unwrap(),
        FsReply::Read { data: Base64Bytes(b"1234567".to_vec()), size: 7 }
    );
    c.fs(FsRequest::Mkdir { path: "src/empty".into() }).await.unwrap();
    c.fs(FsRequest::Mkdir { path: "src/empty".into() }).await.expect("an existing directory is fine");
    let copied = c.fs(FsRequest::Copy { from: "src/app/main.txt".into(), to: "dst/copy.txt".into(), max_bytes: MAX });
    assert_eq!(copied.await.unwrap(), FsReply::Copied { bytes: 7 });
    let listed = c.fs(FsRequest::List { path: "src".into() }).await.unwrap();
    assert_eq!(
        listed,
        FsReply::Listed {
            entries: vec![
                FsEntry { name: "app".into(), kind: EntryKind::Directory, size: 0 },
                FsEntry { name: "empty".into(), kind: EntryKind::Directory, size: 0 },
            ]
        }
    );
    c.fs(FsRequest::Delete { path: "src".into() }).await.unwrap();
    assert!(!agent.workspace.join("src").exists(), "a directory is deleted with its content");
    let gone = sdk(c.fs(read("src/app/main.txt")).await.unwrap_err());
    assert_eq!(gone.to_string(), "File not found: /workspace/src/app/main.txt");
    let meta = std::fs::metadata(agent.workspace.join("dst/copy.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (command_uid(), command_uid()), "files belong to the command user");
}

#[tokio::test]
async fn errors_match_the_sdk() {
    let agent = Agent::start().await;
    let c = &agent.client;
    std::fs::create_dir(agent.workspace.join("dir")).unwrap();
    std::fs::write(agent.workspace.join("file"), "x").unwrap();
    let cases: Vec<(FsRequest, Error)> = vec![
        (read("missing.py"), Error::not_found("/workspace/missing.py")),
        (read("dir"), Error::invalid_input("/workspace/dir is a directory")),
        (write("dir", b"x"), Error::invalid_input("/workspace/dir is a directory")),
        (write("file/inner.txt", b"x"), Error::invalid_input("/workspace/file is not a directory")),
        (FsRequest::List { path: "file".into() }, Error::invalid_input("/workspace/file is not a directory")),
        (FsRequest::Mkdir { path: "file".into() }, Error::already_exists("/workspace/file")),
        (
            FsRequest::Copy { from: "dir".into(), to: "x".into(), max_bytes: MAX },
            Error::invalid_input("/workspace/dir is a directory; copy_file copies files"),
        ),
        (
            FsRequest::Delete { path: "/workspace".into() },
            Error::invalid_input("/workspace is the workspace root and cannot be deleted"),
        ),
        (FsRequest::Delete { path: "nothing".into() }, Error::not_found("/workspace/nothing")),
    ];
    for (request, expected) in cases {
        let what = format!("{request:?}");
        let got = sdk(c.fs(request).await.unwrap_err());
        assert_eq!(got, expected, "{what}");
    }
    for escape in ["../outside/x", "/etc/passwd", "/workspace/../etc/shadow", "a/../../x"] {
        let got = sdk(c.fs(read(escape)).await.unwrap_err());
        assert!(got.kind() == ErrorKind::PermissionDenied, "{escape}: {got:?}");
    }
}

#[tokio::test]
async fn symlinks_out_are_refused_and_symlinks_inside_work() {
    let agent = Agent::start().await;
    let c = &agent.client;
    let secret = agent.outside.join("secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    std::os::unix::fs::symlink(&secret, agent.workspace.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", agent.workspace.join("rel-link")).unwrap();
    std::os::unix::fs::symlink(&agent.outside, agent.workspace.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root/etc/passwd", agent.workspace.join("magic")).unwrap();
    for link in ["abs-link", "rel-link", "magic"] {
        let got = sdk(c.fs(read(link)).await.unwrap_err());
        assert!(got.kind() == ErrorKind::PermissionDenied, "read {link}: {got:?}");
        let got = sdk(c.fs(write(link, b"overwrite")).await.unwrap_err());
        assert!(got.kind() == ErrorKind::PermissionDenied, "write {link}: {got:?}");
        let copy = FsRequest::Copy { from: link.into(), to: "stolen".into(), max_bytes: MAX };
        let got = sdk(c.fs(copy).await.unwrap_err());
        assert!(got.kind() == ErrorKind::PermissionDenied, "copy {link}: {got:?}");
    }
    let got = sdk(c.fs(write("dir-link/planted.txt", b"x")).await.unwrap_err());
    assert!(got.kind() == ErrorKind::PermissionDenied, "{got:?}");
    let got = sdk(c.fs(FsRequest::List { path: "dir-link".into() }).await.unwrap_err());
    assert!(got.kind() == ErrorKind::PermissionDenied, "{got:?}");
    let got = sdk(c.fs(FsRequest::Mkdir { path: "dir-link/sub".into() }).await.unwrap_err());
    assert!(got.kind() == ErrorKind::PermissionDenied, "{got:?}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
    assert!(!agent.outside.join("planted.txt").exists() && !agent.outside.join("sub").exists());
    // Deleting a link removes the link, never its target.
    c.fs(FsRequest::Delete { path: "dir-link".into() }).await.unwrap();
    c.fs(FsRequest::Delete { path: "abs-link".into() }).await.unwrap();
    assert!(secret.exists());
    // Inside the workspace, links work.
    std::fs::write(agent.workspace.join("real.txt"), "inside").unwrap();
    std::os::unix::fs::symlink("real.txt", agent.workspace.join("alias.txt")).unwrap();
    assert_eq!(
        c.fs(read("alias.txt")).await.unwrap(),
        FsReply::Read { data: Base64Bytes(b"inside".to_vec()), size: 6 }
    );
    let FsReply::Listed { entries } = c.fs(FsRequest::List { path: ".".into() }).await.unwrap() else { panic!() };
    let alias = entries.iter().find(|e| e.name == "alias.txt").unwrap();
    assert_eq!(alias.kind, EntryKind::Symlink);
}

#[tokio::test]
async fn a_sparse_huge_file_and_a_fifo_are_refused_at_once() {
    let agent = Agent::start().await;
    let c = &agent.client;
    let sparse = std::fs::File::create(agent.workspace.join("sparse.bin")).unwrap();
    // As large as this file system allows (1 PiB where it can).
    let size = [1u64 << 50, 1 << 43, 1 << 40].into_iter().find(|size| sparse.set_len(*size).is_ok()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), c.fs(read("sparse.bin"))).await.unwrap();
    let got = sdk(got.unwrap_err());
    assert!(got.kind() == ErrorKind::LimitReached && got.message().contains(&format!("{size} bytes")), "{got:?}");
    let copy = FsRequest::Copy { from: "sparse.bin".into(), to: "copy.bin".into(), max_bytes: MAX };
    let got = sdk(tokio::time::timeout(Duration::from_secs(5), c.fs(copy)).await.unwrap().unwrap_err());
    assert!(got.kind() == ErrorKind::LimitReached, "{got:?}");
    let fifo = std::ffi::CString::new(agent.workspace.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
    let got = sdk(tokio::time::timeout(Duration::from_secs(5), c.fs(read("pipe"))).await.unwrap().unwrap_err());
    assert!(got.kind() == ErrorKind::InvalidInput && got.message().contains("not a regular file"), "{got:?}");
    // Listing never opens a file, so neither the FIFO nor the sparse file slows it.
    let listed =
        tokio::time::timeout(Duration::from_secs(5), c.fs(FsRequest::List { path: ".".into() })).await.unwrap();
    let FsReply::Listed { entries } = listed.unwrap() else { panic!() };
    let kinds: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind, e.size)).collect();
    assert_eq!(kinds, [("pipe", EntryKind::Other, 0), ("sparse.bin", EntryKind::File, size)]);
}

#[tokio::test]
async fn a_read_is_capped_by_what_the_host_asks() {
    let agent = Agent::start().await;
    std::fs::write(agent.workspace.join("ten.txt"), "0123456789").unwrap();
    let got = agent
        .client
        .fs(FsRequest::Read { path: "ten.txt".into(), max_bytes: 9, offset: 0, length: None })
        .await
        .unwrap_err();
    let got = sdk(got);
    assert!(got.kind() == ErrorKind::LimitReached && got.message().contains("at most 9 bytes"), "{got:?}");
}

#[tokio::test]
async fn many_file_operations_in_flight_at_once() {
    let agent = Agent::start().await;
    let writes = (0..50).map(|i| agent.client.fs(write(&format!("many/{i}.txt"), i.to_string().as_bytes())));
    for (i, result) in futures::future::join_all(writes).await.into_iter().enumerate() {
        assert_eq!(result.unwrap(), FsReply::Written { bytes: i.to_string().len() as u64 });
    }
    let FsReply::Listed { entries } = agent.client.fs(FsRequest::List { path: "many".into() }).await.unwrap() else {
        panic!()
    };
    assert_eq!(entries.len(), 50);
}
