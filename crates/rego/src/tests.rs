use crate::policy::Check;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::admission::Operation;
use crate::policy::loader::{compile_with, Compiled};
use crate::policy::SourceFile as LoadedFile;

/// Compile with this engine alone.
fn compile(files: &[LoadedFile], options: &crate::engine::LoadOptions) -> Compiled {
    compile_with(&[Box::new(crate::RegoEngine)], files, options)
}
use crate::policy::Action;

fn src(origin: &str, content: &str) -> SourceFile {
    SourceFile {
        origin: origin.into(),
        content: content.into(),
    }
}

fn load(files: &[SourceFile]) -> Vec<Arc<dyn Policy>> {
    let compiled = compile(files, &LoadOptions::default());
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    compiled.built.policies
}

fn load_errors(files: &[SourceFile]) -> Vec<String> {
    compile(files, &LoadOptions::default())
        .built
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn pod(labels: serde_json::Value) -> Review {
    Review::for_object(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "labels": labels},
               "spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}}),
        None,
        Operation::Create,
    )
}

const POLICY: &str = r#"
package kubernetes.admission

import data.lib.images

deny contains msg if {
    input.request.kind.kind == "Pod"
    not input.request.object.metadata.labels.team
    msg := sprintf("pod %s has no team label", [input.request.object.metadata.name])
}

warn contains msg if {
    some c in input.request.object.spec.containers
    images.latest(c.image)
    msg := sprintf("container %s uses a latest tag", [c.name])
}

patch contains op if {
    not input.request.object.metadata.labels.managed
    op := {"op": "add", "path": "/metadata/labels/managed", "value": "policyctl"}
}
"#;

const LIB: &str = r#"
package lib.images

latest(image) if endswith(image, ":latest")
"#;

#[test]
fn deny_warn_and_patch_rules_become_one_policy_per_package() {
    let policies = load(&[src("p/admission.rego", POLICY), src("p/lib.rego", LIB)]);
    assert_eq!(policies.len(), 1, "the library package has no webhook rule");
    let policy = &policies[0];
    assert_eq!(policy.info().name, "kubernetes.admission");
    assert!(policy.validates() && policy.mutates());

    let ctx = EvalContext::default();
    let violations = policy.check(&pod(json!({})), &ctx).expect("evaluates");
    assert_eq!(
        violations,
        vec![
            Violation {
                message: "pod p has no team label".into(),
                action: Action::Deny,
                reason: None,
            },
            Violation {
                message: "container c uses a latest tag".into(),
                action: Action::Warn,
                reason: None,
            },
        ]
    );
    let review = pod(json!({"team": "a"}));
    let mutation = policy.mutate_checked(&review, &ctx).expect("mutates");
    let mutated = mutation.object.expect("changed");
    assert_eq!(
        mutated["metadata"]["labels"],
        json!({"team": "a", "managed": "policyctl"})
    );

    // A second mutation pass on the mutated object changes nothing.
    let again = policy
        .mutate_checked(&review.with_object(mutated.clone()), &ctx)
        .expect("mutates");
    assert!(again.object.is_none());
}

#[test]
fn v0_modules_opt_in_with_a_directive() {
    let v0 = "# policyctl: rego.v0\npackage old\n\ndeny[msg] {\n  input.request.operation == \"CREATE\"\n  msg := \"no\"\n}\n";
    let policies = load(&[src("old.rego", v0)]);
    let violations = policies[0]
        .check(&pod(json!({})), &EvalContext::default())
        .expect("evaluates");
    assert_eq!(violations, vec![Violation::deny("no")]);

    let errors = load_errors(&[src("old.rego", &v0.replace("# policyctl: rego.v0\n", ""))]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("old.rego: Rego does not compile"),
        "{errors:?}"
    );
}

