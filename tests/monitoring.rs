//! The Grafana dashboard and the Prometheus alert rules in `deploy/monitoring/` may only use metrics that policyctl
//! exports: every `policyctl_*` name they reference must be in the table documented at the top of
//! `crates/server/src/metrics/mod.rs`, and that table must match what the server actually encodes. Renaming a metric without
//! updating the dashboard or the alerts fails here instead of silently emptying a panel or muting an alert.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use regex::Regex;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// The documented metrics: name -> type (`counter`, `gauge`, `histogram`).
fn documented() -> BTreeMap<String, String> {
    let row = Regex::new(r"^//! \| `(policyctl_[a-z0-9_]+)` \| (counter|gauge|histogram)\b[^|]*\|")
        .expect("regex");
    let table: BTreeMap<String, String> = read("crates/server/src/metrics/mod.rs")
        .lines()
        .filter_map(|line| {
            row.captures(line)
                .map(|c| (c[1].to_string(), c[2].to_string()))
        })
        .collect();
    assert!(
        table.len() >= 7,
        "the metrics table in crates/server/src/metrics/mod.rs was not found or shrank: {table:?}"
    );
    table
}

/// Whether `name` (as written in a query) is a documented metric or one of a documented histogram's series.
fn resolves(name: &str, table: &BTreeMap<String, String>) -> bool {
    if table.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| table.get(base).is_some_and(|kind| kind == "histogram"))
    })
}

fn referenced(exprs: &[String]) -> BTreeSet<String> {
    let metric = Regex::new(r"\bpolicyctl_[a-z0-9_]+").expect("regex");
    exprs
        .iter()
        .flat_map(|e| {
            metric
                .find_iter(e)
                .map(|m| m.as_str().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/monitoring/dashboard.json")).expect("dashboard.json is JSON")
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"]
            .as_array()
            .expect("every panel has targets")
        {
            out.push(
                target["expr"]
                    .as_str()
                    .expect("every target has an expr")
                    .to_string(),
            );
        }
    }
    out
}

fn rules() -> Vec<Value> {
    let text = read("deploy/monitoring/alerts.yaml");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("alerts.yaml is YAML");
    let doc = serde_json::to_value(yaml).expect("converts");
    assert_eq!(doc["kind"], "PrometheusRule");
    doc["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

/// Metrics after one validated request through a real policy, so every family has a sample (families without one
/// are not encoded).
fn exercised_metrics() -> policyctl::metrics::Metrics {
    use policyctl::pipeline::{self, Settings, Webhook};
    use policyctl::policy::loader;
    use policyctl::policy::SourceFile;

    let policy = SourceFile {
        origin: "probe.rego".into(),
        content: "package probe\n\ndeny contains \"no\" if input.request.object.kind == \"Pod\"\n"
            .into(),
    };
    let set = loader::compile(&[policy], &Default::default())
        .into_set(1)
        .expect("the probe policy loads");
    let review = policyctl::admission::Review::for_object(
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}),
        None,
        kube::core::admission::Operation::Create,
    );
    let decision = pipeline::run(&set, &review, Webhook::Validate, &Settings::default());
    assert!(!decision.runs.is_empty(), "the probe policy ran");
    let metrics = policyctl::metrics::Metrics::new();
    metrics.record_policy_set(1, set.policies().len(), set.hash());
    metrics.record_decision(
        Webhook::Validate,
        "CREATE",
        "Pod",
        &decision,
        std::time::Duration::from_millis(1),
    );
    // A review decided on the async worker that received it.
    metrics.inline_attempt("answered").inc();
    // A cluster sync that failed once.
    metrics.cluster_sync_errors("namespaces").inc();
    metrics.cluster_sync_failing("namespaces").set(1);
    // A cluster audit that completed.
    metrics.init_audit();
    metrics.record_audit(Some(&policyctl::metrics::AuditRecord {
        duration: std::time::Duration::from_millis(5),
        resources: 1,
        results: vec![("fail", 1)],
        violations: vec![("probe".into(), "rego", 1)],
    }));
    metrics
}

#[test]
fn documented_table_matches_the_exported_metrics() {
    let table = documented();
    let encoded = exercised_metrics().encode();
    let type_line = Regex::new(r"(?m)^# TYPE (policyctl_[a-z0-9_]+) ([a-z]+)$").expect("regex");
    let exported: BTreeMap<String, String> = type_line
        .captures_iter(&encoded)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    for (name, kind) in &table {
        // OpenMetrics names a counter family without its `_total` suffix.
        let family = if kind == "counter" {
            name.strip_suffix("_total").unwrap_or(name)
        } else {
            name
        };
        assert_eq!(
            exported.get(family),
            Some(kind),
            "documented {name} ({kind}) is not exported as such"
        );
    }
    for (family, kind) in &exported {
        let name = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.clone()
        };
        assert!(
            table.contains_key(&name),
            "{name} is exported but not documented in crates/server/src/metrics/mod.rs"
        );
    }
}

#[test]
fn dashboard_uses_only_exported_metrics() {
    let table = documented();
    let dashboard = dashboard();
    let exprs = dashboard_exprs(&dashboard);
    for name in referenced(&exprs) {
        assert!(
            resolves(&name, &table),
            "dashboard.json uses {name}, which policyctl does not export"
        );
    }
    let all = exprs.join("\n");
    for (what, needle) in [
        ("request rate", "rate(policyctl_admission_requests_total"),
        ("p50 latency", "histogram_quantile(0.5, sum by (le, webhook) (rate(policyctl_admission_request_duration_seconds_bucket"),
        ("p99 latency", "histogram_quantile(0.99, sum by (le, webhook) (rate(policyctl_admission_request_duration_seconds_bucket"),
        ("denials by policy", r#"sum by (policy) (rate(policyctl_policy_results_total{namespace=~"$namespace", result="deny"}"#),
        ("load errors", "policyctl_policy_load_errors_total"),
        ("active generation", "policyctl_policy_set_generation"),
    ] {
        assert!(all.contains(needle), "the dashboard has no {what} panel ({needle})");
    }
}

#[test]
fn dashboard_is_importable() {
    let dashboard = dashboard();
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_i64().expect("panel id")),
            "duplicate panel id {}",
            panel["id"]
        );
        assert!(
            panel["gridPos"]["w"].is_i64() && panel["gridPos"]["h"].is_i64(),
            "panel {} has no size",
            panel["id"]
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} must use the datasource variable",
            panel["id"]
        );
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        variables.contains(&"datasource") && variables.contains(&"namespace"),
        "{variables:?}"
    );
}

