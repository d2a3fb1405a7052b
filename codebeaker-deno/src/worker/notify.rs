//! The kernel's gate on a live fork: a seccomp filter each worker attaches with its walls
//! that turns the two calls a live fork makes into questions for the host (seccomp user
//! notifications), which only the host can answer.
//!
//! - `clone(CLONE_PARENT | SIGCHLD)`: the worker copying itself (its copy becomes the
//!   zygote's child, like every worker);
//! - `unshare(CLONE_NEWUSER)`: the copy entering a user namespace of its own, whose uid map
//!   the host writes to give it its session's uid.
//!
//! The host reads the questions on the filter's listener, which the worker hands it with
//! its first answer and then closes: no process of the session ever holds it. The host
//! reads every question as it comes and answers "go on" only to the call it is waiting
//! for, from the process it is forking, while it forks; anything else is refused with
//! `EPERM` at once, as the other filters refuse what they refuse. Every other call a worker
//! could use to make a process or a namespace stays refused by the lock (see `syscalls`),
//! and the `seccomp` call itself is refused once the walls are up, so guest code can
//! neither attach a filter of its own to answer itself nor get around this one.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;

use super::walls::WallError;

/// The flags of the worker's copy of itself.
pub(crate) const FORK_FLAGS: u64 = (libc::CLONE_PARENT | libc::SIGCHLD) as u64;
/// The flag of the copy's own user namespace.
pub(crate) const USERNS_FLAGS: u64 = libc::CLONE_NEWUSER as u64;
/// The marker the compiled filter returns for a question, rewritten into the
/// user-notification action (the compiler has no such action).
const MARKER: u32 = libc::SECCOMP_RET_ERRNO | 0x0bee;

/// The filter: `clone(FORK_FLAGS)` and `unshare(USERNS_FLAGS)` are questions for the host,
/// everything else is left to the other filters.
pub(crate) fn filter() -> Result<BpfProgram, WallError> {
    let exactly = |value: u64| -> Result<SeccompRule, WallError> {
        let condition = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)?;
        Ok(SeccompRule::new(vec![condition])?)
    };
    let rules: BTreeMap<i64, Vec<SeccompRule>> =
        [(libc::SYS_clone, vec![exactly(FORK_FLAGS)?]), (libc::SYS_unshare, vec![exactly(USERNS_FLAGS)?])]
            .into_iter()
            .collect();
    let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH)?;
    let matched = SeccompAction::Errno(MARKER & libc::SECCOMP_RET_DATA);
    let mut program: BpfProgram =
        seccompiler::SeccompFilter::new(rules, SeccompAction::Allow, matched, arch)?.try_into()?;
    let ret = seccompiler::sock_filter { code: 0x06, jt: 0, jf: 0, k: MARKER };
    for instruction in program.iter_mut().filter(|instruction| **instruction == ret) {
        instruction.k = libc::SECCOMP_RET_USER_NOTIF;
    }
    Ok(program)
}

/// Attaches `program` (from [`filter`]) to this single-threaded worker and returns its
/// listener. Needs `seccomp` allowed, so before the lock.
pub(crate) fn attach(program: &BpfProgram) -> Result<OwnedFd, WallError> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const seccompiler::sock_filter,
    }
    let fprog = SockFprog { len: program.len() as u16, filter: program.as_ptr() };
    // SAFETY: the kernel copies the program we point to; it returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const SockFprog,
        )
    };
    if fd < 0 {
        return Err(WallError::Sys { what: "seccomp(NEW_LISTENER)", source: std::io::Error::last_os_error() });
    }
    // SAFETY: a descriptor the kernel just gave us and nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The question a fork waits for: `call` with its flags `arg0`, from process `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    /// The asking process (its main thread).
    pub pid: u32,
    /// `SYS_clone` or `SYS_unshare`.
    pub call: i64,
    /// Its first argument.
    pub arg0: u64,
}

/// The host's end of a worker's filter (shared by the worker and its live forks, which
/// inherit the filter). A task reads every question as it comes: the one a fork expects
/// goes on, any other is refused with `EPERM` at once.
pub(crate) struct Listener {
    shared: Arc<Shared>,
    /// Held by a fork for all its questions: the forks of one lineage take turns.
    forking: tokio::sync::Mutex<()>,
    reader: tokio::task::AbortHandle,
}

struct Shared {
    fd: AsyncFd<OwnedFd>,
    /// The question a fork waits for, and whom to tell when it came.
    expected: Mutex<Option<(Expected, oneshot::Sender<()>)>>,
    /// A question out of turn was logged: the next ones are not (a guest asking in a loop
    /// must not flood the log).
    warned: AtomicBool,
}

