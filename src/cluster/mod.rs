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
//! RBAC needed: `get`, `list`, `watch` on `namespaces` (cluster-wide); `get`, `list`, `watch` on `configmaps`
//! (cluster-wide, for the labelled cache and ConfigMap lookups); plus `get` (and `list` for collection paths) on
//! whatever resources the policies' API calls read.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::policy::ClusterContext;

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
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
    api: ApiCache,
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
    /// Start the reflectors on the current tokio runtime.
    pub fn start(client: Client, options: ClusterOptions) -> StartedCluster {
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
        let tasks = vec![
            tokio::spawn(drive("namespaces", namespace_events)),
            tokio::spawn(drive("cached ConfigMaps", config_map_events)),
        ];
        let ready = {
            let namespaces = namespaces.clone();
            let config_maps = config_maps.clone();
            Box::pin(async move {
                let _ = namespaces.wait_until_ready().await;
                let _ = config_maps.wait_until_ready().await;
            })
        };
        let api = ApiCache::new(client, tokio::runtime::Handle::current(), &options);
        StartedCluster {
            context: Arc::new(KubeCluster {
                namespaces,
                config_maps,
                api,
            }),
            tasks,
            ready,
        }
    }
}

async fn drive<S, K>(what: &'static str, events: S)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut events = Box::pin(events);
    while let Some(event) = events.next().await {
        if let Err(err) = event {
            tracing::warn!(error = %err, "watching {what} for the cluster context failed; retrying");
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

    fn api_get(&self, path: &str) -> Result<Value, String> {
        self.api.get(path)
    }
}

/// Check that `path` is a read of the Kubernetes API that policies may make.
pub fn check_path(path: &str) -> Result<(), String> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    if !(route.starts_with("/api/") || route.starts_with("/apis/")) {
        return Err(format!(
            "{path}: only Kubernetes API paths (/api/..., /apis/...) can be read"
        ));
    }
    if route
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(format!(
            "{path}: the path must not contain . or .. segments"
        ));
    }
    if route.split('/').any(|segment| segment == "secrets") {
        return Err(format!("{path}: policies cannot read Secrets"));
    }
    if query
        .split('&')
        .any(|param| param.starts_with("watch=") || param == "watch")
    {
        return Err(format!("{path}: watches are not allowed, only reads"));
    }
    Ok(())
}

struct Entry {
    at: Instant,
    size: usize,
    value: Result<Value, String>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    bytes: usize,
}

/// Time-limited GETs with a TTL cache bounded in bytes.
struct ApiCache {
    client: Client,
    handle: tokio::runtime::Handle,
    timeout: Duration,
    ttl: Duration,
    max_response_bytes: usize,
    budget: usize,
    cache: Mutex<Cache>,
}

impl ApiCache {
    fn new(client: Client, handle: tokio::runtime::Handle, options: &ClusterOptions) -> ApiCache {
        ApiCache {
            client,
            handle,
            timeout: options.api_timeout,
            ttl: options.api_ttl,
            max_response_bytes: options.max_response_bytes,
            budget: options.cache_bytes,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        check_path(path)?;
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = cache.entries.get(path) {
                if entry.at.elapsed() < self.ttl {
                    return entry.value.clone();
                }
            }
        }
        let (value, size) = self.fetch(path);
        self.remember(path, value.clone(), size);
        value
    }

    /// Run the GET on the runtime and wait for it for at most the time limit. Works from any thread; on a runtime
    /// worker it blocks that worker for at most the time limit.
    fn fetch(&self, path: &str) -> (Result<Value, String>, usize) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let client = self.client.clone();
        let request_path = path.to_string();
        let limit = self.timeout;
        let max = self.max_response_bytes;
        self.handle.spawn(async move {
            let result = match tokio::time::timeout(limit, get_text(client, &request_path)).await {
                Ok(Ok(text)) if text.len() > max => Err(format!(
                    "{request_path}: the response exceeds the limit of {max} bytes"
                )),
                Ok(Ok(text)) => serde_json::from_str::<Value>(&text)
                    .map(|value| (value, text.len()))
                    .map_err(|err| format!("{request_path}: the response is not JSON: {err}")),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(format!(
                    "{request_path}: the API server did not answer within {limit:?}"
                )),
            };
            let _ = tx.send(result);
        });
        match rx.recv_timeout(self.timeout + Duration::from_millis(250)) {
            Ok(Ok((value, size))) => (Ok(value), size),
            Ok(Err(err)) => (Err(err), 0),
            Err(_) => (
                Err(format!(
                    "{path}: the API server did not answer within {:?}",
                    self.timeout
                )),
                0,
            ),
        }
    }

    fn remember(&self, path: &str, value: Result<Value, String>, size: usize) {
        let size = size.max(path.len());
        if size > self.budget / 8 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = cache.entries.remove(path) {
            cache.bytes -= old.size;
        }
        // Drop expired entries, then the oldest, until the new one fits.
        let ttl = self.ttl;
        let expired: Vec<String> = cache
            .entries
            .iter()
            .filter(|(_, e)| e.at.elapsed() >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(old) = cache.entries.remove(&key) {
                cache.bytes -= old.size;
            }
        }
        while cache.bytes + size > self.budget {
            let Some(oldest) = cache
                .entries
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = cache.entries.remove(&oldest) {
                cache.bytes -= old.size;
            }
        }
        cache.bytes += size;
        cache.entries.insert(
            path.to_string(),
            Entry {
                at: Instant::now(),
                size,
                value,
            },
        );
    }
}

async fn get_text(client: Client, path: &str) -> Result<String, String> {
    let request = axum::http::Request::get(path)
        .body(Vec::new())
        .map_err(|err| format!("{path}: {err}"))?;
    client.request_text(request).await.map_err(|err| match err {
        kube::Error::Api(status) => format!("{path}: {} ({})", status.message, status.code),
        other => format!("{path}: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_of_the_api_outside_secrets() {
        assert!(check_path("/api/v1/namespaces/default/pods").is_ok());
        assert!(check_path("/apis/apps/v1/namespaces/a/deployments?labelSelector=app%3Dx").is_ok());
        assert!(check_path("https://example.com/").is_err());
        assert!(check_path("/healthz").is_err());
        assert!(check_path("/api/v1/namespaces/default/secrets/token").is_err());
        assert!(check_path("/api/v1/secrets").is_err());
        assert!(check_path("/api/v1/namespaces/../secrets").is_err());
        assert!(check_path("/api/v1/pods?watch=true").is_err());
    }
}
