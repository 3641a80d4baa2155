//! Validation patterns: anchors, structure rules and scalar patterns, with Kyverno's pass / fail / skip semantics.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::scalar::{parse_duration, parse_quantity, wildcard};

/// The anchor of a pattern key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `(key)`: condition.
    Condition,
    /// `<(key)`: global condition.
    Global,
    /// `=(key)`: equality (if present).
    Equality,
    /// `X(key)`: negation.
    Negation,
    /// `^(key)`: existence.
    Existence,
    /// `+(key)`: add if not present (mutate).
    AddIfNotPresent,
}

/// Split a pattern key into its anchor and bare key.
pub fn parse_anchor(key: &str) -> Option<(Anchor, &str)> {
    // Fast reject: an anchor ends with `)`.
    let last = key.bytes().rev().find(|b| !b.is_ascii_whitespace());
    if last != Some(b')') {
        return None;
    }
    // A key that starts with an anchor character and ends with `)` has nothing to trim (the common case).
    let k = match key.as_bytes().first() {
        Some(b'(' | b'<' | b'=' | b'X' | b'^' | b'+') if key.ends_with(')') => key,
        _ => key.trim(),
    };
    let (anchor, rest) = match k.as_bytes().first() {
        Some(b'(') => (Anchor::Condition, k),
        Some(b'<') => (Anchor::Global, &k[1..]),
        Some(b'=') => (Anchor::Equality, &k[1..]),
        Some(b'X') => (Anchor::Negation, &k[1..]),
        Some(b'^') => (Anchor::Existence, &k[1..]),
        Some(b'+') => (Anchor::AddIfNotPresent, &k[1..]),
        _ => return None,
    };
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    if inner.is_empty() {
        return None;
    }
    Some((anchor, inner))
}

/// Why a pattern did not match.
#[derive(Debug, Clone, PartialEq)]
pub enum PatternError {
    /// A condition anchor did not hold: the rule does not apply (skip).
    Skip(String),
    /// A validation failure at `path`.
    Fail {
        /// The failing path, e.g. `/spec/containers/0/image/`.
        path: String,
        /// What failed.
        message: String,
    },
    /// The pattern could not be evaluated (error).
    Error(String),
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatternError::Skip(m) | PatternError::Error(m) => f.write_str(m),
            PatternError::Fail { message, .. } => f.write_str(message),
        }
    }
}

/// A position in the resource, rendered (`/spec/containers/0/`) only when an error needs it.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Path::Root => out.push('/'),
            Path::Key(parent, key) => {
                parent.render_into(out);
                out.push_str(key);
                out.push('/');
            }
            Path::Index(parent, i) => {
                parent.render_into(out);
                let _ = write!(out, "{i}/");
            }
        }
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

#[derive(Debug, Clone)]
enum ErrKind {
    Conditional,
    Global,
    Plain,
}

#[derive(Debug, Clone)]
struct Err {
    kind: ErrKind,
    path: String,
    message: String,
}

impl Err {
    fn plain(path: &Path<'_>, message: String) -> Err {
        Err {
            kind: ErrKind::Plain,
            path: path.render(),
            message,
        }
    }
    fn at_unknown(message: String) -> Err {
        Err {
            kind: ErrKind::Plain,
            path: String::new(),
            message,
        }
    }
    fn skippable(&self) -> bool {
        matches!(self.kind, ErrKind::Conditional | ErrKind::Global)
    }
}

/// Tracks whether condition anchor keys were found in the resource at least once.
#[derive(Default)]
struct AnchorMap(BTreeMap<String, bool>);

impl AnchorMap {
    fn check(&mut self, pattern: &Map<String, Value>, resource: &Map<String, Value>) {
        for key in pattern.keys() {
            if let Some((Anchor::Condition | Anchor::Existence, bare)) = parse_anchor(key) {
                let present = resource.get(bare).is_some();
                match self.0.get_mut(key) {
                    Some(found) => *found |= present,
                    None => {
                        self.0.insert(key.clone(), present);
                    }
                }
            }
        }
    }
    fn keys_missing(&self) -> bool {
        self.0.values().any(|found| !found)
    }
}

