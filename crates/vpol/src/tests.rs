use std::time::Duration;

use policyctl_core::admission::Operation;
use policyctl_core::policy::source::documents;
use policyctl_core::policy::{Deadline, SourceFile};
use serde_json::json;

use super::*;
use policyctl_core::policy::EvalError as PolicyEvalError;

fn load(yaml: &str) -> ValidatingPolicy {
    let (docs, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    let (p, warnings) = ValidatingPolicy::from_document(&docs[0]).expect("policy");
    assert!(warnings.is_empty(), "{warnings:?}");
    p
}

fn explain() -> EvalContext {
    EvalContext {
        explain: true,
        ..EvalContext::default()
    }
}

fn eval(p: &ValidatingPolicy, object: Value) -> Evaluation {
    p.validate(
        &Review::for_object(object, None, Operation::Create),
        &explain(),
    )
}

const POLICY: &str = r#"
apiVersion: policies.kyverno.io/v1alpha1
kind: ValidatingPolicy
metadata: {name: no-latest}
spec:
  validationActions: [Deny, Warn]
  matchConstraints:
    resourceRules:
    - apiGroups: ['']
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [pods]
  matchConditions:
  - name: not-system
    expression: "object.metadata.namespace != 'kube-system'"
  variables:
  - name: images
    expression: "object.spec.containers.map(c, c.image)"
  validations:
  - expression: "variables.images.all(i, !i.endsWith(':latest'))"
    messageExpression: "'latest in ' + object.metadata.name"
  - expression: "object.metadata.?labels.?app.orValue('') != ''"
"#;

fn pod(ns: &str, image: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]}})
}

#[test]
fn validations_actions_conditions_and_messages() {
    let p = load(POLICY);
    let e = eval(&p, pod("default", "nginx:latest", json!({"app": "a"})));
    assert!(e.applied);
    let actions: Vec<Action> = e.violations.iter().map(|v| v.action).collect();
    assert_eq!(actions, [Action::Deny, Action::Warn]);
    assert_eq!(e.violations[0].message, "latest in p");
    assert_eq!(e.rules[0].rule, "no-latest");
    assert_eq!(e.rules[0].status, RuleStatus::Fail);

    let e = eval(&p, pod("default", "nginx:1", json!({})));
    assert!(e.violations[0].message.starts_with("failed expression: "));

    let e = eval(&p, pod("default", "nginx:1", json!({"app": "a"})));
    assert!(e.violations.is_empty() && e.errors.is_empty());
    assert_eq!(e.rules[0].status, RuleStatus::Pass);

    // matchConditions not met: not validated
    let e = eval(&p, pod("kube-system", "nginx:latest", json!({})));
    assert!(!e.applied && e.violations.is_empty());
    assert_eq!(e.rules[0].status, RuleStatus::Skip);

    // not matched: a Service
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"}});
    let e = eval(&p, svc);
    assert!(!e.applied && e.rules.is_empty());
}

#[test]
fn autogen_runs_on_controllers_with_rewritten_expressions() {
    let p = load(POLICY);
    let template = json!({"metadata": {"labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"}, "spec": {"template": template}});
    let e = eval(&p, deployment);
    assert_eq!(e.rules[0].rule, "autogen-no-latest");
    assert_eq!(e.rules[0].status, RuleStatus::Fail, "{:?}", e.rules);
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "j", "namespace": "default"},
        "spec": {"jobTemplate": {"spec": {"template": template}}}});
    let e = eval(&p, cronjob);
    assert_eq!(e.rules[0].rule, "autogen-cronjob-no-latest");
    assert_eq!(e.rules[0].status, RuleStatus::Fail, "{:?}", e.rules);

    assert_eq!(
        autogen_rewrite("object.metadata.namespace == oldObject.metadata.name && object.spec.x", false),
        "object.metadata.namespace == oldObject.spec.template.metadata.name && object.spec.template.spec.x"
    );
    let off = load(&POLICY.replace(
        "  validationActions",
        "  autogen: {podControllers: {controllers: []}}\n  validationActions",
    ));
    assert_eq!(off.variants.len(), 1);
}

