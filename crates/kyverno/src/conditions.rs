//! Condition operators of `preconditions` and `deny` (`{key, operator, value, message}`), with Kyverno's value
//! semantics: wildcards, durations, quantities, semver, ranges and JSON-encoded lists.

use std::borrow::Cow;

use serde_json::Value;

use super::pattern::scalar_matches;
use super::scalar::{
    number_quantity, parse_duration, parse_quantity, parse_semver, sprint_cow, wildcard,
};

/// An operator, parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `Equals` / `Equal`.
    Equals,
    /// `NotEquals` / `NotEqual`.
    NotEquals,
    /// `AnyIn`.
    AnyIn,
    /// `AllIn`.
    AllIn,
    /// `AnyNotIn`.
    AnyNotIn,
    /// `AllNotIn`.
    AllNotIn,
    /// Deprecated `In`.
    In,
    /// Deprecated `NotIn`.
    NotIn,
    /// `GreaterThan` (and `DurationGreaterThan`).
    GreaterThan,
    /// `GreaterThanOrEquals`.
    GreaterThanOrEquals,
    /// `LessThan`.
    LessThan,
    /// `LessThanOrEquals`.
    LessThanOrEquals,
}

impl Operator {
    /// Parse an operator name (case-insensitive).
    pub fn parse(name: &str) -> Option<Operator> {
        Some(match name.to_ascii_lowercase().as_str() {
            "equals" | "equal" => Operator::Equals,
            "notequals" | "notequal" => Operator::NotEquals,
            "anyin" => Operator::AnyIn,
            "allin" => Operator::AllIn,
            "anynotin" => Operator::AnyNotIn,
            "allnotin" => Operator::AllNotIn,
            "in" => Operator::In,
            "notin" => Operator::NotIn,
            "greaterthan" | "durationgreaterthan" => Operator::GreaterThan,
            "greaterthanorequals" | "durationgreaterthanorequals" => Operator::GreaterThanOrEquals,
            "lessthan" | "durationlessthan" => Operator::LessThan,
            "lessthanorequals" | "durationlessthanorequals" => Operator::LessThanOrEquals,
            _ => return None,
        })
    }
}

/// Evaluate `key <op> value` (both already substituted).
pub fn evaluate(op: Operator, key: &Value, value: &Value) -> bool {
    match op {
        Operator::Equals => equals(key, value),
        Operator::NotEquals => !equals(key, value),
        Operator::AnyIn => set_op(key, value, true, false),
        Operator::AllIn => set_op(key, value, false, false),
        Operator::AnyNotIn => set_op(key, value, true, true),
        Operator::AllNotIn => set_op(key, value, false, true),
        Operator::In => legacy_in(key, value),
        Operator::NotIn => !legacy_in(key, value),
        Operator::GreaterThan => {
            numeric(key, value).is_some_and(|o| o == std::cmp::Ordering::Greater)
        }
        Operator::GreaterThanOrEquals => {
            numeric(key, value).is_some_and(|o| o != std::cmp::Ordering::Less)
        }
        Operator::LessThan => numeric(key, value).is_some_and(|o| o == std::cmp::Ordering::Less),
        Operator::LessThanOrEquals => {
            numeric(key, value).is_some_and(|o| o != std::cmp::Ordering::Greater)
        }
    }
}

