//! Cluster audits (`policyctl audit --cluster`): the resources of every kind the policy set can match, listed from
//! the API server page by page, evaluated as they exist, and the PolicyReports written back.
//!
//! - Kinds: the union of the scopes of the set's validating policies (the same scopes the webhook's selection index
//!   is built from), resolved by discovery to the preferred version of each group; a wildcard scope (a policy that
//!   may match any kind, like a plain Rego policy) means every listable kind, as Gatekeeper's audit does. The
//!   reports' own kinds are never audited. A group whose discovery fails (an aggregated API that is down) is
//!   skipped with a warning, not a failed run.
//! - Bounded memory and API load: each kind is listed in pages of `page_size` objects (`limit` and `continue`); a
//!   page is evaluated and dropped before the next is asked for, so the audit holds one page of objects and the
//!   results. Pages are fetched one after the other, never in parallel.
//! - A kind the API server refuses to list (403: RBAC does not grant it; 404/405: not served) is skipped with a
//!   warning and counted (`policyctl_audit_errors_total{stage="list"}`); any other list failure fails the run, and
//!   the previous reports stay as they were (a partial run would drop results it did not see).
//! - Reports are written with server-side apply (field manager `policyctl`, forced), labelled
//!   `app.kubernetes.io/managed-by: policyctl`; reports with that label the run did not produce (a namespace whose
//!   resources no longer have results, a report split that got shorter) are deleted. Reports without the label are
//!   never touched.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, ObjectList, Patch, PatchParams,
};
use kube::core::GroupVersion;
use kube::discovery::{self, verbs};
use kube::{Api, Client};
use serde_json::Value;

use policyctl_engines::policy::{ClusterContext, PolicySet};
use policyctl_server::metrics::{AuditRecord, Metrics};

use crate::{Audit, Auditor, MANAGED_BY, MANAGED_BY_LABEL};

/// The group of the reports.
pub const REPORT_GROUP: &str = "wgpolicyk8s.io";

/// How a cluster audit runs.
#[derive(Debug, Clone)]
pub struct ClusterAuditOptions {
    /// Objects per list page (`limit`).
    pub page_size: u32,
    /// Time limit of one resource's evaluation.
    pub timeout: Duration,
    /// Results per report at most; a namespace with more gets several reports.
    pub max_results_per_report: usize,
    /// Evaluate and report, but write nothing.
    pub dry_run: bool,
}

impl Default for ClusterAuditOptions {
    fn default() -> Self {
        ClusterAuditOptions {
            page_size: 500,
            timeout: Duration::from_secs(10),
            max_results_per_report: 1000,
            dry_run: false,
        }
    }
}

/// Why a cluster audit failed. The reports of the previous run stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum ClusterAuditError {
    /// Discovery failed.
    #[error("discovering the API server's resources failed: {0}")]
    Discovery(#[source] kube::Error),
    /// A kind could not be listed (not a refusal: a time-out, a server error, an expired continue token).
    #[error("listing {kind} failed: {source}")]
    List {
        /// `group/version Kind`.
        kind: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The evaluation task ended abnormally.
    #[error("the evaluation task failed: {0}")]
    Evaluate(String),
    /// Some reports could not be written (stale reports were then left alone).
    #[error("{failed} of {total} reports could not be written; first: {first}")]
    Write {
        /// Reports that failed.
        failed: usize,
        /// Reports produced.
        total: usize,
        /// The first failure.
        first: String,
    },
    /// Stale reports could not be listed or deleted.
    #[error("cleaning up stale reports failed: {0}")]
    Cleanup(String),
}

/// What a complete run did.
#[derive(Debug, Clone, Default)]
pub struct ClusterAudit {
    /// The audit: reports, counts, violations.
    pub audit: Audit,
    /// The kinds listed, as `group/version Kind`.
    pub kinds: Vec<String>,
    /// Kinds skipped because the API server refused to list them, with why.
    pub skipped: Vec<(String, String)>,
    /// List pages fetched.
    pub pages: usize,
    /// The most objects held at once (the largest page).
    pub peak_objects: usize,
    /// Reports created or updated.
    pub written: usize,
    /// Stale reports deleted.
    pub deleted: usize,
    /// How long it took.
    pub duration: Duration,
}

/// Runs cluster audits with one client.
#[derive(Clone)]
pub struct ClusterAuditor {
    client: Client,
    metrics: Arc<Metrics>,
    options: ClusterAuditOptions,
}

impl std::fmt::Debug for ClusterAuditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAuditor")
            .field("options", &self.options)
            .finish()
    }
}

