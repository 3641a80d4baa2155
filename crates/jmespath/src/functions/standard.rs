//! The 26 functions of the JMESPath specification (`sum` is Kyverno's quantity-aware one, in `arithmetic`).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{as_integer, json_string, number, type_name, Args, Function};
use crate::eval::{json_equal, number_cmp, Interp};
use crate::JmesError;

pub(crate) static FUNCTIONS: &[Function] = &[
    Function::new("abs", 1, Some(1), abs),
    Function::new("avg", 1, Some(1), avg),
    Function::new("ceil", 1, Some(1), ceil),
    Function::new("contains", 2, Some(2), contains),
    Function::new("ends_with", 2, Some(2), ends_with),
    Function::new("floor", 1, Some(1), floor),
    Function::new("join", 2, Some(2), join),
    Function::new("keys", 1, Some(1), keys),
    Function::new("length", 1, Some(1), length),
    Function::new("map", 2, Some(2), map),
    Function::new("max", 1, Some(1), max),
    Function::new("max_by", 2, Some(2), max_by),
    Function::new("merge", 1, None, merge),
    Function::new("min", 1, Some(1), min),
    Function::new("min_by", 2, Some(2), min_by),
    Function::new("not_null", 1, None, not_null),
    Function::new("reverse", 1, Some(1), reverse),
    Function::new("sort", 1, Some(1), sort),
    Function::new("sort_by", 2, Some(2), sort_by),
    Function::new("starts_with", 2, Some(2), starts_with),
    Function::new("to_array", 1, Some(1), to_array),
    Function::new("to_number", 1, Some(1), to_number),
    Function::new("to_string", 1, Some(1), to_string),
    Function::new("type", 1, Some(1), type_of),
    Function::new("values", 1, Some(1), values),
];

fn abs(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let n = a.number(0)?;
    if let Some(i) = n.as_i64() {
        if let Some(v) = i.checked_abs() {
            return Ok(Value::from(v));
        }
    }
    Ok(number(a.float(0)?.abs()))
}

/// The elements of argument `i`, all of which must be numbers, as floats.
fn numbers(a: &Args<'_, '_>, i: usize) -> Result<Vec<f64>, JmesError> {
    a.array(i)?
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| a.error("number out of range")),
            other => Err(a.error(format!(
                "argument {}: expected array of numbers, found {}",
                i + 1,
                type_name(other)
            ))),
        })
        .collect()
}

fn avg(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let items = numbers(a, 0)?;
    if items.is_empty() {
        return Ok(Value::Null);
    }
    Ok(number(items.iter().sum::<f64>() / items.len() as f64))
}

fn ceil(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let n = a.number(0)?;
    if n.is_i64() || n.is_u64() {
        return Ok(Value::Number(n.clone()));
    }
    Ok(number(a.float(0)?.ceil()))
}

fn floor(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let n = a.number(0)?;
    if n.is_i64() || n.is_u64() {
        return Ok(Value::Number(n.clone()));
    }
    Ok(number(a.float(0)?.floor()))
}

fn contains(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let search = a.value(1)?;
    match a.value(0)? {
        Value::Array(items) => Ok(Value::Bool(items.iter().any(|v| json_equal(v, search)))),
        Value::String(s) => Ok(Value::Bool(match search {
            Value::String(needle) => s.contains(needle.as_str()),
            _ => false,
        })),
        other => Err(a.type_error(0, "array or string", other)),
    }
}

fn ends_with(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::Bool(a.string(0)?.ends_with(a.string(1)?)))
}

fn starts_with(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::Bool(a.string(0)?.starts_with(a.string(1)?)))
}

fn join(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let glue = a.string(0)?;
    Ok(Value::String(a.strings(1)?.join(glue)))
}

fn keys(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::Array(
        a.object(0)?
            .keys()
            .map(|k| Value::String(k.clone()))
            .collect(),
    ))
}

fn values(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::Array(a.object(0)?.values().cloned().collect()))
}

fn length(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let n = match a.value(0)? {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        other => return Err(a.type_error(0, "string, array or object", other)),
    };
    Ok(Value::from(n))
}

fn map(interp: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let expr = a.expref(0)?;
    let items = a.array(1)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(interp.apply(expr, item)?);
    }
    Ok(Value::Array(out))
}

/// Compare two values of the same sortable type (numbers or strings).
fn sort_cmp(x: &Value, y: &Value) -> Ordering {
    match (x, y) {
        (Value::Number(p), Value::Number(q)) => number_cmp(p, q).unwrap_or(Ordering::Equal),
        (Value::String(p), Value::String(q)) => p.cmp(q),
        _ => Ordering::Equal,
    }
}

