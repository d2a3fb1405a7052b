//! Arbitrary bytes into the decoders never panic and never allocate past the cap; valid
//! frames round-trip whatever their content.

use codebeaker_agent::protocol::{AgentMessage, Frame, FrameKind, HostMessage, ProtocolError, HEADER_LEN};
use codebeaker_agent::transport::FrameReader;
use proptest::prelude::*;

const CAP: u32 = 4096;

fn kinds() -> impl Strategy<Value = FrameKind> {
    prop_oneof![
        Just(FrameKind::Message),
        Just(FrameKind::Stdout),
        Just(FrameKind::Stderr),
        Just(FrameKind::Stdin),
        Just(FrameKind::TunnelData),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_decode_to_a_frame_a_need_for_more_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(Some((frame, used))) = Frame::decode(&bytes, CAP) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(used, HEADER_LEN + frame.body.len());
            let _ = frame.parse::<HostMessage>();
            let _ = frame.parse::<AgentMessage>();
        }
    }

    #[test]
    fn bytes_after_a_valid_header_never_panic_the_message_parsers(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        id in any::<u64>(),
    ) {
        let frame = Frame { kind: FrameKind::Message, flags: 0, id, body };
        let _ = frame.parse::<HostMessage>();
        let _ = frame.parse::<AgentMessage>();
    }

    #[test]
    fn valid_frames_round_trip(kind in kinds(), end in any::<bool>(), id in any::<u64>(), body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let end = end && kind.is_data();
        let frame = Frame::data(kind, id, body, end);
        let bytes = frame.encode(CAP).unwrap();
        let (decoded, used) = Frame::decode(&bytes, CAP).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn the_stream_reader_ends_in_frames_or_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut reader = FrameReader::new(&bytes[..], CAP);
            for _ in 0..bytes.len() + 1 {
                match reader.next().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                }
            }
            panic!("the reader produced more frames than there were bytes");
        });
    }
}

#[tokio::test]
async fn a_huge_length_is_refused_before_any_body_arrives() {
    let mut header = Frame::data(FrameKind::Stdout, 1, Vec::new(), false).encode(CAP).unwrap();
    header[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    // The stream stays open after the header: the refusal cannot depend on reading a body.
    let (mut tx, rx) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut tx, &header).await.unwrap();
    let mut reader = FrameReader::new(rx, CAP);
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next()).await.unwrap();
    assert!(matches!(refused, Err(ProtocolError::FrameTooLarge { max: CAP, .. })), "{refused:?}");
}

#[tokio::test]
async fn garbage_is_refused_on_its_first_two_bytes() {
    let (mut tx, rx) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut tx, b"hello").await.unwrap();
    let mut reader = FrameReader::new(rx, CAP);
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next()).await.unwrap();
    assert!(matches!(refused, Err(ProtocolError::BadMagic(m)) if &m == b"he"), "{refused:?}");
}

// A forged agent speaking the real codec to the real host client: tunnels it floods stay
// within their byte bounds, are cut with a reason, and let go of everything when closed.

mod forged_agent {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use codebeaker_agent::client::{AgentClient, BufferPool, ClientConfig, Relay};
    use codebeaker_agent::protocol::*;
    use codebeaker_agent::transport::{FrameReader, FrameWriter};
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    type Reader = FrameReader<ReadHalf<DuplexStream>>;
    type Writer = FrameWriter<WriteHalf<DuplexStream>>;

    const TUNNEL: u64 = AGENT_ID_BIT | 1;
    const TUNNEL_BUFFER: u32 = 256 * 1024;
    const SESSION_BUFFER: u32 = 1024 * 1024;

    fn config(server: &BufferPool) -> ClientConfig {
        ClientConfig {
            tunnel_buffer: TUNNEL_BUFFER,
            session_buffer: SESSION_BUFFER,
            server_buffer: server.clone(),
            ..ClientConfig::default()
        }
    }

    fn pair(config: ClientConfig) -> (AgentClient, Reader, Writer) {
        let (host, agent) = tokio::io::duplex(1 << 20);
        let (host_read, host_write) = tokio::io::split(host);
        let client = AgentClient::start(host_read, host_write, config);
        let (agent_read, agent_write) = tokio::io::split(agent);
        (client, FrameReader::new(agent_read, DEFAULT_MAX_FRAME), FrameWriter::new(agent_write, DEFAULT_MAX_FRAME))
    }

    /// A loopback destination that accepts and never reads; the connection the host made
    /// to it.
    async fn deaf_destination() -> (TcpStream, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let (_conn, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        (TcpStream::connect(addr).await.unwrap(), holder)
    }

    /// The forged agent opens tunnel [`TUNNEL`]; the host accepts and relays it to
    /// `destination`. Returns the relay's task once the agent read the acceptance.
    async fn open<S>(
        client: &AgentClient,
        reader: &mut Reader,
        writer: &mut Writer,
        destination: S,
    ) -> tokio::task::JoinHandle<Result<u64, codebeaker_agent::client::AgentError>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut requests = client.take_tunnel_requests();
        let open = AgentMessage::TunnelOpen(TunnelOpen { host: "registry.example".into(), port: 443 });
        writer.send(&Frame::message(TUNNEL, &open).unwrap()).await.unwrap();
        let request = requests.recv().await.unwrap();
        let client = client.clone();
        let relay = tokio::spawn(async move { client.relay_tunnel(request.id, destination, Relay::default()).await });
        let reply = reader.next().await.unwrap().unwrap();
        assert_eq!(reply.id, TUNNEL);
        assert!(matches!(
            reply.parse::<HostMessage>().unwrap(),
            HostMessage::TunnelReply(TunnelReply { accepted: true, .. })
        ));
        relay
    }