#[test]
fn errors_budget_and_deadline_go_to_the_failure_policy() {
    let yaml = r#"
apiVersion: policies.kyverno.io/v1
kind: ValidatingPolicy
metadata: {name: q}
spec:
  validationActions: [Deny]
  failurePolicy: Ignore
  autogen: {podControllers: {controllers: []}}
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: ['*'], resources: [pods]}
  validations:
  - expression: "object.spec.containers.all(c, object.spec.containers.exists_one(d, d.name == c.name)) || true"
  - expression: "object.metadata.labels.team == 'a'"
"#;
    let p = load(yaml);
    assert_eq!(p.info().failure_policy, Some(FailurePolicy::Ignore));
    let containers: Vec<Value> = (0..5000)
        .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
        .collect();
    let big = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "namespace": "default"},
        "spec": {"containers": containers}});
    let e = eval(&p, big);
    assert!(e.violations.is_empty());
    assert!(
        matches!(e.errors[0].error, PolicyEvalError::Budget(_)),
        "{:?}",
        e.errors
    );
    assert_eq!(e.errors[0].action, Action::Deny);

    let small = pod("default", "x", json!({}));
    let e = eval(&p, small.clone());
    assert!(
        matches!(e.errors[0].error, PolicyEvalError::Engine(_)),
        "{:?}",
        e.errors
    );
    assert_eq!(e.rules[0].status, RuleStatus::Error);

    let ctx = EvalContext {
        deadline: Deadline::starting(
            std::time::Instant::now() - Duration::from_secs(2),
            Duration::from_secs(1),
        ),
        ..explain()
    };
    let e = p.validate(&Review::for_object(small, None, Operation::Create), &ctx);
    assert!(
        matches!(e.errors[0].error, PolicyEvalError::Timeout(_)),
        "{:?}",
        e.errors
    );
}

#[test]
fn selectors_and_exclusions() {
    let yaml = POLICY.replace(
        "  matchConditions:",
        "    objectSelector: {matchLabels: {checked: 'yes'}}\n    excludeResourceRules:\n    - {apiGroups: [''], apiVersions: [v1], operations: ['*'], resources: [pods], resourceNames: [skip-me]}\n  matchConditions:",
    );
    let p = load(&yaml);
    let e = eval(&p, pod("default", "nginx:latest", json!({"app": "a"})));
    assert!(!e.applied, "object selector");
    let mut checked = pod(
        "default",
        "nginx:latest",
        json!({"app": "a", "checked": "yes"}),
    );
    assert!(eval(&p, checked.clone()).applied);
    checked["metadata"]["name"] = json!("skip-me");
    assert!(!eval(&p, checked).applied, "excluded by name");
}

#[test]
fn load_errors_name_the_field() {
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: POLICY.replace("'latest in ' + object.metadata.name", "'unclosed"),
    });
    let err = ValidatingPolicy::from_document(&docs[0]).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.validations[0].messageExpression"),
        "{err}"
    );
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: POLICY.replace("[Deny, Warn]", "[Block]"),
    });
    let err = ValidatingPolicy::from_document(&docs[0]).unwrap_err();
    assert!(
        err.to_string().contains("spec.validationActions[0]"),
        "{err}"
    );
}

#[derive(Debug)]
struct FakeCluster;

impl policyctl_core::policy::ClusterContext for FakeCluster {
    fn api_get(&self, path: &str) -> Result<Value, policyctl_core::policy::ApiReadError> {
        match path {
            "/api/v1/namespaces/default/configmaps/regs" => {
                Ok(json!({"data": {"allowed": "ghcr.io/"}}))
            }
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers" => {
                Ok(json!({"items": [{"spec": {"scaleTargetRef": {"name": "p"}}}]}))
            }
            other => Err(policyctl_core::policy::ApiReadError::Status {
                path: other.to_string(),
                code: 404,
                message: "not found".into(),
            }),
        }
    }
    fn image_data(&self, image: &str) -> Option<Value> {
        (image == "ghcr.io/app:1").then(|| json!({"config": {"User": "1000"}}))
    }
}

