//! A minimal, hermetic fake of the Kubernetes API's ConfigMap and Namespace endpoints (list, watch, get), on
//! 127.0.0.1 port 0.
//!
//! Faithful to the watch protocol as far as a watcher relies on it: every write bumps a global resourceVersion; a
//! list (`GET /api/v1/namespaces/NS/configmaps?labelSelector=...`) answers the matching objects and the list's
//! resourceVersion; a watch (`...&watch=true&resourceVersion=RV`) streams, one JSON object per line, every
//! `ADDED`/`MODIFIED`/`DELETED` event after RV that matches, a `BOOKMARK` first, and stays open for new events. A
//! watch from a resourceVersion older than the last compaction gets an `ERROR` event with a 410 `Expired` Status, as
//! the API server answers after etcd compaction; [`FakeApi::compact`] also ends the open watches. A GET of a missing
//! object answers a 404 `NotFound` Status. Ingresses (`networking.k8s.io/v1`, with its discovery document) can be
//! listed and watched too, CustomResourceDefinitions listed, and [`FakeApi::forbid`] makes a path answer 403 `Forbidden` as RBAC does.
//!
//! For the cluster audit: discovery (`/api`, `/apis` and each group version's resources), paged lists (`limit` and
//! `continue`, as the API server pages: a continue token while more objects remain; every list is recorded, see
//! [`FakeApi::lists`]), metadata-only lists (`Accept: ...;as=PartialObjectMetadataList`), and the
//! `wgpolicyk8s.io/v1alpha2` PolicyReports and ClusterPolicyReports (`/apis` also lists `metrics.k8s.io/v1beta1`, whose
//! discovery fails, as an aggregated API that is down does): server-side apply (PATCH
//! `application/apply-patch+yaml`, which must name a field manager), GET, DELETE, and lists by label.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::watch;

/// (kind, namespace, name); cluster-scoped objects have an empty namespace.
type Key = (String, String, String);

#[derive(Default)]
struct Inner {
    resource_version: u64,
    objects: BTreeMap<Key, Value>,
    /// (resourceVersion, event type, object) in order.
    log: Vec<(u64, &'static str, Value)>,
    /// Watches from before this resourceVersion are expired.
    compacted: u64,
    /// Bumped by `compact` to end the open watches.
    epoch: u64,
    lists: usize,
    watches: usize,
    gets: usize,
    /// Single-object GETs hang (an overloaded API server).
    hang: bool,
    /// Paths answered 403.
    forbidden: std::collections::BTreeSet<String>,
    /// Every list served: (path, limit asked, objects returned).
    list_log: Vec<ListServed>,
    /// Server-side applies served: (kind, namespace, name, fieldManager).
    applies: Vec<(String, String, String, String)>,
    /// Deletes served: (kind, namespace, name).
    deletes: Vec<(String, String, String)>,
}

/// One list the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListServed {
    /// The path, without the query.
    pub path: String,
    /// The `limit` asked for.
    pub limit: Option<usize>,
    /// How many objects the answer held.
    pub returned: usize,
    /// Whether it was a metadata-only list.
    pub metadata_only: bool,
    /// The label selector.
    pub selector: Option<String>,
}

/// The fake API server.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    changes: Arc<watch::Sender<u64>>,
    addr: SocketAddr,
}

