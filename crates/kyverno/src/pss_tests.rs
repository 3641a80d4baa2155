//! `validate.podSecurity`.
use super::*;
use crate::result::RuleStatus;
use serde_json::json;

fn policy(pod_security: &str) -> String {
    format!(
        r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {{name: pss}}
spec:
  validationFailureAction: Enforce
  rules:
  - name: check
    match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}
    validate:
      podSecurity: {pod_security}
"#
    )
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

fn hardened_container(name: &str, image: &str) -> Value {
    json!({
        "name": name, "image": image,
        "securityContext": {
            "allowPrivilegeEscalation": false, "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"drop": ["ALL"]}
        }
    })
}

/// The `check` rule's status and message on `object`.
fn outcome(policy: &KyvernoPolicy, object: Value) -> (RuleStatus, String) {
    let response = crate::tests::run(policy, object);
    let rule = response
        .rules
        .iter()
        .find(|r| r.name == "check" || r.name == "autogen-check")
        .expect("the rule ran");
    (rule.status, rule.message.clone())
}

#[test]
fn baseline_denies_privileged_pods_and_host_namespaces() {
    let p = crate::tests::load(&policy("{level: baseline, version: latest}"));
    let (status, _) = outcome(
        &p,
        pod(json!({"containers": [{"name": "c", "image": "nginx"}]})),
    );
    assert_eq!(status, RuleStatus::Pass);
    let (status, message) = outcome(
        &p,
        pod(json!({
            "hostNetwork": true,
            "containers": [{"name": "c", "image": "nginx", "securityContext": {"privileged": true}}],
            "volumes": [{"name": "data", "hostPath": {"path": "/var"}}]
        })),
    );
    assert_eq!(status, RuleStatus::Fail);
    assert!(
        message.starts_with(
            "Validation rule 'check' failed. It violates PodSecurity \"baseline:latest\": ("
        ),
        "{message}"
    );
    for part in [
        "ForbiddenReason:host namespaces ForbiddenDetail:hostNetwork=true",
        "ForbiddenReason:privileged ForbiddenDetail:container \"c\" must not set securityContext.privileged=true",
        "ForbiddenReason:hostPath volumes ForbiddenDetail:volume \"data\"",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    // Baseline does not ask for restricted hardening.
    assert!(!message.contains("runAsNonRoot"), "{message}");
}

#[test]
fn restricted_asks_for_the_hardening_fields() {
    let p = crate::tests::load(&policy("{level: restricted, version: latest}"));
    let (status, _) = outcome(
        &p,
        pod(json!({"containers": [hardened_container("c", "nginx")]})),
    );
    assert_eq!(status, RuleStatus::Pass);
    let (status, message) = outcome(
        &p,
        pod(json!({"containers": [{"name": "c", "image": "nginx"}]})),
    );
    assert_eq!(status, RuleStatus::Fail);
    for reason in [
        "allowPrivilegeEscalation != false",
        "runAsNonRoot != true",
        "seccompProfile",
        "unrestricted capabilities",
    ] {
        assert!(
            message.contains(&format!("ForbiddenReason:{reason} ")),
            "{reason} in {message}"
        );
    }
    // Pod-level runAsNonRoot and seccomp cover the containers.
    let (status, message) = outcome(
        &p,
        pod(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "nginx", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]
        })),
    );
    assert_eq!(status, RuleStatus::Pass, "{message}");
    // Restricted volume types and the restricted form of capabilities (which replaces the baseline one).
    let (_, message) = outcome(
        &p,
        pod(json!({
            "containers": [{"name": "c", "image": "nginx", "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}],
            "volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]
        })),
    );
    assert!(
        message.contains("volume \"n\" uses restricted volume type \"nfs\""),
        "{message}"
    );
    assert_eq!(message.matches("SYS_ADMIN").count(), 1, "{message}");
}

#[test]
fn versions_decide_which_controls_apply() {
    let root = pod(
        json!({"securityContext": {"runAsUser": 0}, "containers": [hardened_container("c", "nginx")]}),
    );
    let latest = crate::tests::load(&policy("{level: restricted, version: latest}"));
    assert_eq!(outcome(&latest, root.clone()).0, RuleStatus::Fail);
    // runAsUser=0 is a restricted control since v1.23.
    let old = crate::tests::load(&policy("{level: restricted, version: v1.22}"));
    assert_eq!(outcome(&old, root).0, RuleStatus::Pass);
    let privileged = crate::tests::load(&policy("{level: privileged}"));
    let (status, _) = outcome(
        &privileged,
        pod(
            json!({"hostPID": true, "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]}),
        ),
    );
    assert_eq!(status, RuleStatus::Pass);
}

#[test]
fn exclusions_by_control_image_and_field_values() {
    let tools = json!({"name": "tools", "image": "ghcr.io/tools/debug:1", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}});
    let app = json!({"name": "app", "image": "nginx", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}});
    let by_image = crate::tests::load(&policy(
        "{level: baseline, exclude: [{controlName: Capabilities, images: ['ghcr.io/tools/*']}]}",
    ));
    assert_eq!(
        outcome(&by_image, pod(json!({"containers": [tools.clone()]}))).0,
        RuleStatus::Pass
    );
    let (status, message) = outcome(&by_image, pod(json!({"containers": [tools, app]})));
    assert_eq!(status, RuleStatus::Fail);
    assert!(
        message.contains("container \"app\"") && !message.contains("container \"tools\""),
        "{message}"
    );

    let by_value = crate::tests::load(&policy(
        "{level: baseline, exclude: [{controlName: Capabilities, restrictedField: 'spec.containers[*].securityContext.capabilities.add', values: [NET_ADMIN]}]}",
    ));
    let with = |caps: Value| {
        pod(
            json!({"containers": [{"name": "c", "image": "nginx", "securityContext": {"capabilities": {"add": caps}}}]}),
        )
    };
    assert_eq!(
        outcome(&by_value, with(json!(["NET_ADMIN"]))).0,
        RuleStatus::Pass
    );
    let (status, message) = outcome(&by_value, with(json!(["NET_ADMIN", "SYS_ADMIN"])));
    assert_eq!(status, RuleStatus::Fail);
    assert!(
        message.contains("SYS_ADMIN") && !message.contains("NET_ADMIN"),
        "{message}"
    );

    let whole = crate::tests::load(&policy(
        "{level: baseline, exclude: [{controlName: Host Namespaces}]}",
    ));
    assert_eq!(
        outcome(
            &whole,
            pod(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]}))
        )
        .0,
        RuleStatus::Pass
    );
}

