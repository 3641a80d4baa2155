//! Audits: resources evaluated as they exist, by every engine, and reported as `wgpolicyk8s.io/v1alpha2`
//! PolicyReports (one per namespace) and a ClusterPolicyReport (cluster-scoped resources).
//!
//! Each resource is reviewed the way Gatekeeper's audit and Kyverno's background scans review it: a request with no
//! user and no operation ([`Review::existing`]), at the audit enforcement point (Gatekeeper's `audit.gatekeeper.sh`
//! scoped actions, no operation filter; Kyverno policies with `background: false` left out), through the same
//! pipeline as the webhook, explaining per rule. Every rule result becomes a report result: `pass`, `fail`, `warn`,
//! `error` or `skip` (a rule policyctl cannot run is an `error` saying so, never a pass).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

pub mod cluster;

use policyctl_engines::admission::Review;
use policyctl_engines::pipeline;
use policyctl_engines::policy::{
    Action, ClusterContext, Deadline, EnforcementPoint, EvalContext, PolicySet, RuleStatus,
};

/// The API version of the reports.
pub const REPORT_API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// Annotation that gives a result's severity (Kyverno's; any policy may set it).
pub const SEVERITY_ANNOTATION: &str = "policies.kyverno.io/severity";
/// Annotation that gives a result's category.
pub const CATEGORY_ANNOTATION: &str = "policies.kyverno.io/category";
/// The label on every report policyctl writes; only reports with it are updated or deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "policyctl";

/// One result of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportResult {
    /// The policy.
    pub policy: String,
    /// The rule (the constraint or package for engines whose policies are one rule).
    pub rule: String,
    /// `pass`, `fail`, `warn`, `error` or `skip`.
    pub result: &'static str,
    /// The rule's message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// From the policy's severity annotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// From the policy's category annotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The engine: `kyverno`, `gatekeeper`, `rego`.
    pub source: String,
    /// Whether a failure of this result would deny admission (the policy enforces it).
    #[serde(skip)]
    pub enforcing: bool,
    /// The resource.
    pub resources: Vec<Value>,
    /// When the result was made.
    pub timestamp: Value,
}

/// Counts of results by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Warnings.
    pub warn: usize,
    /// Errors.
    pub error: usize,
    /// Skipped.
    pub skip: usize,
}

impl Summary {
    fn count(&mut self, result: &str) {
        match result {
            "pass" => self.pass += 1,
            "fail" => self.fail += 1,
            "warn" => self.warn += 1,
            "error" => self.error += 1,
            _ => self.skip += 1,
        }
    }
}

/// A PolicyReport (namespaced) or ClusterPolicyReport.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    /// [`REPORT_API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// `PolicyReport` or `ClusterPolicyReport`.
    pub kind: &'static str,
    /// Name, namespace, labels.
    pub metadata: Value,
    /// Counts of the results.
    pub summary: Summary,
    /// The results, by resource then policy.
    pub results: Vec<ReportResult>,
}

/// What an audit found.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// The reports: the ClusterPolicyReport first (when any cluster-scoped resource was audited), then one
    /// PolicyReport per namespace, by name.
    pub reports: Vec<PolicyReport>,
    /// Resources audited.
    pub resources: usize,
    /// Failures of enforcing policies (what admission would deny).
    pub enforcing_failures: usize,
    /// Errors of enforcing policies (what admission would decide under the failure policy).
    pub enforcing_errors: usize,
    /// Failed results per policy: `(policy, engine)` → count (every policy that ran appears, with 0 when it found
    /// nothing).
    pub violations: BTreeMap<(String, &'static str), usize>,
}

impl Audit {
    /// The results of every report, counted by outcome.
    pub fn totals(&self) -> Summary {
        let mut total = Summary::default();
        for report in &self.reports {
            total.pass += report.summary.pass;
            total.fail += report.summary.fail;
            total.warn += report.summary.warn;
            total.error += report.summary.error;
            total.skip += report.summary.skip;
        }
        total
    }
}

/// Audit `objects` against `set`. Each resource gets its own deadline of `timeout`.
pub fn audit(
    set: &PolicySet,
    objects: &[Value],
    cluster: Arc<dyn ClusterContext>,
    timeout: Duration,
) -> Audit {
    let mut auditor = Auditor::new(cluster, timeout);
    for object in objects {
        auditor.add(set, object);
    }
    auditor.finish(usize::MAX)
}

/// An audit in progress: resources are added one at a time (a page of a list, then the next), and only their
/// results are kept.
pub struct Auditor {
    cluster: Arc<dyn ClusterContext>,
    timeout: Duration,
    timestamp: Value,
    audit: Audit,
    by_namespace: BTreeMap<String, Vec<ReportResult>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("resources", &self.audit.resources)
            .field("namespaces", &self.by_namespace.len())
            .finish()
    }
}

impl Auditor {
    /// A new audit; each resource gets its own deadline of `timeout`.
    pub fn new(cluster: Arc<dyn ClusterContext>, timeout: Duration) -> Auditor {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Auditor {
            cluster,
            timeout,
            timestamp: json!({"seconds": now.as_secs(), "nanos": now.subsec_nanos()}),
            audit: Audit::default(),
            by_namespace: BTreeMap::new(),
        }
    }

