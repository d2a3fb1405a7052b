//! Background processes: programs that outlive the request that started them (dev
//! servers, watchers, builds), with or without a terminal, whose output is kept so that
//! any connection of the session's tenant can attach later and read it from an offset.
//!
//! A backend starts the program ([`crate::backend::Processes`]) and pushes what it
//! prints and how it ended into a [`ProcessSink`]; the session's process table keeps the
//! last [`Policy::process_output_retained_bytes`](crate::Policy::process_output_retained_bytes)
//! bytes of each process (never less than that while there were as many) and wakes every
//! [`ProcessAttachment`] reading it. Readers never slow a process down: one that falls
//! behind the retained window skips what was discarded and is told how many bytes.
//!
//! Offsets count bytes of one stream (`stdout`, `stderr`, or `pty` for a terminal)
//! before a chunk. Output is decoded as UTF-8 for the wire; a character split between
//! reads is kept back until it is whole, and invalid bytes become U+FFFD (then a chunk's
//! text is longer than the bytes it stands for: the next chunk's `offset` is
//! authoritative).

mod log;
mod table;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::result::Usage;
use crate::workspace::WorkspacePath;

pub(crate) use table::{ProcessLimits, ProcessTable};

use log::OutputLog;

/// Largest terminal side a client may ask for, in cells.
pub const MAX_PTY_SIDE: u16 = 1000;

/// The program of a background process: `process.start`'s `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessCommand {
    /// The program to run (looked up on the sandbox's `PATH`).
    pub command_name: String,
    /// Its arguments, passed as they are (no shell expansion).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Directory to run in (default: the workspace root).
    #[serde(default = "WorkspacePath::root")]
    pub cwd: WorkspacePath,
}

impl ProcessCommand {
    /// `program` with `args`, in the workspace root, with no extra environment.
    pub fn new<I, S>(program: impl Into<String>, args: I) -> ProcessCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProcessCommand {
            command_name: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: WorkspacePath::root(),
        }
    }

    /// The command line as `process.list` shows it (`python3 -m http.server`).
    pub fn display(&self) -> String {
        std::iter::once(self.command_name.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PtySize {
    /// Columns (1 to [`MAX_PTY_SIDE`]).
    pub cols: u16,
    /// Rows (1 to [`MAX_PTY_SIDE`]).
    pub rows: u16,
}

impl PtySize {
    /// `Err` ([`crate::ErrorKind::InvalidInput`]) unless both sides are 1 to [`MAX_PTY_SIDE`].
    pub fn check(self) -> Result<PtySize> {
        let fits = |side: u16| (1..=MAX_PTY_SIDE).contains(&side);
        if fits(self.cols) && fits(self.rows) {
            Ok(self)
        } else {
            Err(Error::invalid_input(format!(
                "a terminal of {}x{} cells: cols and rows must be 1 to {MAX_PTY_SIDE}",
                self.cols, self.rows
            )))
        }
    }
}

/// A background process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// What to run.
    pub command: ProcessCommand,
    /// Run it on a terminal of this size (stdin, stdout and stderr are the terminal, and
    /// its output is the `pty` stream); pipes when `None`.
    pub pty: Option<PtySize>,
    /// Kill it after this long; `None` lets it run until it ends or its session does.
    pub timeout_ms: Option<u64>,
}

impl ProcessSpec {
    /// `command` on pipes, with no timeout.
    pub fn new(command: ProcessCommand) -> ProcessSpec {
        ProcessSpec { command, pty: None, timeout_ms: None }
    }

    /// The same on a terminal of `cols` x `rows`.
    pub fn with_pty(mut self, cols: u16, rows: u16) -> ProcessSpec {
        self.pty = Some(PtySize { cols, rows });
        self
    }
}

/// A signal a client may send to a process (`process.signal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProcessSignal {
    /// `SIGTERM`: ask it to end.
    Term,
    /// `SIGKILL`: end it now.
    Kill,
    /// `SIGINT`: interrupt (what Ctrl-C sends).
    Int,
    /// `SIGHUP`: hang up.
    Hup,
}

