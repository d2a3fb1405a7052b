//! Configuration: [`ServerConfig`] for the library, and [`Cli`], the binary's flags
//! (each with a `CODEBEAKER_*` environment variable), which turn into it.
//!
//! The operator's [`Policy`] comes from `--policy FILE` (TOML, kebab-case keys, every key
//! optional) with single caps overridden by flags; it is validated before the server
//! starts, so a typo stops the server with a clear error instead of opening a door.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use codebeaker::{ManagerConfig, Policy, Route};
#[cfg(feature = "deno")]
use codebeaker_deno::DenoConfig;
#[cfg(feature = "docker")]
use codebeaker_docker::{DockerConfig, DOCKER_LANGUAGES};

use crate::access::{Access, ApiKeys, ApiKeysError, HostCheck};
use codebeaker::snapshot::SnapshotStore;

use crate::audit::AuditArgs;
use crate::backends::{BackendChoice, BackendOptions};
use crate::cluster::ClusterConfig;
use crate::limits::{Limits, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_OUTBOUND_BYTES};
use crate::logging::LogFormat;
use crate::rate::{Rate, RateArgs};

/// The tenant `--token` stands for when `--api-keys` is given too.
pub const TOKEN_TENANT: &str = "default";

/// Default listen address, as `docs/protocol.md` documents it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

/// Everything a [`crate::Server`] needs besides its backends.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free one (see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// When set, WebSocket upgrades must present it as a bearer token. Alone, it is the
    /// single-tenant shorthand: its holder acts as the operator and sees every session.
    /// Beside tenants' keys it is the key of tenant [`TOKEN_TENANT`].
    pub token: Option<String>,
    /// Tenants' tokens (`--api-keys`): each tenant sees and acts on its own sessions only.
    pub api_keys: ApiKeys,
    /// Origins (`scheme://host[:port]`) whose browser pages may use the acting
    /// endpoints; a request with any other `Origin` is refused with 403. Requests without
    /// `Origin` (non-browser clients) are unaffected.
    pub allowed_origins: Vec<String>,
    /// Connection, message and request limits.
    pub limits: Limits,
    /// Session limits and timings of the manager.
    pub manager: ManagerConfig,
    /// Bearer token `GET /metrics` requires; open (like `/health`) when `None`.
    pub metrics_token: Option<String>,
    /// Requests per second allowed per tenant (per address without auth); off when `None`.
    pub rate_limit: Option<Rate>,
    /// Where to append the audit log; none when `None`.
    pub audit_log: Option<PathBuf>,
    /// Whether audit records carry code and file contents.
    pub audit_payloads: bool,
    /// The cluster this server is a node of (`--cluster-redis`); `None`: a single node.
    pub cluster: Option<ClusterConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            token: None,
            api_keys: ApiKeys::none(),
            allowed_origins: Vec::new(),
            limits: Limits::default(),
            manager: ManagerConfig::default(),
            metrics_token: None,
            rate_limit: None,
            audit_log: None,
            audit_payloads: false,
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// The defaults, listening on a free loopback port (for tests and examples).
    pub fn ephemeral() -> Self {
        ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..ServerConfig::default() }
    }

    /// The origin and token rules this configuration describes.
    pub fn access(&self) -> Access {
        let mut keys = self.api_keys.clone();
        if let Some(token) = &self.token {
            keys = if keys.required() {
                keys.with_tenant(TOKEN_TENANT, token.clone())
            } else {
                ApiKeys::single(token.clone())
            };
        }
        // The WebSocket's own check is the Origin: browsers always send it with an upgrade.
        Access {
            hosts: HostCheck::Any,
            allowed_origins: self.allowed_origins.clone(),
            keys,
            cluster_secret: self.cluster.as_ref().map(|cluster| cluster.secret.clone()),
        }
    }
}

