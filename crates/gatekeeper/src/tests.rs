use crate::policy::Check;
use std::time::Duration;

use serde_json::json;

use super::template::{Evaluator, Template};
use crate::admission::{Operation, Review};
use crate::engine::LoadOptions;
use crate::policy::loader::{compile_with, Compiled};
use crate::policy::SourceFile as LoadedFile;

/// Compile with this engine alone.
fn compile(files: &[LoadedFile], options: &crate::engine::LoadOptions) -> Compiled {
    compile_with(&[Box::new(crate::GatekeeperEngine)], files, options)
}
use crate::policy::source::documents;
use crate::policy::{
    Action, ClusterContext, EvalContext, EvalError, Policy, SourceFile, Violation,
};

fn src(origin: &str, content: &str) -> SourceFile {
    SourceFile {
        origin: origin.into(),
        content: content.into(),
    }
}

const TEMPLATE: &str = r#"
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8srequiredlabels
spec:
  crd:
    spec:
      names:
        kind: K8sRequiredLabels
      validation:
        openAPIV3Schema:
          type: object
          properties:
            labels:
              type: array
              items:
                type: string
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8srequiredlabels
        import data.lib.helpers.missing

        violation[{"msg": msg, "details": {"missing": m}}] {
          m := missing(input.review.object, input.parameters.labels)
          count(m) > 0
          msg := sprintf("missing labels: %v", [m])
        }
        violation[{"details": {}}] {
          true
        }
      libs:
        - |
          package lib.helpers
          missing(obj, required) = m {
            provided := {l | obj.metadata.labels[l]}
            m := {l | l := required[_]} - provided
          }
"#;

fn constraint(name: &str, action: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: {name}\nspec:\n  \
         enforcementAction: {action}\n  match:\n    kinds:\n      - apiGroups: [\"\"]\n        kinds: [\"Pod\"]\n{extra}  \
         parameters:\n    labels: [\"owner\"]\n"
    )
}

fn load(content: &str) -> Vec<std::sync::Arc<dyn Policy>> {
    let compiled = compile(&[src("p.yaml", content)], &LoadOptions::default());
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    compiled.built.policies
}

fn errors(content: &str) -> Vec<String> {
    compile(&[src("p.yaml", content)], &LoadOptions::default())
        .built
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn pod(labels: serde_json::Value, op: Operation) -> Review {
    Review::for_object(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "labels": labels}}),
        None,
        op,
    )
}

#[test]
fn enforcement_actions_map_to_violation_actions() {
    let policies = load(&format!(
        "{TEMPLATE}{}{}{}{}",
        constraint("d", "deny", ""),
        constraint("e", "\"\"", ""),
        constraint("w", "warn", ""),
        constraint("a", "dryrun", "")
    ));
    assert_eq!(policies.len(), 4);
    let review = pod(json!({}), Operation::Create);
    let actions: Vec<Vec<Violation>> = policies
        .iter()
        .map(|p| {
            p.check(&review, &EvalContext::default())
                .expect("evaluates")
        })
        .collect();
    let msg = "missing labels: {\"owner\"}".to_string();
    assert_eq!(
        actions[0],
        vec![Violation {
            message: msg.clone(),
            action: Action::Deny,
            reason: None,
        }]
    );
    assert_eq!(actions[1][0].action, Action::Deny);
    assert_eq!(actions[2][0].action, Action::Warn);
    assert_eq!(actions[3][0].action, Action::Audit);
    assert_eq!(policies[0].info().name, "d");
    assert_eq!(policies[0].info().kind, "K8sRequiredLabels");
    assert_eq!(policies[0].info().engine, "gatekeeper");
    // Compliant and unmatched requests pass.
    assert!(policies[0]
        .check(
            &pod(json!({"owner": "me"}), Operation::Create),
            &EvalContext::default()
        )
        .expect("ok")
        .is_empty());
    let deployment = Review::for_object(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}),
        None,
        Operation::Create,
    );
    assert!(policies[0]
        .check(&deployment, &EvalContext::default())
        .expect("ok")
        .is_empty());
}

