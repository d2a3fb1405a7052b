//! The host-side client against scripted agents over an in-memory stream: several
//! requests in flight, and every way an agent can misbehave ending in a clean error.

use std::time::Duration;

use codebeaker_agent::client::{AgentClient, AgentError, ClientConfig, ExecEvent};
use codebeaker_agent::protocol::*;
use codebeaker_agent::transport::{FrameReader, FrameWriter};
use tokio::io::{AsyncWriteExt as _, DuplexStream};

type AgentSide = (FrameReader<tokio::io::ReadHalf<DuplexStream>>, FrameWriter<tokio::io::WriteHalf<DuplexStream>>);

fn pair(config: ClientConfig) -> (AgentClient, AgentSide) {
    let (host, agent) = tokio::io::duplex(1 << 20);
    let (host_read, host_write) = tokio::io::split(host);
    let client = AgentClient::start(host_read, host_write, config);
    let (agent_read, agent_write) = tokio::io::split(agent);
    (client, (FrameReader::new(agent_read, DEFAULT_MAX_FRAME), FrameWriter::new(agent_write, DEFAULT_MAX_FRAME)))
}

async fn reply(writer: &mut FrameWriter<tokio::io::WriteHalf<DuplexStream>>, id: u64, message: AgentMessage) {
    writer.send(&Frame::message(id, &message).unwrap()).await.unwrap();
}

fn exited(code: i32) -> AgentMessage {
    AgentMessage::Exited(ExecExited {
        code: Some(code),
        signal: None,
        timed_out: false,
        truncated: false,
        usage: Usage::default(),
    })
}

#[tokio::test]
async fn requests_in_flight_are_answered_out_of_order() {
    let (client, (mut reader, mut writer)) = pair(ClientConfig::default());
    let agent = tokio::spawn(async move {
        let first = reader.next().await.unwrap().unwrap();
        let second = reader.next().await.unwrap().unwrap();
        // The second request first, and a frame for an id nobody asked about.
        reply(&mut writer, 999, AgentMessage::Pong).await;
        writer.send(&Frame::data(FrameKind::Stdout, second.id, b"two".to_vec(), false)).await.unwrap();
        reply(&mut writer, second.id, exited(2)).await;
        writer.send(&Frame::data(FrameKind::Stdout, first.id, b"one".to_vec(), false)).await.unwrap();
        reply(&mut writer, first.id, exited(1)).await;
        (reader, writer)
    });
    let one = client.exec(ExecRequest::new(ExecCommand::Shell("one".into()), 5000, 100));
    let one = one.await.unwrap();
    let two = client.exec(ExecRequest::new(ExecCommand::Shell("two".into()), 5000, 100)).await.unwrap();
    let (one, two) = tokio::join!(one.collect(100), two.collect(100));
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!((one.stdout.as_slice(), one.exited.code), (&b"one"[..], Some(1)));
    assert_eq!((two.stdout.as_slice(), two.exited.code), (&b"two"[..], Some(2)));
    let _ = agent.await.unwrap();
    assert_eq!(client.closed_reason(), None, "a frame for an unknown id is dropped, not fatal");
}

#[tokio::test]
async fn output_beyond_the_cap_is_cut_on_the_host_whatever_the_agent_sends() {
    let (client, (mut reader, mut writer)) = pair(ClientConfig::default());
    tokio::spawn(async move {
        let request = reader.next().await.unwrap().unwrap();
        for _ in 0..10 {
            writer.send(&Frame::data(FrameKind::Stdout, request.id, vec![b'x'; 1000], false)).await.unwrap();
        }
        reply(&mut writer, request.id, exited(0)).await;
        reader
    });
    let out = client.exec_collect(ExecRequest::new(ExecCommand::Shell("yes".into()), 5000, 2500)).await.unwrap();
    assert_eq!(out.stdout.len(), 2500);
    assert!(out.exited.truncated, "the cut is reported");
}

#[tokio::test]
async fn garbage_from_the_agent_fails_every_waiting_call_and_later_ones() {
    let (host, agent) = tokio::io::duplex(1 << 16);
    let (host_read, host_write) = tokio::io::split(host);
    let client = AgentClient::start(host_read, host_write, ClientConfig::default());
    let (agent_read, mut agent_write) = tokio::io::split(agent);
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    let mut reader = FrameReader::new(agent_read, DEFAULT_MAX_FRAME);
    reader.next().await.unwrap().unwrap();
    agent_write.write_all(b"Traceback (most recent call last):\n").await.unwrap();
    let failed = waiting.await.unwrap();
    assert!(matches!(&failed, Err(AgentError::Closed(reason)) if reason.contains("magic")), "{failed:?}");
    let later = client.fs(FsRequest::List { path: ".".into() }).await;
    assert!(matches!(&later, Err(AgentError::Closed(_))), "{later:?}");
    let sdk: codebeaker::Error = later.unwrap_err().into();
    assert_eq!(sdk.kind(), codebeaker::ErrorKind::SandboxFailed, "{sdk:?}");
    assert!(sdk.to_string().starts_with("Sandbox failed: agent channel closed: "), "{sdk}");
    let link = std::error::Error::source(&sdk).and_then(|s| s.downcast_ref::<AgentError>());
    assert!(matches!(link, Some(AgentError::Closed(_))), "the broken link is the source: {sdk:?}");
}

#[tokio::test]
async fn an_agent_that_dies_mid_command_ends_the_command() {
    let (client, (mut reader, mut writer)) = pair(ClientConfig::default());
    tokio::spawn(async move {
        let request = reader.next().await.unwrap().unwrap();
        reply(&mut writer, request.id, AgentMessage::Started { pid: 7 }).await;
        // Dropping both halves closes the stream.
    });
    let mut stream = client.exec(ExecRequest::new(ExecCommand::Shell("sleep 100".into()), 100_000, 10)).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), ExecEvent::Started { pid: 7 });
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap();
    assert!(matches!(&ended, Err(AgentError::Closed(reason)) if reason.contains("closed")), "{ended:?}");
}