/// A configuration the server refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The policy file cannot be read.
    #[error("cannot read the policy file {path}: {source}")]
    PolicyRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not a valid policy.
    #[error("the policy file {path} is not a valid policy: {source}")]
    PolicyParse {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key and the line).
        #[source]
        source: toml::de::Error,
    },
    /// The policy (file and flags together) is inconsistent.
    #[error("invalid operator policy: {0}")]
    Policy(#[source] codebeaker::Error),
    /// The API keys file cannot be used.
    #[error(transparent)]
    ApiKeys(#[from] ApiKeysError),
    /// Another flag is out of range.
    #[error("invalid flag: {0}")]
    Flag(String),
}

/// Reads a `--policy` TOML file.
///
/// The top-level keys of earlier versions are still read: `allowed-images` as
/// `[backends.docker] allowed-images`, `grantable-paths` as `[backends.deno]
/// grantable-paths` (giving both places is an error).
pub fn load_policy(path: &Path) -> Result<Policy, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::PolicyRead { path: path.to_owned(), source })?;
    let parse_error = |source| ConfigError::PolicyParse { path: path.to_owned(), source };
    let mut table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
    for (key, backend) in LEGACY_POLICY_KEYS {
        let Some(value) = table.remove(key) else { continue };
        let backends = table.entry("backends").or_insert_with(|| toml::Value::Table(Default::default()));
        let section = backends
            .as_table_mut()
            .map(|b| b.entry(backend).or_insert_with(|| toml::Value::Table(Default::default())))
            .and_then(toml::Value::as_table_mut);
        match section {
            Some(section) if !section.contains_key(key) => {
                section.insert(key.to_owned(), value);
            }
            _ => {
                return Err(ConfigError::Policy(codebeaker::Error::invalid_input(format!(
                    "policy: {key} is given both at the top level and in [backends.{backend}]; keep the latter"
                ))))
            }
        }
    }
    table.try_into().map_err(parse_error)
}

/// Top-level policy keys of earlier versions, and the backend table they now belong to.
const LEGACY_POLICY_KEYS: [(&str, &str); 2] = [("allowed-images", "docker"), ("grantable-paths", "deno")];

/// What the binary runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The server: WebSocket JSON-RPC, /health, /metrics and MCP over HTTP at /mcp.
    #[default]
    Serve,
    /// One MCP session over stdin/stdout, for agent hosts that spawn their tools (logs go to stderr).
    Mcp,
}

/// The `codebeaker-server` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "codebeaker-server",
    version,
    about = "CodeBeaker: code-execution sandboxes for AI agents, over WebSocket JSON-RPC 2.0"
)]
pub struct Cli {
    /// What to run: `serve` (the server), or `mcp` (one MCP session over stdin/stdout).
    #[arg(value_enum, default_value = "serve")]
    pub mode: Mode,

    /// Require this bearer token on GET /metrics [default: open, like /health].
    #[arg(long, env = "CODEBEAKER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Request rate limits (`--rate-limit`, `--rate-burst`).
    #[command(flatten)]
    pub rate: RateArgs,

    /// The audit log (`--audit-log`, `--audit-log-payloads`).
    #[command(flatten)]
    pub audit: AuditArgs,

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

    /// Most WebSocket connections one tenant may hold [default: a quarter of --max-connections].
    #[arg(long, env = "CODEBEAKER_MAX_CONNECTIONS_PER_TENANT")]
    pub max_connections_per_tenant: Option<usize>,

    /// Most WebSocket connections one source address may hold [default: half of --max-connections].
    #[arg(long, env = "CODEBEAKER_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,

    /// Most sockets not let in yet (no request past the token check); a new one closes the oldest.
    #[arg(long, env = "CODEBEAKER_MAX_PENDING_CONNECTIONS", default_value_t = Limits::default().max_pending_connections)]
    pub max_pending_connections: usize,

    /// Most sockets not let in yet per source address [default: half of --max-pending-connections].
    #[arg(long, env = "CODEBEAKER_MAX_PENDING_PER_ADDRESS")]
    pub max_pending_per_address: Option<usize>,

