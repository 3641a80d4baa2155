//! Cluster context for policies from the Kubernetes API: read-only, cached, memory-bounded
//! ([`policy::ClusterContext`](crate::policy::ClusterContext)).
//!
//! - Namespaces: a kube-runtime reflector of every Namespace (managed fields dropped) answers
//!   [`ClusterContext::namespace`] from memory, for `namespaceSelector` matching and Gatekeeper's `namespaceObject`.
//!   A namespace the reflector has not seen yet (created a moment ago) is looked up with a GET, through the cache.
//! - ConfigMaps: a reflector of the ConfigMaps labelled for caching (by default `cache.kyverno.io/enabled=true`, the
//!   label Kyverno uses for the same purpose) answers from memory; any other ConfigMap is read with a GET, through
//!   the cache. Reflecting every ConfigMap of a cluster would make memory grow with the cluster.
//! - [`ClusterContext::api_get`]: a GET on the API server (`/api/...` or `/apis/...`), with a time limit, a response
//!   size limit, and a cache bounded in bytes whose entries (answers and errors alike) live for a short TTL. Secrets
//!   are never read: policies must not see Secret data.
//!
//! Evaluations are synchronous and run on blocking threads; a GET is run on the async runtime and waited for with
//! the time limit, so a slow API server delays an evaluation by at most that limit.
//!
//! - [`ClusterContext::inventory`]: Gatekeeper's `data.inventory`, see [`inventory`].
//!
//! RBAC needed: `get`, `list`, `watch` on `namespaces` (cluster-wide); `get`, `list`, `watch` on `configmaps`
//! (cluster-wide, for the labelled cache and ConfigMap lookups); plus `get` (and `list` for collection paths) on
//! whatever resources the policies' API calls read; `list`, `watch` on the kinds synced into `data.inventory`.
//! Every list/watch reports to [`health`]: a forbidden one is shown with the rule to add, and makes the templates that
//! read the inventory fail under their failure policy ([`ClusterContext::inventory_problem`]).

pub mod health;
pub mod inventory;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::policy::kinds::KnownKinds;
use crate::policy::{ApiReadError, ClusterContext, PathRule};
use health::{Resource, SyncHealth};
use inventory::{Inventory, SyncKind};

/// Limits and selectors of the cluster context.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// ConfigMaps with these labels are kept in memory.
    pub cached_config_maps: String,
    /// Time limit of one API GET.
    pub api_timeout: Duration,
    /// How long a GET's answer (or error) is reused.
    pub api_ttl: Duration,
    /// Largest API response accepted.
    pub max_response_bytes: usize,
    /// Memory budget of the GET cache (sum of the cached responses' sizes).
    pub cache_bytes: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            cached_config_maps: "cache.kyverno.io/enabled=true".to_string(),
            api_timeout: Duration::from_secs(2),
            api_ttl: Duration::from_secs(10),
            max_response_bytes: 4 << 20,
            cache_bytes: 32 << 20,
        }
    }
}

/// Cluster context backed by reflectors and a bounded GET cache.
pub struct KubeCluster {
    client: Client,
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
    api: ApiCache,
    inventory: Inventory,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("namespaces", &self.namespaces.state().len())
            .field("config_maps", &self.config_maps.state().len())
            .finish()
    }
}

/// A started cluster context: the context, the tasks feeding it, and a future that completes once both
/// reflectors have listed.
pub struct StartedCluster {
    /// The context.
    pub context: Arc<KubeCluster>,
    /// The reflector tasks (abort them to stop).
    pub tasks: Vec<JoinHandle<()>>,
    /// Completes when the namespaces and the cached ConfigMaps have been listed once.
    pub ready: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl KubeCluster {
    /// Start the reflectors on the current tokio runtime; their failures go to `health`.
    pub fn start(client: Client, options: ClusterOptions, health: SyncHealth) -> StartedCluster {
        let (namespaces, namespace_writer) = reflector::store::<Namespace>();
        let namespace_events = watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|ns| ns.metadata.managed_fields = None)
        .reflect(namespace_writer);
        let (config_maps, config_map_writer) = reflector::store::<ConfigMap>();
        let config_map_events = watcher(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().labels(&options.cached_config_maps),
        )
        .default_backoff()
        .modify(|cm| cm.metadata.managed_fields = None)
        .reflect(config_map_writer);
        let cluster_wide = |plural: &str| Resource {
            group: String::new(),
            plural: plural.to_string(),
            namespace: None,
        };
        let tasks = vec![
            tokio::spawn(health::drive(
                health.sync("namespaces", cluster_wide("namespaces")),
                namespace_events,
            )),
            tokio::spawn(health::drive(
                health.sync(
                    &format!("configmaps {}", options.cached_config_maps),
                    cluster_wide("configmaps"),
                ),
                config_map_events,
            )),
        ];
        let ready = {
            let namespaces = namespaces.clone();
            let config_maps = config_maps.clone();
            Box::pin(async move {
                let _ = namespaces.wait_until_ready().await;
                let _ = config_maps.wait_until_ready().await;
            })
        };
        let handle = tokio::runtime::Handle::current();
        let api = ApiCache::new(client.clone(), handle.clone(), &options);
        let inventory = Inventory::new(client.clone(), handle, health);
        StartedCluster {
            context: Arc::new(KubeCluster {
                client,
                namespaces,
                config_maps,
                api,
                inventory,
            }),
            tasks,
            ready,
        }
    }
}