#[tokio::test]
async fn a_silent_agent_times_out_and_the_command_is_cancelled() {
    let config = ClientConfig { reply_grace: Duration::from_millis(200), ..ClientConfig::default() };
    let (client, (mut reader, _writer)) = pair(config);
    let result = client.exec_collect(ExecRequest::new(ExecCommand::Shell("true".into()), 100, 10)).await;
    assert!(matches!(result, Err(AgentError::TimedOut(_))), "{result:?}");
    let request = reader.next().await.unwrap().unwrap();
    let cancel = tokio::time::timeout(Duration::from_secs(5), reader.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((cancel.id, cancel.parse::<HostMessage>().unwrap()), (request.id, HostMessage::Cancel));
}

#[tokio::test]
async fn a_remote_error_keeps_its_kind_into_the_sdk_error() {
    let (client, (mut reader, mut writer)) = pair(ClientConfig::default());
    tokio::spawn(async move {
        let request = reader.next().await.unwrap().unwrap();
        let error =
            ErrorReply::at(ErrorKind::NotFound, "/workspace/missing.py", "File not found: /workspace/missing.py");
        reply(&mut writer, request.id, AgentMessage::Error(error)).await;
        reader
    });
    let err = client
        .fs(FsRequest::Read { path: "missing.py".into(), max_bytes: 10, offset: 0, length: None })
        .await
        .unwrap_err();
    let sdk: codebeaker::Error = err.into();
    assert_eq!(sdk, codebeaker::Error::not_found("/workspace/missing.py"));
}

#[tokio::test]
async fn a_version_the_host_does_not_speak_is_refused() {
    let (client, (mut reader, mut writer)) = pair(ClientConfig::default());
    tokio::spawn(async move {
        let request = reader.next().await.unwrap().unwrap();
        let hello = AgentHello { protocol: 99, agent: "future".into(), capabilities: Vec::new() };
        reply(&mut writer, request.id, AgentMessage::Hello(hello)).await;
        reader
    });
    let refused = client.hello().await;
    assert!(
        matches!(
            refused,
            Err(AgentError::Protocol(ProtocolError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: 99 }))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn re_attaching_mid_stream_skips_to_the_handshake_answer() {
    let (host, agent) = tokio::io::duplex(1 << 16);
    let (host_read, host_write) = tokio::io::split(host);
    let (agent_read, mut agent_write) = tokio::io::split(agent);
    let agent_task = tokio::spawn(async move {
        let mut reader = FrameReader::new(agent_read, DEFAULT_MAX_FRAME);
        let hello = reader.next().await.unwrap().unwrap();
        // What the engine delivers on a new attach: the tail of a frame cut mid-way, a
        // whole frame for an earlier client's request, then the answer.
        let old = Frame::data(FrameKind::Stdout, 3, b"old output".to_vec(), false).encode(DEFAULT_MAX_FRAME).unwrap();
        agent_write.write_all(&old[7..]).await.unwrap();
        agent_write.write_all(&old).await.unwrap();
        let reply =
            AgentMessage::Hello(AgentHello { protocol: PROTOCOL_VERSION, agent: "a".into(), capabilities: Vec::new() });
        agent_write
            .write_all(&Frame::message(hello.id, &reply).unwrap().encode(DEFAULT_MAX_FRAME).unwrap())
            .await
            .unwrap();
        let ping = reader.next().await.unwrap().unwrap();
        agent_write
            .write_all(&Frame::message(ping.id, &AgentMessage::Pong).unwrap().encode(DEFAULT_MAX_FRAME).unwrap())
            .await
            .unwrap();
        (reader, agent_write)
    });
    let config = ClientConfig { resync: Some(1 << 20), ..ClientConfig::default() };
    let (client, hello) = AgentClient::connect_split(host_read, host_write, config).await.unwrap();
    assert_eq!(hello.agent, "a");
    client.ping().await.unwrap();
    let _ = agent_task.await.unwrap();
}

#[tokio::test]
async fn a_call_holds_at_most_its_byte_bound_and_loses_nothing() {
    use codebeaker_agent::client::BufferPool;
    const BOUND: u32 = 2 * 1024 * 1024;
    let server = BufferPool::new(64 * 1024 * 1024);
    let config = ClientConfig { call_buffer: BOUND, server_buffer: server.clone(), ..ClientConfig::default() };
    let (client, (mut reader, mut writer)) = pair(config);
    // 20 MiB of output in 1 MiB frames, far more than the call may hold.
    let agent = tokio::spawn(async move {
        let request = reader.next().await.unwrap().unwrap();
        for _ in 0..20 {
            writer.send(&Frame::data(FrameKind::Stdout, request.id, vec![b'x'; 1 << 20], false)).await.unwrap();
        }
        reply(&mut writer, request.id, exited(0)).await;
        (reader, writer)
    });
    let stream = client.exec(ExecRequest::new(ExecCommand::Shell("yes".into()), 30_000, 1 << 30)).await.unwrap();
    // The caller does not read yet: the reader waits once the call's bound is full.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.buffered_bytes(), u64::from(BOUND), "two frames held, the rest waits in the agent's pipe");
    assert_eq!(server.held(), u64::from(BOUND));
    let out = stream.collect(1 << 30).await.unwrap();
    assert_eq!(out.stdout.len(), 20 << 20, "backpressure, not loss");
    assert_eq!((client.buffered_bytes(), server.held()), (0, 0));
    let _ = agent.await.unwrap();
}