#[test]
fn kyverno_libraries_read_the_cluster_context() {
    let yaml = r#"
apiVersion: policies.kyverno.io/v1
kind: ValidatingPolicy
metadata: {name: libs}
spec:
  validationActions: [Deny]
  autogen: {podControllers: {controllers: []}}
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: ['*'], resources: [pods]}
  variables:
  - name: allowed
    expression: "resource.Get('v1', 'configmaps', 'default', 'regs').data.allowed"
  validations:
  - expression: "object.spec.containers.all(c, c.image.startsWith(variables.allowed))"
  - expression: "resource.List('autoscaling/v1', 'horizontalpodautoscalers', 'default').items.exists(h, h.spec.scaleTargetRef.name == object.metadata.name)"
  - expression: "object.spec.containers.all(c, image.GetMetadata(c.image).config.User != '0')"
"#;
    let p = load(yaml);
    let ctx = EvalContext {
        cluster: Arc::new(FakeCluster),
        ..explain()
    };
    let review =
        |image: &str| Review::for_object(pod("default", image, json!({})), None, Operation::Create);
    let e = p.validate(&review("ghcr.io/app:1"), &ctx);
    assert_eq!(e.rules[0].status, RuleStatus::Pass, "{:?}", e.rules);
    let e = p.validate(&review("docker.io/app:1"), &ctx);
    assert_eq!(e.rules[0].status, RuleStatus::Fail, "{:?}", e.rules);
    // no image data: an error, never a pass
    let e = p.validate(&review("ghcr.io/other:1"), &ctx);
    assert_eq!(e.rules[0].status, RuleStatus::Error, "{:?}", e.rules);
}

#[test]
fn resource_lookups_only_name_resources() {
    use policyctl_cel::kyverno::KyvernoData;
    let data = ClusterData(Arc::new(FakeCluster));
    assert!(data.get("v1", "configmaps", "default", "regs").is_ok());
    for (v, r, ns, name) in [
        ("v1", "configmaps", "default", "../../secrets/x"),
        ("v1", "configmaps/x", "default", "regs"),
        ("v1", "configmaps", "a/b", "regs"),
        ("v1", "configmaps", "default", "regs?watch=1"),
        ("a/b/c", "configmaps", "default", "regs"),
        ("v1", "configmaps", "default", ""),
    ] {
        let err = data.get(v, r, ns, name).unwrap_err();
        assert!(
            matches!(
                err,
                policyctl_cel::kyverno::DataError::InvalidSegment { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("invalid "), "{err}");
    }
}

#[test]
fn unknown_fields_are_load_errors_with_a_suggestion() {
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: POLICY
            .replace("validationActions:", "validationActons:")
            .replace("resourceRules:", "resourceRule:"),
    });
    let built = ValidatingPolicyEngine.build(
        EngineInput {
            documents: docs,
            ..EngineInput::default()
        },
        &LoadOptions::default(),
    );
    let errors: Vec<String> = built.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "p.yaml, document 1: spec.matchConstraints.resourceRule: unknown field \"resourceRule\" \
             (did you mean \"resourceRules\"?)",
            "p.yaml, document 1: spec.validationActons: unknown field \"validationActons\" \
             (did you mean \"validationActions\"?)",
        ]
    );
    assert!(built.policies.is_empty());
}

const EXCEPTION: &str = r#"
apiVersion: policies.kyverno.io/v1alpha1
kind: PolicyException
metadata: {name: legacy}
spec:
  policyRefs:
  - {name: no-latest, kind: ValidatingPolicy}
  matchConditions:
  - name: legacy-namespace
    expression: "object.metadata.namespace == 'legacy'"
"#;

#[test]
fn a_cel_policy_exception_skips_the_requests_its_conditions_hold_for() {
    use policyctl_core::engine::Engine;
    let engines: Vec<Box<dyn Engine>> = vec![Box::new(ValidatingPolicyEngine)];
    let files = [
        SourceFile {
            origin: "p.yaml".into(),
            content: POLICY.into(),
        },
        SourceFile {
            origin: "e.yaml".into(),
            content: EXCEPTION.into(),
        },
    ];
    let compiled =
        policyctl_core::policy::loader::compile_with(&engines, &files, &LoadOptions::default());
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    assert!(
        compiled.built.warnings.is_empty(),
        "{:?}",
        compiled.built.warnings
    );
    let policy = compiled.built.policies[0].clone();
    let bad =
        |ns: &str| Review::for_object(pod(ns, "nginx:latest", json!({})), None, Operation::Create);
    let excepted = policy.validate(&bad("legacy"), &explain());
    assert!(excepted.violations.is_empty(), "{excepted:?}");
    assert_eq!(excepted.rules[0].status, RuleStatus::Skip);
    assert!(
        excepted.rules[0]
            .message
            .contains("policy exception legacy"),
        "{excepted:?}"
    );
    // Elsewhere the policy runs.
    assert!(!policy
        .validate(&bad("default"), &explain())
        .violations
        .is_empty());
}

