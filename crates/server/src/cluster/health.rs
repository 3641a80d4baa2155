//! The health of the cluster context's lists and watches (namespaces, cached ConfigMaps, each kind synced into
//! `data.inventory`, the policy ConfigMaps): every failure is counted (`policyctl_cluster_sync_errors_total`), a sync
//! whose latest attempt failed is marked (`policyctl_cluster_sync_failing`, `/status` `syncs`), and a sync the API
//! server forbids (403) is logged at error with the RBAC rule that would allow it. A kind the API server does not serve
//! (404: an old version, a CRD not installed yet) is a note: logged once and retried.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;
use crate::sources::{SourcesStatus, SyncState};

/// What a sync lists and watches, for the RBAC rule a 403 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource name, e.g. `ingresses`.
    pub plural: String,
    /// Whether the sync is of one namespace (a Role and RoleBinding there suffice) rather than the whole cluster.
    pub namespace: Option<String>,
}

impl Resource {
    /// The rule, as a ClusterRole (or Role) entry.
    pub fn rule(&self) -> String {
        let scope = match &self.namespace {
            Some(namespace) => format!("a Role in namespace {namespace}"),
            None => "the ClusterRole".to_string(),
        };
        format!(
            "add to {scope} bound to policyctl's ServiceAccount the rule {{apiGroups: [\"{}\"], resources: [\"{}\"], \
             verbs: [\"get\", \"list\", \"watch\"]}}",
            self.group, self.plural
        )
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 403: RBAC does not allow it; retrying will not help until the rule is added.
    Forbidden,
    /// 404: the API server does not serve the resource (yet).
    NotServed,
    /// Anything else (network, timeouts, 5xx): transient.
    Other,
}

impl FailureKind {
    /// From an HTTP status code, if the error carried one.
    pub fn of_code(code: Option<u16>) -> FailureKind {
        match code {
            Some(403) => FailureKind::Forbidden,
            Some(404) => FailureKind::NotServed,
            _ => FailureKind::Other,
        }
    }

    /// The API status code of a watcher error, if it has one.
    pub fn of_watch(err: &watcher::Error) -> FailureKind {
        let code = match err {
            watcher::Error::InitialListFailed(err)
            | watcher::Error::WatchStartFailed(err)
            | watcher::Error::WatchFailed(err) => api_code(err),
            watcher::Error::WatchError(status) => Some(status.code),
            watcher::Error::NoResourceVersion => None,
        };
        FailureKind::of_code(code)
    }

    fn as_str(self) -> &'static str {
        match self {
            FailureKind::Forbidden => "forbidden",
            FailureKind::NotServed => "not served",
            FailureKind::Other => "failing",
        }
    }
}

/// The API status code of a client error, if it has one.
pub fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[derive(Debug)]
struct Inner {
    metrics: Arc<Metrics>,
    status: Arc<SourcesStatus>,
    /// The syncs failing with 403, by name, with their message.
    forbidden: Mutex<BTreeMap<String, String>>,
}

/// Shared by every sync of a process; cheap to clone.
#[derive(Debug, Clone)]
pub struct SyncHealth {
    inner: Arc<Inner>,
}

impl SyncHealth {
    /// Report to these metrics and this status.
    pub fn new(metrics: Arc<Metrics>, status: Arc<SourcesStatus>) -> SyncHealth {
        SyncHealth {
            inner: Arc::new(Inner {
                metrics,
                status,
                forbidden: Mutex::default(),
            }),
        }
    }

    /// A reporter for the sync `name` of `resource`. It shows in `/status` and the metrics until dropped.
    pub fn sync(&self, name: &str, resource: Resource) -> SyncReporter {
        self.inner.status.set_sync(name, SyncState::new(name));
        let metrics = &self.inner.metrics;
        let failing = metrics.cluster_sync_failing(name);
        failing.set(0);
        SyncReporter {
            health: self.clone(),
            name: name.to_string(),
            resource,
            state: None,
            errors: metrics.cluster_sync_errors(name),
            failing,
        }
    }

