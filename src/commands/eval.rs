//! `policyctl eval`: run manifests or AdmissionReviews through the policies offline, the way the webhooks would:
//! mutation first, then validation of the mutated object. With `--payload MODE`, the files are payloads checked by
//! the ValidatingPolicies of that `evaluation.mode` (JSON, HTTP, Envoy) instead.

use std::process::ExitCode;

use serde_json::{json, Value};

use super::inputs;
use crate::cli::{EvalArgs, ReportOutput};
use crate::decide::{decide, Decision};
use crate::pipeline;
use crate::policy::source::yaml_documents;
use crate::policy::{EvalContext, FailurePolicy, PayloadMode};

/// One entry of the report: what was evaluated (`head`, an object) and the decision.
fn report(mut head: Value, decision: &Decision) -> Value {
    let verdict = decision.verdict().as_str();
    head["decision"] = json!(verdict);
    head["allowed"] = json!(decision.allowed);
    head["denials"] = json!(decision.denials);
    head["warnings"] = json!(decision.warnings);
    head["audits"] = json!(decision.audits);
    head["errors"] = json!(decision.errors);
    head
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let EvalArgs {
        policies,
        files,
        operation,
        payload,
        output,
        engine,
    } = args;
    let (set, _) = inputs::policy_set(&policies, &engine.load_options())?;
    let mut reports = Vec::new();
    let mut denied = false;
    if let Some(mode) = payload {
        let mode: PayloadMode = mode.into();
        for source in inputs::sources(&files)? {
            let documents = yaml_documents(&source).map_err(|e| anyhow::anyhow!("{e}"))?;
            for (origin, document) in documents {
                let ctx = EvalContext::default();
                let runs = pipeline::validate_payload(&set, &document, mode, &ctx);
                let policies = runs.len();
                let decision = decide(runs, None, FailurePolicy::Fail);
                denied |= !decision.allowed;
                reports.push(report(
                    json!({
                        "source": origin.to_string(),
                        "kind": format!("{mode} payload"),
                        "namespace": null,
                        "name": "",
                        "policies": policies,
                    }),
                    &decision,
                ));
            }
        }
    }
    let manifests = if payload.is_some() {
        Vec::new()
    } else {
        inputs::reviews(&files, operation.into())?
    };
    for (origin, review) in manifests {
        // Each review is its own request, with its own deadline (the default request timeout).
        let ctx = EvalContext::default();
        let (runs, mutated) = pipeline::mutate_then_validate(&set, &review, &ctx);
        let patch = match (review.object(), &mutated) {
            (Some(original), Some(m)) => Some(json_patch::diff(original, m)),
            _ => None,
        };
        let decision = decide(runs, patch, FailurePolicy::Fail);
        denied |= !decision.allowed;
        let mut entry = report(
            json!({
                "source": origin.to_string(),
                "kind": review.kind.kind,
                "namespace": review.namespace,
                "name": review.name,
                "operation": review.operation_str(),
            }),
            &decision,
        );
        entry["patch"] = json!(decision.patch);
        entry["mutated"] = json!(mutated);
        reports.push(entry);
    }
    match output {
        ReportOutput::Json => outln!("{}", serde_json::to_string_pretty(&reports)?),
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
    outln!(
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
            outln!("      {label}: {}", line.as_str().unwrap_or(""));
        }
    }
    if report.get("policies").and_then(Value::as_u64) == Some(0) {
        outln!("      note: no policy evaluates payloads of this mode");
    }
    if let Some(patch) = report.get("patch").filter(|p| !p.is_null()) {
        outln!("      patch: {patch}");
    }
}
