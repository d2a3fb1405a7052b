//! The worker's side of a live fork (`session.fork`): between two cells the worker copies
//! itself, engine, heap and walls, with one `clone`; the copy becomes a new session.
//!
//! - The copy is the zygote's child (`CLONE_PARENT`), like every worker: the zygote reaps
//!   it and it dies with the zygote. The `clone` is a question the host answers (see
//!   `notify`), so only a fork the host asked for is ever made.
//! - The copy leaves its original's event loops: the epoll instances it inherited are the
//!   original's (and the zygote's), shared across the fork, so each is replaced in place by
//!   a new empty one before the copy builds its own loop. Between cells no timer or
//!   operation is pending (each cell runs its event loop until idle), so nothing of the
//!   session's JavaScript is lost by it.
//! - With a uid of its own to take, the copy enters a user namespace of its own (again a
//!   question for the host), whose map the host writes; `walls::for_fork` does the rest.
//!
//! The `clone` is the raw system call (the C library's `fork` cannot ask for
//! `CLONE_PARENT`), made while the worker's other threads (its watchdog, idle) hold no
//! lock the copy needs.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::notify::FORK_FLAGS;

/// Copies this process: `Ok(0)` in the copy, `Ok(pid of the copy)` in the original.
pub(crate) fn copy() -> std::io::Result<u32> {
    // SAFETY: a fork-like clone without a new stack: the copy continues from here with a
    // copy of this thread only, which is all the worker's code after this point uses.
    let rc = unsafe { libc::syscall(libc::SYS_clone, FORK_FLAGS, 0, 0, 0, 0) };
    match rc {
        rc if rc < 0 => Err(std::io::Error::last_os_error()),
        pid => Ok(pid as u32),
    }
}

/// In the copy: replaces every inherited epoll instance by a new empty one, under the same
/// descriptor, so that nothing the copy's dead event loops do (a deregistration, say)
/// reaches its original's.
pub(crate) fn leave_event_loops() -> std::io::Result<()> {
    // An eventfd to probe with: `epoll_ctl(fd, DEL, probe)` fails with ENOENT when `fd` is
    // an epoll instance (the probe is in none), with EINVAL or EBADF when it is not.
    // SAFETY: eventfd returns a new descriptor or -1.
    let probe = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if probe < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just made.
    let probe = unsafe { OwnedFd::from_raw_fd(probe) };
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let highest = i32::try_from(limit.rlim_cur.min(4096)).unwrap_or(4096);
    for fd in 0..highest {
        if fd == probe.as_raw_fd() {
            continue;
        }
        // SAFETY: epoll_ctl on descriptors of this process; DEL takes no event.
        let rc = unsafe { libc::epoll_ctl(fd, libc::EPOLL_CTL_DEL, probe.as_raw_fd(), std::ptr::null_mut()) };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
            continue;
        }
        // SAFETY: a new epoll instance takes the inherited one's descriptor (dup3 closes
        // the old one atomically); the temporary descriptor is closed after.
        unsafe {
            let fresh = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if fresh < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let moved = libc::dup3(fresh, fd, libc::O_CLOEXEC);
            libc::close(fresh);
            if moved < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// In the copy: enters a user namespace of its own (the host lets it, then maps it).
pub(crate) fn own_user_namespace() -> std::io::Result<()> {
    // SAFETY: unshare changes only this (single-threaded) process's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
