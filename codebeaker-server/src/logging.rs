//! Log output: human-readable or JSON lines, filtered like `RUST_LOG` (default `info`).
//!
//! Spans nest as a request travels: `connection` (peer, tenant) > `request` (id,
//! method) > the manager's session and command spans. A JSON line carries its whole span
//! list, so one command can be followed end to end with
//! `RUST_LOG=debug --log-format json` and a filter on the request id or session id.

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Coloured, human-readable lines (when the output is a terminal).
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What is exported: spans (never events, whose messages may quote a program) at `info`
/// and above, except a connection's, which lives as long as its socket: each request
/// starts a trace of its own, or joins its client's.
fn exported_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && *metadata.level() <= tracing::Level::INFO && metadata.name() != "connection"
}

/// Installs the global subscriber. `RUST_LOG` (e.g. `codebeaker=debug,info`) filters the
/// log lines; with `traces` (see [`crate::telemetry`]) spans are exported too
/// (spans at `info` and above, never events, not the connection span), whatever
/// `RUST_LOG` keeps in the logs.
pub fn init(format: LogFormat, traces: Option<opentelemetry_sdk::trace::Tracer>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let exported = traces.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(filter_fn(exported_span))
    });
    let registry = tracing_subscriber::registry().with(exported);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is installed already (e.g. by an embedding
    // program); that one is then used.
    let _ = match format {
        LogFormat::Pretty => registry.with(lines.with_filter(filter)).try_init(),
        LogFormat::Json => registry
            .with(lines.json().flatten_event(true).with_current_span(true).with_span_list(true).with_filter(filter))
            .try_init(),
    };
}
