use super::*;
use crate::admission::Operation;
use crate::policy::source::documents;
use crate::policy::Check;
use crate::policy::SourceFile;
use serde_json::json;

pub(crate) fn load(yaml: &str) -> KyvernoPolicy {
    let (docs, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    KyvernoPolicy::from_document(&docs[0]).expect("policy").0
}

pub(crate) fn run(policy: &KyvernoPolicy, object: Value) -> PolicyResponse {
    let review = Review::for_object(object, None, Operation::Create);
    let user = UserContext::default();
    let mocks = Mocks::default();
    let options = ApplyOptions {
        user: &user,
        namespace_labels: None,
        lookups: Lookups::Mocks(&mocks),
        part: Part::All,
        deadline: None,
    };
    policy.apply(&review, &options, Some(&mocks))
}

const POLICY: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: no-latest}
spec:
  validationFailureAction: Enforce
  rules:
  - name: check-tag
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      message: "latest is not allowed for {{ request.object.metadata.name }}"
      pattern:
        spec:
          containers:
          - image: "!*:latest"
"#;

#[test]
fn validate_with_autogen() {
    let p = load(POLICY);
    let names: Vec<&str> = p.rules().iter().map(|r| r.spec.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "check-tag",
            "autogen-check-tag",
            "autogen-cronjob-check-tag"
        ]
    );
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}});
    let r = run(&p, bad);
    assert_eq!(r.rules.len(), 1);
    assert_eq!(r.rules[0].status, RuleStatus::Fail);
    assert_eq!(
        r.rules[0].message,
        "validation error: latest is not allowed for p. rule check-tag failed at path /spec/containers/0/image/"
    );
    let good = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}});
    let r = run(&p, good);
    assert_eq!(r.rules.len(), 1);
    assert_eq!(r.rules[0].name, "autogen-check-tag");
    assert_eq!(r.rules[0].status, RuleStatus::Pass);
    let other = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
    assert!(run(&p, other).rules.is_empty(), "not matched → no response");
}

#[test]
fn admission_actions() {
    let p = load(POLICY);
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}});
    let review = Review::for_object(bad.clone(), None, Operation::Create);
    let v = p.check(&review, &EvalContext::default()).expect("validate");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].action, Action::Deny);
    assert!(v[0].message.starts_with("check-tag: validation error"));
    let audit = load(
        &POLICY
            .replace("Enforce", "Audit")
            .replace("  rules:", "  emitWarning: true\n  rules:"),
    );
    let v = audit
        .check(&review, &EvalContext::default())
        .expect("validate");
    let actions: Vec<Action> = v.iter().map(|v| v.action).collect();
    assert_eq!(actions, [Action::Warn, Action::Audit]);
}

#[test]
fn deny_preconditions_and_errors() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: d}
spec:
  rules:
  - name: r
    match: {any: [{resources: {kinds: [ConfigMap]}}]}
    preconditions:
      all:
      - key: "{{ request.object.metadata.labels.team || '' }}"
        operator: NotEquals
        value: ""
    validate:
      message: "team {{ request.object.metadata.labels.team }} may not use this name"
      deny:
        conditions:
          any:
          - key: "{{ request.object.metadata.name }}"
            operator: Equals
            value: "forbidden-*"
  - name: e
    match: {any: [{resources: {kinds: [ConfigMap]}}]}
    validate:
      pattern:
        data:
          x: "{{ request.object.metadata.missing }}"
"#,
    );
    let cm = |name: &str, labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}});
    let r = run(&p, cm("forbidden-x", json!({"team": "a"})));
    assert_eq!(r.rules[0].status, RuleStatus::Fail);
    assert_eq!(r.rules[0].message, "team a may not use this name");
    assert_eq!(
        r.rules[1].status,
        RuleStatus::Error,
        "missing key is an error"
    );
    let r = run(&p, cm("ok", json!({"team": "a"})));
    assert_eq!(r.rules[0].status, RuleStatus::Pass);
    let r = run(&p, cm("forbidden-x", json!({})));
    assert_eq!(r.rules[0].status, RuleStatus::Skip);
    // The policy is Audit (the default): its rule error is recorded, never a failure that could block.
    let review = Review::for_object(cm("ok", json!({"team": "a"})), None, Operation::Create);
    let recorded = p
        .check(&review, &EvalContext::default())
        .expect("an Audit policy's rule error does not block");
    assert!(
        recorded
            .iter()
            .any(|v| v.action == Action::Audit && v.message.starts_with("e: ")),
        "{recorded:?}"
    );
}

#[test]
fn mutate_and_foreach() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: m}
spec:
  rules:
  - name: label
    match: {any: [{resources: {kinds: [Pod]}}]}
    mutate:
      patchStrategicMerge:
        metadata:
          labels:
            +(owner): "{{ request.object.metadata.name }}"
  - name: pull
    match: {any: [{resources: {kinds: [Pod]}}]}
    mutate:
      foreach:
      - list: request.object.spec.containers
        patchesJson6902: |-
          - op: add
            path: /spec/containers/{{elementIndex}}/imagePullPolicy
            value: Always
