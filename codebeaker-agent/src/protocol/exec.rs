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
    /// Wall-clock limit; the process group is killed when it passes.
    pub timeout_ms: u64,
    /// Bytes of each stream forwarded at most; the rest is counted, not sent.
    pub output_cap: u64,
    /// Resource limits set in the child before it runs.
    #[serde(default)]
    pub rlimits: Rlimits,
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
            output_cap,
            rlimits: Rlimits::default(),
        }
    }
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
    /// `RLIMIT_NPROC`: processes of the command's user.
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
