//! The `codebeaker-agent` binary: a session container's main process (under the init).
//!
//! It speaks the agent protocol on stdin/stdout (the container's attach stream) and logs
//! to stderr only. Commands, interpreters and file operations run as uid 1000 when it
//! starts as root. Built statically (`-C target-feature=+crt-static`), it makes no NSS
//! or DNS lookups. `--workspace DIR` replaces `/workspace` (for tests only).

use std::path::PathBuf;
use std::process::ExitCode;

use codebeaker_agent::agent::{serve, AgentConfig};

fn main() -> ExitCode {
    let mut workspace = PathBuf::from("/workspace");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workspace" => match args.next() {
                Some(dir) => workspace = PathBuf::from(dir),
                None => return usage("--workspace needs a directory"),
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
    let config = AgentConfig::new(workspace);
    match runtime.block_on(serve(tokio::io::stdin(), tokio::io::stdout(), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codebeaker-agent: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("codebeaker-agent: {problem}\nusage: codebeaker-agent [--workspace DIR] [--version]");
    ExitCode::from(64)
}