    /// Most MCP sessions over HTTP (/mcp) open at once.
    #[arg(long, env = "CODEBEAKER_MAX_MCP_SESSIONS", default_value_t = Limits::default().max_mcp_sessions)]
    pub max_mcp_sessions: usize,

    /// Most MCP sessions one tenant may hold [default: a quarter of --max-mcp-sessions].
    #[arg(long, env = "CODEBEAKER_MAX_MCP_SESSIONS_PER_TENANT")]
    pub max_mcp_sessions_per_tenant: Option<usize>,

    /// Most MCP sessions one source address may hold [default: half of --max-mcp-sessions].
    #[arg(long, env = "CODEBEAKER_MAX_MCP_SESSIONS_PER_ADDRESS")]
    pub max_mcp_sessions_per_address: Option<usize>,

    /// Seconds an MCP session over HTTP may go without a request before it ends (closing its sandbox sessions).
    #[arg(long, env = "CODEBEAKER_MCP_SESSION_IDLE_SECS", default_value_t = Limits::default().mcp_session_idle.as_secs())]
    pub mcp_session_idle_secs: u64,

    /// Where session snapshots are kept (they survive restarts) [default: $XDG_DATA_HOME/codebeaker/snapshots, or ~/.local/share/codebeaker/snapshots].
    #[arg(long, env = "CODEBEAKER_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,

    /// Most bytes of snapshots one tenant may keep, in MiB.
    #[arg(long, env = "CODEBEAKER_SNAPSHOT_QUOTA_MB", default_value_t = codebeaker::snapshot::DEFAULT_SNAPSHOT_QUOTA / (1024 * 1024))]
    pub snapshot_quota_mb: u64,

    /// Export traces over OTLP/HTTP to this collector (base URL; `/v1/traces` is
    /// appended) [default: off, unless OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Most snapshots one tenant may keep (at least 1).
    #[arg(long, env = "CODEBEAKER_SNAPSHOT_MAX_COUNT", default_value_t = codebeaker::snapshot::DEFAULT_MAX_SNAPSHOTS)]
    pub snapshot_max_count: usize,

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

    /// Per-command timeout when neither the session nor the request sets one, in ms [default: 60000, or the policy file's default-command-timeout-ms].
    #[arg(long, env = "CODEBEAKER_COMMAND_TIMEOUT_MS")]
    pub command_timeout_ms: Option<u64>,

    /// Longest per-command timeout a request may ask for, in ms [default: 3600000, or the policy file's].
    #[arg(long, env = "CODEBEAKER_MAX_COMMAND_TIMEOUT_MS")]
    pub max_command_timeout_ms: Option<u64>,

    /// Operator policy file (TOML, kebab-case keys of every cap below; flags override single keys).
    #[arg(long, env = "CODEBEAKER_POLICY")]
    pub policy: Option<PathBuf>,

    /// Largest memoryLimitMB a session may ask for [default: 2048, or the policy file's].
    #[arg(long, env = "CODEBEAKER_MAX_MEMORY_MB")]
    pub max_memory_mb: Option<u64>,

    /// Hard CPU quota of each session, in CPUs [default: 1, or the policy file's].
    #[arg(long, env = "CODEBEAKER_CPUS")]
    pub cpus: Option<f64>,

    /// Longest maxLifetimeMinutes a session may ask for [default: 1440, or the policy file's].
    #[arg(long, env = "CODEBEAKER_MAX_LIFETIME_MINUTES")]
    pub max_lifetime_minutes: Option<f64>,

    /// Longest idleTimeoutMinutes a session may ask for [default: 240, or the policy file's].
    #[arg(long, env = "CODEBEAKER_MAX_IDLE_MINUTES")]
    pub max_idle_minutes: Option<f64>,

    /// Size of each session's workspace, in MiB [default: 256, or the policy file's].
    #[arg(long, env = "CODEBEAKER_WORKSPACE_MB")]
    pub workspace_mb: Option<u64>,

