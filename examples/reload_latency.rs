//! Measures policy reloads, for the release note:
//!
//! 1. the time from a kubelet-style `..data` swap of a mounted policy directory to the new policy set answering,
//!    with the directory source's default timings (200 ms poll, 250 ms debounce), for 1 and for 100 policies;
//! 2. the cost of a reload of 100 small Rego policies: reading the directory, hashing, and compiling.
//!
//! Run once, in release mode: `cargo run --release --example reload_latency`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use policyctl::admission::{Operation, Review};
use policyctl::engine::LoadOptions;
use policyctl::metrics::Metrics;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::loader;
use policyctl::policy::store::PolicyStore;
use policyctl::sources::{Publisher, Sources, SourcesConfig, SourcesStatus};
use serde_json::json;

const SWAPS: usize = 12;

fn policy(index: usize, version: usize) -> String {
    format!(
        "package bench.p{index:03}\n\n\
         deny contains msg if {{\n    input.request.kind.kind == \"Pod\"\n    \
         input.request.object.metadata.labels.team == \"t{index}\"\n    \
         msg := sprintf(\"pod %s: policy {index} v{version}\", [input.request.object.metadata.name])\n}}\n\n\
         warn contains \"v{version}\" if {{\n    input.request.kind.kind == \"Pod\"\n    \
         input.request.object.metadata.labels.marker == \"{index}\"\n}}\n"
    )
}

fn files(count: usize, version: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("p{i:03}.rego"),
                policy(i, if i == 0 { version } else { 0 }),
            )
        })
        .collect()
}

/// The kubelet's atomic writer: new `..<ts>` directory, `..data_tmp` link renamed over `..data`, key links.
fn swap(root: &Path, version: usize, files: &[(String, String)]) {
    let dir = root.join(format!("..2026_11_23_00_00_00.{version:04}"));
    std::fs::create_dir(&dir).expect("mkdir");
    for (key, content) in files {
        std::fs::write(dir.join(key), content).expect("write");
    }
    let tmp = root.join("..data_tmp");
    std::os::unix::fs::symlink(dir.file_name().expect("name"), &tmp).expect("symlink");
    std::fs::rename(&tmp, root.join("..data")).expect("rename");
    for (key, _) in files {
        let link = root.join(key);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(key), &link).expect("key link");
        }
    }
    if version > 0 {
        let old = root.join(format!("..2026_11_23_00_00_00.{:04}", version - 1));
        std::fs::remove_dir_all(old).expect("remove old");
    }
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms (n={})",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

/// Whether the active set answers a pod with the warning of `version`.
fn answers(store: &PolicyStore, review: &Review, version: usize) -> bool {
    let Some(set) = store.current() else {
        return false;
    };
    let decision = pipeline::run(&set, review, Webhook::Validate, &Settings::default());
    decision
        .warnings
        .iter()
        .any(|w| w.ends_with(&format!(" v{version}")))
}

async fn swap_latency(count: usize) -> String {
    let temp = tempfile::tempdir().expect("tempdir");
    let root: PathBuf = temp.path().to_path_buf();
    swap(&root, 0, &files(count, 0));
    let store = Arc::new(PolicyStore::new());
    let publisher = Publisher::new(
        store.clone(),
        Arc::new(Metrics::new()),
        LoadOptions::default(),
    );
    let _running = Sources::new(SourcesConfig::directory(&root))
        .start(publisher, Arc::new(SourcesStatus::new()))
        .await
        .expect("sources");
    let review = Review::for_object(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"marker": "0"}}}),
        None,
        Operation::Create,
    );
    while !answers(&store, &review, 0) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut samples = Vec::new();
    for version in 1..=SWAPS {
        // Spread the swaps over the poll phase.
        tokio::time::sleep(Duration::from_millis(300 + 37 * version as u64)).await;
        swap(&root, version, &files(count, version));
        let start = Instant::now();
        while !answers(&store, &review, version) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "version {version} never answered"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(start.elapsed());
    }
    stats(samples)
}

fn reload_cost(count: usize) -> String {
    let temp = tempfile::tempdir().expect("tempdir");
    for (key, content) in files(count, 0) {
        std::fs::write(temp.path().join(key), content).expect("write");
    }
    let mut read = Vec::new();
    let mut hash = Vec::new();
    let mut compile = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let sources = loader::read_dir(temp.path()).expect("reads");
        read.push(start.elapsed());
        let start = Instant::now();
        let _ = policyctl::policy::content_hash(&sources);
        hash.push(start.elapsed());
        let start = Instant::now();
        let compiled = loader::compile(&sources, &LoadOptions::default());
        compile.push(start.elapsed());
        assert!(
            compiled.built.errors.is_empty(),
            "{:?}",
            compiled.built.errors
        );
        assert_eq!(compiled.built.policies.len(), count);
    }
    let us = |mut v: Vec<Duration>| {
        v.sort();
        format!("median {:.2} ms", v[v.len() / 2].as_secs_f64() * 1000.0)
    };
    format!(
        "read {}, hash {}, compile {}",
        us(read),
        us(hash),
        us(compile)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("reload cost, 100 Rego policies: {}", reload_cost(100));
    println!(
        "..data swap -> new set answering, 1 policy: {}",
        swap_latency(1).await
    );
    println!(
        "..data swap -> new set answering, 100 policies: {}",
        swap_latency(100).await
    );
}
