//! Policy sources: where the server's policy set comes from, and how it follows changes without a restart.
//!
//! Two sources exist, and both may be used at once (the policy set is then built from the union of their files):
//!
//! - [`directory`]: a directory of policy files, typically a ConfigMap mounted as a volume (`--policies DIR`);
//! - [`configmaps`]: ConfigMaps selected by labels, watched through the Kubernetes API (`--configmap-selector`).
//!
//! Every source sends a complete snapshot of its files (or the errors that kept it from reading them) to one
//! publisher task. The publisher waits until every source has delivered its first snapshot (so the first set is never
//! a partial one), coalesces snapshots that arrive while it is busy, skips a rebuild when the content hash of the
//! union is the one it built last, compiles the new set on a blocking thread ([`crate::policy::loader::compile`]) and
//! publishes it with [`PolicyStore::publish`]: one atomic pointer swap. A request holds the `Arc<PolicySet>` it
//! started with, so in-flight requests finish on their set, and no request ever sees a mix of two sets.
//!
//! A bad update (unreadable file, YAML syntax, schema error, Rego compile error, unknown kind) never replaces the
//! last good set: every error is logged with its file (or `namespace/configmap/key`), document and field, counted in
//! `policyctl_policy_load_errors_total`, kept as the store's last error (shown by the admin `/status`), and the old set
//! keeps answering. Only one publisher compiles at a time, so sets are published in the order their sources changed.
//!
//! With `--cluster-context` the sources also start the [`cluster`](crate::cluster) context (it shares their
//! Kubernetes client); the first set is then published once the namespaces have been listed, and every published set
//! tells it which kinds its Gatekeeper `Config`/`SyncSet` documents want synced into `data.inventory`.
//!
//! ## Why the directory source polls
//!
//! The kubelet updates a mounted ConfigMap by writing a new timestamped directory and renaming a `..data_tmp`
//! symlink over `..data`; the visible files are symlinks through `..data`. An inotify watch on a file follows the old
//! inode, which is never written again and disappears with the old directory, so an event-based watcher must watch the
//! directory itself, recognise the rename and re-arm, and still needs a periodic rescan for what inotify misses
//! (network filesystems, queue overflows, editors that replace files). Polling a cheap fingerprint — the `..data` link
//! target plus path, size and modification time of every policy file — every 200 ms handles all of these with one
//! code path and no extra crate; for a policy directory (tens of files) a poll is a few `stat` calls. A change is
//! debounced (the fingerprint must stay unchanged for 250 ms, which also covers the kubelet's follow-up symlink
//! edits), then the files are read and hashed; a periodic full read (every 10 s) catches an edit that kept size and
//! modification time. From a swap to the new set answering: up to one poll interval to notice, the debounce, and
//! the compile — about 0.3–0.5 s for a typical set (measured by `examples/reload_latency.rs`), inside the 1 s goal.

pub mod configmaps;
pub mod directory;
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::health::{Resource, SyncHealth};
use crate::cluster::inventory::{sync_kinds, SyncKind};
use crate::cluster::{ClusterOptions, KubeCluster};
use crate::engine::{Built, LoadOptions};
use crate::metrics::Metrics;
use crate::policy::kinds::KnownKinds;
use crate::policy::loader::{compile, Compiled};
use crate::policy::store::{EmptySet, PolicyStore};
use crate::policy::{ClusterContext, LoadError, PolicySet, SourceFile};
use std::collections::BTreeSet;

pub use configmaps::ConfigMapSelector;
pub use status::{SourceKind, SourceProblem, SourceState, SourcesStatus, StatusReport, SyncState};

/// What one source read: all its policy files, or every error that kept it from reading them.
pub type Snapshot = Result<Vec<SourceFile>, Vec<LoadError>>;

/// Default interval between two fingerprints of a policy directory.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Default quiet period after a change before the directory is read.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);
/// Default interval of the full content check of a policy directory.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(10);

/// Which sources to run and how.
#[derive(Debug, Clone)]
pub struct SourcesConfig {
    /// The policy directory (`--policies`).
    pub directory: Option<PathBuf>,
    /// The ConfigMaps watched through the Kubernetes API (`--configmap-selector`).
    pub configmaps: Option<ConfigMapSelector>,
    /// How often the directory's fingerprint is taken.
    pub poll_interval: Duration,
    /// How long a directory must stay unchanged before it is read.
    pub debounce: Duration,
    /// How often the directory is read in full even when its fingerprint did not change.
    pub rescan_interval: Duration,
    /// Serve policies cluster context from the Kubernetes API (`--cluster-context`); the first policy set is then
    /// published once the namespaces have been listed.
    pub cluster_context: Option<ClusterOptions>,
    /// Whether an update with no policies may replace a set that has some (`--allow-empty-policy-set`); by default
    /// it is rejected like a broken update.
    pub allow_empty_policy_set: bool,
}

