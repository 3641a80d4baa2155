//! The response builders of Kyverno's authorization modes (ValidatingPolicy `evaluation.mode` `Envoy` and `HTTP`, as
//! the Kyverno Authz server and `kyverno test` evaluate them), and how a validation's result becomes a verdict.
//!
//! In these modes a validation returns a response or `null`; the first that returns a response decides (allowed or
//! denied), and a policy whose validations all return `null` allows.
//!
//! - Envoy (`envoy.*`): `envoy.Allowed()` is an `envoy.OkResponse`, with `WithHeader(name, value)`,
//!   `WithoutHeader(name)` and `WithResponseHeader(name, value)`; `envoy.Denied(httpStatus)` is an
//!   `envoy.DeniedResponse`, with `WithHeader(name, value)` and `WithBody(text)`; `Response()` makes either an
//!   `envoy.CheckResponse`, which takes `WithMetadata(map)` (dynamic metadata).
//! - HTTP (`http.*`): `http.Allowed()` is an `http.CheckResponseOk`, `http.Denied(reason)` an
//!   `http.CheckResponseDenied`; `Response()` makes either an `http.CheckResponse`. On the request's attributes (a
//!   map), `Header(name)` lists a header's values (names compared case-insensitively) and `QueryParam(name)` a query
//!   parameter's.
//!
//! Not provided: building the responses as protobuf message literals (`envoy.OkResponse{...}`), Kyverno Authz's
//! `jwk`, `json` and `mcp` libraries.

use std::sync::Arc;

use cel::common::types::{Type, INT_TYPE, MAP_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};
use serde_json::Value as Json;

use crate::args::{opaque_arg, out, take, text, value};

/// `envoy.OkResponse`.
pub const ENVOY_OK: &str = "envoy.OkResponse";
/// `envoy.DeniedResponse`.
pub const ENVOY_DENIED: &str = "envoy.DeniedResponse";
/// `envoy.CheckResponse`.
pub const ENVOY_CHECK: &str = "envoy.CheckResponse";
/// `http.CheckResponseOk`.
pub const HTTP_OK: &str = "http.CheckResponseOk";
/// `http.CheckResponseDenied`.
pub const HTTP_DENIED: &str = "http.CheckResponseDenied";
/// `http.CheckResponse`.
pub const HTTP_CHECK: &str = "http.CheckResponse";

/// Headers, bodies and metadata a policy adds are bounded: a response is not a place to build large data.
const MAX_ENTRIES: usize = 256;
const MAX_TEXT: usize = 64 * 1024;

/// An Envoy OK response being built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvoyOk {
    /// Request headers to add or overwrite.
    pub headers: Vec<(String, String)>,
    /// Request headers to remove.
    pub headers_to_remove: Vec<String>,
    /// Response headers to add.
    pub response_headers: Vec<(String, String)>,
}

/// An Envoy denied response being built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvoyDenied {
    /// The HTTP status sent to the client.
    pub status: i64,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: String,
}

/// An Envoy `CheckResponse`: the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyCheck {
    /// Allowed (with its header changes) or denied.
    pub decision: EnvoyDecision,
    /// Dynamic metadata for the filters after the authorization filter.
    pub metadata: Json,
}

/// What an Envoy `CheckResponse` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvoyDecision {
    /// `ok_response`.
    Ok(EnvoyOk),
    /// `denied_response`.
    Denied(EnvoyDenied),
}

/// A plain HTTP response being built or decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpResponse {
    /// `http.CheckResponseOk`.
    Ok,
    /// `http.CheckResponseDenied` with its reason.
    Denied(String),
}

/// An `http.CheckResponse`: the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck(pub HttpResponse);

/// A built, not yet decided HTTP response (`http.Allowed()`, `http.Denied(reason)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBuilder(pub HttpResponse);

impl Opaque for EnvoyOk {
    fn runtime_type_name(&self) -> &str {
        ENVOY_OK
    }
}
impl Opaque for EnvoyDenied {
    fn runtime_type_name(&self) -> &str {
        ENVOY_DENIED
    }
}
impl Opaque for EnvoyCheck {
    fn runtime_type_name(&self) -> &str {
        ENVOY_CHECK
    }
}
impl Opaque for HttpBuilder {
    fn runtime_type_name(&self) -> &str {
        match self.0 {
            HttpResponse::Ok => HTTP_OK,
            HttpResponse::Denied(_) => HTTP_DENIED,
        }
    }
}
impl Opaque for HttpCheck {
    fn runtime_type_name(&self) -> &str {
        HTTP_CHECK
    }
}

/// What a validation's response decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request is allowed.
    Allowed,
    /// The request is denied, with a message.
    Denied(String),
}

