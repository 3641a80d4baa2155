//! What each command does. This is the CLI edge: errors are `anyhow` here and become an exit code in `main`.

mod audit;
mod bench;
mod certs;
mod eval;
mod inputs;
mod lint;
mod serve;
mod test;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::telemetry;

/// Run a parsed command line; the exit code is 0 on success and 1 on failures (denials, failing tests, errors).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    telemetry::init(cli.log.log_format, &cli.log.log_level);
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Test(args) => test::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Audit(args) => audit::run(args),
    }
}
