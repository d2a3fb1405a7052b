//! The shared conformance suite of `codebeaker`, run against the Deno backend.

mod common;

use codebeaker::conformance::{Programs, Suite};
use codebeaker::Language;

#[tokio::test(flavor = "multi_thread")]
async fn deno_backend_passes_the_conformance_suite() {
    let (_root, backend) = common::backend();
    let programs = Programs {
        hello: "console.log('hello from codebeaker')".into(),
        fails: "console.log('partial');\nthrow new Error('boom');".into(),
        spins: "while (true) {}".into(),
        counts: "for (let i = 1; i <= 5; i++) console.log(`line ${i}`);".into(),
        define_state: "function answer() { return 42; }".into(),
        use_state: "console.log(answer())".into(),
        rich: None,
    };
    Suite::new(backend, Language::Deno, programs).run_all().await;
}