#[test]
fn cel_policy_exception_mistakes_are_named() {
    use policyctl_core::engine::Engine;
    let engines: Vec<Box<dyn Engine>> = vec![Box::new(ValidatingPolicyEngine)];
    let load = |exception: String| {
        let files = [
            SourceFile {
                origin: "p.yaml".into(),
                content: POLICY.into(),
            },
            SourceFile {
                origin: "e.yaml".into(),
                content: exception,
            },
        ];
        policyctl_core::policy::loader::compile_with(&engines, &files, &LoadOptions::default())
    };
    let typo = load(EXCEPTION.replace("policyRefs", "policyRef"));
    assert!(
        format!("{:?}", typo.built.errors).contains("spec.policyRef"),
        "{:?}",
        typo.built.errors
    );
    let broken = load(EXCEPTION.replace("== 'legacy'", "== "));
    assert!(
        format!("{:?}", broken.built.errors).contains("spec.matchConditions[0].expression"),
        "{:?}",
        broken.built.errors
    );
    // Naming a policy that is not in the set, or a kind exceptions do not apply to yet: warnings.
    let other = load(EXCEPTION.replace(
        "{name: no-latest, kind: ValidatingPolicy}",
        "{name: gone, kind: ValidatingPolicy}\n  - {name: m, kind: ImageValidatingPolicy}",
    ));
    assert!(other.built.errors.is_empty(), "{:?}", other.built.errors);
    let warnings = format!("{:?}", other.built.warnings);
    assert!(
        warnings.contains("which is not in this set")
            && warnings.contains("and MutatingPolicy only"),
        "{warnings}"
    );
}

#[test]
fn a_variable_that_is_not_declared_is_a_load_error_with_a_suggestion() {
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: POLICY.replace(
            "variables.images.all(i, !i.endsWith(':latest'))",
            "variables.imags.all(i, !i.endsWith(':latest'))",
        ),
    });
    let err = ValidatingPolicy::from_document(&docs[0]).expect_err("refused");
    assert_eq!(
        err.field.as_deref(),
        Some("spec.validations[0].expression"),
        "{err}"
    );
    assert!(
        err.message.contains(
            "variables.imags is not declared in spec.variables (did you mean \"images\"?)"
        ),
        "{err}"
    );
}

#[test]
fn an_exception_warning_names_its_own_document_when_an_earlier_one_is_broken() {
    use policyctl_core::engine::Engine;
    let engines: Vec<Box<dyn Engine>> = vec![Box::new(ValidatingPolicyEngine)];
    let broken = EXCEPTION.replace("== 'legacy'", "== ");
    let missing = EXCEPTION.replace("{name: no-latest,", "{name: gone,");
    let files = [
        SourceFile {
            origin: "p.yaml".into(),
            content: POLICY.into(),
        },
        SourceFile {
            origin: "e.yaml".into(),
            content: format!("{broken}---\n{missing}"),
        },
    ];
    let compiled =
        policyctl_core::policy::loader::compile_with(&engines, &files, &LoadOptions::default());
    assert_eq!(
        compiled.built.errors.len(),
        1,
        "{:?}",
        compiled.built.errors
    );
    assert_eq!(compiled.built.errors[0].location.document, Some(1));
    assert_eq!(
        compiled.built.warnings.len(),
        1,
        "{:?}",
        compiled.built.warnings
    );
    assert_eq!(compiled.built.warnings[0].location.document, Some(2));
}

