//! Kyverno policies through the whole pipeline: load from files, select, evaluate, decide.

use std::path::Path;

use kube::core::admission::Operation;
use policyctl::admission::Review;
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader::compile;
use policyctl::policy::{PolicySet, SourceFile};
use serde_json::{json, Value};

fn set() -> PolicySet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kyverno/policies.yaml");
    let content = std::fs::read_to_string(&path).expect("fixture");
    compiled_set(&path.display().to_string(), &content)
}

/// The set of one policy file, which must load without errors.
fn compiled_set(origin: &str, content: &str) -> PolicySet {
    let compiled = compile(
        &[SourceFile {
            origin: origin.into(),
            content: content.into(),
        }],
        &LoadOptions::default(),
    );
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    compiled.into_set(1).expect("set")
}

fn pod(image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": image}]}})
}

#[test]
fn enforce_policy_denies_a_latest_image() {
    let review = Review::for_object(pod("nginx:latest"), None, Operation::Create);
    let decision = pipeline::run(&set(), &review, Webhook::Validate, &Settings::default());
    assert!(!decision.allowed);
    assert_eq!(decision.denials.len(), 1, "{:?}", decision.denials);
    let message = &decision.denials[0];
    assert!(message.contains("[disallow-latest]"), "{message}");
    assert!(
        message
            .contains("require-tag: validation error: An image tag other than latest is required."),
        "{message}"
    );
}

#[test]
fn a_tagged_image_is_allowed() {
    let review = Review::for_object(pod("nginx:1.27"), None, Operation::Create);
    let decision = pipeline::run(&set(), &review, Webhook::Validate, &Settings::default());
    assert!(decision.allowed, "{:?}", decision.denials);
    assert!(decision.errors.is_empty(), "{:?}", decision.errors);
}

#[test]
fn mutation_patch_gives_the_expected_object() {
    let original = pod("nginx:1.27");
    let review = Review::for_object(original.clone(), None, Operation::Create);
    let decision = pipeline::run(&set(), &review, Webhook::Mutate, &Settings::default());
    assert!(decision.allowed);
    let patch = decision.patch.expect("a patch");
    let mut patched = original;
    json_patch::patch(&mut patched, &patch).expect("patch applies");
    let mut expected = pod("nginx:1.27");
    expected["metadata"]["labels"] = json!({"team": "platform"});
    expected["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    assert_eq!(patched, expected);
}

#[test]
fn kyverno_test_files_run_with_pass_fail_skip_and_unsupported() {
    use policyctl::testing::{self, Outcome, TestOptions};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kyverno/.kyverno-test");
    let cases = testing::run(&[dir], &TestOptions::default());
    let outcome = |test: &str, case: &str| {
        cases
            .iter()
            .find(|c| c.test == test && c.case == case)
            .map(|c| (c.result, c.reason.clone()))
            .unwrap_or_else(|| panic!("no case {test} {case}: {cases:?}"))
    };
    assert_eq!(
        outcome("disallow-latest/require-tag", "bad").0,
        Outcome::Pass
    );
    assert_eq!(
        outcome("disallow-latest/require-tag", "good-deploy").0,
        Outcome::Pass,
        "autogen rule name"
    );
    let (result, reason) = outcome("disallow-latest/require-tag", "good");
    assert_eq!(result, Outcome::Fail);
    assert!(reason.contains("want fail, got pass"), "{reason}");
    assert_eq!(
        outcome("disallow-latest/require-tag", "svc").0,
        Outcome::Skip,
        "not matched is never a pass"
    );
    let (result, reason) = outcome("add-defaults/team-label", "good");
    assert_eq!(
        result,
        Outcome::Fail,
        "the patched file expects another label"
    );
    assert!(
        reason.contains("/metadata/labels/team: expected \"other\", got \"platform\""),
        "{reason}"
    );
    let (result, reason) = outcome("add-defaults/team-label", "bad");
    assert_eq!(
        result,
        Outcome::Fail,
        "a PolicyException turns the rule into a skip: {reason}"
    );
    assert!(reason.contains("want pass, got skip"), "{reason}");
    let (result, reason) = outcome("disallow-latest/require-tag", "default/bad");
    assert_eq!(
        result,
        Outcome::Skip,
        "no pattern validation on DELETE: {reason}"
    );
    assert_eq!(outcome("cel-policy/", "good").0, Outcome::Unsupported);
}

/// A policy built from YAML text, alone in its set.
fn set_of(yaml: &str) -> PolicySet {
    compiled_set("inline.yaml", yaml)
}

const BROKEN_MUTATION: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: add-owner
spec:
  failurePolicy: FAILURE_POLICY
  rules:
    - name: owner-from-annotation
      match:
        any:
          - resources:
              kinds: [Pod]
      mutate:
        patchStrategicMerge:
          metadata:
            labels:
              owner: "{{ request.object.metadata.annotations.owner }}"
    - name: team
      match:
        any:
          - resources:
              kinds: [Pod]
      mutate:
        patchStrategicMerge:
          metadata:
            labels:
              team: platform
"#;

#[test]
fn a_mutate_rule_error_under_ignore_is_a_warning_not_silence() {
    let set = set_of(&BROKEN_MUTATION.replace("FAILURE_POLICY", "Ignore"));
    let original = pod("nginx:1.27");
    let review = Review::for_object(original.clone(), None, Operation::Create);
    let decision = pipeline::run(&set, &review, Webhook::Mutate, &Settings::default());
    assert!(decision.allowed, "{:?}", decision.denials);
    assert_eq!(decision.errors.len(), 1, "{:?}", decision.errors);
    assert!(
        decision.errors[0].starts_with("[add-owner] owner-from-annotation: "),
        "{:?}",
        decision.errors
    );
    assert_eq!(decision.warnings.len(), 1, "{:?}", decision.warnings);
    assert!(
        decision.warnings[0].starts_with("[add-owner] policy skipped (failure policy Ignore): "),
        "{:?}",
        decision.warnings
    );
    // What the other rule changed is kept.
    let mut patched = original;
    json_patch::patch(&mut patched, decision.patch.as_ref().expect("a patch")).expect("applies");
    assert_eq!(patched["metadata"]["labels"], json!({"team": "platform"}));
    assert_eq!(run_labels(&decision), ["error", "mutate"]);

    // Under Fail the same error denies.
    let set = set_of(&BROKEN_MUTATION.replace("FAILURE_POLICY", "Fail"));
    let decision = pipeline::run(&set, &review, Webhook::Mutate, &Settings::default());
    assert!(!decision.allowed);
    assert!(decision.response().patch.is_none());
}

fn run_labels(decision: &policyctl::decide::Decision) -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = decision
        .runs
        .iter()
        .flat_map(|r| r.outcome.labels())
        .collect();
    labels.sort();
    labels
}

