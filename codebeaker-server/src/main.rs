//! `codebeaker-server`: parse flags, start the backends, serve until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser as _;
use codebeaker_server::{logging, shutdown, Backends, Cli, Server};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // Policy and keys first: a bad configuration must stop the server before anything starts.
    let config = match cli.server_config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            eprintln!("codebeaker-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let backends = match Backends::start(cli.backend_options()).await {
        Ok(backends) => backends,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(config, backends).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, listen = %cli.listen, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    server
        .run(async {
            match shutdown::termination_signal().await {
                Ok(signal) => tracing::info!(signal, "termination signal received"),
                Err(error) => {
                    tracing::error!(%error, "cannot watch for signals; shutting down");
                }
            }
        })
        .await;
    ExitCode::SUCCESS
}