#[test]
fn controllers_are_checked_through_autogen() {
    let p = crate::tests::load(&policy("{level: baseline}"));
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]}}}
    });
    let (status, message) = outcome(&p, deployment);
    assert_eq!(status, RuleStatus::Fail);
    assert!(message.contains("privileged"), "{message}");
}

#[test]
fn mistakes_in_a_pod_security_block_are_load_errors() {
    for (block, field, says) in [
        (
            "{level: restriced}",
            "validate.podSecurity.level",
            "unknown level",
        ),
        (
            "{level: baseline, version: '1.29'}",
            "validate.podSecurity.version",
            "invalid version",
        ),
        (
            "{level: baseline, exclude: [{controlName: Capabilites}]}",
            "validate.podSecurity.exclude[0].controlName",
            "did you mean \"Capabilities\"",
        ),
        (
            "{level: baseline, exclude: [{controlName: Capabilities, values: [X]}]}",
            "validate.podSecurity.exclude[0]",
            "go together",
        ),
    ] {
        let (docs, _) = crate::policy::source::documents(&crate::policy::SourceFile {
            origin: "p.yaml".into(),
            content: policy(block),
        });
        let errors = match KyvernoPolicy::from_document(&docs[0]) {
            Ok(_) => panic!("{block} must not load"),
            Err(errors) => errors,
        };
        assert!(
            errors.iter().any(|e| e.field.as_deref()
                == Some(&format!("spec.rules[check].{field}"))
                && e.message.contains(says)),
            "{block}: {errors:?}"
        );
    }
}

