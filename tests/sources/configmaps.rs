//! The ConfigMap source against the fake API server: list, watch, apply, delete, a broken update, and a relist
//! after the watch history expired.

use policyctl::sources::{ConfigMapSelector, Sources, SourcesConfig};

use crate::fake_api::FakeApi;
use crate::{denials, names, rego, until, Target};

const LABEL: (&str, &str) = ("policyctl.io/policies", "true");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmaps_follow_the_api_and_a_deleted_configmap_takes_its_policies() {
    let api = FakeApi::start().await;
    let a_v1 = rego("team.a", "a v1");
    api.apply(
        "policyctl",
        "policies-a",
        &[LABEL],
        &[("a.rego", &a_v1), ("README.md", "not a policy")],
    );
    // Not selected: no label, and the right label in another namespace.
    api.apply(
        "policyctl",
        "unlabelled",
        &[],
        &[("x.rego", "package broken {")],
    );
    api.apply(
        "elsewhere",
        "policies-x",
        &[LABEL],
        &[("x.rego", "package broken {")],
    );

    let target = Target::new();
    let config = SourcesConfig {
        configmaps: Some(ConfigMapSelector {
            labels: "policyctl.io/policies=true".into(),
            namespace: None,
        }),
        ..SourcesConfig::default()
    };
    let _running = Sources::new(config)
        .with_client(api.client("policyctl"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");

    let first = target.until_generation(1).await;
    assert_eq!(names(&first), ["team.a"]);
    assert_eq!(
        &*first.policies()[0].info().source.origin,
        "policyctl/policies-a/a.rego"
    );

    let b_v1 = rego("team.b", "b v1");
    api.apply("policyctl", "policies-b", &[LABEL], &[("b.rego", &b_v1)]);
    assert_eq!(
        denials(&target.until_generation(2).await),
        ["[team.a] a v1", "[team.b] b v1"]
    );

    // A broken update of one ConfigMap keeps the whole active set and names the ConfigMap key.
    api.apply(
        "policyctl",
        "policies-a",
        &[LABEL],
        &[("a.rego", "package team.a\n\ndeny contains msg if {\n")],
    );
    let errors = target.until_rejected().await;
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("policyctl/policies-a/a.rego")),
        "{errors:?}"
    );
    assert_eq!(target.generation(), 2);

    let a_v2 = rego("team.a", "a v2");
    api.apply("policyctl", "policies-a", &[LABEL], &[("a.rego", &a_v2)]);
    assert_eq!(
        denials(&target.until_generation(3).await),
        ["[team.a] a v2", "[team.b] b v1"]
    );

    api.delete("policyctl", "policies-b");
    assert_eq!(
        denials(&target.until_generation(4).await),
        ["[team.a] a v2"]
    );

    // The watch history expires while a ConfigMap is deleted and another added: the watcher relists, and the set
    // follows the list (the deleted one's policies go, the new one's come).
    let (lists_before, _) = api.requests();
    api.compact();
    api.delete("policyctl", "policies-a");
    let c_v1 = rego("team.c", "c v1");
    api.apply("policyctl", "policies-c", &[LABEL], &[("c.rego", &c_v1)]);
    let after = target.until_denials(&["[team.c] c v1"]).await;
    assert!(after.generation() >= 5, "generation {}", after.generation());
    let (lists_after, watches) = api.requests();
    assert!(
        lists_after > lists_before,
        "relisted ({lists_before} -> {lists_after} lists, {watches} watches)"
    );

    let status = target.status.snapshot();
    assert_eq!(status[0].config_maps, Some(1));
    assert!(
        status[0].description.contains("namespace policyctl"),
        "{:?}",
        status[0].description
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_and_configmaps_together_form_one_set() {
    let api = FakeApi::start().await;
    api.apply(
        "policyctl",
        "policies",
        &[LABEL],
        &[("cm.rego", &rego("from.configmap", "cm"))],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("dir.rego"), rego("from.dir", "dir")).expect("write");

    let target = Target::new();
    let config = SourcesConfig {
        configmaps: Some(ConfigMapSelector {
            labels: "policyctl.io/policies=true".into(),
            namespace: Some("policyctl".into()),
        }),
        ..crate::directory::fast(dir.path())
    };
    let _running = Sources::new(config)
        .with_client(api.client("default"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    let set = target.until_generation(1).await;
    assert_eq!(denials(&set), ["[from.configmap] cm", "[from.dir] dir"]);

    api.delete("policyctl", "policies");
    assert_eq!(
        denials(&target.until_generation(2).await),
        ["[from.dir] dir"]
    );
    until("both sources synced", || {
        target.status.snapshot().iter().all(|s| s.synced)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_policy_configmap_watch_is_counted_and_shown() {
    const SYNC: &str = "policy configmaps policyctl policyctl.io/policies=true";
    let api = FakeApi::start().await;
    api.apply(
        "policyctl",
        "policies-a",
        &[LABEL],
        &[("a.rego", &rego("team.a", "a"))],
    );
    api.forbid("/api/v1/namespaces/policyctl/configmaps", true);
    let target = Target::new();
    let config = SourcesConfig {
        configmaps: Some(ConfigMapSelector {
            labels: "policyctl.io/policies=true".into(),
            namespace: None,
        }),
        ..SourcesConfig::default()
    };
    let _running = Sources::new(config)
        .with_client(api.client("policyctl"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    let forbidden = || {
        target
            .status
            .syncs()
            .into_iter()
            .find(|s| s.name == SYNC)
            .filter(|s| s.state == "forbidden")
    };
    until("the forbidden watch in /status", || forbidden().is_some()).await;
    let problem = forbidden().and_then(|s| s.problem).unwrap_or_default();
    assert!(
        problem.contains(r#"a Role in namespace policyctl"#)
            && problem.contains(r#"resources: ["configmaps"]"#),
        "{problem}"
    );
    let metrics = target.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "policyctl_cluster_sync_failing{{sync=\"{SYNC}\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(
        target.generation(),
        0,
        "no set from a source that cannot be read"
    );

    api.forbid("/api/v1/namespaces/policyctl/configmaps", false);
    assert_eq!(names(&target.until_generation(1).await), ["team.a"]);
    assert!(target.metrics.encode().contains(&format!(
        "policyctl_cluster_sync_failing{{sync=\"{SYNC}\"}} 0"
    )));
}
