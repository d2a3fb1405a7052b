//! The retained output of one process: its streams' chunks in the order they came, at
//! least the last `retained` bytes of them, read by position.
//!
//! Every byte has a position in the log (bytes of all streams before it) and an offset
//! in its stream. Readers keep a position; the log discards whole chunks from the front
//! while what remains still holds `retained` bytes, so a reader behind the front skips
//! to it and counts what it missed. A character split between two reads is held back
//! until it is whole, so chunks never end inside one. Small writes of one stream merge
//! into its last chunk, and the number of chunks is bounded too, so a program writing
//! one byte at a time cannot make the log's bookkeeping outgrow its bytes.

use std::collections::VecDeque;

use super::ProcessStream;

/// Largest chunk: what one notification carries at most.
pub(super) const MAX_CHUNK: usize = 64 * 1024;

/// Retained bytes per chunk at least, on average, before chunks are discarded for their
/// number (alternating streams defeat merging).
const MIN_BYTES_PER_CHUNK: usize = 64;

const STREAMS: [ProcessStream; 3] = [ProcessStream::Stdout, ProcessStream::Stderr, ProcessStream::Pty];

struct Chunk {
    stream: ProcessStream,
    /// Offset in its stream of its first byte.
    offset: u64,
    /// Position in the log of its first byte.
    pos: u64,
    bytes: Vec<u8>,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.pos + self.bytes.len() as u64
    }
}

/// One read: the rest of a chunk from the reader's position.
#[derive(Debug)]
pub(super) struct Read {
    pub stream: ProcessStream,
    pub data: String,
    /// Offset in its stream of the first byte read.
    pub offset: u64,
    /// The reader's position after it.
    pub end: u64,
    /// Bytes the reader had not read that were discarded before it read them.
    pub skipped: u64,
}

pub(super) struct OutputLog {
    chunks: VecDeque<Chunk>,
    retained: usize,
    max_chunks: usize,
    /// Bytes in `chunks`.
    held: usize,
    /// Position of the first retained byte (`end` when none is).
    start: u64,
    /// Position after the last byte.
    end: u64,
    /// Bytes of each stream in the log so far (retained or not).
    committed: [u64; 3],
    /// The start of a character whose rest has not come yet, per stream.
    carry: [Vec<u8>; 3],
}

impl OutputLog {
    pub(super) fn new(retained: usize) -> OutputLog {
        let retained = retained.max(1);
        OutputLog {
            chunks: VecDeque::new(),
            retained,
            max_chunks: (retained / MIN_BYTES_PER_CHUNK).max(16),
            held: 0,
            start: 0,
            end: 0,
            committed: [0; 3],
            carry: Default::default(),
        }
    }

    /// Position of the first retained byte.
    pub(super) fn start(&self) -> u64 {
        self.start
    }

    /// Appends what a program wrote on `stream`.
    pub(super) fn append(&mut self, stream: ProcessStream, bytes: &[u8]) {
        let i = stream.index();
        let mut whole = std::mem::take(&mut self.carry[i]);
        whole.extend_from_slice(bytes);
        let complete = whole.len() - incomplete_tail(&whole);
        self.carry[i] = whole.split_off(complete);
        self.push(stream, &whole);
    }

    /// The streams ended: what is held back of an incomplete character goes in as it is.
    pub(super) fn finish(&mut self) {
        for stream in STREAMS {
            let carry = std::mem::take(&mut self.carry[stream.index()]);
            self.push(stream, &carry);
        }
    }

