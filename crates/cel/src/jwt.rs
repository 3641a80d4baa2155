//! Kyverno Authz's `jwt` library: `jwt.Decode(token, key)` decodes a JSON Web Token and verifies it with a shared
//! secret, returning `{Valid: bool, Claims: map}`.
//!
//! `Valid` is true when the signature verifies under HS256, HS384 or HS512 (HMAC with `key`'s bytes) and the time
//! claims hold now (`exp` in the future, `nbf` not in the future). A token that decodes but fails any of these is
//! returned with `Valid: false` and its claims, so a policy can deny it; a token that does not decode (not three
//! base64url segments, a header or claims that are not JSON objects) is an evaluation error. Other algorithms
//! (RS*, ES*, `none`) are never valid: there is no public key here. The `jwk.Set` overload (keys fetched from a
//! URL) is not provided.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cel::common::types::STRING_TYPE;
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};
use hmac::{Hmac, Mac};
use serde_json::Value as Json;

use crate::args::{take, text};

/// The longest token accepted.
const MAX_TOKEN: usize = 64 * 1024;

const F: &str = "jwt.Decode";

/// Why a token does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not `header.claims.signature`.
    #[error("malformed token: expected three dot-separated segments")]
    Segments,
    /// Longer than accepted.
    #[error("token longer than {MAX_TOKEN} bytes")]
    TooLong,
    /// A segment is not base64url.
    #[error("malformed token: the {0} is not base64url")]
    Base64(&'static str),
    /// The header or the claims are not a JSON object.
    #[error("malformed token: the {0} is not a JSON object")]
    Json(&'static str),
}

fn segment(part: &str, what: &'static str) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| DecodeError::Base64(what))
}

fn object(bytes: &[u8], what: &'static str) -> Result<Json, DecodeError> {
    match serde_json::from_slice::<Json>(bytes) {
        Ok(v @ Json::Object(_)) => Ok(v),
        _ => Err(DecodeError::Json(what)),
    }
}

fn verify<M: Mac + hmac::digest::KeyInit>(key: &[u8], signed: &[u8], signature: &[u8]) -> bool {
    match <M as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(signed);
            mac.verify_slice(signature).is_ok()
        }
        Err(_) => false,
    }
}

/// Whether a numeric date claim (seconds since the epoch) is absent or holds against `now`.
fn time_claim(claims: &Json, name: &str, holds: impl Fn(f64) -> bool) -> bool {
    match claims.get(name) {
        None | Some(Json::Null) => true,
        Some(v) => v.as_f64().is_some_and(holds),
    }
}

/// Decodes `token` and verifies it with `key` at `now` (seconds since the epoch): `{Valid, Claims}`.
pub fn decode(token: &str, key: &str, now: i64) -> Result<Json, DecodeError> {
    if token.len() > MAX_TOKEN {
        return Err(DecodeError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DecodeError::Segments);
    };
    let header = object(&segment(h, "header")?, "header")?;
    let claims = object(&segment(c, "claims")?, "claims")?;
    let signature = segment(s, "signature")?;
    let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
    let key = key.as_bytes();
    let signed_ok = match header.get("alg").and_then(Json::as_str) {
        Some("HS256") => verify::<Hmac<sha2::Sha256>>(key, signed, &signature),
        Some("HS384") => verify::<Hmac<sha2::Sha384>>(key, signed, &signature),
        Some("HS512") => verify::<Hmac<sha2::Sha512>>(key, signed, &signature),
        _ => false,
    };
    let now = now as f64;
    let valid = signed_ok
        && time_claim(&claims, "exp", |exp| now < exp)
        && time_claim(&claims, "nbf", |nbf| nbf <= now);
    Ok(serde_json::json!({"Valid": valid, "Claims": claims}))
}

