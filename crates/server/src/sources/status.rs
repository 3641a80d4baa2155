//! What the sources are doing, and the admin `/status` report built from it and the policy store.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::policy::store::{LoadFailure, PolicyStore};
use crate::policy::PolicySummary;

/// The kind of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A policy directory.
    Directory,
    /// ConfigMaps watched through the Kubernetes API.
    ConfigMaps,
    /// The cluster context (`--cluster-context`): not a source of policies, but the first set waits for it.
    #[serde(rename = "cluster-context")]
    ClusterContext,
}

/// A problem of a source itself (unreadable directory, watch failure), as opposed to an error in a policy.
#[derive(Debug, Clone, Serialize)]
pub struct SourceProblem {
    /// What went wrong.
    pub message: String,
    /// When, in seconds since the Unix epoch.
    #[serde(serialize_with = "unix_seconds")]
    pub at: SystemTime,
}

/// The state of one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceState {
    /// Its kind.
    pub kind: SourceKind,
    /// What it reads: the directory, or the namespace and label selector.
    pub description: String,
    /// Whether it has delivered a complete snapshot.
    pub synced: bool,
    /// Policy files in its latest snapshot.
    pub files: usize,
    /// ConfigMaps in its latest snapshot (ConfigMap sources only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_maps: Option<usize>,
    /// When its latest snapshot was taken, in seconds since the Unix epoch.
    #[serde(serialize_with = "optional_unix_seconds")]
    pub updated_at: Option<SystemTime>,
    /// Its latest problem, cleared by the next good snapshot or event.
    pub problem: Option<SourceProblem>,
}

/// One list/watch of the cluster context (namespaces, cached ConfigMaps, a kind synced into `data.inventory`, the
/// policy ConfigMaps), as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncState {
    /// What is synced, e.g. `namespaces` or `inventory networking.k8s.io/v1 Ingress`.
    pub name: String,
    /// `syncing` (not listed yet), `synced`, `forbidden` (403: an RBAC rule is missing), `not served` (404) or
    /// `failing` (anything else; retried).
    pub state: &'static str,
    /// Whether it has been listed completely at least once.
    pub listed: bool,
    /// Failed attempts so far.
    pub errors: u64,
    /// The latest failure, with the RBAC rule to add when forbidden; cleared by the next good event.
    pub problem: Option<String>,
}

impl SyncState {
    /// A sync that has not listed yet.
    pub fn new(name: &str) -> SyncState {
        SyncState {
            name: name.to_string(),
            state: "syncing",
            listed: false,
            errors: 0,
            problem: None,
        }
    }
}

/// The states of every source, shared between the sources and the admin listener.
#[derive(Debug, Default)]
pub struct SourcesStatus {
    sources: Mutex<Vec<SourceState>>,
    syncs: Mutex<std::collections::BTreeMap<String, SyncState>>,
}

impl SourcesStatus {
    /// No sources yet.
    pub fn new() -> SourcesStatus {
        SourcesStatus::default()
    }

    /// Add a source; returns its index.
    pub fn register(&self, kind: SourceKind, description: String) -> usize {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.push(SourceState {
            kind,
            description,
            synced: false,
            files: 0,
            config_maps: None,
            updated_at: None,
            problem: None,
        });
        sources.len() - 1
    }

    /// Change the state of source `index`.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut SourceState)) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = sources.get_mut(index) {
            change(state);
        }
    }

    /// Record a problem of source `index`.
    pub fn problem(&self, index: usize, message: String) {
        self.update(index, |s| {
            s.problem = Some(SourceProblem {
                message,
                at: SystemTime::now(),
            })
        });
    }

    /// Add (or reset) the sync `name`.
    pub fn set_sync(&self, name: &str, state: SyncState) {
        self.lock_syncs().insert(name.to_string(), state);
    }

    /// Change the state of the sync `name`.
    pub fn update_sync(&self, name: &str, change: impl FnOnce(&mut SyncState)) {
        if let Some(state) = self.lock_syncs().get_mut(name) {
            change(state);
        }
    }

    /// Forget the sync `name`.
    pub fn remove_sync(&self, name: &str) {
        self.lock_syncs().remove(name);
    }

    /// Every sync, by name.
    pub fn syncs(&self) -> Vec<SyncState> {
        self.lock_syncs().values().cloned().collect()
    }

    fn lock_syncs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, SyncState>> {
        self.syncs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state of every source.
    pub fn snapshot(&self) -> Vec<SourceState> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The active set as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveSet {
    /// Load generation.
    pub generation: u64,
    /// Hex SHA-256 of the sources it was built from.
    pub hash: String,
    /// When it was built, in seconds since the Unix epoch.
    #[serde(serialize_with = "unix_seconds")]
    pub loaded_at: SystemTime,
    /// Its policies.
    pub policies: Vec<PolicySummary>,
    /// The warnings of the load that built it (`policyctl lint` prints the same).
    pub warnings: Vec<String>,
}

/// The admin `/status` document.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Whether a policy set is active (the webhook answers).
    pub ready: bool,
    /// The active set.
    pub active: Option<ActiveSet>,
    /// The latest rejected load, when the latest load was rejected: the active set is older than the sources.
    pub last_error: Option<LoadFailure>,
    /// The sources.
    pub sources: Vec<SourceState>,
    /// The cluster context's lists and watches (empty without `--cluster-context` and ConfigMap sources).
    pub syncs: Vec<SyncState>,
}

impl StatusReport {
    /// The report for a store and its sources.
    pub fn new(store: &PolicyStore, sources: &SourcesStatus) -> StatusReport {
        let active = store.current().map(|set| ActiveSet {
            generation: set.generation(),
            hash: set.hash().to_string(),
            loaded_at: set.loaded_at(),
            policies: set.summaries(),
            warnings: set.warnings().iter().map(ToString::to_string).collect(),
        });
        StatusReport {
            ready: active.is_some(),
            active,
            last_error: store.last_error(),
            sources: sources.snapshot(),
            syncs: sources.syncs(),
        }
    }
}

fn seconds(time: &SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn unix_seconds<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(seconds(time))
}

fn optional_unix_seconds<S: serde::Serializer>(
    time: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.serialize_f64(seconds(time)),
        None => s.serialize_none(),
    }
}
