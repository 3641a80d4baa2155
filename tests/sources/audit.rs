//! `policyctl audit --cluster` against the fake API server: discovery of the kinds the policies match, paged lists,
//! evaluation with the cluster context (namespace selectors), PolicyReports written by server-side apply, stale
//! reports deleted (only policyctl's), and a 20,000-object list audited a page at a time.

use std::path::Path;
use std::sync::Arc;

use policyctl::audit::cluster::{ClusterAudit, ClusterAuditOptions, ClusterAuditor};
use policyctl::cluster::ClusterOptions;
use policyctl::policy::{ClusterContext, PolicySet};
use policyctl::sources::{Running, Sources, SourcesConfig};
use serde_json::{json, Value};

use crate::fake_api::FakeApi;
use crate::Target;

/// Kyverno: ConfigMaps in namespaces labelled `audit=on` need a `team` label; a `background: false` policy that
/// always fails (never in a report); Gatekeeper: Namespaces need an `owner` label (record only).
const POLICIES: &str = r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: configmaps-need-team
  annotations:
    policies.kyverno.io/severity: low
spec:
  validationFailureAction: Audit
  rules:
    - name: team
      match:
        any:
          - resources:
              kinds: [ConfigMap]
              namespaceSelector:
                matchLabels:
                  audit: "on"
      validate:
        message: "ConfigMaps need a team label."
        pattern:
          metadata:
            labels:
              team: "?*"
---
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: admission-only
spec:
  background: false
  validationFailureAction: Enforce
  rules:
    - name: always
      match:
        any:
          - resources:
              kinds: [ConfigMap]
      validate:
        message: "always fails"
        deny: {}
"#;

const TEMPLATE: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: auditrequiredlabels
spec:
  crd:
    spec:
      names:
        kind: AuditRequiredLabels
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package auditrequiredlabels

        violation[{"msg": msg}] {
          not input.review.object.metadata.labels.owner
          msg := sprintf("%v has no owner", [input.review.object.metadata.name])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: AuditRequiredLabels
metadata:
  name: namespaces-need-owner
spec:
  enforcementAction: dryrun
  match:
    kinds:
      - apiGroups: [""]
        kinds: ["Namespace"]
"#;

struct Setup {
    api: FakeApi,
    target: Target,
    running: Running,
    set: Arc<PolicySet>,
    _dir: tempfile::TempDir,
}

async fn setup(api: FakeApi) -> Setup {
    setup_with(
        api,
        &[("kyverno.yaml", POLICIES), ("gatekeeper.yaml", TEMPLATE)],
    )
    .await
}

async fn setup_with(api: FakeApi, files: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write");
    }
    let target = Target::new();
    let running = start(&api, dir.path(), &target).await;
    let set = target.until_generation(1).await;
    Setup {
        api,
        target,
        running,
        set,
        _dir: dir,
    }
}

async fn start(api: &FakeApi, dir: &Path, target: &Target) -> Running {
    let config = SourcesConfig {
        cluster_context: Some(ClusterOptions::default()),
        ..crate::directory::fast(dir)
    };
    Sources::new(config)
        .with_client(api.client("default"))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts")
}

impl Setup {
    fn auditor(&self, options: ClusterAuditOptions) -> ClusterAuditor {
        ClusterAuditor::new(
            self.api.client("default"),
            self.target.metrics.clone(),
            options,
        )
    }

    async fn audit(&self, options: ClusterAuditOptions) -> ClusterAudit {
        let cluster: Arc<dyn ClusterContext> = self.running.cluster().expect("cluster context");
        self.auditor(options)
            .run(self.set.clone(), cluster)
            .await
            .expect("the audit completes")
    }
}