fn to_json<K: serde::Serialize>(object: &K) -> Option<Value> {
    serde_json::to_value(object).ok()
}

impl ClusterContext for KubeCluster {
    fn namespace(&self, name: &str) -> Option<Value> {
        if let Some(ns) = self.namespaces.get(&ObjectRef::new(name)) {
            return to_json(&*ns);
        }
        if name.is_empty() || name.contains('/') {
            return None;
        }
        self.api.get(&format!("/api/v1/namespaces/{name}")).ok()
    }

    fn config_map(&self, namespace: &str, name: &str) -> Option<Value> {
        if let Some(cm) = self
            .config_maps
            .get(&ObjectRef::new(name).within(namespace))
        {
            return to_json(&*cm);
        }
        if namespace.is_empty() || name.is_empty() || namespace.contains('/') || name.contains('/')
        {
            return None;
        }
        self.api
            .get(&format!("/api/v1/namespaces/{namespace}/configmaps/{name}"))
            .ok()
    }

    fn api_get(&self, path: &str) -> Result<Value, ApiReadError> {
        self.api.get(path)
    }

    fn inventory(&self) -> Option<Arc<Value>> {
        self.inventory.snapshot()
    }

    fn inventory_problem(&self) -> Option<String> {
        self.inventory.problem()
    }
}

impl KubeCluster {
    /// The kinds the cluster's CustomResourceDefinitions define, `(spec.group, spec.names.kind)`, listed in pages
    /// (needs `list` on `customresourcedefinitions.apiextensions.k8s.io`). A load given them does not warn about a
    /// kind a CRD defines.
    pub async fn custom_kinds(&self) -> Result<KnownKinds, kube::Error> {
        let resource = ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let mut kinds = Vec::new();
        let mut params = ListParams::default().limit(100);
        // A bound on pages, in case a server keeps answering continue tokens.
        for _ in 0..1000 {
            let page = api.list(&params).await?;
            kinds.extend(page.items.iter().filter_map(|crd| {
                let spec = crd.data.get("spec")?;
                let group = spec.get("group")?.as_str()?;
                let kind = spec.pointer("/names/kind")?.as_str()?;
                Some((group.to_string(), kind.to_string()))
            }));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(KnownKinds::new(kinds))
    }

    /// Sync exactly these kinds into `data.inventory`.
    pub fn sync(&self, kinds: std::collections::BTreeSet<SyncKind>) {
        self.inventory.sync(kinds);
    }
}

/// Check that `path` is a read of the Kubernetes API that policies may make.
pub fn check_path(path: &str) -> Result<(), ApiReadError> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let broken = if !(route.starts_with("/api/") || route.starts_with("/apis/")) {
        Some(PathRule::NotApi)
    } else if route
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        Some(PathRule::DotSegment)
    } else if route.split('/').any(|segment| segment == "secrets") {
        Some(PathRule::Secrets)
    } else if query
        .split('&')
        .any(|param| param.starts_with("watch=") || param == "watch")
    {
        Some(PathRule::Watch)
    } else {
        None
    };
    match broken {
        Some(rule) => Err(ApiReadError::NotAllowed {
            path: path.to_string(),
            rule,
        }),
        None => Ok(()),
    }
}