/// The kinds and resources a set's validating policies may match.
#[derive(Debug, Default)]
struct Wanted {
    exact: BTreeSet<(String, String)>,
    groups: BTreeSet<String>,
    kinds: BTreeSet<String>,
    /// Resource entries: (group, plural), `None` for a wildcard.
    resources: BTreeSet<(Option<String>, Option<String>)>,
    any: bool,
}

impl Wanted {
    fn of(set: &PolicySet) -> Wanted {
        let mut wanted = Wanted::default();
        for policy in set.policies().iter().filter(|p| p.validates()) {
            for entry in policy.scope().entries {
                if let Some(name) = entry.resource {
                    // Existing objects have no subresource; keep the entry anyway (a superset is harmless).
                    wanted.resources.insert((entry.group, name.resource));
                    continue;
                }
                match (entry.group, entry.kind) {
                    (Some(group), Some(kind)) => {
                        wanted.exact.insert((group, kind));
                    }
                    (Some(group), None) => {
                        wanted.groups.insert(group);
                    }
                    (None, Some(kind)) => {
                        wanted.kinds.insert(kind);
                    }
                    (None, None) => wanted.any = true,
                }
            }
        }
        wanted
    }

    /// Whether a listable resource may be wanted: by its kind, or by its plural (the API server's, or the one a
    /// review of an existing object derives from its kind).
    fn matches(&self, group: &str, kind: &str, plural: &str) -> bool {
        let derived = policyctl_engines::admission::plural(kind);
        let by_resource = self.resources.iter().any(|(g, r)| {
            g.as_deref().is_none_or(|g| g == group)
                && r.as_deref().is_none_or(|r| r == plural || r == derived)
        });
        self.any
            || by_resource
            || self.groups.contains(group)
            || self.kinds.contains(kind)
            || self.exact.contains(&(group.to_string(), kind.to_string()))
    }

    /// The groups discovery must look at; `None` for all of them.
    fn groups(&self) -> Option<BTreeSet<String>> {
        if self.any || !self.kinds.is_empty() || self.resources.iter().any(|(g, _)| g.is_none()) {
            return None;
        }
        let mut groups = self.groups.clone();
        groups.extend(self.exact.iter().map(|(group, _)| group.clone()));
        groups.extend(self.resources.iter().filter_map(|(group, _)| group.clone()));
        Some(groups)
    }

    fn is_empty(&self) -> bool {
        !self.any
            && self.exact.is_empty()
            && self.groups.is_empty()
            && self.kinds.is_empty()
            && self.resources.is_empty()
    }
}

fn describe(resource: &ApiResource) -> String {
    format!("{} {}", resource.api_version, resource.kind)
}

/// Whether a list failure is the API server refusing (RBAC, not served) rather than failing.
fn refused(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if matches!(status.code, 403..=405))
}

