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
//! assert_eq!(command, Command::write_file("hello.py", "print('hi')").unwrap());
//!
//! // Sessions start from documented defaults.
//! let config = SessionConfig::new(Language::Python);
//! assert_eq!(config.memory_limit_mb, 512);
//!
//! // Paths cannot leave the workspace.
//! assert!(WorkspacePath::parse("../etc/passwd").is_err());
//! ```
//!
//! # Errors
//!
//! Every fallible call returns [`Error`]: its [`ErrorKind`] is what code decides on (the
//! server's wire codes derive from it alone), its message is for people and travels
//! verbatim to clients, and the lower error that caused it (I/O, the Docker engine, the
//! in-container agent's link) is kept as its `source`. See [`error`].
//!
//! ```
//! use codebeaker::{Error, ErrorKind};
//!
//! let missing = Error::from_io("/workspace/a.txt", std::io::ErrorKind::NotFound.into());
//! assert_eq!(missing.kind(), ErrorKind::NotFound);
//! assert_eq!(missing.to_string(), "File not found: /workspace/a.txt");
//! assert!(std::error::Error::source(&missing).is_some());
//! ```
//!
//! # Trust and limits
//!
//! - The **operator** writes the [`Policy`] (caps on memory, CPU, lifetimes, command
//!   timeouts, workspace size, network, each backend's own table) and hands it to
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
//! use codebeaker::{Language, ManagerConfig, SessionConfig, SessionManager};
//!
//! let manager = SessionManager::new(vec![backend], ManagerConfig::default());
//! let session = manager.open(SessionConfig::new(Language::TypeScript)).await?;
//! let ran = session.run_code("console.log(6 * 7)").await?;
//! assert_eq!(ran.output(), "42");
//! session.write_file("notes.txt", "hello").await?;
//! assert_eq!(session.read_file("notes.txt").await?.content, "hello");
//! session.close().await?;
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
pub mod process;
pub mod registration;
pub mod result;
pub mod rpc_codes;
pub mod session_id;
pub mod snapshot;
pub mod workspace;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    Archives, Backend, BackendHealth, ExecContext, FileStreams, Forking, OutputChunk, OutputSink, OutputStream,
    Pausing, ProcessControl, Processes, Sandbox, SpawnedProcess,
};
pub use command::{Command, Encoding, WriteMode};
pub use config::{Allowlist, SessionConfig};
pub use egress::{EgressDenied, EgressRules, EgressStream};
pub use error::{Error, ErrorKind, Result};
pub use language::Language;
pub use manager::{
    Download, ExecEvent, ExecOptions, ExecutionStream, ManagerConfig, Process, Route, Routes, Session, SessionInfo,
    SessionManager, SessionState,
};
pub use observer::{CloseReason, SessionObserver};
pub use output::{DecodingSink, OutputCollector, Utf8Decoder};
pub use policy::{Graces, NetPolicy, Policy, SessionLimits};
pub use process::{
    ProcessAttachment, ProcessCommand, ProcessEvent, ProcessExit, ProcessInfo, ProcessOutput, ProcessSignal,
    ProcessSink, ProcessSpec, ProcessState, ProcessStream, PtySize,
};
pub use registration::{BackendFactory, BackendRegistry, Started};
pub use result::{
    Capabilities, CodeResult, CommandOutcome, CommandResult, CopyFileResult, CreateDirectoryResult, DeleteFileResult,
    DirEntry, EntryType, ListDirectoryResult, ReadFileResult, RichOutput, ShellResult, Usage, WriteFileResult,
};
pub use session_id::SessionId;
pub use workspace::{HostWorkspace, IntoWorkspacePath, WorkspacePath, WORKSPACE_ROOT};
