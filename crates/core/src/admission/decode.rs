//! Decoding an `AdmissionReview` body.

use serde::Deserialize;
use serde_json::Value;

use super::review::{operation_str, RequestHeader, Review, ReviewVersion};
use super::Operation;

/// Largest body the webhook accepts (the API server's own limit for admission webhooks is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Longest `request.uid` accepted, in bytes. The API server sends a UUID (36 bytes); the bound keeps a hostile uid
/// out of logs and answers.
pub const MAX_UID_BYTES: usize = 256;

/// Longest `request.kind.kind` accepted, in bytes (a Kubernetes kind is a DNS-1035 label when lower-cased).
pub const MAX_KIND_BYTES: usize = 63;

/// Why a body is not a usable `AdmissionReview`. Each message is one line, meant for the HTTP 400 answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("body is not a JSON object")]
    NotAnObject,
    /// `kind` is not `AdmissionReview`.
    #[error("kind must be AdmissionReview, got {0:?}")]
    WrongKind(String),
    /// `apiVersion` is neither `admission.k8s.io/v1` nor `v1beta1`.
    #[error("apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got {0:?}")]
    UnsupportedVersion(String),
    /// No `request` member.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// `request` is present but malformed.
    #[error("invalid request: {0}")]
    BadRequest(#[source] serde_json::Error),
    /// `request.uid` is missing, empty or too long.
    #[error(
        "invalid request: uid must be a non-empty string of at most {MAX_UID_BYTES} bytes, got {0}"
    )]
    BadUid(&'static str),
    /// `request.kind.kind` is not a kind name.
    #[error("invalid request: kind.kind must be a kind name (letters, digits and '-', at most {MAX_KIND_BYTES} bytes), got {0}")]
    BadKind(&'static str),
    /// `request.object` or `request.oldObject` is not a JSON object (or null where the operation allows it).
    #[error("invalid request: {field} must be {expected} on {operation}, got {got}")]
    BadObject {
        /// `object` or `oldObject`.
        field: &'static str,
        /// What the operation requires.
        expected: &'static str,
        /// The operation.
        operation: &'static str,
        /// The JSON type found.
        got: &'static str,
    },
}

/// Decode a body into a [`Review`].
pub fn decode(body: &[u8]) -> Result<Review, DecodeError> {
    let document: Value = serde_json::from_slice(body).map_err(DecodeError::NotJson)?;
    from_value(document)
}

/// Decode an already parsed document into a [`Review`].
pub fn from_value(document: Value) -> Result<Review, DecodeError> {
    let object = document.as_object().ok_or(DecodeError::NotAnObject)?;
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "AdmissionReview" {
        return Err(DecodeError::WrongKind(kind.to_string()));
    }
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = match api_version {
        "admission.k8s.io/v1" => ReviewVersion::V1,
        "admission.k8s.io/v1beta1" => ReviewVersion::V1Beta1,
        other => return Err(DecodeError::UnsupportedVersion(other.to_string())),
    };
    let request = match object.get("request") {
        None | Some(Value::Null) => return Err(DecodeError::MissingRequest),
        Some(request) => request,
    };
    let header = RequestHeader::deserialize(request).map_err(DecodeError::BadRequest)?;
    check_header(&header)?;
    check_objects(&header.operation, request)?;
    Ok(Review::from_parts(version, header, document))
}

/// The uid is echoed in the answer and the kind becomes a metric label: both must be small and plain. Reasons name the
/// problem, never echo the value.
fn check_header(header: &RequestHeader) -> Result<(), DecodeError> {
    if header.uid.is_empty() {
        return Err(DecodeError::BadUid("none"));
    }
    if header.uid.len() > MAX_UID_BYTES {
        return Err(DecodeError::BadUid("a longer one"));
    }
    if header.uid.chars().any(char::is_control) {
        return Err(DecodeError::BadUid("one with control characters"));
    }
    let kind = &header.kind.kind;
    if kind.is_empty() {
        return Err(DecodeError::BadKind("none"));
    }
    if kind.len() > MAX_KIND_BYTES {
        return Err(DecodeError::BadKind("a longer one"));
    }
    if !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(DecodeError::BadKind("other characters"));
    }
    Ok(())
}

