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
