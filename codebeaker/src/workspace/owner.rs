//! [`FsOwner`]: whose file rights a host workspace's accesses use, when its sandbox runs
//! under a uid of its own.

/// The file-system identity a [`HostWorkspace`](super::HostWorkspace) acts as: what it
/// creates belongs to `uid`, and what the sandbox's code made unreadable stays so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsOwner {
    /// The sandbox's uid.
    pub uid: u32,
    /// The file-system group (e.g. the one that may pass through the workspace root).
    pub gid: u32,
}

/// Makes the calling thread's file accesses those of an [`FsOwner`] until dropped
/// (`setfsuid`, `setfsgid`: this thread only); with `None`, changes nothing. Hold it only
/// across synchronous code: a task that awaits may move to another thread.
pub(crate) struct Acting(Option<(libc::uid_t, libc::gid_t)>);

impl Acting {
    pub(crate) fn as_owner(owner: Option<FsOwner>) -> Self {
        Acting(owner.map(|owner| {
            // SAFETY: setfsgid/setfsuid change this thread's file-system ids only; each
            // returns the previous one, restored on drop.
            unsafe {
                let gid = libc::setfsgid(owner.gid) as libc::gid_t;
                (libc::setfsuid(owner.uid) as libc::uid_t, gid)
            }
        }))
    }
}

impl Drop for Acting {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.0 {
            // SAFETY: as in `as_owner`; going back to the previous ids restores them.
            unsafe {
                libc::setfsuid(uid);
                libc::setfsgid(gid);
            }
        }
    }
}