    /// Images a Docker session may name (backendOptions.docker.image) besides the built-in ones, comma-separated ([backends.docker] allowed-images).
    #[arg(long, env = "CODEBEAKER_ALLOWED_IMAGES", value_delimiter = ',')]
    pub allowed_images: Option<Vec<String>>,

    /// Host paths a Deno session may be granted (allowRead/allowWrite), comma-separated ([backends.deno] grantable-paths) [default: none].
    #[arg(long, env = "CODEBEAKER_GRANTABLE_PATHS", value_delimiter = ',')]
    pub grantable_paths: Option<Vec<PathBuf>>,

    /// Most sessions one tenant may hold at once [default: a quarter of --max-sessions, or the policy file's].
    #[arg(long, env = "CODEBEAKER_MAX_SESSIONS_PER_TENANT")]
    pub max_sessions_per_tenant: Option<usize>,

    /// Refuse every network connection from sandboxed code.
    #[arg(long, env = "CODEBEAKER_NO_EGRESS")]
    pub no_egress: bool,

    /// Hosts Docker sessions may reach (host, *.suffix, host:port), comma-separated [default: the language's package registries].
    #[arg(long, env = "CODEBEAKER_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,

    /// Non-public networks sandboxed code may reach anyway (CIDR), comma-separated [default: none].
    #[arg(long, env = "CODEBEAKER_ALLOWED_PRIVATE", value_delimiter = ',')]
    pub allowed_private: Option<Vec<String>>,

    /// Extra CA bundle (PEM) handed to sandboxes, for networks that intercept TLS.
    #[arg(long, env = "CODEBEAKER_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,

    /// Tenants' tokens: a file with one "tenant token" per line (# comments).
    #[arg(long, env = "CODEBEAKER_API_KEYS")]
    pub api_keys: Option<PathBuf>,

    /// Browser origins allowed to use the server (`scheme://host:port`), comma-separated [default: none].
    #[arg(long, env = "CODEBEAKER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Seconds a WebSocket connection may stay idle (no message, no ping, no request running).
    #[arg(long, env = "CODEBEAKER_CONNECTION_IDLE_SECS", default_value_t = 300)]
    pub connection_idle_secs: u64,

    /// Most bytes of responses one connection may have waiting to be written.
    #[arg(long, env = "CODEBEAKER_MAX_OUTBOUND_BYTES", default_value_t = DEFAULT_MAX_OUTBOUND_BYTES)]
    pub max_outbound_bytes: usize,

    /// Cap of each output stream (stdout, stderr) of one command, in bytes.
    #[arg(long, env = "CODEBEAKER_OUTPUT_LIMIT_BYTES", default_value_t = codebeaker::backend::DEFAULT_OUTPUT_LIMIT)]
    pub output_limit_bytes: usize,

    /// Backends to run, comma-separated registered names (docker, deno). Default: each that can start.
    #[arg(long, env = "CODEBEAKER_BACKENDS", value_delimiter = ',')]
    pub backends: Vec<String>,

    /// Which backend serves a language when a session names none, as LANGUAGE=BACKEND, comma-separated or repeated
    /// [default: python, javascript, go, csharp=docker; typescript=deno].
    #[arg(long = "route", env = "CODEBEAKER_ROUTES", value_delimiter = ',', value_parser = parse_route)]
    pub routes: Vec<Route>,

    /// Started spare containers kept per Docker language at least (0 disables the warm pool).
    #[cfg(feature = "docker")]
    #[arg(long, env = "CODEBEAKER_DOCKER_POOL_SIZE", default_value_t = 1)]
    pub docker_pool_size: usize,

    /// Most spare containers per Docker language the warm pool grows to under demand
    /// (it shrinks back to --docker-pool-size after a minute without takes).
    #[cfg(feature = "docker")]
    #[arg(long, env = "CODEBEAKER_DOCKER_POOL_MAX", default_value_t = DockerConfig::default().pool_max)]
    pub docker_pool_max: usize,

