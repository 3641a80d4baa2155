//! The bundled policy set (`policies/`: Gatekeeper, Kyverno and Rego, as shipped) on a compliant Pod CREATE with
//! three containers and an init container, through the validating pipeline, next to the decode-only floor measured
//! in the same run. Prints the median per-review cost of each, their ratio, and the five costliest policies.
//!
//! `cargo bench --bench bundled`. Uses only APIs that existed before the evaluation core, so the same file measures
//! an older commit for a before/after comparison.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use policyctl::admission;
use policyctl::engine::LoadOptions;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader::compile_dir;
use serde_json::json;

fn review_bytes() -> Vec<u8> {
    common::review_bytes(json!({}))
}

/// The median of `runs` timings of `f`, after a warm-up of a tenth as many.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..runs / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let compiled = compile_dir(&dir, &LoadOptions::default());
    let Ok(set) = compiled.into_set(1) else {
        eprintln!("the bundled policies do not load");
        std::process::exit(1);
    };
    let bytes = review_bytes();
    let settings = Settings::default();
    let floor = median(20_000, || {
        let review = admission::decode(std::hint::black_box(&bytes));
        std::hint::black_box(review.is_ok());
    });
    let mut per_policy: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let whole = median(2_000, || {
        if let Ok(review) = admission::decode(std::hint::black_box(&bytes)) {
            let decision = pipeline::run(&set, &review, Webhook::Validate, &settings);
            for run in &decision.runs {
                per_policy
                    .entry(run.policy.info().name.clone())
                    .or_default()
                    .push(run.duration);
            }
            std::hint::black_box(decision.allowed);
        }
    });
    println!(
        "bundled set ({} policies), one compliant Pod CREATE:",
        set.policies().len()
    );
    println!("  decode only (floor):      {floor:?}");
    println!("  decode + validate:        {whole:?}");
    println!(
        "  ratio to the floor:       {:.1}",
        whole.as_secs_f64() / floor.as_secs_f64().max(1e-12)
    );
    let mut medians: Vec<(Duration, String)> = per_policy
        .into_iter()
        .map(|(name, mut times)| {
            times.sort();
            (times[times.len() / 2], name)
        })
        .collect();
    medians.sort();
    medians.reverse();
    println!("  costliest policies (median per review):");
    for (time, name) in medians.iter().take(5) {
        println!("    {time:>12?}  {name}");
    }
}