impl ProcessSignal {
    /// The signal's number on Linux.
    pub fn number(self) -> i32 {
        match self {
            ProcessSignal::Hup => 1,
            ProcessSignal::Int => 2,
            ProcessSignal::Kill => 9,
            ProcessSignal::Term => 15,
        }
    }
}

/// The name a signal number has in `process.exit` (`TERM`, `SEGV`), as `kill -l` says
/// it without `SIG`; `None` for a number that is no standard signal.
pub fn signal_name(number: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM",
        "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
        "WINCH", "IO", "PWR", "SYS",
    ];
    usize::try_from(number).ok().and_then(|n| n.checked_sub(1)).and_then(|i| NAMES.get(i)).copied()
}

/// Which output a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcessStream {
    /// Standard output (pipes).
    Stdout,
    /// Standard error (pipes).
    Stderr,
    /// The terminal (a process started with `pty`).
    Pty,
}

impl ProcessStream {
    fn index(self) -> usize {
        match self {
            ProcessStream::Stdout => 0,
            ProcessStream::Stderr => 1,
            ProcessStream::Pty => 2,
        }
    }
}

/// Whether a process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    /// It runs.
    Running,
    /// It ended (or was killed, or its sandbox went away).
    Exited,
}

/// A process as `process.list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    /// Its pid in the sandbox.
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// Whether it runs on a terminal.
    pub pty: bool,
    /// Whether it still runs.
    pub state: ProcessState,
    /// Its exit code once it ended (`128 + n` when signal `n` ended it); `null` while it
    /// runs or when its end is unknown.
    pub exit_code: Option<i64>,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// How a process ended: `process.wait`'s result and the body of `process.exit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessExit {
    /// Its exit code (`128 + n` when signal `n` ended it); `null` when its end is
    /// unknown (the sandbox went away first).
    pub exit_code: Option<i64>,
    /// The signal that ended it (`TERM`, `KILL`, `SEGV`…), if one did.
    pub signal: Option<String>,
    /// What it cost, when the backend measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why its end is not its own, when it is not (`the session closed`, a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ProcessExit {
    /// An exit with `code`, or by `signal` (number); usage unknown.
    pub fn new(code: Option<i32>, signal: Option<i32>) -> ProcessExit {
        let exit_code = match (code, signal) {
            (Some(code), _) => Some(i64::from(code)),
            (None, Some(signal)) => Some(128 + i64::from(signal)),
            (None, None) => None,
        };
        let signal = signal.map(|n| signal_name(n).map_or_else(|| n.to_string(), str::to_owned));
        ProcessExit { exit_code, signal, usage: None, reason: None }
    }

    /// An end the process did not choose, for `reason` (its code unknown).
    pub fn lost(reason: impl Into<String>) -> ProcessExit {
        ProcessExit { reason: Some(reason.into()), ..ProcessExit::default() }
    }

    /// The same with `usage`.
    pub fn with_usage(mut self, usage: Usage) -> ProcessExit {
        self.usage = Some(usage);
        self
    }
}

/// A piece of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutput {
    /// The stream it came from.
    pub stream: ProcessStream,
    /// The text.
    pub data: String,
    /// Bytes of that stream before this chunk.
    pub offset: u64,
    /// Bytes the retention discarded after the previous chunk this reader got, before
    /// it could read them (0 for a reader that keeps up).
    pub dropped: u64,
}

/// What an attached reader gets, in order: output chunks, then one exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    /// A chunk of output.
    Output(ProcessOutput),
    /// The process ended; the last event.
    Exit(ProcessExit),
}

/// One process's retained output and end, shared by its sink, its table entry and its
/// readers.
struct Shared {
    state: Mutex<Retained>,
    /// Bumped at every change; readers wait on it.
    version: watch::Sender<u64>,
}

struct Retained {
    log: OutputLog,
    exit: Option<ProcessExit>,
}

impl Shared {
    fn new(retained_bytes: usize) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(Retained { log: OutputLog::new(retained_bytes), exit: None }),
            version: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Retained> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exit(&self) -> Option<ProcessExit> {
        self.lock().exit.clone()
    }
}

