//! Test-only hooks of the worker (feature `test-hooks`, enabled by this crate's own tests
//! only): a cell whose first line is `//@cb-test <hook>` is answered by the worker itself,
//! bypassing the engine and the permission checks, to show what the kernel walls alone
//! allow, and to make a worker misbehave on its channel.
//!
//! - `open <path>` / `create <path>`: open a host file directly; prints `ok` or the OS error.
//! - `socket`: create an internet socket; `fork`: fork; `exec`: run `/bin/true`.
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
