//! Policy sources end to end: a directory with real files and real kubelet-style `..data` symlink swaps, the
//! ConfigMap watcher against a fake API server, and a reload storm under concurrent evaluations.

mod admin;
mod audit;
mod cluster;
mod configmaps;
mod directory;
mod fake_api;
mod fallback;
mod inline;
mod served;
mod storm;
#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use policyctl::admission::{Operation, Review};
use policyctl::engine::LoadOptions;
use policyctl::metrics::Metrics;
use policyctl::pipeline::{self, Settings, Webhook};
use policyctl::policy::store::PolicyStore;
use policyctl::policy::PolicySet;
use policyctl::sources::{Publisher, SourcesStatus};
use serde_json::json;

/// A store, its metrics, the sources' status and a publisher into them.
pub struct Target {
    pub store: Arc<PolicyStore>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<SourcesStatus>,
    pub publisher: Publisher,
}

impl Default for Target {
    fn default() -> Self {
        Target::new()
    }
}

impl Target {
    pub fn new() -> Target {
        let store = Arc::new(PolicyStore::new());
        let metrics = Arc::new(Metrics::new());
        let publisher = Publisher::new(store.clone(), metrics.clone(), LoadOptions::default());
        Target {
            store,
            metrics,
            status: Arc::new(SourcesStatus::new()),
            publisher,
        }
    }

    /// The webhook handlers' state over this target: `slots` evaluation slots and these settings.
    pub fn app_state(&self, slots: usize, settings: Settings) -> policyctl::server::AppState {
        policyctl::server::AppState {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            limiter: Arc::new(tokio::sync::Semaphore::new(slots)),
            settings,
            draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            sources: self.status.clone(),
            limits: policyctl::server::ConnectionLimits::default(),
            ready_after_syncs: false,
            reclaim: policyctl::server::memory::Reclaim::new(),
            inline: std::sync::Arc::new(policyctl::server::inline::Inline::off()),
        }
    }

    /// The active generation (0 before the first set).
    pub fn generation(&self) -> u64 {
        self.store.current().map(|s| s.generation()).unwrap_or(0)
    }

    /// Wait until the active generation is `generation`; panics after 20 s (a failure limit, not a timing claim).
    pub async fn until_generation(&self, generation: u64) -> Arc<PolicySet> {
        until(&format!("generation {generation}"), || {
            self.generation() >= generation
        })
        .await;
        let set = self.store.current().expect("a set");
        assert_eq!(set.generation(), generation, "exactly one new generation");
        set
    }

    /// Wait until the active set gives a Pod exactly these denial lines (sorted).
    pub async fn until_denials(&self, expected: &[&str]) -> Arc<PolicySet> {
        until(&format!("the set denying {expected:?}"), || {
            self.store
                .current()
                .is_some_and(|set| denials(&set) == expected)
        })
        .await;
        self.store.current().expect("a set")
    }

    /// Wait until a load was rejected.
    pub async fn until_rejected(&self) -> Vec<String> {
        until("a rejected load", || self.store.last_error().is_some()).await;
        self.store
            .last_error()
            .expect("error")
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

/// Poll `done` every 5 ms; panic with `what` after 20 s.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Poll the async `done` every 20 ms; panic with `what` after 20 s.
pub async fn until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Rego policy `package <name>` that denies every Pod with `message`.
pub fn rego(name: &str, message: &str) -> String {
    format!("package {name}\n\ndeny contains \"{message}\" if {{\n    input.request.kind.kind == \"Pod\"\n}}\n")
}

/// Assert that an AdmissionReview `response` denies with exactly `message` (the policy's own answer).
pub fn assert_denied_with(answer: &serde_json::Value, message: &str) {
    assert_eq!(answer["allowed"], false, "{answer}");
    assert_eq!(answer["status"]["message"], message, "{answer}");
}

/// The review of creating a minimal Pod `ns/p`.
pub fn pod_review() -> Review {
    Review::for_object(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": {}}),
        None,
        Operation::Create,
    )
}

/// [`pod_review`] as an AdmissionReview request body.
pub fn pod_review_body() -> Vec<u8> {
    serde_json::to_vec(pod_review().document()).expect("json")
}

/// POST `body` to the router's `/validate`; expects 200 and returns the AdmissionReview answered.
pub async fn post_validate(router: &axum::Router, body: Vec<u8>) -> serde_json::Value {
    use tower::ServiceExt;
    let request = axum::http::Request::post("/validate")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("answered");
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("AdmissionReview")
}

/// The denial lines a set gives a Pod.
pub fn denials(set: &Arc<PolicySet>) -> Vec<String> {
    let review = pod_review();
    let mut lines = pipeline::run(set, &review, Webhook::Validate, &Settings::default()).denials;
    lines.sort();
    lines
}

/// The names of a set's policies.
pub fn names(set: &Arc<PolicySet>) -> Vec<String> {
    set.policies()
        .iter()
        .map(|p| p.info().name.clone())
        .collect()
}
