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

/// The states of every source, shared between the sources and the admin listener.
#[derive(Debug, Default)]
pub struct SourcesStatus {
    sources: Mutex<Vec<SourceState>>,
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
}

impl StatusReport {
    /// The report for a store and its sources.
    pub fn new(store: &PolicyStore, sources: &SourcesStatus) -> StatusReport {
        let active = store.current().map(|set| ActiveSet {
            generation: set.generation(),
            hash: set.hash().to_string(),
            loaded_at: set.loaded_at(),
            policies: set.summaries(),
        });
        StatusReport {
            ready: active.is_some(),
            active,
            last_error: store.last_error(),
            sources: sources.snapshot(),
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
