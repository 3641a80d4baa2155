//! Real policy libraries, not fixtures: the shared gatekeeper-library `library/general` templates (each with the
//! constraint of its first sample) and the kyverno-policies `best-practices` ClusterPolicies, read in place from
//! `../shared/conformance` (relative to the repository; nothing of it is copied into the repository). One Pod CREATE
//! with three containers and an init container, decoded and validated through the webhook's pipeline, against each
//! library and both together, next to the decode-only floor.
//!
//! `cargo bench --bench libraries`. Without `../shared/conformance` it prints why and measures nothing.

use std::hint::black_box;
use std::path::{Path, PathBuf};

mod common;

use criterion::Criterion;
use serde_json::json;

use policyctl::admission::decode;
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader::compile;
use policyctl::policy::{PolicySet, SourceFile};

fn review_bytes() -> Vec<u8> {
    common::review_bytes(json!({
        "securityContext": {"readOnlyRootFilesystem": true},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}
    }))
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
