//! The admin listener's `/status` and `/readyz` while loads succeed and fail.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use policyctl::pipeline::Settings;
use policyctl::policy::SourceFile;
use policyctl::server::{admin, AppState, ConnectionLimits};
use serde_json::Value;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::{rego, Target};

async fn get(router: &axum::Router, path: &str) -> (u16, String) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("answered");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).to_string())
}

#[tokio::test]
async fn status_shows_the_active_set_and_the_last_error_and_readiness_survives_a_bad_load() {
    let target = Target::new();
    let state = AppState {
        store: target.store.clone(),
        metrics: target.metrics.clone(),
        limiter: Arc::new(Semaphore::new(1)),
        settings: Settings::default(),
        draining: Arc::new(AtomicBool::new(false)),
        sources: target.status.clone(),
        limits: ConnectionLimits::default(),
        ready_after_syncs: false,
        reclaim: policyctl::server::memory::Reclaim::new(),
        inline: std::sync::Arc::new(policyctl::server::inline::Inline::off()),
    };
    let router = admin::router(state);
    let (code, body) = get(&router, "/status").await;
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["ready"], false);
    assert!(status["active"].is_null());
    assert_eq!(get(&router, "/readyz").await.0, 503);

    let good = SourceFile {
        origin: "cm/policies/a.rego".into(),
        content: rego("team.a", "a"),
    };
    let set = target.publisher.publish_files(&[good]).expect("good");
    let broken = SourceFile {
        origin: "cm/policies/a.rego".into(),
        content: "package team.a\n\ndeny if {\n".into(),
    };
    assert!(target.publisher.publish_files(&[broken]).is_err());

    let (_, body) = get(&router, "/status").await;
    let status: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["ready"], true);
    assert_eq!(status["active"]["generation"], 1);
    assert_eq!(status["active"]["hash"], set.hash());
    assert!(
        status["active"]["loaded_at"].as_f64().unwrap_or(0.0) > 0.0,
        "{status}"
    );
    assert_eq!(status["active"]["policies"][0]["name"], "team.a");
    assert_eq!(
        status["active"]["policies"][0]["source"]["origin"],
        "cm/policies/a.rego"
    );
    assert_eq!(
        status["last_error"]["errors"][0]["location"]["origin"],
        "cm/policies/a.rego"
    );
    assert!(
        status["last_error"]["at"].as_f64().unwrap_or(0.0) > 0.0,
        "{status}"
    );
    assert_eq!(
        get(&router, "/readyz").await.0,
        200,
        "a last good set keeps the webhook ready"
    );
}

#[tokio::test]
async fn readiness_can_wait_for_the_cluster_syncs() {
    use policyctl::cluster::health::{FailureKind, Resource, SyncHealth};

    let target = Target::new();
    target
        .publisher
        .publish_files(&[SourceFile {
            origin: "a.rego".into(),
            content: rego("a", "a"),
        }])
        .expect("a set");
    let health = SyncHealth::new(target.metrics.clone(), target.status.clone());
    let router = |ready_after_syncs: bool| {
        admin::router(AppState {
            store: target.store.clone(),
            metrics: target.metrics.clone(),
            limiter: Arc::new(Semaphore::new(1)),
            settings: Settings::default(),
            draining: Arc::new(AtomicBool::new(false)),
            sources: target.status.clone(),
            limits: ConnectionLimits::default(),
            ready_after_syncs,
            reclaim: policyctl::server::memory::Reclaim::new(),
            inline: std::sync::Arc::new(policyctl::server::inline::Inline::off()),
        })
    };
    let resource = |plural: &str| Resource {
        group: String::new(),
        plural: plural.into(),
        namespace: None,
    };
    let mut namespaces = health.sync("namespaces", resource("namespaces"));
    let mut services = health.sync("inventory v1 Service", resource("services"));
    let mut old = health.sync(
        "inventory extensions/v1beta1 Ingress",
        resource("ingresses"),
    );
    old.failed(FailureKind::NotServed, &"404");
    services.failed(FailureKind::Forbidden, &"services is forbidden");

    // Off (the default): a loaded set is enough.
    assert_eq!(get(&router(false), "/readyz").await.0, 200);
    // On: not ready while a sync has not listed or fails; a kind that is not served does not count.
    let (code, body) = get(&router(true), "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("namespaces (syncing)"), "{body}");
    assert!(body.contains("inventory v1 Service (forbidden)"), "{body}");
    assert!(!body.contains("v1beta1"), "{body}");
    namespaces.listed();
    services.listed();
    assert_eq!(get(&router(true), "/readyz").await.0, 200);

    // /status shows every sync.
    let (_, status) = get(&router(false), "/status").await;
    let status: Value = serde_json::from_str(&status).expect("json");
    let states: Vec<(String, String)> = status["syncs"]
        .as_array()
        .expect("syncs")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (
                "inventory extensions/v1beta1 Ingress".to_string(),
                "not served".to_string()
            ),
            ("inventory v1 Service".to_string(), "synced".to_string()),
            ("namespaces".to_string(), "synced".to_string()),
        ]
    );
}
