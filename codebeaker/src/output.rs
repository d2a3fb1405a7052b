//! [`OutputCollector`]: the one place output is capped, interleaved and streamed, so every
//! backend truncates and reports the same way; and [`Utf8Decoder`] / [`DecodingSink`],
//! which turn a byte stream arriving in arbitrary pieces into text without breaking a
//! multi-byte character that a piece boundary cuts in two.

use crate::backend::{OutputSink, OutputStream};
use crate::result::{CodeResult, ShellResult};

/// Collects a program's output as it arrives: stdout and stderr each capped at `limit`
/// bytes, an interleaved copy for `execute_code`, and each kept piece forwarded to the
/// streaming sink. Bytes past the cap are dropped and mark the output truncated.
#[derive(Debug)]
pub struct OutputCollector {
    limit: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    combined: Vec<u8>,
    truncated: bool,
    sink: Option<DecodingSink>,
}

impl OutputCollector {
    /// A collector keeping at most `limit` bytes per stream, streaming to `sink`.
    pub fn new(limit: usize, sink: Option<OutputSink>) -> Self {
        let sink = sink.map(DecodingSink::new);
        OutputCollector { limit, stdout: Vec::new(), stderr: Vec::new(), combined: Vec::new(), truncated: false, sink }
    }

    /// Adds bytes written to `stream`.
    pub fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let buffer = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let room = self.limit.saturating_sub(buffer.len());
        let kept = &bytes[..bytes.len().min(room)];
        if kept.len() < bytes.len() {
            self.truncated = true;
        }
        if kept.is_empty() {
            return;
        }
        buffer.extend_from_slice(kept);
        self.combined.extend_from_slice(kept);
        if let Some(sink) = &mut self.sink {
            sink.push(stream, kept);
        }
    }

    /// Streams what the decoders still hold (an incomplete character at the very end).
    fn finish_stream(&mut self) {
        if let Some(sink) = &mut self.sink {
            sink.finish();
        }
    }

    /// Whether anything was cut so far.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The collected output as an `execute_shell` result.
    pub fn into_shell_result(mut self, exit_code: i64, duration_ms: u64, timed_out: bool) -> ShellResult {
        self.finish_stream();
        ShellResult {
            exit_code,
            stdout: lossy(self.stdout),
            stderr: lossy(self.stderr),
            duration_ms,
            timed_out,
            truncated: self.truncated,
            usage: None,
        }
    }

    /// The collected output as an `execute_code` result; `error` is the program's failure
    /// message, if it failed.
    pub fn into_code_result(
        mut self,
        exit_code: i64,
        error: Option<String>,
        duration_ms: u64,
        timed_out: bool,
    ) -> CodeResult {
        self.finish_stream();
        let mut output = lossy(self.combined);
        if output.ends_with('\n') {
            output.pop();
            if output.ends_with('\r') {
                output.pop();
            }
        }
        CodeResult {
            output,
            stdout: lossy(self.stdout),
            stderr: lossy(self.stderr),
            exit_code,
            error,
            timed_out,
            truncated: self.truncated,
            duration_ms,
            ..CodeResult::default()
        }
    }
}

/// Decodes one byte stream that arrives in pieces. A multi-byte character cut by a piece
/// boundary is carried over to the next piece instead of becoming U+FFFD; bytes that can
/// never be valid UTF-8 still become U+FFFD. The concatenation of every
/// [`push`](Utf8Decoder::push) and the final [`finish`](Utf8Decoder::finish) equals
/// `String::from_utf8_lossy` of the whole stream.
///
/// ```
/// use codebeaker::output::Utf8Decoder;
/// let mut decoder = Utf8Decoder::new();
/// let euro = "€".as_bytes(); // three bytes
/// assert_eq!(decoder.push(&euro[..1]), "");
/// assert_eq!(decoder.push(&euro[1..]), "€");
/// assert_eq!(decoder.push(b"\xff ok"), "\u{FFFD} ok");
/// assert_eq!(decoder.push(&euro[..2]), "");
/// assert_eq!(decoder.finish(), "\u{FFFD}");
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    /// The start of a character whose remaining bytes have not arrived (at most 3 bytes).
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Utf8Decoder::default()
    }

    /// Decodes the next piece, keeping back an incomplete character at its end.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            let mut buffer = std::mem::take(&mut self.pending);
            buffer.extend_from_slice(bytes);
            joined = buffer;
            &joined
        };
        let mut text = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    return text;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    // `valid` was just checked.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[invalid..];
                        }
                        None => {
                            // A character that the next piece may complete.
                            self.pending = after.to_vec();
                            return text;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let pending = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&pending).into_owned()
    }
}

