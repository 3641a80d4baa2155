//! The cluster context against the fake API server: namespaces and labelled ConfigMaps from reflectors, other
//! ConfigMaps and API paths through the time-limited, cached GET.

use std::sync::Arc;
use std::time::Duration;

use policyctl::cluster::ClusterOptions;
use policyctl::policy::ClusterContext;
use policyctl::sources::{Sources, SourcesConfig};

use crate::fake_api::FakeApi;
use crate::{until, Target};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_context_reads_namespaces_and_configmaps_from_the_api() {
    let api = FakeApi::start().await;
    api.apply_namespace("team-a", &[("env", "prod")]);
    api.apply(
        "team-a",
        "settings",
        &[("cache.kyverno.io/enabled", "true")],
        &[("registry", "ghcr.io")],
    );
    api.apply("team-a", "plain", &[], &[("limit", "3")]);

    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::new();
    let config = SourcesConfig {
        cluster_context: Some(ClusterOptions {
            api_ttl: Duration::from_secs(60),
            api_timeout: Duration::from_millis(300),
            ..ClusterOptions::default()
        }),
        ..crate::directory::fast(dir.path())
    };
    let running = Sources::new(config)
        .with_client(api.client("default"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    target.until_generation(1).await;
    let cluster: Arc<dyn ClusterContext> = running.cluster().expect("cluster context");

    // From the reflectors: no GET.
    let namespace = cluster.namespace("team-a").expect("namespace");
    assert_eq!(namespace["metadata"]["labels"]["env"], "prod");
    assert!(
        namespace["metadata"].get("managedFields").is_none(),
        "managed fields are dropped: {namespace}"
    );
    let settings = cluster
        .config_map("team-a", "settings")
        .expect("cached ConfigMap");
    assert_eq!(settings["data"]["registry"], "ghcr.io");
    assert_eq!(api.gets(), 0);

    // Not labelled for the cache: one GET, then the cache.
    let c = cluster.clone();
    let plain = blocking(move || c.config_map("team-a", "plain"))
        .await
        .expect("ConfigMap by GET");
    assert_eq!(plain["data"]["limit"], "3");
    let c = cluster.clone();
    assert!(blocking(move || c.config_map("team-a", "plain"))
        .await
        .is_some());
    assert_eq!(api.gets(), 1, "the second lookup is cached");
    let c = cluster.clone();
    assert!(blocking(move || c.config_map("team-a", "missing"))
        .await
        .is_none());

    // A namespace created later is found (by the reflector, or by GET if the reflector lags).
    api.apply_namespace("team-b", &[("env", "dev")]);
    let c = cluster.clone();
    until("the new namespace", move || c.namespace("team-b").is_some()).await;

    // API reads: collections work; Secrets and non-API paths do not.
    let c = cluster.clone();
    let list = blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps"))
        .await
        .expect("list");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    let c = cluster.clone();
    let err = blocking(move || c.api_get("/api/v1/namespaces/team-a/secrets/token"))
        .await
        .expect_err("secrets");
    assert!(err.contains("Secrets"), "{err}");
    let c = cluster.clone();
    let err = blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps/nope"))
        .await
        .expect_err("404");
    assert!(err.contains("not found") && err.contains("404"), "{err}");

    // An API server that does not answer costs an evaluation at most the time limit, and is not cached.
    api.apply("team-a", "later", &[], &[("k", "v")]);
    api.hang_gets(true);
    let c = cluster.clone();
    let err = blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps/later"))
        .await
        .expect_err("hangs");
    assert!(err.contains("did not answer"), "{err}");
    api.hang_gets(false);
    let c = cluster.clone();
    let later = blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps/later"))
        .await
        .expect("answers");
    assert_eq!(later["data"]["k"], "v");
}
