//! CEL policies served over TLS: a Kyverno ValidatingPolicy (Deny and Warn), a ClusterPolicy `validate.cel` rule,
//! Kubernetes ValidatingAdmissionPolicies with bindings and a Gatekeeper template's CEL code.

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

/// Kubernetes ValidatingAdmissionPolicies with bindings (Deny with params from the policy set, Warn, Audit) and a
/// Gatekeeper template whose CEL runs instead of its Rego (deny and warn constraints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validating_admission_policies_and_gatekeeper_cel_deny_warn_and_audit() {
    let server = TestServer::start(&fixture("cel-k8s")).await;
    server.wait_ready(200).await;
    let review = |uid: &str, name: &str, labels: serde_json::Value, image: &str| {
        pod_review(V1, uid, name, labels, image)
    };

    let allowed = server
        .post(
            "/validate",
            &review("u-ok", "good", json!({"team": "a"}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(allowed["response"]["allowed"], true, "{allowed}");
    assert!(allowed["response"].get("warnings").is_none(), "{allowed}");

    let denied = server
        .post(
            "/validate",
            &review("u-tag", "tagged", json!({"team": "a"}), "nginx:latest"),
        )
        .await
        .json();
    assert_eq!(denied["response"]["allowed"], false, "{denied}");
    assert_eq!(
        denied["response"]["status"]["message"],
        "[image-tag] ValidatingAdmissionPolicy 'image-tag' with binding 'image-tag-deny' denied request: \
         image tag latest is forbidden"
    );

    let warned = server
        .post(
            "/validate",
            &review("u-team", "teamless", json!({}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(warned["response"]["allowed"], true, "{warned}");
    assert_eq!(
        warned["response"]["warnings"],
        json!(["[team-label] Validation failed for ValidatingAdmissionPolicy 'team-label' with binding \
                'team-label-warn': pods should have a team label"])
    );

    let audited = server
        .post(
            "/validate",
            &review("u-audit", "audited", json!({"team": "a"}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(audited["response"]["allowed"], true, "{audited}");
    assert!(audited["response"].get("warnings").is_none(), "{audited}");
    let (_, metrics) = support::admin_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains(
            r#"policyctl_policy_results_total{policy="name-audit",engine="vap",result="audit"} 1"#
        ),
        "{metrics}"
    );

    // The Gatekeeper template's CEL ran, not its Rego.
    let blocked = server
        .post(
            "/validate",
            &review("u-gk", "gk-bad", json!({"team": "a"}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(blocked["response"]["allowed"], false, "{blocked}");
    assert_eq!(
        blocked["response"]["status"]["message"],
        "[gk-block] cel: name gk-bad is blocked"
    );
    let gk_warned = server
        .post(
            "/validate",
            &review("u-gkw", "gk-meh", json!({"team": "a"}), "nginx:1.27"),
        )
        .await
        .json();
    assert_eq!(gk_warned["response"]["allowed"], true, "{gk_warned}");
    assert_eq!(
        gk_warned["response"]["warnings"],
        json!(["[gk-warn] cel: name gk-meh is blocked"])
    );
    server.stop().await;
}

/// A ValidatingPolicy of a payload mode (JSON, HTTP, Envoy) loads with a warning and never meets an admission
/// request: even one whose every validation fails allows every Pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_mode_policies_never_enforce_at_admission() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("payload-policies.yaml"),
        "apiVersion: policies.kyverno.io/v1\nkind: ValidatingPolicy\nmetadata: {name: json-deny-all}\n\
         spec:\n  evaluation: {mode: JSON}\n  validations:\n  - expression: 'false'\n    message: never\n---\n\
         apiVersion: policies.kyverno.io/v1\nkind: ValidatingPolicy\nmetadata: {name: envoy-deny-all}\n\
         spec:\n  evaluation: {mode: Envoy}\n  validations:\n  - expression: envoy.Denied(403).Response()\n",
    )
    .expect("write");
    let server = TestServer::start(dir.path()).await;
    server.wait_ready(200).await;
    for path in ["/validate", "/mutate"] {
        let answer = server
            .post(
                path,
                &pod_review(V1, "u-payload", "p", json!({}), "nginx:1.27"),
            )
            .await
            .json();
        assert_eq!(answer["response"]["allowed"], true, "{path}: {answer}");
        assert!(answer["response"].get("warnings").is_none(), "{answer}");
    }
    server.stop().await;
}