/// A validation's result that is not a response: the type found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got}")]
pub struct NotAResponse {
    /// The type found (a builder whose `Response()` was not called says so).
    pub got: String,
}

/// The verdict of a validation's result: an Envoy or HTTP `CheckResponse`; anything else is [`NotAResponse`] with
/// the type found (a builder whose `Response()` was not called included).
pub fn verdict(result: &Value) -> Result<Verdict, NotAResponse> {
    let Value::Opaque(o) = result else {
        return Err(NotAResponse {
            got: crate::type_name(result),
        });
    };
    if let Some(check) = o.downcast_ref::<EnvoyCheck>() {
        return Ok(match &check.decision {
            EnvoyDecision::Ok(_) => Verdict::Allowed,
            EnvoyDecision::Denied(d) if d.body.trim().is_empty() => {
                Verdict::Denied(format!("denied with HTTP status {}", d.status))
            }
            EnvoyDecision::Denied(d) => Verdict::Denied(d.body.trim().to_string()),
        });
    }
    if let Some(HttpCheck(response)) = o.downcast_ref::<HttpCheck>() {
        return Ok(match response {
            HttpResponse::Ok => Verdict::Allowed,
            HttpResponse::Denied(reason) if reason.trim().is_empty() => {
                Verdict::Denied("denied".to_string())
            }
            HttpResponse::Denied(reason) => Verdict::Denied(reason.trim().to_string()),
        });
    }
    Err(NotAResponse {
        got: format!("{} (a builder: call .Response())", o.runtime_type_name()),
    })
}

fn opaque<'b, 'v>(v: impl Opaque) -> Result<CowVal<'b, 'v>, ExecutionError> {
    out(Value::Opaque(Arc::new(v)))
}

fn this<T: Opaque + Clone>(function: &str, v: &CowVal<'_, '_>) -> Result<T, ExecutionError> {
    opaque_arg(function, v, "unexpected receiver")
}

fn bounded(function: &str, s: String) -> Result<String, ExecutionError> {
    if s.len() > MAX_TEXT {
        return Err(ExecutionError::function_error(
            function,
            format!("text longer than {MAX_TEXT} bytes"),
        ));
    }
    Ok(s)
}

fn push<T>(function: &str, list: &mut Vec<T>, item: T) -> Result<(), ExecutionError> {
    if list.len() >= MAX_ENTRIES {
        return Err(ExecutionError::function_error(
            function,
            format!("more than {MAX_ENTRIES} entries"),
        ));
    }
    list.push(item);
    Ok(())
}

fn envoy_allowed<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [] = take(args)?;
    opaque(EnvoyOk::default())
}

fn envoy_denied<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [status] = take(args)?;
    let status = match value(&status)? {
        Value::Int(code) if (100..=599).contains(&code) => code,
        other => {
            return Err(ExecutionError::function_error(
                "envoy.Denied",
                format!("expected an HTTP status code (100 to 599), got {other:?}"),
            ))
        }
    };
    opaque(EnvoyDenied {
        status,
        ..EnvoyDenied::default()
    })
}

fn ok_with_header<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "WithHeader";
    let [r, k, v] = take(args)?;
    let mut r: EnvoyOk = this(F, &r)?;
    let entry = (bounded(F, text(F, &k)?)?, bounded(F, text(F, &v)?)?);
    push(F, &mut r.headers, entry)?;
    opaque(r)
}

fn ok_without_header<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "WithoutHeader";
    let [r, k] = take(args)?;
    let mut r: EnvoyOk = this(F, &r)?;
    let name = bounded(F, text(F, &k)?)?;
    push(F, &mut r.headers_to_remove, name)?;
    opaque(r)
}

fn ok_with_response_header<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "WithResponseHeader";
    let [r, k, v] = take(args)?;
    let mut r: EnvoyOk = this(F, &r)?;
    let entry = (bounded(F, text(F, &k)?)?, bounded(F, text(F, &v)?)?);
    push(F, &mut r.response_headers, entry)?;
    opaque(r)
}

fn denied_with_header<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "WithHeader";
    let [r, k, v] = take(args)?;
    let mut r: EnvoyDenied = this(F, &r)?;
    let entry = (bounded(F, text(F, &k)?)?, bounded(F, text(F, &v)?)?);
    push(F, &mut r.headers, entry)?;
    opaque(r)
}

fn denied_with_body<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "WithBody";
    let [r, body] = take(args)?;
    let mut r: EnvoyDenied = this(F, &r)?;
    r.body = bounded(F, text(F, &body)?)?;
    opaque(r)
}

fn ok_response<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [r] = take(args)?;
    opaque(EnvoyCheck {
        decision: EnvoyDecision::Ok(this("Response", &r)?),
        metadata: Json::Null,
    })
}

