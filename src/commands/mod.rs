//! What each command does. This is the CLI edge: errors are `anyhow` here and become an exit code in `main`.

/// Print to standard output like `print!`, through [`stdout::write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::stdout::write(format_args!($($arg)*))
    };
}

/// Print a line to standard output like `println!`, through [`stdout::write`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::commands::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod audit;
mod bench;
mod certs;
mod eval;
mod inputs;
mod lint;
mod serve;
mod test;

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::telemetry;

/// Run a parsed command line; the exit code is 0 on success and 1 on failures (denials, failing tests, errors).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Held until the command ends: the log lines still buffered are then written out.
    let log = telemetry::init(cli.log.log_format, &cli.log.log_level);
    let code = match cli.command {
        Command::Serve(args) => serve::run(args, log.drops()),
        Command::Certs(args) => certs::run(args),
        Command::Test(args) => test::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Audit(args) => audit::run(args),
    };
    let dropped = log.dropped_lines();
    drop(log);
    if dropped > 0 {
        eprintln!(
            "warning: {dropped} log lines were dropped because stderr was not read fast enough"
        );
    }
    let code = code?;
    stdout::finish().context("writing the output")?;
    Ok(code)
}

/// The commands' standard output. A reader that goes away early (`policyctl eval ... | head`) is not an error: the
/// rest of the output is dropped and the command still ends with its own exit code (a test run's verdict, say). Any
/// other write error (a full disk) is kept, and the command fails with it when it ends. `print!` would panic on both.
pub(crate) mod stdout {
    use std::io::{self, Write};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    /// The first write error other than a closed pipe.
    static FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

    /// Write `args` to standard output (see the module).
    pub(crate) fn write(args: std::fmt::Arguments<'_>) {
        let result = io::stdout().lock().write_fmt(args);
        keep(result);
    }

    /// Flush standard output; the first write error other than a closed pipe, if any.
    pub(crate) fn finish() -> io::Result<()> {
        keep(io::stdout().lock().flush());
        failed().take().map_or(Ok(()), Err)
    }

    fn keep(result: io::Result<()>) {
        if let Err(err) = result {
            if err.kind() != io::ErrorKind::BrokenPipe {
                failed().get_or_insert(err);
            }
        }
    }

    /// The recorded error (a poisoned lock only means a panic elsewhere while it was held).
    fn failed() -> MutexGuard<'static, Option<io::Error>> {
        FAILED.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The text of a command's error for the terminal: the error and its causes, `: `-separated. A cause whose text is
/// already in the message before it is left out: library errors often name their source in their own message, and
/// it would otherwise be printed twice (`cannot write x: Not a directory: Not a directory`).
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write x: {source}")]
    struct Write {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_the_message_already_names_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotADirectory, "Not a directory");
        let err = anyhow::Error::from(Write { source: io }).context("writing certificates to x");
        assert_eq!(
            error_text(&err),
            "writing certificates to x: cannot write x: Not a directory"
        );
        // Causes the message does not name are all printed, as `{:#}` would.
        let plain = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&plain), "outer: middle: inner");
        assert_eq!(error_text(&plain), format!("{plain:#}"));
    }
}
