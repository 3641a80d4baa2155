//! `validate.cel` and `celPreconditions`.
use super::*;
use crate::admission::Operation;
use crate::policy::source::documents;
use crate::policy::{Check, SourceFile};
use serde_json::json;

fn load_with_warnings(yaml: &str) -> (KyvernoPolicy, Vec<LoadError>) {
    let (docs, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    KyvernoPolicy::from_document(&docs[0]).expect("policy")
}

fn load(yaml: &str) -> KyvernoPolicy {
    let (p, warnings) = load_with_warnings(yaml);
    assert!(warnings.is_empty(), "{warnings:?}");
    p
}

fn apply(
    policy: &KyvernoPolicy,
    review: &Review,
    deadline: Option<std::time::Instant>,
) -> PolicyResponse {
    let user = UserContext::default();
    let mocks = Mocks::default();
    let labels: Map<String, Value> = [("team".to_string(), json!("a"))].into_iter().collect();
    let options = ApplyOptions {
        user: &user,
        namespace_labels: Some(&labels),
        lookups: Lookups::Mocks(&mocks),
        part: Part::All,
        deadline,
    };
    policy.apply(review, &options, Some(&mocks))
}

fn run(policy: &KyvernoPolicy, object: Value) -> PolicyResponse {
    apply(
        policy,
        &Review::for_object(object, None, Operation::Create),
        None,
    )
}

fn pod(name: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": containers}})
}

const POLICY: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: images}
spec:
  validationFailureAction: Enforce
  rules:
  - name: tags
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      message: "rule-level message"
      cel:
        variables:
        - name: images
          expression: "object.spec.containers.map(c, c.image)"
        - name: unused
          expression: "1 / 0"
        expressions:
        - expression: "variables.images.all(i, i.contains(':'))"
          messageExpression: "'image of ' + object.metadata.name + ' needs a tag'"
        - expression: "!variables.images.exists(i, i.endsWith(':latest'))"
          message: "latest is not allowed"
        - expression: "namespaceObject.metadata.labels.team == 'a' && request.operation == 'CREATE'"
        - expression: "object.spec.containers.all(c, c.name != 'forbidden')"
        - expression: "object.metadata.labels.owner != ''"
"#;

#[test]
fn validate_cel_runs_expressions_in_order_with_kyverno_messages() {
    let p = load(POLICY);
    let names: Vec<&str> = p.rules().iter().map(|r| r.spec.name.as_str()).collect();
    assert_eq!(names, ["tags", "autogen-tags", "autogen-cronjob-tags"]);
    assert!(p.validates());

    let r = run(&p, pod("p", &["nginx"]));
    assert_eq!(r.rules.len(), 1);
    assert_eq!(r.rules[0].status, RuleStatus::Fail);
    assert_eq!(r.rules[0].message, "image of p needs a tag");

    let r = run(&p, pod("p", &["nginx:1", "nginx:latest"]));
    assert_eq!(
        (r.rules[0].status, r.rules[0].message.as_str()),
        (RuleStatus::Fail, "latest is not allowed")
    );

    // A CEL runtime error fails the rule (Kyverno's validator denies on errors, failure policy Fail).
    let r = run(&p, pod("p", &["nginx:1"]));
    assert_eq!(r.rules[0].status, RuleStatus::Fail);
    assert!(
        r.rules[0].message.contains("resulted in error") && r.rules[0].message.contains("owner"),
        "{}",
        r.rules[0].message
    );

    let mut good = pod("p", &["nginx:1"]);
    good["metadata"]["labels"]["owner"] = json!("me");
    let r = run(&p, good.clone());
    assert_eq!(
        (r.rules[0].status, r.rules[0].message.as_str()),
        (RuleStatus::Pass, "Validation rule 'tags' passed.")
    );

    // Without message or messageExpression: the rule's validate.message.
    good["spec"]["containers"][0]["name"] = json!("forbidden");
    let r = run(&p, good);
    assert_eq!(r.rules[0].message, "rule-level message");
}

#[test]
fn validate_cel_autogen_reads_the_pod_template() {
    let p = load(POLICY);
    let template = |image: &str| {
        json!({"metadata": {"labels": {"owner": "me"}},
               "spec": {"containers": [{"name": "c", "image": image}]}})
    };
    let deployment = |image: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "namespace": "default"},
               "spec": {"template": template(image)}})
    };
    let r = run(&p, deployment("nginx:1"));
    assert_eq!(r.rules[0].name, "autogen-tags");
    assert_eq!(
        r.rules[0].status,
        RuleStatus::Pass,
        "{}",
        r.rules[0].message
    );
    let r = run(&p, deployment("nginx:latest"));
    assert_eq!(r.rules[0].status, RuleStatus::Fail);
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "j", "namespace": "default"},
        "spec": {"jobTemplate": {"spec": {"template": template("nginx")}}}});
    let r = run(&p, cronjob);
    assert_eq!(r.rules[0].name, "autogen-cronjob-tags");
    // Autogen rewrites `object.metadata` to the template's metadata too, as Kyverno does: the template has no name,
    // so the messageExpression fails and the rule-level message is used (Kyverno behaves the same, kyverno#15591).
    assert_eq!(r.rules[0].status, RuleStatus::Fail);
    assert_eq!(r.rules[0].message, "rule-level message");
}

