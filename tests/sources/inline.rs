//! A review's first attempt on the async worker that received it (`server::inline`): a cheap review is decided
//! there; one that outruns the attempt's budget, or whose body is large, is decided on an evaluation thread with the
//! request's own deadline, and its answer is the policy's, never the attempt's time-out.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use policyctl::pipeline::Settings;
use policyctl::policy::SourceFile;
use policyctl::server::evaluator::Evaluator;
use policyctl::server::inline::{Inline, MAX_BODY_BYTES};
use policyctl::server::webhook;
use serde_json::{json, Value};

use crate::{assert_denied_with, pod_review, pod_review_body, post_validate, rego, Target};

/// A router with evaluation threads and attempts within `budget`, over one package that denies every Pod; the
/// attempts' record.
fn router(target: &Target, budget: Duration) -> (Router, Arc<Inline>) {
    target
        .publisher
        .publish_files(&[SourceFile {
            origin: "inline/deny.rego".to_string(),
            content: rego("inline", "denied by the policy"),
        }])
        .expect("set");
    let settings = Settings {
        request_timeout: Duration::from_secs(20),
        ..Settings::default()
    };
    let mut state = target.app_state(2, settings);
    let inline = Arc::new(Inline::new(Some(budget), 1));
    state.inline = inline.clone();
    let evaluator = Evaluator::new(2).expect("evaluation threads");
    (
        webhook::router_with(state, Some(Arc::new(evaluator))),
        inline,
    )
}

fn assert_denied_by_the_policy(answer: &Value) {
    assert_denied_with(answer, "[inline] denied by the policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_review_is_decided_on_the_worker() {
    let target = Target::new();
    let (router, inline) = router(&target, Duration::from_secs(5));
    for _ in 0..3 {
        let answer = post_validate(&router, pod_review_body()).await["response"].clone();
        assert_denied_by_the_policy(&answer);
    }
    assert_eq!((inline.answered(), inline.handed_off()), (3, 0));
    let metrics = target.metrics.encode();
    assert!(
        metrics.contains("policyctl_inline_attempts_total{result=\"answered\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_that_outruns_the_budget_is_decided_on_an_evaluation_thread_with_its_own_deadline()
{
    let target = Target::new();
    // A budget that has passed before any policy starts: every policy of the attempt times out.
    let (router, inline) = router(&target, Duration::from_nanos(1));
    let answer = post_validate(&router, pod_review_body()).await["response"].clone();
    assert_denied_by_the_policy(&answer);
    assert_eq!((inline.answered(), inline.handed_off()), (0, 1));
    // The next reviews skip the attempt for a while, and are still decided by the policy.
    let answer = post_validate(&router, pod_review_body()).await["response"].clone();
    assert_denied_by_the_policy(&answer);
    assert_eq!((inline.answered(), inline.handed_off()), (0, 1));
    let metrics = target.metrics.encode();
    for line in [
        "policyctl_inline_attempts_total{result=\"handed_off\"} 1",
        "policyctl_inline_attempts_total{result=\"not_tried\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_review_goes_straight_to_an_evaluation_thread() {
    let target = Target::new();
    let (router, inline) = router(&target, Duration::from_secs(5));
    let mut review = pod_review().document().clone();
    review["request"]["object"]["metadata"]["annotations"] =
        json!({"filler": "x".repeat(MAX_BODY_BYTES)});
    let body = serde_json::to_vec(&review).expect("json");
    assert!(body.len() > MAX_BODY_BYTES);
    let answer = post_validate(&router, body).await["response"].clone();
    assert_denied_by_the_policy(&answer);
    assert_eq!(
        (inline.answered(), inline.handed_off()),
        (0, 0),
        "no attempt"
    );
}
