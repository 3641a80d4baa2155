//! CEL policies served over TLS: a Kyverno ValidatingPolicy (Deny and Warn) and a ClusterPolicy `validate.cel` rule.

mod support;

use serde_json::json;
use support::{fixture, pod_review, TestServer};

const V1: &str = "admission.k8s.io/v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_policies_deny_warn_and_allow() {
    let server = TestServer::start(&fixture("cel")).await;
    server.wait_ready(200).await;

    let allowed = server
        .post(
            "/validate",
            &pod_review(V1, "u-ok", "good", json!({"team": "a"}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(allowed["response"]["allowed"], true, "{allowed}");
    assert!(allowed["response"].get("warnings").is_none(), "{allowed}");

    let denied = server
        .post(
            "/validate",
            &pod_review(V1, "u-deny", "bad", json!({}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(denied["response"]["allowed"], false, "{denied}");
    assert_eq!(denied["response"]["status"]["code"], 403);
    assert_eq!(
        denied["response"]["status"]["message"],
        "[require-team] pod bad must have a team label"
    );

    let root = server
        .post(
            "/validate",
            &pod_review(V1, "u-root", "root", json!({"team": "a"}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(root["response"]["allowed"], false, "{root}");
    assert_eq!(
        root["response"]["status"]["message"],
        "[no-root-name] name: pods may not be called root"
    );

    let warned = server
        .post(
            "/validate",
            &pod_review(V1, "u-warn", "w", json!({"team": "a"}), "nginx:latest"),
        )
        .await
        .json();
    assert_eq!(warned["response"]["allowed"], true, "{warned}");
    assert_eq!(
        warned["response"]["warnings"],
        json!(["[warn-latest] a :latest image"])
    );
    server.stop().await;
}

/// Also: `resource.Get` reads the test's context file, `namespaceObject` the Values file's namespaces.
#[test]
fn kyverno_test_files_run_validating_policy_and_validate_cel_results() {
    use policyctl::testing::{self, Outcome, TestOptions};
    let dir = fixture("cel").join(".kyverno-test");
    let cases = testing::run(&[dir], &TestOptions::default());
    assert_eq!(cases.len(), 8, "{cases:?}");
    for c in &cases {
        assert_eq!(c.result, Outcome::Pass, "{c:?}");
    }
}