/// Match `resource` against `pattern`.
pub fn match_pattern(resource: &Value, pattern: &Value) -> Result<(), PatternError> {
    let mut anchors = AnchorMap::default();
    match element(resource, pattern, &Path::Root, &mut anchors) {
        Ok(()) => Ok(()),
        Err(err) if err.skippable() => Err(PatternError::Skip(err.message)),
        Err(err) if anchors.keys_missing() || err.path.is_empty() => {
            Err(PatternError::Error(err.message))
        }
        Err(err) => Err(PatternError::Fail {
            path: err.path,
            message: err.message,
        }),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

fn element(
    resource: &Value,
    pattern: &Value,
    path: &Path<'_>,
    anchors: &mut AnchorMap,
) -> Result<(), Err> {
    match pattern {
        Value::Object(pmap) => {
            let Value::Object(rmap) = resource else {
                return Err(Err::plain(
                    path,
                    format!(
                        "pattern and resource have different structures. Path: {path}. Expected map, found {}",
                        type_name(resource)
                    ),
                ));
            };
            anchors.check(pmap, rmap);
            validate_map(rmap, pmap, path, anchors)
        }
        Value::Array(parr) => {
            let Value::Array(rarr) = resource else {
                return Err(Err::plain(
                    path,
                    format!("validation rule failed at path {path}, resource does not satisfy the expected overlay pattern"),
                ));
            };
            validate_array(rarr, parr, path, anchors)
        }
        scalar => match resource {
            Value::Array(items) => {
                for item in items {
                    if !scalar_matches(item, scalar) {
                        return Err(Err::plain(
                            path,
                            format!(
                                "resource value '{}' does not match '{}' at path {path}",
                                show(resource),
                                show(scalar)
                            ),
                        ));
                    }
                }
                Ok(())
            }
            _ if scalar_matches(resource, scalar) => Ok(()),
            _ => Err(Err::plain(
                path,
                format!(
                    "value '{}' does not match '{}' at path {path}",
                    show(resource),
                    show(scalar)
                ),
            )),
        },
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// Expand wildcard keys of `metadata.labels`/`annotations`-style maps against the resource's keys.
fn expand_wildcard_keys(
    pattern: &Map<String, Value>,
    resource: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    if !pattern.keys().any(|k| k.contains(['*', '?'])) {
        return None;
    }
    let mut out = Map::new();
    for (key, value) in pattern {
        let (anchor, bare) = match parse_anchor(key) {
            Some((a, b)) => (Some(a), b),
            None => (None, key.as_str()),
        };
        if !bare.contains(['*', '?']) {
            out.insert(key.clone(), value.clone());
            continue;
        }
        let matches: Vec<&String> = resource.keys().filter(|k| wildcard(bare, k)).collect();
        if matches.is_empty() {
            // Kept as written: a plain key then fails as missing, an anchor behaves as absent.
            out.insert(key.clone(), value.clone());
        }
        for m in matches {
            let new_key = match anchor {
                Some(Anchor::Condition) => format!("({m})"),
                Some(Anchor::Global) => format!("<({m})"),
                Some(Anchor::Equality) => format!("=({m})"),
                Some(Anchor::Negation) => format!("X({m})"),
                Some(Anchor::Existence) => format!("^({m})"),
                Some(Anchor::AddIfNotPresent) => format!("+({m})"),
                None => m.clone(),
            };
            out.insert(new_key, value.clone());
        }
    }
    Some(out)
}

fn has_anchor_inside(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| parse_anchor(k).is_some() || has_anchor_inside(v)),
        Value::Array(a) => a.iter().any(has_anchor_inside),
        _ => false,
    }
}

fn validate_map(
    resource: &Map<String, Value>,
    pattern: &Map<String, Value>,
    path: &Path<'_>,
    anchors: &mut AnchorMap,
) -> Result<(), Err> {
    let expanded = expand_wildcard_keys(pattern, resource);
    let pattern = expanded.as_ref().unwrap_or(pattern);
    // serde_json maps iterate in key order, which is the order Kyverno evaluates anchors in.
    let anchored = pattern
        .iter()
        .filter_map(|(key, value)| parse_anchor(key).map(|(a, bare)| (a, bare, value)));
    for (anchor, bare, value) in anchored {
        let current = Path::Key(path, bare);
        let found = resource.get(bare);
        match anchor {
            Anchor::Condition => match found {
                Some(v) => {
                    if let Err(e) = element(v, value, &current, anchors) {
                        return Err(Err {
                            kind: ErrKind::Conditional,
                            path: e.path,
                            message: e.message,
                        });
                    }
                }
                None => {
                    return Err(Err {
                        kind: ErrKind::Conditional,
                        path: current.render(),
                        message: "conditional anchor key doesn't exist in the resource".into(),
                    })
                }
            },
            Anchor::Global => {
                if let Some(v) = found {
                    if let Err(e) = element(v, value, &current, anchors) {
                        return Err(Err {
                            kind: ErrKind::Global,
                            path: e.path,
                            message: e.message,
                        });
                    }
                }
            }
            Anchor::Equality => {
                if let Some(v) = found {
                    element(v, value, &current, anchors)?;
                }
            }
            Anchor::Negation => {
                if found.is_some() {
                    return Err(Err::plain(&current, format!("{current} is not allowed")));
                }
            }
            Anchor::Existence => {
                if let Some(v) = found {
                    existence(v, value, &current, anchors)?;
                }
            }
            Anchor::AddIfNotPresent => {}
        }
    }
    // Plain keys whose subtree has anchors first (stable otherwise). Whether a subtree has anchors is found once:
    // the first pass records it for the first 64 keys.
    let mut without_anchors: u64 = 0;
    for anchors_first in [true, false] {
        for (i, (key, value)) in pattern.iter().enumerate() {
            if parse_anchor(key).is_some() {
                continue;
            }
            let bit = u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i));
            let inside = match (anchors_first, bit) {
                (false, Some(bit)) => without_anchors & bit == 0,
                _ => has_anchor_inside(value),
            };
            if anchors_first && !inside {
                without_anchors |= bit.unwrap_or(0);
            }
            if inside != anchors_first {
                continue;
            }
            let current = Path::Key(path, key);
            let found = resource.get(key.as_str()).unwrap_or(&Value::Null);
            if value.as_str() == Some("*") {
                if found.is_null() {
                    return Err(Err::plain(path, format!("{path}/{key} not found")));
                }
                continue;
            }
            element(found, value, &current, anchors)?;
        }
    }
    Ok(())
}

