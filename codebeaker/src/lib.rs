//! CodeBeaker: code-execution sandboxes for AI agents.
//!
//! This crate is the SDK's model, with no sandbox inside: the wire [`Command`]s and their
//! typed results, [`SessionConfig`], the [`Backend`] and [`Sandbox`] traits that backend
//! crates implement (`codebeaker-docker`, `codebeaker-deno`), the [`SessionManager`] that
//! routes sessions to backends and enforces limits, and the workspace path rules
//! ([`WorkspacePath`]) every backend shares.
//!
//! ```
//! use codebeaker::{Command, SessionConfig, Language, WorkspacePath};
//!
//! // Commands are what agents send, exactly as they travel on the wire.
//! let command: Command = serde_json::from_str(
//!     r#"{"type": "write_file", "path": "hello.py", "content": "print('hi')"}"#,
//! ).unwrap();
//! assert_eq!(command, Command::write_file("hello.py", "print('hi')"));
//!
//! // Sessions start from documented defaults.
//! let config = SessionConfig::new(Language::Python);
//! assert_eq!(config.memory_limit_mb, 512);
//!
//! // Paths cannot leave the workspace.
//! assert!(WorkspacePath::parse("../etc/passwd").is_err());
//! ```
//!
//! # Trust and limits
//!
//! - The **operator** writes the [`Policy`] (caps on memory, CPU, lifetimes, command
//!   timeouts, workspace size, images, grantable host paths, network) and hands it to
//!   the [`SessionManager`] through [`ManagerConfig::policy`]; every session request is
//!   checked against it and turned into the [`SessionLimits`] backends enforce.
//! - **Tenants** are the manager's clients. [`SessionManager::create_as`] and the other
//!   `*_as` methods take the tenant that asks: a tenant sees and acts on its own
//!   sessions only (another tenant's session id answers like an unknown one), and holds
//!   at most `max-sessions-per-tenant` of them. `None` is the operator, who sees all.
//! - **Guest code** is trusted with nothing: where it may connect is decided by the
//!   [`egress`] rules (allowlisted names, public addresses only unless the operator
//!   allows more, caps on connections and bytes), shared by every backend.
//!
//! With a backend, a session runs commands through the manager:
//!
//! ```no_run
//! # async fn demo(backend: std::sync::Arc<dyn codebeaker::Backend>) -> codebeaker::Result<()> {
//! use codebeaker::{Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
//!
//! let manager = SessionManager::new(vec![backend], ManagerConfig::default());
//! let session = manager.create(SessionConfig::new(Language::Deno)).await?;
//! let outcome = manager
//!     .execute(&session.session_id, Command::code("console.log(6 * 7)"), ExecOptions::default())
//!     .await?;
//! assert_eq!(outcome.to_json()["result"], "42");
//! manager.close(&session.session_id).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod command;
pub mod config;
pub mod egress;
pub mod error;
pub mod language;
pub mod manager;
pub mod observer;
pub mod output;
pub mod policy;
pub mod result;
pub mod workspace;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{Backend, BackendHealth, ExecContext, OutputChunk, OutputSink, OutputStream, Sandbox};
pub use command::{Command, Encoding, WriteMode};
pub use config::{Allowlist, DenoPermissions, SessionConfig};
pub use egress::{EgressDenied, EgressRules, EgressStream};
pub use error::{Error, Result};
pub use language::Language;
pub use manager::{ExecEvent, ExecOptions, ExecutionStream, ManagerConfig, SessionInfo, SessionManager, SessionState};
pub use observer::{CloseReason, SessionObserver};
pub use output::{DecodingSink, OutputCollector, Utf8Decoder};
pub use policy::{NetPolicy, Policy, SessionLimits};
pub use result::{Capabilities, CodeResult, CommandOutcome, CommandResult, RichOutput, ShellResult, Usage};
pub use workspace::{HostWorkspace, WorkspacePath, WORKSPACE_ROOT};
