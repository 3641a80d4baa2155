use policyctl_core::admission::Operation;
use policyctl_core::policy::source::documents;
use policyctl_core::policy::SourceFile;
use serde_json::json;

use super::*;

fn load(yaml: &str) -> MutatingPolicy {
    let (docs, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    let (p, warnings) = MutatingPolicy::from_document(&docs[0]).expect("policy");
    assert!(warnings.is_empty(), "{warnings:?}");
    p
}

fn load_err(yaml: &str) -> String {
    let (docs, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    match MutatingPolicy::from_document(&docs[0]) {
        Ok(_) => panic!("expected a load error"),
        Err(e) => e.to_string(),
    }
}

fn explain() -> EvalContext {
    EvalContext {
        explain: true,
        ..EvalContext::default()
    }
}

fn mutate(p: &MutatingPolicy, object: Value) -> Mutation {
    p.mutate(
        &Review::for_object(object, None, Operation::Create),
        &explain(),
    )
}

fn policy(mutations: &str) -> String {
    format!(
        r#"
apiVersion: policies.kyverno.io/v1alpha1
kind: MutatingPolicy
metadata: {{name: m}}
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ['']
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [pods]
  matchConditions:
  - name: not-skipped
    expression: "!has(object.metadata.labels) || !('skip' in object.metadata.labels)"
  variables:
  - name: team
    expression: "'blue'"
  mutations:
{mutations}
"#
    )
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"}},
           "spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox"}]}})
}

const APPLY: &str = r#"
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >-
        Object{
          metadata: Object.metadata{labels: {"team": variables.team}},
          spec: Object.spec{
            containers: object.spec.containers.map(c, Object.spec.containers{
              name: c.name,
              imagePullPolicy: "Always"
            })
          }
        }
"#;

#[test]
fn apply_configuration_merges_with_ssa_semantics() {
    let p = load(&policy(APPLY));
    let m = mutate(&p, pod());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(
        m.object,
        Some(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a", "team": "blue"}},
        "spec": {"containers": [
            {"name": "c", "image": "nginx", "imagePullPolicy": "Always"},
            {"name": "d", "image": "busybox", "imagePullPolicy": "Always"}
        ]}}))
    );
    assert_eq!(m.rules[0].status, RuleStatus::Pass);
}

const JSON_PATCH: &str = r#"
  - patchType: JSONPatch
    jsonPatch:
      expression: >-
        [
          JSONPatch{op: "add", path: "/metadata/annotations", value: {}},
          JSONPatch{op: "add", path: "/metadata/annotations/" + jsonpatch.escapeKey("example.com/team~x"),
                    value: variables.team},
          JSONPatch{op: "replace", path: "/spec/containers/0/image", value: "nginx:1.27"}
        ]
  - patchType: JSONPatch
    jsonPatch:
      expression: >-
        [JSONPatch{op: "add", path: "/metadata/labels/seen", value: object.spec.containers[0].image}]
"#;

#[test]
fn json_patch_applies_in_order_and_each_mutation_sees_the_previous_one() {
    let p = load(&policy(JSON_PATCH));
    let m = mutate(&p, pod());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    let object = m.object.expect("mutated");
    assert_eq!(
        object.pointer("/metadata/annotations"),
        Some(&json!({"example.com/team~x": "blue"}))
    );
    assert_eq!(
        object.pointer("/spec/containers/0/image"),
        Some(&json!("nginx:1.27"))
    );
    assert_eq!(
        object.pointer("/metadata/labels/seen"),
        Some(&json!("nginx:1.27"))
    );
}

#[test]
fn match_conditions_skip_and_unmatched_kinds_are_not_mutated() {
    let p = load(&policy(APPLY));
    let mut skipped = pod();
    skipped["metadata"]["labels"]["skip"] = json!("1");
    let m = mutate(&p, skipped);
    assert_eq!(m.object, None);
    assert!(!m.applied);
    assert_eq!(m.rules[0].status, RuleStatus::Skip);

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}});
    let m = mutate(&p, cm);
    assert_eq!(m, Mutation::default());
}

#[test]
fn a_patch_that_does_not_apply_is_an_enforced_error_and_changes_nothing() {
    let p = load(&policy(
        r#"
  - patchType: JSONPatch
    jsonPatch:
      expression: >-
        [JSONPatch{op: "add", path: "/metadata/labels/x", value: "1"},
         JSONPatch{op: "remove", path: "/spec/nothing"}]
"#,
    ));
    let m = mutate(&p, pod());
    assert_eq!(m.object, None);
    assert_eq!(m.errors.len(), 1);
    assert_eq!(m.errors[0].action, Action::Deny);
    assert_eq!(m.rules[0].status, RuleStatus::Error);
}