/// The answer of one GET: a value, or an error that is either definite (the object does not exist, access is
/// forbidden: worth caching) or transient (time-out, connection, server error: tried again next time).
#[derive(Debug, Clone)]
enum Fetched {
    Value(Value, usize),
    Definite(ApiReadError),
    Transient(ApiReadError),
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    size: usize,
    value: Result<Value, ApiReadError>,
}

/// A TTL cache bounded in bytes and in entries; the oldest entries go first.
#[derive(Debug)]
struct Cache {
    entries: HashMap<String, Entry>,
    bytes: usize,
    ttl: Duration,
    budget: usize,
    max_entries: usize,
}

impl Cache {
    fn new(ttl: Duration, budget: usize, max_entries: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            bytes: 0,
            ttl,
            budget,
            max_entries: max_entries.max(1),
        }
    }

    fn lookup(&self, path: &str) -> Option<Result<Value, ApiReadError>> {
        self.entries
            .get(path)
            .filter(|e| e.at.elapsed() < self.ttl)
            .map(|e| e.value.clone())
    }

    fn remove(&mut self, path: &str) {
        if let Some(old) = self.entries.remove(path) {
            self.bytes = self.bytes.saturating_sub(old.size);
        }
    }

    fn insert(&mut self, path: &str, value: Result<Value, ApiReadError>, size: usize) {
        let size = size.max(path.len());
        self.remove(path);
        // One entry may take at most an eighth of the budget: a huge answer is not worth evicting everything for.
        if size > self.budget / 8 {
            return;
        }
        if self.bytes + size > self.budget || self.entries.len() >= self.max_entries {
            let ttl = self.ttl;
            let expired: Vec<String> = self
                .entries
                .iter()
                .filter(|(_, e)| e.at.elapsed() >= ttl)
                .map(|(k, _)| k.clone())
                .collect();
            for key in expired {
                self.remove(&key);
            }
        }
        while self.bytes + size > self.budget || self.entries.len() >= self.max_entries {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.bytes += size;
        self.entries.insert(
            path.to_string(),
            Entry {
                at: Instant::now(),
                size,
                value,
            },
        );
    }
}

/// Time-limited GETs with a TTL cache bounded in bytes and entries.
struct ApiCache {
    client: Client,
    handle: tokio::runtime::Handle,
    timeout: Duration,
    max_response_bytes: usize,
    cache: Mutex<Cache>,
}

