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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::SessionConfig;
use crate::error::{Error, Result};

/// Default cap of `memoryLimitMB`.
pub const DEFAULT_MAX_MEMORY_MB: u64 = 2048;
/// Default hard CPU quota of one session, in CPUs.
pub const DEFAULT_CPUS: f64 = 1.0;
/// Default size of a session's workspace, in MiB (Docker's tmpfs and Deno's quota).
pub const DEFAULT_WORKSPACE_MB: u64 = 256;

/// Default of [`Policy::output_drain_ms`].
pub const DEFAULT_OUTPUT_DRAIN_MS: u64 = 250;
/// Default of [`Policy::interpreter_drain_ms`].
pub const DEFAULT_INTERPRETER_DRAIN_MS: u64 = 1_000;
/// Default of [`Policy::tunnel_decision_ms`].
pub const DEFAULT_TUNNEL_DECISION_MS: u64 = 30_000;
/// Default of [`Policy::close_kill_ms`].
pub const DEFAULT_CLOSE_KILL_MS: u64 = 2_000;

/// What one tenant may take of a global cap by default: a quarter of it (at least 1), so
/// that no tenant can take every place and at least four can work side by side. The one
/// fraction of every per-tenant default (sessions here; connections and MCP sessions in
/// the server).
pub const TENANT_SHARE_DIVISOR: usize = 4;

/// A tenant's default share of a global cap of `global` places (see
/// [`TENANT_SHARE_DIVISOR`]).
pub fn tenant_share(global: usize) -> usize {
    (global / TENANT_SHARE_DIVISOR).max(1)
}

