//! One Pod CREATE review through the validating pipeline with 16 pattern-based Kyverno pod policies
//! (`benches/fixtures/kyverno/pod-policies.yaml`): decode of the AdmissionReview, selection, evaluation, decision.
//! The Pod passes every policy, so every rule is evaluated to the end.
//!
//! `cargo bench --bench kyverno`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use policyctl::admission;
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader::compile;
use policyctl::policy::SourceFile;
use serde_json::json;

fn review_bytes() -> Vec<u8> {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/shop/web:1.4.2",
                    "ports": [{"containerPort": 8080}],
                    "securityContext": {"allowPrivilegeEscalation": false, "privileged": false, "readOnlyRootFilesystem": true},
                    "resources": {"requests": {"memory": "256Mi", "cpu": "250m"}, "limits": {"memory": "512Mi"}}
                },
                {
                    "name": "sidecar",
                    "image": "ghcr.io/example/proxy:2.0",
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
                    "resources": {"requests": {"memory": "64Mi", "cpu": "50m"}, "limits": {"memory": "128Mi"}}
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}]
        }
    });
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "name": "web",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:shop:deployer", "groups": ["system:serviceaccounts"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false
        }
    });
    serde_json::to_vec(&review).expect("review")
}

fn bench(c: &mut Criterion) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/kyverno/pod-policies.yaml");
    let content = std::fs::read_to_string(&path).expect("fixture");
    let compiled = compile(
        &[SourceFile {
            origin: path.display().to_string(),
            content,
        }],
        &LoadOptions::default(),
    );
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    let set = compiled.into_set(1).expect("set");
    let bytes = review_bytes();
    let settings = Settings::default();
    // Sanity: the Pod passes all policies, and every policy was evaluated.
    let review = admission::decode(&bytes).expect("decode");
    let decision = pipeline::run(&set, &review, Webhook::Validate, &settings);
    assert!(decision.allowed, "{:?}", decision.denials);
    assert!(
        decision.runs.len() >= 15,
        "{} policies ran",
        decision.runs.len()
    );
    c.bench_function(
        "kyverno: Pod CREATE vs 16 pattern policies (decode + validate)",
        |b| {
            b.iter(|| {
                let review = admission::decode(std::hint::black_box(&bytes)).expect("decode");
                let decision = pipeline::run(&set, &review, Webhook::Validate, &settings);
                std::hint::black_box(decision.allowed)
            })
        },
    );
}

/// The decode part alone, to tell the policies' share from the AdmissionReview parsing.
fn decode_only(c: &mut Criterion) {
    let bytes = review_bytes();
    c.bench_function("kyverno: decode only (baseline)", |b| {
        b.iter(|| admission::decode(std::hint::black_box(&bytes)).expect("decode"))
    });
}

criterion_group!(benches, bench, decode_only);
criterion_main!(benches);
