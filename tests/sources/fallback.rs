//! The webhook's fallback when no evaluation thread could be started (`webhook::router_with(state, None)`): reviews
//! are evaluated on tokio's blocking pool, bounded by the same evaluation slots, and a review that gets no slot
//! before its deadline is still answered, under the failure policy.

use std::time::Duration;

use axum::Router;
use policyctl::pipeline::Settings;
use policyctl::policy::SourceFile;
use policyctl::server::webhook;
use serde_json::Value;

use crate::{assert_denied_with, pod_review_body, post_validate, rego, Target};

/// A router on the blocking pool with `slots` evaluation slots, over one package that denies every Pod.
fn blocking_pool_router(target: &Target, slots: usize, request_timeout: Duration) -> Router {
    target
        .publisher
        .publish_files(&[SourceFile {
            origin: "fallback/deny.rego".to_string(),
            content: rego("fallback", "denied on the blocking pool"),
        }])
        .expect("set");
    let settings = Settings {
        request_timeout,
        ..Settings::default()
    };
    webhook::router_with(target.app_state(slots, settings), None)
}

/// POST a Pod review to /validate; the AdmissionReview's `response`.
async fn validate(router: &Router) -> Value {
    post_validate(router, pod_review_body()).await["response"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_evaluation_threads_the_blocking_pool_evaluates() {
    let target = Target::new();
    let router = blocking_pool_router(&target, 2, Duration::from_secs(10));
    // More requests than slots at once: each waits for a slot and is evaluated.
    let answers = futures_join(&router, 6).await;
    for answer in answers {
        assert_denied_with(&answer, "[fallback] denied on the blocking pool");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_slot_before_the_deadline_the_review_is_answered_under_the_failure_policy() {
    let target = Target::new();
    // No slot at all: the review can only be decided without evaluating, when its deadline passes.
    let router = blocking_pool_router(&target, 0, Duration::from_millis(200));
    let answer = validate(&router).await;
    assert_eq!(
        answer["allowed"], false,
        "the default failure policy is Fail: {answer}"
    );
    let message = answer["status"]["message"].as_str().expect("message");
    assert!(
        !message.contains("denied on the blocking pool"),
        "the policy did not run: {message}"
    );
    assert!(
        message.starts_with("[fallback]") && message.contains("request deadline"),
        "names the policy and the deadline: {message}"
    );
}

/// `n` concurrent validations.
async fn futures_join(router: &Router, n: usize) -> Vec<Value> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move { validate(&router).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("client"));
    }
    answers
}
