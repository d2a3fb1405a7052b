//! Starting the real agent binary over pipes, with a temp directory as its workspace.
#![allow(dead_code)] // each test file uses its own part of this module

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Stdio;

use codebeaker_agent::client::{AgentClient, ClientConfig};
use codebeaker_agent::protocol::{AgentHello, ExecCommand, ExecRequest};

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

/// `RLIMIT_NPROC` of fork-bomb tests' commands (each under a uid of its own), as the
/// Docker backend sets one below the container's pids limit: the agent (root) keeps
/// room to act, and a bomb stays small on a host that has no pids limit for the tests.
pub const NPROC: u64 = 200;

/// A running agent binary and its client.
pub struct Agent {
    pub client: AgentClient,
    /// What the agent answered to the handshake.
    pub hello: AgentHello,
    pub child: tokio::process::Child,
    pub workspace: PathBuf,
    pub outside: PathBuf,
    /// The uid of its own an agent of [`Agent::start_isolated`] runs commands as.
    isolated: Option<u32>,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Outside a container the agent is no PID namespace's init: a bomb's processes
        // that escaped its tree outlive it (hundreds, some spinning on failed forks,
        // slowing every later test). Everything of the test's uid goes with it.
        if let Some(uid) = self.isolated {
            kill_uid(uid);
        }
    }
}

/// Kills every process of `uid`, round after round, until none is left (a bounded while).
pub fn kill_uid(uid: u32) {
    use std::os::unix::process::CommandExt as _;
    for _ in 0..100 {
        if processes_of(uid).is_empty() {
            return;
        }
        // kill(-1) as that uid reaches every process of it (and not the killer itself).
        let _ = std::process::Command::new("/bin/kill")
            .args(["-KILL", "-1"])
            .uid(uid)
            .gid(uid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("warning: processes of uid {uid} outlived 100 rounds of SIGKILL: {:?}", processes_of(uid));
}

/// The live processes (see [`is_dead`]) whose real uid is `uid`.
pub fn processes_of(uid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let uid_line = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or_default();
        if uid_line.split_whitespace().next() == Some(&uid.to_string()) && !is_dead(pid) {
            found.push(pid);
        }
    }
    found
}

impl Agent {
    pub async fn start() -> Agent {
        Agent::start_as(None).await
    }

    /// An agent whose commands run as `uid` (also the gid) of their own, as the Docker
    /// backend gives every sandbox: tests that fill the per-uid process limit use one,
    /// so that the other tests' commands (uid 1000) keep theirs. Needs root.
    pub async fn start_isolated(uid: u32) -> Agent {
        Agent::start_as(Some(uid)).await
    }

    async fn start_as(user: Option<u32>) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let workspace = dir.path().join("ws");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&workspace).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let uid = user.unwrap_or_else(command_uid);
        std::os::unix::fs::chown(&workspace, Some(uid), Some(uid)).unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_codebeaker-agent"));
        if user.is_some() {
            command.args(["--user", &format!("{uid}:{uid}")]);
        }
        let mut child = command
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
        assert_eq!(hello.protocol, codebeaker_agent::protocol::PROTOCOL_VERSION);
        Agent { client, hello, child, workspace, outside, isolated: user, _dir: dir }
    }

    /// Runs a shell command with a 10 s timeout and a 1 MiB cap.
    pub async fn sh(&self, line: &str) -> codebeaker_agent::client::ExecOutput {
        self.client.exec_collect(ExecRequest::new(ExecCommand::Shell(line.into()), 10_000, 1 << 20)).await.unwrap()
    }

    /// Runs a shell command as [`sh`](Agent::sh) does, under [`NPROC`] (for agents of
    /// [`Agent::start_isolated`]).
    pub async fn sh_limited(&self, line: &str) -> codebeaker_agent::client::ExecOutput {
        let mut request = ExecRequest::new(ExecCommand::Shell(line.into()), 10_000, 1 << 20);
        request.rlimits.nproc = Some(NPROC);
        self.client.exec_collect(request).await.unwrap()
    }
}

/// Whether a process is gone (or a zombie nobody reaped yet).
pub fn is_dead(pid: i32) -> bool {
    // A zombie whose threads all ended; one whose main thread ended alone runs on.
    state_of(pid).is_none_or(|state| state == 'Z' && threads_of(pid).is_none_or(|threads| threads <= 1))
}

/// The state letter of process `pid` (`None`: no such process).
pub fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// How many threads process `pid` has (`None`: no such process).
pub fn threads_of(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
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