#[test]
fn scoped_actions_use_the_webhook_point() {
    let scoped = |points: &str| {
        format!(
            "---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: s\nspec:\n  \
             enforcementAction: scoped\n  scopedEnforcementActions:\n    - action: warn\n      enforcementPoints: {points}\n  \
             parameters:\n    labels: [\"owner\"]\n"
        )
    };
    let policies = load(&format!(
        "{TEMPLATE}{}",
        scoped("[{name: validation.gatekeeper.sh}]")
    ));
    let found = policies[0]
        .check(&pod(json!({}), Operation::Create), &EvalContext::default())
        .expect("ok");
    assert_eq!(found[0].action, Action::Warn);
    let policies = load(&format!(
        "{TEMPLATE}{}",
        scoped("[{name: audit.gatekeeper.sh}]")
    ));
    assert!(!policies[0].validates());
    assert!(policies[0].scope().entries.is_empty());
    let (docs, _) = documents(&src(
        "s.yaml",
        &format!(
            "{TEMPLATE}{}",
            scoped("[{name: audit.gatekeeper.sh}, {name: gator.gatekeeper.sh}]")
        ),
    ));
    let (template, _) = Template::load(&docs[0], Duration::from_secs(1)).expect("compiles");
    let templates =
        std::collections::HashMap::from([(template.kind.clone(), std::sync::Arc::new(template))]);
    let loaded = super::Constraint::load(&docs[1], &templates).expect("loads");
    assert!(loaded.action_at("gator.gatekeeper.sh").is_some());
    assert!(loaded.action_at("audit.gatekeeper.sh").is_some());
    assert_eq!(loaded.action_at("validation.gatekeeper.sh"), None);
    assert_eq!(loaded.action, None);
    let errs = errors(&format!("{TEMPLATE}{}", constraint("x", "block", "")));
    assert!(
        errs[0]
            .contains("document 2: spec.enforcementAction: unknown enforcement action \"block\""),
        "{errs:?}"
    );
}

#[test]
fn unknown_constraint_fields_are_errors_with_a_suggestion() {
    let typo = "---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: t\nspec:\n  enforcmentAction: warn\n  match:\n    namespace: [\"prod\"]\n";
    assert_eq!(
        errors(&format!("{TEMPLATE}{typo}")),
        [
            "p.yaml, document 2: spec.enforcmentAction: unknown field \"enforcmentAction\" (did you mean \"enforcementAction\"?)",
            "p.yaml, document 2: spec.match.namespace: unknown field \"namespace\" (did you mean \"namespaces\"?)",
        ]
    );
}

#[test]
fn unknown_template_fields_are_errors() {
    let typo = TEMPLATE.replacen("targets:", "targts:", 1);
    let found = errors(&typo);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0],
        "p.yaml, document 1: spec.targts: unknown field \"targts\" (did you mean \"targets\"?)"
    );
    let nested = TEMPLATE.replacen("rego: |", "regoo: |", 1);
    let found = errors(&nested);
    assert!(
        found
            .iter()
            .any(|e| e.contains("spec.targets[0].regoo: unknown field")),
        "{found:?}"
    );
}

#[test]
fn constraint_kinds_no_builtin_api_has_are_warnings() {
    let content = format!(
        "{TEMPLATE}---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: t\nspec:\n  match:\n    kinds: [{{apiGroups: [\"\"], kinds: [Pdo, Pod]}}, {{apiGroups: [example.com], kinds: [Widget]}}]\n"
    );
    let compiled = compile(&[src("p.yaml", &content)], &LoadOptions::default());
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
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "p.yaml, document 2: spec.match.kinds[0].kinds[0]: kind \"Pdo\" is not a built-in"
        ) && warnings[0].contains("did you mean \"Pod\""),
        "{warnings:?}"
    );
}

#[test]
fn inventory_templates_without_sync_config_get_a_warning() {
    let template = TEMPLATE.replace(
        "count(m) > 0",
        "count(m) > 0\n          not data.inventory.cluster.v1.Namespace.x",
    );
    let compiled = compile(&[src("p.yaml", &template)], &LoadOptions::default());
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
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .contains("template k8srequiredlabels reads data.inventory, but no Gatekeeper Config"),
        "{warnings:?}"
    );
    let sync = "---\napiVersion: syncset.gatekeeper.sh/v1alpha1\nkind: SyncSet\nmetadata:\n  name: s\nspec:\n  gvks: [{group: \"\", version: v1, kind: Namespace}]\n";
    let compiled = compile(
        &[src("p.yaml", &format!("{template}{sync}"))],
        &LoadOptions::default(),
    );
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
}

