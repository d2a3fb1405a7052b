//! The conformance suite reads capabilities from the session info: a backend that declares
//! what it cannot do fails the matching check. Each test wraps the temp-dir backend
//! (which runs no shell, keeps no state and has no rich outputs) in one that overstates
//! a single capability.

use std::sync::Arc;

use async_trait::async_trait;
use codebeaker::conformance::{Programs, Suite};
use codebeaker::testing::TempDirBackend;
use codebeaker::{Backend, BackendHealth, Capabilities, Language, Result, Sandbox, SessionConfig, SessionLimits};

/// The temp-dir backend with a different declaration.
struct Overstated {
    inner: Arc<TempDirBackend>,
    declared: Capabilities,
}

#[async_trait]
impl Backend for Overstated {
    fn name(&self) -> &'static str {
        "overstated"
    }

    fn languages(&self) -> &[Language] {
        self.inner.languages()
    }

    async fn create_sandbox(&self, config: &SessionConfig, limits: &SessionLimits) -> Result<Box<dyn Sandbox>> {
        self.inner.create_sandbox(config, limits).await
    }

    fn capabilities(&self, _language: Language) -> Capabilities {
        self.declared
    }

    async fn health(&self) -> BackendHealth {
        self.inner.health().await
    }

    async fn live_sandboxes(&self) -> Result<Vec<String>> {
        self.inner.live_sandboxes().await
    }
}

fn suite(declared: Capabilities) -> Suite {
    let programs = Programs::tempdir_script();
    let backend = Overstated { inner: TempDirBackend::new(&[Language::Python]), declared };
    Suite::new(Arc::new(backend), Language::Python, programs)
}

#[tokio::test]
async fn the_declared_capabilities_are_what_the_session_reports() {
    suite(Capabilities::default().with_streaming()).capabilities_reported().await;
}

#[tokio::test]
#[should_panic(expected = "stdin is a property of execute_shell")]
async fn stdin_without_shell_is_an_inconsistent_declaration() {
    suite(Capabilities::default().with_stdin()).capabilities_reported().await;
}

#[tokio::test]
#[should_panic(expected = "expected success")]
async fn a_declared_shell_that_refuses_fails_the_shell_check() {
    suite(Capabilities::default().with_shell()).shell().await;
}

#[tokio::test]
#[should_panic(expected = "usable in a later one")]
async fn declared_persistent_state_that_is_forgotten_fails() {
    suite(Capabilities::default().with_persistent_state()).persistent_state().await;
}

#[tokio::test]
#[should_panic(expected = "Programs::rich must be given")]
async fn declared_rich_outputs_need_a_rich_program() {
    suite(Capabilities::default().with_rich_outputs()).rich_outputs().await;
}
