//! Framing only: a fixed 16-byte binary header, then a body of at most a configured size.
//!
//! ```text
//! 0      2      3       4              8                        16
//! +------+------+-------+--------------+------------------------+---------
//! | "CB" | kind | flags | body len u32 | request id u64         | body …
//! +------+------+-------+--------------+------------------------+---------
//! ```
//!
//! All integers are big-endian. The header is binary and fixed so a relay can route a
//! frame by id without parsing its body, and so a reader checks the body's length against
//! its cap *before* allocating anything: the peer is untrusted, and a lying length must
//! end in [`ProtocolError::FrameTooLarge`], never in a 4 GiB allocation. The magic bytes
//! make a peer that writes garbage (guest code scribbling on the agent's stdout) fail on
//! its first frame instead of being half-understood.

use crate::protocol::ProtocolError;

/// The two magic bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"CB";

/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;

/// Default cap on a frame's body: a 16 MiB file in base64 inside JSON fits, nothing much
/// bigger does.
pub const DEFAULT_MAX_FRAME: u32 = 24 * 1024 * 1024;

/// Largest chunk of stream data (stdout, stderr, stdin, tunnel bytes) one frame carries.
pub const MAX_DATA_CHUNK: usize = 64 * 1024;

/// Largest chunk of a streamed file transfer one frame carries: big enough that framing
/// costs nothing next to the copy, small enough that the frames queued on either side
/// stay a few MiB.
pub const FILE_DATA_CHUNK: usize = 256 * 1024;

/// Flag bit: the data stream this frame belongs to ends with it (stdin EOF, tunnel
/// half-close). Only meaningful on data kinds.
pub const FLAG_END: u8 = 0b0000_0001;

/// Ids with this bit set name requests the *agent* started (egress tunnels); the host's
/// own requests never set it, so both sides can number independently.
pub const AGENT_ID_BIT: u64 = 1 << 63;

/// What a frame's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON message ([`crate::protocol::HostMessage`] or [`crate::protocol::AgentMessage`]).
    Message = 1,
    /// Raw bytes a process wrote to its standard output.
    Stdout = 2,
    /// Raw bytes a process wrote to its standard error.
    Stderr = 3,
    /// Raw bytes for a process's standard input (host to agent).
    Stdin = 4,
    /// Raw bytes of an egress tunnel, either direction.
    TunnelData = 5,
    /// Raw bytes of a streamed file transfer ([`FsRequest::Upload`] host to agent,
    /// [`FsRequest::Download`] agent to host); `FLAG_END` marks an upload's last frame.
    ///
    /// [`FsRequest::Upload`]: crate::protocol::FsRequest::Upload
    /// [`FsRequest::Download`]: crate::protocol::FsRequest::Download
    FileData = 6,
}

impl FrameKind {
    /// The kind for a header byte, or `None` for a byte no version of the protocol uses.
    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Message,
            2 => FrameKind::Stdout,
            3 => FrameKind::Stderr,
            4 => FrameKind::Stdin,
            5 => FrameKind::TunnelData,
            6 => FrameKind::FileData,
            _ => return None,
        })
    }

    /// Whether the body is raw stream bytes rather than a message.
    pub fn is_data(self) -> bool {
        self != FrameKind::Message
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the body holds.
    pub kind: FrameKind,
    /// Flag bits ([`FLAG_END`]).
    pub flags: u8,
    /// Length of the body in bytes.
    pub len: u32,
    /// The request this frame belongs to.
    pub id: u64,
}

impl FrameHeader {
    /// Parses and checks a header: magic, kind, flags, and `len <= max_len`.
    pub fn decode(bytes: &[u8; HEADER_LEN], max_len: u32) -> Result<FrameHeader, ProtocolError> {
        if bytes[0..2] != MAGIC {
            return Err(ProtocolError::BadMagic([bytes[0], bytes[1]]));
        }
        let kind = FrameKind::from_byte(bytes[2]).ok_or(ProtocolError::UnknownKind(bytes[2]))?;
        let flags = bytes[3];
        if flags & !FLAG_END != 0 || (flags != 0 && !kind.is_data()) {
            return Err(ProtocolError::BadFlags(flags));
        }
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len > max_len {
            return Err(ProtocolError::FrameTooLarge { len: u64::from(len), max: max_len });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[8..16]);
        Ok(FrameHeader { kind, flags, len, id: u64::from_be_bytes(id) })
    }

    /// The header's 16 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = self.kind as u8;
        out[3] = self.flags;
        out[4..8].copy_from_slice(&self.len.to_be_bytes());
        out[8..16].copy_from_slice(&self.id.to_be_bytes());
        out
    }
}

