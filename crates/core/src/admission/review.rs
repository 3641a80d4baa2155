//! The decoded admission request.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `admission.k8s.io` version of the review; the answer is given in the same version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVersion {
    /// `admission.k8s.io/v1`
    V1,
    /// `admission.k8s.io/v1beta1`
    V1Beta1,
}

impl ReviewVersion {
    /// The `apiVersion` string.
    pub fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => "admission.k8s.io/v1",
            ReviewVersion::V1Beta1 => "admission.k8s.io/v1beta1",
        }
    }
}

/// The operation of an admission request.
pub use kube::core::admission::Operation;

/// Group, version and kind of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Gvk {
    /// API group; `""` for the core group.
    #[serde(default)]
    pub group: String,
    /// API version, e.g. `v1`.
    #[serde(default)]
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
}

impl Gvk {
    /// Build from parts.
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Gvk {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// Split an `apiVersion` (`apps/v1` or `v1`) and a kind.
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        match api_version.split_once('/') {
            Some((group, version)) => Gvk::new(group, version, kind),
            None => Gvk::new("", api_version, kind),
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for Gvk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.kind)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.kind)
        }
    }
}

/// Group, version and resource (plural) of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gvr {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Resource, e.g. `pods`.
    #[serde(default)]
    pub resource: String,
}

/// The requesting user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// User name, e.g. `system:serviceaccount:ns:name`.
    #[serde(default)]
    pub username: String,
    /// User UID.
    #[serde(default)]
    pub uid: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One admission request, decoded.
///
/// The typed fields are a read-only view; [`Review::document`] is the review as received, which engines use as their
/// input document. A review is immutable; [`Review::with_object`] makes the review a mutation chain hands to the next
/// policy.
pub struct Review {
    /// Version of the `AdmissionReview` it came in.
    pub version: ReviewVersion,
    /// `request.uid`, echoed in the response.
    pub uid: String,
    /// `request.kind`.
    pub kind: Gvk,
    /// `request.resource`.
    pub resource: Gvr,
    /// `request.subResource`.
    pub sub_resource: Option<String>,
    /// `request.name` (may be empty on CREATE with `generateName`).
    pub name: String,
    /// `request.namespace`; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `request.operation`.
    pub operation: Operation,
    /// `request.userInfo`.
    pub user_info: UserInfo,
    /// `request.dryRun`.
    pub dry_run: bool,
    document: Value,
    cache: Cache,
}