fn denied_response<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [r] = take(args)?;
    opaque(EnvoyCheck {
        decision: EnvoyDecision::Denied(this("Response", &r)?),
        metadata: Json::Null,
    })
}

fn with_metadata<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "WithMetadata";
    let [r, metadata] = take(args)?;
    let mut r: EnvoyCheck = this(F, &r)?;
    let metadata = crate::mutation::to_json(&value(&metadata)?)
        .map_err(|e| ExecutionError::function_error(F, e.to_string()))?;
    if metadata.to_string().len() > MAX_TEXT {
        return Err(ExecutionError::function_error(
            F,
            format!("metadata larger than {MAX_TEXT} bytes"),
        ));
    }
    r.metadata = metadata;
    opaque(r)
}

fn http_allowed<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [] = take(args)?;
    opaque(HttpBuilder(HttpResponse::Ok))
}

fn http_denied<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "http.Denied";
    let [reason] = take(args)?;
    let reason = bounded(F, text(F, &reason)?)?;
    opaque(HttpBuilder(HttpResponse::Denied(reason)))
}

fn http_response<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [r] = take(args)?;
    let HttpBuilder(response) = this("Response", &r)?;
    opaque(HttpCheck(response))
}

/// The values of `key` in a multi-value map (`header`, `query`) of request attributes, `[]` when absent.
fn multi_value<'b, 'v>(
    function: &str,
    field: &str,
    args: Vec<CowVal<'b, 'v>>,
    case_insensitive: bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [attributes, key] = take(args)?;
    let key = text(function, &key)?;
    let Value::Map(attributes) = value(&attributes)? else {
        return Err(ExecutionError::function_error(
            function,
            "expected the request attributes",
        ));
    };
    let entries = attributes
        .map
        .iter()
        .find(|(k, _)| matches!(k, cel::objects::Key::String(s) if s.as_str() == field))
        .map(|(_, v)| v.clone());
    let found = match entries {
        Some(Value::Map(m)) => m
            .map
            .iter()
            .find(|(k, _)| match k {
                cel::objects::Key::String(s) if case_insensitive => s.eq_ignore_ascii_case(&key),
                cel::objects::Key::String(s) => s.as_str() == key,
                _ => false,
            })
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    out(match found {
        Some(Value::List(l)) => Value::List(l),
        Some(Value::String(s)) => Value::List(Arc::new(vec![Value::String(s)])),
        _ => Value::List(Arc::new(Vec::new())),
    })
}

fn header<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    multi_value("Header", "header", args, true)
}

fn query_param<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    multi_value("QueryParam", "query", args, false)
}