#[test]
fn a_policy_that_does_not_match_is_a_skip_not_a_pass() {
    let review = Review::for_object(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}),
        None,
        Operation::Create,
    );
    let set = set_of(&BROKEN_MUTATION.replace("FAILURE_POLICY", "Fail").replace(
        "kinds: [Pod]",
        "kinds: [Pod, ConfigMap]\n              namespaces: [other]",
    ));
    let decision = pipeline::run(&set, &review, Webhook::Mutate, &Settings::default());
    assert!(decision.allowed);
    assert_eq!(run_labels(&decision), ["skip"]);
}

const LATEST_WITH_EXCEPTION: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: no-latest
spec:
  validationFailureAction: Enforce
  rules:
    - name: require-tag
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: "An image tag other than latest is required."
        pattern:
          spec:
            containers:
              - image: "!*:latest"
---
apiVersion: kyverno.io/v2
kind: PolicyException
metadata:
  name: legacy-apps
  namespace: kyverno
spec:
  exceptions:
    - policyName: no-latest
      ruleNames: [require-tag]
  match:
    any:
      - resources:
          kinds: [Pod, Deployment]
          namespaces: [legacy]
"#;

#[test]
fn a_policy_exception_loads_and_applies_in_the_webhook_pipeline() {
    let set = set_of(LATEST_WITH_EXCEPTION);
    let in_namespace = |ns: &str| {
        let mut p = pod("nginx:latest");
        p["metadata"]["namespace"] = json!(ns);
        Review::for_object(p, None, Operation::Create)
    };
    let excepted = pipeline::run(
        &set,
        &in_namespace("legacy"),
        Webhook::Validate,
        &Settings::default(),
    );
    assert!(excepted.allowed, "{:?}", excepted.denials);
    assert_eq!(
        run_labels(&excepted),
        ["skip"],
        "an excepted rule is a skip"
    );
    let denied = pipeline::run(
        &set,
        &in_namespace("default"),
        Webhook::Validate,
        &Settings::default(),
    );
    assert!(!denied.allowed);
    // The autogen rule of a Deployment is excepted through the rule it came from (the exception must match the
    // Deployment itself, as in Kyverno).
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "legacy"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}}}});
    let review = Review::for_object(deployment, None, Operation::Create);
    let decision = pipeline::run(&set, &review, Webhook::Validate, &Settings::default());
    assert!(decision.allowed, "{:?}", decision.denials);
}

#[test]
fn a_policy_exception_with_conditions_is_refused_rather_than_over_broad() {
    let text = LATEST_WITH_EXCEPTION.replace(
        "  match:\n    any:\n      - resources:\n          kinds: [Pod, Deployment]\n          namespaces: [legacy]\n",
        "  match:\n    any:\n      - resources:\n          kinds: [Pod]\n  conditions:\n    any:\n      - key: a\n        operator: Equals\n        value: a\n",
    );
    let compiled = compile(
        &[SourceFile {
            origin: "inline.yaml".into(),
            content: text,
        }],
        &LoadOptions::default(),
    );
    let errors: Vec<String> = compiled
        .built
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("spec.conditions"), "{errors:?}");
}