#[derive(Debug)]
struct Inventory(std::sync::Arc<serde_json::Value>);

impl ClusterContext for Inventory {
    fn inventory(&self) -> Option<std::sync::Arc<serde_json::Value>> {
        Some(self.0.clone())
    }
}

#[test]
fn webhook_templates_see_the_cluster_inventory() {
    let template = TEMPLATE.replace(
        "count(m) > 0",
        "count(m) > 0\n          data.inventory.cluster.v1.Namespace[input.review.object.metadata.namespace]",
    );
    let policies = load(&format!("{template}{}", constraint("d", "deny", "")));
    let review = || pod(json!({}), Operation::Create);
    assert!(policies[0]
        .check(&review(), &EvalContext::default())
        .expect("ok")
        .is_empty());
    let inventory = json!({"cluster": {"v1": {"Namespace": {"ns": {"metadata": {"name": "ns"}}}}}});
    let ctx = EvalContext {
        cluster: std::sync::Arc::new(Inventory(std::sync::Arc::new(inventory))),
        ..EvalContext::default()
    };
    assert_eq!(policies[0].check(&review(), &ctx).expect("ok").len(), 1);
}

#[test]
fn unknown_constraint_kind_names_file_document_and_field() {
    let errs = errors(&format!(
        "{TEMPLATE}---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sMissing\nmetadata:\n  name: x\n"
    ));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("p.yaml, document 2: kind: no ConstraintTemplate defines the constraint kind \"K8sMissing\""), "{errs:?}");
}

#[test]
fn parameter_schema_errors_name_constraint_and_field() {
    let bad = "---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: bad\nspec:\n  parameters:\n    labels: [\"a\", 3]\n";
    let errs = errors(&format!("{TEMPLATE}{bad}"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "p.yaml, document 2: spec.parameters.labels[1]: constraint K8sRequiredLabels bad:"
        ),
        "{errs:?}"
    );
}

#[test]
fn template_problems_are_load_errors() {
    let with_rego = |rego: &str| {
        format!(
            "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata:\n  name: k8sx\nspec:\n  crd:\n    spec:\n      \
             names:\n        kind: K8sX\n  targets:\n    - target: admission.k8s.gatekeeper.sh\n      rego: |\n{}",
            rego.lines().map(|l| format!("        {l}\n")).collect::<String>()
        )
    };
    let errs = errors(&with_rego(
        "package x\nviolation[{\"msg\": m}] { r := http.send({}); m := \"x\" }",
    ));
    assert!(
        errs[0].contains("spec.targets[0].rego: http.send is not available"),
        "{errs:?}"
    );
    let errs = errors(&with_rego(
        "package x\nviolation[{\"msg\": m}] { m := data.secrets.x }",
    ));
    assert!(errs[0].contains("disallowed ref data.secrets"), "{errs:?}");
    let errs = errors(&with_rego("package x\nviolation[{\"msg\": m}] { r := external_data({\"provider\": \"p\", \"keys\": []}); m := \"x\" }"));
    assert!(
        errs[0].contains("external_data is not supported"),
        "{errs:?}"
    );
    let errs = errors(&TEMPLATE.replace("package lib.helpers", "package helpers"));
    assert!(
        errs[0].contains("spec.targets[0].libs[0]: a lib's package must be under lib"),
        "{errs:?}"
    );
    let errs = errors(&with_rego("package x\ndeny[m] { m := 1 }"));
    assert!(
        errs[0].contains("missing required rule `violation`"),
        "{errs:?}"
    );
    let errs = errors(&with_rego("package x\nviolation[{\"msg\": m}] { m := }"));
    assert!(errs[0].contains("Rego does not compile"), "{errs:?}");
    // A recursive function (OPA refuses it; on regorus its depth is the input's choice and overflows the stack).
    let errs = errors(&with_rego(
        "package x\ndown(n) = 0 { n <= 0 }\ndown(n) = d { n > 0; d := down(n - 1) + 1 }\nviolation[{\"msg\": m}] { down(input.review.object.spec.replicas) > 3; m := \"x\" }",
    ));
    assert!(
        errs[0].contains(
            "Rego does not compile: the template is recursive: data.x.down -> data.x.down"
        ),
        "{errs:?}"
    );
    let errs = errors(
        &with_rego("package x\nviolation[{\"msg\": m}] { m := \"x\" }")
            .replace("name: k8sx", "name: other"),
    );
    assert!(
        errs[0].contains(
            "metadata.name: template name \"other\" is not equal to the lowercase of CRD's Kind"
        ),
        "{errs:?}"
    );
}

