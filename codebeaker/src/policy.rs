//! [`Policy`]: what the operator allows. Clients ask for resources in their
//! [`SessionConfig`]; the policy caps what they may ask for, and [`Policy::limits_for`]
//! turns an accepted request into the [`SessionLimits`] a backend enforces. The policy is
//! computed once (from flags, env and `--policy FILE`, or by an SDK user) and passed
//! down: no backend invents a limit of its own.
//!
//! ```
//! use codebeaker::{Language, Policy, SessionConfig};
//!
//! let policy = Policy::default();
//! let mut config = SessionConfig::new(Language::Python);
//! config.memory_limit_mb = 1_000_000;
//! let refused = policy.limits_for(&config).unwrap_err();
//! assert!(refused.to_string().contains("memoryLimitMB"));
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::SessionConfig;
use crate::error::{Error, Result};

/// Default cap of `memoryLimitMB`.
pub const DEFAULT_MAX_MEMORY_MB: u64 = 2048;
/// Default hard CPU quota of one session, in CPUs.
pub const DEFAULT_CPUS: f64 = 1.0;
/// Default size of a session's workspace, in MiB (Docker's tmpfs and Deno's quota).
pub const DEFAULT_WORKSPACE_MB: u64 = 256;

/// The operator's caps and grants. Deserializes from the `--policy` TOML file
/// (kebab-case keys, every key optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policy {
    /// Largest `memoryLimitMB` a session may ask for.
    pub max_memory_mb: u64,
    /// Hard CPU quota of each session, in CPUs (Docker `NanoCpus`; Deno workers' share).
    pub cpus: f64,
    /// Longest `maxLifetimeMinutes` a session may ask for.
    pub max_lifetime_minutes: f64,
    /// Longest `idleTimeoutMinutes` a session may ask for.
    pub max_idle_minutes: f64,
    /// Longest per-command timeout a session or request may ask for, in ms.
    pub max_command_timeout_ms: u64,
    /// How long a sandbox may take to stop a command after its timeout before it is taken
    /// for broken, in ms. This is the one grace value: the manager's backstop waits
    /// `timeout + stop_grace`, and every backend's kill phase (signal, then force) must
    /// fit in [`SessionLimits::stop_grace`]; no crate keeps a grace constant of its own.
    pub stop_grace_ms: u64,
    /// Size of each session's workspace, in MiB: Docker's `/workspace` tmpfs, Deno's
    /// quota, and `RLIMIT_FSIZE` of sandboxed processes.
    pub workspace_mb: u64,
    /// Images a session may name in `dockerImage` besides the backend's built-in ones.
    pub allowed_images: Vec<String>,
    /// Host paths (and everything beneath them) a Deno session may be granted with
    /// `allowRead`/`allowWrite`. Empty (the default): grants may only name paths inside
    /// the session's own workspace.
    pub grantable_paths: Vec<PathBuf>,
    /// Most sessions one tenant may hold at once (beside the manager's global cap).
    pub max_sessions_per_tenant: usize,
    /// Where sandboxed code may connect to.
    pub net: NetPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_memory_mb: DEFAULT_MAX_MEMORY_MB,
            cpus: DEFAULT_CPUS,
            max_lifetime_minutes: 24.0 * 60.0,
            max_idle_minutes: 4.0 * 60.0,
            max_command_timeout_ms: 60 * 60 * 1000,
            stop_grace_ms: 2_000,
            workspace_mb: DEFAULT_WORKSPACE_MB,
            allowed_images: Vec::new(),
            grantable_paths: Vec::new(),
            max_sessions_per_tenant: 100,
            net: NetPolicy::default(),
        }
    }
}