fn existence(
    resource: &Value,
    pattern: &Value,
    path: &Path<'_>,
    anchors: &mut AnchorMap,
) -> Result<(), Err> {
    let (Value::Array(items), Value::Array(patterns)) = (resource, pattern) else {
        return Err(Err::plain(
            path,
            format!("existence anchor at {path} needs a list value and a list pattern"),
        ));
    };
    for p in patterns {
        if !p.is_object() {
            return Err(Err::plain(
                path,
                format!("existence anchor at {path} needs a list of maps as pattern"),
            ));
        }
        let mut found = false;
        for (i, item) in items.iter().enumerate() {
            if element(item, p, &Path::Index(path, i), anchors).is_ok() {
                found = true;
                break;
            }
        }
        if !found {
            return Err(Err::plain(
                path,
                format!("existence anchor validation failed at path {path}"),
            ));
        }
    }
    Ok(())
}

fn validate_array(
    resource: &[Value],
    pattern: &[Value],
    path: &Path<'_>,
    anchors: &mut AnchorMap,
) -> Result<(), Err> {
    let Some(first) = pattern.first() else {
        return Err(Err::plain(path, "pattern Array empty".into()));
    };
    match first {
        Value::Object(_) => {
            let mut applied = 0;
            let mut skipped: Vec<String> = Vec::new();
            for (i, item) in resource.iter().enumerate() {
                match element(item, first, &Path::Index(path, i), anchors) {
                    Ok(()) => applied += 1,
                    Err(e) if e.skippable() => skipped.push(e.message),
                    Err(e) => return Err(e),
                }
            }
            if applied == 0 && !skipped.is_empty() {
                return Err(Err {
                    kind: ErrKind::Conditional,
                    path: path.render(),
                    message: skipped.join("; "),
                });
            }
            Ok(())
        }
        Value::Array(_) => {
            if resource.len() < pattern.len() {
                return Err(Err::at_unknown(
                    format!(
                        "validate Array failed, array length mismatch, resource Array len is {} and pattern Array len is {}",
                        resource.len(),
                        pattern.len()
                    ),
                ));
            }
            for (i, (r, p)) in resource.iter().zip(pattern).enumerate() {
                element(r, p, &Path::Index(path, i), anchors)?;
            }
            Ok(())
        }
        scalar => {
            let as_array = Value::Array(resource.to_vec());
            element(&as_array, scalar, path, anchors)
        }
    }
}

