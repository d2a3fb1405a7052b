//! `codebeaker-server`: parse flags, start the backends, serve until SIGINT/SIGTERM.
//! `codebeaker-server mcp`: the same over one MCP session on stdin/stdout instead.

use std::process::ExitCode;

use clap::Parser as _;
use codebeaker_server::config::Mode;
use codebeaker_server::telemetry::{self, Telemetry};
use codebeaker_server::{logging, mcp, shutdown, Backends, Cli, Server, Services};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // Deno sessions run in worker processes that are this executable started again.
    #[cfg(feature = "deno")]
    codebeaker_deno::run_worker_if_requested();
    serve()
}

#[tokio::main]
async fn serve() -> ExitCode {
    let cli = Cli::parse();
    let (telemetry, tracer) = match Telemetry::start(&cli.telemetry()) {
        Ok(started) => started.unzip(),
        Err(error) => {
            logging::init(cli.log_format, None);
            tracing::error!(%error, "invalid configuration");
            eprintln!("codebeaker-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(cli.log_format, tracer);
    if telemetry.is_some() {
        tracing::info!(queue = telemetry::EXPORT_QUEUE, "exporting traces over OTLP/HTTP");
    }
    let code = run(cli).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    code
}

/// The server (or the MCP session) the flags describe, until it ends.
async fn run(cli: Cli) -> ExitCode {
    // Policy and keys first: a bad configuration must stop the server before anything starts.
    let config = match cli.server_config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            eprintln!("codebeaker-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let backends = match Backends::start(cli.backend_options(&config.manager.policy)).await {
        Ok(backends) => backends,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    // A route to a running backend that does not run the language would never apply.
    if let Err(error) = config.manager.routes.check(&backends.enabled) {
        tracing::error!(%error, "invalid configuration");
        eprintln!("codebeaker-server: {error}");
        return ExitCode::FAILURE;
    }
    if cli.mode == Mode::Mcp {
        return serve_mcp_stdio(Services::start(&config, backends)).await;
    }
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

/// One MCP session over stdin/stdout (stdout carries the protocol; logs go to stderr),
/// until the host closes stdin or a termination signal; then every session is closed.
async fn serve_mcp_stdio(services: Services) -> ExitCode {
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        if shutdown::termination_signal().await.is_ok() {
            signal.cancel();
        }
    });
    let served = mcp::transport::serve_stdio(services.api.clone(), Some(services.metrics.clone()), stop).await;
    services.api.manager().shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "MCP over stdio failed");
            ExitCode::FAILURE
        }
    }
}