#[test]
fn wrong_result_types_are_errors() {
    for expression in ["'text'", "[1]", "Object{spec: 1} == 1"] {
        let p = load(&policy(&format!(
            "  - patchType: JSONPatch\n    jsonPatch:\n      expression: \"{expression}\"\n"
        )));
        let m = mutate(&p, pod());
        assert_eq!(m.errors.len(), 1, "{expression}");
    }
    let p = load(&policy(
        "  - patchType: ApplyConfiguration\n    applyConfiguration:\n      expression: \"[1]\"\n",
    ));
    assert_eq!(mutate(&p, pod()).errors.len(), 1);
}

#[test]
fn autogen_mutates_the_pod_template_of_controllers() {
    let p = load(&policy(APPLY));
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"template": {"metadata": {"labels": {"app": "a"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    let review = Review::for_object(deployment, None, Operation::Create);
    let m = p.mutate(&review, &explain());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.rules[0].rule, "autogen-m");
    assert_eq!(
        m.object,
        Some(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {"template": {"metadata": {"labels": {"app": "a", "team": "blue"}},
                "spec": {"containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Always"}]}}}}))
    );
}

#[test]
fn load_errors_name_the_field() {
    let e = load_err(&policy(
        "  - patchType: Strategic\n    jsonPatch:\n      expression: \"[]\"\n",
    ));
    assert!(e.contains("spec.mutations[0].patchType"), "{e}");
    let e = load_err(&policy("  - patchType: JSONPatch\n"));
    assert!(e.contains("spec.mutations[0].jsonPatch.expression"), "{e}");
    let e = load_err(&policy(
        "  - patchType: JSONPatch\n    jsonPatch:\n      expression: \"[JSONPatch{op: \"\n",
    ));
    assert!(e.contains("does not compile"), "{e}");
}

#[test]
fn struct_and_map_shapes_the_interpreter_cannot_take_are_rejected_not_panics() {
    // A struct of an unknown type is a runtime error (not a panic); map entries in struct syntax do not compile.
    for (source, compiles) in [
        ("Other{a: 1}", true),
        ("Object{a: Object.a{?b: optional.none()}}", true),
        ("{'a': Object{b: 1}}", true),
    ] {
        let r = Program::compile_mutation(Dialect::Kyverno, source);
        assert_eq!(r.is_ok(), compiles, "{source}: {r:?}");
    }
    let p = load(&policy(
        "  - patchType: ApplyConfiguration\n    applyConfiguration:\n      expression: \"Other{a: 1}\"\n",
    ));
    assert_eq!(mutate(&p, pod()).errors.len(), 1);
    let p = load(&policy(
        "  - patchType: ApplyConfiguration\n    applyConfiguration:\n      expression: \"Object{metadata: Object.metadata{?labels: optional.none()}}\"\n",
    ));
    let m = mutate(&p, pod());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.object, None);
}

#[test]
fn engine_claims_every_served_version_and_checks_fields() {
    for v in ["v1alpha1", "v1beta1", "v1"] {
        assert!(is_mutating_policy(
            &format!("policies.kyverno.io/{v}"),
            "MutatingPolicy"
        ));
    }
    assert!(!is_mutating_policy(
        "policies.kyverno.io/v1",
        "ValidatingPolicy"
    ));
}

#[test]
fn match_conditions_may_read_variables() {
    let yaml = policy(APPLY).replace(
        "expression: \"!has(object.metadata.labels) || !('skip' in object.metadata.labels)\"",
        "expression: \"variables.team == 'green'\"",
    );
    assert!(yaml.contains("variables.team == 'green'"));
    let p = load(&yaml);
    let m = mutate(&p, pod());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(m.rules[0].status, RuleStatus::Skip);
}

