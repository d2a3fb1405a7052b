//! Log output: human-readable or JSON lines, filtered like `RUST_LOG` (default `info`).
//!
//! Spans nest as a request travels: `connection` (peer, tenant) > `request` (id,
//! method) > the manager's session and command spans. A JSON line carries its whole span
//! list, so one command can be followed end to end with
//! `RUST_LOG=debug --log-format json` and a filter on the request id or session id.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Coloured, human-readable lines (when the output is a terminal).
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` (e.g. `codebeaker=debug,info`) filters.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is installed already (e.g. by an embedding
    // program); that one is then used.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(true).try_init(),
    };
}
