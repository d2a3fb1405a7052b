//! The shared conformance suite of `codebeaker`, run against the Deno backend.

mod common;

use codebeaker::conformance::{Programs, Suite};
use codebeaker::Language;
use codebeaker_deno::DenoIsolation;

fn programs() -> Programs {
    Programs {
        hello: "console.log('hello from codebeaker')".into(),
        fails: "console.log('partial');\nthrow new Error('boom');".into(),
        spins: "while (true) {}".into(),
        counts: "for (let i = 1; i <= 5; i++) console.log(`line ${i}`);".into(),
        define_state: "function answer() { return 42; }".into(),
        use_state: "console.log(answer())".into(),
        rich: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deno_backend_in_processes_passes_the_conformance_suite() {
    let (_root, backend) = common::backend_in(DenoIsolation::Process);
    Suite::new(backend, Language::TypeScript, programs()).run_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deno_backend_in_threads_passes_the_conformance_suite() {
    let (_root, backend) = common::backend_in(DenoIsolation::Thread);
    Suite::new(backend, Language::TypeScript, programs()).run_all().await;
}