"#,
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
    let r = run(&p, pod);
    assert_eq!(
        r.rules.iter().map(|r| r.status).collect::<Vec<_>>(),
        [RuleStatus::Pass, RuleStatus::Pass]
    );
    let patched = r.patched.expect("patched");
    assert_eq!(patched["metadata"]["labels"]["owner"], "p");
    assert_eq!(
        patched["spec"]["containers"][1]["imagePullPolicy"],
        "Always"
    );
    let review = Review::for_object(patched.clone(), None, Operation::Create);
    let m = p
        .mutate_checked(&review, &EvalContext::default())
        .expect("mutate");
    assert_eq!(m.object, None, "already mutated → nothing changes");
}

#[test]
fn unsupported_rules_load_with_warnings() {
    let yaml = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: u, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  rules:
  - name: pss
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      manifests: {attestors: [{entries: [{keys: {publicKeys: k}}]}]}
"#;
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    let (p, warnings) = KyvernoPolicy::from_document(&docs[0]).expect("policy");
    assert_eq!(warnings.len(), 1);
    assert!(!p.validates());
    let r = run(
        &p,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
    );
    assert_eq!(r.rules[0].status, RuleStatus::Unsupported);
}

/// Builds `yaml` through the engine, as the loader does, with `mode`.
fn build_with(yaml: &str, mode: crate::engine::UnsupportedRules) -> crate::engine::Built {
    use crate::engine::{Engine, EngineInput, LoadOptions};
    let (documents, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    let options = LoadOptions {
        unsupported_rules: mode,
        ..LoadOptions::default()
    };
    KyvernoEngine.build(
        EngineInput {
            documents,
            ..EngineInput::default()
        },
        &options,
    )
}

#[test]
fn an_enforcing_policy_with_an_unsupported_rule_is_refused_unless_it_opts_out() {
    use crate::engine::UnsupportedRules::{Refuse, Report};
    let policy = |action: &str, annotations: &str, rule_action: &str| {
        format!(
            r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {{name: pss, annotations: {{{annotations}}}}}
spec:
  validationFailureAction: {action}
  rules:
  - name: baseline
    match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}
    validate:
      {rule_action}
      manifests: {{attestors: [{{entries: [{{keys: {{publicKeys: k}}}}]}}]}}
  - name: images
    match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}
    validate:
      pattern: {{spec: {{containers: [{{image: "!*:latest"}}]}}}}
"#
        )
    };
    // Enforce: refused, naming the rule, the reason and the way out; the autogen copies add nothing.
    let built = build_with(&policy("Enforce", "", ""), Refuse);
    assert!(built.policies.is_empty());
    assert_eq!(built.errors.len(), 1, "{:?}", built.errors);
    let e = &built.errors[0];
    assert_eq!(e.field.as_deref(), Some("spec.rules[baseline]"));
    assert!(e.message.contains("manifests"), "{}", e.message);
    assert!(
        e.message.contains("policyctl.io/unsupported-rules: skip"),
        "{}",
        e.message
    );
    // The rule's own failureAction decides, and an override that enforces somewhere counts.
    assert_eq!(
        build_with(&policy("Audit", "", "failureAction: Enforce"), Refuse)
            .errors
            .len(),
        1
    );
    assert!(
        build_with(&policy("Enforce", "", "failureAction: Audit"), Refuse)
            .errors
            .is_empty()
    );
    let overridden = policy("Audit", "", "").replace(
        "  rules:",
        "  validationFailureActionOverrides: [{action: Enforce, namespaces: [prod]}]\n  rules:",
    );
    assert_eq!(build_with(&overridden, Refuse).errors.len(), 1);
    // Audit only: loads, with the warning.
    let audit = build_with(&policy("Audit", "", ""), Refuse);
    assert!(audit.errors.is_empty(), "{:?}", audit.errors);
    assert_eq!(audit.policies.len(), 1);
    assert!(!audit.warnings.is_empty());
    // Opted out: loads with the rule skipped (a warning says so).
    let opted = build_with(
        &policy("Enforce", "policyctl.io/unsupported-rules: skip", ""),
        Refuse,
    );
    assert!(opted.errors.is_empty(), "{:?}", opted.errors);
    assert_eq!(opted.policies.len(), 1);
    assert!(format!("{:?}", opted.warnings).contains("unsupported, skipped at admission"));
    // `policyctl test` reports the rule's cases as unsupported instead.
    let report = build_with(&policy("Enforce", "", ""), Report);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.policies.len(), 1);
}

#[test]
fn an_enforcing_verify_images_rule_is_refused_and_generate_rules_are_not() {
    use crate::engine::UnsupportedRules::Refuse;
    let verify = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: signed}
spec:
  validationFailureAction: Enforce
  rules:
  - name: verify
    match: {any: [{resources: {kinds: [Pod]}}]}
    verifyImages:
    - imageReferences: ["ghcr.io/*"]
      attestors: [{entries: [{keys: {publicKeys: "k"}}]}]
