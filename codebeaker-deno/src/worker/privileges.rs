//! The worker's side of its identity: before its session's first cell it gives up root
//! (for its session's uid, see `identity`) and every capability, for good.
//!
//! Order matters: the bounding set is emptied while the worker still holds `CAP_SETPCAP`;
//! `PR_SET_KEEPCAPS` is off, so `setresuid` to a non-zero uid clears the permitted and
//! effective sets; ambient and inheritable sets are cleared explicitly; the result is
//! checked with `capget` (the worker cannot read its own `/proc` entry under Landlock).

use super::identity::Identity;
use super::walls::WallError;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn sys(what: &'static str, rc: libc::c_long) -> Result<(), WallError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(WallError::Sys { what, source: std::io::Error::last_os_error() })
    }
}

/// Becomes `identity` (when the server is root and gave one) and drops every capability:
/// effective, permitted, inheritable, ambient, and the bounding set where the worker may.
pub(crate) fn drop_to(identity: Option<Identity>) -> Result<(), WallError> {
    // SAFETY: prctl calls on this process's own credentials.
    unsafe {
        sys("PR_SET_KEEPCAPS 0", libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0).into())?;
        sys(
            "PR_CAP_AMBIENT_CLEAR_ALL",
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0).into(),
        )?;
    }
    let bounding = empty_bounding_set();
    if let Some(identity) = identity {
        // Only a worker that was root has a uid to change to; it held CAP_SETPCAP.
        bounding?;
        let group = [identity.group as libc::gid_t];
        // SAFETY: getppid has no preconditions; setgroups reads the slice we pass; setres[ug]id
        // and prctl change this (single-threaded) process's own credentials and death signal.
        unsafe {
            let zygote = libc::getppid();
            sys("setgroups", libc::setgroups(1, group.as_ptr()).into())?;
            sys("setresgid", libc::setresgid(identity.uid, identity.uid, identity.uid).into())?;
            sys("setresuid", libc::setresuid(identity.uid, identity.uid, identity.uid).into())?;
            // A change of uid clears the death signal: arm it again, and make sure the
            // zygote did not go in between.
            sys("PR_SET_PDEATHSIG", libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0).into())?;
            if libc::getppid() != zygote {
                return Err(WallError::Capabilities("the zygote went away while the worker changed uid"));
            }
        }
        check_identity(identity)?;
    }
    set_capabilities(CapData::default())?;
    if capabilities()? != [CapData::default(); 2] {
        return Err(WallError::Capabilities("a capability set is not empty after dropping them all"));
    }
    Ok(())
}

/// A live fork's copy (see `walls::for_fork`): with `identity`, it is in a user namespace
/// of its own whose map (written by the host) sends its ids 0 to the session's uid; it
/// takes them, which makes it that uid on the host, and drops every capability the
/// namespace gave it. It then arms its death signal (its parent is the `zygote`, which a
/// change of uid and the copy itself cleared).
pub(crate) fn become_mapped(identity: Option<Identity>, zygote: libc::pid_t) -> Result<(), WallError> {
    if identity.is_some() {
        // SAFETY: setres[ug]id change this (single-threaded) process's own credentials.
        unsafe {
            sys("setresgid", libc::setresgid(0, 0, 0).into())?;
            sys("setresuid", libc::setresuid(0, 0, 0).into())?;
        }
        // Inside the namespace the ids read 0; the host checks them from outside.
        check_ids([0; 3])?;
    }
    set_capabilities(CapData::default())?;
    if capabilities()? != [CapData::default(); 2] {
        return Err(WallError::Capabilities("a capability set is not empty after dropping them all"));
    }
    // SAFETY: prctl and getppid on this process.
    unsafe {
        sys("PR_SET_PDEATHSIG", libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0).into())?;
        if libc::getppid() != zygote {
            return Err(WallError::Capabilities("the zygote went away before the fork's copy was set up"));
        }
    }
    Ok(())
}

/// Drops every capability from the bounding set (needs `CAP_SETPCAP`): nothing the worker
/// could ever execute would regain one.
fn empty_bounding_set() -> Result<(), WallError> {
    for capability in 0..64 {
        // SAFETY: prctl on this process's bounding set.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EINVAL) {
                // Past the kernel's last capability.
                return Ok(());
            }
            return Err(WallError::Sys { what: "PR_CAPBSET_DROP", source: error });
        }
    }
    Ok(())
}

fn check_identity(identity: Identity) -> Result<(), WallError> {
    check_ids([identity.uid; 3])
}

/// Checks that the real, effective and saved user and group ids are all `ids`.
fn check_ids(ids: [u32; 3]) -> Result<(), WallError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: getresuid/getresgid write the three ids we pass.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    let uids = [r, e, s];
    // SAFETY: as above.
    unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
    if uids != ids || [r, e, s] != ids {
        return Err(WallError::Capabilities("the worker's user or group ids are not its session's"));
    }
    Ok(())
}

fn set_capabilities(data: CapData) -> Result<(), WallError> {
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let data = [data; 2];
    // SAFETY: capset reads the header and two data words we own.
    sys("capset", unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) })
}

fn capabilities() -> Result<[CapData; 2], WallError> {
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes the two data words we own.
    sys("capget", unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    Ok(data)
}
