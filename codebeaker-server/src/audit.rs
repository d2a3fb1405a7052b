//! The audit log (`--audit-log PATH`): one JSON line per request that reached the API
//! (from any transport), `{time, tenant, remote, method, session, command, outcome,
//! durationMs}`.
//! Code and file contents are never written unless `--audit-log-payloads` is set (then
//! a `payload` member carries the command or code as sent).
//!
//! Records are written off the request path: [`AuditLog::record`] only tries to queue
//! the record in a bounded channel; a writer thread serializes and appends. A full queue
//! drops the record (counted in `codebeaker_audit_records_dropped_total`); a log that
//! cannot be opened or written (read-only directory, full disk) loses records (counted
//! in `codebeaker_audit_write_errors_total`, logged once per failure streak) and the
//! writer retries opening it a little later. Nothing here can stop or slow the server.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use codebeaker::{Command, CommandOutcome};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde_json::Value;

/// Records queued for the writer at most; past it, records are dropped and counted.
pub const QUEUE_CAPACITY: usize = 8192;
/// How long the writer waits before trying again to open a log it could not open or write.
const REOPEN_AFTER: Duration = Duration::from_secs(5);

/// The `--audit-log` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AuditArgs {
    /// Append one JSON line per API request to this file (created 0600 if missing).
    #[arg(long = "audit-log", env = "CODEBEAKER_AUDIT_LOG", value_name = "PATH")]
    pub audit_log: Option<PathBuf>,

    /// Also write code and file contents into the audit log (off by default: they may hold secrets).
    #[arg(long = "audit-log-payloads", env = "CODEBEAKER_AUDIT_LOG_PAYLOADS")]
    pub audit_log_payloads: bool,
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When the request finished (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: DateTime<Utc>,
    /// The tenant that asked (`null` on a server without tenants).
    pub tenant: Option<String>,
    /// The client's address, when the transport has one.
    pub remote: Option<String>,
    /// The API method (`session.create`, `session.execute`, `session.list`,
    /// `session.close`, `execution.run`).
    pub method: &'static str,
    /// The session concerned, when there is one.
    pub session: Option<String>,
    /// The command type of `session.execute` (`execute_code`, `write_file`…).
    pub command: Option<&'static str>,
    /// `ok`, `failed` (the command ran and failed), `timeout`, or the error code name
    /// of a request that did not run (`session_not_found`, `limit_reached`, `rate_limited`…).
    pub outcome: String,
    /// How long the request took, in ms.
    pub duration_ms: u64,
    /// Network destinations the egress policy refused during the command, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_refused: Option<u64>,
    /// The command or code as sent; only with `--audit-log-payloads`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The cluster node that ran the request (its `--node-url`); absent outside a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
}

fn rfc3339_millis<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The `outcome` of a command that ran: `ok`, `timeout`, or `failed`.
pub fn command_outcome(outcome: &CommandOutcome) -> &'static str {
    match &outcome.error {
        None if outcome.success => "ok",
        Some(error) if error.kind() == codebeaker::ErrorKind::TimedOut => "timeout",
        _ => "failed",
    }
}

/// The `outcome` of a request the API refused or could not run: the error's kind.
pub fn error_outcome(error: &codebeaker::Error) -> &'static str {
    crate::error_codes::wire_codes(error.kind()).audit
}

/// The audit name of a JSON-RPC method: one the server has, or `unknown` (a client's
/// arbitrary method string never reaches the log).
pub fn method_name(method: &str) -> &'static str {
    match method {
        "session.create" => "session.create",
        "session.execute" => "session.execute",
        "session.list" => "session.list",
        "session.close" => "session.close",
        "execution.run" => "execution.run",
        "files.get" => "files.get",
        "files.put" => "files.put",
        "process.start" => "process.start",
        "process.list" => "process.list",
        "process.attach" => "process.attach",
        "process.write" => "process.write",
        "process.closeStdin" => "process.closeStdin",
        "process.resize" => "process.resize",
        "process.signal" => "process.signal",
        "process.wait" => "process.wait",
        "session.pause" => "session.pause",
        "session.resume" => "session.resume",
        "session.snapshot" => "session.snapshot",
        "session.fork" => "session.fork",
        "snapshot.list" => "snapshot.list",
        "snapshot.delete" => "snapshot.delete",
        _ => "unknown",
    }
}

