//! [`WorkspaceQuota`]: the disk quota of a workspace that lives on the host (Deno's), the
//! counterpart of Docker's size-limited tmpfs.
//!
//! Every write path (the host's file commands and the runtime's file ops, which may run in
//! another process) asks the quota before it writes: [`WorkspaceQuota::reserve`] says how
//! big the file is before and after the write, and refuses what would not fit. Usage is
//! measured from the directory itself, so it survives restarts of either writer; a cached
//! figure is reused while the root's modification time shows that nobody else wrote since
//! (every writer stamps the root after writing), and is measured afresh before anything is
//! refused. Concurrent writes of one process are all counted while they run, each once:
//! by what it reserved, never also by what it has written so far (a measurement skips the
//! files this process is writing).
//!
//! Usage counts what tmpfs would allocate: every file, directory and link is at least one
//! page, files are rounded up to whole pages. That also bounds the number of entries (and
//! so the cost of measuring) to `limit / 4 KiB`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::workspace::WorkspacePath;

/// The unit of allocation: what one entry costs at least.
pub const PAGE_BYTES: u64 = 4096;
/// Most entries a measurement walks before it gives up (a workspace within its quota has
/// far fewer; more means files appeared behind the quota's back).
const MAX_SCANNED_ENTRIES: u64 = 1_000_000;