/// Whether a scalar `value` matches a scalar `pattern` (Kyverno's `pattern.Validate`).
pub fn scalar_matches(value: &Value, pattern: &Value) -> bool {
    match pattern {
        Value::Bool(p) => value.as_bool() == Some(*p),
        Value::Number(n) => {
            if let Some(p) = n
                .as_i64()
                .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
            {
                match value {
                    Value::Number(v) => match v.as_i64() {
                        Some(i) => i == p,
                        None => v.as_f64().is_some_and(|f| f.trunc() == f && f == p as f64),
                    },
                    Value::String(s) => s.parse::<i64>().is_ok_and(|i| i == p),
                    _ => false,
                }
            } else {
                let p = n.as_f64().unwrap_or(f64::NAN);
                match value {
                    Value::Number(v) => v.as_f64() == Some(p),
                    Value::String(s) => s.parse::<f64>().is_ok_and(|f| f == p),
                    _ => false,
                }
            }
        }
        Value::Null => match value {
            Value::Null => true,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b,
            _ => false,
        },
        Value::Object(_) => value.is_object(),
        Value::String(p) => string_patterns(value, p),
        Value::Array(_) => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Equal,
    NotEqual,
    More,
    Less,
    MoreEqual,
    LessEqual,
}

fn string_patterns(value: &Value, pattern: &str) -> bool {
    if value.as_str() == Some(pattern) {
        return true;
    }
    if !pattern.contains(['|', '&', ' ']) {
        return string_pattern(value, pattern);
    }
    pattern.split('|').any(|alt| {
        alt.trim_matches(' ')
            .split('&')
            .all(|c| string_pattern(value, c.trim_matches(' ')))
    })
}

fn range_operands(pattern: &str, sep: &str) -> Option<(String, String)> {
    let operand = |s: &str| -> bool {
        let s = s.strip_prefix(['-', '+', '|']).unwrap_or(s);
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if digits_end == 0 {
            return false;
        }
        let mut rest = &s[digits_end..];
        if let Some(frac) = rest.strip_prefix('.') {
            let end = frac
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(frac.len());
            if end == 0 {
                return false;
            }
            rest = &frac[end..];
        }
        rest.chars().all(|c| c.is_ascii_alphabetic())
    };
    // Try every split point so signed operands (`-5-5`) work.
    let mut start = 0;
    while let Some(pos) = pattern[start..].find(sep) {
        let at = start + pos;
        let (l, r) = (&pattern[..at], &pattern[at + sep.len()..]);
        if operand(l) && operand(r) && (sep != "-" || !l.ends_with('!')) {
            return Some((l.to_string(), r.to_string()));
        }
        start = at + 1;
    }
    None
}

fn string_pattern(value: &Value, pattern: &str) -> bool {
    let op = if pattern.len() < 2 {
        Op::Equal
    } else if pattern.starts_with(">=") {
        Op::MoreEqual
    } else if pattern.starts_with("<=") {
        Op::LessEqual
    } else if pattern.starts_with('>') {
        Op::More
    } else if pattern.starts_with('<') {
        Op::Less
    } else if pattern.starts_with('!') {
        Op::NotEqual
    } else {
        if let Some((l, r)) = range_operands(pattern, "!-") {
            return string_pattern(value, &format!("< {l}"))
                || string_pattern(value, &format!("> {r}"));
        }
        if let Some((l, r)) = range_operands(pattern, "-") {
            return string_pattern(value, &format!(">= {l}"))
                && string_pattern(value, &format!("<= {r}"));
        }
        Op::Equal
    };
    let prefix = match op {
        Op::Equal => 0,
        Op::NotEqual | Op::More | Op::Less => 1,
        Op::MoreEqual | Op::LessEqual => 2,
    };
    let operand = pattern.get(prefix..).unwrap_or("").trim();
    compare_duration(value, operand, op)
        || compare_quantity(value, operand, op)
        || compare_string(value, operand, op)
}

fn cmp_op<T: PartialOrd>(a: T, b: T, op: Op) -> bool {
    match op {
        Op::Equal => a == b,
        Op::NotEqual => a != b,
        Op::More => a > b,
        Op::Less => a < b,
        Op::MoreEqual => a >= b,
        Op::LessEqual => a <= b,
    }
}

fn value_text_for_numbers(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("0".into()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{:.6}", n.as_f64().unwrap_or(0.0)),
        }),
        _ => None,
    }
}