"#;
    let built = build_with(verify, Refuse);
    assert_eq!(built.errors.len(), 1, "{:?}", built.errors);
    assert!(built.errors[0].message.contains("verifyImages"));
    let audited = verify.replace(
        "    - imageReferences",
        "    - failureAction: Audit\n      imageReferences",
    );
    assert!(build_with(&audited, Refuse).errors.is_empty());
    // A generate rule decides nothing at admission: an Enforce policy with one still loads (with a warning).
    let generate = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: gen}
spec:
  validationFailureAction: Enforce
  rules:
  - name: netpol
    match: {any: [{resources: {kinds: [Namespace]}}]}
    generate:
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      name: deny-all
      namespace: "{{request.object.metadata.name}}"
      data: {spec: {podSelector: {}}}
"#;
    let built = build_with(generate, Refuse);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(built.warnings.len(), 1, "{:?}", built.warnings);
}

#[test]
fn namespaced_policy_only_in_its_namespace() {
    let p = load(
        &POLICY
            .replace("ClusterPolicy", "Policy")
            .replace("{name: no-latest}", "{name: no-latest, namespace: team}"),
    );
    let pod = |ns: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns}, "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}});
    assert!(run(&p, pod("other")).rules.is_empty());
    assert_eq!(run(&p, pod("team")).rules.len(), 1);
}

#[test]
fn context_entries_variables_and_cluster_lookups() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: ctx}
spec:
  validationFailureAction: Enforce
  rules:
  - name: from-variable
    match: {any: [{resources: {kinds: [ConfigMap]}}]}
    context:
    - name: team
      variable:
        jmesPath: request.object.metadata.labels.team
        default: none
    validate:
      message: "team is {{ team }}"
      deny:
        conditions:
          all:
          - key: "{{ team }}"
            operator: Equals
            value: none
  - name: from-config-map
    match: {any: [{resources: {kinds: [ConfigMap]}}]}
    context:
    - name: settings
      configMap: {name: settings, namespace: "{{ request.namespace }}"}
    validate:
      deny:
        conditions:
          all:
          - key: "{{ settings.data.blocked }}"
            operator: Equals
            value: "true"
"#,
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}});
    let review = Review::for_object(cm.clone(), None, Operation::Create);
    // Serving without a cluster: the configMap entry cannot be loaded.
    let err = p
        .check(&review, &EvalContext::default())
        .expect_err("needs cluster context");
    assert!(err.to_string().contains("needs cluster context"), "{err}");
    // With a cluster that has the ConfigMap.
    #[derive(Debug)]
    struct Cluster;
    impl crate::policy::ClusterContext for Cluster {
        fn config_map(&self, namespace: &str, name: &str) -> Option<Value> {
            (namespace == "ns" && name == "settings").then(|| json!({"data": {"blocked": "true"}}))
        }
    }
    let ctx = EvalContext {
        cluster: Arc::new(Cluster),
        ..EvalContext::default()
    };
    let v = p.check(&review, &ctx).expect("validate");
    let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "from-variable: team is none",
            "from-config-map: validation error: rule from-config-map failed"
        ]
    );
    // Testing: configMap entries come from rule values.
    let mut mocks = Mocks::default();
    let mut values = Map::new();
    values.insert("settings.data.blocked".into(), json!("false"));
    mocks.rules.insert("from-config-map".into(), values);
    let user = UserContext::default();
    let options = ApplyOptions {
        user: &user,
        namespace_labels: None,
        lookups: Lookups::Mocks(&mocks),
        part: Part::All,
        deadline: None,
    };
    let r = p.apply(&review, &options, Some(&mocks));
    assert_eq!(r.rules[1].status, RuleStatus::Pass);
}

#[test]
fn failure_action_overrides_and_scope() {
    let p = load(&POLICY.replace(
        "  validationFailureAction: Enforce\n",
        "  validationFailureAction: Enforce\n  validationFailureActionOverrides:\n  - action: Audit\n    namespaces: [dev-*]\n",
    ));
    let rule = &p.rules()[0].spec;
    assert!(p.enforced(rule, "prod", None));
    assert!(!p.enforced(rule, "dev-1", None));
    let scope = p.scope();
    let kinds: Vec<Option<&str>> = scope.entries.iter().map(|e| e.kind.as_deref()).collect();
    for kind in [
        "Pod",
        "Deployment",
        "CronJob",
        "Job",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
    ] {
        assert!(kinds.contains(&Some(kind)), "{kind} missing from {kinds:?}");
    }
    let any = load(&POLICY.replace("kinds: [Pod]", "kinds: [\"*\"]"));
    assert!(
        any.scope().entries.iter().any(|e| e.kind.is_none()),
        "wildcard kinds give a wildcard scope"
    );
}

