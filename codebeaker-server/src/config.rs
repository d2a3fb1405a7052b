//! Configuration: [`ServerConfig`] for the library, and [`Cli`], the binary's flags
//! (each with a `CODEBEAKER_*` environment variable), which turn into it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use codebeaker::{Language, ManagerConfig};
use codebeaker_deno::DenoConfig;
use codebeaker_docker::{DockerConfig, DOCKER_LANGUAGES};

use crate::backends::{BackendChoice, BackendKind, BackendOptions};
use crate::limits::{Limits, DEFAULT_MAX_MESSAGE_BYTES};
use crate::logging::LogFormat;

/// Default listen address, as PROTOCOL.md documents it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

/// Everything a [`crate::Server`] needs besides its backends.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free one (see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// When set, WebSocket upgrades must present it as a bearer token.
    pub token: Option<String>,
    /// Connection, message and request limits.
    pub limits: Limits,
    /// Session limits and timings of the manager.
    pub manager: ManagerConfig,
    /// Per-command timeout for sessions and one-shot runs that do not set their own.
    pub command_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            token: None,
            limits: Limits::default(),
            manager: ManagerConfig::default(),
            command_timeout: Duration::from_millis(codebeaker::config::DEFAULT_COMMAND_TIMEOUT_MS),
        }
    }
}

impl ServerConfig {
    /// The defaults, listening on a free loopback port (for tests and examples).
    pub fn ephemeral() -> Self {
        ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..ServerConfig::default() }
    }
}

/// The `codebeaker-server` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "codebeaker-server",
    version,
    about = "CodeBeaker: code-execution sandboxes for AI agents, over WebSocket JSON-RPC 2.0"
)]
pub struct Cli {
    /// Address to listen on (HTTP /health and WebSocket /ws/jsonrpc).
    #[arg(long, env = "CODEBEAKER_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Require this bearer token on WebSocket upgrades ("Authorization: Bearer TOKEN" or ?token=TOKEN).
    #[arg(long, env = "CODEBEAKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Most sessions open at once.
    #[arg(long, env = "CODEBEAKER_MAX_SESSIONS", default_value_t = 100)]
    pub max_sessions: usize,

    /// Most WebSocket connections open at once.
    #[arg(long, env = "CODEBEAKER_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,

    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "CODEBEAKER_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Most requests in one JSON-RPC batch.
    #[arg(long, env = "CODEBEAKER_MAX_BATCH", default_value_t = Limits::default().max_batch)]
    pub max_batch: usize,

    /// Most requests in flight on one connection.
    #[arg(long, env = "CODEBEAKER_MAX_IN_FLIGHT", default_value_t = Limits::default().max_in_flight)]
    pub max_in_flight: usize,

    /// Most bytes of requests in flight on one connection (at least the max message size).
    #[arg(long, env = "CODEBEAKER_MAX_IN_FLIGHT_BYTES", default_value_t = Limits::default().max_in_flight_bytes)]
    pub max_in_flight_bytes: usize,

    /// Per-command timeout when neither the session nor the request sets one, in ms.
    #[arg(long, env = "CODEBEAKER_COMMAND_TIMEOUT_MS", default_value_t = codebeaker::config::DEFAULT_COMMAND_TIMEOUT_MS)]
    pub command_timeout_ms: u64,

    /// Longest per-command timeout a request may ask for, in ms.
    #[arg(long, env = "CODEBEAKER_MAX_COMMAND_TIMEOUT_MS", default_value_t = 3_600_000)]
    pub max_command_timeout_ms: u64,

    /// Cap of each output stream (stdout, stderr) of one command, in bytes.
    #[arg(long, env = "CODEBEAKER_OUTPUT_LIMIT_BYTES", default_value_t = codebeaker::backend::DEFAULT_OUTPUT_LIMIT)]
    pub output_limit_bytes: usize,

    /// Backends to run, comma-separated (deno, docker). Default: Deno always, Docker when an engine answers.
    #[arg(long, env = "CODEBEAKER_BACKENDS", value_delimiter = ',')]
    pub backends: Vec<BackendKind>,

    /// Started spare containers kept per Docker language (0 disables the warm pool).
    #[arg(long, env = "CODEBEAKER_DOCKER_POOL_SIZE", default_value_t = 1)]
    pub docker_pool_size: usize,

    /// Ready Deno runtimes kept for new Deno sessions.
    #[arg(long, env = "CODEBEAKER_DENO_POOL_SIZE", default_value_t = DenoConfig::default().pool_size)]
    pub deno_pool_size: usize,

    /// Directory holding Deno sessions' workspaces (default: codebeaker-deno in the temp dir).
    #[arg(long, env = "CODEBEAKER_DENO_WORKSPACES")]
    pub deno_workspaces: Option<std::path::PathBuf>,

    /// Label owning this server's containers; leftovers with it are removed at start-up.
    #[arg(long, env = "CODEBEAKER_DOCKER_OWNER", default_value = "codebeaker-server")]
    pub docker_owner: String,

    /// Seconds running requests get to answer at shutdown.
    #[arg(long, env = "CODEBEAKER_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Log format; filter with RUST_LOG (default "info").
    #[arg(long, env = "CODEBEAKER_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

impl Cli {
    /// The server configuration these flags describe.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            token: self.token.clone().filter(|t| !t.is_empty()),
            limits: Limits {
                max_connections: self.max_connections,
                max_message_bytes: self.max_message_bytes,
                max_batch: self.max_batch,
                max_in_flight: self.max_in_flight,
                max_in_flight_bytes: self.max_in_flight_bytes,
                shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
                ..Limits::default()
            },
            manager: ManagerConfig {
                max_sessions: self.max_sessions,
                output_limit: self.output_limit_bytes,
                policy: codebeaker::Policy {
                    max_command_timeout_ms: self.max_command_timeout_ms,
                    ..codebeaker::Policy::default()
                },
                ..ManagerConfig::default()
            },
            command_timeout: Duration::from_millis(self.command_timeout_ms),
        }
    }

    /// The backends these flags select.
    pub fn backend_options(&self) -> BackendOptions {
        let mut docker = DockerConfig::default().with_owner(self.docker_owner.clone());
        docker.pool_size = DOCKER_LANGUAGES.iter().map(|&l: &Language| (l, self.docker_pool_size)).collect();
        BackendOptions {
            choice: if self.backends.is_empty() {
                BackendChoice::Auto
            } else {
                BackendChoice::Only(self.backends.clone())
            },
            docker,
            deno: DenoConfig {
                pool_size: self.deno_pool_size,
                workspace_root: self.deno_workspaces.clone().unwrap_or_else(|| DenoConfig::default().workspace_root),
                ..DenoConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol() {
        let cli = Cli::try_parse_from(["codebeaker-server"]).unwrap();
        let config = cli.server_config();
        assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(config.command_timeout, Duration::from_secs(60));
        assert_eq!(config.token, None);
        assert_eq!(cli.backend_options().choice, BackendChoice::Auto);
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "codebeaker-server",
            "--listen",
            "0.0.0.0:7000",
            "--backends",
            "deno,docker",
            "--max-sessions",
            "3",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.backend_options().choice, BackendChoice::Only(vec![BackendKind::Deno, BackendKind::Docker]));
        assert_eq!(cli.server_config().manager.max_sessions, 3);
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["codebeaker-server", "--backends", "lxc"]).is_err());
    }
}