#[test]
fn a_policy_exception_with_pod_security_controls_excuses_them_and_the_rule_still_runs() {
    let exception = r#"
apiVersion: kyverno.io/v2
kind: PolicyException
metadata: {name: debug-tools, namespace: default}
spec:
  exceptions:
  - {policyName: pss, ruleNames: [check]}
  match:
    any:
    - resources: {kinds: [Pod], namespaces: [default]}
  podSecurity:
  - controlName: Capabilities
    images: ['ghcr.io/tools/*']
"#;
    let (docs, errors) = crate::policy::source::documents(&crate::policy::SourceFile {
        origin: "e.yaml".into(),
        content: exception.into(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    let exception = crate::exception::PolicyException::from_document(&docs[0]).expect("loads");
    let policy = crate::tests::load(&policy("{level: baseline}"))
        .with_exceptions(&[std::sync::Arc::new(exception)]);
    let p = &policy;
    let tools = json!({"name": "tools", "image": "ghcr.io/tools/debug:1", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}});
    assert_eq!(
        outcome(p, pod(json!({"containers": [tools.clone()]}))).0,
        RuleStatus::Pass
    );
    // Other controls, and other images, still fail: the exception did not skip the rule.
    let (status, message) = outcome(
        p,
        pod(
            json!({"containers": [tools, {"name": "c", "image": "nginx", "securityContext": {"privileged": true}}]}),
        ),
    );
    assert_eq!(status, RuleStatus::Fail);
    assert!(
        message.contains("privileged") && !message.contains("NET_ADMIN"),
        "{message}"
    );
}

#[test]
fn a_policy_exception_with_a_misspelled_control_is_a_load_error() {
    let (docs, _) = crate::policy::source::documents(&crate::policy::SourceFile {
        origin: "e.yaml".into(),
        content: "apiVersion: kyverno.io/v2\nkind: PolicyException\nmetadata: {name: e}\nspec:\n  exceptions: [{policyName: pss, ruleNames: [check]}]\n  match: {any: [{resources: {kinds: [Pod]}}]}\n  podSecurity: [{controlName: Privileged}]\n".into(),
    });
    let errors = crate::exception::PolicyException::from_document(&docs[0]).expect_err("refused");
    assert_eq!(
        errors[0].field.as_deref(),
        Some("spec.podSecurity[0].controlName"),
        "{errors:?}"
    );
}

#[test]
fn pod_and_container_level_fields_are_both_checked() {
    let p = crate::tests::load(&policy("{level: baseline}"));
    let (status, message) = outcome(
        &p,
        pod(json!({
            "securityContext": {"seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}},
            "containers": [{"name": "w", "image": "x", "securityContext": {
                "windowsOptions": {"hostProcess": true},
                "seccompProfile": {"type": "Unconfined"}
            }}]
        })),
    );
    assert_eq!(status, RuleStatus::Fail);
    for part in [
        "container \"w\" must not set securityContext.windowsOptions.hostProcess=true",
        "pod must not set securityContext.seccompProfile.type to \"Unconfined\"",
        "container \"w\" must not set securityContext.seccompProfile.type to \"Unconfined\"",
        "pod must not set securityContext.appArmorProfile.type to \"Unconfined\"",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    // The AppArmor fields count from v1.30.
    let old = crate::tests::load(&policy("{level: baseline, version: v1.29}"));
    let (_, message) = outcome(
        &old,
        pod(
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}, "containers": [{"name": "c", "image": "x"}]}),
        ),
    );
    assert!(!message.contains("appArmorProfile"), "{message}");
    let restricted = crate::tests::load(&policy("{level: restricted}"));
    let mut c = hardened_container("c", "x");
    c["securityContext"]["runAsUser"] = json!(0);
    let (_, message) = outcome(&restricted, pod(json!({"containers": [c]})));
    assert!(
        message.contains("container \"c\" must not set runAsUser=0"),
        "{message}"
    );
}
