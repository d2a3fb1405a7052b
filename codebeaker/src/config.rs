//! Session settings as `session.create` takes them, with the documented defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::language::Language;

/// Default idle timeout: 30 minutes without a command.
pub const DEFAULT_IDLE_TIMEOUT_MINUTES: f64 = 30.0;
/// Default maximum lifetime: 120 minutes after creation.
pub const DEFAULT_MAX_LIFETIME_MINUTES: f64 = 120.0;
/// Default memory limit of a sandbox.
pub const DEFAULT_MEMORY_LIMIT_MB: u64 = 512;
/// Default relative CPU weight (Docker's own default).
pub const DEFAULT_CPU_SHARES: u64 = 1024;
/// Default wall-clock limit of one command.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 60_000;
/// Hard upper bound of any command's wall-clock limit (one day), whatever the operator
/// allows; the operator's `max-command-timeout-ms` may only lower it.
pub const MAX_COMMAND_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// Smallest memory limit a sandbox can usefully run with.
pub(crate) const MIN_MEMORY_LIMIT_MB: u64 = 16;
/// Docker's accepted range for CPU shares.
const CPU_SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;
/// Upper bound of the minute settings (one week): long enough for any agent, and it
/// keeps `Duration` arithmetic far from overflow.
const MAX_MINUTES: f64 = 7.0 * 24.0 * 60.0;

/// How a session is set up. Deserializes from `session.create` params (camelCase, with
/// defaults for everything but `language`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionConfig {
    /// The session's language; picks the backend.
    pub language: Language,
    /// Close after this many minutes without a command.
    #[serde(default = "default_idle", serialize_with = "whole_or_fraction")]
    pub idle_timeout_minutes: f64,
    /// Close this many minutes after creation, busy or not.
    #[serde(default = "default_lifetime", serialize_with = "whole_or_fraction")]
    pub max_lifetime_minutes: f64,
    /// Memory limit of the sandbox, in MiB.
    #[serde(rename = "memoryLimitMB", default = "default_memory")]
    pub memory_limit_mb: u64,
    /// Relative CPU weight (Docker).
    #[serde(default = "default_cpu_shares")]
    pub cpu_shares: u64,
    /// A custom image instead of the language's default (Docker languages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// What Deno code may touch beyond its workspace (Deno only).
    #[serde(default)]
    pub permissions: DenoPermissions,
    /// Wall-clock limit of each command unless the request gives its own (extension).
    #[serde(default = "default_timeout_ms")]
    pub default_timeout_ms: u64,
}

fn default_idle() -> f64 {
    DEFAULT_IDLE_TIMEOUT_MINUTES
}
fn default_lifetime() -> f64 {
    DEFAULT_MAX_LIFETIME_MINUTES
}
fn default_memory() -> u64 {
    DEFAULT_MEMORY_LIMIT_MB
}
fn default_cpu_shares() -> u64 {
    DEFAULT_CPU_SHARES
}
fn default_timeout_ms() -> u64 {
    DEFAULT_COMMAND_TIMEOUT_MS
}

impl SessionConfig {
    /// A configuration for `language` with every other setting at its default.
    pub fn new(language: Language) -> Self {
        SessionConfig {
            language,
            idle_timeout_minutes: DEFAULT_IDLE_TIMEOUT_MINUTES,
            max_lifetime_minutes: DEFAULT_MAX_LIFETIME_MINUTES,
            memory_limit_mb: DEFAULT_MEMORY_LIMIT_MB,
            cpu_shares: DEFAULT_CPU_SHARES,
            docker_image: None,
            permissions: DenoPermissions::default(),
            default_timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
        }
    }

    /// Checks every setting's range, naming the first one out of it.
    pub fn validate(&self) -> Result<()> {
        for (name, minutes) in
            [("idleTimeoutMinutes", self.idle_timeout_minutes), ("maxLifetimeMinutes", self.max_lifetime_minutes)]
        {
            if !(minutes.is_finite() && minutes > 0.0 && minutes <= MAX_MINUTES) {
                return Err(Error::InvalidInput(format!(
                    "{name} must be a number of minutes above 0 and at most {MAX_MINUTES}, got {minutes}"
                )));
            }
        }
        if self.memory_limit_mb < MIN_MEMORY_LIMIT_MB {
            return Err(Error::InvalidInput(format!(
                "memoryLimitMB must be at least {MIN_MEMORY_LIMIT_MB}, got {}",
                self.memory_limit_mb
            )));
        }
        if !CPU_SHARES_RANGE.contains(&self.cpu_shares) {
            return Err(Error::InvalidInput(format!(
                "cpuShares must be between {} and {}, got {}",
                CPU_SHARES_RANGE.start(),
                CPU_SHARES_RANGE.end(),
                self.cpu_shares
            )));
        }
        // Above the maximum every command would fail, so the session is refused instead.
        if !(1..=MAX_COMMAND_TIMEOUT_MS).contains(&self.default_timeout_ms) {
            return Err(Error::InvalidInput(format!(
                "defaultTimeoutMs must be between 1 and {MAX_COMMAND_TIMEOUT_MS}, got {}",
                self.default_timeout_ms
            )));
        }
        if self.docker_image.as_deref().is_some_and(|image| image.trim().is_empty()) {
            return Err(Error::InvalidInput("dockerImage must not be empty".into()));
        }
        if self.language == Language::Deno && self.docker_image.is_some() {
            return Err(Error::InvalidInput("dockerImage applies to Docker languages, not deno".into()));
        }
        Ok(())
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        minutes(self.idle_timeout_minutes)
    }

