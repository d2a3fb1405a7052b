//! [`OutputCollector`]: the one place output is capped, interleaved and streamed, so every
//! backend truncates and reports the same way.

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
    sink: Option<OutputSink>,
}

impl OutputCollector {
    /// A collector keeping at most `limit` bytes per stream, streaming to `sink`.
    pub fn new(limit: usize, sink: Option<OutputSink>) -> Self {
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
        if let Some(sink) = &self.sink {
            sink.emit(stream, String::from_utf8_lossy(kept));
        }
    }

    /// Whether anything was cut so far.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The collected output as an `execute_shell` result.
    pub fn into_shell_result(self, exit_code: i64, duration_ms: u64, timed_out: bool) -> ShellResult {
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
        self,
        exit_code: i64,
        error: Option<String>,
        duration_ms: u64,
        timed_out: bool,
    ) -> CodeResult {
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
    fn one_trailing_newline_is_removed_from_code_output() {
        let mut out = OutputCollector::new(100, None);
        out.push(OutputStream::Stdout, b"Hello from Deno!\nSum: 30\n\n");
        assert_eq!(out.into_code_result(0, None, 1, false).output, "Hello from Deno!\nSum: 30\n");
    }
}