#[test]
fn update_with_existing_violation_is_skipped_for_enforced_patterns() {
    let p = load(POLICY);
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}});
    let review = Review::for_object(bad.clone(), Some(bad), Operation::Update);
    let user = UserContext::default();
    let mocks = Mocks::default();
    let options = ApplyOptions {
        user: &user,
        namespace_labels: None,
        lookups: Lookups::Mocks(&mocks),
        part: Part::All,
        deadline: None,
    };
    let r = p.apply(&review, &options, Some(&mocks));
    assert_eq!(r.rules[0].status, RuleStatus::Skip);
    let delete = Review::for_object(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}}),
        None,
        Operation::Delete,
    );
    assert!(
        p.apply(&delete, &options, Some(&mocks)).rules.is_empty(),
        "no pattern validation on DELETE"
    );
}

#[test]
fn json_path_variables_load_and_run() {
    let p = load(&POLICY.replace(
        "{{ request.object.metadata.name }}",
        "{{ $.request.object.metadata.name }}",
    ));
    assert!(
        p.rules()[0].unsupported.is_none(),
        "{:?}",
        p.rules()[0].unsupported
    );
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jp"}, "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}});
    let r = run(&p, bad);
    assert!(
        r.rules[0].message.contains("latest is not allowed for jp."),
        "{}",
        r.rules[0].message
    );
}

#[test]
fn foreach_strategic_merge_keeps_container_order_and_apply_rules_one() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: fe}
spec:
  applyRules: One
  rules:
  - name: limits
    match: {any: [{resources: {kinds: [Pod]}}]}
    mutate:
      foreach:
      - list: request.object.spec.containers
        patchStrategicMerge:
          spec:
            containers:
            - name: "{{ element.name }}"
              resources:
                limits:
                  +(memory): 256Mi
  - name: never-reached
    match: {any: [{resources: {kinds: [Pod]}}]}
    mutate:
      patchStrategicMerge:
        metadata:
          labels: {x: y}
"#,
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a"}, {"name": "b", "resources": {"limits": {"memory": "1Gi"}}}, {"name": "c"}]}});
    let r = run(&p, pod);
    assert_eq!(
        r.rules.len(),
        1,
        "applyRules One stops after the first applied rule"
    );
    let patched = r.patched.expect("patched");
    let names: Vec<&str> = patched["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"], "descending foreach keeps the order");
    assert_eq!(
        patched["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "256Mi"
    );
    assert_eq!(
        patched["spec"]["containers"][1]["resources"]["limits"]["memory"],
        "1Gi"
    );
}

#[test]
fn subjects_and_namespace_selectors() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: who}
spec:
  validationFailureAction: Enforce
  rules:
  - name: only-prod-from-ci
    match:
      any:
      - resources:
          kinds: [ConfigMap]
          namespaceSelector: {matchLabels: {env: prod}}
    exclude:
      any:
      - subjects: [{kind: ServiceAccount, name: ci, namespace: tools}]
    validate:
      message: only CI may change prod
      deny: {}
"#,
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "prod-1"}});
    let review = Review::for_object(cm, None, Operation::Create);
    let mocks = Mocks::default();
    let prod: Map<String, Value> = serde_json::from_value(json!({"env": "prod"})).expect("labels");
    let apply = |user: &UserContext, labels: Option<&Map<String, Value>>| {
        let options = ApplyOptions {
            user,
            namespace_labels: labels,
            lookups: Lookups::Mocks(&mocks),
            part: Part::All,
            deadline: None,
        };
        p.apply(&review, &options, Some(&mocks))
            .rules
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    let someone = UserContext {
        username: "alice".into(),
        ..Default::default()
    };
    let ci = UserContext {
        username: "system:serviceaccount:tools:ci".into(),
        ..Default::default()
    };
    assert_eq!(apply(&someone, Some(&prod)), [RuleStatus::Fail]);
    assert_eq!(apply(&ci, Some(&prod)), [], "excluded subject");
    assert_eq!(
        apply(&someone, None),
        [],
        "namespace labels unknown: the selector does not match"
    );
}

#[test]
fn rule_errors_block_only_through_enforced_rules() {
    let audit = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: needs-team}
spec:
  validationFailureAction: Audit
  rules:
  - name: team-label
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      message: "bad team"
      pattern:
        metadata:
          name: "{{ request.object.metadata.labels.team }}"
"#;
    // No labels at all: the variable is an "Unknown key" error, so the rule errors.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
    let review = Review::for_object(pod, None, Operation::Create);
    let ctx = EvalContext::default();

    let recorded = load(audit)
        .check(&review, &ctx)
        .expect("an Audit rule's error never blocks");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].action, Action::Audit);
    assert!(
        recorded[0].message.starts_with("team-label: "),
        "{recorded:?}"
    );

    let enforced = load(&audit.replace("Audit", "Enforce"));
    let err = enforced
        .check(&review, &ctx)
        .expect_err("an enforced rule's error goes to the failure policy");
    assert!(err.to_string().starts_with("team-label: "), "{err}");

    // failurePolicy Ignore is applied by the decide stage (allow, with a warning), not swallowed here.
    let ignore = load(&audit.replace(
        "  validationFailureAction: Audit\n",
        "  validationFailureAction: Enforce\n  failurePolicy: Ignore\n",
    ));
    assert_eq!(ignore.info().failure_policy, Some(FailurePolicy::Ignore));
    assert!(ignore.check(&review, &ctx).is_err());
}

