//! Running a process: the request, its limits, and how it ended.
//!
//! After [`ExecRequest`] the agent replies `started {pid}`, then the process's output as
//! `Stdout`/`Stderr` data frames in the order it was read, then `exited`. The host may
//! send `Stdin` data frames (the last with `FLAG_END`) when `stdin_stream` is set, and
//! `cancel` to kill the process group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::message::Base64Bytes;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecCommand {
    /// A program and its arguments, run without a shell (looked up on `PATH`).
    Argv(Vec<String>),
    /// A command line for `sh -c`.
    Shell(String),
}

/// A process to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// What to run.
    pub command: ExecCommand,
    /// Variables added to the agent's base environment (`PATH`, `HOME`, `LANG`, …).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the workspace root (default: the root). Resolved
    /// beneath it like a file path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Bytes written to the process's stdin, which is then closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<Base64Bytes>,
    /// Keep stdin open for `Stdin` data frames after `stdin` (until one has `FLAG_END`).
    #[serde(default)]
    pub stdin_stream: bool,
    /// Wall-clock limit; the process group is killed when it passes. `u64::MAX`: none
    /// (the process runs until cancelled or the session closes).
    pub timeout_ms: u64,
    /// How long after `timeout_ms` (or a cancel) the agent may take to kill what the
    /// command started and answer: the host's share of the operator's stop grace. The
    /// agent answers by `timeout_ms + grace_ms`; 0 kills and answers at once.
    #[serde(default)]
    pub grace_ms: u64,
    /// How long output is still read after the main process ended (the operator's
    /// `output-drain-ms`; absent from older hosts: its default).
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
    /// Bytes of each stream forwarded at most; the rest is counted, not sent (`u64::MAX`:
    /// everything is forwarded).
    pub output_cap: u64,
    /// Resource limits set in the child before it runs.
    #[serde(default)]
    pub rlimits: Rlimits,
    /// Run on a terminal of this size instead of pipes: the process leads a new session
    /// whose controlling terminal is a pseudo-terminal, which is also its stdin, stdout
    /// and stderr (`TERM=xterm-256color` unless `env` sets `TERM`). Its output arrives as
    /// `Stdout` frames only; a `Stdin` frame with `FLAG_END` types the terminal's EOF
    /// character instead of closing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<PtySize>,
}

/// The size of a terminal, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl ExecRequest {
    /// A request with empty env, no stdin and default limits.
    pub fn new(command: ExecCommand, timeout_ms: u64, output_cap: u64) -> ExecRequest {
        ExecRequest {
            command,
            env: BTreeMap::new(),
            cwd: None,
            stdin: None,
            stdin_stream: false,
            timeout_ms,
            grace_ms: 0,
            drain_ms: default_drain_ms(),
            output_cap,
            rlimits: Rlimits::default(),
            pty: None,
        }
    }
}

fn default_drain_ms() -> u64 {
    codebeaker::policy::DEFAULT_OUTPUT_DRAIN_MS
}

/// Resource limits (`setrlimit`) of a command; `None` keeps the agent's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    /// `RLIMIT_FSIZE`: largest file the process may write, in bytes (the workspace size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsize: Option<u64>,
    /// `RLIMIT_NOFILE`: open file descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// `RLIMIT_NPROC`: processes (threads included) of the command's user. With a uid
    /// of its own per sandbox, below the container's pids limit it keeps room for the
    /// agent, which runs as root, so a fork bomb cannot starve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nproc: Option<u64>,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExited {
    /// Its exit code, when it exited on its own.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// It ran past `timeout_ms` and its group was killed.
    #[serde(default)]
    pub timed_out: bool,
    /// Output beyond `output_cap` was dropped (on either stream).
    #[serde(default)]
    pub truncated: bool,
    /// What it cost.
    pub usage: Usage,
}

impl ExecExited {
    /// What the end says about a signal (see [`crate::protocol::signal_note`]); `None`
    /// for an ordinary exit or a timeout (the process was killed because of it).
    pub fn signal_note(&self) -> Option<String> {
        if self.timed_out {
            return None;
        }
        crate::protocol::signal_note(self.code, self.signal)
    }

    /// The exit code in the SDK's convention: the code, or `128 + signal`, or `-1`.
    pub fn exit_code(&self) -> i64 {
        match (self.code, self.signal) {
            (Some(code), _) => i64::from(code),
            (None, Some(signal)) => 128 + i64::from(signal),
            (None, None) => -1,
        }
    }
}

/// What a command cost: rusage of its reaped processes, and the output it produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// User + system CPU time in ms.
    pub cpu_ms: u64,
    /// Peak resident set size in KiB.
    pub max_rss_kb: u64,
    /// Bytes written to stdout and stderr, including what was beyond the cap.
    pub output_bytes: u64,
}

impl From<Usage> for codebeaker::result::Usage {
    fn from(usage: Usage) -> Self {
        codebeaker::result::Usage {
            cpu_ms: usage.cpu_ms,
            max_rss_kb: usage.max_rss_kb,
            output_bytes: usage.output_bytes,
            // Egress is judged on the host, which adds its count.
            egress_refused: 0,
        }
    }
}