impl FakeApi {
    /// Serve on 127.0.0.1, port 0.
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (changes, _) = watch::channel(0);
        let api = FakeApi {
            inner: Arc::default(),
            changes: Arc::new(changes),
            addr,
        };
        let router = Router::new()
            .route(
                "/api/v1/namespaces/{namespace}/configmaps",
                get(config_maps_in),
            )
            .route(
                "/api/v1/namespaces/{namespace}/configmaps/{name}",
                get(config_map),
            )
            .route("/api/v1/configmaps", get(all_config_maps))
            .route("/api/v1", get(core_resources))
            .route("/api/v1/namespaces", get(namespaces))
            .route("/api/v1/namespaces/{namespace}", get(namespace))
            .route("/apis/networking.k8s.io/v1", get(networking_resources))
            .route("/apis/networking.k8s.io/v1/ingresses", get(all_ingresses))
            .route(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                get(all_crds),
            )
            .route("/api", get(core_versions))
            .route("/apis", get(api_groups))
            .route("/apis/wgpolicyk8s.io/v1alpha2", get(report_resources))
            .route(
                "/apis/wgpolicyk8s.io/v1alpha2/policyreports",
                get(all_policy_reports),
            )
            .route(
                "/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports",
                get(all_cluster_policy_reports),
            )
            .route(
                "/apis/wgpolicyk8s.io/v1alpha2/namespaces/{namespace}/policyreports/{name}",
                get(get_policy_report)
                    .patch(apply_policy_report)
                    .delete(delete_policy_report),
            )
            .route(
                "/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/{name}",
                get(get_cluster_policy_report)
                    .patch(apply_cluster_policy_report)
                    .delete(delete_cluster_policy_report),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        api
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client talking to this fake, with `namespace` as its default namespace.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().expect("url"));
        config.default_namespace = namespace.to_string();
        kube::Client::try_from(config).expect("client")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("lock")
    }

    /// Create or replace a ConfigMap.
    pub fn apply(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        data: &[(&str, &str)],
    ) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        self.put("ConfigMap", namespace, name, labels, json!({"data": data}));
    }

    /// Create or replace an Ingress with one rule for `host`.
    pub fn apply_ingress(&self, namespace: &str, name: &str, host: &str) {
        self.put(
            "Ingress",
            namespace,
            name,
            &[],
            json!({"spec": {"rules": [{"host": host}]}}),
        );
    }

    /// Create or replace a CustomResourceDefinition of `kind` in `group` (only what a list reader needs).
    pub fn apply_crd(&self, group: &str, kind: &str, plural: &str) {
        self.put(
            "CustomResourceDefinition",
            "",
            &format!("{plural}.{group}"),
            &[],
            json!({"spec": {"group": group, "names": {"kind": kind, "plural": plural}, "scope": "Namespaced"}}),
        );
    }

    /// Answer list, watch and GET requests on `path` with 403 Forbidden (or stop).
    pub fn forbid(&self, path: &str, forbidden: bool) {
        let mut inner = self.lock();
        if forbidden {
            inner.forbidden.insert(path.to_string());
        } else {
            inner.forbidden.remove(path);
        }
    }

    /// Create or replace a Namespace.
    pub fn apply_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        self.put(
            "Namespace",
            "",
            name,
            labels,
            json!({"spec": {"finalizers": ["kubernetes"]}}),
        );
    }

    fn put(&self, kind: &str, namespace: &str, name: &str, labels: &[(&str, &str)], body: Value) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let rv = inner.resource_version;
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let mut metadata = json!({
            "name": name,
            "uid": format!("uid-{namespace}-{name}"),
            "resourceVersion": rv.to_string(),
            "labels": labels,
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        });
        if !namespace.is_empty() {
            metadata["namespace"] = json!(namespace);
        }
        let api_version = match kind {
            "Ingress" => "networking.k8s.io/v1",
            "CustomResourceDefinition" => "apiextensions.k8s.io/v1",
            _ => "v1",
        };
        let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
        if let (Some(fields), Some(body)) = (object.as_object_mut(), body.as_object()) {
            fields.extend(body.clone());
        }
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        let event = if inner.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.objects.insert(key, object.clone());
        inner.log.push((rv, event, object));
        drop(inner);
        self.changes.send_replace(rv);
    }

    /// Delete a ConfigMap.
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut inner = self.lock();
        let key = (
            "ConfigMap".to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let Some(mut object) = inner.objects.remove(&key) else {
            return;
        };
        inner.resource_version += 1;
        let rv = inner.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.log.push((rv, "DELETED", object));
        drop(inner);
        self.changes.send_replace(rv);
    }

    /// Create `count` ConfigMaps `NAME_PREFIX-i` in `namespace` at once (one event notification), with `labels`.
    pub fn apply_many(&self, namespace: &str, prefix: &str, count: usize, labels: &[(&str, &str)]) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let mut inner = self.lock();
        for i in 0..count {
            inner.resource_version += 1;
            let rv = inner.resource_version;
            let name = format!("{prefix}-{i:05}");
            let object = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                             "resourceVersion": rv.to_string(), "labels": labels},
                "data": {"index": i.to_string()},
            });
            inner.objects.insert(
                ("ConfigMap".to_string(), namespace.to_string(), name),
                object.clone(),
            );
            inner.log.push((rv, "ADDED", object));
        }
        let rv = inner.resource_version;
        drop(inner);
        self.changes.send_replace(rv);
    }

    /// Store a report as someone else (or policyctl before) wrote it: `kind` is `PolicyReport` (with a namespace)
    /// or `ClusterPolicyReport`.
    pub fn apply_report(&self, kind: &str, namespace: &str, name: &str, labels: &[(&str, &str)]) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let mut metadata = json!({"name": name, "labels": labels});
        if !namespace.is_empty() {
            metadata["namespace"] = json!(namespace);
        }
        let body = json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": kind, "metadata": metadata,
                          "results": [], "summary": {}});
        upsert(self, kind, namespace, name, body);
    }

    /// The stored reports of `kind`, by (namespace, name).
    pub fn reports(&self, kind: &str) -> BTreeMap<(String, String), Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((k, _, _), _)| k == kind)
            .map(|((_, ns, name), v)| ((ns.clone(), name.clone()), v.clone()))
            .collect()
    }

    /// Every list served so far.
    pub fn lists(&self) -> Vec<ListServed> {
        self.lock().list_log.clone()
    }

    /// Server-side applies served: (kind, namespace, name, field manager).
    pub fn applies(&self) -> Vec<(String, String, String, String)> {
        self.lock().applies.clone()
    }

    /// Deletes served: (kind, namespace, name).
    pub fn deletes(&self) -> Vec<(String, String, String)> {
        self.lock().deletes.clone()
    }

    /// Forget the event history (as etcd compaction does) and end every open watch: watchers must relist.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.compacted = inner.resource_version + 1;
        inner.log.clear();
        inner.epoch += 1;
        let rv = inner.resource_version;
        drop(inner);
        self.changes.send_replace(rv);
    }

    /// How many lists and watches were served.
    pub fn requests(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.lists, inner.watches)
    }

    /// Make single-object GETs hang (or answer again).
    pub fn hang_gets(&self, hang: bool) {
        self.lock().hang = hang;
    }

    /// How many single-object GETs were served.
    pub fn gets(&self) -> usize {
        self.lock().gets
    }
}

