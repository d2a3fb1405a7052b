//! Test-only hooks of the worker (feature `test-hooks`, enabled by this crate's own tests
//! only): a cell whose first line is `//@cb-test <hook>` is answered by the worker itself,
//! bypassing the engine and the permission checks, to show what the kernel walls alone
//! allow, and to make a worker misbehave on its channel.
//!
//! - `open <path>` / `create <path>`: open a host file directly; prints `ok` or the OS error.
//! - `socket`: create an internet socket; `fork`: fork; `exec`: run `/bin/true`.
//! - `connect <ip:port>`: a TCP connection; `bind`: bind a TCP socket to a loopback port.
//! - `syscall <name>`: one call the seccomp allowlist must refuse (`io_uring_setup`, `bpf`,
//!   `unshare`, `perf_event_open`, `keyctl`, `setuid`, `clone_newuser`, `clone_parent`,
//!   `clone3`), made
//!   with harmless arguments.
//! - `pid`: prints the worker's process id.
//! - `garbage`: writes bytes that are not a frame on the channel.

use std::io::Write;
use std::os::unix::net::UnixStream;

use codebeaker::CodeResult;

use super::ipc::FromWorker;

const PREFIX: &str = "//@cb-test ";

fn outcome(result: std::io::Result<()>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(error) => format!("{} (errno {})", error, error.raw_os_error().unwrap_or(0)),
    }
}

fn last_os_error(rc: i64) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `rc` of a fork-like call: a child that should never have been leaves at once.
fn forked(rc: libc::c_long) -> libc::c_long {
    if rc == 0 {
        // SAFETY: ending the unexpected child without running anything of the parent's.
        unsafe { libc::_exit(0) };
    }
    rc
}

/// Makes the named call with arguments that would do no harm if it were allowed.
fn forbidden_call(name: &str) -> std::io::Result<()> {
    let mut buffer = [0u8; 256];
    let zeroed = buffer.as_mut_ptr();
    // SAFETY: each call gets a zeroed buffer as its parameter block, or no pointer at all;
    // none of them can touch memory of ours beyond that buffer.
    let rc = unsafe {
        match name {
            "io_uring_setup" => libc::syscall(libc::SYS_io_uring_setup, 1, zeroed),
            "bpf" => libc::syscall(libc::SYS_bpf, 0 /* BPF_MAP_CREATE */, zeroed, 128),
            "unshare" => libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
            "perf_event_open" => libc::syscall(libc::SYS_perf_event_open, zeroed, 0, -1, -1, 0),
            "keyctl" => libc::syscall(libc::SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0),
            "setuid" => libc::syscall(libc::SYS_setuid, 0),
            // Were these let through, the child would leave at once.
            "clone_newuser" => forked(libc::syscall(libc::SYS_clone, libc::CLONE_NEWUSER | libc::SIGCHLD, 0, 0, 0, 0)),
            // A live fork's copy that the host did not ask for.
            "clone_parent" => forked(libc::syscall(libc::SYS_clone, libc::CLONE_PARENT | libc::SIGCHLD, 0, 0, 0, 0)),
            "clone3" => forked(libc::syscall(libc::SYS_clone3, zeroed, 88)),
            _ => return Err(std::io::Error::other(format!("no such test call {name:?}"))),
        }
    };
    last_os_error(rc)
}

/// The answer to a hook cell, or `None` for an ordinary cell.
pub(crate) fn answer(code: &str, channel: &mut UnixStream) -> Option<FromWorker> {
    let hook = code.lines().next()?.strip_prefix(PREFIX)?.trim();
    let (name, argument) = hook.split_once(' ').unwrap_or((hook, ""));
    let output = match name {
        "open" => outcome(std::fs::File::open(argument).map(drop)),
        "create" => outcome(std::fs::File::create(argument).map(drop)),
        // SAFETY: creating and closing a socket; a forked child exits at once.
        "socket" => outcome(unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            if fd >= 0 {
                libc::close(fd);
            }
            last_os_error(fd.into())
        }),
        "fork" => outcome(unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            last_os_error(pid.into())
        }),
        "exec" => outcome(std::process::Command::new("/bin/true").status().map(drop)),
        "connect" => {
            outcome(argument.parse().map_err(std::io::Error::other).and_then(|address: std::net::SocketAddr| {
                std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)).map(drop)
            }))
        }
        "bind" => outcome(std::net::TcpListener::bind("127.0.0.1:0").map(drop)),
        "syscall" => outcome(forbidden_call(argument)),
        "pid" => std::process::id().to_string(),
        "garbage" => {
            let _ = channel.write_all(b"\xff\xff\xff\x7fthis is not a frame");
            return Some(FromWorker::Ready);
        }
        other => format!("unknown test hook {other:?}"),
    };
    let result = CodeResult { output: output.clone(), stdout: output, ..CodeResult::default() };
    Some(FromWorker::Done { result, memory_exceeded: false, cpu_total_ms: 0 })
}
