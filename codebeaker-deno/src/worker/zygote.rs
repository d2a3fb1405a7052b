//! The zygote: one process per worker program that builds a JS engine once and then forks
//! a worker from it per request. A forked worker starts with the engine already bootstrapped
//! (no ~80 ms start-up), and until a session writes to them it shares those pages with the
//! zygote and every sibling: idle sessions cost their own state, not a whole engine each.
//!
//! The zygote stays single-threaded (a fork copies only the calling thread) and never runs
//! guest code. Each request is one byte on its control socket with the worker's channel
//! attached; the answer is the worker's pid (0 when the fork failed) with a pidfd attached,
//! so the host can kill a worker it is not the parent of without ever naming another
//! process. The zygote reaps its workers; it dies with the host, and its workers with it.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use super::{child, fdpass, syscalls, walls};
use crate::engine::Engine;

/// How often an idle zygote reaps workers that ended.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Why a zygote stops.
#[derive(Debug, thiserror::Error)]
enum ZygoteError {
    #[error("cannot raise the worker's walls: {0}")]
    Walls(#[from] walls::WallError),
    #[error("cannot build the engine: {0}")]
    Engine(String),
    #[error("its control socket failed: {0}")]
    Control(#[from] std::io::Error),
}

/// Serves the host on `control` and exits the process: the zygote's whole life.
pub(crate) fn serve(control: UnixStream) -> ! {
    let code = match run(&control) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("codebeaker-deno zygote {}: {error}", std::process::id());
            1
        }
    };
    std::process::exit(code)
}

fn run(control: &UnixStream) -> Result<(), ZygoteError> {
    walls::at_start()?;
    let filters = syscalls::SyscallFilters::compile()?;
    wake_on_child_exit();
    let mut engine = Engine::new().map_err(ZygoteError::Engine)?;
    // What the bootstrap left as garbage is not copied into every worker.
    engine.compact();
    // An engine that started threads (V8's platform workers) cannot be forked safely.
    walls::single_threaded()?;
    // The syscall allowlist, for the zygote and every worker it forks (attached once here:
    // attaching it costs more than a worker's whole set-up).
    syscalls::SyscallFilters::install_in_zygote()?;
    let zygote = std::process::id();
    loop {
        reap();
        if !readable(control)? {
            continue;
        }
        let mut request = [0u8; 1];
        let (len, channel) = fdpass::receive(control, &mut request)?;
        if len == 0 {
            // The host closed its end: it is going away.
            return Ok(());
        }
        let Some(channel) = channel else {
            fdpass::send(control, &0u32.to_le_bytes(), None)?;
            continue;
        };
        // SAFETY: this process has one thread (the walls check so in every worker), so the
        // child gets a consistent copy of everything.
        match unsafe { libc::fork() } {
            0 => child::serve_forked(engine, &filters, UnixStream::from(channel), zygote, control),
            -1 => {
                eprintln!("codebeaker-deno zygote: fork: {}", std::io::Error::last_os_error());
                fdpass::send(control, &0u32.to_le_bytes(), None)?;
            }
            pid => {
                drop(channel);
                answer(control, pid)?;
            }
        }
    }
}

/// Tells the host about worker `pid`, with a pidfd for it (opened before the worker can be
/// reaped, so it names that worker and no other).
fn answer(control: &UnixStream, pid: libc::pid_t) -> Result<(), ZygoteError> {
    let pidfd: Option<OwnedFd> = Pid::from_raw(pid).and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
    match &pidfd {
        Some(pidfd) => fdpass::send(control, &(pid as u32).to_le_bytes(), Some(pidfd.as_fd()))?,
        None => {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            fdpass::send(control, &0u32.to_le_bytes(), None)?;
        }
    }
    Ok(())
}

extern "C" fn on_child_exit(_: libc::c_int) {}

/// A worker that ends interrupts the zygote's `poll` (no `SA_RESTART`), so it is reaped at
/// once rather than at the next [`REAP_EVERY`].
fn wake_on_child_exit() {
    // SAFETY: a zeroed sigaction with a handler that does nothing is valid.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_child_exit as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut());
    }
}

/// Whether a request is waiting, after at most [`REAP_EVERY`].
fn readable(control: &UnixStream) -> std::io::Result<bool> {
    let mut fds = [PollFd::new(control, PollFlags::IN)];
    let timeout = Timespec { tv_sec: REAP_EVERY.as_secs() as i64, tv_nsec: 0 };
    match poll(&mut fds, Some(&timeout)) {
        Ok(ready) => Ok(ready > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Reaps every worker that ended.
fn reap() {
    loop {
        // SAFETY: waitpid with WNOHANG on our own children.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}