    /// The messages of the forbidden syncs whose names start with `prefix`.
    pub fn forbidden(&self, prefix: &str) -> Vec<String> {
        self.lock_forbidden()
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, message)| message.clone())
            .collect()
    }

    fn lock_forbidden(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.inner
            .forbidden
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// One sync's reports. Dropped with its sync (a kind no longer synced): its `/status` entry and metric series go.
#[derive(Debug)]
pub struct SyncReporter {
    health: SyncHealth,
    name: String,
    resource: Resource,
    /// The kind of the latest failure, while failing.
    state: Option<FailureKind>,
    errors: Counter,
    failing: Gauge,
}

impl SyncReporter {
    /// An attempt failed.
    pub fn failed(&mut self, kind: FailureKind, error: &dyn fmt::Display) {
        self.errors.inc();
        self.failing.set(1);
        let first = self.state != Some(kind);
        self.state = Some(kind);
        let message = match kind {
            FailureKind::Forbidden => format!(
                "{} is forbidden (403): {error}; {}",
                self.name,
                self.resource.rule()
            ),
            FailureKind::NotServed => format!(
                "{} is not served by the API server (404; an old version, or a CRD not installed yet): {error}; \
                 retrying",
                self.name
            ),
            FailureKind::Other => format!("{} failed: {error}; retrying", self.name),
        };
        if first {
            match kind {
                FailureKind::Forbidden => tracing::error!(
                    sync = %self.name,
                    rule = %self.resource.rule(),
                    error = %error,
                    "the cluster context cannot list/watch a resource: RBAC forbids it"
                ),
                FailureKind::NotServed => tracing::warn!(
                    sync = %self.name,
                    error = %error,
                    "the API server does not serve a resource the cluster context syncs; retrying"
                ),
                FailureKind::Other => tracing::warn!(
                    sync = %self.name,
                    error = %error,
                    "a cluster context sync failed; retrying"
                ),
            }
        } else {
            tracing::debug!(sync = %self.name, error = %error, "a cluster context sync failed again");
        }
        {
            let mut forbidden = self.health.lock_forbidden();
            if kind == FailureKind::Forbidden {
                forbidden.insert(self.name.clone(), message.clone());
            } else {
                forbidden.remove(&self.name);
            }
        }
        let state = kind.as_str();
        self.health.inner.status.update_sync(&self.name, |sync| {
            sync.errors += 1;
            sync.state = state;
            sync.problem = Some(message);
        });
    }

    /// What the sync lists, once discovery has named it.
    pub fn set_resource(&mut self, resource: Resource) {
        self.resource = resource;
    }

    /// An attempt succeeded (any event of the watch).
    pub fn ok(&mut self) {
        if self.state.take().is_none() {
            return;
        }
        tracing::info!(sync = %self.name, "a cluster context sync recovered");
        self.failing.set(0);
        self.health.lock_forbidden().remove(&self.name);
        self.health.inner.status.update_sync(&self.name, |sync| {
            sync.state = if sync.listed { "synced" } else { "syncing" };
            sync.problem = None;
        });
    }

    /// The first complete list is in.
    pub fn listed(&mut self) {
        self.ok();
        self.health.inner.status.update_sync(&self.name, |sync| {
            sync.listed = true;
            sync.state = "synced";
        });
    }
}

impl Drop for SyncReporter {
    fn drop(&mut self) {
        self.health.lock_forbidden().remove(&self.name);
        self.health.inner.status.remove_sync(&self.name);
        self.health.inner.metrics.remove_cluster_sync(&self.name);
    }
}

/// Drive a watch stream to its end, reporting every event to `reporter`.
pub async fn drive<S, K>(mut reporter: SyncReporter, events: S)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    use futures::StreamExt;
    let mut events = Box::pin(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => reporter.listed(),
            Ok(_) => reporter.ok(),
            Err(err) => reporter.failed(FailureKind::of_watch(&err), &err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingresses() -> Resource {
        Resource {
            group: "networking.k8s.io".into(),
            plural: "ingresses".into(),
            namespace: None,
        }
    }

    #[test]
    fn a_forbidden_sync_is_counted_shown_and_cleared_on_recovery() {
        let metrics = Arc::new(Metrics::new());
        let status = Arc::new(SourcesStatus::new());
        let health = SyncHealth::new(metrics.clone(), status.clone());
        let name = "inventory networking.k8s.io/v1 Ingress";
        let mut reporter = health.sync(name, ingresses());
        reporter.failed(FailureKind::Forbidden, &"ingresses is forbidden");
        reporter.failed(FailureKind::Forbidden, &"ingresses is forbidden");
        let text = metrics.encode();
        assert!(
            text.contains(&format!(
                "policyctl_cluster_sync_errors_total{{sync=\"{name}\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "policyctl_cluster_sync_failing{{sync=\"{name}\"}} 1"
            )),
            "{text}"
        );
        let forbidden = health.forbidden("inventory ");
        assert_eq!(forbidden.len(), 1);
        assert!(
            forbidden[0].contains(
                r#"{apiGroups: ["networking.k8s.io"], resources: ["ingresses"], verbs: ["get", "list", "watch"]}"#
            ),
            "{}",
            forbidden[0]
        );
        let syncs = status.syncs();
        assert_eq!(syncs[0].state, "forbidden");
        assert_eq!(syncs[0].errors, 2);

        reporter.listed();
        assert!(health.forbidden("inventory ").is_empty());
        assert_eq!(status.syncs()[0].state, "synced");
        assert!(status.syncs()[0].problem.is_none());
        assert!(metrics.encode().contains(&format!(
            "policyctl_cluster_sync_failing{{sync=\"{name}\"}} 0"
        )));

        // A kind that is not served is a note, not a forbidden sync.
        reporter.failed(FailureKind::NotServed, &"404");
        assert!(health.forbidden("inventory ").is_empty());
        assert_eq!(status.syncs()[0].state, "not served");

        drop(reporter);
        assert!(status.syncs().is_empty());
        assert!(
            !metrics.encode().contains(name),
            "series of a dropped sync go"
        );
    }
}