#[test]
fn divergences_are_rewritten_and_reported_as_warnings() {
    let template = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sdiv
spec:
  crd:
    spec:
      names:
        kind: K8sDiv
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package div
        kind_label(obj) = l {
          obj.kind == "Pod"
          l := "pod"
        } {
          obj.kind == "Service"
          l := "service"
        }
        violation[{"msg": msg}] {
          l := kind_label(input.review.object)
          input.review.object.spec.replicas
          (input.review.object.spec.replicas - 1) >= 0
          msg := sprintf("%v %v has %v", [l, input.review.object.metadata.name])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sDiv
metadata:
  name: div
"#;
    let compiled = compile(&[src("d.yaml", template)], &LoadOptions::default());
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
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.contains("D1"))
            && warnings.iter().any(|w| w.contains("D2"))
            && warnings.iter().any(|w| w.contains("D3"))
    );
    let policy = &compiled.built.policies[0];
    let service = Review::for_object(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"replicas": 2}}),
        None,
        Operation::Create,
    );
    let found = policy
        .check(&service, &EvalContext::default())
        .expect("evaluates");
    assert_eq!(found, vec![Violation::deny("service s has %!v(MISSING)")]);
}

#[test]
fn runaway_template_hits_the_time_limit() {
    let template = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sslow
spec:
  crd:
    spec:
      names:
        kind: K8sSlow
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package slow
        violation[{"msg": msg}] {
          n := count([x | some i, j; x := numbers.range(1, 3000)[i] * numbers.range(1, 3000)[j]])
          msg := sprintf("%v", [n])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSlow
metadata:
  name: slow
"#;
    // The VM, and the interpreter (the VM compiler rejects `with`, which routes the template there).
    let interpreted = template
        .replace("k8sslow", "k8sslowinterp")
        .replace("K8sSlow", "K8sSlowInterp")
        .replace(
            "package slow",
            "package slow\n        violation[{\"msg\": \"never\"}] { input.never with input.never as false }",
        );
    for (source, evaluator) in [
        (template.to_string(), Evaluator::Vm),
        (interpreted, Evaluator::Interpreter),
    ] {
        let (docs, _) = documents(&src("s.yaml", &source));
        let (compiled, _) = Template::load(&docs[0], Duration::from_secs(1)).expect("compiles");
        assert_eq!(compiled.evaluator(), evaluator);
        let policies = load(&source);
        let ctx = EvalContext::new(
            Duration::from_millis(50),
            std::sync::Arc::new(crate::policy::NoCluster),
        );
        let err = policies[0]
            .check(&pod(json!({}), Operation::Create), &ctx)
            .expect_err("times out");
        assert_eq!(err, EvalError::Timeout(Duration::from_millis(50)));
    }
}

#[test]
fn an_evaluation_error_follows_the_constraints_enforcement_action() {
    let slow = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sslowaction
spec:
  crd:
    spec:
      names:
        kind: K8sSlowAction
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package slowaction
        violation[{"msg": msg}] {
          n := count([x | some i, j; x := numbers.range(1, 3000)[i] * numbers.range(1, 3000)[j]])
          msg := sprintf("%v", [n])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSlowAction
metadata:
  name: slow-dryrun
spec:
  enforcementAction: dryrun
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSlowAction
metadata:
  name: slow-warn
spec:
  enforcementAction: warn
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSlowAction
metadata:
  name: slow-deny
"#;
    let policies = load(slow);
    let review = pod(json!({}), Operation::Create);
    // Each evaluation is its own request, with its own 50 ms deadline.
    let by_name = |name: &str| {
        let ctx = EvalContext::new(
            Duration::from_millis(50),
            std::sync::Arc::new(crate::policy::NoCluster),
        );
        policies
            .iter()
            .find(|p| p.info().name == name)
            .unwrap_or_else(|| panic!("{name} loaded"))
            .check(&review, &ctx)
    };
    let dryrun =
        by_name("slow-dryrun").expect("a dryrun constraint's error is a record, not a failure");
    assert_eq!(dryrun.len(), 1);
    assert_eq!(dryrun[0].action, crate::policy::Action::Audit);
    assert!(
        dryrun[0].message.contains("request deadline"),
        "{}",
        dryrun[0].message
    );
    let warn = by_name("slow-warn").expect("a warn constraint's error is a warning");
    assert_eq!(warn[0].action, crate::policy::Action::Warn);
    let deny =
        by_name("slow-deny").expect_err("a deny constraint's error goes to the failure policy");
    assert_eq!(deny, EvalError::Timeout(Duration::from_millis(50)));
}

#[test]
fn template_operations_filter_requests_and_set_the_scope() {
    let template = TEMPLATE.replace(
        "- target: admission.k8s.gatekeeper.sh",
        "- target: admission.k8s.gatekeeper.sh\n      operations: [\"CREATE\"]",
    );
    let policies = load(&format!("{template}{}", constraint("d", "deny", "")));
    let ctx = EvalContext::default();
    assert_eq!(
        policies[0]
            .check(&pod(json!({}), Operation::Create), &ctx)
            .expect("ok")
            .len(),
        1
    );
    assert!(policies[0]
        .check(&pod(json!({}), Operation::Update), &ctx)
        .expect("ok")
        .is_empty());
    let scope = policies[0].scope();
    assert_eq!(scope.entries.len(), 1);
    assert_eq!(scope.entries[0].group.as_deref(), Some(""));
    assert_eq!(scope.entries[0].kind.as_deref(), Some("Pod"));
    assert!(!scope.entries[0].operations.contains(&Operation::Update));
}

#[derive(Debug)]
struct OneNamespace;

impl ClusterContext for OneNamespace {
    fn namespace(&self, name: &str) -> Option<serde_json::Value> {
        (name == "ns").then(|| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns", "labels": {"env": "prod"}}}))
    }
}

#[test]
fn namespace_selector_uses_the_cluster_and_autorejects_without_it() {
    let selector = "    namespaceSelector:\n      matchLabels:\n        env: prod\n";
    let policies = load(&format!("{TEMPLATE}{}", constraint("w", "warn", selector)));
    let review = pod(json!({}), Operation::Create);
    let with_cluster = EvalContext {
        cluster: std::sync::Arc::new(OneNamespace),
        ..EvalContext::default()
    };
    let found = policies[0].check(&review, &with_cluster).expect("ok");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].action, Action::Warn);
    // A fresh review: the Gatekeeper form of a review (with its namespace) is built once per review.
    let found = policies[0]
        .check(&pod(json!({}), Operation::Create), &EvalContext::default())
        .expect("ok");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].action, Action::Deny, "autoreject always denies");
    assert_eq!(
        found[0].message,
        "namespace \"ns\" is not available, so the namespaceSelector of this constraint cannot be evaluated; the \
         request is rejected (autoreject)",
        "{found:?}"
    );
}

