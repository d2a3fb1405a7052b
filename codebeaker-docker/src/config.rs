//! [`DockerConfig`]: how the backend talks to the engine and what it gives every sandbox.
//!
//! Everything here is set by whoever embeds the backend (the SDK user or the server's
//! operator), never by the code that runs in a sandbox. Per-session settings
//! (`memoryLimitMB`, `cpuShares`, `dockerImage`) come from [`codebeaker::SessionConfig`],
//! capped by the operator's [`Policy`] into the [`codebeaker::SessionLimits`] each
//! sandbox is created with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use codebeaker::{Language, Policy};

/// Where the agent binary sits inside a sandbox container (bind-mounted there read-only,
/// or baked into the image by `scripts/build-images.sh`).
pub const AGENT_PATH_IN_CONTAINER: &str = "/opt/codebeaker/agent";

/// Environment variable naming the host's agent binary.
pub const AGENT_ENV: &str = "CODEBEAKER_AGENT";

/// Which agent (`codebeaker-agent`, a static binary) runs as each container's main
/// process, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentBinary {
    /// This file on the engine's host, bind-mounted read-only into every container.
    Host(PathBuf),
    /// Already in every image at [`AGENT_PATH_IN_CONTAINER`] (for engines that cannot
    /// bind-mount from this host, e.g. a remote engine).
    InImage,
    /// No agent: commands use the engine's exec API and file commands its archive API
    /// (the slower path, kept for images without an agent on engines without one).
    Off,
}

impl AgentBinary {
    /// `$CODEBEAKER_AGENT` if set, else a `codebeaker-agent` next to the running
    /// executable or in a cargo target directory above it (the static build at
    /// `target/x86_64-unknown-linux-gnu/release/`), else [`AgentBinary::Off`].
    pub fn discover() -> AgentBinary {
        if let Some(path) = std::env::var_os(AGENT_ENV).filter(|p| !p.is_empty()) {
            return AgentBinary::Host(PathBuf::from(path));
        }
        let Ok(exe) = std::env::current_exe() else { return AgentBinary::Off };
        let candidates = exe.ancestors().skip(1).flat_map(|dir| {
            [
                dir.join("codebeaker-agent"),
                dir.join("x86_64-unknown-linux-gnu/release/codebeaker-agent"),
                dir.join("target/x86_64-unknown-linux-gnu/release/codebeaker-agent"),
            ]
        });
        for candidate in candidates.take(24) {
            if is_executable(&candidate) {
                return AgentBinary::Host(candidate);
            }
        }
        AgentBinary::Off
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Languages the Docker backend runs.
pub const DOCKER_LANGUAGES: [Language; 4] = [Language::Python, Language::JavaScript, Language::Go, Language::CSharp];

/// Settings of a [`DockerBackend`](crate::DockerBackend).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Value of the `org.codebeaker.owner` label put on every container and volume. At
    /// start-up the backend removes containers with this label left by an earlier run, so
    /// two backends sharing one engine need different owners.
    pub owner: String,
    /// Image per language; defaults to `codebeaker-<language>:latest`.
    pub images: HashMap<Language, String>,
    /// Spare containers kept started per language (0 disables the warm pool for it).
    pub pool_size: HashMap<Language, usize>,
    /// Most processes (threads included) a sandbox may hold at once: stops fork bombs.
    pub pids_limit: i64,
    /// Size of the tmpfs `/tmp`, in MiB. It counts against the memory limit.
    pub tmp_size_mb: u64,
    /// `uid:gid` that runs every command (owns `/workspace`).
    pub sandbox_user: String,
    /// `uid:gid` of the container's init and keep-alive process. It differs from
    /// [`DockerConfig::sandbox_user`] so that sandboxed code (and the backend's own
    /// "kill every process" step after a timeout) cannot signal the keep-alive.
    pub keepalive_user: String,
    /// The operator policy the warm pool makes its spares for: a spare is handed out only
    /// to a session whose resolved limits equal those of a default session under this
    /// policy. Give it the same policy as the session manager
    /// ([`codebeaker::ManagerConfig::policy`]), or spares never match and every session
    /// pays for a fresh container.
    pub policy: Policy,
    /// The agent each container runs (default: [`AgentBinary::discover`]).
    pub agent: AgentBinary,
}

impl Default for DockerConfig {
    fn default() -> Self {
        let images = DOCKER_LANGUAGES.iter().map(|&l| (l, format!("codebeaker-{}:latest", l.as_str()))).collect();
        let pool_size = DOCKER_LANGUAGES.iter().map(|&l| (l, 1)).collect();
        DockerConfig {
            owner: "codebeaker".into(),
            images,
            pool_size,
            pids_limit: 256,
            tmp_size_mb: 256,
            sandbox_user: "1000:1000".into(),
            keepalive_user: "65534:65534".into(),
            policy: Policy::default(),
            agent: AgentBinary::discover(),
        }
    }
}

impl DockerConfig {
    /// The default image of `language`, if the backend runs it.
    pub fn image_for(&self, language: Language) -> Option<&str> {
        self.images.get(&language).map(String::as_str)
    }

    /// How many spares the pool keeps for `language`.
    pub fn pool_size_for(&self, language: Language) -> usize {
        self.pool_size.get(&language).copied().unwrap_or(0)
    }

    /// Sets the same pool size for every language.
    pub fn with_pool_size(mut self, spares: usize) -> Self {
        self.pool_size = DOCKER_LANGUAGES.iter().map(|&l| (l, spares)).collect();
        self
    }

    /// Sets the operator policy the warm pool's spares are made for.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the agent each container runs.
    pub fn with_agent(mut self, agent: AgentBinary) -> Self {
        self.agent = agent;
        self
    }

    /// Sets the owner label.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The uid part of [`DockerConfig::sandbox_user`] (what file uploads are owned by).
    pub(crate) fn sandbox_ids(&self) -> (u64, u64) {
        let mut parts = self.sandbox_user.split(':').map(|p| p.parse::<u64>().unwrap_or(1000));
        let uid = parts.next().unwrap_or(1000);
        (uid, parts.next().unwrap_or(uid))
    }
}