    /// Ready Deno runtimes kept for new Deno sessions.
    #[cfg(feature = "deno")]
    #[arg(long, env = "CODEBEAKER_DENO_POOL_SIZE", default_value_t = DenoConfig::default().pool_size)]
    pub deno_pool_size: usize,

    /// Directory holding Deno sessions' workspaces (default: codebeaker-deno in the temp dir).
    #[cfg(feature = "deno")]
    #[arg(long, env = "CODEBEAKER_DENO_WORKSPACES")]
    pub deno_workspaces: Option<std::path::PathBuf>,

    /// Label owning this server's containers; leftovers with it are removed at start-up.
    #[cfg(feature = "docker")]
    #[arg(long, env = "CODEBEAKER_DOCKER_OWNER", default_value = "codebeaker-server")]
    pub docker_owner: String,

    /// Seconds running requests get to answer at shutdown.
    #[arg(long, env = "CODEBEAKER_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Join a cluster of nodes coordinated by this Redis (redis://HOST:PORT); needs --node-url and --cluster-secret-file [default: a single node, no Redis].
    #[arg(long, env = "CODEBEAKER_CLUSTER_REDIS", requires_all = ["node_url", "cluster_secret_file"])]
    pub cluster_redis: Option<String>,

    /// The URL the other nodes of the cluster reach this node at (ws://HOST:PORT): its name in the cluster.
    #[arg(long, env = "CODEBEAKER_NODE_URL", requires = "cluster_redis")]
    pub node_url: Option<String>,

    /// A file holding the cluster's shared secret (16 characters or more), which node-to-node links present.
    #[arg(long, env = "CODEBEAKER_CLUSTER_SECRET_FILE", requires = "cluster_redis")]
    pub cluster_secret_file: Option<PathBuf>,

    /// How many live nodes serving the language each new session's placement samples; the lighter wins.
    #[arg(long, env = "CODEBEAKER_CLUSTER_SAMPLE", default_value_t = crate::cluster::DEFAULT_SAMPLE)]
    pub cluster_sample: usize,

    /// Time between a cluster node's heartbeats, in ms; a node silent for 2.5 of them is lost.
    #[arg(long, env = "CODEBEAKER_CLUSTER_HEARTBEAT_MS", default_value_t = crate::cluster::DEFAULT_HEARTBEAT.as_millis() as u64)]
    pub cluster_heartbeat_ms: u64,

    /// Log format; filter with RUST_LOG (default "info").
    #[arg(long, env = "CODEBEAKER_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

impl Cli {
    /// Where traces go (`--otlp-endpoint` and the standard `OTEL_*` variables).
    pub fn telemetry(&self) -> crate::telemetry::TelemetryConfig {
        crate::telemetry::TelemetryConfig { endpoint: self.otlp_endpoint.clone() }
    }

