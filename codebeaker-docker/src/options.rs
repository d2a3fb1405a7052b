//! The Docker backend's own settings: [`DockerOptions`], what a session may ask for
//! (`backendOptions.docker`, or the earlier top-level `dockerImage`), and
//! [`DockerPolicy`], what the operator allows (`[backends.docker]` of the policy). The
//! backend parses and checks both; core carries them without knowing their shape.

use codebeaker::{Error, Result, SessionConfig, SessionLimits};
use serde::{Deserialize, Serialize};

/// What a Docker session asks for (`backendOptions.docker`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerOptions {
    /// An image instead of the language's built-in one: a built-in image, or one the
    /// operator's [`DockerPolicy::allowed_images`] lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl DockerOptions {
    /// The options `config` gives this backend (the defaults when it gives none).
    pub fn of(config: &SessionConfig) -> Result<DockerOptions> {
        let options: DockerOptions = config.options_for(crate::container::BACKEND)?;
        if options.image.as_deref().is_some_and(|image| image.trim().is_empty()) {
            return Err(Error::invalid_input("backendOptions.docker.image (dockerImage) must not be empty"));
        }
        Ok(options)
    }

    /// `config` with these options (for SDK users: `SessionConfig::new(...)` then this).
    pub fn apply(self, config: SessionConfig) -> Result<SessionConfig> {
        let backend = crate::container::BACKEND;
        config.with_backend(backend).with_options(backend, self)
    }
}

/// What the operator allows Docker sessions (`[backends.docker]` of the policy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DockerPolicy {
    /// Images a session may name besides the backend's built-in ones.
    pub allowed_images: Vec<String>,
}

impl DockerPolicy {
    /// The policy a session's `limits` carry for this backend.
    pub fn of(limits: &SessionLimits) -> Result<DockerPolicy> {
        limits.backend_policy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codebeaker::{Language, Policy};
    use serde_json::json;

    #[test]
    fn earlier_docker_image_field_reaches_the_options() {
        let config: SessionConfig =
            serde_json::from_value(json!({"language": "python", "dockerImage": "python:3"})).unwrap();
        assert_eq!(DockerOptions::of(&config).unwrap().image.as_deref(), Some("python:3"));
        let empty = DockerOptions { image: Some(" ".into()) }.apply(SessionConfig::new(Language::Python)).unwrap();
        assert!(DockerOptions::of(&empty).unwrap_err().to_string().contains("must not be empty"));
    }

    #[test]
    fn the_operator_table_is_parsed_strictly() {
        let policy: Policy = serde_json::from_value(json!({
            "backends": {"docker": {"allowed-images": ["python:3"]}}
        }))
        .unwrap();
        let parsed: DockerPolicy = policy.validate_backend("docker").unwrap();
        assert_eq!(parsed.allowed_images, ["python:3"]);
        let typo: Policy = serde_json::from_value(json!({"backends": {"docker": {"allowed-image": []}}})).unwrap();
        let message = typo.validate_backend::<DockerPolicy>("docker").unwrap_err().to_string();
        assert!(message.contains("backends.docker") && message.contains("allowed-image"), "{message}");
    }
}