    fn push(&mut self, stream: ProcessStream, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = match self.chunks.back() {
                Some(last) if last.stream == stream => MAX_CHUNK - last.bytes.len(),
                _ => 0,
            };
            let take = if room > 0 { char_boundary(bytes, room) } else { 0 };
            if take > 0 {
                if let Some(last) = self.chunks.back_mut() {
                    last.bytes.extend_from_slice(&bytes[..take]);
                }
            } else {
                let take = char_boundary(bytes, MAX_CHUNK);
                let chunk = Chunk {
                    stream,
                    offset: self.committed[stream.index()],
                    pos: self.end,
                    bytes: bytes[..take].to_vec(),
                };
                self.chunks.push_back(chunk);
                self.account(stream, take);
                bytes = &bytes[take..];
                continue;
            }
            self.account(stream, take);
            bytes = &bytes[take..];
        }
        self.discard();
    }

    fn account(&mut self, stream: ProcessStream, bytes: usize) {
        self.committed[stream.index()] += bytes as u64;
        self.end += bytes as u64;
        self.held += bytes;
    }

    /// Drops chunks from the front while the rest still holds `retained` bytes, and
    /// while there are too many of them.
    fn discard(&mut self) {
        while let Some(front) = self.chunks.front() {
            let rest = self.held - front.bytes.len();
            if rest < self.retained && self.chunks.len() <= self.max_chunks {
                break;
            }
            self.held = rest;
            self.chunks.pop_front();
        }
        self.start = self.chunks.front().map_or(self.end, |front| front.pos);
    }

    /// Bytes from `from_offset` on (of each stream) that are no longer retained.
    pub(super) fn dropped_before(&self, from_offset: u64) -> u64 {
        STREAMS
            .iter()
            .map(|stream| {
                let first = self
                    .chunks
                    .iter()
                    .find(|chunk| chunk.stream == *stream)
                    .map_or(self.committed[stream.index()], |chunk| chunk.offset);
                first.saturating_sub(from_offset)
            })
            .sum()
    }

    /// The next bytes at or after position `cursor` whose stream offset is at least
    /// `from_offset`, up to the end of their chunk; `None` when there are none yet.
    pub(super) fn read(&self, cursor: u64, from_offset: u64) -> Option<Read> {
        let skipped = self.start.saturating_sub(cursor);
        let cursor = cursor.max(self.start);
        let first = self.chunks.partition_point(|chunk| chunk.end() <= cursor);
        for chunk in self.chunks.range(first..) {
            let mut skip = usize::try_from(cursor.saturating_sub(chunk.pos)).unwrap_or(usize::MAX);
            let offset = chunk.offset + skip as u64;
            if offset < from_offset {
                skip = skip.saturating_add(usize::try_from(from_offset - offset).unwrap_or(usize::MAX));
            }
            if skip >= chunk.bytes.len() {
                continue;
            }
            return Some(Read {
                stream: chunk.stream,
                data: String::from_utf8_lossy(&chunk.bytes[skip..]).into_owned(),
                offset: chunk.offset + skip as u64,
                end: chunk.end(),
                skipped,
            });
        }
        None
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is not complete
/// (0 to 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let needs = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0, // ASCII or an invalid lead: nothing to wait for
        };
        return if needs > back { back } else { 0 };
    }
    0
}

