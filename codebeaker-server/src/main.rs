//! `codebeaker-server`: parse flags, start the backends, serve until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser as _;
use codebeaker_server::{logging, shutdown, Backends, Cli, Server};

fn main() -> ExitCode {
    // Deno sessions run in worker processes that are this executable started again.
    codebeaker_deno::run_worker_if_requested();
    serve()
}

#[tokio::main]
async fn serve() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let backends = match Backends::start(cli.backend_options()).await {
        Ok(backends) => backends,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(cli.server_config(), backends).await {
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
