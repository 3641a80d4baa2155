//! `policyctl test`: run every test under the paths, print the report, exit 1 on any failure or error.

use std::process::ExitCode;

use anyhow::Context;
use regex::Regex;

use crate::cli::{TestArgs, TestOutput};
use crate::testing::progress::{self, ProgressLine};
use crate::testing::{self, KnownFailures, Report, TestOptions};

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let TestArgs {
        paths,
        output,
        known_failures,
        run,
        fail_only,
        detailed,
        engine,
    } = args;
    let filter = run
        .map(|re| Regex::new(&re).with_context(|| format!("invalid --run expression {re:?}")))
        .transpose()?;
    let known = known_failures
        .map(|path| KnownFailures::load(&path).map_err(anyhow::Error::from))
        .transpose()?;
    let options = TestOptions {
        filter,
        load: engine.load_options(),
    };
    let mut line = ProgressLine::new(std::io::stderr(), progress::wanted_on_stderr());
    let mut cases = testing::run_with_progress(&paths, &options, &mut |p| line.update(p));
    line.finish();
    if let Some(known) = &known {
        for stale in known.apply(&mut cases) {
            eprintln!(
                "warning: known failure matched no failing case: {} {} {}",
                stale.suite,
                stale.test.as_deref().unwrap_or("*"),
                stale.case.as_deref().unwrap_or("*")
            );
        }
    }
    let report = Report::new(cases);
    let shown = if fail_only {
        report.failures_only()
    } else {
        report.clone()
    };
    match output {
        TestOutput::Table => out!("{}", shown.table_with(detailed)),
        TestOutput::Json => outln!("{}", shown.json()),
        TestOutput::Junit => out!("{}", shown.junit()),
        TestOutput::Yaml => out!("{}", shown.yaml()),
    }
    if report.summary.total == 0 {
        // A CI step that ran nothing must not pass: a broken path or discovery would otherwise go unnoticed.
        eprintln!(
            "error: no test cases found under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
