//! Docker backend of CodeBeaker: python, javascript (Node), go and csharp sessions, each
//! in its own long-lived, hardened container on a Docker engine.
//!
//! - [`DockerBackend`] implements [`codebeaker::Backend`]: it labels every container with
//!   its [`DockerConfig::owner`], removes leftovers of a crashed earlier run at start-up,
//!   and keeps a [`WarmPool`] of started spares per language.
//! - Every limit comes from the operator's policy ([`codebeaker::SessionLimits`], given
//!   to `create_sandbox`): memory without swap, a hard CPU quota (`NanoCpus`), the
//!   workspace size and `RLIMIT_FSIZE`, the images a session may name, and the grace a
//!   timed-out command has to stop. The warm pool hands out only spares made for the same
//!   limits.
//! - Containers are hardened by default ([`hardening`]): no network, pids limit, no
//!   capabilities, `no-new-privileges`, non-root users, read-only root with a
//!   size-limited tmpfs `/workspace` and `/tmp`, an init process.
//! - File commands use the archive API with symlink checks, never a shell; every download
//!   is capped while it streams and cancelled with its command; listing runs `find`
//!   (names and sizes, never contents). Programs run with the exec API, with per-stream
//!   output caps, streaming, and timeouts that kill the whole process tree while keeping
//!   the session usable.
//!
//! Images: `codebeaker-<language>:latest`, built offline by `scripts/build-images.sh` or
//! from `images/<language>/Dockerfile`.
//!
//! ```no_run
//! use codebeaker::{Command, ExecOptions, Language, ManagerConfig, SessionConfig, SessionManager};
//! use codebeaker_docker::{DockerBackend, DockerConfig};
//!
//! # async fn demo() -> codebeaker::Result<()> {
//! let backend = DockerBackend::connect(DockerConfig::default()).await?;
//! let manager = SessionManager::new(vec![backend.clone()], ManagerConfig::default());
//! let session = manager.create(SessionConfig::new(Language::Python)).await?;
//! let outcome = manager
//!     .execute(&session.session_id, Command::code("print(6 * 7)"), ExecOptions::default())
//!     .await?;
//! assert_eq!(outcome.to_json()["result"], "42");
//! manager.close(&session.session_id).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod agent_commands;
mod agent_link;
mod archive;
mod attach;
mod backend;
mod code;
mod config;
mod container;
mod error;
mod exec;
mod files;
pub mod hardening;
mod pool;
mod sandbox;

pub use backend::DockerBackend;
pub use config::{AgentBinary, DockerConfig, AGENT_ENV, AGENT_PATH_IN_CONTAINER, DOCKER_LANGUAGES};
pub use pool::WarmPool;
pub use sandbox::DockerSandbox;
