//! [`Routes`]: which backend serves a session. A client may name the backend
//! (`session.create`'s `backend`); otherwise the operator's routing table decides.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::language::Language;

/// The operator's routing table: the backend (by name) that serves each language when
/// a session names none.
///
/// The defaults: `typescript` on `deno`; `python`, `javascript`, `go` and `csharp` on
/// `docker`. A session runs on, in order:
///
/// 1. the backend it names (`backend`), which must be enabled and run its language,
///    else the session is refused with an [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) listing the enabled
///    backends that do;
/// 2. the table's backend for its language, when that backend is enabled (it must run
///    the language: [`Routes::check`] tells the operator at start-up);
/// 3. the one enabled backend that runs the language, when there is exactly one (a
///    backend the table does not mention, e.g. a third backend, or a table entry whose
///    backend is not enabled);
///
/// and is otherwise refused with [`ErrorKind::BackendUnavailable`](crate::ErrorKind::BackendUnavailable) saying which backends run
/// the language and how to choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    table: BTreeMap<Language, String>,
}

impl Default for Routes {
    fn default() -> Self {
        let table = Language::ALL
            .into_iter()
            .map(|language| {
                let backend = if language == Language::TypeScript { "deno" } else { "docker" };
                (language, backend.to_owned())
            })
            .collect();
        Routes { table }
    }
}

impl Routes {
    /// A table with no entries: every language goes to the one backend that runs it.
    pub fn empty() -> Self {
        Routes { table: BTreeMap::new() }
    }

    /// Routes `language` to `backend` (replacing its entry).
    pub fn set(&mut self, language: Language, backend: impl Into<String>) -> &mut Self {
        self.table.insert(language, backend.into());
        self
    }

    /// The table's backend for `language`, if it has one.
    pub fn get(&self, language: Language) -> Option<&str> {
        self.table.get(&language).map(String::as_str)
    }

    /// Checks the table against the enabled backends: an entry whose backend is enabled
    /// but does not run the language is an operator error (it would never apply).
    pub fn check(&self, backends: &[Arc<dyn Backend>]) -> Result<()> {
        for (language, name) in &self.table {
            if let Some(backend) = backends.iter().find(|b| b.name() == name) {
                if !backend.languages().contains(language) {
                    return Err(Error::invalid_input(format!(
                        "route {language}={name}: backend {name} does not run {language} (it runs {})",
                        names(backend.languages())
                    )));
                }
            }
        }
        Ok(())
    }

    /// The backend that serves a session of `language` that asked for `requested`.
    pub fn pick(
        &self,
        backends: &[Arc<dyn Backend>],
        language: Language,
        requested: Option<&str>,
    ) -> Result<Arc<dyn Backend>> {
        let serving: Vec<&Arc<dyn Backend>> = backends.iter().filter(|b| b.languages().contains(&language)).collect();
        let serving_names = || serving.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ");
        if let Some(name) = requested {
            let Some(backend) = backends.iter().find(|b| b.name() == name) else {
                let enabled: Vec<&str> = backends.iter().map(|b| b.name()).collect();
                return Err(Error::invalid_input(format!(
                    "backend {name:?} is not enabled on this server (enabled: {}); backends that run {language}: {}",
                    enabled.join(", "),
                    or_none(serving_names())
                )));
            };
            if !backend.languages().contains(&language) {
                return Err(Error::invalid_input(format!(
                    "backend {name} does not run {language} (it runs {}); backends that run {language}: {}",
                    names(backend.languages()),
                    or_none(serving_names())
                )));
            }
            return Ok(backend.clone());
        }
        if let Some(routed) = self.get(language) {
            if let Some(backend) = serving.iter().find(|b| b.name() == routed) {
                return Ok((*backend).clone());
            }
        }
        match serving.as_slice() {
            [only] => Ok((*only).clone()),
            [] => {
                let enabled: Vec<&str> = backends.iter().map(|b| b.name()).collect();
                Err(Error::backend_unavailable(
                    self.get(language).unwrap_or(language.as_str()),
                    format!("no enabled backend runs {language} (enabled: {})", or_none(enabled.join(", "))),
                ))
            }
            _ => Err(Error::backend_unavailable(
                self.get(language).unwrap_or(language.as_str()),
                format!(
                    "several backends run {language} ({}) and the routing table picks none of them; \
                     name one in the session's backend or route {language} to one",
                    serving_names()
                ),
            )),
        }
    }
}

fn names(languages: &[Language]) -> String {
    languages.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
}

fn or_none(list: String) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list
    }
}

impl fmt::Display for Routes {
    /// The table as `--route` flags take it: `python=docker,typescript=deno`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self.table.iter().map(|(l, b)| format!("{l}={b}")).collect();
        f.write_str(&entries.join(","))
    }
}

/// One `LANGUAGE=BACKEND` entry, as the server's `--route` flag takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The language routed.
    pub language: Language,
    /// The backend's name.
    pub backend: String,
}

impl FromStr for Route {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (language, backend) = s.split_once('=').ok_or_else(|| {
            Error::invalid_input(format!("route {s:?}: expected LANGUAGE=BACKEND, e.g. javascript=deno"))
        })?;
        let (language, backend) = (language.trim(), backend.trim());
        if backend.is_empty() {
            return Err(Error::invalid_input(format!("route {s:?}: the backend is missing")));
        }
        Ok(Route { language: language.parse()?, backend: backend.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_print() {
        let route: Route = "ts=deno".parse().unwrap();
        assert_eq!((route.language, route.backend.as_str()), (Language::TypeScript, "deno"));
        assert!("python".parse::<Route>().is_err());
        assert!("cobol=docker".parse::<Route>().is_err());
        assert_eq!(Routes::default().get(Language::JavaScript), Some("docker"));
        assert_eq!(Routes::default().get(Language::TypeScript), Some("deno"));
        assert!(Routes::default().to_string().contains("typescript=deno"));
    }
}
