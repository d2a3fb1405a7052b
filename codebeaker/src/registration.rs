//! Backend registration: a [`BackendFactory`] says how to start one backend from the
//! operator's configuration, and a [`BackendRegistry`] holds the factories a program
//! knows. The server starts its backends from a registry (one registration line per
//! backend crate, each behind a cargo feature), so a new backend needs no change in
//! core or server beyond that line.
//!
//! A backend's own operator settings come from its table in the policy
//! ([`Policy::backends`], `[backends.<name>]` in the policy file), which the factory
//! parses (e.g. with [`Policy::validate_backend`]) and refuses when it does not fit.
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use codebeaker::registration::{BackendFactory, BackendRegistry, Started};
//! use codebeaker::{Backend, Policy, Result};
//!
//! struct Mine;
//!
//! #[async_trait]
//! impl BackendFactory for Mine {
//!     fn name(&self) -> &'static str { "mine" }
//!     fn description(&self) -> &'static str { "my sandboxes" }
//!     async fn start(&self, _policy: &Policy) -> Result<Started> {
//!         # unimplemented!()
//!     }
//! }
//!
//! let mut registry = BackendRegistry::new();
//! registry.register(Mine).unwrap();
//! assert!(registry.register(Mine).is_err(), "a name is registered once");
//! assert_eq!(registry.names(), ["mine"]);
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::policy::Policy;

/// How to start one kind of backend.
#[async_trait]
pub trait BackendFactory: Send + Sync + 'static {
    /// The backend's name: what [`Backend::name`] of the started backend returns, what
    /// sessions name in `backend`, routes name, and the key of its policy table.
    fn name(&self) -> &'static str;

    /// One line saying what the backend runs, for logs and `--help`.
    fn description(&self) -> &'static str;

    /// Whether the backend starts when the operator names none (the default set); one
    /// that cannot start then is left off with its reason instead of stopping the
    /// program.
    fn starts_by_default(&self) -> bool {
        true
    }

    /// Starts the backend under the operator's `policy` (its table is
    /// `policy.backends[name]`). An `Err` says why it cannot start and, when a command
    /// fixes it, names the command.
    async fn start(&self, policy: &Policy) -> Result<Started>;
}

/// A backend a factory started, with why it could (for the start-up log).
pub struct Started {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// What made it available (e.g. "a Docker engine answers").
    pub note: String,
}

impl Started {
    /// A started `backend`, with `note`.
    pub fn new(backend: Arc<dyn Backend>, note: impl Into<String>) -> Self {
        Started { backend, note: note.into() }
    }
}

/// The backend factories a program knows, in registration order.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    factories: Vec<Arc<dyn BackendFactory>>,
}

impl BackendRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        BackendRegistry::default()
    }

    /// Adds a factory. A second factory with a name already registered is
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput): names must say which backend is meant.
    pub fn register(&mut self, factory: impl BackendFactory) -> Result<&mut Self> {
        if self.get(factory.name()).is_some() {
            return Err(Error::invalid_input(format!("backend {} is registered twice", factory.name())));
        }
        self.factories.push(Arc::new(factory));
        Ok(self)
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }

    /// The factory registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn BackendFactory>> {
        self.factories.iter().find(|f| f.name() == name)
    }

    /// Every factory, in registration order.
    pub fn factories(&self) -> &[Arc<dyn BackendFactory>] {
        &self.factories
    }
}

impl fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
