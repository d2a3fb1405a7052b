//! Shared support for CodeBeaker's cross-crate examples, benchmarks and tests.
//!
//! The interesting code lives in the member crates: `codebeaker` (the SDK model and
//! session manager), `codebeaker-docker`, `codebeaker-deno` and `codebeaker-server`.