/// Why a write was refused or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The write would take the workspace over its quota.
    #[error("workspace quota of {} exceeded writing {path}", human(*.limit))]
    Exceeded {
        /// The quota, in bytes.
        limit: u64,
        /// The path being written, as code sees it (`/workspace/x`).
        path: String,
    },
    /// The workspace could not be measured.
    #[error("cannot measure the workspace's disk usage at {path}: {source}")]
    Measure {
        /// The host path that failed.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

/// `bytes` in the unit people write quotas in (`256 MiB`).
fn human(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// What a file of `len` bytes costs, `None` for no file.
pub fn charge_of(len: Option<u64>) -> u64 {
    len.map_or(0, |len| len.div_ceil(PAGE_BYTES).max(1).saturating_mul(PAGE_BYTES))
}

#[derive(Debug, Default)]
struct Ledger {
    /// Usage at the last measurement plus the writes this process finished since.
    used: u64,
    /// Bytes reserved by writes of this process that are still running.
    pending: u64,
    /// Number of writes of this process that are still running.
    writers: usize,
    /// The files those writes are writing (host paths, with how many write each): a
    /// measurement skips them, as `pending` already counts them at their new size.
    writing: HashMap<PathBuf, usize>,
    /// The root's modification time when `used` was last right; `None`: measure first.
    stamp: Option<SystemTime>,
}

/// The disk quota of one host workspace directory. Clones share one ledger.
#[derive(Debug, Clone)]
pub struct WorkspaceQuota(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    limit: u64,
    ledger: Mutex<Ledger>,
}

/// A write the quota let through; the bytes stay counted as pending until it is dropped.
#[must_use = "the reservation ends when dropped: keep it until the write is done"]
#[derive(Debug)]
pub struct Reservation {
    quota: WorkspaceQuota,
    need: u64,
    credit: u64,
    /// The file being written (host path), for a file's reservation.
    file: Option<PathBuf>,
}

impl WorkspaceQuota {
    /// The quota of `root`: at most `limit` bytes in it.
    pub fn new(root: impl Into<PathBuf>, limit: u64) -> Self {
        WorkspaceQuota(Arc::new(Shared { root: root.into(), limit, ledger: Mutex::default() }))
    }

    /// The quota, in bytes.
    pub fn limit(&self) -> u64 {
        self.0.limit
    }

    /// Measures the workspace now (what [`WorkspaceQuota::reserve`] counts as used).
    pub fn usage(&self) -> Result<u64, QuotaError> {
        measure(&self.0.root, &HashMap::new())
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.0.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets a write through if it fits: the entry at `path` (as code names it, for the
    /// error) goes from `before` bytes (`None`: absent) to `after` bytes. Keep the
    /// reservation until the write is done. What it replaces is only credited when no
    /// other write of this process runs (a concurrent write could be replacing it too).
    pub fn reserve(&self, path: &str, before: Option<u64>, after: u64) -> Result<Reservation, QuotaError> {
        let file = self.host_path(path);
        self.reserve_bytes(path, charge_of(Some(after)), charge_of(before), file)
    }

    /// Checks that `count` new directories fit (each costs a page).
    pub fn reserve_dirs(&self, path: &str, count: u64) -> Result<Reservation, QuotaError> {
        self.reserve_bytes(path, count.saturating_mul(PAGE_BYTES), 0, None)
    }

    /// Where the file code names `shown` (`/workspace/x`) lives on the host; `None` for a
    /// name outside the workspace or for its root.
    fn host_path(&self, shown: &str) -> Option<PathBuf> {
        WorkspacePath::parse(shown).ok().filter(|path| !path.is_root()).map(|path| path.on_host(&self.0.root))
    }

    fn reserve_bytes(
        &self,
        path: &str,
        need: u64,
        credit: u64,
        file: Option<PathBuf>,
    ) -> Result<Reservation, QuotaError> {
        let mut ledger = self.ledger();
        let mut measured = false;
        if ledger.stamp.is_none() || ledger.stamp != self.root_stamp() {
            self.remeasure(&mut ledger)?;
            measured = true;
        }
        let credit = if ledger.writers == 0 { credit } else { 0 };
        let fits = |ledger: &Ledger| {
            ledger.used.saturating_add(ledger.pending).saturating_add(need).saturating_sub(credit) <= self.0.limit
        };
        if !fits(&ledger) && !measured {
            // The cache is conservative (removals are not subtracted): look before refusing.
            self.remeasure(&mut ledger)?;
        }
        if !fits(&ledger) {
            return Err(QuotaError::Exceeded { limit: self.0.limit, path: path.to_owned() });
        }
        ledger.pending += need;
        ledger.writers += 1;
        if let Some(file) = &file {
            *ledger.writing.entry(file.clone()).or_default() += 1;
        }
        Ok(Reservation { quota: self.clone(), need, credit, file })
    }

    fn remeasure(&self, ledger: &mut Ledger) -> Result<(), QuotaError> {
        let stamp = self.root_stamp();
        ledger.used = measure(&self.0.root, &ledger.writing)?;
        ledger.stamp = stamp;
        Ok(())
    }

    fn root_stamp(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.0.root).and_then(|m| m.modified()).ok()
    }

    /// Marks the root as written by this process, so the others measure again.
    fn stamp_root(&self, ledger: &mut Ledger) {
        let now = SystemTime::now();
        let stamped = std::fs::File::open(&self.0.root).and_then(|dir| dir.set_modified(now));
        ledger.stamp = match stamped {
            Ok(()) => self.root_stamp(),
            // Without a stamp the next write measures: slower, never wrong.
            Err(_) => None,
        };
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut ledger = self.quota.ledger();
        ledger.pending = ledger.pending.saturating_sub(self.need);
        ledger.writers = ledger.writers.saturating_sub(1);
        if let Some(file) = &self.file {
            if let Some(count) = ledger.writing.get_mut(file) {
                *count -= 1;
                if *count == 0 {
                    ledger.writing.remove(file);
                }
            }
        }
        // Counted as if the write completed in full; the next refusal measures anyway.
        ledger.used = ledger.used.saturating_add(self.need).saturating_sub(self.credit);
        self.quota.stamp_root(&mut ledger);
    }
}

/// Sums what the entries under `root` cost, without following symlinks, leaving out the
/// files in `skip` (being written: their reservations count them).
fn measure(root: &Path, skip: &HashMap<PathBuf, usize>) -> Result<u64, QuotaError> {
    let failed = |path: &Path, source| QuotaError::Measure { path: path.to_path_buf(), source };
    let mut total = 0u64;
    let mut entries = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            // Removed while being measured (a concurrent `remove`): it costs nothing now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(failed(&dir, e)),
        };
        for entry in listing {
            let entry = entry.map_err(|e| failed(&dir, e))?;
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(&entry.path(), e)),
            };
            entries += 1;
            if entries > MAX_SCANNED_ENTRIES {
                return Err(failed(root, std::io::Error::other(format!("more than {MAX_SCANNED_ENTRIES} entries"))));
            }
            if metadata.is_dir() {
                total = total.saturating_add(PAGE_BYTES);
                stack.push(entry.path());
            } else if !skip.is_empty() && skip.contains_key(&entry.path()) {
                continue;
            } else {
                total = total.saturating_add(charge_of(Some(metadata.len())));
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn write(quota: &WorkspaceQuota, name: &str, len: usize) -> Result<(), QuotaError> {
        let path = quota.0.root.join(name);
        let before = std::fs::metadata(&path).ok().map(|m| m.len());
        let _reservation = quota.reserve(&format!("/workspace/{name}"), before, len as u64)?;
        std::fs::write(path, vec![7u8; len]).unwrap();
        Ok(())
    }

    #[test]
    fn writes_beyond_the_quota_are_refused_in_words() {
        let tmp = tempfile::tempdir().unwrap();
        let quota = WorkspaceQuota::new(tmp.path(), 4 * MIB);
        for i in 0..3 {
            write(&quota, &format!("f{i}"), MIB as usize).unwrap();
        }
        let err = write(&quota, "f3", 2 * MIB as usize).unwrap_err();
        assert_eq!(err.to_string(), "workspace quota of 4 MiB exceeded writing /workspace/f3");
        assert!(!tmp.path().join("f3").exists());
        // Replacing a file credits what it replaces; removing frees space.
        write(&quota, "f0", MIB as usize).unwrap();
        std::fs::remove_file(tmp.path().join("f1")).unwrap();
        write(&quota, "f3", 2 * MIB as usize - 4096).unwrap();
        assert!(quota.usage().unwrap() <= 4 * MIB);
    }

    #[test]
    fn writes_by_another_writer_are_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let host = WorkspaceQuota::new(tmp.path(), 4 * MIB);
        let worker = WorkspaceQuota::new(tmp.path(), 4 * MIB);
        write(&worker, "a", MIB as usize).unwrap();
        write(&host, "b", 2 * MIB as usize).unwrap();
        // The worker's cache predates the host's write; the stamp makes it measure.
        let err = write(&worker, "c", 2 * MIB as usize).unwrap_err();
        assert!(matches!(err, QuotaError::Exceeded { .. }), "{err}");
        // A fresh quota object (a restarted worker) measures from the directory.
        let restarted = WorkspaceQuota::new(tmp.path(), 4 * MIB);
        assert!(write(&restarted, "c", 2 * MIB as usize).is_err());
    }

    #[test]
    fn concurrent_reservations_are_all_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let quota = WorkspaceQuota::new(tmp.path(), 4 * MIB);
        let first = quota.reserve("/workspace/a", None, 3 * MIB).unwrap();
        assert!(quota.reserve("/workspace/b", None, 2 * MIB).is_err());
        drop(first);
        std::fs::write(tmp.path().join("a"), vec![0u8; 3 * MIB as usize]).unwrap();
        assert!(quota.reserve("/workspace/b", None, 2 * MIB).is_err());
    }

    #[test]
    fn a_write_in_flight_counts_once_however_much_it_has_written() {
        let tmp = tempfile::tempdir().unwrap();
        let quota = WorkspaceQuota::new(tmp.path(), 8 * MIB);
        // Written in full, its reservation still held (the write has yet to return).
        let first = quota.reserve("/workspace/a", None, 3 * MIB).unwrap();
        std::fs::write(tmp.path().join("a"), vec![0u8; 3 * MIB as usize]).unwrap();
        // Another writer's file changes the root: the next reservation measures again.
        std::fs::write(tmp.path().join("other"), vec![0u8; MIB as usize]).unwrap();
        let second = quota.reserve("/workspace/b", None, 4 * MIB).unwrap();
        assert!(quota.reserve("/workspace/c", None, 1).is_err(), "3 + 1 + 4 MiB fill the quota");
        drop((first, second));
        std::fs::write(tmp.path().join("b"), vec![0u8; 4 * MIB as usize]).unwrap();
        assert!(quota.reserve("/workspace/c", None, 1).is_err());
        std::fs::remove_file(tmp.path().join("other")).unwrap();
        assert!(quota.reserve("/workspace/c", None, MIB).is_ok());
    }

    #[test]
    fn entries_cost_at_least_a_page() {
        let tmp = tempfile::tempdir().unwrap();
        let quota = WorkspaceQuota::new(tmp.path(), 8 * PAGE_BYTES);
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::fs::write(tmp.path().join("d/empty"), b"").unwrap();
        std::fs::write(tmp.path().join("one"), b"1").unwrap();
        assert_eq!(quota.usage().unwrap(), 3 * PAGE_BYTES);
        let dirs = quota.reserve_dirs("/workspace/x/y/z", 5).unwrap();
        assert!(quota.reserve("/workspace/f", None, 1).is_err());
        drop(dirs);
    }
}
