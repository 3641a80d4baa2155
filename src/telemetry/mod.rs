//! Structured logs with `tracing`, as text or JSON lines on stderr.
//!
//! Request objects are never logged at `info`: the request span carries uid, kind, namespace, name, user, operation,
//! generation and decision only, and every request-derived field (and every policy message, logged at `debug`) is
//! bounded and escaped by `policyctl_server::logtext` before it is recorded, as a string, so that each format quotes it:
//! a request cannot forge a line, send terminal escapes or flood the log in either format.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber. `filter` is an `EnvFilter` directive such as `info` or
/// `policyctl=debug,info`; `RUST_LOG` overrides it when set.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is not an error worth reporting.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
