//! A reload storm: many reloads (some of them broken) while many admission requests run through the real webhook
//! handler. Every request must be answered, each by exactly one generation (all its policies agree on the version),
//! with no error, and only published versions may answer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use policyctl::pipeline::Settings;
use policyctl::policy::SourceFile;
use policyctl::server::webhook;

use crate::{pod_review_body, post_validate, rego, Target};

const RELOADS: usize = 40;
const CLIENTS: usize = 8;

/// Version `n` of the set: three packages that all deny with `v<n>`.
fn version(n: usize) -> Vec<SourceFile> {
    ["alpha", "beta", "gamma"]
        .iter()
        .map(|name| SourceFile {
            origin: format!("storm/{name}.rego"),
            content: rego(name, &format!("v{n}")),
        })
        .collect()
}

fn broken(n: usize) -> Vec<SourceFile> {
    let mut files = version(n);
    files[1].content = "package beta\n\ndeny contains msg if {\n".to_string();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_storm_every_request_is_answered_by_exactly_one_generation() {
    let target = Target::new();
    target
        .publisher
        .publish_files(&version(0))
        .expect("first set");
    let router = webhook::router(target.app_state(4, Settings::default()));
    let body = pod_review_body();

    // The reloader: good versions 1..=RELOADS, every fifth one broken (rejected, the previous version stays).
    let published = Arc::new(Mutex::new(BTreeSet::from([0usize])));
    let done = Arc::new(AtomicBool::new(false));
    let reloader = {
        let publisher = target.publisher.clone();
        let published = published.clone();
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let mut rejected = 0;
            for n in 1..=RELOADS {
                if n % 5 == 0 {
                    assert!(
                        publisher.publish_files(&broken(n)).is_err(),
                        "broken version {n} rejected"
                    );
                    rejected += 1;
                } else {
                    // Recorded before publishing: a request may see the new set as soon as it is stored.
                    published.lock().expect("lock").insert(n);
                    publisher.publish_files(&version(n)).expect("good version");
                }
            }
            done.store(true, Ordering::SeqCst);
            rejected
        })
    };

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let router = router.clone();
        let body = body.clone();
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Keep sending until the reloads are over, and at least a few requests each.
            while !done.load(Ordering::SeqCst) || seen.len() < 5 {
                let review = post_validate(&router, body.clone()).await;
                let answer = &review["response"];
                assert_eq!(answer["allowed"], false, "{review}");
                let message = answer["status"]["message"].as_str().expect("message");
                let versions: BTreeSet<&str> = message
                    .lines()
                    .map(|line| line.rsplit(' ').next().unwrap_or(""))
                    .collect();
                assert_eq!(
                    message.lines().count(),
                    3,
                    "three denials, no error: {message}"
                );
                assert_eq!(
                    versions.len(),
                    1,
                    "one generation answers a request: {message}"
                );
                let version: usize = versions
                    .iter()
                    .next()
                    .and_then(|v| v.strip_prefix('v'))
                    .and_then(|v| v.parse().ok())
                    .expect("vN");
                seen.push(version);
            }
            seen
        }));
    }

    let rejected = reloader.await.expect("reloader");
    let mut answered = 0;
    let mut versions_seen = BTreeSet::new();
    for client in clients {
        let seen = client.await.expect("client");
        answered += seen.len();
        versions_seen.extend(seen);
    }
    let published = published.lock().expect("lock").clone();
    assert!(
        versions_seen.is_subset(&published),
        "only published versions answer: {versions_seen:?}"
    );
    assert!(
        versions_seen.iter().all(|v| *v == 0 || v % 5 != 0),
        "no broken version answers"
    );
    assert!(answered >= CLIENTS * 5, "{answered} requests answered");
    assert_eq!(rejected, RELOADS / 5);
    let last_good = (1..=RELOADS)
        .rev()
        .find(|n| n % 5 != 0)
        .expect("a good version");
    // Generation 1 is version 0; every good reload adds one.
    assert_eq!(target.generation(), (RELOADS - RELOADS / 5 + 1) as u64);
    let final_set = target.store.current().expect("set");
    assert_eq!(
        crate::denials(&final_set),
        [
            format!("[alpha] v{last_good}"),
            format!("[beta] v{last_good}"),
            format!("[gamma] v{last_good}")
        ]
    );
    let metrics = target.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "policyctl_policy_load_errors_total {}",
            RELOADS / 5
        )),
        "{metrics}"
    );
    eprintln!(
        "storm: {answered} requests answered during {RELOADS} reloads, versions seen: {}",
        versions_seen.len()
    );
}
