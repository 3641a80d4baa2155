//! Stage 1 and 5 of a request: decode an `AdmissionReview` and encode the answer.
//!
//! The request is kept as JSON ([`serde_json::Value`]) because every engine reads it as a document; the few fields
//! the webhook itself needs (uid, kind, operation, ...) are read once into typed fields of [`Review`].

mod decode;
mod respond;
mod review;

pub use decode::{decode, from_value, DecodeError, MAX_BODY_BYTES, MAX_KIND_BYTES, MAX_UID_BYTES};
pub use respond::{encode_answer, encode_response, EncodeError, Reason, Response};
pub use review::{
    existing_object_request, plural, Gvk, Gvr, Operation, Review, ReviewVersion, UserInfo,
};