impl Listener {
    /// The listener a worker sent; its reader runs on the current runtime until dropped.
    pub fn new(fd: OwnedFd) -> std::io::Result<Listener> {
        // SAFETY: the listener is owned by the AsyncFd and stays open as long as it lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        let shared = Arc::new(Shared { fd, expected: Mutex::new(None), warned: AtomicBool::new(false) });
        let reader = tokio::spawn(read(shared.clone())).abort_handle();
        Ok(Listener { shared, forking: tokio::sync::Mutex::new(()), reader })
    }

    /// The turn of one fork of the lineage, for all its questions.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.forking.lock().await
    }

    /// Lets the question `expected` go on when it comes (from now on, once, for as long as
    /// the returned [`Question`] lives).
    pub fn expect(&self, expected: Expected) -> Question {
        let (sender, receiver) = oneshot::channel();
        *self.shared.expected.lock().unwrap_or_else(|p| p.into_inner()) = Some((expected, sender));
        Question { receiver: Some(receiver), shared: self.shared.clone() }
    }
}

/// A question a fork expects at the gate; no longer expected once dropped (a fork that
/// failed leaves no door open behind it).
pub(crate) struct Question {
    receiver: Option<oneshot::Receiver<()>>,
    shared: Arc<Shared>,
}

impl Question {
    /// Waits up to `wait` for the question to come (and go on).
    pub async fn asked(mut self, wait: Duration) -> std::io::Result<()> {
        let Some(receiver) = self.receiver.take() else { return Ok(()) };
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::other("the fork gate's reader stopped")),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the question did not come within {wait:?}"),
            )),
        }
    }
}

impl Drop for Question {
    fn drop(&mut self) {
        self.shared.expected.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Answers every question on `shared`'s listener until it fails (its filter is gone).
async fn read(shared: Arc<Shared>) {
    loop {
        let notification = match next(&shared.fd).await {
            Ok(notification) => notification,
            Err(error) => {
                tracing::debug!(%error, "a deno worker's fork gate closed");
                return;
            }
        };
        let data = notification.data;
        let asked = Expected { pid: notification.pid, call: i64::from(data.nr), arg0: data.args[0] };
        let waiter = {
            let mut expected = shared.expected.lock().unwrap_or_else(|p| p.into_inner());
            match expected.take() {
                Some((wanted, waiter)) if wanted == asked => Some(waiter),
                other => {
                    *expected = other;
                    None
                }
            }
        };
        if waiter.is_none() {
            if shared.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(?asked, "a deno worker asked for a process or a namespace out of turn; refused");
            } else {
                tracing::warn!(?asked, "a deno worker asked for a process or a namespace out of turn; refused (logged once per session lineage)");
            }
        }
        // A question whose caller died meanwhile cannot be answered: no harm.
        let answered = answer(&shared.fd, notification.id, waiter.is_some());
        if let (Some(waiter), Ok(())) = (waiter, answered) {
            let _ = waiter.send(());
        }
    }
}

/// The next question. The kernel's `RECV` blocks whatever the descriptor's flags (so none
/// are set), so it is made only once `poll` shows a question waiting, and readiness is
/// cleared after each.
async fn next(fd: &AsyncFd<OwnedFd>) -> std::io::Result<libc::seccomp_notif> {
    loop {
        let mut ready = fd.readable().await?;
        let mut waiting = libc::pollfd { fd: fd.get_ref().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one descriptor we own, without waiting.
        let polled = unsafe { libc::poll(&mut waiting, 1, 0) };
        ready.clear_ready();
        if polled <= 0 || waiting.revents & libc::POLLIN == 0 {
            if waiting.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the filter has no process left"));
            }
            continue;
        }
        // SAFETY: an all-zero seccomp_notif is what the kernel asks to be given.
        let mut notification: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl fills the struct we own.
        let rc = unsafe { libc::ioctl(fd.get_ref().as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notification) };
        if rc == 0 {
            return Ok(notification);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            // Nothing there after all, or the caller went away before we read it.
            Some(libc::EAGAIN) | Some(libc::ENOENT) | Some(libc::EINTR) => {}
            _ => return Err(error),
        }
    }
}

fn answer(fd: &AsyncFd<OwnedFd>, id: u64, go_on: bool) -> std::io::Result<()> {
    let response = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: if go_on { 0 } else { -libc::EPERM },
        flags: if go_on { libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 } else { 0 },
    };
    // SAFETY: the ioctl reads the struct we own.
    let rc = unsafe { libc::ioctl(fd.get_ref().as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &response) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