#[test]
fn delete_reviews_the_old_object_and_v1_code_is_rego_v1() {
    let template = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8snodelete
spec:
  crd:
    spec:
      names:
        kind: K8sNoDelete
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package nodelete
              violation contains {"msg": msg} if {
                input.review.object.metadata.labels.protected == "true"
                msg := sprintf("%v is protected", [input.review.object.metadata.name])
              }
---
apiVersion: constraints.gatekeeper.sh/v1
kind: K8sNoDelete
metadata:
  name: protect
"#;
    let policies = load(template);
    let found = policies[0]
        .check(
            &pod(json!({"protected": "true"}), Operation::Delete),
            &EvalContext::default(),
        )
        .expect("ok");
    assert_eq!(found, vec![Violation::deny("p is protected")]);
}

#[test]
fn pooled_machines_give_consistent_answers_across_threads() {
    let policies = load(&format!("{TEMPLATE}{}", constraint("d", "deny", "")));
    let policy = policies[0].clone();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let policy = policy.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let labelled = (i + t) % 2 == 0;
                    let labels = if labelled {
                        json!({"owner": "x"})
                    } else {
                        json!({})
                    };
                    let found = policy
                        .check(&pod(labels, Operation::Create), &EvalContext::default())
                        .expect("ok");
                    assert_eq!(found.is_empty(), labelled, "thread {t} iteration {i}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic");
    }
}

