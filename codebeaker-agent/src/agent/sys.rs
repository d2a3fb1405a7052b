//! Thin, safe wrappers over the Linux calls the agent needs that std does not offer:
//! resolution beneath a directory (`openat2`), `*at` calls on directory handles, reading
//! a directory from a handle, and per-thread file-system identity (`setfsuid`).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether `openat2` works here (kernel ≥ 5.6 and not blocked by a seccomp profile).
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens `path` (relative) beneath `root`: no `..` or symlink leads out of it, magic
/// links (`/proc/*/fd`) are refused. Falls back to a per-component walk with
/// `O_NOFOLLOW` where `openat2` is unavailable (symlinks are then refused altogether).
pub(crate) fn open_beneath(root: BorrowedFd<'_>, path: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { OsStr::new(".") } else { path };
    if !OPENAT2_MISSING.load(Ordering::Relaxed) {
        let cpath = cstring(path.as_bytes())?;
        // SAFETY: open_how is a plain C struct for which all-zero is valid.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.mode = if flags & libc::O_CREAT != 0 { u64::from(mode) } else { 0 };
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: `how` and `cpath` outlive the call; the size is that of the struct.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                cpath.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // ENOSYS: old kernel; EPERM: an old seccomp profile that does not know it.
            Some(libc::ENOSYS) | Some(libc::EPERM) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
            // EAGAIN: a concurrent rename raced the lookup; the walk below is race-free.
            Some(libc::EAGAIN) => {}
            _ => return Err(err),
        }
    }
    open_walk(root, path, flags, mode)
}

/// The fallback: one component at a time, never following a symlink.
fn open_walk(root: BorrowedFd<'_>, path: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let parts: Vec<&[u8]> = path.as_bytes().split(|b| *b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    if path.as_bytes().starts_with(b"/") || parts.iter().any(|p| *p == b"..") {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let mut current = dup(root)?;
    let Some((last, dirs)) = parts.split_last() else {
        return openat(current_fd(&current), b".", flags, mode);
    };
    for dir in dirs {
        current = openat(current_fd(&current), dir, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
    }
    openat(current_fd(&current), last, flags | libc::O_NOFOLLOW, mode)
}

fn current_fd(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd as _;
    fd.as_fd()
}

fn openat(dir: BorrowedFd<'_>, name: &[u8], flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let cname = cstring(name)?;
    // SAFETY: valid C string and descriptor.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), cname.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A duplicate of `fd` (close-on-exec).
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// `fstatat` without following a final symlink.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<libc::stat64> {
    let cname = cstring(name.as_bytes())?;
    let mut stat = std::mem::MaybeUninit::<libc::stat64>::uninit();
    // SAFETY: valid descriptor, C string and out-pointer.
    check(unsafe { libc::fstatat64(dir.as_raw_fd(), cname.as_ptr(), stat.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    // SAFETY: fstatat64 succeeded, so it filled the struct.
    Ok(unsafe { stat.assume_init() })
}

/// `fstat` of an open descriptor.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat64>::uninit();
    // SAFETY: valid descriptor and out-pointer.
    check(unsafe { libc::fstat64(fd.as_raw_fd(), stat.as_mut_ptr()) })?;
    // SAFETY: fstat64 succeeded, so it filled the struct.
    Ok(unsafe { stat.assume_init() })
}

/// `mkdirat`.
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let cname = cstring(name.as_bytes())?;
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), mode) }).map(drop)
}

/// `unlinkat` (`remove_dir` for an empty directory).
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, remove_dir: bool) -> io::Result<()> {
    let cname = cstring(name.as_bytes())?;
    let flags = if remove_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), flags) }).map(drop)
}

/// The names in a directory (without `.` and `..`), read from a handle.
pub(crate) fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // fdopendir takes ownership of its descriptor: give it a fresh one opened for reading
    // (the handle may be O_PATH, which getdents refuses).
    let readable = openat(dir, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(readable);
    // SAFETY: `raw` is an open directory descriptor we own; fdopendir takes it over.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        unsafe { libc::close(raw) };
        return Err(err);
    }
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; resetting it tells end-of-stream from failure.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid DIR* until closedir below.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            let errno = io::Error::last_os_error();
            break if errno.raw_os_error() == Some(0) { Ok(()) } else { Err(errno) };
        }
        // SAFETY: readdir64 returned a valid entry whose name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    };
    // SAFETY: `stream` is valid and closed exactly once.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

/// Switches the calling thread's file-system uid and gid (not the process's), so file
/// operations are checked against, and create files owned by, the command user; the
/// previous identity comes back when the guard drops. A no-op guard when not root.
pub(crate) struct FsIdentity {
    previous: Option<(u32, u32)>,
}

impl FsIdentity {
    /// Becomes `user` for file-system purposes on this thread.
    pub(crate) fn assume(user: Option<(u32, u32)>) -> FsIdentity {
        let Some((uid, gid)) = user else { return FsIdentity { previous: None } };
        // SAFETY: setfsuid/setfsgid only change this thread's credentials; called through
        // the raw syscall so libc cannot broadcast them to other threads.
        let old_gid = unsafe { libc::syscall(libc::SYS_setfsgid, gid) } as u32;
        // SAFETY: as above.
        let old_uid = unsafe { libc::syscall(libc::SYS_setfsuid, uid) } as u32;
        FsIdentity { previous: Some((old_uid, old_gid)) }
    }
}

impl Drop for FsIdentity {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.previous {
            // SAFETY: restores this thread's own previous credentials.
            unsafe {
                libc::syscall(libc::SYS_setfsuid, uid);
                libc::syscall(libc::SYS_setfsgid, gid);
            }
        }
    }
}

/// A pidfd for process `pid` (`pidfd_open`, Linux 5.3): it names that process alone (no
/// reuse of the pid can redirect what is done through it) and polls readable once the
/// process has exited.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Sends `SIGKILL` to the process behind `pidfd` (`pidfd_send_signal`).
pub(crate) fn pidfd_kill(pidfd: &OwnedFd) -> io::Result<()> {
    // SAFETY: a valid descriptor; a null siginfo means "as kill(2) would send it".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(ret as libc::c_int).map(drop)
}