/// The longest prefix of `bytes` of at most `limit` bytes that does not end inside a
/// character (at least one character, so progress is always made).
fn char_boundary(bytes: &[u8], limit: usize) -> usize {
    if bytes.len() <= limit {
        return bytes.len();
    }
    let mut end = limit;
    while end > 0 && bytes[end] & 0xC0 == 0x80 && limit - end < 3 {
        end -= 1;
    }
    if end == 0 {
        limit
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn drain(log: &OutputLog, mut cursor: u64, from: u64) -> (Vec<(ProcessStream, u64, String)>, u64) {
        let mut got = Vec::new();
        let mut skipped = 0;
        while let Some(read) = log.read(cursor, from) {
            skipped += read.skipped;
            cursor = read.end;
            got.push((read.stream, read.offset, read.data));
        }
        (got, skipped)
    }

    #[test]
    fn a_character_split_between_writes_arrives_whole() {
        let mut log = OutputLog::new(1024);
        let euro = "€".as_bytes();
        log.append(ProcessStream::Stdout, &euro[..1]);
        assert!(log.read(0, 0).is_none(), "half a character is held back");
        log.append(ProcessStream::Stdout, &euro[1..]);
        let (got, _) = drain(&log, 0, 0);
        assert_eq!(got, vec![(ProcessStream::Stdout, 0, "€".to_owned())]);
    }

    #[test]
    fn small_writes_merge_and_offsets_count_each_stream() {
        let mut log = OutputLog::new(1024);
        log.append(ProcessStream::Stdout, b"ab");
        log.append(ProcessStream::Stdout, b"cd");
        log.append(ProcessStream::Stderr, b"E");
        log.append(ProcessStream::Stdout, b"ef");
        let (got, _) = drain(&log, 0, 0);
        assert_eq!(
            got,
            vec![
                (ProcessStream::Stdout, 0, "abcd".to_owned()),
                (ProcessStream::Stderr, 0, "E".to_owned()),
                (ProcessStream::Stdout, 4, "ef".to_owned()),
            ]
        );
        let (from_three, _) = drain(&log, 0, 3);
        assert_eq!(
            from_three,
            vec![(ProcessStream::Stdout, 3, "d".to_owned()), (ProcessStream::Stdout, 4, "ef".to_owned())]
        );
    }

    #[test]
    fn one_byte_writes_on_alternating_streams_keep_bookkeeping_bounded() {
        let mut log = OutputLog::new(64 * 1024);
        for i in 0..200_000u32 {
            let stream = if i % 2 == 0 { ProcessStream::Stdout } else { ProcessStream::Stderr };
            log.append(stream, b"x");
        }
        assert!(log.chunks.len() <= log.max_chunks, "{} chunks", log.chunks.len());
        assert_eq!(log.end, 200_000);
    }

    proptest! {
        /// A reader that keeps up gets every byte of every stream once, in order; one
        /// that reads only at the end gets the last bytes whole and counts the rest.
        #[test]
        fn readers_get_every_retained_byte_once_in_order(
            writes in prop::collection::vec((0usize..3, prop::collection::vec(any::<u8>(), 0..300)), 0..200),
            retained in 1usize..4096,
        ) {
            let mut log = OutputLog::new(retained);
            let mut cursor = 0;
            let mut live: [Vec<u8>; 3] = Default::default();
            let mut written: [Vec<u8>; 3] = Default::default();
            for (stream, bytes) in &writes {
                let stream = STREAMS[*stream];
                written[stream.index()].extend_from_slice(bytes);
                log.append(stream, bytes);
                while let Some(read) = log.read(cursor, 0) {
                    prop_assert_eq!(read.skipped, 0);
                    prop_assert_eq!(read.offset, live[read.stream.index()].len() as u64);
                    cursor = read.end;
                    live[read.stream.index()].extend_from_slice(&read_bytes(&log, &read));
                }
            }
            log.finish();
            while let Some(read) = log.read(cursor, 0) {
                cursor = read.end;
                live[read.stream.index()].extend_from_slice(&read_bytes(&log, &read));
            }
            prop_assert_eq!(cursor, log.end);
            for stream in STREAMS {
                prop_assert_eq!(&live[stream.index()], &written[stream.index()]);
            }
            // A late reader: at least `retained` bytes (or all), the newest, contiguous.
            let (_, skipped) = drain(&log, 0, 0);
            let total: u64 = written.iter().map(|w| w.len() as u64).sum();
            prop_assert_eq!(skipped + bytes_of(&log, 0), total);
            prop_assert!(
                bytes_of(&log, 0) >= (retained as u64).min(total) || log.chunks.len() == log.max_chunks,
                "{} bytes retained of {} written (retention {})", bytes_of(&log, 0), total, retained
            );
        }
    }

    /// The raw bytes a read stands for (the log's own, not the lossy text).
    fn read_bytes(log: &OutputLog, read: &Read) -> Vec<u8> {
        let chunk = log.chunks.iter().find(|c| c.pos < read.end && c.end() == read.end).expect("the chunk read");
        let skip = (read.offset - chunk.offset) as usize;
        chunk.bytes[skip..].to_vec()
    }

    /// Retained bytes at or after position `cursor`.
    fn bytes_of(log: &OutputLog, cursor: u64) -> u64 {
        log.end - cursor.max(log.start)
    }
}
