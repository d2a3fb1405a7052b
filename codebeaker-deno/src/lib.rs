//! Deno backend of CodeBeaker: JavaScript and TypeScript sessions on embedded
//! [`deno_core`](https://crates.io/crates/deno_core) runtimes, with no container and no
//! process per command.
//!
//! - One JS runtime per session, alive for the session's life: globals of one
//!   `execute_code` are there in the next. By default ([`DenoIsolation::Process`]) the
//!   runtime lives in a worker process of its own, walled in by the kernel (a uid of the
//!   session's own when the server is root, no capabilities, an empty environment, a
//!   seccomp allowlist, Landlock, rlimits) and killed when it does not stop at its timeout; the session then
//!   goes on in a fresh worker and the result says its state was reset
//!   (`stateReset`). [`DenoIsolation::Thread`] keeps the runtime on a thread of this
//!   process, for trusted code. A warm pool makes `session.create` fast.
//! - Each session has a workspace directory on the host, seen by the code as `/workspace`,
//!   deleted when the session closes. The six file commands act on it with the shared path
//!   rules; `execute_shell` is not supported.
//! - `execute_code` takes TypeScript (types stripped) or JavaScript, top-level `await`,
//!   `import` of workspace files; the result is what `console.*` printed, formatted as
//!   Deno formats values.
//! - A Deno namespace subset (`Deno.readTextFile`, `writeTextFile`, `readFile`, `writeFile`,
//!   `readDir`, `mkdir`, `remove`, `stat`, `cwd`, `Deno.env`) and `fetch`, each checked
//!   against Deno-style permissions (default: the workspace only; no net, no env).
//! - Hard limits: a wall-clock timeout that interrupts running JS, a heap limit from
//!   `memoryLimitMB`, an output cap; only the ops behind the Deno subset are reachable.
//!
//! The engine is deno_core's QuickJS-ng (feature `quickjs`, the default: built from source,
//! no V8 download); feature `v8` selects deno_core's V8 engine instead.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> codebeaker::Result<()> {
//! use codebeaker::{Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
//! use codebeaker_deno::{DenoBackend, DenoConfig};
//!
//! let backend = DenoBackend::new(DenoConfig { pool_size: 1, ..DenoConfig::default() })?;
//! let manager = SessionManager::new(vec![backend], ManagerConfig::default());
//! let session = manager.create(SessionConfig::new(Language::TypeScript)).await?;
//! let code = "const sum = (a: number, b: number): number => a + b;\nconsole.log(`Sum: ${sum(10, 20)}`);";
//! let outcome = manager.execute(&session.session_id, Command::code(code), ExecOptions::default()).await?;
//! assert_eq!(outcome.to_json()["result"], "Sum: 30");
//! manager.close(&session.session_id).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod backend;
mod engine;
mod factory;
mod module_loader;
mod ops;
mod options;
mod permissions;
mod pool;
mod runtime_thread;
mod rusage;
mod sandbox;
mod transpile;
mod watchdog;
mod worker;
mod workspaces;

pub use backend::{DenoBackend, DenoConfig, DenoIsolation};
pub use factory::DenoFactory;
pub use options::{DenoOptions, DenoPermissions, DenoPolicy};
pub use worker::identity::WorkerIds;
pub use worker::{run_worker_if_requested, WORKER_ENV};
