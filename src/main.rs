//! The `policyctl` binary: parse the command line and run it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any thread starts: keep RUST_BACKTRACE for panics, but stop it from making every library error capture
    // a backtrace (see `telemetry::library_backtraces`).
    if let Some(value) =
        policyctl::telemetry::library_backtraces(std::env::var_os("RUST_LIB_BACKTRACE").as_deref())
    {
        std::env::set_var("RUST_LIB_BACKTRACE", value);
    }
    let cli = policyctl::cli::Cli::parse();
    match policyctl::commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", policyctl::commands::error_text(&err));
            ExitCode::FAILURE
        }
    }
}