#[test]
fn a_broken_exception_is_reported_even_without_policies_to_except() {
    use policyctl_core::engine::Engine;
    let engines: Vec<Box<dyn Engine>> = vec![Box::new(ValidatingPolicyEngine)];
    let files = [SourceFile {
        origin: "e.yaml".into(),
        content: EXCEPTION.replace("== 'legacy'", "== "),
    }];
    let compiled =
        policyctl_core::policy::loader::compile_with(&engines, &files, &LoadOptions::default());
    assert_eq!(
        compiled.built.errors.len(),
        1,
        "{:?}",
        compiled.built.errors
    );
}

fn load_with_warnings(yaml: &str) -> (ValidatingPolicy, Vec<LoadError>) {
    let (docs, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    ValidatingPolicy::from_document(&docs[0]).expect("policy")
}

const JSON_POLICY: &str = r#"
apiVersion: policies.kyverno.io/v1
kind: ValidatingPolicy
metadata: {name: terraform}
spec:
  evaluation:
    mode: JSON
  matchConditions:
  - name: has-changes
    expression: "has(object.resource_changes)"
  variables:
  - name: roots
    expression: "object.resource_changes.filter(rc, rc.after.?type.orValue('') == 'ROOT')"
  validations:
  - expression: "size(variables.roots) == 0"
    message: "no root CAs"
"#;

#[test]
fn json_mode_needs_no_resource_rules_and_validates_payloads_only() {
    let (p, warnings) = load_with_warnings(JSON_POLICY);
    // Loaded with a warning that says where it runs: never at admission.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].to_string();
    assert!(
        w.contains("spec.evaluation.mode") && w.contains("never admission requests"),
        "{w}"
    );
    assert_eq!(p.payload_mode(), Some(PayloadMode::Json));
    assert!(
        !p.validates(),
        "the webhook must not run a JSON-mode policy"
    );
    // An admission request never matches, whatever the object looks like.
    let review = Review::for_object(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
               "resource_changes": [{"after": {"type": "ROOT"}}]}),
        None,
        Operation::Create,
    );
    let e = p.validate(&review, &explain());
    assert_eq!(e, Evaluation::skip());

    let fail = p.validate_payload(
        &json!({"resource_changes": [{"after": {"type": "ROOT"}}, {"after": {}}]}),
        &explain(),
    );
    assert_eq!(fail.violations.len(), 1, "{fail:?}");
    assert_eq!(fail.violations[0].message, "no root CAs");
    assert_eq!(fail.rules[0].rule, "terraform");
    assert_eq!(fail.rules[0].status, RuleStatus::Fail);
    let pass = p.validate_payload(
        &json!({"resource_changes": [{"after": {"type": "SUBORDINATE"}}]}),
        &explain(),
    );
    assert!(pass.applied && pass.violations.is_empty(), "{pass:?}");
    assert_eq!(pass.rules[0].status, RuleStatus::Pass);
    // Match conditions apply to the payload.
    let skip = p.validate_payload(&json!({"other": 1}), &explain());
    assert!(!skip.applied, "{skip:?}");
    assert_eq!(skip.rules[0].status, RuleStatus::Skip);
    // Resource rules are ignored, and the warning says so.
    let (with_rules, warnings) = load_with_warnings(&JSON_POLICY.replace(
        "spec:\n",
        "spec:\n  matchConstraints:\n    resourceRules:\n    - {apiGroups: [''], apiVersions: [v1], resources: [pods]}\n",
    ));
    assert!(
        warnings[0].to_string().contains("spec.matchConstraints"),
        "{warnings:?}"
    );
    assert_eq!(with_rules.validate(&review, &explain()), Evaluation::skip());
    // A Kubernetes-mode policy skips payloads.
    assert_eq!(
        load(POLICY).validate_payload(&json!({"a": 1}), &explain()),
        Evaluation::skip()
    );
}

#[test]
fn an_unknown_evaluation_mode_is_a_load_error_and_kubernetes_mode_still_needs_resource_rules() {
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: JSON_POLICY.replace("mode: JSON", "mode: Json"),
    });
    let err = ValidatingPolicy::from_document(&docs[0]).unwrap_err();
    assert!(err.to_string().contains("spec.evaluation.mode"), "{err}");
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: JSON_POLICY.replace("mode: JSON", "mode: Kubernetes"),
    });
    let err = ValidatingPolicy::from_document(&docs[0]).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.matchConstraints.resourceRules"),
        "{err}"
    );
}

