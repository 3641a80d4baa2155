//! `input.review`: the AdmissionRequest as Gatekeeper hands it to templates.
//!
//! - Webhook: the request as received, with `namespaceObject` added (the Namespace object, or `null`). On DELETE,
//!   `object` is the `oldObject` (a DELETE without `oldObject` is an error). For Namespace requests
//!   `request.namespace` is blanked, as Gatekeeper does.
//! - gator and audit with a plain object: a synthesized request with only `kind`, `name`, `namespace` and `object`,
//!   plus the zero values Go's JSON encoding emits (`uid: ""`, `operation: ""`, `userInfo: {}`, an empty
//!   `resource`).

use serde_json::{json, Value};

use super::matching::Target;
use crate::support;

/// A request ready for matching and evaluation.
#[derive(Debug, Clone)]
pub struct Request {
    /// The review as JSON (what `input.review` is).
    pub review: Value,
    /// The same as a regorus value, converted once.
    pub rego: regorus::Value,
}

fn non_null(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

fn get_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

impl Request {
    /// Build from an AdmissionRequest JSON and the Namespace object of its namespace, if known.
    pub fn new(mut request: Value, namespace_object: Option<Value>) -> Result<Request, String> {
        let Some(map) = request.as_object_mut() else {
            return Err("the admission request is not an object".into());
        };
        let operation = map.get("operation").and_then(Value::as_str).unwrap_or("");
        if operation == "DELETE" {
            match non_null(map.get("oldObject")).cloned() {
                Some(old) => {
                    map.insert("object".into(), old);
                }
                None => return Err("a DELETE request without oldObject cannot be reviewed".into()),
            }
        }
        let is_namespace = subject_kind(&request) == ("", "Namespace");
        let Some(map) = request.as_object_mut() else {
            return Err("the admission request is not an object".into());
        };
        if is_namespace && map.contains_key("namespace") {
            map.insert("namespace".into(), Value::String(String::new()));
        }
        map.insert(
            "namespaceObject".into(),
            namespace_object.unwrap_or(Value::Null),
        );
        let rego = support::to_rego(&request);
        Ok(Request {
            review: request,
            rego,
        })
    }

    /// The review gator builds for a plain object.
    pub fn for_object(object: Value, namespace_object: Option<Value>) -> Result<Request, String> {
        if !object.is_object() {
            return Err("the object under review is not a mapping".into());
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
        Request::new(request, namespace_object)
    }

    /// What the matcher looks at. As in Gatekeeper, kinds match on the object under review (the old object on
    /// DELETE, which [`Request::new`] put in `object`); `request.kind` is only the fallback for an object without
    /// `apiVersion`/`kind`. gator's AdmissionReview test objects often carry no `request.kind`.
    pub fn target(&self) -> Target<'_> {
        target_of(&self.review, non_null(self.review.get("namespaceObject")))
    }

    /// `request.operation`.
    pub fn operation(&self) -> &str {
        self.review
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// What the matcher looks at in an AdmissionRequest as received (or as [`Request::new`] normalised it): on DELETE
/// the object under review is `oldObject`; a Namespace request has no request namespace.
pub fn target_of<'a>(request: &'a Value, namespace_object: Option<&'a Value>) -> Target<'a> {
    let delete = get_str(request.get("operation")) == Some("DELETE");
    let object = if delete {
        non_null(request.get("oldObject"))
    } else {
        non_null(request.get("object"))
    };
    let (group, kind) = kind_of(object, request);
    let namespace = get_str(request.get("namespace")).filter(|s| !s.is_empty());
    Target {
        group,
        kind,
        object,
        old_object: non_null(request.get("oldObject")),
        request_namespace: namespace.filter(|_| (group, kind) != ("", "Namespace")),
        namespace_object,
    }
}

/// `input.review` for a served request, from the review's shared regorus form ([`support::review_value`]): its
/// `request` member with the object under review in `object` (the old object on DELETE), a Namespace request's
/// namespace blanked and `namespaceObject` added. Only the request's top-level map is copied; no object is converted
/// again.
pub fn served_review(
    shared: &regorus::Value,
    request: &Value,
    namespace_object: Option<&Value>,
) -> Result<regorus::Value, String> {
    let mut review = shared[&regorus::Value::from("request")].clone();
    let target = target_of(request, None);
    let delete = get_str(request.get("operation")) == Some("DELETE");
    if delete && target.object.is_none() {
        return Err("a DELETE request without oldObject cannot be reviewed".into());
    }
    let map = review
        .as_object_mut()
        .map_err(|_| "the admission request is not an object".to_string())?;
    if delete {
        let old = map
            .get(&regorus::Value::from("oldObject"))
            .cloned()
            .unwrap_or(regorus::Value::Null);
        map.insert(regorus::Value::from("object"), old);
    }
    if (target.group, target.kind) == ("", "Namespace")
        && map.contains_key(&regorus::Value::from("namespace"))
    {
        map.insert(regorus::Value::from("namespace"), regorus::Value::from(""));
    }
    map.insert(
        regorus::Value::from("namespaceObject"),
        namespace_object.map_or(regorus::Value::Null, support::to_rego),
    );
    Ok(review)
}

/// The group and kind of the object under review (`object`, which holds the old object on DELETE), falling back to
/// `request.kind` when the object does not say.
fn subject_kind(request: &Value) -> (&str, &str) {
    kind_of(non_null(request.get("object")), request)
}

fn kind_of<'a>(object: Option<&'a Value>, request: &'a Value) -> (&'a str, &'a str) {
    let kind = get_str(object.and_then(|o| o.get("kind"))).filter(|k| !k.is_empty());
    if let Some(kind) = kind {
        let api_version = get_str(object.and_then(|o| o.get("apiVersion"))).unwrap_or("");
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        return (group, kind);
    }
    let requested = request.get("kind");
    (
        get_str(requested.and_then(|k| k.get("group"))).unwrap_or(""),
        get_str(requested.and_then(|k| k.get("kind"))).unwrap_or(""),
    )
}

/// The template input `{review, parameters}`.
pub fn input(review: &regorus::Value, parameters: &regorus::Value) -> regorus::Value {
    let mut input = regorus::Value::new_object();
    if let Ok(map) = input.as_object_mut() {
        map.insert(regorus::Value::from("review"), review.clone());
        map.insert(regorus::Value::from("parameters"), parameters.clone());
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_reviews_the_old_object() {
        let old = json!({"kind": "Pod", "metadata": {"name": "p"}});
        let req = json!({"operation": "DELETE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": null, "oldObject": old});
        let request = Request::new(req, None).expect("valid");
        assert_eq!(request.review["object"], old);
        assert_eq!(request.review["namespaceObject"], Value::Null);
        let broken = json!({"operation": "DELETE", "kind": {"kind": "Pod"}, "object": null});
        assert!(Request::new(broken, None).is_err());
    }

    #[test]
    fn gator_review_has_go_zero_values() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"}});
        let request = Request::for_object(object, None).expect("valid");
        assert_eq!(request.review["uid"], "");
        assert_eq!(request.review["operation"], "");
        assert_eq!(request.review["userInfo"], json!({}));
        assert_eq!(
            request.review["kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(request.review["namespace"], "ns");
        let target = request.target();
        assert_eq!(
            (target.group, target.kind, target.request_namespace),
            ("apps", "Deployment", Some("ns"))
        );
    }

    #[test]
    fn namespace_requests_blank_the_namespace() {
        let req = json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Namespace"}, "namespace": "x", "object": {}});
        let request = Request::new(req, None).expect("valid");
        assert_eq!(request.review["namespace"], "");
    }

    #[test]
    fn kinds_come_from_the_object_under_review() {
        // gator's AdmissionReview objects often have no request.kind.
        let req = json!({"operation": "UPDATE", "object": {"apiVersion": "apps/v1", "kind": "Deployment"}});
        let request = Request::new(req, None).expect("valid");
        let target = request.target();
        assert_eq!((target.group, target.kind), ("apps", "Deployment"));
        // DELETE looks at the old object.
        let req = json!({"operation": "DELETE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": null,
            "oldObject": {"apiVersion": "v1", "kind": "ConfigMap"}});
        let target_kind = Request::new(req, None).map(|r| {
            let t = r.target();
            (t.group.to_string(), t.kind.to_string())
        });
        assert_eq!(target_kind, Ok((String::new(), "ConfigMap".to_string())));
        // Without apiVersion/kind on the object, request.kind decides.
        let req = json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": {}});
        let request = Request::new(req, None).expect("valid");
        assert_eq!(request.target().kind, "Pod");
    }

    #[test]
    fn served_review_equals_the_normalised_request() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}});
        for req in [
            json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "apps",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "oldObject": null}),
            json!({"operation": "DELETE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "apps",
                "object": null, "oldObject": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "old"}}}),
            json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Namespace"},
                "namespace": "apps", "object": {"apiVersion": "v1", "kind": "Namespace"}}),
        ] {
            let document = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req});
            let shared = support::to_rego(&document);
            let served = served_review(&shared, &req, Some(&ns)).expect("served");
            let normalised = Request::new(req.clone(), Some(ns.clone())).expect("normalised");
            assert_eq!(support::to_json(&served), normalised.review, "{req}");
            let (a, b) = (target_of(&req, Some(&ns)), normalised.target());
            assert_eq!(
                (a.group, a.kind, a.object, a.old_object, a.request_namespace),
                (b.group, b.kind, b.object, b.old_object, b.request_namespace),
                "{req}"
            );
        }
        let broken = json!({"operation": "DELETE", "kind": {"kind": "Pod"}, "object": null});
        let shared = support::to_rego(&json!({"request": broken}));
        assert!(served_review(&shared, &broken, None).is_err());
    }
}