/// `a=b,c==d,e` (equality and existence; enough for the tests).
fn selects(selector: Option<&str>, object: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| {
        let term = term.trim();
        match term.split_once("==").or_else(|| term.split_once('=')) {
            Some((key, value)) => {
                labels.get(key.trim()).and_then(Value::as_str) == Some(value.trim())
            }
            None => labels.get(term).is_some(),
        }
    })
}

/// Which objects a request is about: a kind, in one namespace or in all.
#[derive(Clone)]
struct Scope {
    kind: &'static str,
    namespace: Option<String>,
}

impl Scope {
    fn holds(&self, object: &Value) -> bool {
        object["kind"].as_str() == Some(self.kind)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
    }
}

async fn config_maps_in(
    State(api): State<FakeApi>,
    Path(namespace): Path<String>,
    uri: Uri,
) -> Response {
    list_or_watch(
        api,
        Scope {
            kind: "ConfigMap",
            namespace: Some(namespace),
        },
        &uri,
    )
}

async fn all_config_maps(State(api): State<FakeApi>, uri: Uri) -> Response {
    list_or_watch(
        api,
        Scope {
            kind: "ConfigMap",
            namespace: None,
        },
        &uri,
    )
}

async fn all_ingresses(State(api): State<FakeApi>, uri: Uri) -> Response {
    list_or_watch(
        api,
        Scope {
            kind: "Ingress",
            namespace: None,
        },
        &uri,
    )
}

