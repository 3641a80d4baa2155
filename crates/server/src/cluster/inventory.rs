//! Gatekeeper's referential data (`data.inventory`): the objects of the kinds named by a Gatekeeper `Config`
//! (`config.gatekeeper.sh/v1alpha1`, `spec.sync.syncOnly`) or `SyncSet` (`syncset.gatekeeper.sh/v1alpha1`,
//! `spec.gvks`) among the policy files, kept in memory by one reflector per kind.
//!
//! The kinds follow the active policy set: when a new set names other kinds, reflectors start for the new ones and
//! stop for the ones no longer named. Like Gatekeeper's sync, the inventory is eventually consistent: a kind's
//! objects appear once its first list is done. Memory grows with the synced objects (managed fields are dropped);
//! sync only the kinds the policies need.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::Store;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::{Map, Value};
use tokio::task::JoinHandle;

use super::health::{api_code, FailureKind, Resource, SyncHealth, SyncReporter};
use crate::policy::source::documents;
use crate::policy::SourceFile;

/// A kind to sync: group (empty for the core group), version, kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncKind {
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl SyncKind {
    /// `group/version`, or `version` for the core group: the key Gatekeeper's inventory uses.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name of its sync (`/status`, metrics): `inventory networking.k8s.io/v1 Ingress`.
    pub fn sync_name(&self) -> String {
        format!("{INVENTORY_PREFIX}{} {}", self.group_version(), self.kind)
    }
}

/// The prefix of the inventory syncs' names.
const INVENTORY_PREFIX: &str = "inventory ";

/// Until discovery names the resource: the usual plural of a kind (`Ingress` → `ingresses`), for the RBAC hint.
fn guessed_plural(kind: &str) -> String {
    crate::admission::plural(kind)
}

/// The kinds named by the Gatekeeper `Config` and `SyncSet` documents among `files`.
pub fn sync_kinds(files: &[SourceFile]) -> BTreeSet<SyncKind> {
    let mut kinds = BTreeSet::new();
    for file in files.iter().filter(|f| !f.is_rego()) {
        let (docs, _) = documents(file);
        for doc in docs {
            let entries = if doc.api_version.starts_with("config.gatekeeper.sh/")
                && doc.kind == "Config"
            {
                doc.value.pointer("/spec/sync/syncOnly")
            } else if doc.api_version.starts_with("syncset.gatekeeper.sh/") && doc.kind == "SyncSet"
            {
                doc.value.pointer("/spec/gvks")
            } else {
                None
            };
            for entry in entries.and_then(Value::as_array).into_iter().flatten() {
                let field = |name: &str| {
                    entry
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let kind = SyncKind {
                    group: field("group"),
                    version: field("version"),
                    kind: field("kind"),
                };
                if !kind.version.is_empty() && !kind.kind.is_empty() {
                    kinds.insert(kind);
                }
            }
        }
    }
    kinds
}

/// How long to wait before looking for a kind again.
const DISCOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

struct Synced {
    store: Store<DynamicObject>,
    namespaced: bool,
    task: JoinHandle<()>,
}

impl Drop for Synced {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The synced kinds and a cached snapshot of their objects.
pub struct Inventory {
    client: Client,
    handle: tokio::runtime::Handle,
    health: SyncHealth,
    synced: Arc<Mutex<BTreeMap<SyncKind, Synced>>>,
    wanted: Arc<Mutex<BTreeSet<SyncKind>>>,
    /// Kinds being discovered (not synced yet): not started twice.
    pending: Arc<Mutex<BTreeSet<SyncKind>>>,
    changes: Arc<AtomicU64>,
    snapshot: Mutex<Option<(u64, Arc<Value>)>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<SyncKind> = self.lock_synced().keys().cloned().collect();
        f.debug_struct("Inventory").field("kinds", &kinds).finish()
    }
}

impl Inventory {
    /// No kinds synced yet.
    pub fn new(client: Client, handle: tokio::runtime::Handle, health: SyncHealth) -> Inventory {
        Inventory {
            client,
            handle,
            health,
            synced: Arc::default(),
            wanted: Arc::default(),
            pending: Arc::default(),
            changes: Arc::new(AtomicU64::new(1)),
            snapshot: Mutex::new(None),
        }
    }

    fn lock_synced(&self) -> std::sync::MutexGuard<'_, BTreeMap<SyncKind, Synced>> {
        self.synced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sync exactly these kinds: start reflectors for new kinds (after discovering their resource), stop the others.
    pub fn sync(&self, kinds: BTreeSet<SyncKind>) {
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = kinds.clone();
        let removed: Vec<SyncKind> = self
            .lock_synced()
            .keys()
            .filter(|k| !kinds.contains(k))
            .cloned()
            .collect();
        if !removed.is_empty() {
            let mut synced = self.lock_synced();
            for kind in removed {
                tracing::info!(kind = ?kind, "no longer syncing a kind into data.inventory");
                synced.remove(&kind);
            }
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        for kind in kinds {
            if self.lock_synced().contains_key(&kind) {
                continue;
            }
            if !self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(kind.clone())
            {
                continue;
            }
            let client = self.client.clone();
            let synced = self.synced.clone();
            let wanted = self.wanted.clone();
            let pending = self.pending.clone();
            let changes = self.changes.clone();
            let mut reporter = self.health.sync(
                &kind.sync_name(),
                Resource {
                    group: kind.group.clone(),
                    plural: guessed_plural(&kind.kind),
                    namespace: None,
                },
            );
            self.handle.spawn(async move {
                let gvk = GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind);
                let is_wanted = || {
                    wanted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&kind)
                };
                let done_pending = || {
                    pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&kind);
                };
                // The kind may not be served (yet: a CRD installed later, or an old version): a note, retried while
                // it is wanted. A 403 here is reported as forbidden like one on the list or watch.
                let (resource, capabilities) = loop {
                    match kube::discovery::pinned_kind(&client, &gvk).await {
                        Ok(found) => break found,
                        Err(err) => {
                            let kind = match FailureKind::of_code(api_code(&err)) {
                                FailureKind::Other if is_not_found(&err) => FailureKind::NotServed,
                                other => other,
                            };
                            reporter.failed(kind, &err);
                        }
                    }
                    tokio::time::sleep(DISCOVERY_RETRY).await;
                    if !is_wanted() {
                        done_pending();
                        return;
                    }
                };
                reporter.set_resource(Resource {
                    group: resource.group.clone(),
                    plural: resource.plural.clone(),
                    namespace: None,
                });
                reporter.ok();
                let entry = start(
                    client.clone(),
                    resource,
                    capabilities.scope == Scope::Namespaced,
                    changes.clone(),
                    reporter,
                );
                let still_wanted = is_wanted();
                if still_wanted {
                    tracing::info!(kind = ?kind, "syncing a kind into data.inventory");
                    synced
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(kind.clone())
                        .or_insert(entry);
                    changes.fetch_add(1, Ordering::SeqCst);
                }
                done_pending();
            });
        }
    }

    /// Why the inventory cannot fill: the synced kinds the API server forbids us to list or watch.
    pub fn problem(&self) -> Option<String> {
        let forbidden = self.health.forbidden(INVENTORY_PREFIX);
        if forbidden.is_empty() {
            None
        } else {
            Some(format!(
                "data.inventory is incomplete: {}",
                forbidden.join("; ")
            ))
        }
    }

    /// The inventory, rebuilt when an object changed since the last call; `None` when no kind is synced.
    pub fn snapshot(&self) -> Option<Arc<Value>> {
        let version = self.changes.load(Ordering::SeqCst);
        let mut cached = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, value)) = cached.as_ref() {
            if *at == version {
                return Some(value.clone());
            }
        }
        let synced = self.lock_synced();
        if synced.is_empty() {
            *cached = None;
            return None;
        }
        let mut cluster = Map::new();
        let mut namespaces = Map::new();
        for (kind, entry) in synced.iter() {
            for object in entry.store.state() {
                let name = object.metadata.name.clone().unwrap_or_default();
                let Ok(value) = serde_json::to_value(&*object) else {
                    continue;
                };
                match (&object.metadata.namespace, entry.namespaced) {
                    (Some(ns), true) => {
                        let by_gv = namespaces
                            .entry(ns.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(by_gv) = by_gv {
                            insert(by_gv, kind, name, value);
                        }
                    }
                    _ => insert(&mut cluster, kind, name, value),
                }
            }
        }
        let value = Arc::new(serde_json::json!({"cluster": cluster, "namespace": namespaces}));
        *cached = Some((version, value.clone()));
        Some(value)
    }
}