impl fmt::Debug for Review {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the objects: they may hold Secret data.
        f.debug_struct("Review")
            .field("uid", &self.uid)
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

/// The typed part of `request`, read without copying the objects.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestHeader {
    #[serde(default)]
    pub uid: String,
    pub kind: Gvk,
    #[serde(default)]
    pub resource: Gvr,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl Review {
    pub(super) fn from_parts(
        version: ReviewVersion,
        header: RequestHeader,
        document: Value,
    ) -> Self {
        let namespace = header.namespace.filter(|ns| !ns.is_empty());
        Review {
            version,
            uid: header.uid,
            kind: header.kind,
            resource: header.resource,
            sub_resource: header.sub_resource.filter(|s| !s.is_empty()),
            name: header.name.unwrap_or_default(),
            namespace,
            operation: header.operation,
            user_info: header.user_info,
            dry_run: header.dry_run.unwrap_or(false),
            document,
            cache: Cache::default(),
        }
    }

    /// A review synthesized for a plain manifest (used by `policyctl eval` and the test runners).
    ///
    /// `object` is the new object for CREATE/UPDATE; for DELETE it becomes `oldObject`. For UPDATE, `old_object`
    /// defaults to the object itself.
    pub fn for_object(object: Value, old_object: Option<Value>, operation: Operation) -> Review {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let gvk = Gvk::from_api_version(api_version, kind);
        let metadata = object.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .map(str::to_string);
        let resource = Gvr {
            group: gvk.group.clone(),
            version: gvk.version.clone(),
            resource: plural(&gvk.kind),
        };
        let (new, old) = match operation {
            Operation::Delete => (Value::Null, Some(object)),
            Operation::Update => {
                let old = old_object.unwrap_or_else(|| object.clone());
                (object, Some(old))
            }
            _ => (object, old_object),
        };
        let op_str = operation_str(&operation);
        let mut request = json!({
            "uid": "00000000-0000-0000-0000-000000000000",
            "kind": gvk,
            "resource": resource,
            "name": name,
            "operation": op_str,
            "userInfo": {},
            "object": new,
            "oldObject": old.unwrap_or(Value::Null),
            "dryRun": false,
        });
        if let (Some(ns), Some(map)) = (&namespace, request.as_object_mut()) {
            map.insert("namespace".into(), Value::String(ns.clone()));
        }
        let document = json!({
            "apiVersion": ReviewVersion::V1.api_version(),
            "kind": "AdmissionReview",
            "request": request,
        });
        Review {
            version: ReviewVersion::V1,
            uid: "00000000-0000-0000-0000-000000000000".into(),
            kind: gvk,
            resource,
            sub_resource: None,
            name,
            namespace,
            operation,
            user_info: UserInfo::default(),
            dry_run: false,
            document,
            cache: Cache::default(),
        }
    }

    /// A review around a request written by a test or an audit rather than sent by the API server (gator's
    /// AdmissionReview test objects and the requests gator synthesizes, which may lack `kind`, `uid` or
    /// `operation`). The typed fields are read leniently: the kind from `request.kind`, else from the object (the old
    /// object on DELETE); the operation CREATE when absent or unknown. The document keeps the request exactly as
    /// written, so engines that read the request (Gatekeeper's `input.review`) see it unchanged.
    pub fn synthesized(request: Value) -> Review {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let operation = match request.get("operation").and_then(Value::as_str) {
            Some("UPDATE") => Operation::Update,
            Some("DELETE") => Operation::Delete,
            Some("CONNECT") => Operation::Connect,
            _ => Operation::Create,
        };
        let non_null = |key: &str| request.get(key).filter(|v| !v.is_null());
        let subject = match operation {
            Operation::Delete => non_null("oldObject").or_else(|| non_null("object")),
            _ => non_null("object").or_else(|| non_null("oldObject")),
        };
        let kind = request
            .get("kind")
            .and_then(|k| serde_json::from_value::<Gvk>(k.clone()).ok())
            .filter(|k| !k.kind.is_empty())
            .unwrap_or_else(|| {
                Gvk::from_api_version(
                    &text(subject.and_then(|o| o.get("apiVersion"))),
                    &text(subject.and_then(|o| o.get("kind"))),
                )
            });
        let meta = |field: &str| {
            text(
                subject
                    .and_then(|o| o.get("metadata"))
                    .and_then(|m| m.get(field)),
            )
        };
        let name = Some(text(request.get("name")))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| meta("name"));
        let namespace = Some(text(request.get("namespace")))
            .filter(|n| !n.is_empty())
            .or_else(|| Some(meta("namespace")))
            .filter(|n| !n.is_empty());
        let user_info = request
            .get("userInfo")
            .and_then(|u| serde_json::from_value::<UserInfo>(u.clone()).ok())
            .unwrap_or_default();
        let resource = request
            .get("resource")
            .and_then(|r| serde_json::from_value::<Gvr>(r.clone()).ok())
            .unwrap_or_default();
        let uid = text(request.get("uid"));
        let document = json!({
            "apiVersion": ReviewVersion::V1.api_version(),
            "kind": "AdmissionReview",
            "request": request,
        });
        Review {
            version: ReviewVersion::V1,
            uid,
            kind,
            resource,
            sub_resource: None,
            name,
            namespace,
            operation,
            user_info,
            dry_run: false,
            document,
            cache: Cache::default(),
        }
    }

    /// A review of `object` as it exists, for audits: [`existing_object_request`] read by [`Review::synthesized`]
    /// (no user, no operation). `None` when the object is not a mapping.
    pub fn existing(object: Value) -> Option<Review> {
        existing_object_request(object).map(Review::synthesized)
    }

    /// The whole `AdmissionReview` document as received.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The `request` member.
    pub fn request(&self) -> &Value {
        &self.document["request"]
    }

    /// `request.object`, if present and not null.
    pub fn object(&self) -> Option<&Value> {
        self.request().get("object").filter(|v| !v.is_null())
    }

    /// `request.oldObject`, if present and not null.
    pub fn old_object(&self) -> Option<&Value> {
        self.request().get("oldObject").filter(|v| !v.is_null())
    }

    /// The object a policy should look at: `object`, or `oldObject` on DELETE.
    pub fn subject(&self) -> Option<&Value> {
        match self.operation {
            Operation::Delete => self.old_object().or_else(|| self.object()),
            _ => self.object().or_else(|| self.old_object()),
        }
    }