/// The report resources.
fn report_resource(kind: &str) -> ApiResource {
    let plural = if kind == "PolicyReport" {
        "policyreports"
    } else {
        "clusterpolicyreports"
    };
    ApiResource {
        group: REPORT_GROUP.into(),
        version: "v1alpha2".into(),
        api_version: format!("{REPORT_GROUP}/v1alpha2"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

impl ClusterAuditor {
    /// An auditor on `client`, recording into `metrics`.
    pub fn new(client: Client, metrics: Arc<Metrics>, options: ClusterAuditOptions) -> Self {
        metrics.init_audit();
        ClusterAuditor {
            client,
            metrics,
            options,
        }
    }

    /// One audit of the cluster against `set`, with `cluster` as the policies' cluster context; records the
    /// metrics of the run.
    pub async fn run(
        &self,
        set: Arc<PolicySet>,
        cluster: Arc<dyn ClusterContext>,
    ) -> Result<ClusterAudit, ClusterAuditError> {
        let started = Instant::now();
        let result = self.run_inner(set, cluster, started).await;
        match &result {
            Ok(done) => {
                let totals = done.audit.totals();
                self.metrics.record_audit(Some(&AuditRecord {
                    duration: done.duration,
                    resources: done.audit.resources,
                    results: vec![
                        ("pass", totals.pass),
                        ("fail", totals.fail),
                        ("warn", totals.warn),
                        ("error", totals.error),
                        ("skip", totals.skip),
                    ],
                    violations: done
                        .audit
                        .violations
                        .iter()
                        .map(|((policy, engine), n)| (policy.clone(), *engine, *n))
                        .collect(),
                }));
                tracing::info!(
                    resources = done.audit.resources,
                    kinds = done.kinds.len(),
                    skipped = done.skipped.len(),
                    pages = done.pages,
                    fail = totals.fail,
                    reports = done.audit.reports.len(),
                    written = done.written,
                    deleted = done.deleted,
                    duration = ?done.duration,
                    "cluster audit complete"
                );
            }
            Err(err) => {
                self.metrics.record_audit(None);
                tracing::error!(error = %err, "cluster audit failed; the previous reports stay");
            }
        }
        result
    }

    async fn run_inner(
        &self,
        set: Arc<PolicySet>,
        cluster: Arc<dyn ClusterContext>,
        started: Instant,
    ) -> Result<ClusterAudit, ClusterAuditError> {
        let mut done = ClusterAudit::default();
        let resources = self
            .discover(&set, &mut done.skipped)
            .await
            .inspect_err(|_| {
                self.metrics.audit_error("discovery");
            })?;
        let mut auditor = Some(Auditor::new(cluster, self.options.timeout));
        for resource in resources {
            let kind = describe(&resource);
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let mut params = ListParams::default().limit(self.options.page_size.max(1));
            let mut first = true;
            loop {
                let page: ObjectList<DynamicObject> = match api.list(&params).await {
                    Ok(page) => page,
                    Err(err) if first && refused(&err) => {
                        self.metrics.audit_error("list");
                        tracing::warn!(kind = %kind, error = %err, "cannot list a kind the policies may match; skipped");
                        done.skipped.push((kind.clone(), err.to_string()));
                        break;
                    }
                    Err(source) => {
                        self.metrics.audit_error("list");
                        return Err(ClusterAuditError::List { kind, source });
                    }
                };
                if first {
                    done.kinds.push(kind.clone());
                    first = false;
                }
                done.pages += 1;
                done.peak_objects = done.peak_objects.max(page.items.len());
                let token = page.metadata.continue_.clone().filter(|c| !c.is_empty());
                // Evaluate the page on a blocking thread (evaluations may wait for API reads), then drop it.
                let set = set.clone();
                let resource = resource.clone();
                let mut taken = auditor
                    .take()
                    .ok_or_else(|| ClusterAuditError::Evaluate("no auditor".into()))?;
                let evaluated = tokio::task::spawn_blocking(move || {
                    for object in page.items {
                        let value = as_resource(object, &resource);
                        taken.add(&set, &value);
                    }
                    taken
                })
                .await
                .map_err(|err| ClusterAuditError::Evaluate(err.to_string()))?;
                auditor = Some(evaluated);
                match token {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        let auditor = auditor.ok_or_else(|| ClusterAuditError::Evaluate("no auditor".into()))?;
        done.audit = auditor.finish(self.options.max_results_per_report);
        if !self.options.dry_run {
            done.written = self.write(&done.audit).await?;
            done.deleted = self.clean_up(&done.audit).await?;
        }
        done.duration = started.elapsed();
        Ok(done)
    }

    /// The listable resources of the kinds the set's validating policies may match, one per group and kind at the
    /// group's preferred version. A group whose discovery fails (an aggregated API that is down) is skipped with a
    /// warning (into `skipped`); failing to list the groups themselves fails the run.
    async fn discover(
        &self,
        set: &PolicySet,
        skipped: &mut Vec<(String, String)>,
    ) -> Result<Vec<ApiResource>, ClusterAuditError> {
        let wanted = Wanted::of(set);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let only = wanted.groups();
        let wants_group = |group: &str| only.as_ref().is_none_or(|only| only.contains(group));
        let mut versions: Vec<String> = Vec::new();
        if wants_group("") {
            let core = self
                .client
                .list_core_api_versions()
                .await
                .map_err(ClusterAuditError::Discovery)?;
            versions.extend(core.versions.first().cloned());
        }
        let groups = self
            .client
            .list_api_groups()
            .await
            .map_err(ClusterAuditError::Discovery)?;
        for group in groups.groups {
            if group.name == REPORT_GROUP || !wants_group(&group.name) {
                continue;
            }
            let preferred = group
                .preferred_version
                .map(|v| v.group_version)
                .or_else(|| group.versions.first().map(|v| v.group_version.clone()));
            versions.extend(preferred);
        }
        let mut found: BTreeMap<(String, String), ApiResource> = BTreeMap::new();
        for version in versions {
            let resources = match version.parse::<GroupVersion>() {
                Ok(gv) => discovery::pinned_group(&self.client, &gv)
                    .await
                    .map(|group| group.recommended_resources()),
                Err(err) => Err(kube::Error::Discovery(
                    kube::error::DiscoveryError::InvalidGroupVersion(err.to_string()),
                )),
            };
            let resources = match resources {
                Ok(resources) => resources,
                Err(err) => {
                    self.metrics.audit_error("discovery");
                    tracing::warn!(group_version = %version, error = %err, "cannot discover an API group's resources; skipped");
                    skipped.push((version, err.to_string()));
                    continue;
                }
            };
            for (resource, capabilities) in resources {
                if capabilities.supports_operation(verbs::LIST)
                    && wanted.matches(&resource.group, &resource.kind, &resource.plural)
                {
                    found
                        .entry((resource.group.clone(), resource.kind.clone()))
                        .or_insert(resource);
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// Create or update every report (server-side apply); returns how many were written.
    async fn write(&self, audit: &Audit) -> Result<usize, ClusterAuditError> {
        let params = PatchParams::apply(MANAGED_BY).force();
        let mut written = 0;
        let mut failures = Vec::new();
        for report in &audit.reports {
            let name = report.metadata["name"].as_str().unwrap_or_default();
            let namespace = report.metadata["namespace"].as_str();
            let resource = report_resource(report.kind);
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                None => Api::all_with(self.client.clone(), &resource),
            };
            let body = match serde_json::to_value(report) {
                Ok(body) => body,
                Err(err) => {
                    failures.push(format!("{name}: {err}"));
                    continue;
                }
            };
            match api.patch(name, &params, &Patch::Apply(&body)).await {
                Ok(_) => written += 1,
                Err(err) => {
                    self.metrics.audit_error("write");
                    let hint = if matches!(&err, kube::Error::Api(s) if s.code == 404) {
                        " (is the PolicyReport CRD, wgpolicyk8s.io/v1alpha2, installed?)"
                    } else {
                        ""
                    };
                    let place = namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
                    failures.push(format!("{} {place}{name}: {err}{hint}", report.kind));
                }
            }
        }
        if let Some(first) = failures.first() {
            return Err(ClusterAuditError::Write {
                failed: failures.len(),
                total: audit.reports.len(),
                first: first.clone(),
            });
        }
        Ok(written)
    }

    /// Delete the reports labelled as policyctl's that this run did not produce; returns how many.
    async fn clean_up(&self, audit: &Audit) -> Result<usize, ClusterAuditError> {
        let produced: HashSet<(&str, Option<&str>, &str)> = audit
            .reports
            .iter()
            .map(|r| {
                (
                    r.kind,
                    r.metadata["namespace"].as_str(),
                    r.metadata["name"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
        let mut deleted = 0;
        for kind in ["PolicyReport", "ClusterPolicyReport"] {
            let resource = report_resource(kind);
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let mut params = ListParams::default()
                .labels(&selector)
                .limit(self.options.page_size.max(1));
            // Names only, and only of the stale ones: never the reports themselves.
            let mut stale: Vec<(Option<String>, String)> = Vec::new();
            loop {
                let page = api.list_metadata(&params).await.map_err(|err| {
                    self.metrics.audit_error("cleanup");
                    ClusterAuditError::Cleanup(format!("listing {kind}s: {err}"))
                })?;
                for item in &page.items {
                    let name = item.metadata.name.clone().unwrap_or_default();
                    let namespace = item.metadata.namespace.clone();
                    if !produced.contains(&(kind, namespace.as_deref(), name.as_str())) {
                        stale.push((namespace, name));
                    }
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
            for (namespace, name) in stale {
                let api: Api<DynamicObject> = match &namespace {
                    Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                    None => Api::all_with(self.client.clone(), &resource),
                };
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => deleted += 1,
                    // Gone already: what we wanted.
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(err) => {
                        self.metrics.audit_error("cleanup");
                        return Err(ClusterAuditError::Cleanup(format!(
                            "deleting {kind} {}{name}: {err}",
                            namespace.map(|ns| format!("{ns}/")).unwrap_or_default()
                        )));
                    }
                }
            }
        }
        Ok(deleted)
    }
}

/// A listed object as the policies see it: with its apiVersion and kind (list items often lack them), without
/// managed fields.
fn as_resource(object: DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("apiVersion".into(), resource.api_version.clone().into());
        fields.insert("kind".into(), resource.kind.clone().into());
        if let Some(metadata) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
    }
    value
}

/// Run `auditor` every `interval` against the store's active set until `stop` completes; a run that is due while no
/// set is active starts as soon as one is. A failed run is retried at the next interval.
pub async fn run_every(
    auditor: ClusterAuditor,
    store: Arc<policyctl_engines::policy::store::PolicyStore>,
    cluster: Arc<dyn ClusterContext>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        // Before the first set is active (or while none is), wait for one rather than for the next interval.
        let set = loop {
            if let Some(set) = store.current() {
                break set;
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = auditor.run(set, cluster.clone()) => {}
        }
    }
}
