//! `policyctl lint`: load and compile everything, report every problem.

use std::process::ExitCode;

use serde_json::json;

use crate::cli::{LintArgs, ReportOutput};
use crate::policy::loader;
use crate::policy::PolicySet;

pub fn run(args: LintArgs) -> anyhow::Result<ExitCode> {
    let LintArgs {
        mut paths,
        policies,
        output,
        engine,
    } = args;
    paths.extend(policies);
    if paths.is_empty() {
        paths.push("policies".into());
    }
    let shown = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let compiled = loader::compile_paths(&paths, &engine.load_options());
    let errors = compiled.built.errors.clone();
    let warnings = compiled.built.warnings.clone();
    let files = compiled.files;
    let summaries = if errors.is_empty() {
        compiled
            .into_set(0)
            .map(|set: PolicySet| set.summaries())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    match output {
        ReportOutput::Json => {
            let report = json!({
                "directory": shown,
                "files": files,
                "policies": summaries,
                "errors": errors,
                "warnings": warnings,
            });
            outln!("{}", serde_json::to_string_pretty(&report)?);
        }
        ReportOutput::Text => {
            for error in &errors {
                outln!("error: {error}");
            }
            for warning in &warnings {
                outln!("warning: {warning}");
            }
            if errors.is_empty() {
                outln!(
                    "{}: {} policies from {} files, {} warnings",
                    shown,
                    summaries.len(),
                    files,
                    warnings.len()
                );
            } else {
                outln!(
                    "{}: {} errors, {} warnings",
                    shown,
                    errors.len(),
                    warnings.len()
                );
            }
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
