//! Encoding the answer as an `AdmissionReview` response.
//!
//! kube's `AdmissionResponse` serializes `patch` as a JSON array of bytes; the admission API documents it as a
//! base64 string (Go's `[]byte`), which is what this encoder writes. The `status` is kube's [`Status`].

use base64::Engine as _;
use kube::core::Status;
use serde::Serialize;

use super::review::{Review, ReviewVersion};

/// What the webhook answers for one review.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The denial message (only used when `allowed` is false).
    pub message: String,
    /// Warnings returned to the client.
    pub warnings: Vec<String>,
    /// A JSON patch from the original object to the mutated one (only on `/mutate`).
    pub patch: Option<json_patch::Patch>,
    /// Why a denial denies, when a policy said (ValidatingAdmissionPolicy `reason`); `Forbidden` otherwise.
    pub reason: Option<Reason>,
}

/// The status reason of a denial, as a ValidatingAdmissionPolicy validation names it; it sets the response's
/// `status.code` as the API server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Reason {
    /// 401.
    Unauthorized,
    /// 403 (the default).
    Forbidden,
    /// 422.
    Invalid,
    /// 413.
    RequestEntityTooLarge,
}

impl Reason {
    /// Every reason, by name.
    pub const ALL: [Reason; 4] = [
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::Invalid,
        Reason::RequestEntityTooLarge,
    ];

    /// The name (`status.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::Invalid => "Invalid",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
        }
    }

    /// The HTTP status code (`status.code`).
    pub fn code(self) -> u16 {
        match self {
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::Invalid => 422,
            Reason::RequestEntityTooLarge => 413,
        }
    }

    /// The reason named `name`.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// Why a response could not be encoded (practically unreachable: everything is in-memory JSON).
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize the admission response: {0}")]
pub struct EncodeError(#[source] serde_json::Error);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    status: Status,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

/// Encode `response` as an `AdmissionReview` in the version of `review`, echoing its uid.
///
/// A denial carries the status of its [`Reason`] (`status.code` 403 and `status.reason` `Forbidden` unless a policy
/// named another); an allowed answer with warnings carries 299
/// (as Gatekeeper does), 200 otherwise. An empty patch is left out.
pub fn encode_response(review: &Review, response: Response) -> Result<Vec<u8>, EncodeError> {
    encode_answer(review.version, &review.uid, response)
}

/// [`encode_response`] from the review's version and uid alone (for an answer given after the review is gone).
pub fn encode_answer(
    version: ReviewVersion,
    uid: &str,
    response: Response,
) -> Result<Vec<u8>, EncodeError> {
    let status = if response.allowed {
        let code = if response.warnings.is_empty() {
            200
        } else {
            299
        };
        Status::success().with_code(code)
    } else {
        let reason = response.reason.unwrap_or(Reason::Forbidden);
        Status::failure(&response.message, reason.as_str()).with_code(reason.code())
    };
    let patch = match response.patch.filter(|p| !p.0.is_empty()) {
        Some(patch) => Some(serde_json::to_vec(&patch).map_err(EncodeError)?),
        None => None,
    };
    let out = ReviewOut {
        api_version: version.api_version(),
        kind: "AdmissionReview",
        response: ResponseOut {
            uid,
            allowed: response.allowed,
            status,
            warnings: response.warnings,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch: patch.map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
        },
    };
    serde_json::to_vec(&out).map_err(EncodeError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::decode;
    use serde_json::Value;

    fn review(version: &str) -> Review {
        let body = format!(
            r#"{{"apiVersion":"{version}","kind":"AdmissionReview","request":{{"uid":"abc",
            "kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","object":{{}}}}}}"#
        );
        decode(body.as_bytes()).expect("valid review")
    }

    fn encode(review: &Review, response: Response) -> Value {
        serde_json::from_slice(&encode_response(review, response).expect("encodes")).expect("json")
    }

    #[test]
    fn a_denial_reason_sets_the_status_code_as_the_api_server() {
        for (reason, code) in [
            (Reason::Unauthorized, 401),
            (Reason::Forbidden, 403),
            (Reason::Invalid, 422),
            (Reason::RequestEntityTooLarge, 413),
        ] {
            let out = encode(
                &review("admission.k8s.io/v1"),
                Response {
                    allowed: false,
                    message: "[p] no".into(),
                    reason: Some(reason),
                    ..Default::default()
                },
            );
            assert_eq!(out["response"]["status"]["code"], code);
            assert_eq!(out["response"]["status"]["reason"], reason.as_str());
        }
    }

    #[test]
    fn denial_echoes_uid_and_version_with_403() {
        let out = encode(
            &review("admission.k8s.io/v1beta1"),
            Response {
                allowed: false,
                message: "[p] no".into(),
                ..Default::default()
            },
        );
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], "abc");
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(out["response"]["status"]["code"], 403);
        assert_eq!(out["response"]["status"]["message"], "[p] no");
        assert!(out["response"].get("patch").is_none());
    }

    #[test]
    fn allowed_with_warnings_and_patch() {
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::json!([{"op": "add", "path": "/x", "value": 1}]))
                .expect("patch");
        let out = encode(
            &review("admission.k8s.io/v1"),
            Response {
                allowed: true,
                warnings: vec!["[p] careful".into()],
                patch: Some(patch),
                ..Default::default()
            },
        );
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["status"]["code"], 299);
        assert_eq!(out["response"]["warnings"][0], "[p] careful");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(out["response"]["patch"].as_str().expect("base64 string"))
            .expect("base64");
        let ops: Value = serde_json::from_slice(&raw).expect("json patch");
        assert_eq!(ops[0]["path"], "/x");
    }

    #[test]
    fn empty_patch_is_omitted() {
        let out = encode(
            &review("admission.k8s.io/v1"),
            Response {
                allowed: true,
                patch: Some(json_patch::Patch(vec![])),
                ..Default::default()
            },
        );
        assert!(out["response"].get("patch").is_none());
        assert!(out["response"].get("patchType").is_none());
    }
}
