//! `policyctl audit`: resources as they exist, evaluated by every policy with background semantics, reported as
//! PolicyReports; exit 1 when an enforcing policy fails (or cannot be evaluated), so rendered manifests can gate a
//! pipeline.

use std::process::ExitCode;
use std::sync::Arc;

use super::inputs;
use crate::audit::{audit, Audit};
use crate::cli::{AuditArgs, AuditOutput};
use crate::policy::NoCluster;

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (set, _) = inputs::policy_set(
        std::slice::from_ref(&args.policies),
        &args.engine.load_options(),
    )?;
    let objects = inputs::objects(&args.files)?;
    let audited = audit(&set, &objects, Arc::new(NoCluster), args.timeout);
    match args.output {
        AuditOutput::Json => {
            let list =
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": audited.reports});
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        AuditOutput::Yaml => {
            for report in &audited.reports {
                print!("---\n{}", serde_yaml::to_string(report)?);
            }
        }
        AuditOutput::Table => print_table(&audited),
    }
    Ok(
        if audited.enforcing_failures > 0 || audited.enforcing_errors > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn print_table(audited: &Audit) {
    let mut total = crate::audit::Summary::default();
    for report in &audited.reports {
        for r in &report.results {
            if matches!(r.result, "fail" | "warn" | "error") {
                let resource = r.resources.first();
                let field = |key: &str| {
                    resource
                        .and_then(|v| v.get(key))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                };
                let namespace = field("namespace");
                let object = if namespace.is_empty() {
                    format!("{} {}", field("kind"), field("name"))
                } else {
                    format!("{} {namespace}/{}", field("kind"), field("name"))
                };
                let rule = if r.rule.is_empty() || r.rule == r.policy {
                    r.policy.clone()
                } else {
                    format!("{}/{}", r.policy, r.rule)
                };
                let enforcing = if r.enforcing { " (enforcing)" } else { "" };
                println!(
                    "{:<5} {object}: {rule}{enforcing}: {}",
                    r.result.to_uppercase(),
                    r.message
                );
            }
        }
        total.pass += report.summary.pass;
        total.fail += report.summary.fail;
        total.warn += report.summary.warn;
        total.error += report.summary.error;
        total.skip += report.summary.skip;
    }
    println!(
        "{} resources: {} pass, {} fail, {} warn, {} error, {} skip; {} enforcing failures, {} enforcing errors",
        audited.resources,
        total.pass,
        total.fail,
        total.warn,
        total.error,
        total.skip,
        audited.enforcing_failures,
        audited.enforcing_errors
    );
}