#[test]
fn a_recursive_package_is_a_load_error() {
    let module = "package deep\n\nimport rego.v1\n\ndown(n) := 0 if n <= 0\n\ndown(n) := down(n - 1) + 1 if n > 0\n\ndeny contains \"deep\" if down(count(input.request.object.spec.containers)) > 3\n";
    let errors = load_errors(&[src("deep.rego", module)]);
    assert_eq!(
        errors,
        vec!["deep.rego: Rego does not compile: the package is recursive: data.deep.down -> data.deep.down (rules and \
              functions may not call themselves, as in OPA)"
            .to_string()]
    );
}

#[test]
fn a_recursive_package_kept_off_the_vm_is_a_load_error_too() {
    // `with` keeps the package off the VM, whose compiler finds recursion; its functions are searched for a cycle all
    // the same (on the interpreter a recursive function would run as deep as the request makes it).
    let module = "package deep\n\nimport rego.v1\n\ndown(n) := 0 if n <= 0\n\ndown(n) := down(n - 1) + 1 if n > 0\n\ndeny contains \"deep\" if {\n  d := down(count(input.request.object.spec.containers)) with input.flag as true\n  d > 3\n}\n";
    assert_eq!(
        load_errors(&[src("deep.rego", module)]),
        vec!["deep.rego: Rego does not compile: the package is recursive: data.deep.down -> data.deep.down (rules and \
              functions may not call themselves, as in OPA)"
            .to_string()]
    );
    // Through another function and a lib package, the same.
    let lib = "package lib.walk\n\nimport rego.v1\n\nup(n) := data.deep2.down(n + 1)\n";
    let main = "package deep2\n\nimport rego.v1\nimport data.lib.walk\n\ndown(n) := walk.up(n - 1) if n > 0\n\ndeny contains \"deep\" if {\n  down(1) with input.flag as true\n}\n";
    let errors = load_errors(&[src("lib.rego", lib), src("deep2.rego", main)]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(
            "the package is recursive: data.deep2.down -> data.lib.walk.up -> data.deep2.down"
        ) || errors[0].contains(
            "the package is recursive: data.lib.walk.up -> data.deep2.down -> data.lib.walk.up"
        ),
        "{errors:?}"
    );
    // Functions that call each other without a cycle still load, on the interpreter.
    let fine = "package fine\n\nimport rego.v1\n\nh(n) := n + 1\n\nk(n) := h(h(n))\n\ndeny contains \"x\" if {\n  k(1) == 3 with input.flag as true\n}\n";
    assert_eq!(load_errors(&[src("fine.rego", fine)]), Vec::<String>::new());
}

#[test]
fn directives_set_the_failure_policy_and_reject_typos() {
    let ignore = "# policyctl: failure-policy=Ignore\npackage p\n\ndeny contains \"x\" if false\n";
    let policies = load(&[src("p.rego", ignore)]);
    assert_eq!(
        policies[0].info().failure_policy,
        Some(FailurePolicy::Ignore)
    );

    let errors = load_errors(&[src(
        "p.rego",
        "# policyctl: failure-policy=Sometimes\npackage p\n",
    )]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("p.rego: line 1: failure policy must be Fail or Ignore"),
        "{errors:?}"
    );
    let errors = load_errors(&[src("p.rego", "# policyctl: rego.v2\npackage p\n")]);
    assert!(errors[0].contains("unknown directive"), "{errors:?}");
}