/// Every load error of a one-document file `p.yaml`, as text.
fn load_errors(yaml: &str) -> Vec<String> {
    let (docs, errors) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: yaml.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    match KyvernoPolicy::from_document(&docs[0]) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_misspelled_spec_field_is_an_error_with_a_suggestion() {
    let errors = load_errors(&POLICY.replace("validationFailureAction", "validationFailureActon"));
    assert_eq!(
        errors,
        ["p.yaml, document 1: spec.validationFailureActon: unknown field \"validationFailureActon\" \
          (did you mean \"validationFailureAction\"?)"]
    );
}

#[test]
fn unknown_fields_anywhere_in_a_rule_are_errors() {
    let typo = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: p, labelz: {}}
spec:
  background: false
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod], namspaces: [prod]}}]}
    preconditions:
      all:
      - {key: "{{ request.operation }}", opertor: Equals, value: CREATE}
    validate:
      mesage: no
      deny:
        conditions:
          any:
          - {key: "{{ request.object.metadata.name }}", operator: Equals, value: x}
"#;
    let errors = load_errors(typo);
    assert_eq!(
        errors,
        [
            "p.yaml, document 1: metadata.labelz: unknown field \"labelz\" (did you mean \"labels\"?)",
            "p.yaml, document 1: spec.rules[r].match.any[0].resources.namspaces: unknown field \"namspaces\" \
             (did you mean \"namespaces\"?)",
            "p.yaml, document 1: spec.rules[r].preconditions.all[0].opertor: unknown field \"opertor\" \
             (did you mean \"operator\"?)",
            "p.yaml, document 1: spec.rules[r].validate.mesage: unknown field \"mesage\" (did you mean \"message\"?)",
        ]
    );
}

#[test]
fn fields_kyverno_has_but_policyctl_does_not_use_are_accepted() {
    let yaml = POLICY.replace(
        "  validationFailureAction: Enforce\n",
        "  validationFailureAction: Enforce\n  background: true\n  schemaValidation: false\n  \
         webhookConfiguration: {timeoutSeconds: 5, matchConditions: []}\n",
    );
    assert_eq!(load_errors(&yaml), Vec::<String>::new());
}

#[test]
fn an_unbalanced_variable_is_an_error_naming_the_field() {
    let yaml = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: p}
spec:
  validationFailureAction: Enforce
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      deny:
        conditions:
          any:
          - {key: "{{ request.object.metadata.name }", operator: Equals, value: x}
"#;
    let errors = load_errors(yaml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "p.yaml, document 1: spec.rules[r].validate.deny.conditions.any[0].key: unbalanced \"{{\""
        ),
        "{errors:?}"
    );
}

#[test]
fn expressions_that_do_not_compile_are_errors() {
    let yaml = |expr: &str| {
        format!(
            r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {{name: p}}
spec:
  rules:
  - name: r
    match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}
    validate:
      message: "{{{{ {expr} }}}}"
      pattern: {{metadata: {{name: "?*"}}}}
"#
        )
    };
    for (expr, want) in [
        ("request.object.[", "does not compile"),
        ("no_such_function(request.object)", "no_such_function"),
        ("to_upper('a', 'b')", "to_upper"),
    ] {
        let errors = load_errors(&yaml(expr));
        assert_eq!(errors.len(), 1, "{expr}: {errors:?}");
        assert!(
            errors[0].starts_with("p.yaml, document 1: spec.rules[r].validate.message: expression")
                && errors[0].contains(want),
            "{expr}: {errors:?}"
        );
    }
    assert_eq!(load_errors(&yaml("to_upper('a')")), Vec::<String>::new());
}

#[test]
fn a_kind_no_builtin_api_has_is_a_warning_naming_it() {
    let (docs, _) = documents(&SourceFile {
        origin: "p.yaml".into(),
        content: POLICY.replace(
            "kinds: [Pod]",
            "kinds: [Pdo, apps/v1/Deployment, cert-manager.io/v1/Certificate]",
        ),
    });
    let (_, warnings) = KyvernoPolicy::from_document(&docs[0]).expect("policy");
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "p.yaml, document 1: spec.rules[check-tag].match.any[0].resources.kinds[0]: kind \"Pdo\" is not a built-in"
        ) && warnings[0].contains("did you mean \"Pod\""),
        "{warnings:?}"
    );
}

#[test]
fn an_unknown_condition_operator_is_an_error_with_a_suggestion() {
    let yaml = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: p}
spec:
  validationFailureAction: Enforce
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    preconditions:
    - {key: "{{ request.operation }}", operator: Equls, value: CREATE}
    validate:
      foreach:
      - list: request.object.spec.containers
        deny:
          conditions:
            all:
            - {key: "{{ element.name }}", operator: AnyIn, value: [a]}
            - {key: "{{ element.name }}", operator: NotAnOperator, value: b}
"#;
    assert_eq!(
        load_errors(yaml),
        [
            "p.yaml, document 1: spec.rules[r].preconditions[0].operator: unknown condition operator \"Equls\" \
             (did you mean \"Equals\"?)",
            "p.yaml, document 1: spec.rules[r].validate.foreach[0].deny.conditions.all[1].operator: unknown \
             condition operator \"NotAnOperator\"",
        ]
    );
}

