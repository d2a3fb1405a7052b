//! The agent binary's streamed transfers (protocol 2): uploads and downloads of files
//! bigger than any frame, offsets, appends, ranged reads, and what a failed or cancelled
//! upload leaves (nothing).

mod support;

use codebeaker::{Error, ErrorKind};
use codebeaker_agent::client::AgentError;
use codebeaker_agent::protocol::{Base64Bytes, FsReply, FsRequest, FILE_DATA_CHUNK};
use support::{command_uid, Agent};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn upload(agent: &Agent, path: &str, data: &[u8], append: bool) -> Result<u64, AgentError> {
    let mut upload = agent.client.upload(path.into(), append).await?;
    for chunk in data.chunks(FILE_DATA_CHUNK) {
        upload.send(chunk.to_vec()).await?;
    }
    upload.finish().await
}

async fn download(agent: &Agent, path: &str, offset: u64) -> Result<(u64, Vec<u8>), AgentError> {
    let mut download = agent.client.download(path.into(), offset).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = download.next().await? {
        assert!(chunk.len() <= FILE_DATA_CHUNK, "a chunk of {} bytes", chunk.len());
        bytes.extend(chunk);
    }
    Ok((download.size(), bytes))
}

#[tokio::test]
async fn files_bigger_than_a_frame_stream_both_ways() {
    let agent = Agent::start().await;
    let data = pattern(5 * FILE_DATA_CHUNK + 123);
    assert_eq!(upload(&agent, "deep/er/big.bin", &data, false).await.unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(agent.workspace.join("deep/er/big.bin")).unwrap(), data);
    assert_eq!(upload(&agent, "deep/er/big.bin", b"tail", true).await.unwrap(), 4);
    let mut whole = data.clone();
    whole.extend_from_slice(b"tail");
    assert_eq!(download(&agent, "/workspace/deep/er/big.bin", 0).await.unwrap(), (whole.len() as u64, whole.clone()));
    let offset = 3 * FILE_DATA_CHUNK as u64 + 5;
    let (size, tail) = download(&agent, "deep/er/big.bin", offset).await.unwrap();
    assert_eq!((size, tail.as_slice()), (whole.len() as u64, &whole[offset as usize..]));
    let (_, past) = download(&agent, "deep/er/big.bin", 1 << 40).await.unwrap();
    assert!(past.is_empty(), "an offset past the end sends nothing");

    // Ranged reads: at most `length`, from `offset`, with the whole size.
    let ranged = FsRequest::Read { path: "deep/er/big.bin".into(), max_bytes: 16, offset: 10, length: Some(1000) };
    let expected = FsReply::Read { data: Base64Bytes(whole[10..26].to_vec()), size: whole.len() as u64 };
    assert_eq!(agent.client.fs(ranged).await.unwrap(), expected, "a range never exceeds max_bytes");
    let rest =
        FsRequest::Read { path: "deep/er/big.bin".into(), max_bytes: 16, offset: whole.len() as u64 - 3, length: None };
    let expected = FsReply::Read { data: Base64Bytes(b"ail".to_vec()), size: whole.len() as u64 };
    assert_eq!(agent.client.fs(rest).await.unwrap(), expected, "the rest, when it fits");
}

#[tokio::test]
async fn refused_and_abandoned_transfers_leave_nothing() {
    let agent = Agent::start().await;
    std::fs::create_dir(agent.workspace.join("dir")).unwrap();
    let err = |e: AgentError| Error::from(e);
    assert_eq!(err(agent.client.download("missing".into(), 0).await.err().unwrap()).kind(), ErrorKind::NotFound);
    assert_eq!(err(agent.client.download("dir".into(), 0).await.err().unwrap()).kind(), ErrorKind::InvalidInput);
    assert_eq!(err(agent.client.upload("dir".into(), false).await.err().unwrap()).kind(), ErrorKind::InvalidInput);
    let escape = agent.client.upload("../outside/x".into(), false).await.err().unwrap();
    assert!(err(escape).kind() == ErrorKind::PermissionDenied);
    assert!(std::fs::read_dir(&agent.outside).unwrap().next().is_none(), "nothing written outside");

    // An upload dropped half-way is cancelled: a new file is removed, an appended one cut
    // back to its old length.
    let mut dropped = agent.client.upload("new.bin".into(), false).await.unwrap();
    dropped.send(pattern(FILE_DATA_CHUNK)).await.unwrap();
    drop(dropped);
    std::fs::write(agent.workspace.join("old.txt"), b"keep me").unwrap();
    std::os::unix::fs::chown(agent.workspace.join("old.txt"), Some(command_uid()), Some(command_uid())).unwrap();
    let mut dropped = agent.client.upload("old.txt".into(), true).await.unwrap();
    dropped.send(pattern(FILE_DATA_CHUNK)).await.unwrap();
    drop(dropped);
    // The agent undoes once it sees the cancel.
    for _ in 0..100 {
        let gone = !agent.workspace.join("new.bin").exists();
        let cut = std::fs::read(agent.workspace.join("old.txt")).unwrap() == b"keep me";
        if gone && cut {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "a cancelled upload left something: new.bin exists: {}, old.txt: {:?}",
        agent.workspace.join("new.bin").exists(),
        std::fs::metadata(agent.workspace.join("old.txt")).map(|m| m.len())
    );
}
