//! Gatekeeper templates and constraints (tests/fixtures/gatekeeper/policies) through the loader and the pipeline.

use std::path::Path;

use serde_json::json;

use policyctl::admission::{decode, Operation, Review};
use policyctl::decide::Verdict;
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader;
use policyctl::policy::PolicySet;

fn policies() -> PolicySet {
    let compiled = loader::compile_dir(
        Path::new("tests/fixtures/gatekeeper/policies"),
        &LoadOptions::default(),
    );
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    compiled.into_set(1).expect("loads")
}

fn pod(namespace: &str, labels: serde_json::Value, image: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": namespace, "labels": labels},
           "spec": {"containers": [{"name": "web", "image": image}]}})
}

fn review(object: serde_json::Value) -> Review {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": object["metadata"]["namespace"], "name": "web", "operation": "CREATE",
                    "userInfo": {"username": "alice"}, "object": object}
    });
    decode(&serde_json::to_vec(&body).expect("json")).expect("decodes")
}

#[test]
fn missing_label_denies_with_the_constraint_name() {
    let set = policies();
    let decision = pipeline::run(
        &set,
        &review(pod("apps", json!({}), "registry.example.com/web:1")),
        Webhook::Validate,
        &Settings::default(),
    );
    assert_eq!(decision.verdict(), Verdict::Deny);
    assert_eq!(
        decision.message(),
        "[pods-need-owner] Pod web is missing labels [\"owner\"]"
    );
    assert!(decision.warnings.is_empty());
}

#[test]
fn compliant_pod_is_allowed() {
    let set = policies();
    let decision = pipeline::run(
        &set,
        &review(pod(
            "apps",
            json!({"owner": "a"}),
            "registry.example.com/web:1",
        )),
        Webhook::Validate,
        &Settings::default(),
    );
    assert_eq!(decision.verdict(), Verdict::Allow, "{:?}", decision.denials);
}

#[test]
fn untrusted_registry_warns_and_excluded_namespace_is_not_denied() {
    let set = policies();
    let decision = pipeline::run(
        &set,
        &review(pod("kube-system", json!({}), "docker.io/nginx")),
        Webhook::Validate,
        &Settings::default(),
    );
    assert_eq!(decision.verdict(), Verdict::Warn);
    assert_eq!(
        decision.warnings,
        ["[trusted-registries] container web uses image docker.io/nginx from a registry that is not allowed"]
    );
}

#[test]
fn other_kinds_are_not_selected() {
    let set = policies();
    let config_map = Review::for_object(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "apps"}}),
        None,
        Operation::Create,
    );
    let decision = pipeline::run(&set, &config_map, Webhook::Validate, &Settings::default());
    assert_eq!(decision.verdict(), Verdict::Allow);
    assert!(
        decision.runs.is_empty(),
        "the index skips constraints that match only Pods"
    );
}