/// Check that all `items` are numbers, or all are strings; returns the shared type name.
fn sortable<'v>(
    a: &Args<'_, '_>,
    items: impl Iterator<Item = &'v Value>,
    what: &str,
) -> Result<(), JmesError> {
    let mut kind: Option<&'static str> = None;
    for item in items {
        let t = type_name(item);
        if t != "number" && t != "string" {
            return Err(a.error(format!("{what} must be numbers or strings, found {t}")));
        }
        match kind {
            None => kind = Some(t),
            Some(k) if k != t => {
                return Err(a.error(format!(
                    "{what} must all be numbers or all strings, found {k} and {t}"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn extreme(a: &Args<'_, '_>, want: Ordering) -> Result<Value, JmesError> {
    let items = a.array(0)?;
    sortable(a, items.iter(), "array elements")?;
    let mut best: Option<&Value> = None;
    for item in items {
        best = match best {
            Some(b) if sort_cmp(item, b) != want => Some(b),
            _ => Some(item),
        };
    }
    Ok(best.cloned().unwrap_or(Value::Null))
}

fn max(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    extreme(a, Ordering::Greater)
}

fn min(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    extreme(a, Ordering::Less)
}

/// Evaluate `&expr` (argument 1) over the array (argument 0), keyed results checked to be sortable.
fn keyed(interp: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Vec<(Value, usize)>, JmesError> {
    let items = a.array(0)?;
    let expr = a.expref(1)?;
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        keys.push((interp.apply(expr, item)?, i));
    }
    sortable(a, keys.iter().map(|(k, _)| k), "expression results")?;
    Ok(keys)
}

fn extreme_by(
    interp: &mut Interp<'_>,
    a: &Args<'_, '_>,
    want: Ordering,
) -> Result<Value, JmesError> {
    let keys = keyed(interp, a)?;
    let items = a.array(0)?;
    let mut best: Option<&(Value, usize)> = None;
    for entry in &keys {
        best = match best {
            Some(b) if sort_cmp(&entry.0, &b.0) != want => Some(b),
            _ => Some(entry),
        };
    }
    Ok(best
        .and_then(|(_, i)| items.get(*i))
        .cloned()
        .unwrap_or(Value::Null))
}

fn max_by(interp: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    extreme_by(interp, a, Ordering::Greater)
}

fn min_by(interp: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    extreme_by(interp, a, Ordering::Less)
}

fn merge(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let mut out = Map::new();
    for i in 0..a.len() {
        for (k, v) in a.object(i)? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

fn not_null(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    for i in 0..a.len() {
        let v = a.value(i)?;
        if !v.is_null() {
            return Ok(v.clone());
        }
    }
    Ok(Value::Null)
}

fn reverse(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    match a.value(0)? {
        Value::String(s) => Ok(Value::String(s.chars().rev().collect())),
        Value::Array(items) => Ok(Value::Array(items.iter().rev().cloned().collect())),
        other => Err(a.type_error(0, "array or string", other)),
    }
}

fn sort(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let items = a.array(0)?;
    sortable(a, items.iter(), "array elements")?;
    let mut sorted = items.to_vec();
    sorted.sort_by(sort_cmp);
    Ok(Value::Array(sorted))
}

fn sort_by(interp: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let mut keys = keyed(interp, a)?;
    let items = a.array(0)?;
    keys.sort_by(|x, y| sort_cmp(&x.0, &y.0));
    Ok(Value::Array(
        keys.iter()
            .filter_map(|(_, i)| items.get(*i).cloned())
            .collect(),
    ))
}

fn to_array(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(match a.value(0)? {
        Value::Array(items) => Value::Array(items.clone()),
        other => Value::Array(vec![other.clone()]),
    })
}

fn to_number(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(match a.value(0)? {
        Value::Number(n) => Value::Number(n.clone()),
        Value::String(s) => parse_number(s).unwrap_or(Value::Null),
        _ => Value::Null,
    })
}

/// Parse a number from a string as Go's `strconv.ParseFloat` would (`"12"` → 12, `"1.5"` → 1.5, `" 1"` → none);
/// integers stay integers.
pub(crate) fn parse_number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = s.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    let v = serde_json::Number::from_f64(f)?;
    if as_integer(&v).is_some() && !s.contains(['.', 'e', 'E']) {
        return Some(number(f));
    }
    Some(Value::Number(v))
}

fn to_string(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(match a.value(0)? {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(json_string(other)),
    })
}

fn type_of(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::String(type_name(a.value(0)?).to_string()))
}