/// One frame: header fields and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the body holds.
    pub kind: FrameKind,
    /// Flag bits ([`FLAG_END`]).
    pub flags: u8,
    /// The request this frame belongs to.
    pub id: u64,
    /// The body.
    pub body: Vec<u8>,
}

impl Frame {
    /// A message frame with a JSON body.
    pub fn message<M: serde::Serialize>(id: u64, message: &M) -> Result<Frame, ProtocolError> {
        let body = serde_json::to_vec(message).map_err(ProtocolError::Encode)?;
        Ok(Frame { kind: FrameKind::Message, flags: 0, id, body })
    }

    /// A data frame; `end` marks the last frame of its stream.
    pub fn data(kind: FrameKind, id: u64, body: Vec<u8>, end: bool) -> Frame {
        Frame { kind, flags: if end { FLAG_END } else { 0 }, id, body }
    }

    /// Whether [`FLAG_END`] is set.
    pub fn is_end(&self) -> bool {
        self.flags & FLAG_END != 0
    }

    /// Decodes a message body as `M`.
    pub fn parse<M: serde::de::DeserializeOwned>(&self) -> Result<M, ProtocolError> {
        if self.kind != FrameKind::Message {
            return Err(ProtocolError::UnexpectedKind(self.kind));
        }
        serde_json::from_slice(&self.body).map_err(ProtocolError::Decode)
    }

    /// The frame's header; fails when the body exceeds `max_len`.
    pub fn header(&self, max_len: u32) -> Result<FrameHeader, ProtocolError> {
        let len = u32::try_from(self.body.len())
            .ok()
            .filter(|len| *len <= max_len)
            .ok_or(ProtocolError::FrameTooLarge { len: self.body.len() as u64, max: max_len })?;
        Ok(FrameHeader { kind: self.kind, flags: self.flags, len, id: self.id })
    }

    /// The frame's bytes, header and body; fails when the body exceeds `max_len`.
    pub fn encode(&self, max_len: u32) -> Result<Vec<u8>, ProtocolError> {
        let header = self.header(max_len)?;
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Decodes one frame from the front of `bytes`: `Ok(None)` when more bytes are needed,
    /// otherwise the frame and how many bytes it used. Checks the header (and the cap)
    /// before looking at the body.
    pub fn decode(bytes: &[u8], max_len: u32) -> Result<Option<(Frame, usize)>, ProtocolError> {
        let Some(head) = bytes.get(..HEADER_LEN) else { return Ok(None) };
        let mut header_bytes = [0u8; HEADER_LEN];
        header_bytes.copy_from_slice(head);
        let header = FrameHeader::decode(&header_bytes, max_len)?;
        let total = HEADER_LEN + header.len as usize;
        let Some(body) = bytes.get(HEADER_LEN..total) else { return Ok(None) };
        let frame = Frame { kind: header.kind, flags: header.flags, id: header.id, body: body.to_vec() };
        Ok(Some((frame, total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_partial_input_asks_for_more() {
        let frame = Frame::data(FrameKind::Stdout, 7, b"hello".to_vec(), true);
        let bytes = frame.encode(DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        for cut in 0..bytes.len() {
            assert_eq!(Frame::decode(&bytes[..cut], DEFAULT_MAX_FRAME).unwrap(), None, "cut at {cut}");
        }
        let (decoded, used) = Frame::decode(&bytes, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!((decoded, used), (frame, bytes.len()));
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        let good = Frame::data(FrameKind::Stderr, 1, vec![0; 4], false).encode(DEFAULT_MAX_FRAME).unwrap();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(matches!(Frame::decode(&bad_magic, 100), Err(ProtocolError::BadMagic(_))));
        let mut bad_kind = good.clone();
        bad_kind[2] = 99;
        assert!(matches!(Frame::decode(&bad_kind, 100), Err(ProtocolError::UnknownKind(99))));
        let mut bad_flags = good.clone();
        bad_flags[3] = 0x80;
        assert!(matches!(Frame::decode(&bad_flags, 100), Err(ProtocolError::BadFlags(0x80))));
        let mut huge = good;
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        // The cap is checked from the header alone: no body bytes needed to refuse it.
        assert!(matches!(
            Frame::decode(&huge[..HEADER_LEN], 1024),
            Err(ProtocolError::FrameTooLarge { len, max: 1024 }) if len == u64::from(u32::MAX)
        ));
    }

    #[test]
    fn an_oversized_body_is_refused_when_encoding() {
        let frame = Frame::data(FrameKind::Stdout, 1, vec![0; 11], false);
        assert!(matches!(frame.encode(10), Err(ProtocolError::FrameTooLarge { len: 11, max: 10 })));
    }
}
