use policyctl_core::admission::Operation;
use policyctl_core::policy::source::documents;
use policyctl_core::policy::{EvalError as PolicyEvalError, SourceFile};
use serde_json::json;

use super::*;

fn build(yaml: &str) -> Built {
    let (docs, errors) = documents(&SourceFile {
        origin: "vap.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    let engine = ValidatingAdmissionPolicyEngine;
    let kinds = engine.param_kinds(&docs);
    let (claimed, params): (Vec<Document>, Vec<Document>) = docs
        .into_iter()
        .partition(|d| engine.claims(&d.api_version, &d.kind));
    assert!(params
        .iter()
        .all(|d| kinds.contains(&(d.api_version.clone(), d.kind.clone()))));
    engine.build(
        EngineInput {
            documents: claimed,
            params,
            ..EngineInput::default()
        },
        &LoadOptions::default(),
    )
}

fn load(yaml: &str) -> (Arc<dyn Policy>, Vec<String>) {
    let built = build(yaml);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(built.policies.len(), 1);
    let warnings = built.warnings.iter().map(ToString::to_string).collect();
    (built.policies[0].clone(), warnings)
}

fn explain() -> EvalContext {
    EvalContext {
        explain: true,
        ..EvalContext::default()
    }
}

fn deployment(name: &str, ns: &str, replicas: i64, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": replicas}})
}

fn eval(p: &Arc<dyn Policy>, object: Value) -> Evaluation {
    p.validate(
        &Review::for_object(object, None, Operation::Create),
        &explain(),
    )
}

const POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: replicas}
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
  validations:
  - expression: object.spec.replicas <= 2
  - expression: "has(object.metadata.labels.team)"
    messageExpression: "'no team on ' + object.metadata.name"
    reason: Forbidden
"#;

const BINDING: &str = r#"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: replicas-binding}
spec:
  policyName: replicas
  validationActions: [ACTIONS]
  matchResources:
    objectSelector:
      matchLabels: {app: nginx}
"#;

#[test]
fn a_binding_selects_and_its_actions_word_the_violations_as_the_api_server() {
    let (p, warnings) = load(&format!("{POLICY}{}", BINDING.replace("ACTIONS", "Deny")));
    assert!(warnings.is_empty(), "{warnings:?}");
    let e = eval(&p, deployment("d", "default", 3, json!({"app": "nginx"})));
    assert!(e.applied);
    assert_eq!(e.violations.len(), 1);
    assert_eq!(e.violations[0].action, Action::Deny);
    assert_eq!(
        e.violations[0].message,
        "ValidatingAdmissionPolicy 'replicas' with binding 'replicas-binding' denied request: \
         failed expression: object.spec.replicas <= 2"
    );
    assert_eq!(e.rules[0].rule, "replicas-binding");
    assert_eq!(e.rules[0].status, RuleStatus::Fail);

    let e = eval(&p, deployment("d", "default", 1, json!({"app": "nginx"})));
    assert_eq!(
        e.violations[0].message,
        "ValidatingAdmissionPolicy 'replicas' with binding 'replicas-binding' denied request: no team on d"
    );
    let e = eval(
        &p,
        deployment("d", "default", 1, json!({"app": "nginx", "team": "a"})),
    );
    assert!(e.applied && e.violations.is_empty());
    assert_eq!(e.rules[0].status, RuleStatus::Pass);

    // The binding's objectSelector does not match: not evaluated.
    let e = eval(&p, deployment("d", "default", 3, json!({"app": "busybox"})));
    assert!(!e.applied && e.violations.is_empty());
    assert_eq!(e.rules[0].status, RuleStatus::Skip);
    assert_eq!(
        e.rules[0].message,
        "the binding's matchResources do not match"
    );
    // The policy's constraints do not match a Pod.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "nginx"}}});
    assert!(!eval(&p, pod).applied);

    let (p, _) = load(&format!(
        "{POLICY}{}",
        BINDING.replace("ACTIONS", "Warn, Audit")
    ));
    let e = eval(&p, deployment("d", "default", 3, json!({"app": "nginx"})));
    let actions: Vec<Action> = e.violations.iter().map(|v| v.action).collect();
    assert_eq!(actions, [Action::Warn, Action::Audit]);
    assert!(e.violations[0].message.starts_with(
        "Validation failed for ValidatingAdmissionPolicy 'replicas' with binding 'replicas-binding': "
    ));
}

#[test]
fn unbound_policies_and_orphan_bindings_are_warnings() {
    let (p, warnings) = load(POLICY);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("no ValidatingAdmissionPolicyBinding binds this policy"),
        "{warnings:?}"
    );
    // Still enforced, with Deny.
    let e = eval(&p, deployment("d", "default", 3, json!({})));
    assert_eq!(e.violations[0].action, Action::Deny);
    assert!(e.violations[0]
        .message
        .starts_with("ValidatingAdmissionPolicy 'replicas' denied request: "));

    let built = build(&BINDING.replace("ACTIONS", "Deny"));
    assert!(built.policies.is_empty() && built.errors.is_empty());
    assert!(built.warnings[0]
        .to_string()
        .contains("no ValidatingAdmissionPolicy named \"replicas\""));
}

