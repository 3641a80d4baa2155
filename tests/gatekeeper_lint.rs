//! `policyctl lint` shows the Gatekeeper engine's load warnings (regorus divergence rewrites) and errors.

use std::process::Command;

const TEMPLATE: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8smultibody
spec:
  crd:
    spec:
      names:
        kind: K8sMultiBody
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package multibody
        violation[{"msg": msg}] {
          input.review.object.kind == "Pod"
          msg := "pod"
        } {
          input.review.object.kind == "Service"
          msg := "service"
        }
"#;

fn lint(dir: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(["lint", "--policies"])
        .arg(dir)
        .output()
        .expect("runs policyctl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn lint_shows_divergence_warnings_and_constraint_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("template.yaml"), TEMPLATE).expect("write");
    let (ok, out) = lint(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("warning: "), "{out}");
    assert!(out.contains("template.yaml, document 1: spec.targets[0].rego: line 2: rule `violation[{\"msg\": msg}]` has 2 bodies"), "{out}");
    assert!(out.contains("divergence D2"), "{out}");

    std::fs::write(
        dir.path().join("constraint.yaml"),
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sMultiBody\nmetadata:\n  name: x\nspec:\n  enforcementAction: block\n",
    )
    .expect("write");
    let (ok, out) = lint(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("constraint.yaml, document 1: spec.enforcementAction: unknown enforcement action \"block\""), "{out}");
}