/// `map[group_version][kind][name] = object`.
fn insert(map: &mut Map<String, Value>, kind: &SyncKind, name: String, object: Value) {
    let by_kind = map
        .entry(kind.group_version())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(by_kind) = by_kind {
        let by_name = by_kind
            .entry(kind.kind.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(by_name) = by_name {
            by_name.insert(name, object);
        }
    }
}

/// Discovery found nothing for the group/version/kind (kube reports it without an API status).
fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Discovery(_))
}

fn start(
    client: Client,
    resource: ApiResource,
    namespaced: bool,
    changes: Arc<AtomicU64>,
    mut reporter: SyncReporter,
) -> Synced {
    let writer: Writer<DynamicObject> = Writer::new(resource.clone());
    let store = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object| object.metadata.managed_fields = None)
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut events = Box::pin(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        reporter.listed();
                    } else {
                        reporter.ok();
                    }
                    changes.fetch_add(1, Ordering::SeqCst);
                }
                Err(err) => reporter.failed(FailureKind::of_watch(&err), &err),
            }
        }
    });
    Synced {
        store,
        namespaced,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_gatekeeper_config_and_syncset_documents() {
        let config = SourceFile {
            origin: "p/sync.yaml".into(),
            content: r"
apiVersion: config.gatekeeper.sh/v1alpha1
kind: Config
metadata: {name: config}
spec:
  sync:
    syncOnly:
    - {group: '', version: v1, kind: Namespace}
    - {group: networking.k8s.io, version: v1, kind: Ingress}
---
apiVersion: syncset.gatekeeper.sh/v1alpha1
kind: SyncSet
metadata: {name: s}
spec:
  gvks:
  - {group: '', version: v1, kind: Service}
  - {group: '', version: '', kind: Broken}
"
            .into(),
        };
        let rego = SourceFile {
            origin: "p/a.rego".into(),
            content: "package a".into(),
        };
        let kinds: Vec<String> = sync_kinds(&[config, rego])
            .iter()
            .map(|k| format!("{}|{}", k.group_version(), k.kind))
            .collect();
        assert_eq!(
            kinds,
            ["v1|Namespace", "v1|Service", "networking.k8s.io/v1|Ingress"]
        );
    }

    #[test]
    fn plurals_for_the_rbac_hint() {
        for (kind, plural) in [
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
            ("Service", "services"),
        ] {
            assert_eq!(guessed_plural(kind), plural);
        }
    }
}