/// Both sides as durations, when at least one is a duration string (`"0"` does not count) and the other a
/// duration string or a number of seconds.
fn durations(key: &Value, value: &Value) -> Option<(f64, f64)> {
    let as_dur = |v: &Value| -> Option<f64> {
        match v {
            Value::String(s) if s != "0" => parse_duration(s),
            _ => None,
        }
    };
    let as_secs = |v: &Value| -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        }
    };
    match (as_dur(key), as_dur(value)) {
        (Some(k), Some(v)) => Some((k, v)),
        (Some(k), None) => as_secs(value).map(|v| (k, v)),
        (None, Some(v)) => as_secs(key).map(|k| (k, v)),
        (None, None) => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn equals(key: &Value, value: &Value) -> bool {
    match key {
        Value::Bool(k) => value.as_bool() == Some(*k),
        Value::Number(k) => match (k.as_f64(), number(value)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        Value::Object(_) | Value::Array(_) => key == value,
        Value::String(k) => {
            if let Some((a, b)) = durations(key, value) {
                return a == b;
            }
            if let Some(q) = parse_quantity(k) {
                return match value {
                    Value::String(v) => parse_quantity(v).is_some_and(|v| v == q),
                    Value::Number(n) => number_quantity(n).is_some_and(|v| v == q),
                    _ => false,
                };
            }
            match value {
                Value::String(v) => wildcard(v, k),
                _ => false,
            }
        }
        Value::Null => false,
    }
}

fn numeric(key: &Value, value: &Value) -> Option<std::cmp::Ordering> {
    if let Some((a, b)) = durations(key, value) {
        return a.partial_cmp(&b);
    }
    if let (Some(a), Some(b)) = (number(key), number(value)) {
        return a.partial_cmp(&b);
    }
    let ((Value::String(_), _) | (_, Value::String(_))) = (key, value) else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (k, v) = (text(key)?, text(value)?);
    if let (Some(a), Some(b)) = (parse_quantity(&k), parse_quantity(&v)) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (parse_semver(&k), parse_semver(&v)) {
        return Some(a.cmp(&b));
    }
    None
}

/// The values side of a set operator as strings (borrowed from the value where it holds them); `Range` for a range
/// string, `Invalid` for an invalid type.
enum Values<'a> {
    List(Vec<Cow<'a, str>>),
    Range(&'a str),
    Invalid,
}

/// The items of a JSON list a string held, as strings (owned: the list was parsed from the text).
fn owned_texts(list: &[Value]) -> Vec<Cow<'static, str>> {
    list.iter()
        .map(|v| Cow::Owned(sprint_cow(v).into_owned()))
        .collect()
}

fn values_of(value: &Value) -> Values<'_> {
    match value {
        Value::Array(items) => Values::List(items.iter().map(sprint_cow).collect()),
        Value::String(s) => {
            if let Some(list) = json_list(s) {
                return Values::List(owned_texts(&list));
            }
            let is_range = range_regex().is_some_and(|re| re.is_match(s));
            if is_range {
                Values::Range(s)
            } else {
                Values::List(vec![Cow::Borrowed(s)])
            }
        }
        Value::Number(_) | Value::Bool(_) => Values::List(vec![sprint_cow(value)]),
        _ => Values::Invalid,
    }
}

/// A string holding a JSON list (`"[\"a\", \"b\"]"`), parsed. Only a text that starts with `[` (after JSON
/// whitespace) can be one: any other string is answered without running the parser.
fn json_list(s: &str) -> Option<Vec<Value>> {
    if !s
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('[')
    {
        return None;
    }
    serde_json::from_str::<Vec<Value>>(s).ok()
}

fn range_regex() -> Option<&'static regex::Regex> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?\d+(\.\d+)?[A-Za-z]*!?-[-+]?\d+(\.\d+)?[A-Za-z]*$").ok()
    })
    .as_ref()
}

fn contains(values: &Values<'_>, key: &str) -> bool {
    match values {
        Values::List(items) => items.iter().any(|v| wildcard(v, key) || wildcard(key, v)),
        Values::Range(range) => {
            let k = Value::String(key.to_string());
            let k = key.parse::<f64>().map(Value::from).unwrap_or(k);
            scalar_matches(&k, &Value::String((*range).to_string()))
        }
        Values::Invalid => false,
    }
}

fn keys_of(key: &Value) -> Option<Vec<Cow<'_, str>>> {
    match key {
        Value::Array(items) => Some(items.iter().map(sprint_cow).collect()),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(vec![sprint_cow(key)]),
        _ => None,
    }
}

fn set_op(key: &Value, value: &Value, any: bool, negate: bool) -> bool {
    let Some(keys) = keys_of(key) else {
        return false;
    };
    let values = values_of(value);
    if matches!(values, Values::Invalid) {
        return false;
    }
    let test = |k: &Cow<'_, str>| contains(&values, k) != negate;
    if any {
        keys.iter().any(test)
    } else {
        keys.iter().all(test)
    }
}

