//! Decoding an `AdmissionReview` body.

use serde::Deserialize;
use serde_json::Value;

use super::review::{RequestHeader, Review, ReviewVersion};

/// Largest body the webhook accepts (the API server's own limit for admission webhooks is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

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
    Ok(Review::from_parts(version, header, document))
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
}