/// The operator's network rules, shared by Deno's `fetch` and Docker's egress proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NetPolicy {
    /// Whether sandboxed code may reach anything at all (false: every connection is
    /// refused at once with a message saying egress is off).
    pub egress: bool,
    /// Host patterns (`pypi.org`, `*.pythonhosted.org`, `*`, optionally `:PORT`; no port
    /// means any port) Docker sessions may reach through the egress proxy. Empty: the
    /// public package registries of the session's language, ports 443 and 80
    /// ([`crate::egress::default_registries`]). When set, it also bounds what a Deno
    /// session's `allowNet` may reach.
    pub allowed_hosts: Vec<String>,
    /// Non-public addresses or networks (CIDR, e.g. `127.0.0.1/32`, `10.0.0.0/8`) that
    /// sandboxed code may reach anyway. Empty (the default): loopback, private,
    /// link-local and metadata addresses are refused, also after DNS resolution and
    /// redirects.
    pub allowed_private: Vec<String>,
    /// Most connections one session may have open at once.
    pub max_connections: usize,
    /// Most bytes (both directions) one session may move over the network in all.
    pub max_bytes: u64,
    /// A CA bundle (PEM) handed to sandboxes read-only and trusted by their package
    /// managers and by Deno's `fetch`, for networks that intercept TLS. Default: the
    /// host's own trust store ([`SYSTEM_CA_BUNDLE`]) when it exists, so sandboxes trust
    /// what the host trusts.
    pub ca_bundle: Option<PathBuf>,
}

/// Where Debian (and most distributions) keep the host's trust store as one PEM file.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Default for NetPolicy {
    fn default() -> Self {
        NetPolicy {
            egress: true,
            allowed_hosts: Vec::new(),
            allowed_private: Vec::new(),
            max_connections: 32,
            max_bytes: 1024 * 1024 * 1024,
            ca_bundle: Some(PathBuf::from(SYSTEM_CA_BUNDLE)).filter(|bundle| bundle.is_file()),
        }
    }
}

/// What a backend enforces for one session: the operator's policy applied to the
/// session's request. Built only by [`Policy::limits_for`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLimits {
    /// Memory limit of the sandbox, in MiB (the accepted `memoryLimitMB`).
    pub memory_mb: u64,
    /// Hard CPU quota, in CPUs.
    pub cpus: f64,
    /// Workspace size (quota), in bytes; also the sandbox's largest file.
    pub workspace_bytes: u64,
    /// How long a sandbox may take to stop a command after its timeout
    /// ([`Policy::stop_grace_ms`]): backends' kill phases use this value and no constant
    /// of their own, so they always finish before the manager's backstop fires.
    pub stop_grace: Duration,
    /// Images allowed besides the backend's built-in ones.
    pub allowed_images: Vec<String>,
    /// Host paths grants may name (Deno).
    pub grantable_paths: Vec<PathBuf>,
    /// Network rules.
    pub net: NetPolicy,
}

impl SessionLimits {
    /// `cpus` as Docker's `NanoCpus`.
    pub fn nano_cpus(&self) -> i64 {
        (self.cpus * 1e9).round() as i64
    }
}