impl ApiCache {
    fn new(client: Client, handle: tokio::runtime::Handle, options: &ClusterOptions) -> ApiCache {
        ApiCache {
            client,
            handle,
            timeout: options.api_timeout,
            max_response_bytes: options.max_response_bytes,
            cache: Mutex::new(Cache::new(
                options.api_ttl,
                options.cache_bytes,
                MAX_CACHE_ENTRIES,
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, path: &str) -> Result<Value, ApiReadError> {
        check_path(path)?;
        if let Some(hit) = self.lock().lookup(path) {
            return hit;
        }
        // A review tried on an async worker must not wait for the network there: it goes to an evaluation thread,
        // which reads (see `server::inline`).
        if crate::server::inline::refuse_blocking_read() {
            return Err(ApiReadError::NotOnWorker {
                path: path.to_string(),
            });
        }
        match self.fetch(path) {
            Fetched::Value(value, size) => {
                self.lock().insert(path, Ok(value.clone()), size);
                Ok(value)
            }
            Fetched::Definite(err) => {
                // The entry's size: about what the error holds.
                let size = err.path().len() + 64;
                self.lock().insert(path, Err(err.clone()), size);
                Err(err)
            }
            Fetched::Transient(err) => Err(err),
        }
    }

    /// Run the GET on the runtime and wait for it for at most the time limit. Works from any thread; on a runtime
    /// worker it blocks that worker for at most the time limit.
    fn fetch(&self, path: &str) -> Fetched {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let client = self.client.clone();
        let request_path = path.to_string();
        let limit = self.timeout;
        let max = self.max_response_bytes;
        self.handle.spawn(async move {
            let fetched = match tokio::time::timeout(limit, get_text(client, &request_path)).await {
                Ok(Ok(text)) if text.len() > max => Fetched::Definite(ApiReadError::TooLarge {
                    path: request_path,
                    max,
                }),
                Ok(Ok(text)) => match serde_json::from_str::<Value>(&text) {
                    Ok(value) => Fetched::Value(value, text.len()),
                    Err(err) => Fetched::Transient(ApiReadError::NotJson {
                        path: request_path,
                        source: Arc::new(err),
                    }),
                },
                Ok(Err(fetched)) => fetched,
                Err(_) => Fetched::Transient(ApiReadError::Timeout {
                    path: request_path,
                    limit,
                }),
            };
            let _ = tx.send(fetched);
        });
        rx.recv_timeout(self.timeout + Duration::from_millis(250))
            .unwrap_or_else(|_| {
                Fetched::Transient(ApiReadError::Timeout {
                    path: path.to_string(),
                    limit: self.timeout,
                })
            })
    }
}

/// Entries of the GET cache at most.
const MAX_CACHE_ENTRIES: usize = 4096;

async fn get_text(client: Client, path: &str) -> Result<String, Fetched> {
    let request = axum::http::Request::get(path)
        .body(Vec::new())
        .map_err(|err| {
            Fetched::Definite(ApiReadError::Transport {
                path: path.to_string(),
                source: Arc::new(err),
            })
        })?;
    client.request_text(request).await.map_err(|err| match err {
        kube::Error::Api(status) => {
            let definite = matches!(status.code, 400 | 401 | 403 | 404 | 405 | 410);
            let error = ApiReadError::Status {
                path: path.to_string(),
                code: status.code,
                message: status.message,
            };
            if definite {
                Fetched::Definite(error)
            } else {
                Fetched::Transient(error)
            }
        }
        other => Fetched::Transient(ApiReadError::Transport {
            path: path.to_string(),
            source: Arc::new(other),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_its_byte_and_entry_budgets_and_forgets_after_the_ttl() {
        let mut cache = Cache::new(Duration::from_secs(60), 1000, 3);
        cache.insert("/api/a", Ok(Value::from(1)), 100);
        cache.insert("/api/b", Ok(Value::from(2)), 100);
        cache.insert(
            "/api/c",
            Err(ApiReadError::NotInContext {
                path: "/api/c".into(),
            }),
            10,
        );
        assert!(
            matches!(cache.lookup("/api/a"), Some(Ok(v)) if v == 1),
            "a cached value"
        );
        assert!(
            matches!(
                cache.lookup("/api/c"),
                Some(Err(ApiReadError::NotInContext { .. }))
            ),
            "a cached error, as it was"
        );
        cache.insert("/api/d", Ok(Value::from(4)), 100);
        assert_eq!(cache.entries.len(), 3, "the entry bound holds");
        assert!(cache.lookup("/api/a").is_none(), "the oldest went first");
        cache.insert("/api/e", Ok(Value::from(5)), 120);
        assert!(cache.bytes <= 1000);
        cache.insert("/api/huge", Ok(Value::from(6)), 126);
        assert!(
            cache.lookup("/api/huge").is_none(),
            "more than an eighth of the budget is not cached"
        );
        let bytes: usize = cache.entries.values().map(|e| e.size).sum();
        assert_eq!(cache.bytes, bytes, "the byte count matches the entries");

        let mut short = Cache::new(Duration::ZERO, 1000, 3);
        short.insert("/api/a", Ok(Value::from(1)), 10);
        assert!(short.lookup("/api/a").is_none(), "expired");
    }

    #[test]
    fn only_reads_of_the_api_outside_secrets() {
        assert!(check_path("/api/v1/namespaces/default/pods").is_ok());
        assert!(check_path("/apis/apps/v1/namespaces/a/deployments?labelSelector=app%3Dx").is_ok());
        let broken = |path: &str| match check_path(path) {
            Err(ApiReadError::NotAllowed { path: named, rule }) => {
                assert_eq!(named, path);
                Some(rule)
            }
            Err(other) => panic!("{path}: {other:?}"),
            Ok(()) => None,
        };
        assert_eq!(broken("https://example.com/"), Some(PathRule::NotApi));
        assert_eq!(broken("/healthz"), Some(PathRule::NotApi));
        assert_eq!(
            broken("/api/v1/namespaces/default/secrets/token"),
            Some(PathRule::Secrets)
        );
        assert_eq!(broken("/api/v1/secrets"), Some(PathRule::Secrets));
        assert_eq!(
            broken("/api/v1/namespaces/../secrets"),
            Some(PathRule::DotSegment)
        );
        assert_eq!(broken("/api/v1/pods?watch=true"), Some(PathRule::Watch));
    }
}