impl SourcesConfig {
    /// Only a directory, with the default timings.
    pub fn directory(dir: impl Into<PathBuf>) -> SourcesConfig {
        SourcesConfig {
            directory: Some(dir.into()),
            ..SourcesConfig::default()
        }
    }
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            directory: None,
            configmaps: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            debounce: DEFAULT_DEBOUNCE,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            cluster_context: None,
            allow_empty_policy_set: false,
        }
    }
}

/// Why the sources could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Neither a directory nor a ConfigMap selector was given.
    #[error(
        "no policy source: give a policy directory (--policies) and/or a ConfigMap selector (--configmap-selector)"
    )]
    NoSource,
    /// No Kubernetes client configuration was found (kubeconfig, in-cluster service account).
    #[error("cannot configure the Kubernetes client (kubeconfig or in-cluster service account)")]
    KubeConfig(#[from] kube::config::InferConfigError),
    /// The Kubernetes client could not be built.
    #[error("cannot create the Kubernetes client")]
    Kube(#[from] kube::Error),
}

/// Compiles source snapshots and publishes them into the store, recording metrics and logs.
#[derive(Debug, Clone)]
pub struct Publisher {
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    options: LoadOptions,
    empty: EmptySet,
}

impl Publisher {
    /// A publisher into `store`.
    pub fn new(store: Arc<PolicyStore>, metrics: Arc<Metrics>, options: LoadOptions) -> Publisher {
        Publisher {
            store,
            metrics,
            options,
            empty: EmptySet::Refuse,
        }
    }

    /// The same publisher, allowing (or not) an update with no policies to replace a set that has some.
    pub fn allow_empty_policy_set(mut self, allow: bool) -> Publisher {
        self.empty = if allow {
            EmptySet::Allow
        } else {
            EmptySet::Refuse
        };
        self
    }

    /// The same publisher, with the cluster's custom resource kinds (no load warning for a kind a CRD defines).
    pub fn with_known_kinds(mut self, known: Option<Arc<KnownKinds>>) -> Publisher {
        self.options.known_kinds = known;
        self
    }

    /// The store it publishes into.
    pub fn store(&self) -> &Arc<PolicyStore> {
        &self.store
    }

    /// Compile `files` and publish the result (blocking: call it off the async runtime). A load with errors is
    /// rejected: the active set stays, the errors are logged, counted and kept as the store's last error.
    pub fn publish_files(&self, files: &[SourceFile]) -> Result<Arc<PolicySet>, Vec<LoadError>> {
        let compiled = compile(files, &self.options);
        self.publish(compiled)
    }

    /// Record a load that failed before compiling (unreadable sources).
    pub fn reject(&self, errors: Vec<LoadError>) -> Vec<LoadError> {
        let compiled = Compiled {
            built: Built {
                errors,
                ..Built::default()
            },
            ..Compiled::default()
        };
        match self.publish(compiled) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    /// Publish a compiled load.
    pub fn publish(&self, compiled: Compiled) -> Result<Arc<PolicySet>, Vec<LoadError>> {
        for warning in &compiled.built.warnings {
            tracing::warn!(
                origin = %warning.location.origin,
                document = warning.location.document,
                field = warning.field.as_deref(),
                "policy load warning: {warning}"
            );
        }
        let files = compiled.files;
        match self.store.publish_with(compiled, self.empty) {
            Ok(set) => {
                if set.policies().is_empty() {
                    tracing::warn!(
                        generation = set.generation(),
                        files,
                        "the active policy set has no policies: every request is admitted"
                    );
                }
                self.metrics
                    .record_policy_set(set.generation(), set.policies().len(), set.hash());
                tracing::info!(
                    generation = set.generation(),
                    policies = set.policies().len(),
                    files,
                    hash = set.hash(),
                    "policy set loaded"
                );
                Ok(set)
            }
            Err(errors) => {
                self.metrics.policy_load_errors.inc();
                for error in &errors {
                    tracing::error!(
                        origin = %error.location.origin,
                        document = error.location.document,
                        field = error.field.as_deref(),
                        "policy load error: {error}"
                    );
                }
                let active = self.store.current().map(|s| s.generation());
                match active {
                    Some(generation) => tracing::error!(
                        errors = errors.len(),
                        active_generation = generation,
                        "policy update rejected; the active policy set keeps serving"
                    ),
                    None => tracing::error!(
                        errors = errors.len(),
                        "policy set rejected; no policy set is active yet, so the webhook is not ready"
                    ),
                }
                Err(errors)
            }
        }
    }
}

/// Completes when the first policy set may be published.
type Gate = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A snapshot from source number `source`.
#[derive(Debug)]
pub(crate) struct Update {
    pub(crate) source: usize,
    pub(crate) snapshot: Snapshot,
}

/// The configured sources, not yet started.
pub struct Sources {
    config: SourcesConfig,
    client: Option<kube::Client>,
}

/// Running sources: their tasks stop when this is dropped.
pub struct Running {
    tasks: Vec<JoinHandle<()>>,
    client: Option<kube::Client>,
    cluster: Option<Arc<KubeCluster>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("config", &self.config)
            .field("client", &self.client.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("tasks", &self.tasks.len())
            .field("client", &self.client.is_some())
            .finish()
    }
}

impl Running {
    /// The Kubernetes client, when a ConfigMap source or the cluster context runs.
    pub fn client(&self) -> Option<&kube::Client> {
        self.client.as_ref()
    }

    /// The cluster context, when it was asked for.
    pub fn cluster(&self) -> Option<Arc<dyn ClusterContext>> {
        self.cluster.clone().map(|c| c as Arc<dyn ClusterContext>)
    }

    /// Stop every source.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Sources {
    /// Sources as configured; a ConfigMap source and the cluster context get their client from the environment
    /// (kubeconfig or in-cluster service account, [`kube::Config::infer`]) unless one is given.
    pub fn new(config: SourcesConfig) -> Sources {
        Sources {
            config,
            client: None,
        }
    }

    /// Use this Kubernetes client instead of inferring one.
    pub fn with_client(mut self, client: kube::Client) -> Sources {
        self.client = Some(client);
        self
    }

    /// Start every source and the publisher; the first set is published once every source has been read.
    pub async fn start(
        self,
        publisher: Publisher,
        status: Arc<SourcesStatus>,
    ) -> Result<Running, SourceError> {
        let Sources { config, client } = self;
        let publisher = publisher.allow_empty_policy_set(config.allow_empty_policy_set);
        if config.directory.is_none() && config.configmaps.is_none() {
            return Err(SourceError::NoSource);
        }
        let needs_api = config.configmaps.is_some() || config.cluster_context.is_some();
        let client = match (needs_api, client) {
            (true, Some(client)) => Some(client),
            (true, None) => Some(client_from(kube::Config::infer().await?)?),
            (false, _) => None,
        };
        let (tx, rx) = mpsc::channel::<Update>(16);
        let health = SyncHealth::new(publisher.metrics.clone(), status.clone());
        let mut tasks = Vec::new();
        let mut count = 0;
        if let Some(dir) = &config.directory {
            let index = status.register(SourceKind::Directory, dir.display().to_string());
            let timings = directory::Timings {
                poll: config.poll_interval,
                debounce: config.debounce,
                rescan: config.rescan_interval,
            };
            tasks.push(tokio::spawn(directory::run(
                dir.clone(),
                timings,
                index,
                tx.clone(),
                status.clone(),
            )));
            count += 1;
        }
        if let (Some(selector), Some(client)) = (&config.configmaps, &client) {
            let namespace = selector
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string());
            let index = status.register(SourceKind::ConfigMaps, selector.describe(&namespace));
            let reporter = health.sync(
                &format!("policy configmaps {namespace} {}", selector.labels),
                Resource {
                    group: String::new(),
                    plural: "configmaps".into(),
                    namespace: Some(namespace.clone()),
                },
            );
            tasks.push(tokio::spawn(configmaps::run(
                client.clone(),
                namespace,
                selector.labels.clone(),
                index,
                tx.clone(),
                status.clone(),
                reporter,
            )));
            count += 1;
        }
        drop(tx);
        let mut cluster = None;
        let mut gate: Option<Gate> = None;
        if let (Some(options), Some(client)) = (&config.cluster_context, &client) {
            let started = KubeCluster::start(client.clone(), options.clone(), health.clone());
            tasks.extend(started.tasks);
            gate = Some(started.ready);
            cluster = Some(started.context);
        }
        let loop_cluster = cluster.clone();
        let cluster_index = config.cluster_context.as_ref().map(|options| {
            let description = format!(
                "namespaces and the ConfigMaps labelled {} (reflectors), API reads, data.inventory",
                options.cached_config_maps
            );
            status.register(SourceKind::ClusterContext, description)
        });
        let gate_status = status.clone();
        tasks.push(tokio::spawn(async move {
            if let Some(gate) = gate {
                tracing::info!("waiting for the cluster context (namespaces) before publishing the first policy set");
                gate.await;
                if let Some(index) = cluster_index {
                    gate_status.update(index, |s| {
                        s.synced = true;
                        s.updated_at = Some(std::time::SystemTime::now());
                    });
                }
            }
            publish_loop(publisher, rx, count, loop_cluster).await
        }));
        Ok(Running {
            tasks,
            client,
            cluster,
        })
    }
}

/// A Kubernetes client for `config`, on the ring crypto provider (the process default is set to ring if none is
/// set yet, so the client's TLS never depends on which providers other crates enable).
pub fn client_from(config: kube::Config) -> Result<kube::Client, SourceError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(kube::Client::try_from(config)?)
}