    /// The operation as the API server spells it (`CREATE`, ...).
    pub fn operation_str(&self) -> &'static str {
        operation_str(&self.operation)
    }

    /// This review as made by `user` (`request.userInfo`), for reviews synthesized by tests.
    pub fn with_user_info(mut self, user: UserInfo) -> Review {
        if let Some(request) = self
            .document
            .get_mut("request")
            .and_then(Value::as_object_mut)
        {
            request.insert(
                "userInfo".into(),
                serde_json::to_value(&user).unwrap_or(Value::Null),
            );
        }
        self.user_info = user;
        self.cache = Cache::default();
        self
    }

    /// This review as a request on `resource` and `sub_resource` (`request.resource`, `request.subResource`), for
    /// reviews synthesized by tests of subresources (a `Binding` reviewed as `pods/binding`).
    pub fn with_resource(mut self, resource: Gvr, sub_resource: Option<String>) -> Review {
        if let Some(request) = self
            .document
            .get_mut("request")
            .and_then(Value::as_object_mut)
        {
            request.insert(
                "resource".into(),
                serde_json::to_value(&resource).unwrap_or(Value::Null),
            );
            match &sub_resource {
                Some(sub) => {
                    request.insert("subResource".into(), Value::String(sub.clone()));
                }
                None => {
                    request.remove("subResource");
                }
            }
        }
        self.resource = resource;
        self.sub_resource = sub_resource;
        self.cache = Cache::default();
        self
    }

    /// A copy of this review whose `request.object` is `object` (the next step of a mutation chain). The old object
    /// is not copied.
    pub fn with_object(&self, object: Value) -> Review {
        let mut object = Some(object);
        let document = match self.document.as_object() {
            Some(top) => Value::Object(
                top.iter()
                    .map(|(key, value)| {
                        let value = match (key.as_str(), value.as_object()) {
                            ("request", Some(request)) => {
                                let mut copy: serde_json::Map<String, Value> = request
                                    .iter()
                                    .filter(|(k, _)| k.as_str() != "object")
                                    .map(|(k, v)| (k.clone(), v.clone()))
                                    .collect();
                                copy.insert("object".into(), object.take().unwrap_or(Value::Null));
                                Value::Object(copy)
                            }
                            _ => value.clone(),
                        };
                        (key.clone(), value)
                    })
                    .collect(),
            ),
            None => self.document.clone(),
        };
        Review {
            version: self.version,
            uid: self.uid.clone(),
            kind: self.kind.clone(),
            resource: self.resource.clone(),
            sub_resource: self.sub_resource.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            operation: self.operation.clone(),
            user_info: self.user_info.clone(),
            dry_run: self.dry_run,
            document,
            cache: Cache::default(),
        }
    }

    /// The review's `request.object`, taken out of it.
    pub fn into_object(mut self) -> Option<Value> {
        self.document
            .get_mut("request")
            .and_then(|r| r.get_mut("object"))
            .map(Value::take)
            .filter(|v| !v.is_null())
    }

    /// A value derived from this review, computed once per review and shared by every policy that asks for it (for
    /// example an engine's own representation of the input document).
    pub fn cached<T: Any + Send + Sync>(&self, make: impl FnOnce(&Review) -> T) -> Arc<T> {
        if let Some(found) = self.cache.get::<T>() {
            return found;
        }
        let made = Arc::new(make(self));
        self.cache.put(made.clone());
        made
    }
}

/// The lower-case plural resource name Kubernetes derives from a kind (`Pod` → `pods`, `Ingress` → `ingresses`,
/// `NetworkPolicy` → `networkpolicies`). Used for reviews synthesized from plain manifests, and wherever a resource
/// must be named before discovery can (test context files, params lookups, RBAC hints).
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.is_empty() {
        return lower;
    }
    if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        return format!("{lower}es");
    }
    if let Some(stem) = lower.strip_suffix('y') {
        if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) {
            return format!("{stem}ies");
        }
    }
    format!("{lower}s")
}

