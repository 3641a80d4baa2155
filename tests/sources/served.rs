//! The real server (TLS webhook + admin listener) follows its policy directory: an edit is served without a restart,
//! a broken edit is reported by `/status` while the last good set keeps answering.

use serde_json::Value;

use crate::support::{admin_get, TestServer};
use crate::{pod_review_body, rego, until_async};

async fn status(server: &TestServer) -> Value {
    let (code, body) = admin_get(server.admin, "/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

async fn denial(server: &TestServer) -> String {
    let answer = server.post("/validate", &pod_review_body()).await.json();
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reloads_its_policy_directory() {
    let policies = tempfile::tempdir().expect("tempdir");
    let file = policies.path().join("team.rego");
    std::fs::write(&file, rego("team", "first")).expect("write");
    let server = TestServer::start(policies.path()).await;
    server.wait_ready(200).await;
    assert_eq!(denial(&server).await, "[team] first");
    assert_eq!(status(&server).await["active"]["generation"], 1);

    std::fs::write(&file, rego("team", "second")).expect("edit");
    until_async("generation 2", || async {
        status(&server).await["active"]["generation"] == 2
    })
    .await;
    assert_eq!(denial(&server).await, "[team] second");

    std::fs::write(&file, "package team\n\ndeny contains msg if {\n").expect("break");
    until_async("a rejected load", || async {
        !status(&server).await["last_error"].is_null()
    })
    .await;
    let report = status(&server).await;
    assert_eq!(report["active"]["generation"], 2);
    assert_eq!(
        report["last_error"]["errors"][0]["location"]["origin"],
        file.display().to_string()
    );
    assert_eq!(
        report["sources"][0]["description"],
        policies.path().display().to_string()
    );
    assert_eq!(
        denial(&server).await,
        "[team] second",
        "the last good set keeps answering"
    );
    server.wait_ready(200).await;
    let (_, metrics) = admin_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains("policyctl_policy_load_errors_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("policyctl_policy_set_info{hash=\""),
        "{metrics}"
    );
    server.stop().await;
}