/// Receive snapshots, rebuild from the union of the latest snapshot of every source, publish.
async fn publish_loop(
    publisher: Publisher,
    mut rx: mpsc::Receiver<Update>,
    sources: usize,
    cluster: Option<Arc<KubeCluster>>,
) {
    let mut latest: Vec<Option<Snapshot>> = (0..sources).map(|_| None).collect();
    let mut last_hash: Option<String> = None;
    let mut crd_problem = false;
    while let Some(update) = rx.recv().await {
        let mut pending = vec![update];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        for update in pending {
            if let Some(slot) = latest.get_mut(update.source) {
                *slot = Some(update.snapshot);
            }
        }
        if latest.iter().any(Option::is_none) {
            continue;
        }
        let (files, errors) = union(&latest);
        if !errors.is_empty() {
            last_hash = None;
            let publisher = publisher.clone();
            if let Err(err) = tokio::task::spawn_blocking(move || publisher.reject(errors)).await {
                tracing::error!(error = %err, "policy load task failed");
            }
            continue;
        }
        let hash = crate::policy::content_hash(&files);
        if last_hash.as_deref() == Some(hash.as_str()) {
            tracing::debug!(hash = %hash, "policy sources changed but their content did not; no rebuild");
            continue;
        }
        last_hash = Some(hash);
        let known = match cluster.as_deref() {
            Some(cluster) => custom_kinds(cluster, &mut crd_problem).await,
            None => None,
        };
        let task_publisher = publisher.clone().with_known_kinds(known);
        let published = tokio::task::spawn_blocking(move || {
            let kinds = sync_kinds(&files);
            task_publisher.publish_files(&files).map(|_| kinds)
        })
        .await;
        match published {
            Ok(Ok(kinds)) => follow_sync_kinds(cluster.as_deref(), kinds),
            Ok(Err(_)) => {}
            Err(err) => {
                // Compiling cannot panic by design; if it did, count it as a failed load and keep the active set.
                tracing::error!(error = %err, "policy load task failed; the active policy set keeps serving");
                publisher.metrics.policy_load_errors.inc();
                last_hash = None;
            }
        }
    }
}

