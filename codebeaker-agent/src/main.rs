//! The `codebeaker-agent` binary: a session container's PID 1.
//!
//! It speaks the agent protocol on stdin/stdout (the container's attach stream) and logs
//! to stderr only. It runs as root inside the container with only the capabilities it
//! needs (`SETUID`, `SETGID` to start guest processes and take the guest's file-system
//! identity, `KILL` to kill guest trees, `SYS_NICE` to run above them), non-dumpable; commands, interpreters and file
//! operations run as `--user UID:GID` (the sandbox's own uid, never root; uid 1000 when
//! not given and started as root), which can neither signal, trace nor open the `/proc`
//! entries of the agent, so the protocol channel is the agent's alone. As PID 1 (or, run
//! elsewhere, as a child subreaper) it reaps every orphan. Built statically
//! (`-C target-feature=+crt-static`), it makes no NSS or DNS lookups.
//! `--workspace DIR` replaces `/workspace` (for tests only); `--proxy ADDR` moves the
//! egress proxy from `127.0.0.1:3128`, `--no-proxy` turns it off.

use std::path::PathBuf;
use std::process::ExitCode;

use codebeaker_agent::agent::{serve, AgentConfig, MAX_PARALLEL_FS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

/// The agent's nice value: the highest priority, against the guests' 19.
const AGENT_NICE: libc::c_int = -20;

fn main() -> ExitCode {
    let mut workspace = PathBuf::from("/workspace");
    let mut proxy = Some(std::net::SocketAddr::from(([127, 0, 0, 1], codebeaker_agent::agent::DEFAULT_PROXY_PORT)));
    let mut user = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workspace" => match args.next() {
                Some(dir) => workspace = PathBuf::from(dir),
                None => return usage("--workspace needs a directory"),
            },
            "--proxy" => match args.next().and_then(|addr| addr.parse().ok()) {
                Some(addr) => proxy = Some(addr),
                None => return usage("--proxy needs an address such as 127.0.0.1:3128"),
            },
            "--no-proxy" => proxy = None,
            "--user" => match args.next().as_deref().and_then(parse_user) {
                Some(ids) => user = Some(ids),
                None => return usage("--user needs UID:GID, neither 0"),
            },
            "--version" => {
                println!("codebeaker-agent {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CODEBEAKER_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // Not dumpable: nothing but root with CAP_SYS_PTRACE (which nothing in the container
    // has) can ptrace the agent or open its /proc/PID/fd (its protocol channel).
    // SAFETY: prctl with these arguments only changes this process's flags.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Outside a container (tests), orphans of commands come to the agent as they
        // come to PID 1 in one: their exits are reaped and their trees can be killed.
        if libc::getpid() != 1 {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        // Above every guest process (they run at nice 19 under the same CPU quota): a
        // fork bomb's hundreds of runnable copies cannot starve the agent of the time it
        // needs to kill them and answer. Threads started later inherit it. Without
        // CAP_SYS_NICE (not in a sandbox) it stays where it was.
        if libc::setpriority(libc::PRIO_PROCESS, 0, AGENT_NICE) != 0 {
            tracing::debug!("the agent could not raise its priority: {}", std::io::Error::last_os_error());
        }
    }
    // Blocking threads serve file operations only, at most MAX_PARALLEL_FS at once: the
    // agent's task count stays within codebeaker_agent::agent::AGENT_TASKS.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(MAX_PARALLEL_FS).build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("codebeaker-agent: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let mut config = AgentConfig::new(workspace);
    config.proxy = proxy;
    if user.is_some() {
        config.user = user;
    }
    let served = runtime.block_on(async {
        let (input, output) = host_channel();
        serve(input, output, config).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codebeaker-agent: {e}");
            ExitCode::from(2)
        }
    }
}

/// Bytes a host channel pipe holds: a 256 KiB file data frame moves in one write and
/// one wakeup of the engine's copier instead of four (the default is 64 KiB). 1 MiB is
/// what an unprivileged process may set (`/proc/sys/fs/pipe-max-size`).
const HOST_PIPE_BYTES: libc::c_int = 1 << 20;

/// The host's channel: stdin and stdout as non-blocking pipes when they are pipes (a
/// container's attach stream), which saves the blocking-thread hop tokio's stdio needs,
/// widened to [`HOST_PIPE_BYTES`] where the kernel lets us.
fn host_channel() -> (Box<dyn AsyncRead + Unpin + Send>, Box<dyn AsyncWrite + Unpin + Send>) {
    for fd in [0, 1] {
        // SAFETY: fcntl on the process's own stdio fds; failure (not a pipe, a lower
        // limit) leaves the pipe as it was.
        unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, HOST_PIPE_BYTES) };
    }
    let input: Box<dyn AsyncRead + Unpin + Send> = match dup(0).and_then(pipe::Receiver::from_owned_fd) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let output: Box<dyn AsyncWrite + Unpin + Send> = match dup(1).and_then(pipe::Sender::from_owned_fd) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

fn dup(fd: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: 0 and 1 stay open for the life of the process.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// `UID:GID`, neither of them root.
fn parse_user(text: &str) -> Option<(u32, u32)> {
    let (uid, gid) = text.split_once(':')?;
    let ids = (uid.parse().ok()?, gid.parse().ok()?);
    (ids.0 != 0 && ids.1 != 0).then_some(ids)
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "codebeaker-agent: {problem}\nusage: codebeaker-agent [--user UID:GID] [--workspace DIR] [--proxy ADDR | \
         --no-proxy] [--version]"
    );
    ExitCode::from(64)
}
