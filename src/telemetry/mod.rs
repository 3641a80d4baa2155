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

/// What `RUST_LIB_BACKTRACE` should be set to when the process starts, given its current value: `"0"` when it is not
/// set, otherwise nothing (an explicit choice is kept). With `RUST_BACKTRACE=1` (often set for panics) and no
/// `RUST_LIB_BACKTRACE`, every `anyhow` error captures a backtrace, and regorus builds such errors while it evaluates
/// (errors it then discards): measured at about 8 % of a review of the bundled policies. policyctl never prints
/// those backtraces (errors are shown with their context chain only), so they are turned off; panics still get
/// theirs from `RUST_BACKTRACE`.
pub fn library_backtraces(current: Option<&std::ffi::OsStr>) -> Option<&'static str> {
    match current {
        None => Some("0"),
        Some(_) => None,
    }
}

#[cfg(test)]
mod backtrace_tests {
    use super::library_backtraces;

    #[test]
    fn library_backtraces_are_off_unless_chosen() {
        assert_eq!(library_backtraces(None), Some("0"));
        assert_eq!(library_backtraces(Some(std::ffi::OsStr::new("1"))), None);
        assert_eq!(library_backtraces(Some(std::ffi::OsStr::new("0"))), None);
    }
}