async fn all_crds(State(api): State<FakeApi>, uri: Uri) -> Response {
    list_or_watch(
        api,
        Scope {
            kind: "CustomResourceDefinition",
            namespace: None,
        },
        &uri,
    )
}

async fn namespaces(State(api): State<FakeApi>, uri: Uri) -> Response {
    list_or_watch(
        api,
        Scope {
            kind: "Namespace",
            namespace: None,
        },
        &uri,
    )
}

async fn config_map(
    State(api): State<FakeApi>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    if api.lock().hang {
        std::future::pending::<()>().await;
    }
    get_object(&api, ("ConfigMap".to_string(), namespace, name))
}

async fn namespace(State(api): State<FakeApi>, Path(name): Path<String>) -> Response {
    get_object(&api, ("Namespace".to_string(), String::new(), name))
}

/// Discovery of the core group: the resources this fake serves.
async fn core_resources() -> Response {
    let list = json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap",
             "verbs": ["get", "list", "watch"]},
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
             "verbs": ["get", "list", "watch"]},
        ],
    });
    json_response(StatusCode::OK, &list)
}

/// Discovery of `networking.k8s.io/v1`: ingresses.
async fn networking_resources() -> Response {
    let list = json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "networking.k8s.io/v1",
        "resources": [
            {"name": "ingresses", "singularName": "ingress", "namespaced": true, "kind": "Ingress",
             "verbs": ["get", "list", "watch"]},
        ],
    });
    json_response(StatusCode::OK, &list)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn get_object(api: &FakeApi, key: Key) -> Response {
    let mut inner = api.lock();
    inner.gets += 1;
    match inner.objects.get(&key) {
        Some(object) => json_response(StatusCode::OK, object),
        None => {
            let message = format!("{} {:?} not found", key.0.to_lowercase(), key.2);
            let status = json!({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": message, "reason": "NotFound", "code": 404,
            });
            json_response(StatusCode::NOT_FOUND, &status)
        }
    }
}

fn list_or_watch(api: FakeApi, scope: Scope, uri: &Uri) -> Response {
    list_or_watch_as(api, scope, uri, false)
}

fn list_or_watch_as(api: FakeApi, scope: Scope, uri: &Uri, metadata_only: bool) -> Response {
    if api.lock().forbidden.contains(uri.path()) {
        let resource = uri.path().rsplit('/').next().unwrap_or_default();
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": format!(
                "{resource} is forbidden: User \"system:serviceaccount:policyctl:policyctl\" cannot list resource \"{resource}\" at the cluster scope"
            ),
            "reason": "Forbidden", "code": 403,
        });
        return json_response(StatusCode::FORBIDDEN, &status);
    }
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let selector = query.get("labelSelector").cloned();
    if query.get("watch").map(String::as_str) == Some("true") {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        return watch_response(api, scope, selector, from);
    }
    let limit: Option<usize> = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0);
    // The continue token is the position of the next object among the matching ones, in key order.
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut inner = api.lock();
    inner.lists += 1;
    let matching = inner
        .objects
        .values()
        .filter(|o| scope.holds(o) && selects(selector.as_deref(), o))
        .skip(start);
    let mut items: Vec<Value> = Vec::new();
    for object in matching {
        if limit.is_some_and(|limit| items.len() >= limit) {
            break;
        }
        items.push(if metadata_only {
            json!({"apiVersion": object["apiVersion"], "kind": object["kind"], "metadata": object["metadata"]})
        } else {
            object.clone()
        });
    }
    // More remain when the page is full and another object matches.
    let more = limit.is_some_and(|limit| items.len() == limit) && {
        let next = start + items.len();
        inner
            .objects
            .values()
            .filter(|o| scope.holds(o) && selects(selector.as_deref(), o))
            .nth(next)
            .is_some()
    };
    let mut metadata = json!({"resourceVersion": inner.resource_version.to_string()});
    if more {
        metadata["continue"] = json!((start + items.len()).to_string());
    }
    let returned = items.len();
    inner.list_log.push(ListServed {
        path: uri.path().to_string(),
        limit,
        returned,
        metadata_only,
        selector: selector.clone(),
    });
    let body = json!({
        "apiVersion": "v1",
        "kind": format!("{}List", scope.kind),
        "metadata": metadata,
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

/// Discovery: the core group's versions.
async fn core_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
    )
}