#[test]
fn http_send_is_rejected_when_loading() {
    let policy = "package p\n\ndeny contains \"x\" if {\n  r := http.send({\"method\": \"get\", \"url\": \"http://x\"})\n  r.status_code != 200\n}\n";
    let errors = load_errors(&[src("net.rego", policy)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("net.rego: http.send is not available"),
        "{errors:?}"
    );
}

#[test]
fn a_runaway_policy_hits_the_time_limit() {
    let slow = "package slow\n\ndeny contains \"x\" if {\n  count([x | some i, j; x := numbers.range(1, 3000)[i] * numbers.range(1, 3000)[j]]) > 0\n}\n";
    let compiled = compile(
        &[src("slow.rego", slow)],
        &LoadOptions {
            eval_timeout: Duration::from_millis(50),
            ..LoadOptions::default()
        },
    );
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    let ctx = EvalContext::new(
        Duration::from_millis(50),
        Arc::new(crate::policy::NoCluster),
    );
    let err = compiled.built.policies[0]
        .check(&pod(json!({})), &ctx)
        .expect_err("times out");
    assert_eq!(err, EvalError::Timeout(Duration::from_millis(50)));
}

#[test]
fn a_bad_patch_is_an_evaluation_error() {
    let policy =
        "package p\n\npatch contains {\"op\": \"remove\", \"path\": \"/nope/missing\"} if true\n";
    let policies = load(&[src("p.rego", policy)]);
    let review = pod(json!({}));
    let err = policies[0]
        .mutate_checked(&review, &EvalContext::default())
        .expect_err("does not apply");
    assert!(err.to_string().contains("does not apply"), "{err}");
}

#[test]
fn packages_across_files_merge() {
    let a = "package shared\n\ndeny contains \"from a\" if true\n";
    let b = "package shared\n\nwarn contains \"from b\" if true\n";
    let policies = load(&[src("a.rego", a), src("b.rego", b)]);
    assert_eq!(policies.len(), 1);
    let violations = policies[0]
        .check(&pod(json!({})), &EvalContext::default())
        .expect("evaluates");
    assert_eq!(
        violations,
        vec![Violation::deny("from a"), Violation::warn("from b")]
    );
}

#[test]
fn an_undefined_function_is_a_load_error_naming_file_and_line() {
    let module = "package p\n\ndeny contains msg if {\n    not_a_function(input.request)\n    msg := \"x\"\n}\n";
    let errors = load_errors(&[src("policies/p.rego", module)]);
    assert_eq!(
        errors,
        ["policies/p.rego: line 4: undefined function not_a_function: no builtin and no function of the policy set has this name"]
    );
}

#[test]
fn a_missing_import_and_an_unresolved_data_reference_are_load_errors() {
    let module = "package p\n\nimport data.lib.nothing\n\ndeny contains msg if {\n    data.other.flag\n    msg := \"x\"\n}\n";
    let errors = load_errors(&[src("p.rego", module)]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("p.rego: line 3: import data.lib.nothing: no package"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("p.rego: line 6: data.other.flag: no package"),
        "{errors:?}"
    );
}

#[test]
fn functions_and_packages_of_other_files_and_imports_resolve() {
    let lib = "package lib.util\n\nbad(x) if x.privileged\n";
    let module = "package p\n\nimport data.lib.util\nimport data.lib.util as u\n\ndeny contains msg if {\n    util.bad(input.request.object)\n    u.bad(input.request.object)\n    data.lib.util.bad(input.request.object)\n    local(1)\n    msg := sprintf(\"%v\", [data.lib.util])\n}\n\nlocal(x) := x + 1\n";
    assert_eq!(
        load_errors(&[src("lib.rego", lib), src("p.rego", module)]),
        Vec::<String>::new()
    );
}

#[test]
fn v0_syntax_suggests_the_directive() {
    let errors = load_errors(&[src(
        "v0.rego",
        "package p\n\ndeny[msg] {\n  msg := \"x\"\n}\n",
    )]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("# policyctl: rego.v0"), "{errors:?}");
}

/// The packages of a set of modules, built as the engine builds them.
fn packages(files: &[SourceFile]) -> (crate::engine::Built, Vec<Arc<RegoPolicy>>) {
    build_packages(
        crate::engine::EngineInput {
            documents: Vec::new(),
            files: files.to_vec(),
            params: Vec::new(),
        },
        &LoadOptions::default(),
    )
}

#[test]
fn packages_run_on_the_vm_and_with_falls_back_to_the_interpreter() {
    // `with` is rejected by the VM compiler: that package alone runs on the interpreter, with the same answers.
    let with = POLICY.replace("package kubernetes.admission", "package other.admission")
        + "\nwarn contains \"never\" if {\n    input.never with input.never as false\n}\n";
    let (built, policies) = packages(&[
        src("p/admission.rego", POLICY),
        src("p/with.rego", &with),
        src("p/lib.rego", LIB),
    ]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(policies.len(), 2);
    assert_eq!(policies[0].interpreter_reason(), None);
    let reason = policies[1].interpreter_reason().expect("interpreter");
    assert!(reason.contains("with"), "{reason}");
    // The author is told, once, by a load warning (`policyctl lint`, the server's log).
    let warnings: Vec<String> = built.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![format!(
            "p/with.rego: runs on the regorus interpreter, 3-5x slower than its VM: {reason}"
        )]
    );
    let ctx = EvalContext::default();
    for review in [pod(json!({})), pod(json!({"team": "a", "managed": "x"}))] {
        let vm = policies[0].check(&review, &ctx);
        assert!(vm.is_ok());
        assert_eq!(vm, policies[1].check(&review, &ctx));
        let vm = policies[0].mutate_checked(&review, &ctx).map(|m| m.object);
        assert_eq!(
            vm,
            policies[1].mutate_checked(&review, &ctx).map(|m| m.object)
        );
    }
}

#[test]
fn regorus_divergences_are_handled_as_for_templates() {
    let v0 = r#"# policyctl: rego.v0
package d

allowed("nginx")
suffix(q) = "m" { startswith(q, "m") }
suffix(q) = "i" { endswith(q, "i") }
team(o) = t { t := o.metadata.labels.team } else = t { t := "none" }

deny[msg] {
  not allowed(input.request.object.spec.containers[0].name)
  msg := sprintf("container %v of %v", [input.request.object.spec.containers[0].name])
}
warn[msg] {
  msg := sprintf("suffix %v", [suffix(input.request.object.metadata.labels.size)])
}
warn[msg] {
  msg := sprintf("team %v", [team(input.request.object)])
}
"#;
    let (built, policies) = packages(&[src("d.rego", v0)]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(policies[0].interpreter_reason(), None);
    // D3: the missing sprintf argument is rendered as Go renders it, and reported.
    let warnings: Vec<String> = built.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.len() == 1
            && warnings[0].starts_with("d.rego: line 11: sprintf has 2 verbs but 1 arguments"),
        "{warnings:?}"
    );
    let ctx = EvalContext::default();
    // D5: the body-less `allowed("nginx")` is defined (`c` is not allowed), D7: `else` after an undefined reference.
    let found = policies[0]
        .check(&pod(json!({"size": "mx"})), &ctx)
        .expect("evaluates");
    assert_eq!(
        found,
        vec![
            Violation::deny("container c of %!v(MISSING)"),
            Violation::warn("suffix m"),
            Violation::warn("team none"),
        ]
    );
    // D6: conflicting values of `suffix` are an evaluation error, not an undefined rule.
    match policies[0].check(&pod(json!({"size": "mi"})), &ctx) {
        Err(EvalError::Engine(text)) => {
            assert!(text.contains("eval_conflict_error"), "{text}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deny_and_warn_are_one_evaluation_and_a_warn_error_keeps_the_denials() {
    // A number drawn once per evaluation: deny and warn see the same one.
    let shared = "package shared\n\ndraw := rand.intn(\"policyctl\", 1000000000)\n\ndeny contains sprintf(\"%d\", [draw])\n\nwarn contains sprintf(\"%d\", [draw])\n";
    let policies = load(&[src("shared.rego", shared)]);
    let violations = policies[0]
        .check(&pod(json!({})), &EvalContext::default())
        .expect("evaluates");
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert_eq!(violations[0].action, Action::Deny);
    assert_eq!(violations[1].action, Action::Warn);
    assert_eq!(violations[0].message, violations[1].message);

    // warn fails (conflicting values of a complete rule) after deny found something: the evaluation is an error and
    // still carries the denial.
    let failing = "package failing\n\nlevel := \"a\" if input.request.operation\nlevel := \"b\" if input.request.uid\n\ndeny contains \"no\"\n\nwarn contains level\n";
    let policies = load(&[src("failing.rego", failing)]);
    let evaluation = policies[0].validate(&pod(json!({})), &EvalContext::default());
    assert!(!evaluation.errors.is_empty(), "{evaluation:?}");
    assert_eq!(evaluation.violations, vec![Violation::deny("no")]);
}
