//! Session settings as `session.create` takes them, with the documented defaults.

use std::time::Duration;

use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
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
/// Default wall-clock limit of one command: the default of the operator's
/// [`Policy::default_command_timeout_ms`](crate::Policy::default_command_timeout_ms).
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
/// defaults for everything but `language`; unknown fields are refused).
///
/// Backend-specific settings travel opaquely in [`SessionConfig::backend_options`], one
/// JSON object per backend name (`backendOptions: {"docker": {"image": ...}}`); the
/// backend that serves the session parses and validates its own entry. The fields of
/// earlier versions are still accepted and mapped there: `dockerImage` is
/// `backendOptions.docker.image`, `permissions` is `backendOptions.deno.permissions`,
/// and the language `deno` is `typescript` with `backend: "deno"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "wire::SessionRequest", into = "wire::SessionRequest")]
pub struct SessionConfig {
    /// The session's language.
    pub language: Language,
    /// The backend that must serve the session (a registered backend's name); `None`:
    /// the operator's routing table decides.
    pub backend: Option<String>,
    /// Close after this many minutes without a command.
    pub idle_timeout_minutes: f64,
    /// Close this many minutes after creation, busy or not.
    pub max_lifetime_minutes: f64,
    /// Memory limit of the sandbox, in MiB.
    pub memory_limit_mb: u64,
    /// Relative CPU weight (Docker).
    pub cpu_shares: u64,
    /// Backend-specific options, by backend name; only the serving backend's entry is
    /// allowed, and that backend validates it (see [`SessionConfig::options_for`]).
    pub backend_options: BTreeMap<String, serde_json::Value>,
    /// Wall-clock limit of each command unless the request gives its own (extension).
    /// `None`: the operator's [`Policy::default_command_timeout_ms`](crate::Policy::default_command_timeout_ms),
    /// filled in when the session is created (its [`SessionInfo`](crate::SessionInfo)
    /// shows the value in force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_timeout_ms: Option<u64>,
    /// Start with the files (and installed packages) of this snapshot (extension
    /// `fromSnapshot`, a `snapshotId` of `session.snapshot`).
    pub from_snapshot: Option<String>,
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

impl SessionConfig {
    /// A configuration for `language` with every other setting at its default.
    pub fn new(language: Language) -> Self {
        SessionConfig {
            language,
            backend: None,
            idle_timeout_minutes: DEFAULT_IDLE_TIMEOUT_MINUTES,
            max_lifetime_minutes: DEFAULT_MAX_LIFETIME_MINUTES,
            memory_limit_mb: DEFAULT_MEMORY_LIMIT_MB,
            cpu_shares: DEFAULT_CPU_SHARES,
            backend_options: BTreeMap::new(),
            default_timeout_ms: None,
            from_snapshot: None,
        }
    }

    /// Checks every setting's range, naming the first one out of it.
    pub fn validate(&self) -> Result<()> {
        for (name, minutes) in
            [("idleTimeoutMinutes", self.idle_timeout_minutes), ("maxLifetimeMinutes", self.max_lifetime_minutes)]
        {
            if !(minutes.is_finite() && minutes > 0.0 && minutes <= MAX_MINUTES) {
                return Err(Error::invalid_input(format!(
                    "{name} must be a number of minutes above 0 and at most {MAX_MINUTES}, got {minutes}"
                )));
            }
        }
        if self.memory_limit_mb < MIN_MEMORY_LIMIT_MB {
            return Err(Error::invalid_input(format!(
                "memoryLimitMB must be at least {MIN_MEMORY_LIMIT_MB}, got {}",
                self.memory_limit_mb
            )));
        }
        if !CPU_SHARES_RANGE.contains(&self.cpu_shares) {
            return Err(Error::invalid_input(format!(
                "cpuShares must be between {} and {}, got {}",
                CPU_SHARES_RANGE.start(),
                CPU_SHARES_RANGE.end(),
                self.cpu_shares
            )));
        }
        if self.backend.as_deref().is_some_and(|name| name.trim().is_empty()) {
            return Err(Error::invalid_input("backend must not be empty"));
        }
        for (name, options) in &self.backend_options {
            if !options.is_object() {
                return Err(Error::invalid_input(format!("backendOptions.{name} must be an object")));
            }
        }
        Ok(())
    }

