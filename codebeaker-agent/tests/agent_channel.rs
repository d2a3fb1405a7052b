//! The agent binary's channel: garbage from the host ends it with a clear error and
//! exit status, a request it does not know is refused without ending it, and the end
//! of its input ends it cleanly.

use std::process::Stdio;
use std::time::Duration;

use codebeaker_agent::protocol::{AgentMessage, ErrorKind, Frame, HostMessage, DEFAULT_MAX_FRAME};
use codebeaker_agent::transport::{FrameReader, FrameWriter};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn agent() -> (tokio::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-agent"))
        .arg("--workspace")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, dir)
}

#[tokio::test]
async fn garbage_on_stdin_ends_the_agent_with_a_clear_error() {
    let (mut child, _dir) = agent();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("not an agent frame"), "{stderr}");
    let mut stdout = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).await.unwrap();
    assert!(stdout.is_empty(), "nothing but frames ever goes to stdout: {stdout:?}");
}

#[tokio::test]
async fn an_oversized_frame_ends_the_agent_before_it_allocates() {
    let (mut child, _dir) = agent();
    let mut stdin = child.stdin.take().unwrap();
    let mut header = Frame::message(1, &HostMessage::Ping).unwrap().encode(DEFAULT_MAX_FRAME).unwrap();
    header[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    stdin.write_all(&header[..16]).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(2));
}

#[tokio::test]
async fn an_unknown_request_is_refused_and_the_agent_goes_on() {
    let (mut child, _dir) = agent();
    let mut writer = FrameWriter::new(child.stdin.take().unwrap(), DEFAULT_MAX_FRAME);
    let mut reader = FrameReader::new(child.stdout.take().unwrap(), DEFAULT_MAX_FRAME);
    let unknown = Frame {
        kind: codebeaker_agent::protocol::FrameKind::Message,
        flags: 0,
        id: 5,
        body: br#"{"type":"teleport"}"#.to_vec(),
    };
    writer.send(&unknown).await.unwrap();
    let reply = reader.next().await.unwrap().unwrap();
    let AgentMessage::Error(error) = reply.parse::<AgentMessage>().unwrap() else { panic!("{reply:?}") };
    assert_eq!((reply.id, error.kind), (5, ErrorKind::Unsupported));
    writer.send(&Frame::message(6, &HostMessage::Ping).unwrap()).await.unwrap();
    let pong = reader.next().await.unwrap().unwrap();
    assert_eq!((pong.id, pong.parse::<AgentMessage>().unwrap()), (6, AgentMessage::Pong));
    drop(writer);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "the end of input ends the agent cleanly");
}
