//! Inputs the fuzz targets (fuzz/) found, each fixed: loading or decoding them must end promptly with a clear answer.

use policyctl::engine::LoadOptions;
use policyctl::policy::loader::compile;
use policyctl::policy::SourceFile;

fn load_errors(origin: &str, content: String) -> Vec<String> {
    let file = SourceFile {
        origin: origin.to_string(),
        content,
    };
    compile(&[file], &LoadOptions::default())
        .built
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// rego_loader: 90 levels of `{` made the Rego parser run for ever (its time doubles with each level), blocking the
/// policy loader. Refused before parsing, naming the file and the line.
#[test]
fn deeply_nested_rego_is_refused_before_parsing() {
    let rego = format!(
        "package k8sfuzz\n\nviolation[{{\"msg\": msg}}] {{\n  msg := \"x\"\n}}\n\npod_meta(obj){} = meta {{\n  meta := obj\n}}\n",
        "{".repeat(90)
    );
    let plain = load_errors("policies/deep.rego", rego.clone());
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert!(
        plain[0].contains("policies/deep.rego")
            && plain[0].contains("more than 12 levels deep (line 7)"),
        "{plain:?}"
    );

    let indented: String = rego
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect();
    let template = format!(
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata:\n  name: k8sfuzz\nspec:\n  crd:\n    spec:\n      names:\n        kind: K8sFuzz\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      rego: |\n{indented}"
    );
    let errors = load_errors("policies/deep.yaml", template);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("policies/deep.yaml") && e.contains("more than 12 levels deep")),
        "{errors:?}"
    );
}

/// The same bound holds for many constructs that are each allowed: their parsing time adds up.
#[test]
fn many_nested_literals_are_refused_too() {
    let literal = format!("{}1{}", "[".repeat(11), "]".repeat(11));
    let rules: String = (0..40).map(|i| format!("p{i} := {literal}\n")).collect();
    let errors = load_errors("policies/many.rego", format!("package many\n\n{rules}"));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("too much deeply nested bracketing")),
        "{errors:?}"
    );
}
