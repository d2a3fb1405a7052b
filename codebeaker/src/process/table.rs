//! One session's background processes: the running and the ended ones (until newer
//! ones push them out), each with its control and retained output, under the
//! operator's caps.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::{ProcessAttachment, ProcessExit, ProcessInfo, ProcessSink, ProcessSpec, ProcessState, Shared};
use crate::backend::{ProcessControl, SpawnedProcess};
use crate::error::{Error, Result};

/// The operator's caps on one session's processes ([`crate::Policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessLimits {
    /// Most processes a session keeps, running or ended (ended ones make room).
    pub max_processes: usize,
    /// Bytes of output retained per process at least.
    pub retained_bytes: usize,
}

struct Record {
    pid: u32,
    command: String,
    pty: bool,
    started_at: DateTime<Utc>,
    shared: Arc<Shared>,
    control: Box<dyn ProcessControl>,
}

impl Record {
    fn info(&self) -> ProcessInfo {
        let exit = self.shared.exit();
        ProcessInfo {
            pid: self.pid,
            command: self.command.clone(),
            pty: self.pty,
            state: if exit.is_some() { ProcessState::Exited } else { ProcessState::Running },
            exit_code: exit.and_then(|exit| exit.exit_code),
            started_at: self.started_at,
        }
    }

    fn running(&self) -> bool {
        self.shared.exit().is_none()
    }
}

#[derive(Default)]
struct Inner {
    /// Oldest first.
    records: Vec<Arc<Record>>,
    /// Starts under way (counted against the cap until they are records).
    starting: usize,
    /// The session closed: no more starts.
    closed: bool,
}

/// A session's processes.
pub(crate) struct ProcessTable {
    limits: ProcessLimits,
    inner: Mutex<Inner>,
}

/// A place in the table held while a process starts; given back when dropped.
pub(crate) struct Reservation<'a> {
    table: &'a ProcessTable,
    sink: ProcessSink,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.table.lock().starting -= 1;
    }
}

impl Reservation<'_> {
    /// Where the backend puts the new process's output.
    pub(crate) fn sink(&self) -> ProcessSink {
        self.sink.clone()
    }
}

impl ProcessTable {
    pub(crate) fn new(limits: ProcessLimits) -> ProcessTable {
        ProcessTable { limits, inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a new process: ended processes are forgotten, oldest first, to
    /// make room; `Err` ([`ErrorKind::LimitReached`]) when every place runs.
    pub(crate) fn reserve(&self, session: &str) -> Result<Reservation<'_>> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Error::session_closed(session));
        }
        while inner.records.len() + inner.starting >= self.limits.max_processes {
            let Some(ended) = inner.records.iter().position(|record| !record.running()) else {
                return Err(Error::limit_reached(format!(
                    "session {session} already runs {} processes, the operator's cap \
                     (max-processes-per-session); end one first",
                    self.limits.max_processes
                )));
            };
            inner.records.remove(ended);
        }
        inner.starting += 1;
        Ok(Reservation { table: self, sink: ProcessSink { shared: Shared::new(self.limits.retained_bytes) } })
    }

    /// Records a started process in the place `reservation` held.
    pub(crate) fn insert(
        &self,
        reservation: Reservation<'_>,
        spec: &ProcessSpec,
        spawned: SpawnedProcess,
    ) -> ProcessInfo {
        let record = Arc::new(Record {
            pid: spawned.pid,
            command: spec.command.display(),
            pty: spec.pty.is_some(),
            started_at: Utc::now(),
            shared: reservation.sink.shared.clone(),
            control: spawned.control,
        });
        let info = record.info();
        let mut inner = self.lock();
        // A pid the sandbox reused replaces the ended process that had it.
        inner.records.retain(|old| old.pid != record.pid);
        inner.records.push(record);
        drop(inner);
        drop(reservation);
        info
    }

    /// Every process, oldest first.
    pub(crate) fn list(&self) -> Vec<ProcessInfo> {
        self.lock().records.iter().map(|record| record.info()).collect()
    }

    /// Whether any process runs (a session with one is not idle).
    pub(crate) fn any_running(&self) -> bool {
        self.lock().records.iter().any(|record| record.running())
    }

    fn get(&self, pid: u32) -> Result<Arc<Record>> {
        // A client's mistake about its own session, like a bad param: invalid input.
        self.lock()
            .records
            .iter()
            .find(|record| record.pid == pid)
            .cloned()
            .ok_or_else(|| Error::invalid_input(format!("no process {pid} in this session (process.list shows them)")))
    }

    /// A reader of process `pid`'s output from `from_offset` on.
    pub(crate) fn attach(&self, pid: u32, from_offset: u64) -> Result<ProcessAttachment> {
        let record = self.get(pid)?;
        Ok(ProcessAttachment::new(record.shared.clone(), from_offset))
    }

    /// The control of process `pid` while it runs; `Err` once it ended.
    pub(crate) fn control(&self, pid: u32) -> Result<ControlRef> {
        let record = self.get(pid)?;
        if let Some(exit) = record.shared.exit() {
            let code = exit.exit_code.map_or_else(|| "an unknown code".to_owned(), |code| format!("code {code}"));
            return Err(Error::invalid_input(format!("process {pid} has already exited (with {code})")));
        }
        Ok(ControlRef(record))
    }

    /// Waits until process `pid` ends.
    pub(crate) async fn wait(&self, pid: u32) -> Result<ProcessExit> {
        let record = self.get(pid)?;
        let mut changes = record.shared.version.subscribe();
        loop {
            if let Some(exit) = record.shared.exit() {
                return Ok(exit);
            }
            if changes.changed().await.is_err() {
                return Err(Error::internal("the process's record went away"));
            }
        }
    }

    /// The session closed: nothing starts any more, and every process still running
    /// ends as `reason` says (the sandbox has killed them, or is gone).
    pub(crate) fn close(&self, reason: &str) {
        let records = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.records.clone()
        };
        for record in records {
            ProcessSink { shared: record.shared.clone() }.exit(ProcessExit::lost(reason));
        }
    }
}

/// A running process's control, kept alive while it is used.
pub(crate) struct ControlRef(Arc<Record>);

impl std::ops::Deref for ControlRef {
    type Target = dyn ProcessControl;

    fn deref(&self) -> &Self::Target {
        self.0.control.as_ref()
    }
}
