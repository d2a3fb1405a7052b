//! Who a worker runs as, on the host's side.
//!
//! A server running as root gives each process-isolated session a user id of its own from
//! [`WorkerIds::uids`] (its group id is the same number) for the session's whole life: its
//! workers drop to it before any guest code runs, its workspace directory belongs to it, and
//! the host's file commands on that workspace act as it (`setfsuid`, so what the host
//! creates there belongs to the session too, and what the session made unreadable stays so). Sessions then share no file and no per-uid
//! kernel limit with each other, nor with any user of the host. The backend root and the
//! instance directory stay the server's (mode 0710, group [`WorkerIds::group`]): a worker
//! can pass through them to its own workspace, and list or open nothing else there.
//!
//! A server that does not run as root cannot change uid: its workers keep the server's uid
//! (said once in the log at start), behind every other wall (no capabilities, no new
//! privileges, an empty environment, seccomp, Landlock).

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Mutex, Once};

use serde::{Deserialize, Serialize};

/// User and group ids of Deno workers when the server runs as root. Both must belong to no
/// one else on the host (no file, no process): the defaults lie above the ranges
/// distributions and container engines hand out (`/etc/subuid` ranges usually start at
/// 100000 and systemd's container ranges end at 1879048191).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIds {
    /// The group that may pass through the workspace root to a session's workspace (and
    /// nothing more): every worker holds it as its only supplementary group.
    /// Default: 1900000000.
    pub group: u32,
    /// The user ids given to sessions, one per live session of this process (each is also
    /// that session's primary group id). Default: 1900000001..1900065536 (65535 sessions).
    pub uids: Range<u32>,
}

impl Default for WorkerIds {
    fn default() -> Self {
        WorkerIds { group: 1_900_000_000, uids: 1_900_000_001..1_900_065_536 }
    }
}

/// The credentials of one session's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// User id, and primary group id.
    pub uid: u32,
    /// The one supplementary group: passage through the workspace root.
    pub group: u32,
}

impl Identity {
    /// The file rights the host's accesses to the session's workspace use: the session's
    /// uid, and the passage group, which a thread needs to reach the workspace (its
    /// supplementary groups stay the server's). What it creates belongs to the session's
    /// uid and that group, with no right for the group (files 0600, directories 0700).
    pub fn file_owner(self) -> codebeaker::workspace::FsOwner {
        codebeaker::workspace::FsOwner { uid: self.uid, gid: self.group }
    }
}

/// Whether this process runs as root, and so can give its workers other uids.
pub(crate) fn server_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Says once, at the first process-isolated backend, who the workers will run as.
pub(crate) fn announce(ids: &WorkerIds) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if server_is_root() {
            tracing::info!(
                uids = ?ids.uids,
                group = ids.group,
                "deno workers run as a uid of their session's own, with no capabilities"
            );
        } else {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            tracing::warn!(
                uid,
                "the server does not run as root: deno workers keep its uid (no uid per session); they still run with no capabilities, no new privileges, an empty environment, the seccomp allowlist and Landlock"
            );
        }
    });
}

/// The uids taken by live sessions of this process (shared by all its backends), and where
/// the next search starts (round robin, so a uid freed now is the last to be given again).
struct Taken {
    uids: HashSet<u32>,
    next: u32,
}

static TAKEN: Mutex<Option<Taken>> = Mutex::new(None);

/// Where uids are claimed machine-wide: one lock file per uid, locked (`flock`) by the
/// process whose session holds it. The kernel drops a dead process's locks, so a killed
/// server gives its uids back by itself.
const CLAIMS_DIR: &str = "/run/codebeaker/deno-uids";

/// A session's uid, held until dropped: taken in this process's table and claimed on
/// the machine (its lock file, when the claims directory can be used), so several
/// servers on one host (the nodes of a cluster) never give two sessions one uid.
#[derive(Debug)]
pub(crate) struct Lease {
    identity: Identity,
    /// The lock file of the machine-wide claim, released when closed.
    _claim: Option<std::fs::File>,
}

/// Claims `uid` machine-wide: `Ok(Some(file))` holding its lock, `Ok(None)` when another
/// process holds it, `Err` when claims cannot be made here at all.
fn claim(uid: u32) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(CLAIMS_DIR)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(format!("{CLAIMS_DIR}/{uid}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

impl Lease {
    /// A free uid of `ids`, or `None` when the server is not root. Fails when every uid of
    /// the range is held by a live session.
    pub fn take(ids: &WorkerIds) -> Result<Option<Lease>, String> {
        if !server_is_root() {
            return Ok(None);
        }
        let len = ids.uids.end.saturating_sub(ids.uids.start);
        if len == 0 {
            return Err("the worker uid range is empty".into());
        }
        let mut guard = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        let taken = guard.get_or_insert_with(|| Taken {
            uids: HashSet::new(),
            // A random start: two servers on one host rarely begin on the same uid.
            next: (uuid::Uuid::new_v4().as_u128() % u128::from(len)) as u32,
        });
        for step in 0..len {
            let uid = ids.uids.start + (taken.next.wrapping_add(step) % len);
            if uid == ids.group || taken.uids.contains(&uid) {
                continue;
            }
            let claimed = match claim(uid) {
                Ok(Some(file)) => Some(file),
                // Another server of this host holds it.
                Ok(None) => continue,
                Err(error) => {
                    static UNCLAIMED: Once = Once::new();
                    UNCLAIMED.call_once(|| {
                        tracing::warn!(%error, dir = CLAIMS_DIR, "worker uids cannot be claimed machine-wide; another server on this host could give one of them to a session too")
                    });
                    None
                }
            };
            taken.uids.insert(uid);
            taken.next = (uid - ids.uids.start + 1) % len;
            return Ok(Some(Lease { identity: Identity { uid, group: ids.group }, _claim: claimed }));
        }
        Err(format!("every worker uid of {:?} belongs to a live session", ids.uids))
    }

    /// The credentials this lease stands for.
    pub fn identity(&self) -> Identity {
        self.identity
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(taken) = TAKEN.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            taken.uids.remove(&self.identity.uid);
        }
    }
}

/// Gives the session's workspace directory `dir` to `identity` (it stays 0700).
pub(crate) fn hand_over(dir: &std::path::Path, identity: Identity) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(identity.uid), Some(identity.uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A uid claimed by one holder (one open lock file, as another server process would
    /// hold it) is not claimed again until the holder lets go.
    #[test]
    fn a_claimed_uid_is_not_claimed_twice() {
        if !server_is_root() {
            eprintln!("SKIPPED: claims are made by a root server only");
            return;
        }
        let uid = 1_900_065_535;
        let held = claim(uid).expect("claims can be made").expect("a free uid is claimed");
        assert!(claim(uid).expect("claims can be made").is_none(), "the uid is held by another claim");
        drop(held);
        assert!(claim(uid).expect("claims can be made").is_some(), "a released uid is free again");
    }
}
