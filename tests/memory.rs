//! Memory comes back after a batch of large reviews: the real binary, real TLS sockets, its resident set read from
//! /proc (Linux only).

#![cfg(target_os = "linux")]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};
use support::{request, Binary};

/// Just under the 3 MiB body limit.
const TARGET_BYTES: usize = 3 * 1024 * 1024 - 64 * 1024;

/// Resident set of a process, in KiB (VmRSS of /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

/// A review of `kind` whose object carries `TARGET_BYTES` of many small members (what makes a parsed JSON document
/// many times its text in memory). Pods put them in annotations and labels, which policies read; ConfigMaps in data.
fn large_review(uid: &str, kind: &str) -> Vec<u8> {
    let mut members = Map::new();
    let mut size = 0;
    let mut i = 0;
    while size < TARGET_BYTES {
        let key = format!("example.com/key-{uid}-{i:07}");
        let value = format!("value-{i:07}-{}", "x".repeat(i % 48));
        size += key.len() + value.len() + 6;
        members.insert(key, Value::String(value));
        i += 1;
    }
    let (resource, object) = if kind == "Pod" {
        (
            "pods",
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": uid, "namespace": "default", "labels": {"app": "big"}, "annotations": members},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }),
        )
    } else {
        (
            "configmaps",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": uid, "namespace": "default"},
                "data": members
            }),
        )
    };
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "name": uid,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    });
    let body = serde_json::to_vec(&review).expect("json");
    assert!(body.len() < 3 * 1024 * 1024, "{} bytes", body.len());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_a_batch_of_large_reviews() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let policies = policies.to_str().expect("utf-8 path");
    let server = Binary::start(
        "json",
        &[],
        &[
            "--policies",
            policies,
            "--request-timeout",
            "30s",
            "--eval-timeout",
            "30s",
        ],
    )
    .await;
    let pid = server.child.id();
    // Warm up with a few small requests so the baseline includes the steady-state allocations.
    for i in 0..4 {
        let body = support::pod_review(
            "admission.k8s.io/v1",
            &format!("warm-{i}"),
            "p",
            json!({"app": "a"}),
            "nginx:1.27",
        );
        assert_eq!(server.post("/validate", &body).await.status, 200);
    }
    let baseline = rss_kib(pid);

    // The batch: many large reviews at once, over many connections.
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            large_review(
                &format!("big-{i}"),
                if i % 2 == 0 { "Pod" } else { "ConfigMap" },
            )
        })
        .collect();
    let bodies = std::sync::Arc::new(bodies);
    let connections = 16;
    let per_connection = 2;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut stream = server.connect().await;
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for r in 0..per_connection {
                let body = &bodies[(c + r) % bodies.len()];
                statuses.push(request(&mut stream, "POST", "/validate", body).await.status);
            }
            statuses
        }));
    }
    for task in tasks {
        for status in task.await.expect("client task") {
            assert_eq!(status, 200, "a large review was not answered");
        }
    }
    let after_batch = rss_kib(pid);

    // Settled: poll (bounded) until the resident set is back near the baseline.
    let bound = baseline + 128 * 1024;
    let mut settled = rss_kib(pid);
    for _ in 0..80 {
        if settled <= bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        settled = rss_kib(pid);
    }
    eprintln!(
        "VmRSS: baseline {} MiB, after the batch {} MiB, settled {} MiB (bound {} MiB)",
        baseline / 1024,
        after_batch / 1024,
        settled / 1024,
        bound / 1024
    );
    server.stop().await;
    assert!(
        settled <= bound,
        "resident set stayed at {settled} KiB after the batch (baseline {baseline} KiB, bound {bound} KiB)"
    );
}
