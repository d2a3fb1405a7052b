//! Starting the real agent binary over pipes, with a temp directory as its workspace.
#![allow(dead_code)] // each test file uses its own part of this module

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Stdio;

use codebeaker_agent::client::{AgentClient, ClientConfig};
use codebeaker_agent::protocol::{ExecCommand, ExecRequest};

/// The uid commands run as: 1000 when the tests (and so the agent) run as root.
pub fn command_uid() -> u32 {
    // SAFETY: geteuid has no failure modes.
    if unsafe { libc::geteuid() } == 0 {
        1000
    } else {
        // SAFETY: as above.
        unsafe { libc::geteuid() }
    }
}

/// A running agent binary and its client.
pub struct Agent {
    pub client: AgentClient,
    pub child: tokio::process::Child,
    pub workspace: PathBuf,
    pub outside: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub async fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let workspace = dir.path().join("ws");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&workspace).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let uid = command_uid();
        std::os::unix::fs::chown(&workspace, Some(uid), Some(uid)).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-agent"))
            .arg("--workspace")
            .arg(&workspace)
            // Tests run in parallel: each agent's proxy on a port of its own.
            .args(["--proxy", "127.0.0.1:0"])
            // The system interpreters: the test user's own (pyenv under /root) are not
            // reachable by uid 1000.
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (client, hello) = AgentClient::connect_split(stdout, stdin, ClientConfig::default()).await.unwrap();
        assert_eq!(hello.protocol, 1);
        Agent { client, child, workspace, outside, _dir: dir }
    }

    /// Runs a shell command with a 10 s timeout and a 1 MiB cap.
    pub async fn sh(&self, line: &str) -> codebeaker_agent::client::ExecOutput {
        self.client.exec_collect(ExecRequest::new(ExecCommand::Shell(line.into()), 10_000, 1 << 20)).await.unwrap()
    }
}

/// Whether a process is gone (or a zombie nobody reaped yet).
pub fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits up to two seconds for all of `pids` to die.
pub async fn all_die(pids: &[i32]) -> bool {
    for _ in 0..40 {
        if pids.iter().all(|pid| is_dead(*pid)) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