fn compare_duration(value: &Value, pattern: &str, op: Op) -> bool {
    let Some(p) = parse_duration(pattern) else {
        return false;
    };
    let Some(text) = value_text_for_numbers(value) else {
        return false;
    };
    let Some(v) = parse_duration(&text) else {
        return false;
    };
    cmp_op(v, p, op)
}

fn compare_quantity(value: &Value, pattern: &str, op: Op) -> bool {
    let Some(p) = parse_quantity(pattern) else {
        return false;
    };
    let Some(text) = value_text_for_numbers(value) else {
        return false;
    };
    let Some(v) = parse_quantity(&text) else {
        return false;
    };
    cmp_op(v, p, op)
}

fn compare_string(value: &Value, pattern: &str, op: Op) -> bool {
    if let Value::String(s) = value {
        return match op {
            Op::Equal => wildcard(pattern, s),
            Op::NotEqual => !wildcard(pattern, s),
            _ => false,
        };
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{:E}", n.as_f64().unwrap_or(0.0)),
        },
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        _ => return false,
    };
    match op {
        Op::Equal => wildcard(pattern, &text),
        Op::NotEqual => !wildcard(pattern, &text),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(resource: Value, pattern: Value) -> &'static str {
        match match_pattern(&resource, &pattern) {
            Ok(()) => "pass",
            Err(PatternError::Skip(_)) => "skip",
            Err(PatternError::Fail { .. }) => "fail",
            Err(PatternError::Error(_)) => "error",
        }
    }

    #[test]
    fn scalar_patterns() {
        let cases = [
            (json!("nginx:1.2"), json!("!*:latest"), true),
            (json!("nginx:latest"), json!("!*:latest"), false),
            (json!("2Gi"), json!("<=4Gi"), true),
            (json!("8Gi"), json!("<=4Gi"), false),
            (json!(null), json!("<=1Gi"), true),
            (json!("30m"), json!("<=1h"), true),
            (json!("2h"), json!("<=1h"), false),
            (json!(80), json!("80"), true),
            (json!("80"), json!(80), true),
            (json!(5), json!("1-10"), true),
            (json!(11), json!("1-10"), false),
            (json!(11), json!("1!-10"), true),
            (json!(5), json!("1!-10"), false),
            (json!("a"), json!("a | b"), true),
            (json!("c"), json!("a | b"), false),
            (json!(3), json!(">1 & <5"), true),
            (json!(6), json!(">1 & <5"), false),
            (json!(""), json!(null), true),
            (json!(false), json!(null), true),
            (json!("x"), json!(null), false),
            (json!(""), json!("?*"), false),
            (json!("abc"), json!("?*"), true),
            (json!(true), json!(true), true),
            (json!("true"), json!(true), false),
            (json!(1.5), json!(1.5), true),
            (json!("x"), json!(">a"), false),
            (json!({"a": 1}), json!({}), true),
        ];
        for (value, pattern, want) in cases {
            assert_eq!(
                scalar_matches(&value, &pattern),
                want,
                "{value} vs {pattern}"
            );
        }
    }

    #[test]
    fn anchors_table() {
        let pod = |c: Value| json!({"spec": {"containers": c}});
        // condition anchor: image latest → pull policy Always
        let p =
            json!({"spec": {"containers": [{"(image)": "*:latest", "imagePullPolicy": "Always"}]}});
        assert_eq!(
            outcome(
                pod(json!([{"image": "a:latest", "imagePullPolicy": "Always"}])),
                p.clone()
            ),
            "pass"
        );
        assert_eq!(
            outcome(
                pod(json!([{"image": "a:latest", "imagePullPolicy": "Never"}])),
                p.clone()
            ),
            "fail"
        );
        assert_eq!(
            outcome(
                pod(json!([{"image": "a:1", "imagePullPolicy": "Never"}])),
                p.clone()
            ),
            "skip"
        );
        assert_eq!(
            outcome(
                pod(
                    json!([{"image": "a:1", "imagePullPolicy": "Never"}, {"image": "b:latest", "imagePullPolicy": "Always"}])
                ),
                p
            ),
            "pass"
        );
        // global anchor
        let g = json!({"spec": {"<(runtimeClassName)": "gvisor", "hostNetwork": false}});
        assert_eq!(
            outcome(
                json!({"spec": {"runtimeClassName": "runc", "hostNetwork": true}}),
                g.clone()
            ),
            "skip"
        );
        assert_eq!(
            outcome(
                json!({"spec": {"runtimeClassName": "gvisor", "hostNetwork": true}}),
                g.clone()
            ),
            "fail"
        );
        assert_eq!(outcome(json!({"spec": {"hostNetwork": true}}), g), "fail");
        // equality anchor
        let e = json!({"spec": {"=(hostPID)": false}});
        assert_eq!(outcome(json!({"spec": {}}), e.clone()), "pass");
        assert_eq!(
            outcome(json!({"spec": {"hostPID": true}}), e.clone()),
            "fail"
        );
        assert_eq!(outcome(json!({"spec": {"hostPID": false}}), e), "pass");
        // negation anchor
        let x = json!({"spec": {"volumes": [{"X(hostPath)": "null"}]}});
        assert_eq!(
            outcome(
                json!({"spec": {"volumes": [{"name": "a", "hostPath": {}}]}}),
                x.clone()
            ),
            "fail"
        );
        assert_eq!(
            outcome(json!({"spec": {"volumes": [{"name": "a"}]}}), x),
            "pass"
        );
        // existence anchor
        let ex = json!({"spec": {"^(containers)": [{"name": "side*"}]}});
        assert_eq!(
            outcome(
                pod(json!([{"name": "app"}, {"name": "sidecar"}])),
                ex.clone()
            ),
            "pass"
        );
        assert_eq!(outcome(pod(json!([{"name": "app"}])), ex), "fail");
        // condition on a map (not in a list) → skip propagates
        let c = json!({"metadata": {"(name)": "special", "labels": {"a": "?*"}}});
        assert_eq!(
            outcome(json!({"metadata": {"name": "other"}}), c.clone()),
            "skip"
        );
        assert_eq!(outcome(json!({"metadata": {"name": "special"}}), c), "fail");
        // "*" means present
        assert_eq!(
            outcome(
                json!({"metadata": {}}),
                json!({"metadata": {"labels": "*"}})
            ),
            "fail"
        );
        // map vs non-map
        assert_eq!(
            outcome(json!({"spec": "x"}), json!({"spec": {"a": 1}})),
            "fail"
        );
        // wildcard label keys
        let w = json!({"metadata": {"labels": {"app.kubernetes.io/*": "?*"}}});
        assert_eq!(
            outcome(
                json!({"metadata": {"labels": {"app.kubernetes.io/name": "x"}}}),
                w.clone()
            ),
            "pass"
        );
        assert_eq!(
            outcome(
                json!({"metadata": {"labels": {"app.kubernetes.io/name": ""}}}),
                w
            ),
            "fail"
        );
        // empty list in resource: every element (none) matches
        assert_eq!(
            outcome(
                pod(json!([])),
                json!({"spec": {"containers": [{"name": "x"}]}})
            ),
            "pass"
        );
    }

    #[test]
    fn anchor_keys() {
        assert_eq!(parse_anchor("(name)"), Some((Anchor::Condition, "name")));
        assert_eq!(parse_anchor("<(name)"), Some((Anchor::Global, "name")));
        assert_eq!(
            parse_anchor("+(name)"),
            Some((Anchor::AddIfNotPresent, "name"))
        );
        assert_eq!(
            parse_anchor("X(hostPath)"),
            Some((Anchor::Negation, "hostPath"))
        );
        assert_eq!(parse_anchor("name"), None);
        assert_eq!(parse_anchor("()"), None);
        // Surrounding whitespace is trimmed, whether or not the key starts with an anchor character.
        assert_eq!(parse_anchor(" =(name) "), Some((Anchor::Equality, "name")));
        assert_eq!(parse_anchor("^(name) "), Some((Anchor::Existence, "name")));
        assert_eq!(
            parse_anchor("\u{2003}(name)"),
            Some((Anchor::Condition, "name"))
        );
        assert_eq!(
            parse_anchor("=( name )"),
            Some((Anchor::Equality, " name "))
        );
        assert_eq!(parse_anchor("Xname)"), None);
    }
}
