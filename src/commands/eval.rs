//! `policyctl eval`: run manifests or AdmissionReviews through the policies offline, the way the webhooks would:
//! mutation first, then validation of the mutated object.

use std::process::ExitCode;

use serde_json::{json, Value};

use super::inputs;
use crate::cli::{EvalArgs, ReportOutput};
use crate::decide::decide;
use crate::pipeline;
use crate::policy::{EvalContext, FailurePolicy};

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let EvalArgs {
        policies,
        files,
        operation,
        output,
        engine,
    } = args;
    let (set, _) = inputs::policy_set(&policies, &engine.load_options())?;
    let mut reports = Vec::new();
    let mut denied = false;
    for (origin, review) in inputs::reviews(&files, operation.into())? {
        // Each review is its own request, with its own deadline (the default request timeout).
        let ctx = EvalContext::default();
        let (runs, mutated) = pipeline::mutate_then_validate(&set, &review, &ctx);
        let patch = match (review.object(), &mutated) {
            (Some(original), Some(m)) => Some(json_patch::diff(original, m)),
            _ => None,
        };
        let decision = decide(runs, patch, FailurePolicy::Fail);
        denied |= !decision.allowed;
        reports.push(json!({
            "source": origin.to_string(),
            "kind": review.kind.kind,
            "namespace": review.namespace,
            "name": review.name,
            "operation": review.operation_str(),
            "decision": decision.verdict().as_str(),
            "allowed": decision.allowed,
            "denials": decision.denials,
            "warnings": decision.warnings,
            "audits": decision.audits,
            "errors": decision.errors,
            "patch": decision.patch,
            "mutated": mutated,
        }));
    }
    match output {
        ReportOutput::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        ReportOutput::Text => {
            for report in &reports {
                print_text(report);
            }
        }
    }
    Ok(if denied {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_text(report: &Value) {
    let str_of = |key: &str| report.get(key).and_then(Value::as_str).unwrap_or("");
    let namespace = str_of("namespace");
    let object = if namespace.is_empty() {
        format!("{} {}", str_of("kind"), str_of("name"))
    } else {
        format!("{} {}/{}", str_of("kind"), namespace, str_of("name"))
    };
    println!(
        "{:<5} {object} ({})",
        str_of("decision").to_uppercase(),
        str_of("source")
    );
    for (key, label) in [
        ("denials", "deny"),
        ("warnings", "warn"),
        ("audits", "audit"),
        ("errors", "error"),
    ] {
        for line in report
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!("      {label}: {}", line.as_str().unwrap_or(""));
        }
    }
    if let Some(patch) = report.get("patch").filter(|p| !p.is_null()) {
        println!("      patch: {patch}");
    }
}