/// What "no limit" becomes as a deadline (a process without a timeout, a call that
/// waits as long as its request does): 30 years, as tokio's own far future.
pub const NO_DEADLINE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Default [`Policy::max_processes_per_session`].
pub const DEFAULT_MAX_PROCESSES: usize = 16;
/// Largest [`Policy::max_processes_per_session`].
pub const MAX_PROCESSES: usize = 1024;
/// Default [`Policy::process_output_retained_bytes`]: 1 MiB.
pub const DEFAULT_PROCESS_OUTPUT_RETAINED: u64 = 1024 * 1024;
/// Least [`Policy::process_output_retained_bytes`]: 4 KiB.
pub const MIN_PROCESS_OUTPUT_RETAINED: u64 = 4 * 1024;
/// Most [`Policy::process_output_retained_bytes`]: 256 MiB.
pub const MAX_PROCESS_OUTPUT_RETAINED: u64 = 256 * 1024 * 1024;

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
    /// Per-command timeout of sessions that set no `defaultTimeoutMs` and of one-shot
    /// runs without `timeoutMs`, in ms (the server's `--command-timeout-ms`).
    pub default_command_timeout_ms: u64,
    /// Longest per-command timeout a session or request may ask for, in ms.
    pub max_command_timeout_ms: u64,
    /// How long a sandbox may take to stop a command after its timeout before it is taken
    /// for broken, in ms: the manager's backstop waits `timeout + stop_grace`, and every
    /// backend's kill phase (signal, then force) fits in it. The finer timings below are
    /// its parts; no crate (the in-container agent included) keeps a timing constant or
    /// fraction of its own.
    pub stop_grace_ms: u64,
    /// How long code interrupted at its timeout (or by a cancel) may take to stop before
    /// it is killed, in ms: an interpreter that does not take its `KeyboardInterrupt`
    /// within it is killed and restarted (`stateReset`), a Deno worker is replaced, and
    /// a process tree's answer goes out. Must leave `answer-margin-ms` of the stop grace.
    pub interrupt_grace_ms: u64,
    /// How long before the manager's backstop a backend stops waiting for its sandbox's
    /// answer and reports why itself (Docker: the agent client's deadline is
    /// `timeout + stop-grace-ms - answer-margin-ms`), in ms.
    pub answer_margin_ms: u64,
    /// How long output is still read after a program's main process ended, in ms: what it
    /// wrote just before exiting arrives; a background child holding the pipes open
    /// cannot hold the answer longer.
    pub output_drain_ms: u64,
    /// How long an interpreter's output is still awaited after its answer, in ms (the end
    /// markers normally follow at once).
    pub interpreter_drain_ms: u64,
    /// How long closing a session waits for the sandbox to say every guest process is
    /// gone before the container is frozen instead, in ms.
    pub close_wait_ms: u64,
    /// How long the in-container agent keeps killing guest processes at close before it
    /// reports that some outlived it (stuck in the kernel), in ms.
    pub close_kill_ms: u64,
    /// How long the in-container egress proxy waits for a program's request line and for
    /// the host's verdict on it, in ms.
    pub tunnel_decision_ms: u64,
    /// Size of each session's workspace, in MiB: Docker's `/workspace` tmpfs, Deno's
    /// quota, and `RLIMIT_FSIZE` of sandboxed processes.
    pub workspace_mb: u64,
    /// The operator's backend-specific rules, one table per backend name
    /// (`[backends.docker] allowed-images = [...]`, `[backends.deno] grantable-paths =
    /// [...]`). Core carries them opaquely; each backend parses and enforces its own
    /// table (see [`SessionLimits::backend_policy`]) and refuses keys it does not know.
    pub backends: BTreeMap<String, serde_json::Value>,
    /// Most sessions one tenant may hold at once (beside the manager's global cap).
    /// `None` (the default): a [`tenant_share`] of the global cap, so no tenant can take
    /// every place. See [`Policy::sessions_per_tenant`].
    pub max_sessions_per_tenant: Option<usize>,
    /// Most background processes one session keeps, running or ended (`process.start`
    /// beyond it while every one still runs is refused; ended ones make room, oldest
    /// first).
    pub max_processes_per_session: usize,
    /// Bytes of output kept per background process for `process.attach` (at least
    /// this much of the newest output; older output is discarded and counted as
    /// `dropped`).
    pub process_output_retained_bytes: u64,
    /// Whether a command sent to a paused session resumes it (`true`) or fails with an
    /// error saying the session is paused (`false`, the default).
    pub resume_on_command: bool,
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
            default_command_timeout_ms: crate::config::DEFAULT_COMMAND_TIMEOUT_MS,
            max_command_timeout_ms: 60 * 60 * 1000,
            stop_grace_ms: 2_000,
            interrupt_grace_ms: 500,
            answer_margin_ms: 200,
            output_drain_ms: DEFAULT_OUTPUT_DRAIN_MS,
            interpreter_drain_ms: DEFAULT_INTERPRETER_DRAIN_MS,
            close_wait_ms: 300,
            close_kill_ms: DEFAULT_CLOSE_KILL_MS,
            tunnel_decision_ms: DEFAULT_TUNNEL_DECISION_MS,
            workspace_mb: DEFAULT_WORKSPACE_MB,
            backends: BTreeMap::new(),
            max_sessions_per_tenant: None,
            max_processes_per_session: DEFAULT_MAX_PROCESSES,
            process_output_retained_bytes: DEFAULT_PROCESS_OUTPUT_RETAINED,
            resume_on_command: false,
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
    /// The serving backend's name ([`SessionConfig::backend`] once routed).
    pub backend: String,
    /// The operator's table for that backend ([`Policy::backends`]); an empty object
    /// when there is none. Read it with [`SessionLimits::backend_policy`].
    pub backend_table: serde_json::Value,
    /// The parts of the stop grace and the other timings of a sandbox.
    pub graces: Graces,
    /// Network rules.
    pub net: NetPolicy,
}

/// The operator's finer timings ([`Policy::interrupt_grace_ms`] and the fields after it),
/// as durations: what backends and the in-container agent wait, each named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Graces {
    /// [`Policy::interrupt_grace_ms`].
    pub interrupt: Duration,
    /// How long after a command's timeout a backend waits for its sandbox's answer:
    /// the stop grace less [`Policy::answer_margin_ms`].
    pub answer: Duration,
    /// [`Policy::output_drain_ms`].
    pub output_drain: Duration,
    /// [`Policy::interpreter_drain_ms`].
    pub interpreter_drain: Duration,
    /// [`Policy::close_wait_ms`].
    pub close_wait: Duration,
    /// [`Policy::close_kill_ms`].
    pub close_kill: Duration,
    /// [`Policy::tunnel_decision_ms`].
    pub tunnel_decision: Duration,
}

impl SessionLimits {
    /// The serving backend's policy parsed as `T` (its default when the operator gave
    /// none). A table that does not fit is [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming
    /// `backends.<name>`; [`Policy::validate_backend`] finds it at start-up.
    pub fn backend_policy<T: DeserializeOwned + Default>(&self) -> Result<T> {
        parse_table(&self.backend, &self.backend_table)
    }

    /// `cpus` as Docker's `NanoCpus`.
    pub fn nano_cpus(&self) -> i64 {
        (self.cpus * 1e9).round() as i64
    }
}

