//! The Deno backend's own settings: [`DenoOptions`], what a session may ask for
//! (`backendOptions.deno`, or the earlier top-level `permissions`), and [`DenoPolicy`],
//! what the operator grants (`[backends.deno]` of the policy). The backend parses and
//! checks both; core carries them without knowing their shape.

use std::path::PathBuf;

use codebeaker::{Allowlist, Result, SessionConfig, SessionLimits};
use serde::{Deserialize, Serialize};

/// The backend's name, the key of its options and of its policy table.
pub const BACKEND: &str = "deno";

/// What a Deno session asks for (`backendOptions.deno`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DenoOptions {
    /// What code may touch beyond its workspace.
    #[serde(default)]
    pub permissions: DenoPermissions,
}

impl DenoOptions {
    /// The options `config` gives this backend (the defaults when it gives none).
    pub fn of(config: &SessionConfig) -> Result<DenoOptions> {
        config.options_for(BACKEND)
    }

    /// `config` with these options (for SDK users: `SessionConfig::new(...)` then this).
    pub fn apply(self, config: SessionConfig) -> Result<SessionConfig> {
        config.with_backend(BACKEND).with_options(BACKEND, self)
    }
}

/// What the operator lets Deno sessions be granted (`[backends.deno]` of the policy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DenoPolicy {
    /// Host paths (and everything beneath them) a session may be granted with
    /// `allowRead`/`allowWrite`. Empty (the default): grants may only name paths inside
    /// the session's own workspace.
    pub grantable_paths: Vec<PathBuf>,
}

impl DenoPolicy {
    /// The policy a session's `limits` carry for this backend.
    pub fn of(limits: &SessionLimits) -> Result<DenoPolicy> {
        limits.backend_policy()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use codebeaker::Language;
    use serde_json::json;

    #[test]
    fn earlier_permissions_field_reaches_the_options() {
        let config: SessionConfig = serde_json::from_value(json!({
            "language": "deno",
            "permissions": {"allowRead": ["/workspace"], "allowNet": ["api.github.com"], "allowEnv": true}
        }))
        .unwrap();
        let options = DenoOptions::of(&config).unwrap();
        assert_eq!(options.permissions.allow_read, ["/workspace"]);
        assert!(options.permissions.allow_net.allows("api.github.com"));
        assert!(!options.permissions.allow_net.allows("example.com"));
        assert!(options.permissions.allow_env.allows("HOME"));
        let typo: SessionConfig =
            serde_json::from_value(json!({"language": "ts", "backendOptions": {"deno": {"permisions": {}}}})).unwrap();
        assert!(DenoOptions::of(&typo).unwrap_err().to_string().contains("backendOptions.deno"));
        let built = DenoOptions::default().apply(SessionConfig::new(Language::TypeScript)).unwrap();
        assert_eq!(built.backend.as_deref(), Some("deno"));
    }
}