    /// The session with `backend` required (see [`SessionConfig::backend`]).
    pub fn with_backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }

    /// Sets `backend`'s options (any value serializing to a JSON object, e.g. a backend
    /// crate's own options type).
    pub fn with_options(mut self, backend: &str, options: impl Serialize) -> Result<Self> {
        let value = serde_json::to_value(options)
            .map_err(|e| Error::invalid_input(format!("backendOptions.{backend}: {e}")))?;
        self.backend_options.insert(backend.to_owned(), value);
        Ok(self)
    }

    /// `backend`'s options parsed as `T` (its default when the session gave none). For a
    /// backend's own use: a value that does not fit is [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming
    /// `backendOptions.<backend>` and what is wrong.
    pub fn options_for<T: DeserializeOwned + Default>(&self, backend: &str) -> Result<T> {
        match self.backend_options.get(backend) {
            None => Ok(T::default()),
            Some(value) => {
                T::deserialize(value).map_err(|e| Error::invalid_input(format!("backendOptions.{backend}: {e}")))
            }
        }
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        minutes(self.idle_timeout_minutes)
    }

    /// The maximum lifetime as a duration.
    pub fn max_lifetime(&self) -> Duration {
        minutes(self.max_lifetime_minutes)
    }

    /// The session's own per-command timeout as a duration, when it set one.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout_ms.map(Duration::from_millis)
    }
}

impl From<Language> for SessionConfig {
    /// [`SessionConfig::new`].
    fn from(language: Language) -> Self {
        SessionConfig::new(language)
    }
}

/// Writes a number of minutes `30.0` as `30`, as the guide shows settings, and `0.5` as
/// `0.5` (every reply showing minute settings serializes them with this).
pub fn serialize_minutes<S: serde::Serializer>(value: &f64, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && (0.0..=MAX_MINUTES).contains(value) {
        serializer.serialize_u64(*value as u64)
    } else {
        serializer.serialize_f64(*value)
    }
}

fn minutes(value: f64) -> Duration {
    Duration::try_from_secs_f64(value * 60.0).unwrap_or(Duration::MAX)
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

/// Both ways: `true`, `false`, or an array of names (`[]` is read as `false`).
impl JsonSchema for Allowlist {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Allowlist".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`true` allows everything, `false` nothing, an array of strings only the names listed.",
            "anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}]
        })
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

/// The wire shape of [`SessionConfig`], with the fields of earlier versions.
mod wire {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    use super::*;

