//! The languages a session can run, and the names the wire accepts for them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A session's language. It decides the backend (Docker or Deno) and how
/// `execute_code` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    /// CPython 3 (Docker).
    Python,
    /// Node.js (Docker). Wire aliases: `node`, `js`.
    JavaScript,
    /// Go (Docker).
    Go,
    /// C# (Docker).
    CSharp,
    /// JavaScript and TypeScript on embedded deno_core. Wire aliases: `typescript`, `ts`.
    Deno,
}

impl Language {
    /// Every language, in documentation order.
    pub const ALL: [Language; 5] =
        [Language::Python, Language::JavaScript, Language::Go, Language::CSharp, Language::Deno];

    /// The canonical wire name (`python`, `javascript`, `go`, `csharp`, `deno`).
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::Go => "go",
            Language::CSharp => "csharp",
            Language::Deno => "deno",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Language {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "python" | "python3" | "py" => Ok(Language::Python),
            "javascript" | "node" | "nodejs" | "js" => Ok(Language::JavaScript),
            "go" | "golang" => Ok(Language::Go),
            "csharp" | "c#" | "cs" | "dotnet" => Ok(Language::CSharp),
            "deno" | "typescript" | "ts" => Ok(Language::Deno),
            _ => Err(Error::InvalidInput(format!(
                "unknown language {s:?}; expected one of python, javascript (node, js), go, csharp, deno (typescript, ts)"
            ))),
        }
    }
}

impl Serialize for Language {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_canonical_names() {
        for (alias, expected) in [
            ("python", "python"),
            ("node", "javascript"),
            ("JS", "javascript"),
            ("typescript", "deno"),
            ("ts", "deno"),
            ("csharp", "csharp"),
            ("go", "go"),
        ] {
            let lang: Language = alias.parse().unwrap();
            assert_eq!(lang.as_str(), expected, "alias {alias}");
        }
    }

    #[test]
    fn unknown_language_names_the_choices() {
        let err = "cobol".parse::<Language>().unwrap_err();
        assert!(matches!(&err, Error::InvalidInput(m) if m.contains("cobol") && m.contains("deno")));
    }

    #[test]
    fn serde_uses_canonical_names() {
        let lang: Language = serde_json::from_str("\"node\"").unwrap();
        assert_eq!(serde_json::to_string(&lang).unwrap(), "\"javascript\"");
    }
}