/// Discovery: the groups this fake serves.
async fn api_groups() -> Response {
    let group = |name: &str, version: &str| {
        let gv = format!("{name}/{version}");
        json!({"name": name, "versions": [{"groupVersion": gv, "version": version}],
               "preferredVersion": {"groupVersion": gv, "version": version}})
    };
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            group("networking.k8s.io", "v1"),
            group("wgpolicyk8s.io", "v1alpha2"),
            // Listed but its discovery answers 404: an aggregated API whose backend is down.
            group("metrics.k8s.io", "v1beta1"),
        ]}),
    )
}

/// Discovery of `wgpolicyk8s.io/v1alpha2`: the reports.
async fn report_resources() -> Response {
    let verbs = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "wgpolicyk8s.io/v1alpha2",
                "resources": [
            {"name": "policyreports", "singularName": "policyreport", "namespaced": true, "kind": "PolicyReport",
             "verbs": verbs},
            {"name": "clusterpolicyreports", "singularName": "clusterpolicyreport", "namespaced": false,
             "kind": "ClusterPolicyReport", "verbs": verbs},
        ]}),
    )
}

fn wants_metadata(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadataList"))
}

async fn all_policy_reports(State(api): State<FakeApi>, headers: HeaderMap, uri: Uri) -> Response {
    let scope = Scope {
        kind: "PolicyReport",
        namespace: None,
    };
    list_or_watch_as(api, scope, &uri, wants_metadata(&headers))
}

async fn all_cluster_policy_reports(
    State(api): State<FakeApi>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let scope = Scope {
        kind: "ClusterPolicyReport",
        namespace: None,
    };
    list_or_watch_as(api, scope, &uri, wants_metadata(&headers))
}

async fn get_policy_report(
    State(api): State<FakeApi>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    get_object(&api, ("PolicyReport".to_string(), namespace, name))
}

async fn get_cluster_policy_report(
    State(api): State<FakeApi>,
    Path(name): Path<String>,
) -> Response {
    get_object(
        &api,
        ("ClusterPolicyReport".to_string(), String::new(), name),
    )
}

async fn apply_policy_report(
    State(api): State<FakeApi>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    apply(
        &api,
        "PolicyReport",
        &namespace,
        &name,
        &headers,
        &uri,
        &body,
    )
}

async fn apply_cluster_policy_report(
    State(api): State<FakeApi>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    apply(
        &api,
        "ClusterPolicyReport",
        "",
        &name,
        &headers,
        &uri,
        &body,
    )
}

async fn delete_policy_report(
    State(api): State<FakeApi>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    delete_object(&api, ("PolicyReport".to_string(), namespace, name))
}

async fn delete_cluster_policy_report(
    State(api): State<FakeApi>,
    Path(name): Path<String>,
) -> Response {
    delete_object(
        &api,
        ("ClusterPolicyReport".to_string(), String::new(), name),
    )
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    json_response(code, &body)
}

