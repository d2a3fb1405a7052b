//! The CodeBeaker server: the WebSocket JSON-RPC 2.0 protocol of `docs/protocol.md` over the
//! [`codebeaker::SessionManager`], with `GET /health` on the same port.
//!
//! The binary `codebeaker-server` is a thin wrapper over this library; tests, benches
//! and embedding programs start a [`Server`] themselves, often on a free port:
//!
//! ```no_run
//! use codebeaker_server::{Backends, BackendOptions, Server, ServerConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind(ServerConfig::ephemeral(), Backends::start(BackendOptions::default()).await?).await?;
//! let handle = server.spawn();
//! println!("connect to {}", handle.ws_url());
//! handle.shutdown().await; // closes every session
//! # Ok(()) }
//! ```
//!
//! Modules, in the order a request meets them: [`server`] (accept loop, hyper's HTTP/1)
//! with `pending` (sockets not let in yet: capped per address, evicted oldest first),
//! [`routes`] (the axum router: health, upgrade), [`access`]
//! (browser origins, tokens and tenants), `connection` (read loop, writer, in-flight
//! caps, idle timeout) with `outbox` (bounded response bytes), [`rpc`] (JSON-RPC parsing
//! and error codes), `methods` (the five methods, their params and replies typed in
//! [`protocol`], whose JSON Schema [`schema`] generates) over [`api`] (the typed
//! operations every transport calls), and [`shutdown`]. [`limits`] holds every bound of the server
//! in one place, [`shares`] the global, per-tenant and per-address caps of connections
//! and MCP sessions; the operator's caps on sessions are the [`codebeaker::Policy`] that
//! [`config`] reads.

#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod audit;
pub mod backends;
pub mod cluster;
pub mod config;
mod connection;
pub mod error_codes;
pub mod files_http;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod mcp;
mod methods;
pub mod metrics;
mod outbox;
mod pending;
pub mod processes;
pub mod protocol;
pub mod rate;
pub mod routes;
pub mod rpc;
pub mod schema;
pub mod server;
pub mod shares;
pub mod shutdown;
pub mod telemetry;

pub use access::{Access, ApiKeys};
pub use api::{Api, ApiError, Caller, Health, HealthStatus};
pub use backends::{BackendChoice, BackendOptions, Backends};
pub use config::{Cli, ConfigError, ServerConfig};
pub use limits::Limits;
pub use routes::{HEALTH_PATH, WS_PATH};
pub use server::{Server, ServerHandle, Services};
