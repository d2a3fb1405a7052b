//! [`DockerConfig`]: how the backend talks to the engine and what it gives every sandbox.
//!
//! Everything here is set by whoever embeds the backend (the SDK user or the server's
//! operator), never by the code that runs in a sandbox. Per-session settings
//! (`memoryLimitMB`, `cpuShares`, and this backend's [`crate::DockerOptions`]) come from
//! [`codebeaker::SessionConfig`], capped by the operator's [`Policy`] (with its
//! [`crate::DockerPolicy`] table) into the [`codebeaker::SessionLimits`] each sandbox is
//! created with.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use codebeaker::{Language, Policy};

/// Where the agent binary sits inside a sandbox container (bind-mounted there read-only,
/// or baked into the image by `scripts/build-images.sh`).
pub const AGENT_PATH_IN_CONTAINER: &str = "/opt/codebeaker/agent";

/// Environment variable naming the host's agent binary.
pub const AGENT_ENV: &str = "CODEBEAKER_AGENT";

/// Where the agent (`codebeaker-agent`, a static binary), each container's PID 1, comes
/// from. Every sandbox runs it: there is no other way to run commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentBinary {
    /// This file on the engine's host, bind-mounted read-only into every container.
    Host(PathBuf),
    /// Already in every image at [`AGENT_PATH_IN_CONTAINER`] (for engines that cannot
    /// bind-mount from this host, e.g. a remote engine).
    InImage,
}

/// Where `scripts/build-agent.sh` puts the static build, below a workspace root.
const STATIC_BUILD: &str = "target/x86_64-unknown-linux-gnu/release/codebeaker-agent";

impl AgentBinary {
    /// `$CODEBEAKER_AGENT` if set, else the static build in a cargo target directory
    /// above the running executable (`target/x86_64-unknown-linux-gnu/release/`), else
    /// a `codebeaker-agent` next to it or above it. When none exists, the static build's
    /// path in the nearest target directory (or beside the executable): then
    /// [`DockerBackend::connect`](crate::DockerBackend::connect) fails naming that file.
    pub fn discover() -> AgentBinary {
        if let Some(path) = std::env::var_os(AGENT_ENV).filter(|p| !p.is_empty()) {
            return AgentBinary::Host(PathBuf::from(path));
        }
        let Ok(exe) = std::env::current_exe() else { return AgentBinary::Host(PathBuf::from(STATIC_BUILD)) };
        // The static build first: a debug `codebeaker-agent` beside the executable is
        // whatever `cargo test` built last, possibly older than the static one the
        // scripts build; a deployment has no target directory and finds its own beside it.
        let ancestors = || exe.ancestors().skip(1).take(8);
        let statics = ancestors()
            .flat_map(|dir| [dir.join("x86_64-unknown-linux-gnu/release/codebeaker-agent"), dir.join(STATIC_BUILD)]);
        let candidates = statics.chain(ancestors().map(|dir| dir.join("codebeaker-agent")));
        for candidate in candidates.take(24) {
            if is_executable(&candidate) {
                return AgentBinary::Host(candidate);
            }
        }
        let expected = exe
            .ancestors()
            .find(|dir| dir.file_name().is_some_and(|name| name == "target"))
            .and_then(Path::parent)
            .map(|root| root.join(STATIC_BUILD))
            .unwrap_or_else(|| exe.with_file_name("codebeaker-agent"));
        AgentBinary::Host(expected)
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
    /// Spare containers kept started per language: the pool's floor (0 disables the warm
    /// pool for that language).
    pub pool_size: HashMap<Language, usize>,
    /// Most spares a language's pool grows to under demand (never below its
    /// [`DockerConfig::pool_size`]); see [`WarmPool`](crate::WarmPool).
    pub pool_max: usize,
    /// How long a language's pool goes without a take before its size halves back
    /// toward the floor.
    pub pool_idle: Duration,
    /// Most container starts in flight on the engine at once (spares and sessions' own
    /// containers together; the engine serializes creates anyway). At least 1.
    pub engine_starts: usize,
    /// Most processes (threads included) a sandbox may hold at once: stops fork bombs.
    pub pids_limit: i64,
    /// Size of the tmpfs `/tmp`, in MiB. It counts against the memory limit.
    pub tmp_size_mb: u64,
    /// The uids (each also the gid) sandboxes run their guest code as: every container
    /// gets one of its own, unused by any other live container on the engine (see
    /// [`crate::hardening`]), so per-uid kernel limits (inotify instances, message
    /// queues, `RLIMIT_NPROC`) of one session never touch another or the host. Default
    /// [`SANDBOX_UIDS`]: far above host accounts and subordinate id ranges.
    pub sandbox_uids: Range<u32>,
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
            pool_max: 8,
            pool_idle: Duration::from_secs(60),
            engine_starts: 4,
            pids_limit: 256,
            tmp_size_mb: 256,
            sandbox_uids: SANDBOX_UIDS,
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

    /// How many spares the pool keeps for `language` at least (its floor).
    pub fn pool_size_for(&self, language: Language) -> usize {
        self.pool_size.get(&language).copied().unwrap_or(0)
    }

    /// How many spares the pool of `language` may grow to: [`DockerConfig::pool_max`],
    /// but never below the floor, and 0 for a language whose pool is off.
    pub fn pool_max_for(&self, language: Language) -> usize {
        match self.pool_size_for(language) {
            0 => 0,
            floor => self.pool_max.max(floor),
        }
    }

    /// Sets how many spares a language's pool may grow to under demand.
    pub fn with_pool_max(mut self, spares: usize) -> Self {
        self.pool_max = spares;
        self
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

    /// Why [`DockerConfig::sandbox_uids`] cannot be used, if it cannot.
    pub(crate) fn check_sandbox_uids(&self) -> Result<(), String> {
        let Range { start, end } = self.sandbox_uids;
        if start <= MAX_SYSTEM_ID || end <= start || end > i32::MAX as u32 {
            return Err(format!(
                "sandbox_uids {start}..{end} must be a non-empty range above {MAX_SYSTEM_ID} (no host account or \
                 root) and below {} (ids some tools read as signed)",
                i32::MAX
            ));
        }
        Ok(())
    }
}

/// The default [`DockerConfig::sandbox_uids`]: 2^24 ids from 2 000 000 000. Host accounts
/// live below 65 536 and subordinate id ranges (`/etc/subuid`, handed out from 100 000
/// in blocks of 65 536) stay below it unless some 30 000 users have them.
pub const SANDBOX_UIDS: Range<u32> = 2_000_000_000..2_016_777_216;

/// The highest id a sandbox uid range may not reach down to (`nobody`).
const MAX_SYSTEM_ID: u32 = 65_534;