    /// Resources audited so far.
    pub fn resources(&self) -> usize {
        self.audit.resources
    }

    /// Results kept so far.
    pub fn results(&self) -> usize {
        self.by_namespace.values().map(Vec::len).sum()
    }

    /// Evaluate one resource as it exists against `set` and keep its results. Returns whether it was a resource
    /// (an object with apiVersion, kind and a name).
    pub fn add(&mut self, set: &PolicySet, object: &Value) -> bool {
        let Some(review) = Review::existing(object.clone()) else {
            return false;
        };
        let audit = &mut self.audit;
        audit.resources += 1;
        let namespace = review.namespace.clone().unwrap_or_default();
        let reference = resource_ref(object);
        let ctx = EvalContext {
            deadline: Deadline::after(self.timeout),
            cluster: self.cluster.clone(),
            explain: true,
            point: EnforcementPoint::Audit,
        };
        for run in pipeline::validate(set, &review, &ctx) {
            let info = run.policy.info();
            let outcome = &run.outcome;
            if outcome.violations.iter().any(|v| v.action == Action::Deny) {
                audit.enforcing_failures += 1;
            }
            if outcome.errors.iter().any(|e| e.action == Action::Deny) {
                audit.enforcing_errors += 1;
            }
            let enforcing = outcome.violations.iter().any(|v| v.action == Action::Deny);
            let timestamp = &self.timestamp;
            let result = |rule: &str, result: &'static str, message: String| ReportResult {
                policy: info.name.clone(),
                rule: rule.to_string(),
                result,
                message,
                severity: info.annotations.get(SEVERITY_ANNOTATION).cloned(),
                category: info.annotations.get(CATEGORY_ANNOTATION).cloned(),
                source: info.engine.to_string(),
                enforcing,
                resources: vec![reference.clone()],
                timestamp: timestamp.clone(),
            };
            let results = self.by_namespace.entry(namespace.clone()).or_default();
            let before = results.len();
            for rule in &outcome.rules {
                let (status, message) = match rule.status {
                    RuleStatus::Unsupported => (
                        "error",
                        format!("policyctl cannot evaluate this rule: {}", rule.message),
                    ),
                    other => (other.as_str(), rule.message.clone()),
                };
                results.push(result(&rule.rule, status, message));
            }
            // An error no rule reports (a time-out, a contained panic) is a result of its own.
            if outcome.rules.is_empty() {
                for e in &outcome.errors {
                    results.push(result("", "error", e.error.to_string()));
                }
            }
            let failed = results[before..]
                .iter()
                .filter(|r| r.result == "fail")
                .count();
            *audit
                .violations
                .entry((info.name.clone(), info.engine))
                .or_default() += failed;
        }
        true
    }

    /// The reports: at most `max_results` results each (a namespace with more gets several reports, named
    /// `policyctl-NS`, `policyctl-NS-2`, ...; the API server bounds an object's size).
    pub fn finish(self, max_results: usize) -> Audit {
        let Auditor {
            mut audit,
            by_namespace,
            ..
        } = self;
        let max_results = max_results.max(1);
        for (namespace, results) in by_namespace {
            if results.is_empty() {
                continue;
            }
            let mut chunk = 0;
            let mut rest = results.into_iter().peekable();
            while rest.peek().is_some() {
                chunk += 1;
                let results: Vec<ReportResult> = rest.by_ref().take(max_results).collect();
                audit.reports.push(report(&namespace, chunk, results));
            }
        }
        audit
    }
}

/// The report of `namespace` (empty: the cluster) number `chunk` (from 1).
fn report(namespace: &str, chunk: usize, results: Vec<ReportResult>) -> PolicyReport {
    let mut summary = Summary::default();
    for r in &results {
        summary.count(r.result);
    }
    let labels = json!({"app.kubernetes.io/managed-by": "policyctl"});
    let suffix = if chunk > 1 {
        format!("-{chunk}")
    } else {
        String::new()
    };
    let (kind, metadata) = if namespace.is_empty() {
        (
            "ClusterPolicyReport",
            json!({"name": format!("policyctl-cluster{suffix}"), "labels": labels}),
        )
    } else {
        (
            "PolicyReport",
            json!({"name": format!("policyctl-{namespace}{suffix}"), "namespace": namespace, "labels": labels}),
        )
    };
    PolicyReport {
        api_version: REPORT_API_VERSION,
        kind,
        metadata,
        summary,
        results,
    }
}

/// The report's reference to a resource: apiVersion, kind, name, namespace and uid when present.
fn resource_ref(object: &Value) -> Value {
    let mut reference = serde_json::Map::new();
    for (key, value) in [
        ("apiVersion", object.get("apiVersion")),
        ("kind", object.get("kind")),
        ("name", object.pointer("/metadata/name")),
        ("namespace", object.pointer("/metadata/namespace")),
        ("uid", object.pointer("/metadata/uid")),
    ] {
        if let Some(v) = value.filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
            reference.insert(key.to_string(), v.clone());
        }
    }
    Value::Object(reference)
}