    /// `session.create`'s params.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(super) struct SessionRequest {
        /// The session's language (`deno` also names the `deno` backend).
        #[schemars(with = "Language")]
        language: String,
        /// The backend that must serve the session (a registered backend's name); absent:
        /// the operator's routing table decides.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
        /// Close after this many minutes without a command.
        #[serde(default = "default_idle", serialize_with = "serialize_minutes")]
        idle_timeout_minutes: f64,
        /// Close this many minutes after creation, busy or not.
        #[serde(default = "default_lifetime", serialize_with = "serialize_minutes")]
        max_lifetime_minutes: f64,
        /// Memory limit of the sandbox, in MiB.
        #[serde(rename = "memoryLimitMB", default = "default_memory")]
        memory_limit_mb: u64,
        /// Relative CPU weight (Docker).
        #[serde(default = "default_cpu_shares")]
        cpu_shares: u64,
        /// Options of the serving backend, one object per backend name (e.g.
        /// `{"docker": {"image": "…"}}`, `{"deno": {"permissions": {…}}}`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        backend_options: BTreeMap<String, Value>,
        /// Wall-clock limit of each command unless the request gives its own (extension).
        /// `None`: the operator's default command timeout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_timeout_ms: Option<u64>,
        /// Start with the files (and installed packages) of this snapshot (extension; a
        /// `snapshotId` of `session.snapshot`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_snapshot: Option<String>,
        /// Earlier versions' `backendOptions.docker.image`.
        #[serde(default, skip_serializing)]
        docker_image: Option<Value>,
        /// Earlier versions' `backendOptions.deno.permissions`.
        #[serde(default, skip_serializing)]
        permissions: Option<Value>,
    }

    /// Puts an earlier version's field at `backendOptions.<backend>.<key>`.
    fn legacy(
        options: &mut BTreeMap<String, Value>,
        (field, backend, key): (&str, &str, &str),
        value: Option<Value>,
    ) -> Result<()> {
        let Some(value) = value else { return Ok(()) };
        let entry = options.entry(backend.to_owned()).or_insert_with(|| Value::Object(Default::default()));
        let Some(object) = entry.as_object_mut() else {
            return Err(Error::invalid_input(format!("backendOptions.{backend} must be an object")));
        };
        if object.contains_key(key) {
            return Err(Error::invalid_input(format!(
                "{field} and backendOptions.{backend}.{key} are the same setting; give one of them"
            )));
        }
        object.insert(key.to_owned(), value);
        Ok(())
    }

    impl TryFrom<SessionRequest> for SessionConfig {
        type Error = Error;

        fn try_from(wire: SessionRequest) -> Result<Self> {
            let (language, implied) = Language::parse_with_backend(&wire.language)?;
            let backend = match (wire.backend, implied) {
                (Some(given), Some(implied)) if given != implied => {
                    return Err(Error::invalid_input(format!(
                        "language {:?} means typescript on the {implied} backend, but backend {given:?} was given; \
                         send language \"typescript\" with the backend you want",
                        wire.language
                    )))
                }
                (given, implied) => given.or(implied.map(str::to_owned)),
            };
            let mut backend_options = wire.backend_options;
            legacy(&mut backend_options, ("dockerImage", "docker", "image"), wire.docker_image)?;
            legacy(&mut backend_options, ("permissions", "deno", "permissions"), wire.permissions)?;
            Ok(SessionConfig {
                language,
                backend,
                idle_timeout_minutes: wire.idle_timeout_minutes,
                max_lifetime_minutes: wire.max_lifetime_minutes,
                memory_limit_mb: wire.memory_limit_mb,
                cpu_shares: wire.cpu_shares,
                backend_options,
                default_timeout_ms: wire.default_timeout_ms,
                from_snapshot: wire.from_snapshot,
            })
        }
    }

    impl From<SessionConfig> for SessionRequest {
        fn from(config: SessionConfig) -> Self {
            SessionRequest {
                language: config.language.as_str().to_owned(),
                backend: config.backend,
                idle_timeout_minutes: config.idle_timeout_minutes,
                max_lifetime_minutes: config.max_lifetime_minutes,
                memory_limit_mb: config.memory_limit_mb,
                cpu_shares: config.cpu_shares,
                backend_options: config.backend_options,
                default_timeout_ms: config.default_timeout_ms,
                from_snapshot: config.from_snapshot,
                docker_image: None,
                permissions: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    #[test]
    fn defaults_match_the_protocol() {
        let config: SessionConfig = serde_json::from_value(json!({"language": "python"})).unwrap();
        assert_eq!(config, SessionConfig::new(Language::Python));
        assert_eq!(config.idle_timeout(), Duration::from_secs(30 * 60));
        assert_eq!(config.max_lifetime(), Duration::from_secs(120 * 60));
        assert_eq!(config.memory_limit_mb, 512);
        assert_eq!(config.cpu_shares, 1024);
        assert_eq!(config.default_timeout(), None, "the operator's default applies");
        assert_eq!(config.backend, None);
        config.validate().unwrap();
    }

    #[test]
    fn earlier_fields_map_to_backend_options() {
        let config: SessionConfig = serde_json::from_value(json!({
            "language": "deno",
            "permissions": {"allowRead": ["/workspace"], "allowNet": false}
        }))
        .unwrap();
        assert_eq!((config.language, config.backend.as_deref()), (Language::TypeScript, Some("deno")));
        assert_eq!(
            config.backend_options["deno"],
            json!({"permissions": {"allowRead": ["/workspace"], "allowNet": false}})
        );
        let config: SessionConfig =
            serde_json::from_value(json!({"language": "python", "dockerImage": "python:3"})).unwrap();
        assert_eq!(config.backend_options["docker"], json!({"image": "python:3"}));
        assert_eq!(config.backend, None);
        // Written back in today's shape.
        let written = serde_json::to_value(&config).unwrap();
        assert_eq!(written["backendOptions"], json!({"docker": {"image": "python:3"}}));
        assert!(written.get("dockerImage").is_none());
        assert_eq!(serde_json::from_value::<SessionConfig>(written).unwrap(), config);
    }

    #[test]
    fn a_setting_given_twice_or_a_contradiction_is_refused() {
        let twice = serde_json::from_value::<SessionConfig>(json!({
            "language": "python", "dockerImage": "a", "backendOptions": {"docker": {"image": "b"}}
        }))
        .unwrap_err()
        .to_string();
        assert!(twice.contains("dockerImage") && twice.contains("backendOptions.docker.image"), "{twice}");
        let contradiction = serde_json::from_value::<SessionConfig>(json!({"language": "deno", "backend": "docker"}))
            .unwrap_err()
            .to_string();
        assert!(contradiction.contains("typescript") && contradiction.contains("docker"), "{contradiction}");
    }

    #[test]
    fn backend_options_are_parsed_by_their_backend() {
        #[derive(Debug, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Options {
            image: Option<String>,
        }
        let config = SessionConfig::new(Language::Python).with_options("docker", json!({"image": "x"})).unwrap();
        assert_eq!(config.options_for::<Options>("docker").unwrap().image.as_deref(), Some("x"));
        assert_eq!(config.options_for::<Options>("other").unwrap(), Options::default());
        let typo = SessionConfig::new(Language::Python).with_options("docker", json!({"imag": "x"})).unwrap();
        let message = typo.options_for::<Options>("docker").unwrap_err().to_string();
        assert!(message.contains("backendOptions.docker") && message.contains("imag"), "{message}");
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let mut config = SessionConfig::new(Language::Python);
        config.memory_limit_mb = 1;
        assert!(config
            .validate()
            .as_ref()
            .err()
            .is_some_and(|e| e.kind() == ErrorKind::InvalidInput && e.message().contains("memoryLimitMB")));
        let mut config = SessionConfig::new(Language::Python);
        config.idle_timeout_minutes = -1.0;
        assert!(config
            .validate()
            .as_ref()
            .err()
            .is_some_and(|e| e.kind() == ErrorKind::InvalidInput && e.message().contains("idleTimeoutMinutes")));
        let mut config = SessionConfig::new(Language::Python);
        config.backend_options.insert("docker".into(), json!("python:3"));
        assert!(
            matches!(config.validate(), Err(ref e) if e.kind() == crate::ErrorKind::InvalidInput && e.message().contains("backendOptions.docker"))
        );
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_refused() {
        assert!(
            serde_json::from_value::<SessionConfig>(json!({"language": "python", "memoryLimitMB": "lots"})).is_err()
        );
        assert!(serde_json::from_value::<SessionConfig>(json!({"language": "python", "memoryLimit": 5})).is_err());
        assert!(serde_json::from_value::<SessionConfig>(json!({})).is_err());
        assert!(serde_json::from_value::<Allowlist>(json!("yes")).is_err());
    }
}
