//! Kyverno's encoding, hashing and parsing functions.

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::{Args, Function};
use crate::eval::Interp;
use crate::JmesError;

pub(crate) static FUNCTIONS: &[Function] = &[
    Function::new("base64_decode", 1, Some(1), base64_decode),
    Function::new("base64_encode", 1, Some(1), base64_encode),
    Function::new("sha256", 1, Some(1), sha256),
    Function::new("sha1", 1, Some(1), sha1),
    Function::new("md5", 1, Some(1), md5),
    Function::new("parse_json", 1, Some(1), parse_json),
    Function::new("parse_yaml", 1, Some(1), parse_yaml),
];

fn base64_decode(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.string(0)?)
        .map_err(|e| a.error(format!("invalid base64: {e}")))?;
    Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

fn base64_encode(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(a.string(0)?),
    ))
}

fn hex(digest: &[u8]) -> Value {
    Value::String(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn sha256(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(hex(&sha2::Sha256::digest(a.string(0)?.as_bytes())))
}

fn sha1(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(hex(&sha1::Sha1::digest(a.string(0)?.as_bytes())))
}

fn md5(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(hex(&md5::Md5::digest(a.string(0)?.as_bytes())))
}

fn parse_json(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    serde_json::from_str(a.string(0)?).map_err(|e| a.error(format!("invalid JSON: {e}")))
}

fn parse_yaml(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(a.string(0)?).map_err(|e| a.error(format!("invalid YAML: {e}")))?;
    yaml_to_json(&yaml).map_err(|e| a.error(e.to_string()))
}

/// YAML that has no JSON form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum YamlToJsonError {
    /// A number JSON cannot hold (NaN, infinity).
    #[error("{0} is not a JSON number")]
    Number(String),
    /// A mapping key that is a list or a map.
    #[error("mapping keys must be scalars")]
    Key,
}

/// Convert YAML to JSON the way Kubernetes' YAML-to-JSON does: mapping keys become strings.
pub(crate) fn yaml_to_json(yaml: &serde_yaml::Value) -> Result<Value, YamlToJsonError> {
    use serde_yaml::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| YamlToJsonError::Number(n.to_string()))?
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    _ => return Err(YamlToJsonError::Key),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => yaml_to_json(&tagged.value)?,
    })
}
