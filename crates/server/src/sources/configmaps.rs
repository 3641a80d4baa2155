//! The ConfigMap source: ConfigMaps selected by labels in one namespace, watched through the Kubernetes API with
//! kube-runtime's [`watcher()`](kube::runtime::watcher()).
//!
//! Every `data` key of a matching ConfigMap whose name is a policy file name (`*.yaml`, `*.yml`, `*.rego`, not
//! `*_test.rego`, not hidden) is a policy file with the origin `namespace/configmap/key`; other keys are ignored, like
//! other files in a policy directory. All matching ConfigMaps together form one snapshot:
//!
//! - a (re)list (`Init`, `InitApply`..., `InitDone`) is buffered and replaces the whole map at `InitDone`, so a
//!   ConfigMap deleted while the watch was down disappears too;
//! - `Apply` replaces one ConfigMap, `Delete` removes it and its policies;
//! - after every change the snapshot of all ConfigMaps goes to the publisher (when its content changed).
//!
//! A policy file under `binaryData` is an error (it would otherwise be silently skipped). Watch errors (API down,
//! forbidden, expired resource version) are logged and shown in `/status`; the watcher retries with backoff and the
//! active set keeps serving meanwhile.
//!
//! ConfigMaps are read from one namespace only — by default the client's (in a pod, its own namespace): policies
//! that govern the whole cluster must not be writable by whoever may create a ConfigMap in any namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;

use super::{snapshot_key, Snapshot, SnapshotKey, SourcesStatus, Update};
use crate::cluster::health::{FailureKind, SyncReporter};
use crate::policy::loader::is_policy_file;
use crate::policy::{LoadError, SourceFile, SourceRef};

/// Which ConfigMaps hold policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapSelector {
    /// A Kubernetes label selector, e.g. `policyctl.io/policies=true`.
    pub labels: String,
    /// The namespace; `None` is the client's default namespace (in a pod: its own).
    pub namespace: Option<String>,
}

impl ConfigMapSelector {
    /// How `/status` and the logs describe the source.
    pub fn describe(&self, namespace: &str) -> String {
        format!(
            "ConfigMaps in namespace {namespace} with labels {}",
            self.labels
        )
    }
}

/// The policy files of one ConfigMap, or why they cannot be used.
type ConfigMapFiles = Result<Vec<SourceFile>, Vec<LoadError>>;

/// The policy files of a ConfigMap: one per policy-named `data` key, origin `namespace/name/key`.
pub fn files_of(config_map: &ConfigMap) -> ConfigMapFiles {
    let namespace = config_map.namespace().unwrap_or_default();
    let name = config_map.name_any();
    let mut files = Vec::new();
    for (key, content) in config_map.data.iter().flatten() {
        if key.starts_with('.') || !is_policy_file(key) {
            continue;
        }
        files.push(SourceFile {
            origin: format!("{namespace}/{name}/{key}"),
            content: content.clone(),
        });
    }
    let errors: Vec<LoadError> = config_map
        .binary_data
        .iter()
        .flatten()
        .filter(|(key, _)| !key.starts_with('.') && is_policy_file(key))
        .map(|(key, _)| {
            LoadError::new(
                SourceRef::file(&format!("{namespace}/{name}/{key}")),
                "policy files must be under `data` (text), not `binaryData`",
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// The snapshot of every ConfigMap: all their files, in origin order, or all their errors.
fn snapshot(config_maps: &BTreeMap<String, ConfigMapFiles>) -> Snapshot {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in config_maps.values() {
        match entry {
            Ok(more) => files.extend(more.iter().cloned()),
            Err(more) => errors.extend(more.iter().cloned()),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn key_of(config_map: &ConfigMap) -> String {
    format!(
        "{}/{}",
        config_map.namespace().unwrap_or_default(),
        config_map.name_any()
    )
}

/// Watch the selected ConfigMaps until the publisher goes away.
pub(crate) async fn run(
    client: Client,
    namespace: String,
    labels: String,
    index: usize,
    tx: mpsc::Sender<Update>,
    status: Arc<SourcesStatus>,
    mut reporter: SyncReporter,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&labels);
    let mut events = Box::pin(watcher(api, config).default_backoff());
    let mut current: BTreeMap<String, ConfigMapFiles> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, ConfigMapFiles>> = None;
    let mut synced = false;
    let mut last_sent: Option<SnapshotKey> = None;
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(Event::Init) => {
                reporter.ok();
                listing = Some(BTreeMap::new());
                false
            }
            Ok(Event::InitApply(config_map)) => {
                listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key_of(&config_map), files_of(&config_map));
                false
            }
            Ok(Event::InitDone) => {
                reporter.listed();
                current = listing.take().unwrap_or_default();
                synced = true;
                true
            }
            Ok(Event::Apply(config_map)) => {
                reporter.ok();
                tracing::debug!(config_map = %key_of(&config_map), "policy ConfigMap applied");
                current.insert(key_of(&config_map), files_of(&config_map));
                true
            }
            Ok(Event::Delete(config_map)) => {
                reporter.ok();
                tracing::info!(config_map = %key_of(&config_map), "policy ConfigMap deleted; its policies go with it");
                current.remove(&key_of(&config_map));
                true
            }
            Err(err) => {
                // Logged (with the RBAC rule when forbidden), counted and shown by the reporter.
                reporter.failed(FailureKind::of_watch(&err), &err);
                status.problem(index, format!("watch failed: {err}"));
                false
            }
        };
        if !changed || !synced {
            continue;
        }
        let snapshot = snapshot(&current);
        let count = current.len();
        let files = snapshot.as_ref().map(Vec::len).unwrap_or(0);
        status.update(index, |s| {
            s.synced = true;
            s.files = files;
            s.config_maps = Some(count);
            s.updated_at = Some(SystemTime::now());
            s.problem = None;
        });
        let key = snapshot_key(&snapshot);
        if last_sent.as_ref() == Some(&key) {
            continue;
        }
        last_sent = Some(key);
        tracing::info!(
            config_maps = count,
            files,
            "policy ConfigMaps changed; rebuilding the policy set"
        );
        if tx
            .send(Update {
                source: index,
                snapshot,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn policy_keys_become_files_named_namespace_configmap_key() {
        let mut config_map = ConfigMap::default();
        config_map.metadata.name = Some("policies".into());
        config_map.metadata.namespace = Some("policyctl".into());
        config_map.data = Some(BTreeMap::from([
            ("a.rego".to_string(), "package a".to_string()),
            ("b.yaml".to_string(), "{}".to_string()),
            ("README.md".to_string(), "docs".to_string()),
            ("a_test.rego".to_string(), "package a_test".to_string()),
        ]));
        let files = files_of(&config_map).expect("no errors");
        let origins: Vec<&str> = files.iter().map(|f| f.origin.as_str()).collect();
        assert_eq!(
            origins,
            ["policyctl/policies/a.rego", "policyctl/policies/b.yaml"]
        );

        config_map.binary_data = Some(BTreeMap::from([(
            "c.rego".to_string(),
            ByteString(b"package c".to_vec()),
        )]));
        let errors = files_of(&config_map).expect_err("binaryData policy");
        assert_eq!(
            errors[0].to_string(),
            "policyctl/policies/c.rego: policy files must be under `data` (text), not `binaryData`"
        );
    }
}