    /// The snapshot store `--snapshot-dir`, `--snapshot-quota-mb` and
    /// `--snapshot-max-count` describe.
    fn snapshot_store(&self) -> Result<SnapshotStore, ConfigError> {
        let dir = match &self.snapshot_dir {
            Some(dir) => dir.clone(),
            None => {
                let data = std::env::var_os("XDG_DATA_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
                    .unwrap_or_else(std::env::temp_dir);
                data.join("codebeaker/snapshots")
            }
        };
        let quota = self.snapshot_quota_mb.saturating_mul(1024 * 1024);
        if self.snapshot_max_count == 0 {
            return Err(ConfigError::Flag("--snapshot-max-count must be at least 1".to_owned()));
        }
        SnapshotStore::open(&dir, quota)
            .map(|store| store.with_max_count(self.snapshot_max_count))
            .map_err(|e| ConfigError::Flag(format!("--snapshot-dir {}: {}", dir.display(), e.message())))
    }

    /// The server configuration these flags describe: reads `--policy` and `--api-keys`
    /// and validates the result.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        if self.connection_idle_secs == 0 || self.max_outbound_bytes == 0 {
            return Err(ConfigError::Flag("connection-idle-secs and max-outbound-bytes must be above 0".into()));
        }
        let api_keys = match &self.api_keys {
            Some(path) => ApiKeys::load(path)?,
            None => ApiKeys::none(),
        };
        let limits = Limits {
            max_connections: self.max_connections,
            max_connections_per_tenant: self.max_connections_per_tenant,
            max_connections_per_address: self.max_connections_per_address,
            max_pending_connections: self.max_pending_connections,
            max_pending_per_address: self.max_pending_per_address,
            max_mcp_sessions: self.max_mcp_sessions,
            max_mcp_sessions_per_tenant: self.max_mcp_sessions_per_tenant,
            max_mcp_sessions_per_address: self.max_mcp_sessions_per_address,
            mcp_session_idle: Duration::from_secs(self.mcp_session_idle_secs),
            max_message_bytes: self.max_message_bytes,
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
            max_in_flight_bytes: self.max_in_flight_bytes,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            max_outbound_bytes: self.max_outbound_bytes,
            connection_idle: Duration::from_secs(self.connection_idle_secs),
            ..Limits::default()
        };
        limits.validate().map_err(ConfigError::Flag)?;
        let cluster = self.cluster()?;
        Ok(ServerConfig {
            listen: self.listen,
            token: self.token.clone().filter(|t| !t.is_empty()),
            api_keys,
            allowed_origins: self
                .allowed_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            limits,
            manager: ManagerConfig {
                max_sessions: self.max_sessions,
                output_limit: self.output_limit_bytes,
                policy: self.policy()?,
                routes: self.routes(),
                snapshots: Some(self.snapshot_store()?),
                ..ManagerConfig::default()
            },
            metrics_token: self.metrics_token.clone().filter(|t| !t.is_empty()),
            rate_limit: self.rate.rate().map_err(|e| ConfigError::Flag(e.to_string()))?,
            audit_log: self.audit.audit_log.clone(),
            audit_payloads: self.audit.audit_log_payloads,
            cluster,
        })
    }

    /// The cluster `--cluster-redis`, `--node-url` and `--cluster-secret-file` describe.
    fn cluster(&self) -> Result<Option<ClusterConfig>, ConfigError> {
        let (Some(redis_url), Some(node_url), Some(secret_file)) =
            (&self.cluster_redis, &self.node_url, &self.cluster_secret_file)
        else {
            return Ok(None);
        };
        let secret = std::fs::read_to_string(secret_file).map_err(|error| {
            ConfigError::Flag(format!("cannot read the cluster secret file {}: {error}", secret_file.display()))
        })?;
        let config = ClusterConfig {
            redis_url: redis_url.clone(),
            node_url: ClusterConfig::canonical_node_url(node_url),
            secret: secret.trim().to_owned(),
            sample: self.cluster_sample,
            heartbeat: Duration::from_millis(self.cluster_heartbeat_ms),
        };
        config.validate().map_err(ConfigError::Flag)?;
        Ok(Some(config))
    }