/// Where a backend puts a background process's output and end. Cheap to clone; never
/// blocks (old output is discarded beyond the retention, never the program slowed).
#[derive(Clone)]
pub struct ProcessSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProcessSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSink").finish_non_exhaustive()
    }
}

impl ProcessSink {
    /// A sink retaining at least `retained_bytes` of output, with no table behind it
    /// (for backends' own tests); read it with [`ProcessSink::attach`].
    pub fn detached(retained_bytes: usize) -> ProcessSink {
        ProcessSink { shared: Shared::new(retained_bytes) }
    }

    /// Bytes the program wrote on `stream`. Ignored once the process ended.
    pub fn output(&self, stream: ProcessStream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        {
            let mut state = self.shared.lock();
            if state.exit.is_some() {
                return;
            }
            state.log.append(stream, bytes);
        }
        self.shared.version.send_modify(|v| *v += 1);
    }

    /// The process ended; the first call wins, later ones are ignored.
    pub fn exit(&self, exit: ProcessExit) {
        {
            let mut state = self.shared.lock();
            if state.exit.is_some() {
                return;
            }
            state.log.finish();
            state.exit = Some(exit);
        }
        self.shared.version.send_modify(|v| *v += 1);
    }

    /// Whether the process ended.
    pub fn has_exited(&self) -> bool {
        self.shared.lock().exit.is_some()
    }

    /// A reader of this process's output from `from_offset` of each stream.
    pub fn attach(&self, from_offset: u64) -> ProcessAttachment {
        ProcessAttachment::new(self.shared.clone(), from_offset)
    }
}

/// A reader of one process's output: first what is retained from the offset asked for,
/// then what comes, then the exit. Every byte it gets comes once and in order; bytes the
/// retention discarded before it read them are counted in [`ProcessOutput::dropped`].
pub struct ProcessAttachment {
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
    /// Position (in the log's count of all bytes) of the next byte to read.
    cursor: u64,
    from_offset: u64,
    /// Bytes asked for that were discarded before this reader attached.
    dropped_at_attach: u64,
    /// Bytes discarded since the previous chunk, told with the next one.
    dropped: u64,
    done: bool,
}

impl std::fmt::Debug for ProcessAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessAttachment").field("cursor", &self.cursor).field("done", &self.done).finish()
    }
}

impl ProcessAttachment {
    fn new(shared: Arc<Shared>, from_offset: u64) -> ProcessAttachment {
        let changes = shared.version.subscribe();
        let (cursor, dropped_at_attach) = {
            let state = shared.lock();
            (state.log.start(), state.log.dropped_before(from_offset))
        };
        ProcessAttachment { shared, changes, cursor, from_offset, dropped_at_attach, dropped: 0, done: false }
    }

    /// Bytes asked for (from the offset on) that the retention had already discarded
    /// when this reader attached.
    pub fn dropped_at_attach(&self) -> u64 {
        self.dropped_at_attach
    }

    /// The next event, waiting for it; `None` after the exit.
    pub async fn next(&mut self) -> Option<ProcessEvent> {
        loop {
            if let Some(event) = self.try_next() {
                return Some(event);
            }
            if self.done || self.changes.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The next event if one is there now; `None` when nothing is (or after the exit).
    pub fn try_next(&mut self) -> Option<ProcessEvent> {
        if self.done {
            return None;
        }
        // Mark what this look sees as seen: a change after it wakes `next` again.
        self.changes.borrow_and_update();
        let state = self.shared.lock();
        if let Some(read) = state.log.read(self.cursor, self.from_offset) {
            self.cursor = read.end;
            let dropped = std::mem::take(&mut self.dropped) + read.skipped;
            return Some(ProcessEvent::Output(ProcessOutput {
                stream: read.stream,
                data: read.data,
                offset: read.offset,
                dropped,
            }));
        }
        let exit = state.exit.clone()?;
        self.done = true;
        Some(ProcessEvent::Exit(exit))
    }
}