    /// Reads the host's frames until it closes the tunnel; its reason.
    async fn closed_reason(reader: &mut Reader) -> String {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), reader.next()).await.unwrap().unwrap().unwrap();
            if frame.id == TUNNEL && frame.kind == FrameKind::Message {
                if let HostMessage::TunnelClose { reason } = frame.parse::<HostMessage>().unwrap() {
                    return reason.unwrap_or_default();
                }
            }
        }
    }

    #[tokio::test]
    async fn forty_giant_frames_into_a_deaf_tunnel_are_refused_and_hold_nothing() {
        let server = BufferPool::new(64 * 1024 * 1024);
        let (client, mut reader, mut writer) = pair(config(&server));
        let (destination, _holder) = deaf_destination().await;
        let relay = open(&client, &mut reader, &mut writer, destination).await;
        // The audit's attack: 40 frames of the largest size the codec allows.
        let flood = tokio::spawn(async move {
            let body = vec![b'x'; DEFAULT_MAX_FRAME as usize];
            for _ in 0..40 {
                if writer.send(&Frame::data(FrameKind::TunnelData, TUNNEL, body.clone(), false)).await.is_err() {
                    break;
                }
            }
            writer
        });
        let reason = closed_reason(&mut reader).await;
        assert_eq!(
            reason,
            format!("the agent sent a tunnel frame of {DEFAULT_MAX_FRAME} bytes (at most 65536 are allowed)")
        );
        let _writer = flood.await.unwrap();
        relay.await.unwrap().unwrap();
        assert_eq!((client.buffered_bytes(), server.held()), (0, 0), "nothing of the flood is held");
        assert_eq!(client.closed_reason(), None, "the session's channel goes on");
    }

    #[tokio::test]
    async fn a_tunnel_whose_destination_never_reads_is_cut_at_its_byte_bound() {
        let server = BufferPool::new(64 * 1024 * 1024);
        let (client, mut reader, mut writer) = pair(config(&server));
        let (destination, _holder) = deaf_destination().await;
        let relay = open(&client, &mut reader, &mut writer, destination).await;
        let stop = Arc::new(AtomicBool::new(false));
        let flood = tokio::spawn({
            let stop = stop.clone();
            async move {
                // Far more than the kernel's socket buffers and the tunnel's bound.
                for _ in 0..4000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let frame = Frame::data(FrameKind::TunnelData, TUNNEL, vec![b'x'; MAX_DATA_CHUNK], false);
                    if writer.send(&frame).await.is_err() {
                        break;
                    }
                }
                writer
            }
        });
        let watcher = tokio::spawn({
            let (client, server, stop) = (client.clone(), server.clone(), stop.clone());
            async move {
                let mut most = 0;
                while !stop.load(Ordering::SeqCst) {
                    most = most.max(client.buffered_bytes()).max(server.held());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                most
            }
        });
        let reason = closed_reason(&mut reader).await;
        stop.store(true, Ordering::SeqCst);
        assert_eq!(
            reason,
            format!("the destination did not take the data: more than {TUNNEL_BUFFER} bytes were waiting for it")
        );
        let most = watcher.await.unwrap();
        assert!(most <= u64::from(TUNNEL_BUFFER), "at most the tunnel's bound was held: {most}");
        let _writer = flood.await.unwrap();
        relay.await.unwrap().unwrap();
        assert_eq!((client.buffered_bytes(), server.held()), (0, 0), "the cut tunnel let go of its bytes");
    }

    #[tokio::test]
    async fn a_write_the_destination_does_not_take_in_time_closes_the_tunnel() {
        let server = BufferPool::new(64 * 1024 * 1024);
        let config = ClientConfig { write_timeout: Duration::from_millis(300), ..config(&server) };
        let (client, mut reader, mut writer) = pair(config);
        // A destination with room for 1 KiB that never reads.
        let (destination, _deaf) = tokio::io::duplex(1024);
        let relay = open(&client, &mut reader, &mut writer, destination).await;
        let frame = Frame::data(FrameKind::TunnelData, TUNNEL, vec![b'x'; 4096], false);
        writer.send(&frame).await.unwrap();
        assert_eq!(closed_reason(&mut reader).await, "the destination did not take the data within 300 ms");
        relay.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn closing_the_session_ends_its_tunnels_and_frees_their_buffers() {
        let server = BufferPool::new(64 * 1024 * 1024);
        let (client, mut reader, mut writer) = pair(config(&server));
        let (destination, _deaf) = tokio::io::duplex(1024);
        let relay = open(&client, &mut reader, &mut writer, destination).await;
        // Under the tunnel's bound: held, waiting for a destination that does not read.
        for _ in 0..3 {
            let frame = Frame::data(FrameKind::TunnelData, TUNNEL, vec![b'x'; MAX_DATA_CHUNK], false);
            writer.send(&frame).await.unwrap();
        }
        let mut held = 0;
        for _ in 0..200 {
            held = server.held();
            if held >= 2 * MAX_DATA_CHUNK as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(held, 2 * MAX_DATA_CHUNK as u64, "one chunk in the relay's hands, two queued");
        assert_eq!(client.buffered_bytes(), held);
        // What a session's close does to its tunnel tasks.
        relay.abort();
        assert!(relay.await.unwrap_err().is_cancelled());
        assert_eq!((client.buffered_bytes(), server.held()), (0, 0));
        drop(client);
    }
}
