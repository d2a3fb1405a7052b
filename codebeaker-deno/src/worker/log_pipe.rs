//! The stderr of a zygote and of every worker it forks: a pipe of their own (never the
//! server's stderr), read by a host thread into the log. What a worker writes there (its
//! own error lines, a panic, whatever a bug in the engine prints) is untrusted: lines are
//! cut at [`MAX_LINE`] bytes, and at most [`BURST`] lines are logged at once and
//! [`PER_SECOND`] a second after that; the rest is read and dropped, and how many lines
//! were dropped is logged when logging resumes. A worker cannot flood the server's log, and
//! one that writes without end only spins its own CPU (the reader drains what it is given).

use std::io::Read;
use std::time::Instant;

/// Longest line logged; the rest of a longer line is dropped.
const MAX_LINE: usize = 1024;
/// Lines logged at once before the rate applies.
const BURST: f64 = 20.0;
/// Lines logged a second, sustained.
const PER_SECOND: f64 = 2.0;

/// A token bucket of lines.
struct Rate {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

impl Rate {
    fn new() -> Self {
        Rate { tokens: BURST, at: Instant::now(), dropped: 0 }
    }

    /// Whether a line may be logged now.
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * PER_SECOND).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// Logs what `pipe` carries until every writer (zygote `zygote` and its workers) is gone,
/// on a thread of its own.
pub(crate) fn forward(pipe: impl Read + Send + 'static, zygote: u32) {
    let started = std::thread::Builder::new().name("cb-deno-stderr".into()).spawn(move || drain(pipe, zygote));
    if let Err(error) = started {
        tracing::warn!(%error, zygote, "cannot read the deno workers' stderr: their lines are lost");
    }
}

fn drain(mut pipe: impl Read, zygote: u32) {
    let mut rate = Rate::new();
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut cut = false;
    let mut chunk = [0u8; 8192];
    loop {
        let read = match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for &byte in &chunk[..read] {
            if byte == b'\n' {
                emit(&mut rate, &line, cut, zygote);
                line.clear();
                cut = false;
            } else if line.len() < MAX_LINE {
                line.push(byte);
            } else {
                cut = true;
            }
        }
    }
    if !line.is_empty() {
        emit(&mut rate, &line, cut, zygote);
    }
    if rate.dropped > 0 {
        tracing::warn!(zygote, dropped = rate.dropped, "deno worker stderr lines dropped (rate limit)");
    }
}

fn emit(rate: &mut Rate, line: &[u8], cut: bool, zygote: u32) {
    if !rate.allow() {
        return;
    }
    let dropped = std::mem::take(&mut rate.dropped);
    let text = String::from_utf8_lossy(line);
    let more = if cut { " [cut]" } else { "" };
    tracing::warn!(target: "codebeaker_deno::worker", zygote, dropped_before = dropped, "deno worker stderr: {text}{more}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst() {
        let mut rate = Rate::new();
        let allowed = (0..10_000).filter(|_| rate.allow()).count();
        // The burst, plus what the rate refilled while the loop ran (well under a second).
        assert!((20..=22).contains(&allowed), "{allowed}");
        assert!(rate.dropped >= 9_978);
    }
}
