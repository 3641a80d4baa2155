//! Gatekeeper `K8sNativeValidation` (CEL) code in templates.

use serde_json::json;

use crate::admission::{Operation, Review};
use crate::engine::LoadOptions;
use crate::policy::loader::{compile_with, Compiled};
use crate::policy::{Action, EvalContext, EvalError, FailurePolicy, Policy, SourceFile};

fn compile(content: &str, prefer_rego: bool) -> Compiled {
    compile_with(
        &[Box::new(crate::GatekeeperEngine)],
        &[SourceFile {
            origin: "p.yaml".into(),
            content: content.into(),
        }],
        &LoadOptions {
            prefer_rego,
            ..LoadOptions::default()
        },
    )
}

fn load(content: &str, prefer_rego: bool) -> std::sync::Arc<dyn Policy> {
    let compiled = compile(content, prefer_rego);
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    compiled.built.policies[0].clone()
}

/// A template whose CEL and Rego say different things, so the one that ran shows.
const TEMPLATE: &str = r#"
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8sowner}
spec:
  crd:
    spec:
      names: {kind: K8sOwner}
  targets:
  - target: admission.k8s.gatekeeper.sh
    code:
    - engine: K8sNativeValidation
      source:
        CEL_EXTRA
        matchCondition:
        - name: not-exempt
          expression: "!has(variables.anyObject.metadata.labels) || !('exempt' in variables.anyObject.metadata.labels)"
        variables:
        - name: label
          expression: "variables.params.label"
        validations:
        - expression: "has(variables.anyObject.metadata.labels) && variables.label in variables.anyObject.metadata.labels"
          messageExpression: "'cel: missing ' + variables.label + ' on ' + variables.anyObject.metadata.name + ' (' + params.metadata.name + ')'"
    - engine: Rego
      source:
        rego: |
          package k8sowner
          violation[{"msg": "rego: missing"}] {
            not input.review.object.metadata.labels[input.parameters.label]
          }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sOwner
metadata: {name: must-own}
spec:
  enforcementAction: ACTION
  match:
    kinds: [{apiGroups: [""], kinds: [Pod]}]
  parameters: {label: owner}
"#;

fn template(action: &str, cel_extra: &str) -> String {
    TEMPLATE
        .replace("ACTION", action)
        .replace("CEL_EXTRA", cel_extra)
}

fn pod(labels: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "labels": labels}})
}

fn messages(policy: &dyn Policy, review: &Review) -> Vec<(Action, String)> {
    policy
        .validate(review, &EvalContext::default())
        .violations
        .into_iter()
        .map(|v| (v.action, v.message))
        .collect()
}

#[test]
fn cel_runs_instead_of_rego_unless_rego_is_preferred() {
    let create = |labels| Review::for_object(pod(labels), None, Operation::Create);
    let p = load(&template("deny", ""), false);
    assert_eq!(
        messages(p.as_ref(), &create(json!({}))),
        [(
            Action::Deny,
            "cel: missing owner on p (must-own)".to_string()
        )]
    );
    assert!(messages(p.as_ref(), &create(json!({"owner": "me"}))).is_empty());
    // matchCondition not met: not validated.
    assert!(messages(p.as_ref(), &create(json!({"exempt": "yes"}))).is_empty());

    let p = load(&template("warn", ""), true);
    assert_eq!(
        messages(p.as_ref(), &create(json!({}))),
        [(Action::Warn, "rego: missing".to_string())]
    );
}

#[test]
fn any_object_is_the_old_object_on_delete() {
    let p = load(&template("warn", ""), false);
    let delete = Review::for_object(pod(json!({})), None, Operation::Delete);
    assert_eq!(
        messages(p.as_ref(), &delete),
        [(
            Action::Warn,
            "cel: missing owner on p (must-own)".to_string()
        )]
    );
}

#[test]
fn failure_policy_generate_vap_and_reserved_names() {
    let compiled = compile(
        &template("deny", "failurePolicy: Ignore\n        generateVAP: true"),
        false,
    );
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    let warnings: Vec<String> = compiled
        .built
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("code[0].source.generateVAP: generateVAP is ignored")),
        "{warnings:?}"
    );
    let p = compiled.built.policies[0].clone();
    assert_eq!(p.info().failure_policy, Some(FailurePolicy::Ignore));
    // A runtime error is the policy's error under its failure policy.
    let e = p.validate(
        &Review::for_object(
            json!({"apiVersion": "v1", "kind": "Pod"}),
            None,
            Operation::Create,
        ),
        &EvalContext::default(),
    );
    assert!(matches!(e.errors[0].error, EvalError::Engine(_)), "{e:?}");

    let errors: Vec<String> = compile(
        &template("deny", "").replace("- name: label", "- name: anyObject"),
        false,
    )
    .built
    .errors
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(
        errors[0].contains("variables[0].name: variable name \"anyObject\" is reserved"),
        "{errors:?}"
    );

    let errors: Vec<String> = compile(
        &template("deny", "").replace("variables.label in", "variables.label in in"),
        false,
    )
    .built
    .errors
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(
        errors[0].contains("code[0].source.validations[0].expression"),
        "{errors:?}"
    );
}

#[test]
fn a_cel_only_template_runs_its_cel() {
    let only = template("deny", "");
    let cut = only.find("    - engine: Rego").expect("rego block");
    let end = only.find("---").expect("constraint");
    let only = format!("{}{}", &only[..cut], &only[end..]);
    for prefer_rego in [false, true] {
        let p = load(&only, prefer_rego);
        let review = Review::for_object(pod(json!({})), None, Operation::Create);
        assert_eq!(messages(p.as_ref(), &review).len(), 1);
    }
}

#[test]
fn lint_refuses_an_unknown_method_in_a_template_at_its_field() {
    let errors: Vec<String> = compile(
        &template("deny", "").replace(
            "variables.anyObject.metadata.name + ' ('",
            "variables.anyObject.metadata.name.lowerAsci() + ' ('",
        ),
        false,
    )
    .built
    .errors
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(
        errors.iter().any(
            |e| e.contains("code[0].source.validations[0].messageExpression")
                && e.contains("unknown method lowerAsci (did you mean lowerAscii?)")
        ),
        "{errors:?}"
    );
}