/// `object` and `oldObject` are JSON objects, or null/absent where the operation allows: CREATE and UPDATE carry the
/// new object, DELETE the old one, CONNECT may carry neither (its options object, when sent, is an object too).
fn check_objects(operation: &Operation, request: &Value) -> Result<(), DecodeError> {
    let (object_required, old_object_required) = match operation {
        Operation::Create | Operation::Update => (true, false),
        Operation::Delete => (false, true),
        Operation::Connect => (false, false),
    };
    for (field, required) in [
        ("object", object_required),
        ("oldObject", old_object_required),
    ] {
        let got = match request.get(field) {
            Some(Value::Object(_)) => continue,
            None | Some(Value::Null) if !required => continue,
            None => "nothing",
            Some(value) => json_type(value),
        };
        return Err(DecodeError::BadObject {
            field,
            expected: if required {
                "an object"
            } else {
                "an object or null"
            },
            operation: operation_str(operation),
            got,
        });
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Operation;

    fn review(version: &str) -> String {
        format!(
            r#"{{"apiVersion":"{version}","kind":"AdmissionReview","request":{{"uid":"u1",
            "kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},
            "name":"p","namespace":"default","operation":"CREATE","userInfo":{{"username":"alice"}},
            "object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p"}}}}}}}}"#
        )
    }

    #[test]
    fn decodes_v1_and_v1beta1() {
        for (version, expected) in [
            ("admission.k8s.io/v1", ReviewVersion::V1),
            ("admission.k8s.io/v1beta1", ReviewVersion::V1Beta1),
        ] {
            let review = decode(review(version).as_bytes()).expect("decodes");
            assert_eq!(review.version, expected);
            assert_eq!(review.uid, "u1");
            assert_eq!(review.kind.kind, "Pod");
            assert_eq!(review.operation, Operation::Create);
            assert_eq!(review.namespace.as_deref(), Some("default"));
            assert_eq!(review.user_info.username, "alice");
            assert!(review.object().is_some());
            assert!(review.old_object().is_none());
        }
    }

    #[test]
    fn rejects_bad_bodies_with_one_line_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not valid JSON"),
            (b"[1,2]", "not a JSON object"),
            (br#"{"kind":"Pod","apiVersion":"v1"}"#, "kind must be AdmissionReview"),
            (br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2"}"#, "apiVersion must be"),
            (br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#, "has no request"),
            (
                br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"x"}}"#,
                "invalid request: missing field `kind`",
            ),
            (
                br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"kind":{"kind":"Pod"},"operation":"EXPLODE"}}"#,
                "invalid request: unknown variant `EXPLODE`",
            ),
        ];
        for (body, expected) in cases {
            let err = decode(body).expect_err("must fail").to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    /// A v1 review of `operation` whose request members are `members` (replacing the defaults).
    fn request_with(operation: &str, members: Value) -> Vec<u8> {
        let mut request = serde_json::json!({
            "uid": "u1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "alice"},
        });
        if let (Some(map), Value::Object(extra)) = (request.as_object_mut(), members) {
            for (key, value) in extra {
                if value == Value::String("<absent>".into()) {
                    map.remove(&key);
                } else {
                    map.insert(key, value);
                }
            }
        }
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .expect("json")
    }

    #[test]
    fn objects_must_be_objects_where_the_operation_needs_them() {
        use serde_json::json;
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let accepted = [
            ("CREATE", json!({"object": pod, "oldObject": null})),
            ("CREATE", json!({"object": pod, "oldObject": "<absent>"})),
            ("UPDATE", json!({"object": pod, "oldObject": pod})),
            ("DELETE", json!({"object": null, "oldObject": pod})),
            ("DELETE", json!({"object": "<absent>", "oldObject": pod})),
            (
                "CONNECT",
                json!({"object": "<absent>", "oldObject": "<absent>"}),
            ),
            (
                "CONNECT",
                json!({"object": {"kind": "PodExecOptions"}, "oldObject": null}),
            ),
        ];
        for (operation, members) in accepted {
            let body = request_with(operation, members.clone());
            if let Err(err) = decode(&body) {
                panic!("{operation} {members}: {err}");
            }
        }
        let rejected = [
            (
                "CREATE",
                json!({"object": "a string"}),
                "object must be an object on CREATE, got a string",
            ),
            (
                "CREATE",
                json!({"object": [1, 2]}),
                "object must be an object on CREATE, got an array",
            ),
            (
                "CREATE",
                json!({"object": 7}),
                "object must be an object on CREATE, got a number",
            ),
            (
                "CREATE",
                json!({"object": true}),
                "object must be an object on CREATE, got a boolean",
            ),
            (
                "CREATE",
                json!({"object": null}),
                "object must be an object on CREATE, got null",
            ),
            (
                "CREATE",
                json!({"object": "<absent>"}),
                "object must be an object on CREATE, got nothing",
            ),
            (
                "UPDATE",
                json!({"object": null, "oldObject": pod}),
                "object must be an object on UPDATE, got null",
            ),
            (
                "UPDATE",
                json!({"object": pod, "oldObject": "x"}),
                "oldObject must be an object or null on UPDATE, got a string",
            ),
            (
                "CREATE",
                json!({"object": pod, "oldObject": [pod]}),
                "oldObject must be an object or null on CREATE, got an array",
            ),
            (
                "DELETE",
                json!({"oldObject": null}),
                "oldObject must be an object on DELETE, got null",
            ),
            (
                "DELETE",
                json!({"oldObject": "<absent>"}),
                "oldObject must be an object on DELETE, got nothing",
            ),
            (
                "DELETE",
                json!({"object": 1, "oldObject": pod}),
                "object must be an object or null on DELETE, got a number",
            ),
            (
                "CONNECT",
                json!({"object": "x"}),
                "object must be an object or null on CONNECT, got a string",
            ),
        ];
        for (operation, members, expected) in rejected {
            let body = request_with(operation, members.clone());
            let err = decode(&body).expect_err("rejected").to_string();
            assert!(
                err.contains(expected),
                "{operation} {members}: {err:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn uid_and_kind_are_bounded_and_plain() {
        use serde_json::json;
        let pod = json!({"kind": "Pod"});
        let long_uid = "u".repeat(MAX_UID_BYTES + 1);
        let long_kind = "K".repeat(MAX_KIND_BYTES + 1);
        let rejected = [
            (
                json!({"uid": "<absent>"}),
                "uid must be a non-empty string of at most 256 bytes, got none",
            ),
            (json!({"uid": ""}), "got none"),
            (json!({"uid": long_uid}), "got a longer one"),
            (json!({"uid": "a\nb"}), "got one with control characters"),
            (
                json!({"uid": "\u{1b}[31mred"}),
                "got one with control characters",
            ),
            (json!({"uid": 42}), "invalid type: integer"),
            (
                json!({"kind": {"kind": ""}}),
                "kind.kind must be a kind name",
            ),
            (json!({"kind": {"kind": long_kind}}), "got a longer one"),
            (json!({"kind": {"kind": "Pod\nX"}}), "got other characters"),
        ];
        for (members, expected) in rejected {
            let mut members = members;
            members["object"] = pod.clone();
            let err = decode(&request_with("CREATE", members.clone()))
                .expect_err("rejected")
                .to_string();
            assert!(
                err.contains(expected),
                "{members}: {err:?} lacks {expected:?}"
            );
            assert!(
                !err.contains(&"u".repeat(MAX_UID_BYTES)),
                "the value is not echoed"
            );
            assert!(
                !err.contains('\n') && !err.contains('\u{1b}'),
                "one plain line: {err:?}"
            );
        }
        let edge = "u".repeat(MAX_UID_BYTES);
        let review = decode(&request_with("CREATE", json!({"uid": edge, "object": pod})))
            .expect("a uid of exactly the limit is fine");
        assert_eq!(review.uid.len(), MAX_UID_BYTES);
        decode(&request_with("CREATE", json!({"kind": {"group": "example.com", "version": "v1", "kind": "My-Kind2"}, "object": pod})))
            .expect("letters, digits and dashes");
    }
}