impl Policy {
    /// Checks the policy itself (an operator's typo must not become an open door).
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::invalid_input(format!("policy: {what}")));
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
        if self.max_command_timeout_ms == 0 || self.workspace_mb == 0 || self.max_sessions_per_tenant == Some(0) {
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
        if self.max_processes_per_session == 0 || self.max_processes_per_session > MAX_PROCESSES {
            return invalid(&format!("max-processes-per-session must be 1 to {MAX_PROCESSES}"));
        }
        if !(MIN_PROCESS_OUTPUT_RETAINED..=MAX_PROCESS_OUTPUT_RETAINED).contains(&self.process_output_retained_bytes) {
            return invalid(&format!(
                "process-output-retained-bytes must be {MIN_PROCESS_OUTPUT_RETAINED} to {MAX_PROCESS_OUTPUT_RETAINED}"
            ));
        }
        if self.interrupt_grace_ms.saturating_add(self.answer_margin_ms) >= self.stop_grace_ms {
            return invalid(&format!(
                "interrupt-grace-ms ({}) + answer-margin-ms ({}) must be below stop-grace-ms ({}): the sandbox's \
                 answer must come before the manager's backstop",
                self.interrupt_grace_ms, self.answer_margin_ms, self.stop_grace_ms
            ));
        }
        for (name, ms) in [
            ("answer-margin-ms", self.answer_margin_ms),
            ("output-drain-ms", self.output_drain_ms),
            ("interpreter-drain-ms", self.interpreter_drain_ms),
            ("close-wait-ms", self.close_wait_ms),
            ("close-kill-ms", self.close_kill_ms),
            ("tunnel-decision-ms", self.tunnel_decision_ms),
        ] {
            if ms == 0 {
                return invalid(&format!("{name} must be above 0"));
            }
        }
        self.command_timeout("default-command-timeout-ms", self.default_command_timeout_ms)
            .map_err(|e| Error::invalid_input(format!("policy: {e}")))?;
        for pattern in &self.net.allowed_hosts {
            crate::egress::HostPattern::parse(pattern)
                .map_err(|e| Error::invalid_input(format!("policy: net.allowed-hosts: {e}")).with_source(e))?;
        }
        for network in &self.net.allowed_private {
            crate::egress::Cidr::parse(network)
                .map_err(|e| Error::invalid_input(format!("policy: net.allowed-private: {e}")).with_source(e))?;
        }
        Ok(())
    }

    /// The operator's table for `backend` parsed as `T`, its default when there is none:
    /// how a backend checks its table at start-up, so a typo stops the server.
    pub fn validate_backend<T: DeserializeOwned + Default>(&self, backend: &str) -> Result<T> {
        match self.backends.get(backend) {
            None => Ok(T::default()),
            Some(table) => parse_table(backend, table),
        }
    }

    /// Most sessions one tenant may hold beside a global cap of `max_sessions`: the
    /// operator's `max-sessions-per-tenant`, else a [`tenant_share`] of `max_sessions`.
    pub fn sessions_per_tenant(&self, max_sessions: usize) -> usize {
        self.max_sessions_per_tenant.unwrap_or_else(|| tenant_share(max_sessions))
    }

    /// The caps of each session's background processes.
    pub(crate) fn process_limits(&self) -> crate::process::ProcessLimits {
        crate::process::ProcessLimits {
            max_processes: self.max_processes_per_session,
            retained_bytes: usize::try_from(self.process_output_retained_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The longest per-command timeout.
    pub fn max_command_timeout(&self) -> Duration {
        Duration::from_millis(self.max_command_timeout_ms)
    }

    /// The per-command timeout when neither the session nor the request sets one.
    pub fn default_command_timeout(&self) -> Duration {
        Duration::from_millis(self.default_command_timeout_ms)
    }

    /// The one check of a per-command timeout, wherever it comes from (a request's
    /// `timeoutMs`, a session's `defaultTimeoutMs`, an SDK call): between 1 ms and
    /// [`Policy::max_command_timeout_ms`], else [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming `field`.
    pub fn command_timeout(&self, field: &str, ms: u64) -> Result<Duration> {
        let max = self.max_command_timeout_ms;
        if ms == 0 || ms > max {
            return Err(Error::invalid_input(format!(
                "{field} must be between 1 and {max} (the operator's max-command-timeout-ms), got {ms}"
            )));
        }
        Ok(Duration::from_millis(ms))
    }

    /// The finer timings as durations.
    pub fn graces(&self) -> Graces {
        Graces {
            interrupt: Duration::from_millis(self.interrupt_grace_ms),
            answer: Duration::from_millis(self.stop_grace_ms.saturating_sub(self.answer_margin_ms)),
            output_drain: Duration::from_millis(self.output_drain_ms),
            interpreter_drain: Duration::from_millis(self.interpreter_drain_ms),
            close_wait: Duration::from_millis(self.close_wait_ms),
            close_kill: Duration::from_millis(self.close_kill_ms),
            tunnel_decision: Duration::from_millis(self.tunnel_decision_ms),
        }
    }

    /// How long a sandbox may take to stop a command after its timeout.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }

    /// Checks `config` against the caps (after [`SessionConfig::validate`] checked its
    /// ranges) and gives what the backend enforces. A request over a cap is
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the setting, the cap and its value.
    pub fn limits_for(&self, config: &SessionConfig) -> Result<SessionLimits> {
        config.validate()?;
        let over = |setting: &str, asked: String, cap: String| {
            Err(Error::invalid_input(format!("{setting} {asked} is over the operator's cap {cap}")))
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
        if let Some(ms) = config.default_timeout_ms {
            self.command_timeout("defaultTimeoutMs", ms)?;
        }
        Ok(SessionLimits {
            memory_mb: config.memory_limit_mb,
            cpus: self.cpus,
            workspace_bytes: self.workspace_mb.saturating_mul(1024 * 1024),
            stop_grace: self.stop_grace(),
            backend: config.backend.clone().unwrap_or_default(),
            backend_table: config
                .backend
                .as_ref()
                .and_then(|name| self.backends.get(name))
                .cloned()
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
            graces: self.graces(),
            net: self.net.clone(),
        })
    }
}

fn parse_table<T: DeserializeOwned + Default>(backend: &str, table: &serde_json::Value) -> Result<T> {
    if table.as_object().is_some_and(|t| t.is_empty()) {
        return Ok(T::default());
    }
    T::deserialize(table).map_err(|e| Error::invalid_input(format!("policy: backends.{backend}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::language::Language;

    #[test]
    fn caps_name_the_setting_and_the_cap() {
        let policy = Policy::default();
        let mut config = SessionConfig::new(Language::TypeScript);
        assert_eq!(policy.limits_for(&config).unwrap().memory_mb, 512);
        config.memory_limit_mb = 4096;
        let message = policy.limits_for(&config).unwrap_err().to_string();
        assert!(message.contains("memoryLimitMB") && message.contains("2048"), "{message}");
        let mut config = SessionConfig::new(Language::TypeScript);
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

    #[test]
    fn the_timings_must_fit_in_the_stop_grace_and_the_default_timeout_under_the_cap() {
        let graces = Policy::default().graces();
        assert_eq!(graces.interrupt, Duration::from_millis(500));
        assert_eq!(graces.answer, Duration::from_millis(1_800), "the stop grace less the answer margin");
        let late = Policy { interrupt_grace_ms: 1_900, ..Policy::default() };
        let message = late.validate().unwrap_err().to_string();
        assert!(message.contains("interrupt-grace-ms") && message.contains("stop-grace-ms"), "{message}");
        let zero = Policy { output_drain_ms: 0, ..Policy::default() };
        assert!(zero.validate().unwrap_err().to_string().contains("output-drain-ms"));
        let over = Policy { default_command_timeout_ms: 7_200_000, ..Policy::default() };
        assert!(over.validate().unwrap_err().to_string().contains("default-command-timeout-ms"));
        let policy: Policy = serde_json::from_value(serde_json::json!({"interrupt-grace-ms": 800})).unwrap();
        assert_eq!(policy.graces().interrupt, Duration::from_millis(800));
    }

    #[test]
    fn a_tenant_gets_a_quarter_of_the_sessions_unless_the_operator_says_otherwise() {
        assert_eq!(Policy::default().sessions_per_tenant(100), 25);
        assert_eq!(Policy::default().sessions_per_tenant(3), 1, "at least one");
        let set: Policy = serde_json::from_value(serde_json::json!({"max-sessions-per-tenant": 70})).unwrap();
        assert_eq!(set.sessions_per_tenant(100), 70);
        let zero = Policy { max_sessions_per_tenant: Some(0), ..Policy::default() };
        assert!(zero.validate().unwrap_err().to_string().contains("max-sessions-per-tenant"));
    }
}
