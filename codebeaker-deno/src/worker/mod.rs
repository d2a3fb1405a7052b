//! Process isolation: each Deno session's JavaScript runs in a worker process of its own,
//! started ahead of need, walled in by the kernel and supervised by the host.
//!
//! Workers are forked from a zygote: the current executable started again with
//! [`WORKER_ENV`] set (or [`DenoConfig::worker_program`](crate::DenoConfig::worker_program)).
//! Before `main` runs, [`run_worker_if_requested`] sees the variable and, instead of the
//! program, builds one JS engine and forks a worker from it whenever the host asks on fd
//! [`WORKER_FD`]. The call is also made by a hook in the executable's start-up code, so
//! test binaries, examples and benches need no line of their own.
//!
//! | piece | module |
//! |---|---|
//! | the frames on the socketpair, hostile-input decoding | `ipc` |
//! | starting zygotes and asking them for workers (host side) | `spawn` |
//! | the zygote: one engine, a fork per worker | `zygote` |
//! | a short message with a descriptor beside it | `fdpass` |
//! | spare workers | `pool` |
//! | the worker's side: engine, walls, cells | `child`, `walls` |
//! | the session's uid: leases, workspace ownership (host) | `identity` |
//! | dropping to that uid and every capability (worker) | `privileges` |
//! | the seccomp allowlist | `syscalls` |
//! | the zygote's and workers' stderr, into the log, bounded | `log_pipe` |
//! | the host's handle, deadlines, kill | `supervisor` |
//! | stopping and continuing a session's worker (`session.pause`) | `pause` |
//! | a worker copying itself (`session.fork`, live) | `live_fork` |
//! | the kernel's gate on that copy: questions only the host answers | `notify` |
//! | the session over successive workers | `sandbox` |

mod child;
mod fdpass;
pub(crate) mod identity;
pub(crate) mod ipc;
mod live_fork;
mod log_pipe;
mod notify;
pub(crate) mod pause;
pub(crate) mod pool;
mod privileges;
pub(crate) mod sandbox;
mod spawn;
pub(crate) mod supervisor;
mod syscalls;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod walls;
mod zygote;

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

/// Environment variable that makes a process a worker zygote: `<fd>:<parent pid>`.
pub const WORKER_ENV: &str = "CODEBEAKER_DENO_WORKER";
/// The file descriptor of a worker's end of its channel.
pub(crate) const WORKER_FD: i32 = 3;

/// Turns this process into a Deno worker zygote when it was started as one, and never
/// returns then; otherwise returns at once.
///
/// The crate calls this itself before `main` (an `.init_array` hook linked with
/// [`DenoBackend`](crate::DenoBackend)), so most programs need nothing. A program that
/// names itself in [`DenoConfig::worker_program`](crate::DenoConfig::worker_program), or
/// wants to be explicit, calls it first thing in `main`:
///
/// ```no_run
/// # fn the_program() {}
/// // First thing in `main`, before any thread (a tokio runtime) is started:
/// codebeaker_deno::run_worker_if_requested();
/// the_program();
/// ```
pub fn run_worker_if_requested() {
    let Some(marker) = std::env::var_os(WORKER_ENV) else { return };
    // This runs before the program made threads of its own (pre-main or first thing in
    // main), so nobody reads the environment concurrently.
    std::env::remove_var(WORKER_ENV);
    let marker = marker.to_string_lossy().into_owned();
    let (fd, parent) = marker.split_once(':').unwrap_or((&marker, ""));
    let (Ok(fd), Ok(parent)) = (fd.parse::<i32>(), parent.parse::<i32>()) else {
        eprintln!("codebeaker-deno: {WORKER_ENV}={marker:?} is not <fd>:<parent pid>");
        std::process::exit(2);
    };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        // The host went away before the death signal was armed.
        std::process::exit(0);
    }
    // SAFETY: the host handed us this descriptor; nothing else in this process owns it.
    let control = unsafe { UnixStream::from_raw_fd(fd) };
    zygote::serve(control)
}

extern "C" fn worker_hook() {
    run_worker_if_requested();
}

/// Runs [`run_worker_if_requested`] before `main` of any executable this crate is linked
/// into (the backend references it, so the linker keeps it).
#[used]
#[link_section = ".init_array"]
pub(crate) static WORKER_HOOK: extern "C" fn() = worker_hook;
