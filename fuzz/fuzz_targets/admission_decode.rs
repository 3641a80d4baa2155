//! The AdmissionReview decoder: any body the webhook could receive. Decoding must never panic; a review that decodes
//! must encode an answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyctl_engines::admission::{decode, encode_response, Response};

fuzz_target!(|data: &[u8]| {
    let Ok(review) = decode(data) else {
        return;
    };
    let _ = review.operation_str();
    let _ = review.object();
    let _ = review.old_object();
    let _ = review.subject();
    let response = Response {
        allowed: false,
        message: review.name.clone(),
        warnings: vec![review.uid.clone()],
        patch: None,
        reason: None,
    };
    if let Err(err) = encode_response(&review, response) {
        panic!("a decoded review cannot be answered: {err}");
    }
});