#[test]
fn alerts_use_only_exported_metrics_and_are_complete() {
    let table = documented();
    let rules = rules();
    let exprs: Vec<String> = rules
        .iter()
        .map(|r| {
            r["expr"]
                .as_str()
                .expect("every rule has an expr")
                .to_string()
        })
        .collect();
    for name in referenced(&exprs) {
        assert!(
            resolves(&name, &table),
            "alerts.yaml uses {name}, which policyctl does not export"
        );
    }
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().expect("alerting rules only");
        assert!(names.insert(name.to_string()), "duplicate alert {name}");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            severity == "warning" || severity == "critical",
            "{name}: severity {severity:?}"
        );
        assert!(
            rule["annotations"]["summary"].is_string(),
            "{name}: no summary"
        );
    }
    let by_metric = |metric: &str| exprs.iter().any(|e| e.contains(metric));
    assert!(
        by_metric("policyctl_admission_request_duration_seconds_bucket"),
        "no latency alert"
    );
    assert!(
        by_metric("policyctl_policy_load_errors_total"),
        "no load error alert"
    );
    assert!(
        by_metric("policyctl_tls_certificate_expiry_timestamp_seconds"),
        "no certificate expiry alert"
    );
    assert!(
        exprs.iter().any(|e| e.contains("up{job=\"policyctl\"}")),
        "no webhook-down alert"
    );
    assert!(
        by_metric("policyctl_policy_set_generation"),
        "no not-ready (no policy set) alert"
    );
}

#[test]
fn drift_is_detected() {
    let table = documented();
    assert!(resolves(
        "policyctl_admission_request_duration_seconds_bucket",
        &table
    ));
    assert!(
        !resolves("policyctl_admission_requests_total_bucket", &table),
        "a counter has no buckets"
    );
    assert!(
        !resolves("policyctl_admission_request_total", &table),
        "a misspelt name must not resolve"
    );
}
