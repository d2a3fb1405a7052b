//! The agent binary's workspace archives (`archive`, `unarchive`): a round trip between
//! two agents keeps files, directories and links, leaves fifos out, and creates what it
//! extracts as the command user; hostile archives are refused with nothing left.

mod support;

use std::os::unix::fs::MetadataExt as _;

use codebeaker_agent::client::AgentError;
use codebeaker_agent::protocol::{ErrorKind, FILE_DATA_CHUNK};
use support::{command_uid, Agent};

async fn archive(agent: &Agent, limit: u64) -> Result<Vec<u8>, AgentError> {
    let mut download = agent.client.archive(limit).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = download.next().await? {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn unarchive(agent: &Agent, bytes: &[u8]) -> Result<u64, AgentError> {
    let mut upload = agent.client.unarchive().await?;
    for chunk in bytes.chunks(FILE_DATA_CHUNK) {
        upload.send(chunk.to_vec()).await?;
    }
    upload.finish().await
}

fn kind(err: AgentError) -> ErrorKind {
    match err {
        AgentError::Remote(reply) => reply.kind,
        other => panic!("not a refusal: {other:?}"),
    }
}

#[tokio::test]
async fn a_workspace_moves_between_agents_as_the_command_user() {
    let from = Agent::start().await;
    assert!(from.hello.capabilities.iter().any(|c| c == "archive"), "{:?}", from.hello.capabilities);
    let out = from
        .sh("mkdir -p .local/lib/tiny && echo 'X = 1' > .local/lib/tiny/__init__.py && head -c 3000000 /dev/urandom > big.bin && ln -s big.bin alias && ln -s /etc/passwd abs && mkfifo pipe")
        .await;
    assert_eq!(out.exited.code, Some(0), "{out:?}");
    let bytes = archive(&from, 64 << 20).await.unwrap();
    let to = Agent::start().await;
    let written = unarchive(&to, &bytes).await.unwrap();
    assert_eq!(written, 3_000_000 + 6);
    assert_eq!(
        std::fs::read(to.workspace.join("big.bin")).unwrap(),
        std::fs::read(from.workspace.join("big.bin")).unwrap()
    );
    assert_eq!(std::fs::read_link(to.workspace.join("abs")).unwrap(), std::path::Path::new("/etc/passwd"));
    assert_eq!(std::fs::read_link(to.workspace.join("alias")).unwrap(), std::path::Path::new("big.bin"));
    assert!(!to.workspace.join("pipe").exists(), "fifos are left out");
    for path in [".local", ".local/lib/tiny/__init__.py", "big.bin"] {
        assert_eq!(std::fs::metadata(to.workspace.join(path)).unwrap().uid(), command_uid(), "{path}");
    }
    let err = archive(&from, 1 << 20).await.unwrap_err();
    assert_eq!(kind(err), ErrorKind::TooLarge);
    // Built with the guest's rights: what it made unreadable is refused by name.
    assert_eq!(from.sh("echo x > secret && chmod 000 secret").await.exited.code, Some(0));
    match archive(&from, 64 << 20).await.unwrap_err() {
        AgentError::Remote(reply) => {
            assert_eq!(reply.kind, ErrorKind::PermissionDenied, "{reply:?}");
            assert!(reply.message.contains("/workspace/secret"), "{reply:?}");
        }
        other => panic!("{other:?}"),
    }
}

fn entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    let data: &[u8] = if kind == tar::EntryType::Regular { b"evil" } else { b"" };
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[tokio::test]
async fn hostile_archives_are_refused_with_nothing_left() {
    use tar::EntryType as T;
    let agent = Agent::start().await;
    let outside = agent.outside.display().to_string();
    let cases: [&[(&str, T, &str)]; 6] = [
        &[("../outside/x", T::Regular, "")],
        &[("/tmp/codebeaker-abs-x", T::Regular, "")],
        &[("hard", T::Link, "/etc/passwd")],
        &[("fifo", T::Fifo, "")],
        &[("null", T::Char, "")],
        &[("esc", T::Symlink, &outside), ("esc/x", T::Regular, "")],
    ];
    for case in cases {
        let mut bytes = Vec::new();
        entry(&mut bytes, "good.txt", T::Regular, "");
        for (name, kind, link) in case {
            entry(&mut bytes, name, *kind, link);
        }
        bytes.extend_from_slice(&[0u8; 1024]);
        let err = unarchive(&agent, &bytes).await.unwrap_err();
        assert_eq!(kind(err), ErrorKind::InvalidInput, "{case:?}");
        assert!(std::fs::read_dir(&agent.workspace).unwrap().next().is_none(), "{case:?}: nothing remains");
        assert!(std::fs::read_dir(&agent.outside).unwrap().next().is_none(), "{case:?}: nothing outside");
    }
    assert!(!std::path::Path::new("/tmp/codebeaker-abs-x").exists());
}
