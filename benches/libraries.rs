//! Real policy libraries, not fixtures: the shared gatekeeper-library `library/general` templates (each with the
//! constraint of its first sample) and the kyverno-policies `best-practices` ClusterPolicies, read in place from
//! `../shared/conformance` (relative to the repository; nothing of it is copied into the repository). One Pod CREATE
//! with three containers and an init container, decoded and validated through the webhook's pipeline, against each
//! library and both together, next to the decode-only floor.
//!
//! `cargo bench --bench libraries`. Without `../shared/conformance` it prints why and measures nothing.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::Criterion;
use serde_json::json;

use policyctl::admission::decode;
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader::compile;
use policyctl::policy::{PolicySet, SourceFile};

fn review_bytes() -> Vec<u8> {
    let container = |name: &str, image: &str| {
        json!({
            "name": name,
            "image": image,
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}
        })
    };
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "web", "team": "shop", "owner": "shop"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [container("init", "registry.example.com/shop/init:1.0.0")],
            "containers": [
                container("app", "registry.example.com/shop/web:1.4.2"),
                container("proxy", "registry.example.com/shop/proxy:2.0.1"),
                container("metrics", "registry.example.com/shop/metrics:0.9.0")
            ]
        }
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "name": "web",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:shop:deployer"},
            "object": pod,
            "oldObject": null
        }
    }))
    .unwrap_or_default()
}

fn read(path: &Path) -> Option<SourceFile> {
    Some(SourceFile {
        origin: path.display().to_string(),
        content: std::fs::read_to_string(path).ok()?,
    })
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Every `library/general` template with the constraint of its first sample (in name order).
fn gatekeeper_general(shared: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    for dir in sorted_dirs(&shared.join("gatekeeper-library/library/general")) {
        let Some(constraint) = sorted_dirs(&dir.join("samples"))
            .into_iter()
            .map(|s| s.join("constraint.yaml"))
            .find(|c| c.is_file())
        else {
            continue;
        };
        if let (Some(template), Some(constraint)) =
            (read(&dir.join("template.yaml")), read(&constraint))
        {
            files.push(template);
            files.push(constraint);
        }
    }
    files
}

/// Every `best-practices` ClusterPolicy (`<name>/<name>.yaml`).
fn kyverno_best_practices(shared: &Path) -> Vec<SourceFile> {
    sorted_dirs(&shared.join("kyverno-policies/best-practices"))
        .into_iter()
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            read(&dir.join(format!("{name}.yaml")))
        })
        .collect()
}

fn load(label: &str, files: &[SourceFile]) -> Option<PolicySet> {
    match compile(files, &LoadOptions::default()).into_set(1) {
        Ok(set) => Some(set),
        Err(errors) => {
            eprintln!("{label}: does not load, skipped: {errors:?}");
            None
        }
    }
}

fn main() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    if !shared.is_dir() {
        eprintln!(
            "libraries: {} is not present; this bench reads the shared policy libraries in place, skipping",
            shared.display()
        );
        return;
    }
    let gatekeeper = gatekeeper_general(&shared);
    let kyverno = kyverno_best_practices(&shared);
    let both: Vec<SourceFile> = gatekeeper.iter().chain(&kyverno).cloned().collect();
    let bytes = review_bytes();
    let settings = Settings::default();
    let mut criterion = Criterion::default().configure_from_args();
    criterion.bench_function("libraries/decode-floor", |b| {
        b.iter(|| black_box(decode(black_box(&bytes)).is_ok()))
    });
    for (label, files) in [
        ("gatekeeper-library-general", &gatekeeper),
        ("kyverno-best-practices", &kyverno),
        ("both", &both),
    ] {
        let Some(set) = load(label, files) else {
            continue;
        };
        println!("{label}: {} policies", set.policies().len());
        criterion.bench_function(&format!("libraries/{label}"), |b| {
            b.iter(|| {
                let Ok(review) = decode(black_box(&bytes)) else {
                    return false;
                };
                black_box(pipeline::run(&set, &review, Webhook::Validate, &settings).allowed)
            })
        });
    }
    criterion.final_summary();
}