/// One operation being audited: [`AuditEntry::finish`] queues its record.
#[must_use = "an audit entry is written by finish()"]
pub struct AuditEntry {
    log: AuditLog,
    started: Instant,
    record: AuditRecord,
}

impl AuditEntry {
    /// Queues the record of a command (`session.execute`, `execution.run`) that ran, or
    /// of one refused with `error_outcome`, with the egress refusals it reported.
    pub fn finish_command(mut self, outcome: Result<&CommandOutcome, &str>) {
        let (outcome, refused) = match outcome {
            Ok(ran) => (command_outcome(ran), ran.usage().map_or(0, |usage| usage.egress_refused)),
            Err(error_outcome) => (error_outcome, 0),
        };
        self.record.egress_refused = (refused > 0).then_some(refused);
        self.finish(None, outcome);
    }

    /// Queues the record with its outcome and duration; `session` fills in the session
    /// when it became known only now (a created session).
    pub fn finish(mut self, session: Option<String>, outcome: &str) {
        if session.is_some() {
            self.record.session = session;
        }
        self.record.outcome = outcome.to_owned();
        self.record.duration_ms = self.started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        self.record.time = Utc::now();
        self.log.record(self.record);
    }
}

/// The audit log of one server. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: SyncSender<AuditRecord>,
    payloads: bool,
    dropped: Counter,
    node: Option<Arc<str>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("payloads", &self.payloads).finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer thread for `path`. Never fails: a log that cannot be opened is
    /// reported (once) and retried by the writer, and the server runs on.
    pub fn start(path: PathBuf, payloads: bool, dropped: Counter, write_errors: Counter) -> AuditLog {
        let (queue, records) = mpsc::sync_channel(QUEUE_CAPACITY);
        let writer = Writer { path, file: None, write_errors, unflushed: 0, failing_since: None };
        let spawned = std::thread::Builder::new().name("codebeaker-audit".into()).spawn(move || writer.run(records));
        if let Err(error) = spawned {
            // Without a thread every record is dropped (and counted) at `try_send`.
            tracing::error!(%error, "cannot start the audit log writer; audit records will be dropped");
        }
        AuditLog { queue, payloads, dropped, node: None }
    }

    /// Names `node` (a cluster node's URL) in every record.
    pub fn with_node(mut self, node: Arc<str>) -> AuditLog {
        self.node = Some(node);
        self
    }

    /// Starts the record of one operation; the command's content goes in only with
    /// payloads on.
    pub fn begin(
        &self,
        tenant: Option<String>,
        remote: Option<std::net::SocketAddr>,
        method: &'static str,
        session: Option<&str>,
        command: Option<&Command>,
    ) -> AuditEntry {
        let record = AuditRecord {
            time: Utc::now(),
            tenant,
            remote: remote.map(|addr| addr.to_string()),
            method,
            // Client-chosen ids are bounded like every other logged string.
            session: session.map(|id| id.chars().take(128).collect()),
            command: command.map(Command::kind),
            outcome: String::new(),
            duration_ms: 0,
            egress_refused: None,
            payload: if self.payloads { command.and_then(|c| serde_json::to_value(c).ok()) } else { None },
            node: self.node.clone(),
        };
        AuditEntry { log: self.clone(), started: Instant::now(), record }
    }

    /// Whether records carry payloads (`--audit-log-payloads`).
    pub fn payloads(&self) -> bool {
        self.payloads
    }

    /// Queues a record without waiting; drops (and counts) it when the queue is full.
    /// A payload is removed here unless payloads are on, whatever the caller passed.
    pub fn record(&self, mut record: AuditRecord) {
        if !self.payloads {
            record.payload = None;
        }
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    write_errors: Counter,
    /// Records in the buffer since the last successful flush: lost if it fails.
    unflushed: u64,
    /// When the current failure streak started (`None`: the log is healthy).
    failing_since: Option<Instant>,
}

