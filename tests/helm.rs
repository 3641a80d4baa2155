//! The Helm chart in `deploy/helm/policyctl`, checked without the `helm` binary (it cannot be installed from the
//! package registries this project uses; see docs/operations.md).
//!
//! What is checked, for every template:
//! - its YAML skeleton (template actions standing alone on a line removed, inline actions replaced by a scalar) is
//!   well-formed YAML whose documents are Kubernetes objects;
//! - every `.Values.x.y` it references exists in values.yaml, and every `include`d template is defined;
//! - the rendered shape keeps what deploy/ guarantees: hardened pod, probes on the admin port, webhooks excluding
//!   system namespaces and the release namespace, both certificate modes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/policyctl")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml_docs(origin: &str, text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(i, doc)| {
            let value = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| {
                panic!("{origin}, document {}: not YAML: {e}\n---\n{text}", i + 1)
            });
            serde_json::to_value(value).expect("YAML converts to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn values() -> Value {
    let mut docs = yaml_docs("values.yaml", &read(&chart().join("values.yaml")));
    assert_eq!(docs.len(), 1, "values.yaml is one document");
    docs.remove(0)
}

/// Every template file: (name, text), `_helpers.tpl` and NOTES.txt included.
fn templates() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(chart().join("templates"))
        .expect("templates/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                read(&p),
            )
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 8,
        "the chart has too few templates: {:?}",
        out.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    out
}

fn manifest_templates() -> Vec<(String, String)> {
    templates()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".yaml"))
        .collect()
}

/// The YAML skeleton of a template: comments dropped, lines holding only actions dropped, inline actions replaced by
/// the scalar `x`, blank lines dropped.
fn skeleton(text: &str) -> String {
    let comment = Regex::new(r"(?s)\{\{-?\s*/\*.*?\*/\s*-?\}\}").expect("regex");
    let action = Regex::new(r"\{\{.*?\}\}").expect("regex");
    let text = comment.replace_all(text, "");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            !(line.trim().starts_with("{{") && action.replace_all(line, "").trim().is_empty())
        })
        .map(|line| action.replace_all(line, "x").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The skeleton objects of all manifest templates.
/// (The webhook's objects: the audit templates, `audit*.yaml`, are checked by their own tests.)
fn skeleton_objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, text) in manifest_templates()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("audit"))
    {
        for doc in yaml_docs(&name, &skeleton(&text)) {
            out.push((name.clone(), doc));
        }
    }
    out
}

fn find<'a>(objects: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|(_, o)| o["kind"] == kind)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} in the chart, found {}",
        found.len()
    );
    found[0]
}

#[test]
fn chart_metadata_is_complete() {
    let docs = yaml_docs("Chart.yaml", &read(&chart().join("Chart.yaml")));
    let meta = &docs[0];
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(meta["name"], "policyctl");
    let version = meta["version"].as_str().expect("version");
    assert!(
        Regex::new(r"^\d+\.\d+\.\d+")
            .expect("regex")
            .is_match(version),
        "semver version: {version}"
    );
    let cargo = read(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let app_version = meta["appVersion"].as_str().expect("appVersion");
    assert!(
        cargo.contains(&format!("version = \"{app_version}\"")),
        "appVersion {app_version} != Cargo.toml version"
    );
}

#[test]
fn every_template_skeleton_is_yaml_of_kubernetes_objects() {
    for (name, text) in manifest_templates() {
        let docs = yaml_docs(&name, &skeleton(&text));
        assert!(!docs.is_empty(), "{name} renders no object");
        for doc in docs {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{name}: object without apiVersion/kind"
            );
            assert!(
                doc["metadata"]["name"].is_string(),
                "{name}: {} without metadata.name",
                doc["kind"]
            );
            // The labels come from `include "policyctl.labels"`, which the skeleton drops: the key must be there.
            assert!(
                doc["metadata"].get("labels").is_some(),
                "{name}: {} without labels",
                doc["kind"]
            );
        }
    }
}

#[test]
fn every_referenced_value_exists_with_defaults() {
    let values = values();
    let reference = Regex::new(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)").expect("regex");
    let mut checked = 0;
    for (name, text) in templates() {
        for capture in reference.captures_iter(&text) {
            let path = &capture[1];
            let mut node = &values;
            for key in path.trim_start_matches('.').split('.') {
                node = node
                    .get(key)
                    .unwrap_or_else(|| panic!("{name}: .Values{path} is not in values.yaml"));
            }
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} value references found: is the regex still right?"
    );
}