#[test]
fn a_cel_policy_exception_skips_json_payloads_its_conditions_hold_for() {
    use policyctl_core::engine::Engine;
    let engines: Vec<Box<dyn Engine>> = vec![Box::new(ValidatingPolicyEngine)];
    let exception = r#"
apiVersion: policies.kyverno.io/v1alpha1
kind: PolicyException
metadata: {name: sandbox}
spec:
  policyRefs:
  - {name: terraform, kind: ValidatingPolicy}
  matchConditions:
  - name: sandbox
    expression: "object.?workspace.orValue('') == 'sandbox'"
"#;
    let files = [
        SourceFile {
            origin: "p.yaml".into(),
            content: JSON_POLICY.into(),
        },
        SourceFile {
            origin: "e.yaml".into(),
            content: exception.into(),
        },
    ];
    let compiled =
        policyctl_core::policy::loader::compile_with(&engines, &files, &LoadOptions::default());
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    let policy = compiled.built.policies[0].clone();
    let root = |workspace: &str| json!({"workspace": workspace, "resource_changes": [{"after": {"type": "ROOT"}}]});
    let excepted = policy.validate_payload(&root("sandbox"), &explain());
    assert!(excepted.violations.is_empty(), "{excepted:?}");
    assert_eq!(excepted.rules[0].status, RuleStatus::Skip);
    assert!(!policy
        .validate_payload(&root("prod"), &explain())
        .violations
        .is_empty());
}

const ENVOY_POLICY: &str = r#"
apiVersion: policies.kyverno.io/v1alpha1
kind: ValidatingPolicy
metadata: {name: authz}
spec:
  evaluation:
    mode: Envoy
  variables:
  - name: role
    expression: object.attributes.request.http.headers[?"x-role"].orValue("")
  validations:
  - expression: 'variables.role == "" ? envoy.Denied(401).Response() : null'
  - expression: 'variables.role == "guest" ? envoy.Denied(403).WithBody("guests may not").Response() : null'
  - expression: 'variables.role == "admin" ? envoy.Allowed().WithHeader("x-checked", "yes").Response().WithMetadata({"role": "admin"}) : null'
  - expression: 'variables.role == "broken" ? envoy.Allowed() : null'
"#;

fn envoy_request(role: Option<&str>) -> Value {
    let headers = match role {
        Some(r) => json!({"x-role": r}),
        None => json!({}),
    };
    json!({"attributes": {"request": {"http": {"method": "GET", "path": "/", "headers": headers}}}})
}

#[test]
fn envoy_mode_the_first_response_decides() {
    let (p, _) = load_with_warnings(ENVOY_POLICY);
    assert_eq!(p.payload_mode(), Some(PayloadMode::Envoy));
    let e = p.validate_payload(&envoy_request(None), &explain());
    assert_eq!(e.violations[0].message, "denied with HTTP status 401");
    let e = p.validate_payload(&envoy_request(Some("guest")), &explain());
    assert_eq!(e.violations[0].message, "guests may not");
    let e = p.validate_payload(&envoy_request(Some("admin")), &explain());
    assert!(
        e.applied && e.violations.is_empty() && e.errors.is_empty(),
        "{e:?}"
    );
    assert_eq!(e.rules[0].status, RuleStatus::Pass);
    // Every validation null: allowed (as the Kyverno Authz server allows it).
    let e = p.validate_payload(&envoy_request(Some("other")), &explain());
    assert_eq!(e.rules[0].status, RuleStatus::Pass, "{e:?}");
    // A builder that is not a response is an error under the failure policy, never an allow.
    let e = p.validate_payload(&envoy_request(Some("broken")), &explain());
    assert_eq!(e.errors.len(), 1, "{e:?}");
    assert!(e.rules[0].message.contains("call .Response()"), "{e:?}");
}

