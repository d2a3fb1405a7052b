//! The CodeBeaker server: the WebSocket JSON-RPC 2.0 protocol of `PROTOCOL.md` over the
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
//! Modules, in the order a request meets them: [`server`] (accept loop, limits on
//! sockets), `http` (health, upgrade, token), `connection` (read loop, writer,
//! in-flight cap), [`rpc`] (JSON-RPC parsing and error codes), `methods` (the five
//! methods), and [`shutdown`]. [`limits`] holds every bound in one place.

#![warn(missing_docs)]

pub mod audit;
pub mod backends;
pub mod config;
mod connection;
mod http;
pub mod limits;
pub mod logging;
mod methods;
pub mod metrics;
pub mod rate;
pub mod rpc;
pub mod server;
pub mod shutdown;

pub use backends::{BackendChoice, BackendKind, BackendOptions, Backends};
pub use config::{Cli, ServerConfig};
pub use http::{HEALTH_PATH, WS_PATH};
pub use limits::Limits;
pub use server::{Server, ServerHandle};