/// The AdmissionRequest that reviews an object as it exists (an audit, a gator case), as Gatekeeper synthesizes it:
/// `kind`, `name`, `namespace` and `object`, plus the zero values Go's JSON encoding emits (`uid: ""`,
/// `operation: ""`, `userInfo: {}`, an empty `resource`). `None` when the object is not a mapping.
pub fn existing_object_request(object: Value) -> Option<Value> {
    if !object.is_object() {
        return None;
    }
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let meta = |field: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut request = json!({
        "uid": "",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": "", "version": "", "resource": ""},
        "operation": "",
        "userInfo": {},
        "object": object,
        "oldObject": null,
        "options": null,
    });
    if let Some(map) = request.as_object_mut() {
        let (name, namespace) = (meta("name"), meta("namespace"));
        if !name.is_empty() {
            map.insert("name".into(), Value::String(name));
        }
        if !namespace.is_empty() {
            map.insert("namespace".into(), Value::String(namespace));
        }
    }
    Some(request)
}

/// The API server's spelling of an operation.
pub fn operation_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Per-review memo of derived values, keyed by type.
#[derive(Default)]
struct Cache {
    slots: Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
}

impl Cache {
    fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, value)| value.clone().downcast::<T>().ok())
    }

    fn put<T: Any + Send + Sync>(&self, value: Arc<T>) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !slots.iter().any(|(id, _)| *id == TypeId::of::<T>()) {
            slots.push((TypeId::of::<T>(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_review_moves_object_to_old_object() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}});
        let review = Review::for_object(pod.clone(), None, Operation::Delete);
        assert!(review.object().is_none());
        assert_eq!(review.old_object(), Some(&pod));
        assert_eq!(review.subject(), Some(&pod));
        assert_eq!(review.namespace.as_deref(), Some("ns"));
        assert_eq!(review.resource.resource, "pods");
    }

    #[test]
    fn with_resource_sets_the_resource_and_subresource_in_the_request_too() {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": "ns"}});
        let review = Review::for_object(binding, None, Operation::Create);
        assert_eq!(review.resource.resource, "bindings");
        let pods = Gvr {
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
        };
        let review = review.with_resource(pods.clone(), Some("binding".into()));
        assert_eq!(review.resource, pods);
        assert_eq!(review.sub_resource.as_deref(), Some("binding"));
        assert_eq!(review.request()["resource"]["resource"], "pods");
        assert_eq!(review.request()["subResource"], "binding");
    }

    #[test]
    fn cache_computes_once() {
        let review = Review::for_object(
            json!({"kind": "Pod", "apiVersion": "v1"}),
            None,
            Operation::Create,
        );
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let a = review.cached(|_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            41u32
        });
        let b = review.cached(|_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            42u32
        });
        assert_eq!((*a, *b), (41, 41));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn plurals() {
        for (kind, plural_name) in [
            ("Pod", "pods"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
        ] {
            assert_eq!(plural(kind), plural_name);
        }
    }

    #[test]
    fn with_object_replaces_only_the_object() {
        let review = Review::for_object(
            json!({"kind": "Pod", "apiVersion": "v1"}),
            None,
            Operation::Create,
        );
        let next = review.with_object(json!({"kind": "Pod", "apiVersion": "v1", "x": 1}));
        assert_eq!(next.object().and_then(|o| o.get("x")), Some(&json!(1)));
        assert!(review.object().and_then(|o| o.get("x")).is_none());
        assert_eq!(next.request()["operation"], review.request()["operation"]);
        assert_eq!(next.old_object(), review.old_object());
        assert_eq!(
            next.into_object(),
            Some(json!({"kind": "Pod", "apiVersion": "v1", "x": 1}))
        );
    }

    #[test]
    fn synthesized_reviews_read_what_the_request_has() {
        // gator's update.yaml shape: no kind, no uid, no namespace in the request.
        let review = Review::synthesized(json!({
            "operation": "UPDATE",
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"}}
        }));
        assert_eq!(review.kind, Gvk::new("apps", "v1", "Deployment"));
        assert_eq!(review.operation, Operation::Update);
        assert_eq!(
            (review.name.as_str(), review.namespace.as_deref()),
            ("d", Some("ns"))
        );
        assert_eq!(review.request()["operation"], "UPDATE");
        // gator's own synthesized request: operation "" stays "" in the document.
        let review = Review::synthesized(
            json!({"operation": "", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "object": {"kind": "Pod", "metadata": {"name": "p"}}}),
        );
        assert_eq!(review.operation, Operation::Create);
        assert_eq!(review.request()["operation"], "");
        assert_eq!(review.kind.kind, "Pod");
        assert_eq!(review.namespace, None);
    }
}