/// Registers the functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let t = |name: &'static str| Type::new_opaque_type(name);
    for name in [
        ENVOY_OK,
        ENVOY_DENIED,
        ENVOY_CHECK,
        HTTP_OK,
        HTTP_DENIED,
        HTTP_CHECK,
    ] {
        env.add_type(t(name))?;
    }
    env.add_overload("envoy.Allowed", "envoy.Allowed()", vec![], envoy_allowed)?;
    env.add_overload(
        "envoy.Denied",
        "envoy.Denied(int)",
        vec![INT_TYPE],
        envoy_denied,
    )?;
    env.add_member_overload(
        "WithHeader",
        "envoy.OkResponse.WithHeader(string,string)",
        t(ENVOY_OK),
        vec![STRING_TYPE, STRING_TYPE],
        ok_with_header,
    )?;
    env.add_member_overload(
        "WithoutHeader",
        "envoy.OkResponse.WithoutHeader(string)",
        t(ENVOY_OK),
        vec![STRING_TYPE],
        ok_without_header,
    )?;
    env.add_member_overload(
        "WithResponseHeader",
        "envoy.OkResponse.WithResponseHeader(string,string)",
        t(ENVOY_OK),
        vec![STRING_TYPE, STRING_TYPE],
        ok_with_response_header,
    )?;
    env.add_member_overload(
        "WithHeader",
        "envoy.DeniedResponse.WithHeader(string,string)",
        t(ENVOY_DENIED),
        vec![STRING_TYPE, STRING_TYPE],
        denied_with_header,
    )?;
    env.add_member_overload(
        "WithBody",
        "envoy.DeniedResponse.WithBody(string)",
        t(ENVOY_DENIED),
        vec![STRING_TYPE],
        denied_with_body,
    )?;
    env.add_member_overload(
        "Response",
        "envoy.OkResponse.Response()",
        t(ENVOY_OK),
        vec![],
        ok_response,
    )?;
    env.add_member_overload(
        "Response",
        "envoy.DeniedResponse.Response()",
        t(ENVOY_DENIED),
        vec![],
        denied_response,
    )?;
    env.add_member_overload(
        "WithMetadata",
        "envoy.CheckResponse.WithMetadata(map)",
        t(ENVOY_CHECK),
        vec![MAP_TYPE],
        with_metadata,
    )?;
    env.add_overload("http.Allowed", "http.Allowed()", vec![], http_allowed)?;
    env.add_overload(
        "http.Denied",
        "http.Denied(string)",
        vec![STRING_TYPE],
        http_denied,
    )?;
    env.add_member_overload(
        "Response",
        "http.CheckResponseOk.Response()",
        t(HTTP_OK),
        vec![],
        http_response,
    )?;
    env.add_member_overload(
        "Response",
        "http.CheckResponseDenied.Response()",
        t(HTTP_DENIED),
        vec![],
        http_response,
    )?;
    env.add_member_overload(
        "Header",
        "http.CheckRequestAttributes.Header(string)",
        MAP_TYPE,
        vec![STRING_TYPE],
        header,
    )?;
    env.add_member_overload(
        "QueryParam",
        "http.CheckRequestAttributes.QueryParam(string)",
        MAP_TYPE,
        vec![STRING_TYPE],
        query_param,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EvalError;
    use serde_json::json;

    fn eval_with(object: Json, src: &str) -> Result<Value, EvalError> {
        crate::eval_on_for(crate::Dialect::Kyverno, object, src)
    }

    fn eval(src: &str) -> Result<Value, EvalError> {
        eval_with(
            json!({"attributes": {"header": {"Content-Type": ["a/b", "c/d"]}, "query": {"q": "1"}}}),
            src,
        )
    }

    fn decided(src: &str) -> Verdict {
        verdict(&eval(src).expect("evaluates")).expect("a response")
    }

    #[test]
    fn envoy_builders_decide() {
        assert_eq!(decided("envoy.Allowed().Response()"), Verdict::Allowed);
        assert_eq!(
            decided(
                r#"envoy.Allowed().WithHeader("a", "b").WithoutHeader("c").WithResponseHeader("d", "e").Response().WithMetadata({"k": [1]})"#
            ),
            Verdict::Allowed
        );
        assert_eq!(
            decided("envoy.Denied(403).Response()"),
            Verdict::Denied("denied with HTTP status 403".into())
        );
        assert_eq!(
            decided(r#"envoy.Denied(401).WithHeader("w", "x").WithBody(" no ").Response()"#),
            Verdict::Denied("no".into())
        );
        let Value::Opaque(o) =
            eval(r#"envoy.Allowed().WithHeader("a", "b").Response()"#).expect("ok")
        else {
            panic!("not a response");
        };
        let check = o
            .downcast_ref::<EnvoyCheck>()
            .expect("an envoy.CheckResponse");
        assert_eq!(
            check.decision,
            EnvoyDecision::Ok(EnvoyOk {
                headers: vec![("a".into(), "b".into())],
                ..EnvoyOk::default()
            })
        );
    }

    #[test]
    fn http_builders_decide() {
        assert_eq!(decided("http.Allowed().Response()"), Verdict::Allowed);
        assert_eq!(
            decided(r#"http.Denied("nope").Response()"#),
            Verdict::Denied("nope".into())
        );
    }

    #[test]
    fn what_is_not_a_response_has_no_verdict() {
        assert!(verdict(&eval("true").expect("ok")).is_err());
        let builder = eval("envoy.Allowed()").expect("ok");
        assert!(verdict(&builder)
            .expect_err("a builder")
            .got
            .contains(".Response()"));
        assert!(verdict(&eval("http.Allowed()").expect("ok")).is_err());
    }

    #[test]
    fn bad_arguments_and_limits_are_errors() {
        assert!(eval("envoy.Denied(42).Response()").is_err());
        assert!(bounded("WithBody", "x".repeat(MAX_TEXT + 1)).is_err());
        assert!(bounded("WithBody", "x".repeat(MAX_TEXT)).is_ok());
        let mut src = "envoy.Allowed()".to_string();
        for i in 0..=MAX_ENTRIES {
            src.push_str(&format!(".WithHeader(\"h{i}\", \"v\")"));
        }
        src.push_str(".Response()");
        assert!(eval(&src).is_err(), "more than {MAX_ENTRIES} headers");
        // Methods of one builder are not methods of the other.
        assert!(eval(r#"envoy.Allowed().WithBody("x")"#).is_err());
        assert!(eval(r#"http.Allowed().WithMetadata({})"#).is_err());
    }

    #[test]
    fn request_helpers_read_headers_case_insensitively() {
        let holds = |src: &str| assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        holds(r#"object.attributes.Header("content-type") == ["a/b", "c/d"]"#);
        holds(r#"object.attributes.Header("missing") == []"#);
        holds(r#"object.attributes.QueryParam("q") == ["1"]"#);
        holds(r#"object.attributes.QueryParam("Q") == []"#);
    }
}