#[test]
fn binding_match_resources_intersect_with_the_policy() {
    let yaml = format!(
        "{POLICY}{}",
        r#"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: b}
spec:
  policyName: replicas
  validationActions: [Deny]
  matchResources:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [deployments]
      resourceNames: [only-me]
    excludeResourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [deployments]
      resourceNames: [not-me]
"#
    );
    let (p, _) = load(&yaml);
    assert!(eval(&p, deployment("only-me", "default", 3, json!({}))).applied);
    assert!(!eval(&p, deployment("other", "default", 3, json!({}))).applied);
}

#[test]
fn match_policy_equivalent_is_the_default_and_exact_is_honoured() {
    let older = POLICY.replace("apiVersions: [v1]", "apiVersions: [v1beta2]");
    let (p, _) = load(&older);
    assert!(eval(&p, deployment("d", "default", 3, json!({}))).applied);
    let exact = older.replace(
        "  matchConstraints:\n",
        "  matchConstraints:\n    matchPolicy: Exact\n",
    );
    let (p, _) = load(&exact);
    assert!(!eval(&p, deployment("d", "default", 3, json!({}))).applied);
}

const PARAM_POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: limits}
spec:
  failurePolicy: FP
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [deployments]
  validations:
  - expression: "object.spec.replicas <= int(params.data.max)"
    messageExpression: "'at most ' + params.data.max + ' replicas'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: limits-binding}
spec:
  policyName: limits
  validationActions: [Deny]
  paramRef: PARAMREF
---
apiVersion: v1
kind: ConfigMap
metadata: {name: small, namespace: default, labels: {tier: a}}
data: {max: "2"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: large, namespace: default, labels: {tier: a}}
data: {max: "5"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: elsewhere, namespace: other, labels: {tier: a}}
data: {max: "0"}
"#;

fn param_policy(param_ref: &str, failure: &str) -> Arc<dyn Policy> {
    load(
        &PARAM_POLICY
            .replace("PARAMREF", param_ref)
            .replace("FP", failure),
    )
    .0
}

#[test]
fn params_come_from_the_policy_set_by_name_or_selector() {
    let p = param_policy("{name: large}", "Fail");
    let e = eval(&p, deployment("d", "default", 4, json!({})));
    assert!(e.applied && e.violations.is_empty(), "{:?}", e);
    let e = eval(&p, deployment("d", "default", 6, json!({})));
    assert!(e.violations[0]
        .message
        .ends_with("denied request: at most 5 replicas"));

    // A selector: one evaluation per param (in the request's namespace).
    let p = param_policy("{selector: {matchLabels: {tier: a}}}", "Fail");
    let e = eval(&p, deployment("d", "default", 4, json!({})));
    assert_eq!(e.violations.len(), 1, "{:?}", e.violations);
    assert!(e.violations[0].message.ends_with("at most 2 replicas"));
    assert_eq!(e.rules.len(), 2);

    // paramRef.namespace picks another namespace.
    let p = param_policy("{name: elsewhere, namespace: other}", "Fail");
    let e = eval(&p, deployment("d", "default", 1, json!({})));
    assert!(e.violations[0].message.ends_with("at most 0 replicas"));
}

#[test]
fn params_not_found_follow_the_parameter_not_found_action() {
    let p = param_policy("{name: missing}", "Fail");
    let e = eval(&p, deployment("d", "default", 1, json!({})));
    assert!(e.applied && e.violations.is_empty());
    assert_eq!(e.errors.len(), 1);
    assert!(matches!(&e.errors[0].error, PolicyEvalError::Engine(m)
        if m.contains("no params found for policy binding with `Deny` parameterNotFoundAction")));
    assert_eq!(p.info().failure_policy, Some(FailurePolicy::Fail));

    let p = param_policy("{name: missing, parameterNotFoundAction: Allow}", "Ignore");
    let e = eval(&p, deployment("d", "default", 1, json!({})));
    assert!(e.applied && e.violations.is_empty() && e.errors.is_empty());
    assert_eq!(e.rules[0].status, RuleStatus::Pass);
    assert_eq!(p.info().failure_policy, Some(FailurePolicy::Ignore));
}

#[test]
fn conditions_variables_namespace_object_and_audit_annotations() {
    let yaml = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: ns}
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [deployments]
  matchConditions:
  - name: labelled
    expression: "has(object.metadata.labels) && 'app' in object.metadata.labels"
  variables:
  - name: nsName
    expression: namespaceObject.metadata.name
  validations:
  - expression: "variables.nsName != 'default'"
    message: "  not in default  "
  auditAnnotations:
  - key: replicas
    valueExpression: "'replicas: ' + string(object.spec.replicas)"
  - key: empty
    valueExpression: "null"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: b}
