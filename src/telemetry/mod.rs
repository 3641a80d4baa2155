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

/// Lines the log writer may hold before it drops new ones (see [`init`]). The queue is allocated whole, about 32
/// bytes a line (65,536 lines cost 2 MiB of resident memory).
const BUFFERED_LINES: usize = 8_192;

/// Keeps the log writer running; dropping it writes out the lines still held (at the end of a command).
#[must_use = "the log writer stops, and lines still held are written out, when this is dropped"]
pub struct LogGuard {
    _worker: tracing_appender::non_blocking::WorkerGuard,
    dropped: tracing_appender::non_blocking::ErrorCounter,
}

impl LogGuard {
    /// Lines dropped so far because the writer's buffer was full (stderr not being read).
    pub fn dropped_lines(&self) -> usize {
        self.dropped.dropped_lines()
    }

    /// The same count, for the server's `policyctl_log_lines_dropped_total`.
    pub fn drops(&self) -> crate::metrics::LogDrops {
        let counter = self.dropped.clone();
        crate::metrics::LogDrops(std::sync::Arc::new(move || {
            u64::try_from(counter.dropped_lines()).unwrap_or(u64::MAX)
        }))
    }
}

/// Install the global subscriber. `filter` is an `EnvFilter` directive such as `info` or
/// `policyctl=debug,info`; `RUST_LOG` overrides it when set.
///
/// Lines are formatted where they are logged and written to stderr by a thread of their own, so a review never waits
/// on a write to stderr: a slow or stalled reader of the log (a container runtime's log pipe) cannot stall the
/// webhook. Up to [`BUFFERED_LINES`] lines wait; past that new lines are dropped and counted rather than block.
pub fn init(format: LogFormat, filter: &str) -> LogGuard {
    let (writer, guard) = lossy_writer(std::io::stderr(), BUFFERED_LINES);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second initialisation (tests) is not an error worth reporting.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    guard
}

/// A writer that hands lines to a thread writing them into `sink`, holding at most `limit` of them: past that, new
/// lines are dropped (and counted), never waited for.
fn lossy_writer<W: std::io::Write + Send + 'static>(
    sink: W,
    limit: usize,
) -> (tracing_appender::non_blocking::NonBlocking, LogGuard) {
    let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(limit)
        .thread_name("policyctl-log")
        .finish(sink);
    let guard = LogGuard {
        _worker: worker,
        dropped: writer.error_counter(),
    };
    (writer, guard)
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
mod writer_tests {
    use std::io::Write;
    use std::sync::mpsc;

    use super::lossy_writer;

    /// A sink whose writes wait until the test lets them through, and report what they wrote.
    struct Stalled {
        open: mpsc::Receiver<()>,
        written: mpsc::Sender<Vec<u8>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Stalled until the test sends (or goes away).
            let _ = self.open.recv();
            let _ = self.written.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_log_reader_costs_dropped_lines_not_a_blocked_writer() {
        let (open, gate) = mpsc::channel();
        let (written, lines) = mpsc::channel();
        let (mut writer, guard) = lossy_writer(
            Stalled {
                open: gate,
                written,
            },
            4,
        );
        // The sink takes nothing: every write past the few lines held (and the one the worker is stuck on) is
        // dropped. If the writer waited for the sink, this loop would never end.
        for i in 0..100 {
            writer
                .write_all(format!("line {i}\n").as_bytes())
                .expect("a lossy write does not fail");
        }
        assert!(guard.dropped_lines() >= 90, "{}", guard.dropped_lines());
        // Let the sink go: the lines held come out, in order, starting with the first.
        drop(open);
        drop(writer);
        drop(guard);
        let got: Vec<Vec<u8>> = lines.try_iter().collect();
        assert!(!got.is_empty() && got.len() <= 10, "{}", got.len());
        assert_eq!(got[0], b"line 0\n");
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