fn legacy_in(key: &Value, value: &Value) -> bool {
    match key {
        Value::Array(_) => set_op(key, value, false, false),
        _ => {
            let Some(keys) = keys_of(key) else {
                return false;
            };
            let values = match value {
                Value::Array(items) => Values::List(items.iter().map(sprint_cow).collect()),
                Value::String(s) => match json_list(s) {
                    Some(list) => Values::List(owned_texts(&list)),
                    None => return false,
                },
                _ => return false,
            };
            keys.iter().all(|k| contains(&values, k))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(op: &str, key: Value, value: Value) -> bool {
        evaluate(Operator::parse(op).expect("operator"), &key, &value)
    }

    #[test]
    fn equality() {
        assert!(ev("Equals", json!("nginx:latest"), json!("*:latest")));
        assert!(
            !ev("Equals", json!("*:latest"), json!("nginx:latest")),
            "the value is the pattern"
        );
        assert!(ev("equals", json!(1), json!("1")));
        assert!(ev("Equals", json!(true), json!(true)));
        assert!(!ev("Equals", json!(true), json!("true")));
        assert!(ev("Equals", json!("1h"), json!("60m")));
        assert!(ev("Equals", json!("1Gi"), json!("1024Mi")));
        assert!(ev("Equals", json!({"a": 1}), json!({"a": 1})));
        assert!(!ev("Equals", json!(null), json!(null)));
        assert!(ev("NotEquals", json!("a"), json!("b")));
        assert!(ev("NotEqual", json!("a"), json!("b")));
    }

    #[test]
    fn numbers_durations_quantities_semver() {
        assert!(ev("GreaterThan", json!(5), json!(3)));
        assert!(ev("GreaterThan", json!("5"), json!(3)));
        assert!(ev("GreaterThan", json!("2h"), json!("90m")));
        assert!(ev("GreaterThan", json!("2h"), json!(3600)));
        assert!(ev("LessThan", json!("500Mi"), json!("1Gi")));
        assert!(ev("GreaterThanOrEquals", json!("1.10.0"), json!("1.9.0")));
        assert!(ev("LessThanOrEquals", json!(3), json!(3)));
        assert!(!ev("LessThan", json!("abc"), json!("def")));
        assert!(ev("DurationGreaterThan", json!("10s"), json!("5s")));
    }

    #[test]
    fn set_operators() {
        assert!(ev("AnyIn", json!("CREATE"), json!(["CREATE", "UPDATE"])));
        assert!(!ev("AnyIn", json!("DELETE"), json!(["CREATE", "UPDATE"])));
        assert!(ev("AnyIn", json!(["a", "x"]), json!(["a", "b"])));
        assert!(!ev("AllIn", json!(["a", "x"]), json!(["a", "b"])));
        assert!(ev("AllIn", json!(["a", "b"]), json!(["a", "b", "c"])));
        assert!(ev("AnyNotIn", json!(["a", "x"]), json!(["a", "b"])));
        assert!(!ev("AllNotIn", json!(["a", "x"]), json!(["a", "b"])));
        assert!(ev("AllNotIn", json!(["y", "x"]), json!(["a", "b"])));
        assert!(
            ev("AnyIn", json!("nginx:1.0"), json!(["nginx:*"])),
            "wildcard in value"
        );
        assert!(
            ev("AnyIn", json!("ngin*"), json!(["nginx"])),
            "wildcard in key"
        );
        assert!(
            ev("AnyIn", json!(80), json!(["80"])),
            "numbers are stringified"
        );
        assert!(
            ev("AnyIn", json!("a"), json!("[\"a\",\"b\"]")),
            "JSON-encoded list"
        );
        assert!(ev("AnyIn", json!(5), json!("1-10")), "range");
        assert!(!ev("AnyIn", json!(50), json!("1-10")));
        assert!(ev("AnyNotIn", json!(50), json!("1-10")));
        assert!(ev("AnyIn", json!("a"), json!("a")), "scalar value");
        assert!(ev("In", json!("a"), json!(["a"])));
        assert!(ev("NotIn", json!("z"), json!(["a"])));
        assert!(!ev("AnyIn", json!({"a": 1}), json!(["a"])));
    }

    #[test]
    fn json_encoded_lists() {
        assert_eq!(json_list(" \n[\"a\", 1]"), Some(vec![json!("a"), json!(1)]));
        assert_eq!(json_list("[1, 2"), None);
        assert_eq!(json_list("a"), None);
        assert_eq!(
            json_list("\u{a0}[1]"),
            None,
            "only JSON whitespace may lead"
        );
        assert!(ev("AnyIn", json!("a"), json!(" [\"a\"]")));
        assert!(ev("In", json!("a"), json!("\t[\"a\"]")));
        assert!(!ev("In", json!("a"), json!("a")), "In needs a list");
    }

    #[test]
    fn operator_names() {
        assert_eq!(Operator::parse("ANYIN"), Some(Operator::AnyIn));
        assert_eq!(Operator::parse("bogus"), None);
    }
}