#[test]
fn http_mode_responses_and_request_helpers() {
    let (p, _) = load_with_warnings(
        r#"
apiVersion: policies.kyverno.io/v1alpha1
kind: ValidatingPolicy
metadata: {name: http-authz}
spec:
  evaluation:
    mode: HTTP
  validations:
  - expression: >
      "secret" in object.attributes.Header("X-Token") && object.attributes.QueryParam("v") == ["1"]
        ? http.Allowed().Response()
        : http.Denied("missing token").Response()
"#,
    );
    assert_eq!(p.payload_mode(), Some(PayloadMode::Http));
    let request = |token: &str| {
        json!({"attributes": {"method": "GET", "path": "/",
            "header": {"x-token": [token]}, "query": {"v": ["1"]}}})
    };
    let e = p.validate_payload(&request("secret"), &explain());
    assert_eq!(e.rules[0].status, RuleStatus::Pass, "{e:?}");
    let e = p.validate_payload(&request("other"), &explain());
    assert_eq!(e.violations[0].message, "missing token");
    // A JSON payload is not an HTTP payload: the pipeline gives each policy only its own mode's payloads.
    let set = policyctl_core::policy::PolicySet::new(vec![Arc::new(p)], 0, String::new());
    let runs = policyctl_core::pipeline::validate_payload(
        &set,
        &request("other"),
        PayloadMode::Json,
        &explain(),
    );
    assert!(runs.is_empty());
    let runs = policyctl_core::pipeline::validate_payload(
        &set,
        &request("other"),
        PayloadMode::Http,
        &explain(),
    );
    assert_eq!(runs.len(), 1);
    assert!(!runs[0].outcome.violations.is_empty());
}

#[test]
fn envoy_responses_can_be_kept_in_variables() {
    let (p, _) = load_with_warnings(
        r#"
apiVersion: policies.kyverno.io/v1alpha1
kind: ValidatingPolicy
metadata: {name: authz-vars}
spec:
  evaluation: {mode: Envoy}
  variables:
  - name: deny
    expression: envoy.Denied(418).WithBody("teapot").Response()
  validations:
  - expression: variables.deny
"#,
    );
    let e = p.validate_payload(&envoy_request(None), &explain());
    assert_eq!(e.violations[0].message, "teapot", "{e:?}");
}

#[test]
fn lint_refuses_an_exception_condition_with_an_unknown_identifier() {
    use policyctl_core::engine::Engine;
    let engines: Vec<Box<dyn Engine>> = vec![Box::new(ValidatingPolicyEngine)];
    let files = [SourceFile {
        origin: "e.yaml".into(),
        content: EXCEPTION.replace("object.metadata.namespace", "objetc.metadata.namespace"),
    }];
    let compiled =
        policyctl_core::policy::loader::compile_with(&engines, &files, &LoadOptions::default());
    let errors: Vec<String> = compiled
        .built
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.matchConditions[0].expression")
                && e.contains("undeclared identifier objetc (did you mean object?)")),
        "{errors:?}"
    );
}

fn offered(policies: Vec<ValidatingPolicy>, review: &Review) -> Vec<String> {
    let set = policyctl_core::policy::PolicySet::new(
        policies
            .into_iter()
            .map(|p| Arc::new(p) as Arc<dyn Policy>)
            .collect(),
        1,
        String::new(),
    );
    set.select(review)
        .iter()
        .map(|p| p.info().name.clone())
        .collect()
}

#[test]
fn the_index_offers_resources_of_the_rules_autogen_included_and_never_payload_policies() {
    let deployments = POLICY
        .replace("{name: no-latest}", "{name: deployments}")
        .replace("apiGroups: ['']", "apiGroups: [apps]")
        .replace("resources: [pods]", "resources: [deployments]");
    let policies = || {
        vec![
            load(POLICY),
            load(&deployments),
            load_with_warnings(JSON_POLICY).0,
        ]
    };
    let review = |object: Value| Review::for_object(object, None, Operation::Create);
    // A Pod is offered the Pod policy only: neither the deployments policy nor the JSON-mode one.
    assert_eq!(
        offered(policies(), &review(pod("default", "nginx", json!({})))),
        ["no-latest"]
    );
    // A Deployment is offered both: the Pod policy through autogen's rules for Pod controllers.
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "d", "namespace": "default"}});
    assert_eq!(
        offered(policies(), &review(d)),
        ["no-latest", "deployments"]
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    assert!(offered(policies(), &review(cm)).is_empty());
}
