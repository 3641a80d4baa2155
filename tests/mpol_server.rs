//! Kyverno MutatingPolicy served over TLS: a JSONPatch and an ApplyConfiguration mutation compose on /mutate with a
//! ClusterPolicy mutation, and the response's JSON patch turns the original object into the mutated one; the same
//! policies pass their kyverno test file (patchedResources).

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{fixture, pod_review, TestServer};

const V1: &str = "admission.k8s.io/v1";

fn patched(body: &Value, original: &Value) -> Value {
    let response = &body["response"];
    assert_eq!(response["allowed"], true, "{body}");
    assert_eq!(response["patchType"], "JSONPatch", "{body}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            response["patch"]
                .as_str()
                .expect("patch is a base64 string"),
        )
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
    let mut object = original.clone();
    json_patch::patch(&mut object, &patch).expect("the patch applies to the original object");
    object
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_policies_compose_on_mutate_over_tls() {
    let server = TestServer::start(&fixture("mpol")).await;
    server.wait_ready(200).await;

    // Every policy applies, composed into one patch: the ClusterPolicy adds the tier label, the JSONPatch
    // MutatingPolicy the annotation, the ApplyConfiguration one merges the containers by name (imagePullPolicy on the
    // existing one) and appends the sidecar.
    let review = pod_review(V1, "u-both", "p", json!({"team": "a"}), "nginx:1.27");
    let original =
        serde_json::from_slice::<Value>(&review).expect("json")["request"]["object"].clone();
    let body = server.post("/mutate", &review).await.json();
    assert_eq!(body["response"]["uid"], "u-both");
    let mut expected = original.clone();
    expected["metadata"]["labels"]["tier"] = json!("web");
    expected["metadata"]["annotations"] = json!({"example.com/team": "a"});
    expected["spec"]["containers"] = json!([
        {"name": "app", "image": "nginx:1.27", "imagePullPolicy": "Always"},
        {"name": "proxy", "image": "proxy:1"}
    ]);
    assert_eq!(patched(&body, &original), expected);

    // matchConditions skip the JSONPatch policy; the ApplyConfiguration one still applies.
    let review = pod_review(V1, "u-one", "q", json!({}), "nginx:1.27");
    let original =
        serde_json::from_slice::<Value>(&review).expect("json")["request"]["object"].clone();
    let body = server.post("/mutate", &review).await.json();
    let object = patched(&body, &original);
    assert!(object["metadata"].get("annotations").is_none(), "{object}");
    assert_eq!(object["metadata"]["labels"]["tier"], "web", "{object}");
    assert_eq!(object["spec"]["containers"][1]["name"], "proxy");
    server.stop().await;
}

#[test]
fn kyverno_test_file_patched_resources_match() {
    use policyctl::testing::{self, Outcome, TestOptions};
    let dir = fixture("mpol").join(".kyverno-test");
    let cases = testing::run(&[dir], &TestOptions::default());
    // Four cases of the two policies, and a Binding reviewed as pods/binding (the Values file's subresources).
    assert_eq!(cases.len(), 5, "{cases:?}");
    for c in &cases {
        assert_eq!(c.result, Outcome::Pass, "{c:?}");
    }
}