spec: {policyName: ns, validationActions: [Deny]}
"#;
    let (p, _) = load(yaml);
    let e = eval(&p, deployment("d", "default", 3, json!({"app": "x"})));
    let messages: Vec<(Action, &str)> = e
        .violations
        .iter()
        .map(|v| (v.action, v.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (
                Action::Deny,
                "ValidatingAdmissionPolicy 'ns' with binding 'b' denied request: not in default"
            ),
            (Action::Audit, "ns/replicas: replicas: 3"),
        ]
    );
    let e = eval(&p, deployment("d", "prod", 3, json!({"app": "x"})));
    assert_eq!(e.violations.len(), 1);
    assert_eq!(e.violations[0].action, Action::Audit);
    // matchConditions not met: nothing, not even audit annotations.
    let e = eval(&p, deployment("d", "default", 3, json!({})));
    assert!(!e.applied && e.violations.is_empty());
    assert_eq!(e.rules[0].status, RuleStatus::Skip);
}

#[test]
fn load_errors_name_the_field() {
    let errors = |yaml: &str| -> Vec<String> {
        build(yaml).errors.iter().map(ToString::to_string).collect()
    };
    let e = errors(&POLICY.replace("validations:", "validatons:"));
    assert!(e[0].contains("spec.validatons"), "{e:?}");
    let e = errors(&format!(
        "{POLICY}{}",
        BINDING.replace("ACTIONS", "Deny, Warn")
    ));
    assert!(
        e[0].contains("Deny and Warn may not be used together"),
        "{e:?}"
    );
    let built = build(&format!("{POLICY}{}", BINDING.replace("ACTIONS", "")));
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert!(built.warnings[0].to_string().contains(
        "no validation actions (the API server requires at least one): policyctl uses [Deny]"
    ));
    let e = errors(&POLICY.replace("object.spec.replicas <= 2", "object.spec.replicas <="));
    assert!(e[0].contains("spec.validations[0].expression"), "{e:?}");
    let e = errors(&POLICY.replace("reason: Forbidden", "reason: Nope"));
    assert!(e[0].contains("spec.validations[1].reason"), "{e:?}");
    let e = errors(
        &PARAM_POLICY
            .replace("PARAMREF", "{name: a, selector: {}}")
            .replace("FP", "Fail"),
    );
    assert!(e[0].contains("exactly one of name and selector"), "{e:?}");
}

#[test]
fn a_validation_reason_is_carried_to_the_violation() {
    let (p, _) = load(&format!(
        "{}{}",
        POLICY.replace("reason: Forbidden", "reason: Invalid"),
        BINDING.replace("ACTIONS", "Deny")
    ));
    let e = eval(&p, deployment("d", "default", 1, json!({"app": "nginx"})));
    assert_eq!(e.violations.len(), 1);
    assert_eq!(
        e.violations[0].reason,
        Some(policyctl_core::admission::Reason::Invalid)
    );
    // A validation without a reason leaves the default (Forbidden) to the response.
    let e = eval(&p, deployment("d", "default", 3, json!({"app": "nginx"})));
    assert_eq!(e.violations[0].reason, None);
}

/// The names of the policies `set` offers `review` (the selection index, before any engine matching).
fn offered(set: &policyctl_core::policy::PolicySet, review: &Review) -> Vec<String> {
    set.select(review)
        .iter()
        .map(|p| p.info().name.clone())
        .collect()
}

fn set_of(yamls: &[&str]) -> policyctl_core::policy::PolicySet {
    let policies = yamls.iter().map(|y| load(y).0).collect();
    policyctl_core::policy::PolicySet::new(policies, 1, String::new())
}

fn create(object: Value) -> Review {
    Review::for_object(object, None, Operation::Create)
}

#[test]
fn the_index_offers_a_policy_only_the_resources_of_its_rules() {
    let scaled = POLICY
        .replace("{name: replicas}", "{name: scaled}")
        .replace("resources: [deployments]", "resources: ['*/scale']")
        .replace("apiGroups: [apps]", "apiGroups: ['*']");
    let set = set_of(&[POLICY, &scaled]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}});
    assert!(offered(&set, &create(pod)).is_empty());
    let d = deployment("d", "default", 3, json!({}));
    assert_eq!(offered(&set, &create(d.clone())), ["replicas"]);
    // Not on DELETE (the rule names CREATE and UPDATE).
    assert!(offered(
        &set,
        &Review::for_object(d.clone(), None, Operation::Delete)
    )
    .is_empty());
    // A subresource request is offered the subresource rule only.
    let scale = create(d).with_resource(
        policyctl_core::admission::Gvr {
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
        },
        Some("scale".into()),
    );
    assert_eq!(offered(&set, &scale), ["scaled"]);
}

#[test]
fn the_index_offers_every_version_and_equivalent_still_matches() {
    // The rule names v1 only; a v1beta2 request is still offered, and matches under the default Equivalent.
    let set = set_of(&[POLICY]);
    let mut old = deployment("d", "default", 3, json!({}));
    old["apiVersion"] = json!("apps/v1beta2");
    let review = create(old);
    assert_eq!(review.resource.version, "v1beta2");
    let selected = set.select(&review);
    assert_eq!(selected.len(), 1);
    let e = selected[0].validate(&review, &explain());
    assert!(e.applied && !e.violations.is_empty(), "{e:?}");
}
