//! The cluster context against the fake API server: namespaces and labelled ConfigMaps from reflectors, other
//! ConfigMaps and API paths through the time-limited, cached GET.

use std::sync::Arc;
use std::time::Duration;

use policyctl::cluster::ClusterOptions;
use policyctl::policy::{ApiReadError, ClusterContext, PathRule};
use policyctl::server::inline::Inline;
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
    let status = target.status.snapshot();
    let context = status
        .iter()
        .find(|s| s.kind == policyctl::sources::SourceKind::ClusterContext);
    assert!(context.is_some_and(|s| s.synced), "{status:?}");

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
    assert!(
        matches!(
            err,
            ApiReadError::NotAllowed {
                rule: PathRule::Secrets,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Secrets"), "{err}");
    let c = cluster.clone();
    let err = blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps/nope"))
        .await
        .expect_err("404");
    assert!(
        matches!(err, ApiReadError::Status { code: 404, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("not found") && text.contains("404"), "{text}");

    // An API server that does not answer costs an evaluation at most the time limit, and is not cached.
    api.apply("team-a", "later", &[], &[("k", "v")]);
    api.hang_gets(true);
    let c = cluster.clone();
    let err = blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps/later"))
        .await
        .expect_err("hangs");
    assert!(matches!(err, ApiReadError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    api.hang_gets(false);
    let c = cluster.clone();
    let later = blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps/later"))
        .await
        .expect("answers");
    assert_eq!(later["data"]["k"], "v");

    // In a review's attempt on an async worker, cached reads answer, but a read that would wait for the API is
    // refused without a GET, and the attempt is handed off (the evaluation thread then reads).
    let inline = Inline::new(Some(Duration::from_secs(5)), 1);
    let far = std::time::Instant::now() + Duration::from_secs(60);
    let gets = api.gets();
    let c = cluster.clone();
    let (cached, inline) = blocking(move || {
        let cached = inline.attempt(far, |_| (c.config_map("team-a", "plain"), false));
        (cached, inline)
    })
    .await;
    assert!(
        cached.answered().is_some_and(|cm| cm.is_some()),
        "a cache hit answers"
    );
    let c = cluster.clone();
    let (uncached, inline) = blocking(move || {
        let uncached = inline.attempt(far, |_| {
            (
                c.api_get("/api/v1/namespaces/team-a/configmaps/settings"),
                false,
            )
        });
        (uncached, inline)
    })
    .await;
    assert_eq!(uncached.label(), "handed_off");
    assert_eq!((inline.answered(), inline.handed_off()), (1, 1));
    assert_eq!(api.gets(), gets, "no GET during the attempt");
    let c = cluster.clone();
    blocking(move || c.api_get("/api/v1/namespaces/team-a/configmaps/settings"))
        .await
        .expect("outside an attempt the read happens");
    assert_eq!(api.gets(), gets + 1);
}

const SYNC_BOTH: &str = r"
apiVersion: config.gatekeeper.sh/v1alpha1
kind: Config
metadata:
  name: config
spec:
  sync:
    syncOnly:
    - {group: '', version: v1, kind: Namespace}
    - {group: '', version: v1, kind: ConfigMap}
";

const SYNC_NAMESPACES: &str = r"
apiVersion: config.gatekeeper.sh/v1alpha1
kind: Config
metadata:
  name: config
spec:
  sync:
    syncOnly:
    - {group: '', version: v1, kind: Namespace}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gatekeeper_config_syncs_its_kinds_into_the_inventory() {
    let api = FakeApi::start().await;
    api.apply_namespace("team-a", &[("env", "prod")]);
    api.apply("team-a", "settings", &[], &[("registry", "ghcr.io")]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("sync.yaml"), SYNC_BOTH).expect("write");
    std::fs::write(dir.path().join("a.rego"), crate::rego("a", "a")).expect("write");

    let target = Target::new();
    let config = SourcesConfig {
        cluster_context: Some(ClusterOptions::default()),
        ..crate::directory::fast(dir.path())
    };
    let running = Sources::new(config)
        .with_client(api.client("default"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    target.until_generation(1).await;
    let cluster = running.cluster().expect("cluster context");

    let inventory = |pointer: &str| {
        cluster
            .inventory()
            .and_then(|v| v.pointer(pointer).cloned())
    };
    until("the synced objects", || {
        inventory("/cluster/v1/Namespace/team-a").is_some()
            && inventory("/namespace/team-a/v1/ConfigMap/settings").is_some()
    })
    .await;
    assert_eq!(
        inventory("/namespace/team-a/v1/ConfigMap/settings/data/registry"),
        Some(serde_json::json!("ghcr.io"))
    );
    assert_eq!(
        inventory("/cluster/v1/Namespace/team-a/metadata/managedFields"),
        None
    );

    // Objects follow the watch.
    api.apply("team-a", "more", &[], &[("k", "v")]);
    until("a new object", || {
        inventory("/namespace/team-a/v1/ConfigMap/more").is_some()
    })
    .await;

    // The kinds follow the policy set: ConfigMaps are no longer synced.
    std::fs::write(dir.path().join("sync.yaml"), SYNC_NAMESPACES).expect("edit");
    target.until_generation(2).await;
    until("ConfigMaps gone from the inventory", || {
        inventory("/namespace/team-a").is_none()
            && inventory("/cluster/v1/Namespace/team-a").is_some()
    })
    .await;
}

const KNOWN_NAMESPACE: &str = r#"
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sknownnamespace
spec:
  crd:
    spec:
      names:
        kind: K8sKnownNamespace
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8sknownnamespace
        violation[{"msg": msg}] {
          ns := input.review.object.metadata.namespace
          not data.inventory.cluster["v1"]["Namespace"][ns]
          msg := sprintf("namespace %v is not synced", [ns])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sKnownNamespace
metadata:
  name: known-namespace
spec:
  match:
    kinds:
      - apiGroups: [""]
        kinds: ["Pod"]
"#;

/// A cluster whose only data is an inventory of namespaces.
#[derive(Debug)]
struct Synced(Arc<serde_json::Value>);

impl ClusterContext for Synced {
    fn inventory(&self) -> Option<Arc<serde_json::Value>> {
        Some(self.0.clone())
    }
}

fn synced(namespaces: &[&str]) -> Arc<dyn ClusterContext> {
    let by_name: serde_json::Map<String, serde_json::Value> = namespaces
        .iter()
        .map(|ns| {
            (
                ns.to_string(),
                serde_json::json!({"metadata": {"name": ns}}),
            )
        })
        .collect();
    Arc::new(Synced(Arc::new(
        serde_json::json!({"cluster": {"v1": {"Namespace": by_name}}, "namespace": {}}),
    )))
}

#[test]
fn gatekeeper_templates_see_the_inventory_of_the_cluster_context() {
    use policyctl::admission::{Operation, Review};
    use policyctl::pipeline::{self, Settings, Webhook};
    use policyctl::policy::SourceFile;

    let file = SourceFile {
        origin: "p/known.yaml".into(),
        content: KNOWN_NAMESPACE.into(),
    };
    let compiled =
        policyctl::policy::loader::compile(&[file], &policyctl::engine::LoadOptions::default());
    assert!(
        compiled.built.errors.is_empty(),
        "{:?}",
        compiled.built.errors
    );
    let set = policyctl::policy::PolicySet::new(compiled.built.policies, 1, compiled.hash);
    let pod = |ns: &str| {
        Review::for_object(
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns}}),
            None,
            Operation::Create,
        )
    };
    let denials = |cluster: Arc<dyn ClusterContext>, ns: &str| {
        let settings = Settings {
            cluster,
            ..Settings::default()
        };
        let decision = pipeline::run(&set, &pod(ns), Webhook::Validate, &settings);
        assert!(decision.errors.is_empty(), "{:?}", decision.errors);
        decision.denials
    };
    assert!(denials(synced(&["known"]), "known").is_empty());
    assert_eq!(
        denials(synced(&["known"]), "other"),
        ["[known-namespace] namespace other is not synced"]
    );
    // A new inventory snapshot is seen at once.
    assert!(denials(synced(&["known", "other"]), "other").is_empty());
}

/// Gatekeeper's unique-ingress-host check (simplified), syncing Ingresses: the current version, which the fake serves
/// (and may forbid), and an old one it does not serve.
const UNIQUE_HOST: &str = r#"
apiVersion: config.gatekeeper.sh/v1alpha1
kind: Config
metadata:
  name: config
spec:
  sync:
    syncOnly:
    - {group: networking.k8s.io, version: v1, kind: Ingress}
    - {group: networking.k8s.io, version: v1beta1, kind: Ingress}
---
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8suniqueingresshost
spec:
  crd:
    spec:
      names:
        kind: K8sUniqueIngressHost
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8suniqueingresshost
        violation[{"msg": msg}] {
          host := input.review.object.spec.rules[_].host
          other := data.inventory.namespace[_]["networking.k8s.io/v1"]["Ingress"][name]
          name != input.review.object.metadata.name
          other.spec.rules[_].host == host
          msg := sprintf("ingress host conflicts with an existing ingress <%v>", [host])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sUniqueIngressHost
metadata:
  name: unique-ingress-host
spec:
  match:
    kinds:
      - apiGroups: ["networking.k8s.io"]
        kinds: ["Ingress"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_sync_is_visible_and_fails_the_templates_that_read_it() {
    use policyctl::admission::{Operation, Review};
    use policyctl::pipeline::{self, Settings, Webhook};
    use policyctl::policy::FailurePolicy;
    use policyctl::sources::StatusReport;

    const INGRESSES: &str = "/apis/networking.k8s.io/v1/ingresses";
    const SYNC: &str = "inventory networking.k8s.io/v1 Ingress";
    let api = FakeApi::start().await;
    api.apply_ingress("team-a", "taken", "a.example.com");
    api.forbid(INGRESSES, true);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("unique.yaml"), UNIQUE_HOST).expect("write");

    let target = Target::new();
    let config = SourcesConfig {
        cluster_context: Some(ClusterOptions::default()),
        ..crate::directory::fast(dir.path())
    };
    let running = Sources::new(config)
        .with_client(api.client("default"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    let set = target.until_generation(1).await;
    let cluster = running.cluster().expect("cluster context");
    let sync_state = |name: &str| target.status.syncs().into_iter().find(|s| s.name == name);
    until("the forbidden sync in /status", || {
        sync_state(SYNC).is_some_and(|s| s.state == "forbidden")
    })
    .await;

    // /status names the problem and the RBAC rule to add.
    let report =
        serde_json::to_value(StatusReport::new(&target.store, &target.status)).expect("json");
    let shown = report["syncs"]
        .as_array()
        .and_then(|syncs| syncs.iter().find(|s| s["name"] == SYNC))
        .cloned()
        .expect("the sync is listed");
    let problem = shown["problem"].as_str().unwrap_or_default();
    assert!(problem.contains("forbidden (403)"), "{problem}");
    assert!(
        problem.contains(r#"{apiGroups: ["networking.k8s.io"], resources: ["ingresses"], verbs: ["get", "list", "watch"]}"#),
        "{problem}"
    );
    // The metrics move.
    let metrics = target.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "policyctl_cluster_sync_failing{{sync=\"{SYNC}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!(
            "policyctl_cluster_sync_errors_total{{sync=\"{SYNC}\"}} 0"
        )),
        "{metrics}"
    );
    // The old version the API server does not serve is a note, retried, and fails nothing.
    until("the unserved version noted", || {
        sync_state("inventory networking.k8s.io/v1beta1 Ingress")
            .is_some_and(|s| s.state == "not served")
    })
    .await;

    let ingress = |name: &str, host: &str| {
        Review::for_object(
            serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": name, "namespace": "team-b"}, "spec": {"rules": [{"host": host}]}}),
            None,
            Operation::Create,
        )
    };
    let settings = Settings {
        cluster: cluster.clone(),
        failure_policy: FailurePolicy::Fail,
        ..Settings::default()
    };
    let decide = |review: &Review| pipeline::run(&set, review, Webhook::Validate, &settings);

    // The template reads an inventory that cannot fill: it fails under its failure policy (deny under Fail).
    let duplicate = decide(&ingress("dup", "a.example.com"));
    assert!(!duplicate.allowed, "{:?}", duplicate.denials);
    assert!(
        duplicate
            .errors
            .iter()
            .any(|e| e.contains("data.inventory is incomplete")
                && e.contains("resources: [\"ingresses\"]")),
        "{:?}",
        duplicate.errors
    );
    // A request the constraint does not match is untouched.
    let pod = Review::for_object(
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-b"}}),
        None,
        Operation::Create,
    );
    let pod_decision = decide(&pod);
    assert!(
        pod_decision.allowed && pod_decision.errors.is_empty(),
        "{:?}",
        pod_decision.errors
    );

    // The rule is added: the sync recovers, the inventory fills, and the template checks for real.
    api.forbid(INGRESSES, false);
    until("the sync recovered", || {
        sync_state(SYNC).is_some_and(|s| s.state == "synced")
    })
    .await;
    until("the existing ingress in the inventory", || {
        cluster
            .inventory()
            .and_then(|v| {
                v.pointer("/namespace/team-a/networking.k8s.io~1v1/Ingress/taken")
                    .cloned()
            })
            .is_some()
    })
    .await;
    assert!(target.metrics.encode().contains(&format!(
        "policyctl_cluster_sync_failing{{sync=\"{SYNC}\"}} 0"
    )),);
    let duplicate = decide(&ingress("dup", "a.example.com"));
    assert!(duplicate.errors.is_empty(), "{:?}", duplicate.errors);
    assert_eq!(
        duplicate.denials,
        ["[unique-ingress-host] ingress host conflicts with an existing ingress <a.example.com>"]
    );
    let fresh = decide(&ingress("fresh", "b.example.com"));
    assert!(
        fresh.allowed && fresh.errors.is_empty(),
        "{:?}",
        fresh.errors
    );
}

const SELECTS_CUSTOM_KINDS: &str = r"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: certificates
spec:
  rules:
  - name: duration
    match:
      any:
      - resources:
          kinds: [Certificate, Widgit, cert-manager.io/v1/Issuer]
    validate:
      message: a duration is required
      pattern:
        spec:
          duration: ?*
";

/// The load warnings of the active set that name `kind`.
fn warnings_about(target: &Target, kind: &str) -> Vec<String> {
    let set = target.store.current().expect("active set");
    set.warnings()
        .iter()
        .map(ToString::to_string)
        .filter(|w| w.contains(&format!("kind \"{kind}\"")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_a_crd_of_the_cluster_defines_are_not_reported_as_unknown() {
    let api = FakeApi::start().await;
    api.apply_crd("cert-manager.io", "Certificate", "certificates");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), SELECTS_CUSTOM_KINDS).expect("write");
    let target = Target::new();
    let config = SourcesConfig {
        cluster_context: Some(ClusterOptions::default()),
        ..crate::directory::fast(dir.path())
    };
    let _running = Sources::new(config)
        .with_client(api.client("default"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    target.until_generation(1).await;
    assert!(warnings_about(&target, "Certificate").is_empty());
    let widgit = warnings_about(&target, "Widgit");
    assert_eq!(widgit.len(), 1, "{widgit:?}");
    assert!(
        widgit[0].contains("no CustomResourceDefinition of the cluster defines it"),
        "{widgit:?}"
    );
    // A kind of a custom group is reported once the cluster's CRDs are known.
    let issuer = warnings_about(&target, "Issuer");
    assert_eq!(issuer.len(), 1, "{issuer:?}");
    assert!(
        issuer[0].contains("of group \"cert-manager.io\""),
        "{issuer:?}"
    );

    // Without the right to list CRDs, the built-in kinds alone decide (and the load still works).
    api.forbid(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        true,
    );
    std::fs::write(
        dir.path().join("p.yaml"),
        SELECTS_CUSTOM_KINDS.replace("a duration is required", "a duration is needed"),
    )
    .expect("write");
    target.until_generation(2).await;
    assert_eq!(warnings_about(&target, "Certificate").len(), 1);
    assert!(warnings_about(&target, "Widgit")[0].contains("unless a CRD defines it"));
    assert!(warnings_about(&target, "Issuer").is_empty());
}