fn results_for<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["resources"][0]["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_audit_lists_evaluates_and_writes_the_reports() {
    let api = FakeApi::start().await;
    api.apply_namespace("shop", &[("audit", "on"), ("owner", "ann")]);
    api.apply_namespace("web", &[]);
    api.apply("shop", "good", &[("team", "a")], &[]);
    api.apply("shop", "bad", &[], &[]);
    api.apply("web", "unchecked", &[], &[]);
    // Reports from an earlier run (a namespace whose results are gone) and someone else's report.
    api.apply_report(
        "PolicyReport",
        "gone",
        "policyctl-gone",
        &[("app.kubernetes.io/managed-by", "policyctl")],
    );
    api.apply_report("PolicyReport", "shop", "kyverno-pol", &[]);
    api.apply_report(
        "ClusterPolicyReport",
        "",
        "policyctl-cluster-2",
        &[("app.kubernetes.io/managed-by", "policyctl")],
    );
    let setup = setup(api).await;
    let api = &setup.api;

    let options = ClusterAuditOptions {
        page_size: 2,
        ..ClusterAuditOptions::default()
    };
    let done = setup.audit(options).await;

    // Discovery: only the kinds the policies match, never the reports' own kinds.
    assert_eq!(done.kinds, ["v1 ConfigMap", "v1 Namespace"], "{done:?}");
    assert_eq!(done.audit.resources, 5, "3 ConfigMaps and 2 Namespaces");
    // Paged: every ConfigMap and Namespace list asked for 2 objects; 3 ConfigMaps took 2 pages.
    let audit_lists: Vec<_> = api
        .lists()
        .into_iter()
        .filter(|l| l.path == "/api/v1/configmaps" && l.selector.is_none())
        .collect();
    assert!(audit_lists.iter().all(|l| l.limit == Some(2)));
    assert_eq!(
        audit_lists.iter().map(|l| l.returned).collect::<Vec<_>>(),
        [2, 1]
    );
    assert!(done.peak_objects <= 2);

    // The namespaced report: the cluster context's namespace labels chose which ConfigMaps the policy checks.
    let reports = api.reports("PolicyReport");
    let shop = &reports[&("shop".to_string(), "policyctl-shop".to_string())];
    assert_eq!(shop["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(
        shop["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "policyctl"
    );
    assert_eq!(
        shop["summary"],
        json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let bad = results_for(shop, "bad");
    assert_eq!(
        bad.len(),
        1,
        "background: false policies are left out: {shop}"
    );
    assert_eq!(bad[0]["policy"], "configmaps-need-team");
    assert_eq!(bad[0]["result"], "fail");
    assert_eq!(bad[0]["severity"], "low");
    assert_eq!(bad[0]["resources"][0]["kind"], "ConfigMap");
    assert_eq!(bad[0]["resources"][0]["apiVersion"], "v1");
    assert!(
        !reports.contains_key(&("web".to_string(), "policyctl-web".to_string())),
        "no results in web (not selected): {reports:?}"
    );
    // Stale: ours deleted, someone else's kept.
    assert!(!reports.contains_key(&("gone".to_string(), "policyctl-gone".to_string())));
    assert!(reports.contains_key(&("shop".to_string(), "kyverno-pol".to_string())));

    // The cluster-scoped report: the Gatekeeper constraint on Namespaces.
    let cluster_reports = api.reports("ClusterPolicyReport");
    assert_eq!(
        cluster_reports
            .keys()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>(),
        ["policyctl-cluster"],
        "the stale split report is gone"
    );
    let cluster = &cluster_reports[&(String::new(), "policyctl-cluster".to_string())];
    let web = results_for(cluster, "web");
    assert_eq!(web[0]["result"], "fail", "{cluster}");
    assert_eq!(web[0]["policy"], "namespaces-need-owner");
    assert_eq!(results_for(cluster, "shop")[0]["result"], "pass");

    assert_eq!((done.written, done.deleted), (2, 2));
    assert!(api
        .applies()
        .iter()
        .all(|(_, _, _, manager)| manager == "policyctl"));

    // Metrics of the last audit.
    let metrics = setup.target.metrics.encode();
    for line in [
        "policyctl_audit_resources 5",
        r#"policyctl_audit_violations{policy="configmaps-need-team",engine="kyverno"} 1"#,
        r#"policyctl_audit_violations{policy="namespaces-need-owner",engine="gatekeeper"} 1"#,
        r#"policyctl_audit_results{result="fail"} 2"#,
        r#"policyctl_audit_runs_total{outcome="complete"} 1"#,
        r#"policyctl_audit_errors_total{stage="list"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    // Fixed: the next run updates the report in place, and a report that has no more results is deleted.
    api.apply("shop", "bad", &[("team", "b")], &[]);
    api.delete("shop", "good");
    api.delete("shop", "bad");
    api.apply("shop", "fixed", &[("team", "c")], &[]);
    let again = setup.audit(ClusterAuditOptions::default()).await;
    let reports = api.reports("PolicyReport");
    let shop = &reports[&("shop".to_string(), "policyctl-shop".to_string())];
    assert_eq!(
        shop["summary"],
        json!({"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0})
    );
    assert_eq!(again.deleted, 0);
    let metrics = setup.target.metrics.encode();
    assert!(
        metrics.contains(
            r#"policyctl_audit_violations{policy="configmaps-need-team",engine="kyverno"} 0"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_split_and_stale_splits_removed() {
    let api = FakeApi::start().await;
    api.apply_namespace("shop", &[("audit", "on"), ("owner", "ann")]);
    for name in ["a", "b", "c"] {
        api.apply("shop", name, &[], &[]);
    }
    let setup = setup(api).await;
    let api = &setup.api;
    let options = ClusterAuditOptions {
        max_results_per_report: 2,
        ..ClusterAuditOptions::default()
    };
    setup.audit(options.clone()).await;
    let names = |api: &FakeApi| -> Vec<String> {
        api.reports("PolicyReport")
            .into_keys()
            .map(|(_, name)| name)
            .collect()
    };
    assert_eq!(names(api), ["policyctl-shop", "policyctl-shop-2"]);
    let reports = api.reports("PolicyReport");
    let second = &reports[&("shop".to_string(), "policyctl-shop-2".to_string())];
    assert_eq!(
        second["summary"]["fail"], 1,
        "each split has its own summary"
    );

    api.delete("shop", "c");
    let done = setup.audit(options).await;
    assert_eq!(names(api), ["policyctl-shop"]);
    assert_eq!(done.deleted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_a_forbidden_kind_is_skipped() {
    let api = FakeApi::start().await;
    api.apply_namespace("shop", &[("audit", "on")]);
    api.apply("shop", "bad", &[], &[]);
    api.forbid("/api/v1/namespaces", false);
    let setup = setup(api).await;
    let api = &setup.api;
    // Forbid the Namespace list only after the cluster context has listed them.
    api.forbid("/api/v1/namespaces", true);
    let done = setup
        .audit(ClusterAuditOptions {
            dry_run: true,
            ..ClusterAuditOptions::default()
        })
        .await;
    assert_eq!(done.kinds, ["v1 ConfigMap"]);
    assert!(
        done.skipped
            .iter()
            .any(|(kind, why)| kind == "v1 Namespace" && why.contains("forbidden")),
        "{:?}",
        done.skipped
    );
    assert_eq!(done.audit.reports.len(), 1, "the report is produced");
    assert!(api.applies().is_empty() && api.deletes().is_empty());
    let metrics = setup.target.metrics.encode();
    assert!(
        metrics.contains(r#"policyctl_audit_errors_total{stage="list"} 1"#),
        "{metrics}"
    );
}

/// 20,000 ConfigMaps, listed 500 at a time: 40 pages, never more than a page held, and one result per checked
/// object kept (the 20,000 are in a namespace no policy selects, so they are scanned and leave no results).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_list_is_audited_a_page_at_a_time() {
    let api = FakeApi::start().await;
    api.apply_namespace("bulk", &[("owner", "ops")]);
    api.apply_namespace("shop", &[("audit", "on"), ("owner", "ann")]);
    api.apply_many("bulk", "cm", 20_000, &[]);
    api.apply("shop", "bad", &[], &[]);
    let setup = setup(api).await;
    let api = &setup.api;
    let done = setup
        .audit(ClusterAuditOptions {
            page_size: 500,
            ..ClusterAuditOptions::default()
        })
        .await;
    assert_eq!(
        done.audit.resources, 20_003,
        "every ConfigMap and Namespace"
    );
    let pages: Vec<_> = api
        .lists()
        .into_iter()
        .filter(|l| l.path == "/api/v1/configmaps" && l.selector.is_none())
        .collect();
    assert_eq!(pages.len(), 41, "20,001 ConfigMaps in pages of 500");
    assert!(pages
        .iter()
        .all(|p| p.limit == Some(500) && p.returned <= 500));
    assert!(done.peak_objects <= 500, "{}", done.peak_objects);
    // Results: the one ConfigMap in shop and the two Namespaces.
    assert_eq!(done.audit.totals().fail, 1);
    assert_eq!(done.audit.totals().pass, 2);
}

/// The command: `policyctl audit --cluster` with a kubeconfig naming the fake API server, once, then every
/// `--interval` with the admin listener serving the audit metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_audits_the_cluster_once_or_every_interval() {
    let api = FakeApi::start().await;
    api.apply_namespace("shop", &[("audit", "on"), ("owner", "ann")]);
    api.apply("shop", "bad", &[], &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::write(policies.join("kyverno.yaml"), POLICIES).expect("write");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: me\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: me\n    namespace: default\ncurrent-context: fake\n",
            api.url()
        ),
    )
    .expect("kubeconfig");
    let command = || {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_policyctl"));
        command
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .arg("audit")
            .arg("--cluster")
            .arg("--policies")
            .arg(&policies)
            .kill_on_drop(true);
        command
    };
    let output = command()
        .args(["-o", "json", "--page-size", "1"])
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let list: Value = serde_json::from_slice(&output.stdout).expect("a JSON List");
    assert_eq!(list["items"][0]["metadata"]["name"], "policyctl-shop");
    assert!(stderr.contains("1 reports written"), "{stderr}");
    assert_eq!(api.reports("PolicyReport").len(), 1);

    // Every interval, with /metrics on the admin listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = command()
        .args(["--interval", "1h", "--admin-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut metrics = String::new();
    // A failure limit (20 s), not a timing claim.
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (status, text) = crate::support::admin_get(addr, "/metrics").await;
            if status == 200 && text.contains("policyctl_audit_runs_total{outcome=\"complete\"} 1")
            {
                metrics = text;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
    assert!(
        metrics.contains(
            r#"policyctl_audit_violations{policy="configmaps-need-team",engine="kyverno"} 1"#
        ),
        "{metrics}"
    );
}

/// A policy that may match any kind (plain Rego) makes the audit list every listable kind the API server serves,
/// except the reports' own; a group that cannot be discovered is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_matching_any_kind_audits_every_listable_kind() {
    let api = FakeApi::start().await;
    api.apply_namespace("shop", &[]);
    api.apply("shop", "settings", &[], &[]);
    api.apply_ingress("shop", "front", "shop.example.com");
    let rego = "package anything\n\ndeny contains \"no\" if input.request.object.metadata.name == \"front\"\n";
    let setup = setup_with(api, &[("anything.rego", rego)]).await;
    let done = setup.audit(ClusterAuditOptions::default()).await;
    assert_eq!(
        done.kinds,
        [
            "v1 ConfigMap",
            "v1 Namespace",
            "networking.k8s.io/v1 Ingress"
        ],
        "{done:?}"
    );
    assert_eq!(done.audit.resources, 3);
    assert_eq!(done.audit.totals().fail, 1, "the Ingress");
    // An API group whose discovery fails (an aggregated API that is down) is skipped, not a failed run.
    assert_eq!(
        done.skipped
            .iter()
            .map(|(group_version, _)| group_version.as_str())
            .collect::<Vec<_>>(),
        ["metrics.k8s.io/v1beta1"]
    );
}

/// A CEL policy's resource rules name what the audit lists: a ValidatingAdmissionPolicy on `ingresses` lists
/// Ingresses only, not every kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cel_policy_audits_the_resources_of_its_rules() {
    let api = FakeApi::start().await;
    api.apply_namespace("shop", &[]);
    api.apply("shop", "settings", &[], &[]);
    api.apply_ingress("shop", "front", "shop.example.com");
    let vap = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: ingress-names}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [networking.k8s.io], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [ingresses]}
  validations:
  - expression: "object.metadata.name != 'front'"
"#;
    let setup = setup_with(api, &[("vap.yaml", vap)]).await;
    let done = setup.audit(ClusterAuditOptions::default()).await;
    assert_eq!(done.kinds, ["networking.k8s.io/v1 Ingress"], "{done:?}");
    assert_eq!(done.audit.resources, 1);
}
