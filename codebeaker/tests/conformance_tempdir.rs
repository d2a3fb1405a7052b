//! The conformance suite against the temp-dir test backend: this checks the suite and
//! the manager end to end. Real backends run the same suite in their own crates.

use codebeaker::conformance::{Programs, Suite};
use codebeaker::testing::TempDirBackend;
use codebeaker::Language;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempdir_backend_passes_the_conformance_suite() {
    let programs = Programs::tempdir_script();
    let backend = TempDirBackend::new(&[Language::Python]);
    Suite::new(backend.clone(), Language::Python, programs).run_all().await;
    assert_eq!(backend.closes(), backend.created(), "every sandbox the suite created was closed exactly once");
}
