//! The `codebeaker-agent` binary: a session container's main process (under the init).
//!
//! It speaks the agent protocol on stdin/stdout (the container's attach stream) and logs
//! to stderr only. Commands, interpreters and file operations run as uid 1000 when it
//! starts as root. Built statically (`-C target-feature=+crt-static`), it makes no NSS
//! or DNS lookups. `--workspace DIR` replaces `/workspace` (for tests only);
//! `--proxy ADDR` moves the egress proxy from `127.0.0.1:3128`, `--no-proxy` turns it off.

use std::path::PathBuf;
use std::process::ExitCode;

use codebeaker_agent::agent::{serve, AgentConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

fn main() -> ExitCode {
    let mut workspace = PathBuf::from("/workspace");
    let mut proxy = Some(std::net::SocketAddr::from(([127, 0, 0, 1], codebeaker_agent::agent::DEFAULT_PROXY_PORT)));
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
    // Not dumpable: a program running as the same user cannot ptrace the agent or open
    // its /proc/PID/fd (its protocol channel) to impersonate it.
    // SAFETY: prctl with these arguments only changes this process's flag.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("codebeaker-agent: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let mut config = AgentConfig::new(workspace);
    config.proxy = proxy;
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

/// The host's channel: stdin and stdout as non-blocking pipes when they are pipes (a
/// container's attach stream), which saves the blocking-thread hop tokio's stdio needs.
fn host_channel() -> (Box<dyn AsyncRead + Unpin + Send>, Box<dyn AsyncWrite + Unpin + Send>) {
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

fn usage(problem: &str) -> ExitCode {
    eprintln!("codebeaker-agent: {problem}\nusage: codebeaker-agent [--workspace DIR] [--proxy ADDR | --no-proxy] [--version]");
    ExitCode::from(64)
}