fn decode_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [token, key] = take(args)?;
    let (token, key) = (text(F, &token)?, text(F, &key)?);
    let decoded = decode(&token, &key, chrono::Utc::now().timestamp())
        .map_err(|e| ExecutionError::function_error(F, e.to_string()))?;
    Ok(CowVal::Owned(Box::new(crate::bind::shared(&decoded))))
}

/// Registers the functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(
        F,
        "jwt.Decode(string,string)",
        vec![STRING_TYPE, STRING_TYPE],
        decode_fn,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token signed with HS256 and the key "secret": exp 2241081539 (2041), nbf 1514851139, role admin.
    const ADMIN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjIyNDEwODE1MzksIm5iZiI6MTUxNDg1MTEzOSwicm9sZSI6ImFkbWluIiwic3ViIjoiWVd4cFkyVT0ifQ.veMeVDYlulTdieeX-jxFZ_tCmqQ_K8rwx2OktUHv5Z0";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_token_signed_with_the_key_is_valid_with_its_claims() {
        let t = decode(ADMIN, "secret", NOW).expect("decodes");
        assert_eq!(t["Valid"], true);
        assert_eq!(t["Claims"]["role"], "admin");
        assert_eq!(t["Claims"]["exp"], 2241081539u64);
    }

    #[test]
    fn a_wrong_key_a_tampered_token_or_the_wrong_time_is_invalid_not_an_error() {
        assert_eq!(
            decode(ADMIN, "other", NOW).expect("decodes")["Valid"],
            false
        );
        // Expired, and not yet valid.
        assert_eq!(
            decode(ADMIN, "secret", 2_300_000_000).expect("decodes")["Valid"],
            false
        );
        assert_eq!(
            decode(ADMIN, "secret", 1_000_000_000).expect("decodes")["Valid"],
            false
        );
        // Claims changed (role guest) under the admin token's signature.
        let mut parts: Vec<&str> = ADMIN.split('.').collect();
        let guest = URL_SAFE_NO_PAD.encode(br#"{"role":"guest"}"#);
        parts[1] = &guest;
        let forged = parts.join(".");
        let t = decode(&forged, "secret", NOW).expect("decodes");
        assert_eq!(t["Valid"], false);
        assert_eq!(t["Claims"]["role"], "guest");
        // alg none is never valid.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"role":"admin"}"#)
        );
        assert_eq!(
            decode(&none, "secret", NOW).expect("decodes")["Valid"],
            false
        );
    }

    #[test]
    fn hs384_and_hs512_verify() {
        fn sign<M: Mac + hmac::digest::KeyInit>(alg: &str, key: &[u8]) -> String {
            let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
            let c = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
            let mut mac = <M as Mac>::new_from_slice(key).expect("key");
            mac.update(format!("{h}.{c}").as_bytes());
            let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            format!("{h}.{c}.{s}")
        }
        let t384 = sign::<Hmac<sha2::Sha384>>("HS384", b"k");
        let t512 = sign::<Hmac<sha2::Sha512>>("HS512", b"k");
        assert_eq!(decode(&t384, "k", NOW).expect("decodes")["Valid"], true);
        assert_eq!(decode(&t512, "k", NOW).expect("decodes")["Valid"], true);
        assert_eq!(decode(&t512, "j", NOW).expect("decodes")["Valid"], false);
    }

    #[test]
    fn malformed_tokens_are_errors() {
        assert_eq!(decode("empty", "k", NOW), Err(DecodeError::Segments));
        assert_eq!(decode("a.b.c.d", "k", NOW), Err(DecodeError::Segments));
        assert_eq!(
            decode("!.e30.", "k", NOW),
            Err(DecodeError::Base64("header"))
        );
        let not_object = format!("e30.{}.", URL_SAFE_NO_PAD.encode("[1]"));
        assert_eq!(
            decode(&not_object, "k", NOW),
            Err(DecodeError::Json("claims"))
        );
        let long = "a".repeat(MAX_TOKEN + 1);
        assert_eq!(decode(&long, "k", NOW), Err(DecodeError::TooLong));
    }
}
