//! Docker backend of CodeBeaker: python, javascript (Node), go and csharp sessions, each
//! in its own long-lived, hardened container on a Docker engine.
//!
//! - [`DockerBackend`] implements [`codebeaker::Backend`]: it labels every container with
//!   its [`DockerConfig::owner`], removes leftovers of a crashed earlier run at start-up,
//!   and keeps a [`WarmPool`] of started spares per language that grows with demand
//!   within the operator's bounds. Closing a session has its agent kill every guest
//!   process (the engine freezes the container when the agent does not answer in time):
//!   it runs nothing more when close answers; the container and its volume are removed
//!   in the background.
//! - The container's PID 1 is the in-container agent (`codebeaker-agent`, a
//!   static binary, [`AgentBinary`]), bind-mounted read-only from the host or baked into
//!   the image. The host talks to it over the container's attach stream (stdin/stdout,
//!   no TTY, log driver `none`, attached before the start): no network, works with remote
//!   engines. Every command goes through it: programs (argv, env, working directory,
//!   stdin, streaming, rlimits, `usage`), python and javascript `execute_code` in a
//!   persistent interpreter (state kept across commands, the trailing expression shown,
//!   rich `outputs` such as matplotlib PNGs, `stateReset` after a forced restart), go and
//!   csharp compile-and-run, and every file command (resolved beneath `/workspace` by the
//!   agent). The agent is untrusted: a dead or babbling agent fails its session with a
//!   clear error, never a stuck request.
//! - An engine restart loses nothing: with live restore (`scripts/docker-engine.sh`)
//!   containers keep running; the next command re-attaches to the agent and the session
//!   keeps its files and interpreter state. A session whose container did not survive is
//!   closed with the engine's reason.
//! - Every limit comes from the operator's policy ([`codebeaker::SessionLimits`], given
//!   to `create_sandbox`): memory without swap, a hard CPU quota (`NanoCpus`), the
//!   workspace size and `RLIMIT_FSIZE`, the images a session may name, and the grace a
//!   timed-out command has to stop. The warm pool hands out only spares made for the same
//!   limits.
//! - Containers are hardened by default ([`hardening`]): no network, pids limit, the
//!   agent as PID 1 keeping four capabilities (the only holder of its channel), guest
//!   code as a uid of the sandbox's own with none, `no-new-privileges`, read-only root
//!   with a size-limited tmpfs `/workspace` and `/tmp`.
//! - There is one path: every container runs the agent. Without its build,
//!   [`DockerBackend::connect`] fails naming the missing file and
//!   `scripts/build-agent.sh`.
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
mod attach;
mod backend;
mod code;
mod config;
mod container;
mod egress;
mod error;
mod factory;
pub mod hardening;
mod options;
mod pool;
mod processes;
mod reaper;
mod sandbox;

pub use backend::DockerBackend;
pub use config::{AgentBinary, DockerConfig, AGENT_ENV, AGENT_PATH_IN_CONTAINER, DOCKER_LANGUAGES, SANDBOX_UIDS};
pub use factory::{DockerFactory, CONNECT_TIMEOUT};
pub use options::{DockerOptions, DockerPolicy};
pub use pool::WarmPool;
pub use sandbox::DockerSandbox;