#[test]
fn cel_preconditions_skip_and_delete_is_not_validated() {
    let yaml = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: lb, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  validationFailureAction: Enforce
  rules:
  - name: lb-annotation
    match: {any: [{resources: {kinds: [Service]}}]}
    celPreconditions:
    - name: is-lb
      expression: "object.spec.type == 'LoadBalancer'"
    validate:
      cel:
        expressions:
        - expression: "object.metadata.?annotations[?'cert'].orValue('') != ''"
"#;
    let p = load(yaml);
    let svc = |t: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": t}});
    let r = run(&p, svc("ClusterIP"));
    assert_eq!(
        (r.rules[0].status, r.rules[0].message.as_str()),
        (RuleStatus::Skip, "cel preconditions not met")
    );
    let r = run(&p, svc("LoadBalancer"));
    assert_eq!(r.rules[0].status, RuleStatus::Fail);
    assert!(
        r.rules[0].message.starts_with("failed expression: "),
        "{}",
        r.rules[0].message
    );
    let delete = Review::for_object(svc("LoadBalancer"), None, Operation::Delete);
    assert!(apply(&p, &delete, None).rules.is_empty());
}

#[test]
fn cost_budget_and_deadline_are_rule_errors_never_passes() {
    let yaml = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: quadratic, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  validationFailureAction: Enforce
  rules:
  - name: unique-names
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      cel:
        expressions:
        - expression: "object.spec.containers.all(c, object.spec.containers.exists_one(d, d.name == c.name)) || true"
"#;
    let p = load(yaml);
    let images: Vec<String> = (0..5000).map(|i| format!("nginx:{i}")).collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let big = pod("big", &images);
    let r = run(&p, big.clone());
    assert_eq!(r.rules[0].status, RuleStatus::Error);
    assert!(
        r.rules[0].message.contains("cost limit exceeded"),
        "{}",
        r.rules[0].message
    );
    // Enforced: the error goes to the failure policy (deny under Fail), it is never an allow.
    let review = Review::for_object(big, None, Operation::Create);
    assert!(p.check(&review, &EvalContext::default()).is_err());

    let small = Review::for_object(pod("s", &["a:1", "b:1"]), None, Operation::Create);
    assert_eq!(apply(&p, &small, None).rules[0].status, RuleStatus::Pass);
    let past = std::time::Instant::now() - std::time::Duration::from_millis(1);
    let r = apply(&p, &small, Some(past));
    assert_eq!(r.rules[0].status, RuleStatus::Error);
}

#[test]
fn cel_that_does_not_compile_is_a_load_error_at_its_field() {
    let yaml = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: broken}
spec:
  rules:
  - name: syntax
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      cel:
        expressions:
        - expression: "true"
        - expression: "object.spec.containers.all(c,"
  - name: precondition
    match: {any: [{resources: {kinds: [Pod]}}]}
    celPreconditions:
    - {name: p, expression: "object.metadata.name =="}
    validate:
      cel:
        expressions:
        - expression: "true"
"#;
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    let errors = match KyvernoPolicy::from_document(&docs[0]) {
        Ok(_) => panic!("a policy whose CEL does not compile must not load"),
        Err(errors) => errors,
    };
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e.field.as_deref().unwrap_or(""))
        .collect();
    // Once each, at the exact field; the autogen rules (Pod controllers) repeat nothing.
    assert_eq!(
        fields,
        [
            "spec.rules[syntax].validate.cel.expressions[1].expression",
            "spec.rules[precondition].celPreconditions[0].expression"
        ],
        "{errors:?}"
    );
    assert!(errors[0].message.contains("does not compile"), "{errors:?}");
}

#[test]
fn cel_with_parameter_resources_is_unsupported_with_a_warning() {
    let yaml = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: params, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  rules:
  - name: params
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      cel:
        paramKind: {apiVersion: v1, kind: ConfigMap}
        paramRef: {name: p}
        expressions:
        - expression: "true"
"#;
    let (p, warnings) = load_with_warnings(yaml);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        format!("{warnings:?}").contains("paramKind"),
        "{warnings:?}"
    );
    let r = run(&p, pod("p", &["a:1"]));
    assert!(r.rules.iter().all(|r| r.status == RuleStatus::Unsupported));
}