#[test]
fn hostile_mutations_are_errors_never_panics_and_change_nothing() {
    for expression in [
        r#"[JSONPatch{op: "replace", path: "", value: 1}]"#,
        r#"[JSONPatch{op: "replace", path: "/kind", value: "Secret"}]"#,
        r#"[JSONPatch{op: "remove", path: "/apiVersion"}]"#,
        r#"[JSONPatch{op: "add", path: "no-slash", value: 1}]"#,
        r#"[JSONPatch{op: "explode", path: "/a"}]"#,
        r#"[JSONPatch{op: "move", from: "/spec", path: "/spec/containers/0/x"}]"#,
        r#"[JSONPatch{op: "test", path: "/metadata/name", value: "other"}]"#,
        r#"[JSONPatch{op: "add", path: "/spec/containers/99", value: {}}]"#,
        r#"[{"op": 1, "path": 2}]"#,
        r#"lists.range(2000).map(i, lists.range(2000).map(j, JSONPatch{op: "add", path: "/x", value: j}))"#,
    ] {
        let p = load(&policy(&format!(
            "  - patchType: JSONPatch\n    jsonPatch:\n      expression: '{}'\n",
            expression.replace('\'', "''")
        )));
        let m = mutate(&p, pod());
        assert_eq!(m.object, None, "{expression}");
        assert_eq!(m.errors.len(), 1, "{expression}: {:?}", m.rules);
    }
    for expression in [
        r#"Object{kind: "Secret"}"#,
        r#"Object{spec: Object.spec{containers: [Object.spec.containers{name: "a"}, Object.spec.containers{name: "a"}]}}"#,
        "Object{metadata: 1}",
    ] {
        let p = load(&policy(&format!(
            "  - patchType: ApplyConfiguration\n    applyConfiguration:\n      expression: '{}'\n",
            expression
        )));
        let m = mutate(&p, pod());
        assert_eq!(m.object, None, "{expression}");
        assert_eq!(m.errors.len(), 1, "{expression}: {:?}", m.rules);
    }
}

#[test]
fn a_cel_policy_exception_skips_mutation_and_shared_problems_are_reported_once() {
    use policyctl_core::engine::Engine;
    let engines: Vec<Box<dyn Engine>> = vec![
        Box::new(policyctl_vpol::ValidatingPolicyEngine),
        Box::new(MutatingPolicyEngine),
    ];
    let exception = |condition: &str| {
        format!(
            "apiVersion: policies.kyverno.io/v1alpha1\nkind: PolicyException\nmetadata: {{name: legacy}}\nspec:\n  \
             policyRefs: [{{name: m, kind: MutatingPolicy}}]\n  matchConditions:\n  - {{name: c, expression: \"{condition}\"}}\n"
        )
    };
    let load = |condition: &str| {
        let files = [
            SourceFile {
                origin: "p.yaml".into(),
                content: policy(APPLY),
            },
            SourceFile {
                origin: "e.yaml".into(),
                content: exception(condition),
            },
        ];
        policyctl_core::policy::loader::compile_with(&engines, &files, &LoadOptions::default())
    };
    let compiled = load("object.metadata.namespace == 'legacy'");
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    let policy = compiled.built.policies[0].clone();
    let mut legacy = pod();
    legacy["metadata"]["namespace"] = json!("legacy");
    let skipped = policy.mutate(
        &Review::for_object(legacy, None, Operation::Create),
        &explain(),
    );
    assert_eq!(skipped.object, None);
    assert_eq!(skipped.rules[0].status, RuleStatus::Skip);
    assert!(skipped.rules[0].message.contains("policy exception legacy"));
    let mutated = policy.mutate(
        &Review::for_object(pod(), None, Operation::Create),
        &explain(),
    );
    assert!(mutated.object.is_some(), "elsewhere the policy mutates");
    // Both engines read the exception: a broken one is one error, not two.
    let broken = load("object.metadata.namespace ==");
    assert_eq!(broken.built.errors.len(), 1, "{:?}", broken.built.errors);
}

#[test]
fn the_index_offers_resources_of_the_rules_autogen_included() {
    let deployments = policy(APPLY)
        .replace("{name: m}", "{name: deploys}")
        .replace("apiGroups: ['']", "apiGroups: [apps]")
        .replace("resources: [pods]", "resources: [deployments]");
    let set = policyctl_core::policy::PolicySet::new(
        vec![
            Arc::new(load(&policy(APPLY))) as Arc<dyn Policy>,
            Arc::new(load(&deployments)),
        ],
        1,
        String::new(),
    );
    let offered = |object: Value| -> Vec<String> {
        set.select(&Review::for_object(object, None, Operation::Create))
            .iter()
            .map(|p| p.info().name.clone())
            .collect()
    };
    assert_eq!(offered(pod()), ["m"]);
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "d", "namespace": "default"}});
    assert_eq!(offered(d), ["m", "deploys"]);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    assert!(offered(cm).is_empty());
}