impl Policy {
    /// Checks the policy itself (an operator's typo must not become an open door).
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::InvalidInput(format!("policy: {what}")));
        if !(self.cpus.is_finite() && self.cpus >= 0.01) {
            return invalid("cpus must be at least 0.01");
        }
        for (name, minutes) in
            [("max-lifetime-minutes", self.max_lifetime_minutes), ("max-idle-minutes", self.max_idle_minutes)]
        {
            if !(minutes.is_finite() && minutes > 0.0) {
                return invalid(&format!("{name} must be above 0"));
            }
        }
        if self.max_memory_mb < crate::config::MIN_MEMORY_LIMIT_MB {
            return invalid(&format!("max-memory-mb must be at least {}", crate::config::MIN_MEMORY_LIMIT_MB));
        }
        if self.max_command_timeout_ms == 0 || self.workspace_mb == 0 || self.max_sessions_per_tenant == 0 {
            return invalid("max-command-timeout-ms, workspace-mb and max-sessions-per-tenant must be above 0");
        }
        if self.max_command_timeout_ms > crate::config::MAX_COMMAND_TIMEOUT_MS {
            return invalid(&format!(
                "max-command-timeout-ms must be at most {}",
                crate::config::MAX_COMMAND_TIMEOUT_MS
            ));
        }
        if self.stop_grace_ms == 0 {
            return invalid("stop-grace-ms must be above 0");
        }
        for pattern in &self.net.allowed_hosts {
            crate::egress::HostPattern::parse(pattern)
                .map_err(|e| Error::InvalidInput(format!("policy: net.allowed-hosts: {e}")))?;
        }
        for network in &self.net.allowed_private {
            crate::egress::Cidr::parse(network)
                .map_err(|e| Error::InvalidInput(format!("policy: net.allowed-private: {e}")))?;
        }
        Ok(())
    }

    /// The longest per-command timeout.
    pub fn max_command_timeout(&self) -> Duration {
        Duration::from_millis(self.max_command_timeout_ms)
    }

    /// How long a sandbox may take to stop a command after its timeout.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }

    /// Checks `config` against the caps (after [`SessionConfig::validate`] checked its
    /// ranges) and gives what the backend enforces. A request over a cap is
    /// [`Error::InvalidInput`] naming the setting, the cap and its value.
    pub fn limits_for(&self, config: &SessionConfig) -> Result<SessionLimits> {
        config.validate()?;
        let over = |setting: &str, asked: String, cap: String| {
            Err(Error::InvalidInput(format!("{setting} {asked} is over the operator's cap {cap}")))
        };
        if config.memory_limit_mb > self.max_memory_mb {
            return over(
                "memoryLimitMB",
                config.memory_limit_mb.to_string(),
                format!("max-memory-mb = {}", self.max_memory_mb),
            );
        }
        if config.max_lifetime_minutes > self.max_lifetime_minutes {
            return over(
                "maxLifetimeMinutes",
                config.max_lifetime_minutes.to_string(),
                format!("max-lifetime-minutes = {}", self.max_lifetime_minutes),
            );
        }
        if config.idle_timeout_minutes > self.max_idle_minutes {
            return over(
                "idleTimeoutMinutes",
                config.idle_timeout_minutes.to_string(),
                format!("max-idle-minutes = {}", self.max_idle_minutes),
            );
        }
        if config.default_timeout_ms > self.max_command_timeout_ms {
            return over(
                "defaultTimeoutMs",
                config.default_timeout_ms.to_string(),
                format!("max-command-timeout-ms = {}", self.max_command_timeout_ms),
            );
        }
        Ok(SessionLimits {
            memory_mb: config.memory_limit_mb,
            cpus: self.cpus,
            workspace_bytes: self.workspace_mb.saturating_mul(1024 * 1024),
            stop_grace: self.stop_grace(),
            allowed_images: self.allowed_images.clone(),
            grantable_paths: self.grantable_paths.clone(),
            net: self.net.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::language::Language;

    #[test]
    fn caps_name_the_setting_and_the_cap() {
        let policy = Policy::default();
        let mut config = SessionConfig::new(Language::Deno);
        assert_eq!(policy.limits_for(&config).unwrap().memory_mb, 512);
        config.memory_limit_mb = 4096;
        let message = policy.limits_for(&config).unwrap_err().to_string();
        assert!(message.contains("memoryLimitMB") && message.contains("2048"), "{message}");
        let mut config = SessionConfig::new(Language::Deno);
        config.max_lifetime_minutes = 7.0 * 24.0 * 60.0;
        let message = policy.limits_for(&config).unwrap_err().to_string();
        assert!(message.contains("maxLifetimeMinutes") && message.contains("1440"), "{message}");
    }

    #[test]
    fn policy_file_keys_are_kebab_case() {
        let policy: Policy = serde_json::from_value(serde_json::json!({
            "max-memory-mb": 1024, "cpus": 0.5, "net": {"egress": false}
        }))
        .unwrap();
        assert_eq!(policy.max_memory_mb, 1024);
        assert!(!policy.net.egress);
        policy.validate().unwrap();
        assert!(serde_json::from_value::<Policy>(serde_json::json!({"max-memroy-mb": 1})).is_err());
        let mut typo = Policy::default();
        typo.net.allowed_private = vec!["10.0.0.0/99".into()];
        assert!(typo.validate().unwrap_err().to_string().contains("allowed-private"));
        let mut typo = Policy::default();
        typo.net.allowed_hosts = vec!["pypi.org:http".into()];
        assert!(typo.validate().unwrap_err().to_string().contains("allowed-hosts"));
        let typo = Policy { max_command_timeout_ms: u64::MAX, ..Policy::default() };
        assert!(typo.validate().unwrap_err().to_string().contains("max-command-timeout-ms"));
    }
}