#[test]
fn other_gatekeeper_resources_load_as_warnings() {
    let others = "apiVersion: config.gatekeeper.sh/v1alpha1\nkind: Config\nmetadata:\n  name: config\n---\n\
                  apiVersion: mutations.gatekeeper.sh/v1\nkind: Assign\nmetadata:\n  name: pull-policy\n";
    let compiled = compile(&[src("o.yaml", others)], &LoadOptions::default());
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
    // The Config is sync configuration, read by the cluster context: accepted without a warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "o.yaml, document 2: kind: Assign pull-policy: Gatekeeper mutators are not supported"
        ),
        "{warnings:?}"
    );
}

#[test]
fn dynamic_sprintf_mismatch_is_never_undefined() {
    let template = |version: &str, rule: &str| {
        format!(
            r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sfmt
spec:
  crd:
    spec:
      names:
        kind: K8sFmt
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: Rego
          source:
            version: "{version}"
            rego: |
              package fmt
              {rule}
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sFmt
metadata:
  name: good
spec:
  parameters:
    fmt: "name %v"
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sFmt
metadata:
  name: bad
spec:
  parameters:
    fmt: "name %v in %v"
"#
        )
    };
    let v0 = r#"violation[{"msg": msg}] { msg := sprintf(input.parameters.fmt, [input.review.object.metadata.name]) }"#;
    let v1 = r#"violation contains {"msg": msg} if { msg := sprintf(input.parameters.fmt, [input.review.object.metadata.name]) }"#;
    for (version, rule) in [("v0", v0), ("v1", v1)] {
        let compiled = compile(
            &[src("f.yaml", &template(version, rule))],
            &LoadOptions::default(),
        );
        assert!(
            compiled.built.errors.is_empty(),
            "{version}: {:?}",
            compiled.built.errors
        );
        assert!(
            compiled
                .built
                .warnings
                .iter()
                .any(|w| w.message.contains("BADARGS")),
            "{version}"
        );
        let review = pod(json!({}), Operation::Create);
        let good = compiled.built.policies[0]
            .check(&review, &EvalContext::default())
            .expect("ok");
        assert_eq!(good, vec![Violation::deny("name p")], "{version}");
        let bad = compiled.built.policies[1]
            .check(&review, &EvalContext::default())
            .expect("ok");
        assert_eq!(
            bad,
            vec![Violation::deny(
                "name %v in %v%!(BADARGS 2 verbs, 1 arguments: [\"p\"])"
            )],
            "{version}"
        );
    }
}

#[test]
fn an_undefined_function_in_a_template_is_a_load_error() {
    let broken = TEMPLATE.replace("m := missing(", "m := mising(");
    let found = errors(&broken);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("p.yaml, document 1: spec.targets[0].rego: line ")
            && found[0].contains("undefined function mising"),
        "{found:?}"
    );
    let lib = TEMPLATE.replace(
        "import data.lib.helpers.missing",
        "import data.lib.helper.missing",
    );
    let found = errors(&lib);
    assert!(
        found
            .iter()
            .any(|e| e.contains("import data.lib.helper.missing: no package")),
        "{found:?}"
    );
}

/// A template whose helper function is defined several times with a value (like the library's `get_suffix`).
/// `with_interpreter` adds a rule the VM compiler rejects, so the same Rego runs on the interpreter.
fn suffix_template(with_interpreter: bool) -> String {
    let extra = if with_interpreter {
        "\n        violation[{\"msg\": \"never\"}] { input.never with input.never as false }"
    } else {
        ""
    };
    format!(
        r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8ssuffix
spec:
  crd:
    spec:
      names:
        kind: K8sSuffix
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package suffix{extra}
        suffix(q) = "m" {{ startswith(q, "m") }}
        suffix(q) = "i" {{ endswith(q, "i") }}
        suffix(q) = "i" {{ endswith(q, "ii") }}
        violation[{{"msg": msg}}] {{
          s := suffix(input.review.object.metadata.labels.size)
          msg := sprintf("suffix %v", [s])
        }}
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSuffix
metadata:
  name: suffix
"#
    )
}