/// A Pod with containers `a` (no security context) and `b` (runAsNonRoot: false).
fn two_containers() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "x"},
        {"name": "b", "image": "y", "securityContext": {"runAsNonRoot": false}}
    ]}})
}

#[test]
fn an_error_inside_a_foreach_element_is_a_rule_error_not_a_failure() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: fe, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  validationFailureAction: Enforce
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      message: "bad"
      foreach:
      - list: "request.object.spec.containers"
        pattern:
          image: "{{ element.nothing.here }}"
"#,
    );
    let r = run(&p, two_containers());
    assert_eq!(r.rules[0].status, RuleStatus::Error, "{:?}", r.rules);
    assert!(
        r.rules[0].message.contains("Unknown key \"nothing\""),
        "{:?}",
        r.rules
    );
}

#[test]
fn deny_conditions_read_a_missing_key_as_an_empty_string_as_kyverno_s_resolver_does() {
    // Kyverno substitutes deny conditions and preconditions with its preconditions resolver: a variable that does
    // not resolve becomes "" (a pattern or a message errors instead, see the foreach test above).
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: nil, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  validationFailureAction: Enforce
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      message: "bad"
      deny:
        conditions:
          any:
          - key: "{{ request.object.spec.missing }}"
            operator: Equals
            value: ""
"#,
    );
    let r = run(&p, two_containers());
    assert_eq!(r.rules[0].status, RuleStatus::Fail, "{:?}", r.rules);
}

#[test]
fn context_entries_resolve_in_declaration_order_with_defaults() {
    // `second` reads `first`, declared after it: not defined yet, so its default applies (Kyverno loads entries in
    // order); a JMESPath that finds nothing takes the entry's default too.
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: ctx, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  validationFailureAction: Enforce
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    context:
    - name: second
      variable: {jmesPath: "first", default: "none"}
    - name: first
      variable: {value: "one"}
    - name: third
      variable: {jmesPath: "first"}
    - name: withdefault
      variable: {jmesPath: "request.object.spec.nothing", default: "dflt"}
    validate:
      message: "{{ second }} {{ third }} {{ withdefault }}"
      deny: {}
"#,
    );
    let r = run(&p, two_containers());
    assert_eq!(r.rules[0].message, "none one dflt", "{:?}", r.rules);
}

#[test]
fn add_if_not_present_inside_foreach_patches_each_element_once() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: m, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    mutate:
      foreach:
      - list: "request.object.spec.containers"
        patchStrategicMerge:
          spec:
            containers:
            - name: "{{ element.name }}"
              securityContext:
                +(runAsNonRoot): true
"#,
    );
    let r = run(&p, two_containers());
    let patched = r.patched.expect("patched");
    assert_eq!(
        patched["spec"]["containers"],
        json!([
            {"name": "a", "image": "x", "securityContext": {"runAsNonRoot": true}},
            {"name": "b", "image": "y", "securityContext": {"runAsNonRoot": false}}
        ])
    );
}

#[test]
fn a_wildcard_condition_anchor_in_a_strategic_merge_patches_every_element() {
    // `(name): "*"` selects every container; the list keeps its order and each element gains the field.
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: m, annotations: {pod-policies.kyverno.io/autogen-controllers: none}}
spec:
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    mutate:
      patchStrategicMerge:
        spec:
          containers:
          - (name): "*"
            imagePullPolicy: Always
"#,
    );
    let patched = run(&p, two_containers()).patched.expect("patched");
    assert_eq!(
        patched["spec"]["containers"],
        json!([
            {"name": "a", "image": "x", "imagePullPolicy": "Always"},
            {"name": "b", "image": "y", "imagePullPolicy": "Always", "securityContext": {"runAsNonRoot": false}}
        ])
    );
}

/// A served review's context, which reads the review in place, and the context over the same review's fully built
/// base document: the two must answer every query alike.
fn served_and_built(
    review: &Review,
) -> (crate::variables::Context<'_>, crate::variables::Context<'_>) {
    use crate::variables::{Base, Context};
    let full = crate::base_document(review, &crate::matching::UserContext::default(), None);
    (
        Context::with_base(Base::served(review), false),
        Context::new(std::sync::Arc::new(full), false),
    )
}

#[test]
fn served_expressions_read_the_review_request_without_copying_it() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.2"}]}});
    let review = Review::for_object(pod, None, Operation::Create);
    let (served, ready) = served_and_built(&review);
    for text in [
        "request.object.metadata.name",
        "request.object.spec.containers[].image",
        "request.object.spec.[initContainers, containers][]",
        "request.operation",
        "request.missing || 'none'",
        "images.containers.app.tag",
        "serviceAccountName",
        "request.object.spec.containers[?name == 'app'].image | [0]",
    ] {
        assert_eq!(served.query(text), ready.query(text), "{text}");
    }
    // Only member reads so far: the base document with the request copied into it was never built.
    assert!(!served.base_built());
    for text in [
        "request.roles",
        "request.clusterRoles",
        "request.userInfo",
        "keys(@)",
        "length(request)",
        "request",
    ] {
        assert_eq!(served.query(text), ready.query(text), "{text}");
    }
    assert!(
        served.base_built(),
        "whole-request reads use the full document"
    );
    // The element of a foreach is the review's own container.
    let items =
        crate::validate::elements(&served, "request.object.spec.containers").expect("elements");
    assert!(std::ptr::eq(
        &*items[0],
        &review.request()["object"]["spec"]["containers"][0]
    ));
}

