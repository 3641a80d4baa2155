//! Cost against request size: the bundled `disallow-latest-tag` Kyverno policy (a foreach over every container) on
//! Pods with 20 and 1,000 containers, decode included, through the validating pipeline. Prints the cost per review of
//! each size and their ratio, measured in the same run. The Pod is 50× larger, so work linear in the request
//! (decoding included) gives a ratio of at most ~50, less where fixed per-request costs weigh. Before the layered
//! Kyverno context (a copy of the whole request per foreach element, quadratic) the ratio was ~800.
//!
//! `cargo bench --bench scaling` (or `--profile dev` for a quick, unoptimised look).

use std::path::Path;
use std::time::{Duration, Instant};

use policyctl::admission;
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader::compile;
use policyctl::policy::SourceFile;
use serde_json::{json, Value};

fn review(containers: usize) -> Vec<u8> {
    let containers: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("registry.example.com/app{i}:1.{i}")}))
        .collect();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "name": "web",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"containers": containers}}
        }
    }))
    .unwrap_or_default()
}

/// Median time of one review, over enough runs to fill about a second.
fn cost(set: &policyctl::policy::PolicySet, body: &[u8], settings: &Settings) -> Duration {
    let once = || {
        let start = Instant::now();
        if let Ok(review) = admission::decode(body) {
            let decision = pipeline::run(set, &review, Webhook::Validate, settings);
            assert!(decision.errors.is_empty(), "{:?}", decision.errors);
        }
        start.elapsed()
    };
    let first = once();
    let runs =
        (Duration::from_secs(1).as_nanos() / first.as_nanos().max(1)).clamp(5, 2000) as usize;
    let mut times: Vec<Duration> = (0..runs).map(|_| once()).collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/kyverno/disallow-latest-tag.yaml");
    let content = std::fs::read_to_string(&path).unwrap_or_default();
    let compiled = compile(
        &[SourceFile {
            origin: path.display().to_string(),
            content,
        }],
        &LoadOptions::default(),
    );
    let Some(set) = compiled.into_set(1).ok() else {
        eprintln!("the bundled disallow-latest-tag policy does not load");
        std::process::exit(1);
    };
    let settings = Settings {
        request_timeout: Duration::from_secs(60),
        ..Settings::default()
    };
    let small = cost(&set, &review(20), &settings);
    let large = cost(&set, &review(1000), &settings);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
    println!("disallow-latest-tag, 20 containers:    {small:?} per review");
    println!("disallow-latest-tag, 1,000 containers: {large:?} per review");
    println!("ratio 1,000 / 20 containers: {ratio:.1} (the request is 50x larger; quadratic machinery gave ~800)");
}
