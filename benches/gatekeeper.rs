//! One Pod CREATE review against 19 pod-level Gatekeeper templates + constraints (Pod Security Standards style
//! checks, allowed repos, required labels, tags, limits; benches/fixtures/gatekeeper), through the pipeline.
//!
//! `cargo bench --bench gatekeeper`. Two measurements:
//! - `validate`: select → evaluate → decide on a freshly decoded review (decoding not timed);
//! - `decode+validate`: the same, including decoding the AdmissionReview bytes.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;

use policyctl::admission::{decode, from_value};
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader;

fn review_document() -> serde_json::Value {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web", "owner": "team-a"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "cfg", "configMap": {"name": "web"}}],
            "containers": [
                {"name": "web", "image": "registry.example.com/web:1.2.3", "ports": [{"containerPort": 8080}],
                 "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                 "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                     "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}},
                {"name": "sidecar", "image": "registry.example.com/proxy:2.0",
                 "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                 "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                     "capabilities": {"drop": ["ALL"]}}}
            ]
        }
    });
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "b1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "apps", "name": "web", "operation": "CREATE",
                    "userInfo": {"username": "alice", "groups": ["dev"]}, "object": pod}
    })
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/gatekeeper");
    let compiled = loader::compile_dir(&dir, &LoadOptions::default());
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    let set = compiled.into_set(1).expect("loads");
    assert!(set.summaries().len() >= 15);
    let document = review_document();
    let bytes = serde_json::to_vec(&document).expect("json");
    let settings = Settings::default();
    // The compliant pod is allowed by every constraint, so every template runs to completion.
    let decision = pipeline::run(
        &set,
        &from_value(document.clone()).expect("decodes"),
        Webhook::Validate,
        &settings,
    );
    assert!(decision.allowed, "{:?}", decision.denials);
    assert_eq!(decision.runs.len(), set.summaries().len());

    c.bench_function("gatekeeper/validate", |b| {
        b.iter_batched(
            || from_value(document.clone()).expect("decodes"),
            |review| black_box(pipeline::run(&set, &review, Webhook::Validate, &settings)),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("gatekeeper/decode+validate", |b| {
        b.iter(|| {
            let review = decode(black_box(&bytes)).expect("decodes");
            black_box(pipeline::run(&set, &review, Webhook::Validate, &settings))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