    /// The maximum lifetime as a duration.
    pub fn max_lifetime(&self) -> Duration {
        minutes(self.max_lifetime_minutes)
    }

    /// The default per-command timeout as a duration.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.default_timeout_ms)
    }
}

/// Writes `30.0` as `30`, as the guide shows settings, and `0.5` as `0.5`.
fn whole_or_fraction<S: serde::Serializer>(value: &f64, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && (0.0..=MAX_MINUTES).contains(value) {
        serializer.serialize_u64(*value as u64)
    } else {
        serializer.serialize_f64(*value)
    }
}

fn minutes(value: f64) -> Duration {
    Duration::try_from_secs_f64(value * 60.0).unwrap_or(Duration::MAX)
}

/// Deno-style permissions of a Deno session. The default denies everything but the
/// session's own workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DenoPermissions {
    /// Paths code may read besides its workspace (`/workspace` means the workspace).
    #[serde(default)]
    pub allow_read: Vec<String>,
    /// Paths code may write besides its workspace.
    #[serde(default)]
    pub allow_write: Vec<String>,
    /// Hosts code may reach with `fetch`: `true` for any, a list for some.
    #[serde(default)]
    pub allow_net: Allowlist,
    /// Environment variables code may read and set in its own environment map.
    #[serde(default)]
    pub allow_env: Allowlist,
}

/// A permission given to everything, nothing, or the listed names. On the wire: `true`,
/// `false`, or an array of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Allowlist {
    /// Nothing is allowed (the default; wire `false` or `[]`).
    #[default]
    None,
    /// Everything is allowed (wire `true`).
    All,
    /// Only these names are allowed.
    Only(Vec<String>),
}

impl Allowlist {
    /// Whether `name` is allowed.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Allowlist::None => false,
            Allowlist::All => true,
            Allowlist::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

impl Serialize for Allowlist {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Allowlist::None => serializer.serialize_bool(false),
            Allowlist::All => serializer.serialize_bool(true),
            Allowlist::Only(names) => names.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Allowlist {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Flag(bool),
            Names(Vec<String>),
        }
        let wire = Wire::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected true, false, or an array of strings"))?;
        Ok(match wire {
            Wire::Flag(true) => Allowlist::All,
            Wire::Flag(false) => Allowlist::None,
            Wire::Names(names) if names.is_empty() => Allowlist::None,
            Wire::Names(names) => Allowlist::Only(names),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_the_protocol() {
        let config: SessionConfig = serde_json::from_value(json!({"language": "python"})).unwrap();
        assert_eq!(config, SessionConfig::new(Language::Python));
        assert_eq!(config.idle_timeout(), Duration::from_secs(30 * 60));
        assert_eq!(config.max_lifetime(), Duration::from_secs(120 * 60));
        assert_eq!(config.memory_limit_mb, 512);
        assert_eq!(config.cpu_shares, 1024);
        assert_eq!(config.default_timeout(), Duration::from_secs(60));
        assert_eq!(config.permissions.allow_net, Allowlist::None);
        config.validate().unwrap();
    }

    #[test]
    fn seed_permissions_parse() {
        let config: SessionConfig = serde_json::from_value(json!({
            "language": "deno",
            "permissions": {"allowRead": ["/workspace"], "allowWrite": ["/workspace"], "allowNet": false, "allowEnv": false}
        }))
        .unwrap();
        assert_eq!(config.permissions.allow_read, vec!["/workspace"]);
        assert_eq!(config.permissions.allow_env, Allowlist::None);
        let hosts: DenoPermissions =
            serde_json::from_value(json!({"allowNet": ["api.github.com"], "allowEnv": true})).unwrap();
        assert!(hosts.allow_net.allows("api.github.com"));
        assert!(!hosts.allow_net.allows("example.com"));
        assert!(hosts.allow_env.allows("HOME"));
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let mut config = SessionConfig::new(Language::Python);
        config.memory_limit_mb = 1;
        assert!(matches!(config.validate(), Err(Error::InvalidInput(m)) if m.contains("memoryLimitMB")));
        let mut config = SessionConfig::new(Language::Python);
        config.idle_timeout_minutes = -1.0;
        assert!(matches!(config.validate(), Err(Error::InvalidInput(m)) if m.contains("idleTimeoutMinutes")));
        let mut config = SessionConfig::new(Language::Python);
        config.default_timeout_ms = MAX_COMMAND_TIMEOUT_MS + 1;
        assert!(
            matches!(config.validate(), Err(Error::InvalidInput(m)) if m.contains("defaultTimeoutMs") && m.contains("86400000"))
        );
        config.default_timeout_ms = 0;
        assert!(matches!(config.validate(), Err(Error::InvalidInput(m)) if m.contains("defaultTimeoutMs")));
        let mut config = SessionConfig::new(Language::Deno);
        config.docker_image = Some("python:3".into());
        assert!(matches!(config.validate(), Err(Error::InvalidInput(m)) if m.contains("dockerImage")));
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_refused() {
        assert!(
            serde_json::from_value::<SessionConfig>(json!({"language": "python", "memoryLimitMB": "lots"})).is_err()
        );
        assert!(serde_json::from_value::<SessionConfig>(json!({"language": "python", "memoryLimit": 5})).is_err());
        assert!(serde_json::from_value::<SessionConfig>(json!({})).is_err());
        assert!(serde_json::from_value::<DenoPermissions>(json!({"allowNet": "yes"})).is_err());
    }
}
