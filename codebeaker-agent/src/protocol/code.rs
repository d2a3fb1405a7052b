//! Code in the session's persistent interpreter (python or javascript).
//!
//! After [`RunCodeRequest`] the agent streams what the code printed as `Stdout`/`Stderr`
//! data frames, then [`CodeDone`]. State (variables, imports, functions) persists across
//! requests until a timeout forces a restart, which `state_reset` reports.

use serde::{Deserialize, Serialize};

/// Which interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeLanguage {
    /// `python3`.
    Python,
    /// `node`.
    Javascript,
}

/// Code to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCodeRequest {
    /// The interpreter.
    pub language: CodeLanguage,
    /// The source.
    pub code: String,
    /// Wall-clock limit: then interrupt, and kill + restart if interrupting fails.
    pub timeout_ms: u64,
    /// How long after `timeout_ms` (or a cancel) the interrupted code may take to stop
    /// before the interpreter is killed (and restarted, `state_reset`): the host's share
    /// of the operator's stop grace. The agent answers by `timeout_ms + grace_ms`.
    #[serde(default)]
    pub grace_ms: u64,
    /// How long output is still awaited after the interpreter answered (the operator's
    /// `interpreter-drain-ms`; absent from older hosts: its default).
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
    /// Bytes of each stream forwarded at most; the rest is counted, not sent.
    pub output_cap: u64,
    /// Resource limits of the interpreter, applied when it (re)starts.
    #[serde(default)]
    pub rlimits: crate::protocol::Rlimits,
}

fn default_drain_ms() -> u64 {
    codebeaker::policy::DEFAULT_INTERPRETER_DRAIN_MS
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeDone {
    /// The error the code raised, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CodeError>,
    /// Rich results (figures, the trailing value's representations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<RichOutput>,
    /// The REPL-style text of the trailing expression's value, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// It ran past its timeout.
    #[serde(default)]
    pub timed_out: bool,
    /// The interpreter was restarted during this run; earlier state is gone.
    #[serde(default)]
    pub state_reset: bool,
    /// Output beyond `output_cap` was dropped.
    #[serde(default)]
    pub truncated: bool,
    /// CPU and memory of the interpreter during the run; output bytes produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::protocol::Usage>,
}

/// An error raised by user code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeError {
    /// Its class (`ValueError`, `ReferenceError`, `KeyboardInterrupt`).
    pub name: String,
    /// Its message.
    pub value: String,
    /// The traceback of the user's code only (already written to stderr as well).
    pub traceback: String,
}

impl CodeError {
    /// `Name: value`, the one line an SDK error shows.
    pub fn summary(&self) -> String {
        if self.value.is_empty() {
            self.name.clone()
        } else {
            format!("{}: {}", self.name, self.value)
        }
    }
}

/// A rich result: `data` is base64 for binary types, text otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RichOutput {
    /// The MIME type (`image/png`, `text/html`, `image/svg+xml`).
    pub mime: String,
    /// The content.
    pub data: String,
}

impl From<RichOutput> for codebeaker::result::RichOutput {
    fn from(output: RichOutput) -> Self {
        codebeaker::result::RichOutput { mime: output.mime, data: output.data }
    }
}
