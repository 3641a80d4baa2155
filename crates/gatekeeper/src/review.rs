//! `input.review`: the AdmissionRequest as Gatekeeper hands it to templates.
//!
//! - Webhook: the request as received, with `namespaceObject` added (the Namespace object, or `null`). On DELETE,
//!   `object` is the `oldObject` (a DELETE without `oldObject` is an error). For Namespace requests
//!   `request.namespace` is blanked, as Gatekeeper does.
//! - gator and audit with a plain object: a synthesized request with only `kind`, `name`, `namespace` and `object`,
//!   plus the zero values Go's JSON encoding emits (`uid: ""`, `operation: ""`, `userInfo: {}`, an empty
//!   `resource`).

use serde_json::Value;

use super::matching::Target;
use crate::support;

fn non_null(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

fn get_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

/// The AdmissionRequest gator synthesizes for a plain object (see [`crate::admission::existing_object_request`]).
pub fn gator_request(object: Value) -> Result<Value, ReviewError> {
    crate::admission::existing_object_request(object).ok_or(ReviewError::NotAMapping)
}

/// Why a request cannot be put before a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// gator: the object under review is not a mapping.
    #[error("the object under review is not a mapping")]
    NotAMapping,
    /// A DELETE request reviews its old object, and has none.
    #[error("a DELETE request without oldObject cannot be reviewed")]
    DeleteWithoutOldObject,
    /// The request is not a JSON object.
    #[error("the admission request is not an object")]
    RequestNotAnObject,
}

/// What the matcher looks at in an AdmissionRequest as received. As in Gatekeeper, kinds match on the object under
/// review (the old object on DELETE); `request.kind` is only the fallback for an object without `apiVersion`/`kind`
/// (gator's AdmissionReview test objects often carry no `request.kind`); a Namespace request has no request
/// namespace.
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
/// namespace blanked and `namespaceObject` added. Only the request's top-level entries are copied, into one new
/// object (no object is converted again).
pub fn served_review(
    shared: &regorus::Value,
    request: &Value,
    namespace_object: Option<&Value>,
) -> Result<regorus::Value, ReviewError> {
    let target = target_of(request, None);
    let delete = get_str(request.get("operation")) == Some("DELETE");
    if delete && target.object.is_none() {
        return Err(ReviewError::DeleteWithoutOldObject);
    }
    let map = shared[&regorus::Value::from("request")]
        .as_object()
        .map_err(|_| ReviewError::RequestNotAnObject)?;
    let blank_namespace = (target.group, target.kind) == ("", "Namespace");
    let old_object = || {
        map.get(&regorus::Value::from("oldObject"))
            .cloned()
            .unwrap_or(regorus::Value::Null)
    };
    let mut entries = Vec::with_capacity(map.len() + 2);
    let mut has_object = false;
    for (key, value) in map.iter_sorted() {
        let value = match key {
            regorus::Value::String(k) if &**k == "object" && delete => {
                has_object = true;
                old_object()
            }
            regorus::Value::String(k) if &**k == "namespace" && blank_namespace => {
                regorus::Value::from("")
            }
            regorus::Value::String(k) if &**k == "namespaceObject" => continue,
            _ => value.clone(),
        };
        entries.push((key.clone(), value));
    }
    if delete && !has_object {
        entries.push((regorus::Value::from("object"), old_object()));
    }
    entries.push((
        regorus::Value::from("namespaceObject"),
        namespace_object.map_or(regorus::Value::Null, support::to_rego),
    ));
    // Sorted in place (the request's entries already are; only the added keys move), so the object is built from
    // them as they are.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(regorus::Value::from(regorus::value::Object::from_entries(
        entries,
    )))
}

/// The group and kind of `object`, falling back to `request.kind` when the object does not say.
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
    use serde_json::json;

    fn served(req: &Value, ns: Option<&Value>) -> Result<Value, ReviewError> {
        let shared = support::to_rego(&json!({"request": req}));
        served_review(&shared, req, ns).map(|r| support::to_json(&r))
    }

    #[test]
    fn delete_reviews_the_old_object() {
        let old = json!({"kind": "Pod", "metadata": {"name": "p"}});
        let req = json!({"operation": "DELETE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": null, "oldObject": old});
        let review = served(&req, None).expect("valid");
        assert_eq!(review["object"], old);
        assert_eq!(review["namespaceObject"], Value::Null);
        assert_eq!(target_of(&req, None).object, Some(&old));
        let broken = json!({"operation": "DELETE", "kind": {"kind": "Pod"}, "object": null});
        let error = served(&broken, None).expect_err("no old object");
        assert_eq!(error, ReviewError::DeleteWithoutOldObject);
        assert_eq!(
            error.to_string(),
            "a DELETE request without oldObject cannot be reviewed"
        );
        assert_eq!(
            gator_request(json!(["not", "a", "mapping"])),
            Err(ReviewError::NotAMapping)
        );
    }

    #[test]
    fn gator_review_has_go_zero_values() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"}});
        let request = gator_request(object).expect("valid");
        assert_eq!(request["uid"], "");
        assert_eq!(request["operation"], "");
        assert_eq!(request["userInfo"], json!({}));
        assert_eq!(
            request["kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(request["namespace"], "ns");
        let target = target_of(&request, None);
        assert_eq!(
            (target.group, target.kind, target.request_namespace),
            ("apps", "Deployment", Some("ns"))
        );
        assert!(gator_request(json!("text")).is_err());
    }

    #[test]
    fn namespace_requests_blank_the_namespace() {
        let req = json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Namespace"}, "namespace": "x", "object": {}});
        assert_eq!(served(&req, None).expect("valid")["namespace"], "");
        assert_eq!(target_of(&req, None).request_namespace, None);
        let ns = json!({"metadata": {"name": "x"}});
        let pod = json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "x", "object": {}});
        let review = served(&pod, Some(&ns)).expect("valid");
        assert_eq!(
            (&review["namespace"], &review["namespaceObject"]),
            (&json!("x"), &ns)
        );
    }

    #[test]
    fn kinds_come_from_the_object_under_review() {
        // gator's AdmissionReview objects often have no request.kind.
        let req = json!({"operation": "UPDATE", "object": {"apiVersion": "apps/v1", "kind": "Deployment"}});
        let target = target_of(&req, None);
        assert_eq!((target.group, target.kind), ("apps", "Deployment"));
        // DELETE looks at the old object.
        let req = json!({"operation": "DELETE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": null,
            "oldObject": {"apiVersion": "v1", "kind": "ConfigMap"}});
        let target = target_of(&req, None);
        assert_eq!((target.group, target.kind), ("", "ConfigMap"));
        // Without apiVersion/kind on the object, request.kind decides.
        let req = json!({"operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": {}});
        assert_eq!(target_of(&req, None).kind, "Pod");
    }
}