#[test]
fn bodies_are_compiled_at_load_and_patterns_with_variables_after_substitution() {
    let policy = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: compiled}
spec:
  rules:
  - name: static
    match: {any: [{resources: {kinds: [Pod]}}]}
    preconditions:
      all: [{key: "{{ request.operation }}", operator: NotEquals, value: DELETE}]
    validate:
      message: "{{ request.object.metadata.name }} needs a tag"
      anyPattern:
      - spec: {containers: [{image: "*:*"}]}
      - metadata: {labels: {tag: "?*"}}
  - name: dynamic
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      pattern:
        spec: {containers: [{name: "{{ request.object.metadata.name }}*"}]}
  - name: each
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      foreach:
      - list: request.object.spec.containers
        preconditions: {all: [{key: "{{ element.name }}", operator: NotEquals, value: skip}]}
        pattern: {image: "!*:latest"}
        foreach:
        - list: element.ports || `[]`
          deny: {conditions: {any: [{key: "{{ element.containerPort }}", operator: Equals, value: 22}]}}
"#,
    );
    let body = |i: usize| {
        policy.rules()[i]
            .spec
            .validate
            .as_ref()
            .and_then(|v| v.compiled.clone())
            .expect("compiled")
    };
    assert!(policy.rules()[0].spec.preconditions_compiled.is_some());
    assert!(body(0).any_pattern.as_ref().is_some_and(|l| l.len() == 2));
    assert!(body(1).pattern.is_none(), "compiled per evaluation");
    let each = &policy.rules()[2]
        .spec
        .validate
        .as_ref()
        .expect("validate")
        .foreach;
    let fe = &each.as_ref().expect("foreach")[0];
    let c = fe.compiled.as_ref().expect("compiled foreach");
    assert!(c.pattern.is_some() && c.preconditions.is_some());
    let nested = &fe.foreach.as_ref().expect("nested")[0];
    assert!(nested.compiled.as_ref().is_some_and(|c| c.deny.is_some()));

    let pod = |name: &str, image: &str, port: u16| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [
            {"name": "web-a", "image": image, "ports": [{"containerPort": port}]}
        ]}})
    };
    let statuses = |r: &PolicyResponse| {
        r.rules
            .iter()
            .map(|r| (r.name.clone(), r.status, r.message.clone()))
            .collect::<Vec<_>>()
    };
    let ok = run(&policy, pod("web", "a:1", 80));
    assert!(
        ok.rules.iter().all(|r| r.status == RuleStatus::Pass),
        "{:?}",
        statuses(&ok)
    );
    let bad = run(&policy, pod("api", "a:latest", 22));
    assert_eq!(
        statuses(&bad),
        [
            (
                "static".to_string(),
                RuleStatus::Pass,
                "validation rule 'static' anyPattern[0] passed.".to_string()
            ),
            (
                "dynamic".to_string(),
                RuleStatus::Fail,
                "validation error: rule dynamic failed at path /spec/containers/0/name/"
                    .to_string()
            ),
            (
                "each".to_string(),
                RuleStatus::Fail,
                "validation failure: validation error: rule each failed at path /image/"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn served_images_are_built_only_for_expressions_that_read_them() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/o/app:1.2"}]}});
    let review = Review::for_object(pod, None, Operation::Create);
    let (served, ready) = served_and_built(&review);
    for text in [
        "request.object.metadata.name",
        "serviceAccountName",
        "serviceAccountNamespace",
    ] {
        assert_eq!(served.query(text), ready.query(text), "{text}");
    }
    assert!(!served.images_built(), "no expression read images");
    for text in [
        "images.containers.app.registry",
        "images.containers.app",
        "images.initContainers.x",
        "images.containers.*.tag",
        "request.object.metadata.name || images",
    ] {
        assert_eq!(served.query(text), ready.query(text), "{text}");
    }
    assert!(served.images_built());
    assert!(!served.base_built());
    // A variable of the rule named `images` shadows the review's, as it does in the full document.
    let (mut served, mut ready) = (
        Context::with_base(Base::served(&review), false),
        ready.clone(),
    );
    served.set("images", json!({"mine": true}));
    ready.set("images", json!({"mine": true}));
    assert_eq!(served.query("images.mine"), Ok(json!(true)));
    assert_eq!(served.query("images"), ready.query("images"));
}

#[test]
fn patterns_whose_variables_fail_and_an_any_pattern_that_is_not_a_list_are_rule_errors() {
    let p = load(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: sub}
spec:
  rules:
  - name: pattern
    match: {any: [{resources: {kinds: [ConfigMap]}}]}
    validate:
      pattern:
        data:
          x: "{{ request.object.metadata.missing }}"
  - name: any
    match: {any: [{resources: {kinds: [ConfigMap]}}]}
    validate:
      anyPattern:
      - data: {x: "a"}
      - data: {x: "{{ request.object.metadata.missing }}"}
  - name: not-a-list
    match: {any: [{resources: {kinds: [ConfigMap]}}]}
    validate:
      anyPattern:
        data: {x: "a"}
"#,
    );
    let r = run(
        &p,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "a"}}),
    );
    for rule in &r.rules[..2] {
        assert_eq!(rule.status, RuleStatus::Error, "{:?}", r.rules);
        assert!(
            rule.message.starts_with("variable substitution failed: "),
            "{:?}",
            r.rules
        );
    }
    assert_eq!(r.rules[2].status, RuleStatus::Error, "{:?}", r.rules);
    assert_eq!(r.rules[2].message, "anyPattern must be a list");
}