#[test]
fn a_misspelled_filter_of_a_policy_exception_is_refused_rather_than_over_broad() {
    // `namespace:` for `namespaces:` would be ignored and the exception would exempt every namespace.
    let text = LATEST_WITH_EXCEPTION.replace("namespaces: [legacy]", "namespace: [legacy]");
    let compiled = compile(
        &[SourceFile {
            origin: "inline.yaml".into(),
            content: text,
        }],
        &LoadOptions::default(),
    );
    let errors: Vec<String> = compiled
        .built
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errors,
        ["inline.yaml, document 2: spec.match.any[0].resources.namespace: unknown field \"namespace\" \
          (did you mean \"namespaces\"?)"]
    );
}

#[test]
fn pod_security_rules_run_in_kyverno_tests_and_in_the_webhook() {
    use policyctl::testing::{self, Outcome, TestOptions};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kyverno-pss");
    let cases = testing::run(&[root.join(".kyverno-test")], &TestOptions::default());
    assert_eq!(cases.len(), 4, "{cases:?}");
    assert!(cases.iter().all(|c| c.result == Outcome::Pass), "{cases:?}");

    let path = root.join("policy.yaml");
    let content = std::fs::read_to_string(&path).expect("fixture");
    let set = compiled_set(&path.display().to_string(), &content);
    let review = |spec: Value| {
        Review::for_object(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
            None,
            Operation::Create,
        )
    };
    let denied = pipeline::run(
        &set,
        &review(
            json!({"containers": [{"name": "c", "image": "nginx", "securityContext": {"privileged": true}}]}),
        ),
        Webhook::Validate,
        &Settings::default(),
    );
    assert!(!denied.allowed);
    let text = format!("{:?}", denied.denials);
    assert!(
        text.contains("It violates PodSecurity \\\"restricted:latest\\\"")
            && text.contains("privileged"),
        "{text}"
    );
    let allowed = pipeline::run(
        &set,
        &review(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "nginx", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        })),
        Webhook::Validate,
        &Settings::default(),
    );
    assert!(allowed.allowed, "{:?}", allowed.denials);
}

#[test]
fn a_result_that_names_nothing_is_reported_never_dropped() {
    use policyctl::testing::{self, Outcome, TestOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = "apiVersion: policies.kyverno.io/v1alpha1\nkind: ValidatingPolicy\nmetadata: {name: p}\nspec:\n  \
                  matchConstraints:\n    resourceRules:\n    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods]}\n  \
                  validations:\n  - expression: 'true'\n";
    std::fs::write(dir.path().join("policy.yaml"), policy).expect("write");
    // No resources at all: an error case (it checked nothing).
    std::fs::write(
        dir.path().join("kyverno-test.yaml"),
        "apiVersion: cli.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\npolicies: [policy.yaml]\n\
         results:\n- {policy: p, kind: Pod, isValidatingPolicy: true, result: pass}\n",
    )
    .expect("write");
    let cases = testing::run(&[dir.path().to_path_buf()], &TestOptions::default());
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].result, Outcome::Error, "{cases:?}");
    // A payload file that is not there: an error naming it.
    std::fs::write(
        dir.path().join("kyverno-test.yaml"),
        "apiVersion: cli.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\npolicies: [policy.yaml]\n\
         jsonPayloads: [payload.json]\nresults:\n- {policy: p, kind: '', result: pass}\n",
    )
    .expect("write");
    let cases = testing::run(&[dir.path().to_path_buf()], &TestOptions::default());
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].result, Outcome::Error, "{cases:?}");
    assert!(
        cases[0].reason.contains("jsonPayloads file payload.json"),
        "{cases:?}"
    );
    // A payload a Kubernetes-mode policy meets: a skip (the policy does not check payloads), never a pass.
    std::fs::write(dir.path().join("payload.json"), r#"{"name": "x"}"#).expect("write");
    let cases = testing::run(&[dir.path().to_path_buf()], &TestOptions::default());
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].result, Outcome::Skip, "{cases:?}");
    assert_eq!(cases[0].case, "payload.json", "{cases:?}");
}

#[test]
fn a_cel_policy_that_does_not_load_is_an_error_case_not_an_unsupported_kind() {
    use policyctl::testing::{self, Outcome, TestOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    // A method typo lint refuses at load.
    let policy = "apiVersion: policies.kyverno.io/v1\nkind: ValidatingPolicy\nmetadata: {name: p}\nspec:\n  \
                  matchConstraints:\n    resourceRules:\n    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [pods]}\n  \
                  validations:\n  - expression: \"object.metadata.name.startWith('a')\"\n";
    std::fs::write(dir.path().join("policy.yaml"), policy).expect("write");
    std::fs::write(
        dir.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: default}\nspec:\n  containers: [{name: c, image: nginx}]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("kyverno-test.yaml"),
        "apiVersion: cli.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\npolicies: [policy.yaml]\n\
         resources: [pod.yaml]\nresults:\n- {policy: p, kind: Pod, resources: [a], isValidatingPolicy: true, result: pass}\n",
    )
    .expect("write");
    let cases = testing::run(&[dir.path().to_path_buf()], &TestOptions::default());
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].result, Outcome::Error, "{cases:?}");
    assert!(
        cases[0].reason.contains("policy does not load")
            && cases[0].reason.contains("unknown method startWith"),
        "{cases:?}"
    );
}
