//! The languages a session can run, and the names the wire accepts for them.
//!
//! A [`Language`] names a language only; which backend runs it is decided apart from it
//! (the `backend` of `session.create`, else the operator's routing table, see
//! [`crate::manager::Routes`]). The one name that is not a language, `deno`, is still
//! accepted on the wire for old clients: [`Language::parse_with_backend`] reads it as
//! TypeScript on the `deno` backend.

use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A session's language. Backends declare the languages they run
/// ([`crate::Backend::languages`]); routing picks one of them.
///
/// Non-exhaustive: languages are added without a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Language {
    /// Python 3. Wire aliases: `python3`, `py`.
    Python,
    /// JavaScript. Wire aliases: `node`, `nodejs`, `js`.
    JavaScript,
    /// TypeScript. Wire aliases: `ts` (and `deno`, which also picks the `deno` backend).
    TypeScript,
    /// Go. Wire alias: `golang`.
    Go,
    /// C#. Wire aliases: `c#`, `cs`, `dotnet`.
    CSharp,
}

/// The backend the legacy language name `deno` picks.
pub const DENO_BACKEND: &str = "deno";

impl Language {
    /// Every language, in documentation order.
    pub const ALL: [Language; 5] =
        [Language::Python, Language::JavaScript, Language::TypeScript, Language::Go, Language::CSharp];

    /// The canonical wire name (`python`, `javascript`, `typescript`, `go`, `csharp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Go => "go",
            Language::CSharp => "csharp",
        }
    }

    /// Parses a wire name, with the backend it implies: `deno` (the name of a runtime
    /// that earlier versions took for a language) is TypeScript on the `deno` backend;
    /// every other name implies no backend.
    pub fn parse_with_backend(name: &str) -> Result<(Language, Option<&'static str>), Error> {
        if name.eq_ignore_ascii_case(DENO_BACKEND) {
            return Ok((Language::TypeScript, Some(DENO_BACKEND)));
        }
        Ok((name.parse()?, None))
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Language {
    /// The other names the wire accepts for this language (case-insensitively, like the
    /// canonical one).
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Language::Python => &["python3", "py"],
            Language::JavaScript => &["node", "nodejs", "js"],
            Language::Go => &["golang"],
            Language::TypeScript => &["ts", "deno"],
            Language::CSharp => &["c#", "cs", "dotnet"],
        }
    }
}

impl FromStr for Language {
    type Err = Error;

    /// Parses a canonical name or an alias, case-insensitively. `deno` parses as
    /// TypeScript; use [`Language::parse_with_backend`] to keep the backend it names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.to_ascii_lowercase();
        let known = |language: &Language| language.as_str() == name || language.aliases().contains(&name.as_str());
        match Language::ALL.iter().find(|language| known(language)) {
            Some(language) => Ok(*language),
            None => Err(Error::invalid_input(format!(
                "unknown language {s:?}; expected one of python, javascript (node, js), typescript (ts), go, csharp \
                 (deno is accepted too: typescript on the deno backend)"
            ))),
        }
    }
}

/// Replies carry the canonical name; requests may name a language by any of its names,
/// matched case-insensitively (a pattern says exactly that; the names are listed in
/// `examples`).
impl JsonSchema for Language {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Language".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let canonical: Vec<&str> = Language::ALL.iter().map(|language| language.as_str()).collect();
        if generator.contract().is_serialize() {
            return json_schema!({"description": "A language by its canonical name.", "type": "string", "enum": canonical});
        }
        let names: Vec<&str> = Language::ALL
            .iter()
            .flat_map(|language| std::iter::once(language.as_str()).chain(language.aliases().iter().copied()))
            .collect();
        // `[pP][yY]…`: JSON Schema patterns (ECMA-262) have no case-insensitive flag.
        let either_case = |name: &str| -> String {
            name.chars()
                .map(|c| match c.is_ascii_alphabetic() {
                    true => format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()),
                    false => c.to_string(),
                })
                .collect()
        };
        let pattern = format!("^(?:{})$", names.into_iter().map(either_case).collect::<Vec<_>>().join("|"));
        json_schema!({
            "description": format!(
                "A language by its canonical name or an alias, in any case: {}.",
                Language::ALL
                    .iter()
                    .map(|language| format!("{} ({})", language.as_str(), language.aliases().join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "type": "string",
            "pattern": pattern,
            "examples": canonical
        })
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
    use crate::ErrorKind;

    #[test]
    fn aliases_map_to_canonical_names() {
        for (alias, expected) in [
            ("python", "python"),
            ("node", "javascript"),
            ("JS", "javascript"),
            ("typescript", "typescript"),
            ("ts", "typescript"),
            ("deno", "typescript"),
            ("csharp", "csharp"),
            ("c#", "csharp"),
            ("golang", "go"),
        ] {
            let lang: Language = alias.parse().unwrap();
            assert_eq!(lang.as_str(), expected, "alias {alias}");
        }
    }

    #[test]
    fn deno_names_a_backend_too() {
        assert_eq!(Language::parse_with_backend("Deno").unwrap(), (Language::TypeScript, Some("deno")));
        assert_eq!(Language::parse_with_backend("ts").unwrap(), (Language::TypeScript, None));
        assert_eq!(Language::parse_with_backend("node").unwrap(), (Language::JavaScript, None));
    }

    #[test]
    fn unknown_language_names_the_choices() {
        let err = "cobol".parse::<Language>().unwrap_err();
        assert!(
            err.kind() == ErrorKind::InvalidInput
                && err.message().contains("cobol")
                && err.message().contains("typescript")
        );
    }

    #[test]
    fn serde_uses_canonical_names() {
        let lang: Language = serde_json::from_str("\"node\"").unwrap();
        assert_eq!(serde_json::to_string(&lang).unwrap(), "\"javascript\"");
    }
}