/// Server-side apply of a whole report: the body replaces the stored object (policyctl owns every field of its
/// reports); the body must name the object it is applied to.
fn apply(
    api: &FakeApi,
    kind: &str,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/apply-patch+yaml" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("only server-side apply is served, not {content_type}"),
        );
    }
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "fieldManager is required for apply requests".into(),
        );
    };
    let Ok(object) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
    };
    if object["kind"] != kind
        || object["metadata"]["name"] != name
        || object["metadata"]["namespace"].as_str().unwrap_or("") != namespace
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body does not match the path".into(),
        );
    }
    api.lock().applies.push((
        kind.to_string(),
        namespace.to_string(),
        name.to_string(),
        manager.clone(),
    ));
    let stored = upsert(api, kind, namespace, name, object);
    json_response(StatusCode::OK, &stored)
}

/// Store `body` under (kind, namespace, name) with a new resourceVersion and a uid; returns the stored object.
fn upsert(api: &FakeApi, kind: &str, namespace: &str, name: &str, mut body: Value) -> Value {
    let mut inner = api.lock();
    inner.resource_version += 1;
    let rv = inner.resource_version;
    body["metadata"]["resourceVersion"] = json!(rv.to_string());
    body["metadata"]["uid"] = json!(format!("uid-{kind}-{namespace}-{name}"));
    let key = (kind.to_string(), namespace.to_string(), name.to_string());
    let event = if inner.objects.contains_key(&key) {
        "MODIFIED"
    } else {
        "ADDED"
    };
    inner.objects.insert(key, body.clone());
    inner.log.push((rv, event, body.clone()));
    drop(inner);
    api.changes.send_replace(rv);
    body
}

fn delete_object(api: &FakeApi, key: Key) -> Response {
    let mut inner = api.lock();
    let Some(object) = inner.objects.remove(&key) else {
        drop(inner);
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} {:?} not found", key.0.to_lowercase(), key.2),
        );
    };
    inner.resource_version += 1;
    let rv = inner.resource_version;
    inner.log.push((rv, "DELETED", object.clone()));
    inner.deletes.push(key);
    drop(inner);
    api.changes.send_replace(rv);
    json_response(StatusCode::OK, &object)
}

fn line(value: &Value) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(format!("{value}\n")))
}

fn watch_response(api: FakeApi, scope: Scope, selector: Option<String>, from: u64) -> Response {
    let (epoch, expired, current) = {
        let mut inner = api.lock();
        inner.watches += 1;
        (inner.epoch, from < inner.compacted, inner.resource_version)
    };
    let headers = [(header::CONTENT_TYPE, "application/json")];
    if expired {
        let status = json!({
            "type": "ERROR",
            "object": {
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from} ({current})"), "reason": "Expired", "code": 410,
            },
        });
        return (
            StatusCode::OK,
            headers,
            Body::from_stream(futures::stream::iter([line(&status)])),
        )
            .into_response();
    }
    let bookmark = json!({
        "type": "BOOKMARK",
        "object": {"apiVersion": "v1", "kind": scope.kind, "metadata": {"resourceVersion": from.max(1).to_string()}},
    });
    let changes = api.changes.subscribe();
    let state = (api, changes, from, Some(bookmark));
    let stream = futures::stream::unfold(state, move |(api, mut changes, mut cursor, bookmark)| {
        let scope = scope.clone();
        let selector = selector.clone();
        async move {
            if let Some(bookmark) = bookmark {
                return Some((line(&bookmark), (api, changes, cursor, None)));
            }
            loop {
                changes.borrow_and_update();
                let next = {
                    let inner = api.lock();
                    if inner.epoch != epoch {
                        return None;
                    }
                    let next = inner.log.iter().find(|(rv, _, _)| *rv > cursor).cloned();
                    if next.is_none() {
                        cursor = cursor.max(inner.resource_version);
                    }
                    next
                };
                match next {
                    Some((rv, event, object)) => {
                        cursor = rv;
                        if scope.holds(&object) && selects(selector.as_deref(), &object) {
                            let event = json!({"type": event, "object": object});
                            return Some((line(&event), (api, changes, cursor, None)));
                        }
                    }
                    None => {
                        if changes.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            }
        }
    });
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}