/// Load errors name the expression that does not compile: the texts are pinned.
#[test]
fn expression_error_messages_are_kept() {
    let jmes = crate::compile_expression("to_upper(").expect_err("JMESPath");
    assert!(matches!(jmes, crate::ExpressionError::JmesPath { .. }));
    let inner = crate::jmespath::Expression::compile("to_upper(").expect_err("inner");
    assert_eq!(
        jmes.to_string(),
        format!("expression \"to_upper(\" does not compile: {inner}")
    );
    let e = crate::ExpressionError::JmesPath {
        expression: "a.".to_string(),
        source: crate::jmespath::JmesError::Parse {
            expression: "a.".to_string(),
            message: "bad".to_string(),
        },
    };
    assert_eq!(
        e.to_string(),
        "expression \"a.\" does not compile: invalid JMESPath expression \"a.\": bad"
    );
    let json = crate::compile_expression("$[").expect_err("JSONPath");
    let crate::ExpressionError::JsonPath { source, .. } = &json else {
        panic!("a JSONPath error: {json:?}")
    };
    assert_eq!(
        json.to_string(),
        format!("JSONPath \"$[\" does not compile: {source}")
    );
    assert!(std::error::Error::source(&json).is_some());
    assert_eq!(crate::compile_expression("a.b"), Ok(()));
}

/// A foreach `list` compiled at load gives the elements the text path gives (values and borrowing alike), on a
/// served review, on a built document and on DELETE (where `request.object` reads `request.oldObject`).
#[test]
fn compiled_foreach_lists_answer_as_the_text_path() {
    use crate::variables::{CompiledList, Context};
    let review = Review::for_object(
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {
            "initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "redis"}]
        }}),
        Some(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "old"},
            "spec": {"containers": [{"name": "old"}]}}),
        ),
        Operation::Update,
    );
    let lists = [
        "request.object.spec.containers",
        "{{ request.object.spec.containers }}",
        "  request.object.spec.[ephemeralContainers, initContainers, containers][]  ",
        "request.object.spec.containers[?name == 'b']",
        "request.object.metadata.labels",
        "request.object.metadata.name",
        "request.object.spec.volumes",
        "request.object.spec.nothing || `[]`",
        "images.containers.*",
        "request.oldObject.spec.containers",
        "request.object.spec.containers[].image",
        "@",
        "$.request.object.spec.containers",
        "request.(",
        "",
    ];
    let (served, ready) = served_and_built(&review);
    let deleted = Context::new(
        std::sync::Arc::new(crate::base_document(
            &review,
            &crate::matching::UserContext::default(),
            None,
        )),
        true,
    );
    let values = |items: Option<Vec<crate::variables::Shared<'_>>>| {
        items.map(|l| l.iter().map(|s| (**s).clone()).collect::<Vec<Value>>())
    };
    for list in lists {
        let compiled = CompiledList::new(list);
        let jmespath = !matches!(list.trim(), "@" | "" | "request.(") && !list.starts_with('$');
        assert_eq!(compiled.is_some(), jmespath, "{list:?}");
        for ctx in [&served, &ready, &deleted] {
            let general = ctx.elements(list);
            let fast = ctx.elements_compiled(list, compiled.as_ref());
            // The same elements, borrowed from the same values when the text path borrows.
            for (g, f) in general.iter().flatten().zip(fast.iter().flatten()) {
                assert_eq!(
                    matches!(g, crate::variables::Shared::Ref(r) if matches!(f, crate::variables::Shared::Ref(s) if std::ptr::eq(*r, *s))),
                    matches!(g, crate::variables::Shared::Ref(_)),
                    "{list:?}"
                );
            }
            assert_eq!(values(fast), values(general), "{list:?}");
        }
    }
    // On DELETE a list that mentions request.object reads the old object, as the text path does.
    let list = "request.object.spec.containers";
    let compiled = CompiledList::new(list);
    assert_eq!(
        values(deleted.elements_compiled(list, compiled.as_ref())),
        Some(vec![json!({"name": "old"})])
    );
}