/// An [`OutputSink`] fed with raw bytes: one [`Utf8Decoder`] per stream, so chunks sent
/// to the sink never split a character. Call [`DecodingSink::finish`] when the program
/// ends.
#[derive(Debug, Clone)]
pub struct DecodingSink {
    sink: OutputSink,
    stdout: Utf8Decoder,
    stderr: Utf8Decoder,
}

impl DecodingSink {
    /// Decodes into `sink`.
    pub fn new(sink: OutputSink) -> Self {
        DecodingSink { sink, stdout: Utf8Decoder::new(), stderr: Utf8Decoder::new() }
    }

    /// Decodes `bytes` written to `stream` and sends the complete characters.
    pub fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let decoder = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        self.sink.emit(stream, decoder.push(bytes));
    }

    /// Sends what is left of both streams (incomplete characters become U+FFFD).
    pub fn finish(&mut self) {
        self.sink.emit(OutputStream::Stdout, self.stdout.finish());
        self.sink.emit(OutputStream::Stderr, self.stderr.finish());
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_is_capped_and_marked_truncated() {
        let (sink, mut rx) = OutputSink::channel();
        let mut out = OutputCollector::new(4, Some(sink));
        out.push(OutputStream::Stdout, b"abc");
        out.push(OutputStream::Stderr, b"E1");
        out.push(OutputStream::Stdout, b"defgh");
        assert!(out.truncated());
        let result = out.into_code_result(0, None, 5, false);
        assert_eq!(result.stdout, "abcd");
        assert_eq!(result.stderr, "E1");
        assert_eq!(result.output, "abcE1d");
        assert!(result.truncated);
        let streamed: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).map(|c| c.data).collect();
        assert_eq!(streamed, ["abc", "E1", "d"]);
    }

    #[test]
    fn streamed_chunks_never_split_a_character() {
        let (sink, mut rx) = OutputSink::channel();
        let mut out = OutputCollector::new(100, Some(sink));
        let text = "héllo €uro 🦀!".as_bytes();
        for byte in text {
            out.push(OutputStream::Stdout, std::slice::from_ref(byte));
        }
        out.push(OutputStream::Stderr, &"ü".as_bytes()[..1]);
        let result = out.into_shell_result(0, 1, false);
        let chunks: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(chunks.iter().all(|c| !c.data.contains('\u{FFFD}') || c.stream == OutputStream::Stderr));
        let stdout: String =
            chunks.iter().filter(|c| c.stream == OutputStream::Stdout).map(|c| c.data.as_str()).collect();
        assert_eq!(stdout, "héllo €uro 🦀!");
        let stderr: Vec<&str> =
            chunks.iter().filter(|c| c.stream == OutputStream::Stderr).map(|c| c.data.as_str()).collect();
        assert_eq!(stderr, ["\u{FFFD}"], "a character cut by the end of the program is replaced once");
        assert_eq!(result.stderr, "\u{FFFD}");
    }

    proptest::proptest! {
        #[test]
        fn any_split_decodes_like_the_whole(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            utf8 in "\\PC{0,16}",
            cuts in proptest::collection::vec(0usize..80, 0..8),
        ) {
            // Mix arbitrary bytes with real multi-byte text, so cut characters are common.
            let mut whole = utf8.into_bytes();
            whole.extend_from_slice(&bytes);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(whole.len())).collect();
            cuts.sort_unstable();
            let mut decoder = Utf8Decoder::new();
            let mut decoded = String::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([whole.len()]) {
                decoded.push_str(&decoder.push(&whole[start..cut]));
                start = cut;
            }
            decoded.push_str(&decoder.finish());
            proptest::prop_assert_eq!(decoded, String::from_utf8_lossy(&whole).into_owned());
        }
    }

    #[test]
    fn one_trailing_newline_is_removed_from_code_output() {
        let mut out = OutputCollector::new(100, None);
        out.push(OutputStream::Stdout, b"Hello from Deno!\nSum: 30\n\n");
        assert_eq!(out.into_code_result(0, None, 1, false).output, "Hello from Deno!\nSum: 30\n");
    }
}