/// The cluster's CRD kinds for a load, read fresh (CRDs come and go); when they cannot be read, the load warns about
/// unknown kinds from the built-in list alone, and the first failure (and the recovery) is logged.
async fn custom_kinds(cluster: &KubeCluster, problem: &mut bool) -> Option<Arc<KnownKinds>> {
    match tokio::time::timeout(std::time::Duration::from_secs(10), cluster.custom_kinds()).await {
        Ok(Ok(kinds)) => {
            if std::mem::take(problem) {
                tracing::info!(
                    kinds = kinds.len(),
                    "listing CustomResourceDefinitions works again"
                );
            }
            Some(Arc::new(kinds))
        }
        Ok(Err(err)) => {
            if !std::mem::replace(problem, true) {
                tracing::warn!(
                    error = %err,
                    "cannot list CustomResourceDefinitions (grant list on customresourcedefinitions.\
                     apiextensions.k8s.io): load warnings about unknown kinds use the built-in kinds only"
                );
            }
            None
        }
        Err(_) => {
            if !std::mem::replace(problem, true) {
                tracing::warn!("listing CustomResourceDefinitions timed out; load warnings use the built-in kinds only");
            }
            None
        }
    }
}

/// Sync the kinds the new set's Gatekeeper `Config`/`SyncSet` name; without a cluster context, say they are not.
fn follow_sync_kinds(cluster: Option<&KubeCluster>, kinds: BTreeSet<SyncKind>) {
    match cluster {
        Some(cluster) => cluster.sync(kinds),
        None if !kinds.is_empty() => tracing::warn!(
            kinds = ?kinds,
            "a Gatekeeper Config or SyncSet names kinds to sync, but --cluster-context is off: \
             data.inventory stays empty"
        ),
        None => {}
    }
}