#[test]
fn every_included_template_is_defined() {
    let define = Regex::new(r#"\{\{-?\s*define\s+"([^"]+)""#).expect("regex");
    let include = Regex::new(r#"(?:include|template)\s+"([^"]+)""#).expect("regex");
    let all = templates();
    let defined: BTreeSet<String> = all
        .iter()
        .flat_map(|(_, t)| {
            define
                .captures_iter(t)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, text) in &all {
        for capture in include.captures_iter(text) {
            assert!(
                defined.contains(&capture[1]),
                "{name} includes undefined template {:?}",
                &capture[1]
            );
        }
    }
    // `include (print $.Template.BasePath "/x.yaml")` names a template file.
    let by_path = Regex::new(r#"\$\.Template\.BasePath\s+"/([^"]+)""#).expect("regex");
    for (name, text) in &all {
        for capture in by_path.captures_iter(text) {
            assert!(
                chart().join("templates").join(&capture[1]).is_file(),
                "{name} includes missing {}",
                &capture[1]
            );
        }
    }
}

#[test]
fn synced_resources_extend_the_read_only_cluster_role() {
    let values = values();
    assert_eq!(
        values["rbac"]["syncedResources"],
        serde_json::json!([]),
        "by default the chart grants what the kustomize base grants"
    );
    let rbac = read(&chart().join("templates/rbac.yaml"));
    // Every entry becomes a get/list/watch rule on its group and resource, nothing wider.
    let rule = Regex::new(
        r#"(?s)\{\{-? range \.Values\.rbac\.syncedResources \}\}\s*- apiGroups: \[\{\{ \.apiGroup \| quote \}\}\]\s*resources: \[\{\{ \.resource \| quote \}\}\]\s*verbs: \["get", "list", "watch"\]\s*\{\{-? end \}\}"#,
    )
    .expect("regex");
    assert!(rule.is_match(&rbac), "{rbac}");
}

#[test]
fn defaults_match_the_kustomize_install() {
    let values = values();
    assert!(
        values["replicaCount"].as_i64().unwrap_or(0) >= 2,
        "replicaCount default must be at least 2"
    );
    assert_eq!(values["webhooks"]["validating"]["failurePolicy"], "Fail");
    assert_eq!(values["webhooks"]["mutating"]["failurePolicy"], "Ignore");
    assert!(
        values["resources"]["limits"]["cpu"].is_null(),
        "no CPU limit by default"
    );
    assert!(values["resources"]["limits"]["memory"].is_string());
    let excluded: Vec<&str> = values["webhooks"]["excludedNamespaces"]
        .as_array()
        .expect("excludedNamespaces")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        excluded.contains(&"kube-system") && excluded.contains(&"kube-node-lease"),
        "{excluded:?}"
    );
    let mode = values["certificates"]["mode"]
        .as_str()
        .expect("certificates.mode");
    assert!(mode == "certManager" || mode == "secret");
    let grace = values["server"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    let drain: u64 = values["server"]["drainTimeout"]
        .as_str()
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse().ok())
        .expect("drainTimeout in seconds");
    let pre_stop = values["server"]["preStopSeconds"]
        .as_u64()
        .expect("preStopSeconds");
    assert!(
        grace > drain + pre_stop,
        "terminationGracePeriodSeconds must exceed preStop + drain"
    );
}

#[test]
fn deployment_template_is_hardened_with_admin_probes() {
    let objects = skeleton_objects();
    let deployment = find(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        pod["topologySpreadConstraints"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "topology spread"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "admin");
    }
    let admin = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("admin");
    assert_eq!(admin["containerPort"], 9090);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--admin-addr=0.0.0.0:9090"));
    assert!(args.contains(&"--policies=/etc/policyctl/policies"));
    for kind in [
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
    ] {
        find(&objects, kind);
    }
}

#[test]
fn webhooks_exclude_namespaces_and_follow_the_certificate_mode() {
    let helpers = read(&chart().join("templates/_helpers.tpl"));
    let webhooks = read(&chart().join("templates/webhooks.yaml"));
    // The shared webhook body excludes the configured namespaces and, always, the release namespace.
    assert!(
        helpers.contains("operator: NotIn"),
        "namespaceSelector NotIn"
    );
    assert!(helpers.contains("range .root.Values.webhooks.excludedNamespaces"));
    assert!(
        helpers.contains("- {{ .root.Release.Namespace }}"),
        "the release namespace is always excluded"
    );
    // caBundle in secret mode, cert-manager's CA injection otherwise.
    assert!(helpers.contains("caBundle: {{ .root.Values.certificates.secret.caBundle }}"));
    assert_eq!(
        webhooks.matches("cert-manager.io/inject-ca-from").count(),
        2,
        "both configurations get injected"
    );
    assert!(helpers.contains("fail \"certificates.mode=secret needs certificates.secret.caBundle"));

    let objects = skeleton_objects();
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let webhook = &find(&objects, kind)["webhooks"][0];
        assert_eq!(webhook["sideEffects"], "None");
        assert_eq!(
            webhook["admissionReviewVersions"],
            serde_json::json!(["v1", "v1beta1"])
        );
    }
    let certificates: Vec<&Value> = objects
        .iter()
        .filter(|(n, _)| n == "certificates.yaml")
        .map(|(_, o)| o)
        .collect();
    assert!(
        certificates
            .iter()
            .any(|c| c["kind"] == "Certificate" && c["spec"]["isCA"] == true),
        "a CA Certificate"
    );
    assert!(
        certificates
            .iter()
            .any(|c| c["kind"] == "Issuer" && c["spec"]["ca"].is_object()),
        "a CA Issuer"
    );
}

#[test]
fn service_monitor_selects_the_service() {
    // The ServiceMonitor selects Services by the pods' selector labels: the Service must carry all of them.
    let helpers = read(&chart().join("templates/_helpers.tpl"));
    let service = read(&chart().join("templates/service.yaml"));
    let monitor = read(&chart().join("templates/servicemonitor.yaml"));
    assert!(
        monitor.contains("include \"policyctl.selectorLabels\""),
        "the ServiceMonitor selects by selectorLabels"
    );
    let selector = &helpers[helpers
        .find("define \"policyctl.selectorLabels\"")
        .expect("selectorLabels")..];
    let selector = &selector[..selector.find("{{- end").expect("end of define")];
    let labels = &helpers[helpers.find("define \"policyctl.labels\"").expect("labels")..];
    let labels = &labels[..labels.find("{{- end").expect("end of define")];
    for line in selector.lines().skip(1).filter(|l| l.contains(':')) {
        let key = line.split(':').next().expect("key").trim();
        assert!(
            labels.contains(&format!("{key}:")) || service.contains(line.trim()),
            "the Service lacks selector label {key}"
        );
    }
    let objects = skeleton_objects();
    let monitor = objects
        .iter()
        .find(|(_, o)| o["kind"] == "ServiceMonitor")
        .expect("ServiceMonitor template");
    assert_eq!(monitor.1["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(monitor.1["spec"]["jobLabel"], "app.kubernetes.io/name");
}

#[test]
fn skeleton_drops_actions_and_keeps_structure() {
    let text = "a:\n  {{- if .Values.x }}\n  b: {{ .Values.y | quote }}\n  {{- end }}\n{{/* note\nmore */}}\nc: \"{{ .z }}:{{ .w }}\"\n";
    assert_eq!(skeleton(text), "a:\n  b: x\nc: \"x:x\"");
}

/// The skeleton objects of the audit templates, by kind and name suffix.
fn audit_objects() -> Vec<Value> {
    manifest_templates()
        .into_iter()
        .filter(|(name, _)| name.starts_with("audit"))
        .flat_map(|(name, text)| yaml_docs(&name, &skeleton(&text)))
        .collect()
}

#[test]
fn audit_is_off_by_default_and_runs_one_writer_when_on() {
    let values = values();
    assert_eq!(values["audit"]["enabled"], false);
    assert_eq!(values["audit"]["installCRDs"], true);
    assert!(values["audit"]["interval"].is_string());
    let audit = read(&chart().join("templates/audit.yaml"));
    assert!(
        audit.starts_with("{{- if .Values.audit.enabled }}"),
        "gated by audit.enabled"
    );
    let crds = read(&chart().join("templates/audit-crds.yaml"));
    assert!(
        crds.starts_with("{{- if and .Values.audit.enabled .Values.audit.installCRDs }}"),
        "gated by audit.enabled and audit.installCRDs"
    );
    let objects = audit_objects();
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the audit Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&args[..2], ["audit", "--cluster"]);
    assert!(args.contains(&"--admin-addr=0.0.0.0:9090"));
    assert!(audit.contains("- --interval={{ .Values.audit.interval }}"));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "admin");
    }
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    // The audit pod is never behind the webhook Service: it has its own selector labels.
    let helpers = read(&chart().join("templates/_helpers.tpl"));
    let selector = &helpers[helpers
        .find("define \"policyctl.auditSelectorLabels\"")
        .expect("audit selector")..];
    let selector = &selector[..selector.find("{{- end").expect("end")];
    assert!(selector.contains("app.kubernetes.io/component: audit"));
    // Least privilege: writes on the reports, `list` only on every audited kind.
    let rule = Regex::new(
        r#"(?s)\{\{-? range \.Values\.audit\.auditedResources \}\}\s*- apiGroups: \[\{\{ \.apiGroup \| quote \}\}\]\s*resources: \[\{\{ \.resource \| quote \}\}\]\s*verbs: \["list"\]\s*\{\{-? end \}\}"#,
    )
    .expect("regex");
    assert!(rule.is_match(&audit), "{audit}");
    let role = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole")
        .expect("role");
    assert_eq!(role["rules"][0]["apiGroups"][0], "wgpolicyk8s.io");
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["list", "create", "patch", "delete"])
    );
    assert_eq!(
        objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding")
            .count(),
        2,
        "its own role and the read-only cluster context role"
    );
}

#[test]
fn audit_crds_match_the_kustomize_component() {
    let component = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/components/audit/crds.yaml"),
    )
    .expect("crds.yaml");
    let kustomize = yaml_docs("crds.yaml", &component);
    let chart: Vec<Value> = audit_objects()
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(chart.len(), 2);
    for (ours, theirs) in chart.iter().zip(&kustomize) {
        assert_eq!(ours["metadata"]["name"], theirs["metadata"]["name"]);
        assert_eq!(
            ours["spec"], theirs["spec"],
            "the chart's CRD differs from the component's"
        );
    }
}