impl Writer {
    fn run(mut self, records: Receiver<AuditRecord>) {
        loop {
            // Wait briefly so a burst is flushed once, not per record.
            let record = match records.recv_timeout(Duration::from_millis(200)) {
                Ok(record) => record,
                Err(RecvTimeoutError::Timeout) => {
                    self.flush();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.write(&record);
            if let Ok(next) = records.try_recv() {
                self.write(&next);
            } else {
                self.flush();
            }
        }
        self.flush();
    }

    fn write(&mut self, record: &AuditRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => return self.fail(&io::Error::other(error)),
        };
        line.push(b'\n');
        let Some(file) = self.open() else {
            self.write_errors.inc();
            return;
        };
        let written = file.write_all(&line);
        self.unflushed += 1;
        if let Err(error) = written {
            self.fail(&error);
        }
    }

    fn flush(&mut self) {
        if let Some(file) = self.file.as_mut() {
            match file.flush() {
                Ok(()) => {
                    self.unflushed = 0;
                    if self.failing_since.take().is_some() {
                        tracing::info!(path = %self.path.display(), "audit log writable again");
                    }
                }
                Err(error) => self.fail(&error),
            }
        }
    }

    /// The open log, opening it if needed (not more often than [`REOPEN_AFTER`] while failing).
    fn open(&mut self) -> Option<&mut BufWriter<File>> {
        if self.file.is_none() {
            if self.failing_since.is_some_and(|since| since.elapsed() < REOPEN_AFTER) {
                return None;
            }
            match open_append(&self.path) {
                Ok(file) => self.file = Some(BufWriter::new(file)),
                Err(error) => {
                    self.note_failure(&error);
                    return None;
                }
            }
        }
        self.file.as_mut()
    }

    /// Counts the records lost (those not yet flushed, at least the current one), drops
    /// the handle, and logs the first failure of a streak.
    fn fail(&mut self, error: &io::Error) {
        self.write_errors.inc_by(self.unflushed.max(1));
        self.unflushed = 0;
        // Dropping a BufWriter flushes it again; its buffer is lost either way.
        if let Some(file) = self.file.take() {
            let _ = file.into_parts();
        }
        self.note_failure(error);
    }

    /// Logs the first failure of a streak and starts the wait before reopening.
    fn note_failure(&mut self, error: &io::Error) {
        if self.failing_since.is_none() {
            tracing::error!(path = %self.path.display(), %error, "cannot write the audit log; records are lost until it is writable (counted in codebeaker_audit_write_errors_total)");
        }
        self.failing_since = Some(Instant::now());
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(method: &'static str) -> AuditRecord {
        AuditRecord {
            time: Utc::now(),
            tenant: Some("alice".into()),
            remote: Some("127.0.0.1:4000".into()),
            method,
            session: None,
            command: Some("execute_code"),
            outcome: "ok".into(),
            duration_ms: 3,
            egress_refused: None,
            payload: Some(serde_json::json!({"code": "secret()"})),
            node: None,
        }
    }

    fn wait_for_lines(path: &Path, count: usize) -> Vec<Value> {
        for _ in 0..100 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if lines.len() >= count {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fewer than {count} audit lines in {}", path.display());
    }

    #[test]
    fn lines_without_payloads_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::start(path.clone(), false, Counter::default(), Counter::default());
        log.record(record("session.execute"));
        let lines = wait_for_lines(&path, 1);
        assert_eq!(lines[0]["tenant"], "alice");
        assert_eq!(lines[0]["command"], "execute_code");
        assert_eq!(lines[0]["durationMs"], 3);
        assert!(lines[0].get("payload").is_none(), "{}", lines[0]);
        let with = AuditLog::start(dir.path().join("payloads.jsonl"), true, Counter::default(), Counter::default());
        with.record(record("session.execute"));
        assert_eq!(wait_for_lines(&dir.path().join("payloads.jsonl"), 1)[0]["payload"]["code"], "secret()");
    }

    #[test]
    fn an_unwritable_log_counts_errors_and_never_blocks() {
        let errors = Counter::default();
        let log = AuditLog::start(
            "/proc/codebeaker-no-such-dir/audit.jsonl".into(),
            false,
            Counter::default(),
            errors.clone(),
        );
        for _ in 0..10 {
            log.record(record("session.list"));
        }
        for _ in 0..100 {
            if errors.get() == 10 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("expected 10 write errors, got {}", errors.get());
    }
}
