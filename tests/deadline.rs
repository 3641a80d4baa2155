//! One deadline per request, over real TLS sockets: a hostile review (a Pod with thousands of containers against a
//! policy that is quadratic by design, several in flight) is answered within its deadline under the failure policy,
//! and a normal review sent meanwhile is answered within its own deadline too.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{fixture, TestServer};

/// The request deadline the server is started with.
const DEADLINE: Duration = Duration::from_millis(1500);
/// What an answer may take beyond its deadline here: TLS, encoding, a loaded CI machine. The runaway evaluation
/// itself would take minutes, so this bound separates "stopped by the deadline" from "not stopped" by far.
const MARGIN: Duration = Duration::from_secs(3);

fn review(uid: &str, containers: usize) -> Vec<u8> {
    let containers: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("registry.example.com/app{i}:1.0")}))
        .collect();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": uid,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": uid, "namespace": "default"},
                "spec": {"containers": containers}
            }
        }
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_reviews_end_at_their_deadline_and_normal_ones_are_answered() {
    let server = TestServer::start_with(&fixture("hostile"), |config| {
        config.request_timeout = DEADLINE;
        config.eval_timeout = Duration::from_secs(30);
        config.max_concurrency = 2;
    })
    .await;
    server.wait_ready(200).await;
    let server = std::sync::Arc::new(server);

    // A small Pod is decided normally: the policy works.
    let small = server.post("/validate", &review("small", 3)).await.json();
    assert_eq!(small["response"]["allowed"], true, "{small}");

    // Three hostile reviews at once: more than the evaluation slots.
    let hostile_body = review("hostile", 5000);
    let started = Instant::now();
    let mut hostile = Vec::new();
    for _ in 0..3 {
        let server = server.clone();
        let body = hostile_body.clone();
        hostile.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = server.post("/validate", &body).await;
            (answer, sent.elapsed())
        }));
    }
    // A normal review while they run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Instant::now();
    let normal = server.post("/validate", &review("normal", 3)).await;
    let normal_took = sent.elapsed();
    assert_eq!(normal.status, 200);
    let normal = normal.json();
    assert_eq!(normal["response"]["uid"], "normal");
    assert!(
        normal_took < DEADLINE + MARGIN,
        "the normal review took {normal_took:?}"
    );
    // Either it got a slot and was decided, or it was answered at its deadline under the failure policy.
    if normal["response"]["allowed"] != true {
        let message = normal["response"]["status"]["message"]
            .as_str()
            .unwrap_or("");
        assert!(message.contains("request deadline"), "{normal}");
    }

    for task in hostile {
        let (answer, took) = task.await.expect("task");
        assert_eq!(answer.status, 200);
        let body = answer.json();
        assert_eq!(body["response"]["allowed"], false, "{body}");
        let message = body["response"]["status"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("[unique-images]") && message.contains("request deadline"),
            "{message}"
        );
        assert!(took < DEADLINE + MARGIN, "a hostile review took {took:?}");
    }
    assert!(started.elapsed() < DEADLINE + MARGIN);

    // The metrics count the time-outs as such.
    let (_, metrics) = support::admin_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"policy="unique-images",engine="kyverno",result="timeout""#),
        "{metrics}"
    );
}