/// The files of every source, or the errors of every source that failed.
fn union(latest: &[Option<Snapshot>]) -> (Vec<SourceFile>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for snapshot in latest.iter().flatten() {
        match snapshot {
            Ok(more) => files.extend(more.iter().cloned()),
            Err(more) => errors.extend(more.iter().cloned()),
        }
    }
    (files, errors)
}

/// What tells whether a snapshot changed: the content hash of its files, or the text of its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapshotKey {
    /// The content hash of the snapshot's files.
    Files(String),
    /// The snapshot's errors, one per line.
    Errors(String),
}

/// The key of `snapshot` (see [`SnapshotKey`]).
pub(crate) fn snapshot_key(snapshot: &Snapshot) -> SnapshotKey {
    match snapshot {
        Ok(files) => SnapshotKey::Files(crate::policy::content_hash(files)),
        Err(errors) => SnapshotKey::Errors(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SourceRef;

    fn file(origin: &str, content: &str) -> SourceFile {
        SourceFile {
            origin: origin.into(),
            content: content.into(),
        }
    }

    fn publisher() -> Publisher {
        Publisher::new(
            Arc::new(PolicyStore::new()),
            Arc::new(Metrics::new()),
            LoadOptions::default(),
        )
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn publishing_an_empty_set_logs_a_warning() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let published = tracing::subscriber::with_default(subscriber, || {
            publisher().publish(Compiled::default())
        });
        assert!(published.is_ok(), "an empty first set is served");
        let text = String::from_utf8_lossy(&captured.0.lock().expect("lock")).to_string();
        assert!(
            text.contains("WARN") && text.contains("no policies: every request is admitted"),
            "{text}"
        );
    }

    /// Wait until the loop has taken every update out of the channel (it handles them one batch at a time).
    async fn drained(tx: &mpsc::Sender<Update>) {
        for _ in 0..1000 {
            if tx.capacity() == tx.max_capacity() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the publisher did not take its updates");
    }

    #[tokio::test]
    async fn an_https_client_builds_on_ring() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().expect("url"));
        config.default_namespace = "policyctl".into();
        let client = client_from(config).expect("client");
        assert_eq!(client.default_namespace(), "policyctl");
    }

    #[tokio::test]
    async fn waits_for_every_source_then_publishes_the_union() {
        let publisher = publisher();
        let store = publisher.store().clone();
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(publish_loop(publisher, rx, 2, None));
        let a = "package a\n\ndeny contains \"a\" if false\n";
        let b = "package b\n\ndeny contains \"b\" if false\n";
        tx.send(Update {
            source: 0,
            snapshot: Ok(vec![file("dir/a.rego", a)]),
        })
        .await
        .expect("send");
        tx.send(Update {
            source: 1,
            snapshot: Ok(vec![file("ns/cm/b.rego", b)]),
        })
        .await
        .expect("send");
        drop(tx);
        task.await.expect("loop ends");
        let set = store.current().expect("published");
        let names: Vec<String> = set
            .policies()
            .iter()
            .map(|p| p.info().name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_failing_source_keeps_the_active_set_and_same_content_does_not_rebuild() {
        let publisher = publisher();
        let store = publisher.store().clone();
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(publish_loop(publisher, rx, 1, None));
        let good = vec![file(
            "p/a.rego",
            "package a\n\ndeny contains \"a\" if false\n",
        )];
        tx.send(Update {
            source: 0,
            snapshot: Ok(good.clone()),
        })
        .await
        .expect("send");
        drained(&tx).await;
        tx.send(Update {
            source: 0,
            snapshot: Ok(good.clone()),
        })
        .await
        .expect("send");
        drained(&tx).await;
        let broken = vec![LoadError::new(SourceRef::file("p/b.rego"), "cannot read")];
        tx.send(Update {
            source: 0,
            snapshot: Err(broken),
        })
        .await
        .expect("send");
        drop(tx);
        task.await.expect("loop ends");
        assert_eq!(store.current().map(|s| s.generation()), Some(1));
        let failure = store.last_error().expect("recorded");
        assert_eq!(failure.errors[0].to_string(), "p/b.rego: cannot read");
    }
}