#[test]
fn conflicting_helper_values_are_an_error_on_the_vm_as_on_the_interpreter() {
    for (with_interpreter, evaluator) in [(false, Evaluator::Vm), (true, Evaluator::Interpreter)] {
        let source = suffix_template(with_interpreter);
        let (docs, _) = documents(&src("s.yaml", &source));
        let (template, warnings) =
            Template::load(&docs[0], Duration::from_secs(1)).expect("compiles");
        assert_eq!(template.evaluator(), evaluator);
        // A template on the interpreter says so, and why, in a load warning.
        let slower: Vec<String> = warnings
            .iter()
            .map(ToString::to_string)
            .filter(|w| w.contains("runs on the regorus interpreter, 3-5x slower than its VM"))
            .collect();
        assert_eq!(slower.len(), usize::from(with_interpreter), "{warnings:?}");
        let policies = load(&source);
        let check = |size: &str| {
            policies[0].check(
                &pod(json!({"size": size}), Operation::Create),
                &EvalContext::default(),
            )
        };
        // Several definitions agree ("xii" ends with both "i" and "ii"): their value.
        assert_eq!(
            check("xii"),
            Ok(vec![Violation::deny("suffix i")]),
            "{evaluator:?}"
        );
        assert_eq!(
            check("mx"),
            Ok(vec![Violation::deny("suffix m")]),
            "{evaluator:?}"
        );
        assert_eq!(check("xx"), Ok(vec![]), "{evaluator:?}");
        // Two definitions disagree ("mi"): an evaluation error (a denial under the default failure policy), as
        // in OPA, never an undefined helper that silently allows.
        match check("mi") {
            Err(EvalError::Engine(text)) => assert!(
                text.contains("functions must not produce multiple outputs for same inputs"),
                "{evaluator:?}: {text}"
            ),
            other => panic!("{evaluator:?}: {other:?}"),
        }
    }
}

#[test]
fn an_undefined_assignment_fails_the_violation_on_the_vm_as_on_the_interpreter() {
    // Regorus patch 12: on the VM `limits := c.resources.limits` bound `limits` to undefined for a container without
    // limits and the body went on, so `not limits.cpu` reported a violation that OPA and Gatekeeper do not.
    for (with_interpreter, evaluator) in [(false, Evaluator::Vm), (true, Evaluator::Interpreter)] {
        let extra = if with_interpreter {
            "\n        violation[{\"msg\": \"never\"}] { input.never with input.never as false }"
        } else {
            ""
        };
        let source = format!(
            r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8scpulimit
spec:
  crd:
    spec:
      names:
        kind: K8sCpuLimit
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package cpulimit{extra}
        violation[{{"msg": msg}}] {{
          c := input.review.object.spec.containers[_]
          limits := c.resources.limits
          not limits.cpu
          msg := sprintf("container %v has no cpu limit", [c.name])
        }}
        violation[{{"msg": msg}}] {{
          names := [c.resources.limits.memory | c := input.review.object.spec.containers[_]]
          count(names) != count(input.review.object.spec.containers)
          msg := sprintf("%v of %v containers have a memory limit", [count(names), count(input.review.object.spec.containers)])
        }}
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sCpuLimit
metadata:
  name: cpu
"#
        );
        let (docs, _) = documents(&src("c.yaml", &source));
        let (template, _) = Template::load(&docs[0], Duration::from_secs(1)).expect("compiles");
        assert_eq!(template.evaluator(), evaluator);
        let policies = load(&source);
        let review = Review::for_object(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [
                {"name": "none", "image": "x"},
                {"name": "memory", "image": "x", "resources": {"limits": {"memory": "1Gi"}}}
            ]}}),
            None,
            Operation::Create,
        );
        let mut got = policies[0]
            .check(&review, &EvalContext::default())
            .expect("evaluates");
        got.sort_by(|a, b| a.message.cmp(&b.message));
        assert_eq!(
            got,
            vec![
                Violation::deny("1 of 2 containers have a memory limit"),
                Violation::deny("container memory has no cpu limit"),
            ],
            "{evaluator:?}"
        );
    }
}