    /// The operator policy: the `--policy` file (or the defaults), then each flag given.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let mut policy = match &self.policy {
            Some(path) => load_policy(path)?,
            None => Policy::default(),
        };
        fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
            if let Some(value) = flag {
                *field = value.clone();
            }
        }
        set(&mut policy.max_memory_mb, &self.max_memory_mb);
        set(&mut policy.cpus, &self.cpus);
        set(&mut policy.max_lifetime_minutes, &self.max_lifetime_minutes);
        set(&mut policy.max_idle_minutes, &self.max_idle_minutes);
        set(&mut policy.default_command_timeout_ms, &self.command_timeout_ms);
        set(&mut policy.max_command_timeout_ms, &self.max_command_timeout_ms);
        set(&mut policy.workspace_mb, &self.workspace_mb);
        let mut table = |backend: &str, key: &str, value: serde_json::Value| {
            let section = policy.backends.entry(backend.to_owned()).or_insert_with(|| serde_json::json!({}));
            if let Some(section) = section.as_object_mut() {
                section.insert(key.to_owned(), value);
            }
        };
        if let Some(images) = &self.allowed_images {
            table("docker", "allowed-images", serde_json::json!(images));
        }
        if let Some(paths) = &self.grantable_paths {
            table("deno", "grantable-paths", serde_json::json!(paths));
        }
        if self.max_sessions_per_tenant.is_some() {
            policy.max_sessions_per_tenant = self.max_sessions_per_tenant;
        }
        set(&mut policy.net.allowed_hosts, &self.allowed_hosts);
        set(&mut policy.net.allowed_private, &self.allowed_private);
        if self.ca_bundle.is_some() {
            policy.net.ca_bundle = self.ca_bundle.clone();
        }
        if self.no_egress {
            policy.net.egress = false;
        }
        policy.validate().map_err(ConfigError::Policy)?;
        if let Some(bundle) = &policy.net.ca_bundle {
            if !bundle.is_file() {
                return Err(ConfigError::Flag(format!("ca-bundle {} is not a readable file", bundle.display())));
            }
        }
        Ok(policy)
    }

    /// The routing table: the defaults, with each `--route` applied.
    pub fn routes(&self) -> codebeaker::Routes {
        let mut routes = codebeaker::Routes::default();
        for route in &self.routes {
            routes.set(route.language, route.backend.clone());
        }
        routes
    }

    /// The backends these flags select.
    ///
    /// `policy` is the operator's policy the server config resolved: each backend reads
    /// its table from it, and the Docker backend starts its warm spares under it, so they
    /// match the sessions it serves.
    pub fn backend_options(&self, policy: &Policy) -> BackendOptions {
        BackendOptions {
            choice: if self.backends.is_empty() {
                BackendChoice::Auto
            } else {
                BackendChoice::Only(self.backends.iter().map(|name| name.trim().to_owned()).collect())
            },
            policy: policy.clone(),
            #[cfg(feature = "docker")]
            docker: {
                let mut docker = DockerConfig::default().with_owner(self.docker_owner.clone());
                docker.pool_size = DOCKER_LANGUAGES.iter().map(|&l| (l, self.docker_pool_size)).collect();
                docker.pool_max = self.docker_pool_max;
                docker
            },
            #[cfg(feature = "deno")]
            deno: DenoConfig {
                pool_size: self.deno_pool_size,
                workspace_root: self.deno_workspaces.clone().unwrap_or_else(|| DenoConfig::default().workspace_root),
                ..DenoConfig::default()
            },
        }
    }
}

fn parse_route(text: &str) -> Result<Route, String> {
    text.parse().map_err(|e: codebeaker::Error| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol() {
        let cli = Cli::try_parse_from(["codebeaker-server"]).unwrap();
        let config = cli.server_config().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(config.manager.policy, Policy::default());
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.manager.policy.default_command_timeout(), Duration::from_secs(60));
        assert_eq!(config.token, None);
        assert_eq!(cli.backend_options(&Policy::default()).choice, BackendChoice::Auto);
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
        assert_eq!(
            cli.backend_options(&Policy::default()).choice,
            BackendChoice::Only(vec!["deno".into(), "docker".into()])
        );
        let config = cli.server_config().unwrap();
        assert_eq!(config.manager.max_sessions, 3);
        // A tenant's share of the global session cap, unless set.
        assert_eq!(config.manager.policy.sessions_per_tenant(3), 1);
        let shares = Cli::try_parse_from([
            "codebeaker-server",
            "--max-connections",
            "40",
            "--max-connections-per-address",
            "5",
            "--max-mcp-sessions-per-tenant",
            "3",
        ])
        .unwrap()
        .server_config()
        .unwrap();
        let connections = shares.limits.connection_caps();
        assert_eq!((connections.per_tenant, connections.per_address), (10, 5));
        assert_eq!(shares.limits.mcp_session_caps().per_tenant, 3);
        let zero = Cli::try_parse_from(["codebeaker-server", "--max-mcp-sessions-per-address", "0"]).unwrap();
        assert!(zero.server_config().unwrap_err().to_string().contains("max-mcp-sessions-per-address"));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["codebeaker-server", "--route", "javascript"]).is_err());
    }

    #[test]
    fn routes_override_the_defaults() {
        let cli =
            Cli::try_parse_from(["codebeaker-server", "--route", "javascript=deno,ts=deno", "--route", "go=other"])
                .unwrap();
        let routes = cli.server_config().unwrap().manager.routes;
        assert_eq!(routes.get(codebeaker::Language::JavaScript), Some("deno"));
        assert_eq!(routes.get(codebeaker::Language::Go), Some("other"));
        assert_eq!(routes.get(codebeaker::Language::Python), Some("docker"));
    }

    fn policy_of(args: &[&str]) -> Result<Policy, ConfigError> {
        let mut all = vec!["codebeaker-server"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().policy()
    }

    #[test]
    fn policy_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.toml");
        std::fs::write(
            &file,
            "max-memory-mb = 1024\ncpus = 0.5\ngrantable-paths = [\"/srv/data\"]\n[net]\nallowed-private = [\"127.0.0.1/32\"]\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let policy = policy_of(&["--policy", path, "--cpus", "2", "--no-egress"]).unwrap();
        assert_eq!((policy.max_memory_mb, policy.cpus), (1024, 2.0));
        // The earlier top-level key lands in the Deno backend's table.
        assert_eq!(policy.backends["deno"], serde_json::json!({"grantable-paths": ["/srv/data"]}));
        assert_eq!((policy.net.egress, policy.net.allowed_private.len()), (false, 1));
        let flags = policy_of(&["--max-memory-mb", "4096", "--allowed-images", "a:1,b:2"]).unwrap();
        assert_eq!(flags.max_memory_mb, 4096);
        assert_eq!(flags.backends["docker"], serde_json::json!({"allowed-images": ["a:1", "b:2"]}));
        std::fs::write(&file, "[backends.docker]\nallowed-images = [\"x:1\"]\n").unwrap();
        let tables = policy_of(&["--policy", path]).unwrap();
        assert_eq!(tables.backends["docker"], serde_json::json!({"allowed-images": ["x:1"]}));
        std::fs::write(&file, "allowed-images = [\"y\"]\n[backends.docker]\nallowed-images = [\"x:1\"]\n").unwrap();
        let twice = policy_of(&["--policy", path]).unwrap_err().to_string();
        assert!(twice.contains("allowed-images") && twice.contains("backends.docker"), "{twice}");
    }

    #[test]
    fn bad_policies_stop_the_server_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo.toml");
        std::fs::write(&typo, "max-memroy-mb = 1\n").unwrap();
        let error = policy_of(&["--policy", typo.to_str().unwrap()]).unwrap_err().to_string();
        assert!(error.contains("max-memroy-mb") && error.contains("typo.toml"), "{error}");
        let missing = policy_of(&["--policy", "/nonexistent/policy.toml"]).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/policy.toml"), "{missing}");
        let error = policy_of(&["--cpus", "0"]).unwrap_err().to_string();
        assert!(error.contains("cpus"), "{error}");
        let error = policy_of(&["--max-command-timeout-ms", "1000"]).unwrap_err().to_string();
        assert!(error.contains("command-timeout-ms"), "{error}");
    }

    #[test]
    fn token_alone_is_the_operator_beside_keys_a_tenant() {
        let single = ServerConfig { token: Some("tok-tok-tok".into()), ..ServerConfig::default() }.access();
        assert_eq!(single.keys.tenant_keys(), 0);
        let keys = ApiKeys::parse("alice alice-key-1").unwrap();
        let both = ServerConfig { token: Some("tok-tok-tok".into()), api_keys: keys, ..ServerConfig::default() };
        assert_eq!(both.access().keys.tenant_keys(), 2);
    }
}
