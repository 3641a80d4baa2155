//! Validation patterns: anchors, structure rules and scalar patterns, with Kyverno's pass / fail / skip semantics.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::scalar::{has_wildcards, parse_duration, parse_quantity, wildcard, Glob};
use policyctl_jmespath::units::Quantity;

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
        let mut out = String::with_capacity(self.rendered_len());
        self.render_into(&mut out);
        out
    }

    /// The length of the rendered path (so that it is rendered into one allocation).
    fn rendered_len(&self) -> usize {
        match self {
            Path::Root => 1,
            Path::Key(parent, key) => parent.rendered_len() + key.len() + 1,
            Path::Index(parent, i) => {
                let mut digits = 1;
                let mut n = *i;
                while n >= 10 {
                    n /= 10;
                    digits += 1;
                }
                parent.rendered_len() + digits + 1
            }
        }
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
        // Written piece by piece: no rendered copy is made for a message.
        match self {
            Path::Root => f.write_str("/"),
            Path::Key(parent, key) => {
                parent.fmt(f)?;
                f.write_str(key)?;
                f.write_str("/")
            }
            Path::Index(parent, i) => {
                parent.fmt(f)?;
                write!(f, "{i}/")
            }
        }
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

/// A validation pattern compiled once (at load for a pattern without variables, after substitution otherwise):
/// every key's anchor parsed, and for every value whether its subtree holds anchors and whether it is `"*"`. Matching
/// borrows everything from it: no key is parsed or copied per evaluation.
#[derive(Debug, Clone)]
pub struct Pattern {
    root: Node,
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// Whether a key of this subtree (this map's keys included) has an anchor.
    anchors_inside: bool,
    /// Whether the value is `"*"` (the key must be present).
    star: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    Map(MapNode),
    Array(Vec<Node>),
    /// A scalar, and the compiled pattern of a string.
    Scalar(Value, Option<StringPattern>),
}

#[derive(Debug, Clone)]
struct MapNode {
    /// In key order (the order of `serde_json`'s map, which is the order Kyverno evaluates anchors in).
    entries: Vec<Entry>,
    /// Whether a key contains a wildcard (`*`, `?`): its keys are expanded against the resource's.
    wildcard_keys: bool,
    /// Whether a key has a condition or existence anchor (tracked to tell an error from a failure).
    tracked: bool,
    /// Whether a key has an anchor (the anchors' pass of [`validate_map`] has work).
    anchored: bool,
    /// Whether a plain key's subtree has anchors (the first plain pass of [`validate_map`] has work).
    plain_anchors_inside: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    /// The anchor and the bare key.
    anchor: Option<(Anchor, String)>,
    value: Node,
}

impl Entry {
    fn anchor(&self) -> Option<(Anchor, &str)> {
        self.anchor.as_ref().map(|(a, bare)| (*a, bare.as_str()))
    }
}

impl Node {
    fn new(value: Value) -> Node {
        match value {
            Value::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                let mut anchors_inside = false;
                let mut wildcard_keys = false;
                let mut tracked = false;
                let mut anchored = false;
                let mut plain_anchors_inside = false;
                for (key, value) in map {
                    let value = Node::new(value);
                    let anchor = parse_anchor(&key).map(|(a, bare)| (a, bare.to_string()));
                    anchors_inside |= anchor.is_some() || value.anchors_inside;
                    wildcard_keys |= has_wildcards(&key);
                    tracked |= matches!(anchor, Some((Anchor::Condition | Anchor::Existence, _)));
                    anchored |= anchor.is_some();
                    plain_anchors_inside |= anchor.is_none() && value.anchors_inside;
                    entries.push(Entry { key, anchor, value });
                }
                Node {
                    kind: Kind::Map(MapNode {
                        entries,
                        wildcard_keys,
                        tracked,
                        anchored,
                        plain_anchors_inside,
                    }),
                    anchors_inside,
                    star: false,
                }
            }
            Value::Array(items) => {
                let items: Vec<Node> = items.into_iter().map(Node::new).collect();
                let anchors_inside = items.iter().any(|n| n.anchors_inside);
                Node {
                    kind: Kind::Array(items),
                    anchors_inside,
                    star: false,
                }
            }
            scalar => {
                let compiled = scalar.as_str().map(StringPattern::new);
                Node {
                    star: scalar.as_str() == Some("*"),
                    kind: Kind::Scalar(scalar, compiled),
                    anchors_inside: false,
                }
            }
        }
    }

    /// Whether the value is `"*"` (the key must be present).
    fn is_star(&self) -> bool {
        self.star
    }
}

impl Pattern {
    /// Compile a pattern (taking its strings, not copying them).
    pub fn new(pattern: Value) -> Pattern {
        Pattern {
            root: Node::new(pattern),
        }
    }

    /// Match `resource` against the pattern.
    pub fn matches(&self, resource: &Value) -> Result<(), PatternError> {
        let mut anchors = AnchorMap::default();
        match element(resource, &self.root, &Path::Root, &mut anchors) {
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
}

/// Tracks whether condition anchor keys were found in the resource at least once (by key text, across the whole
/// pattern), borrowing the keys from the compiled pattern.
#[derive(Default)]
struct AnchorMap<'p>(Vec<(&'p str, bool)>);

impl<'p> AnchorMap<'p> {
    fn check(&mut self, pattern: &'p MapNode, resource: &Map<String, Value>) {
        if !pattern.tracked {
            return;
        }
        for entry in &pattern.entries {
            if let Some((Anchor::Condition | Anchor::Existence, bare)) = entry.anchor() {
                let present = resource.get(bare).is_some();
                match self.0.iter_mut().find(|(k, _)| *k == entry.key) {
                    Some((_, found)) => *found |= present,
                    None => self.0.push((&entry.key, present)),
                }
            }
        }
    }
    fn keys_missing(&self) -> bool {
        self.0.iter().any(|(_, found)| !found)
    }
}

/// Match `resource` against `pattern` (compiled for this one use; see [`Pattern`]).
pub fn match_pattern(resource: &Value, pattern: &Value) -> Result<(), PatternError> {
    Pattern::new(pattern.clone()).matches(resource)
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

fn element<'p>(
    resource: &Value,
    pattern: &'p Node,
    path: &Path<'_>,
    anchors: &mut AnchorMap<'p>,
) -> Result<(), Err> {
    match &pattern.kind {
        Kind::Map(pmap) => {
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
            if pmap.wildcard_keys {
                let expanded = expand_wildcard_keys(pmap, rmap);
                let items = expanded.iter().map(|(key, node)| Item {
                    key,
                    anchor: parse_anchor(key),
                    node,
                });
                // An expanded key is parsed again (a resource key may read as an anchor): its passes are found anew.
                let passes = Passes {
                    anchored: items.clone().any(|i| i.anchor.is_some()),
                    plain_anchors_inside: items
                        .clone()
                        .any(|i| i.anchor.is_none() && i.node.anchors_inside),
                };
                validate_map(rmap, items, passes, path, anchors)
            } else {
                let items = pmap.entries.iter().map(|e| Item {
                    key: &e.key,
                    anchor: e.anchor(),
                    node: &e.value,
                });
                validate_map(rmap, items, pmap.passes(), path, anchors)
            }
        }
        Kind::Array(parr) => {
            let Value::Array(rarr) = resource else {
                return Err(Err::plain(
                    path,
                    format!("validation rule failed at path {path}, resource does not satisfy the expected overlay pattern"),
                ));
            };
            validate_array(rarr, parr, path, anchors)
        }
        Kind::Scalar(scalar, compiled) => match resource {
            Value::Array(items) => {
                for item in items {
                    if !scalar_matches_compiled(item, scalar, compiled.as_ref()) {
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
            _ if scalar_matches_compiled(resource, scalar, compiled.as_ref()) => Ok(()),
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

/// [`scalar_matches`] with the string pattern compiled beforehand.
fn scalar_matches_compiled(
    value: &Value,
    pattern: &Value,
    compiled: Option<&StringPattern>,
) -> bool {
    match (pattern, compiled) {
        (Value::String(_), Some(c)) => c.matches(value),
        _ => scalar_matches(value, pattern),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// One key of a map pattern as matching sees it.
#[derive(Clone, Copy)]
struct Item<'a, 'p> {
    key: &'a str,
    anchor: Option<(Anchor, &'a str)>,
    node: &'p Node,
}

/// Expand wildcard keys of `metadata.labels`/`annotations`-style maps against the resource's keys: the keys of the
/// result, in order, with the compiled values they take (the values are borrowed, never copied).
fn expand_wildcard_keys<'p>(
    pattern: &'p MapNode,
    resource: &Map<String, Value>,
) -> BTreeMap<String, &'p Node> {
    let mut out = BTreeMap::new();
    for entry in &pattern.entries {
        let (anchor, bare) = match entry.anchor() {
            Some((a, b)) => (Some(a), b),
            None => (None, entry.key.as_str()),
        };
        if !has_wildcards(bare) {
            out.insert(entry.key.clone(), &entry.value);
            continue;
        }
        let matches: Vec<&String> = resource.keys().filter(|k| wildcard(bare, k)).collect();
        if matches.is_empty() {
            // Kept as written: a plain key then fails as missing, an anchor behaves as absent.
            out.insert(entry.key.clone(), &entry.value);
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
            out.insert(new_key, &entry.value);
        }
    }
    out
}

/// Which passes of [`validate_map`] have work: the anchors' pass, and the pass of plain keys whose subtree has
/// anchors (a pass without work is skipped, not run over every key).
#[derive(Clone, Copy)]
struct Passes {
    anchored: bool,
    plain_anchors_inside: bool,
}

impl MapNode {
    fn passes(&self) -> Passes {
        Passes {
            anchored: self.anchored,
            plain_anchors_inside: self.plain_anchors_inside,
        }
    }
}

fn validate_map<'a, 'p: 'a>(
    resource: &Map<String, Value>,
    items: impl Iterator<Item = Item<'a, 'p>> + Clone,
    passes: Passes,
    path: &Path<'_>,
    anchors: &mut AnchorMap<'p>,
) -> Result<(), Err> {
    for item in items.clone().filter(|_| passes.anchored) {
        let Some((anchor, bare)) = item.anchor else {
            continue;
        };
        let value = item.node;
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
    // Plain keys whose subtree has anchors first (stable otherwise).
    for anchors_first in [true, false] {
        if anchors_first && !passes.plain_anchors_inside {
            continue;
        }
        for item in items.clone() {
            if item.anchor.is_some() || item.node.anchors_inside != anchors_first {
                continue;
            }
            let key = item.key;
            let current = Path::Key(path, key);
            let found = resource.get(key).unwrap_or(&Value::Null);
            if item.node.is_star() {
                if found.is_null() {
                    return Err(Err::plain(path, format!("{path}/{key} not found")));
                }
                continue;
            }
            element(found, item.node, &current, anchors)?;
        }
    }
    Ok(())
}

fn existence<'p>(
    resource: &Value,
    pattern: &'p Node,
    path: &Path<'_>,
    anchors: &mut AnchorMap<'p>,
) -> Result<(), Err> {
    let (Value::Array(items), Kind::Array(patterns)) = (resource, &pattern.kind) else {
        return Err(Err::plain(
            path,
            format!("existence anchor at {path} needs a list value and a list pattern"),
        ));
    };
    for p in patterns {
        if !matches!(p.kind, Kind::Map(_)) {
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

fn validate_array<'p>(
    resource: &[Value],
    pattern: &'p [Node],
    path: &Path<'_>,
    anchors: &mut AnchorMap<'p>,
) -> Result<(), Err> {
    let Some(first) = pattern.first() else {
        return Err(Err::plain(path, "pattern Array empty".into()));
    };
    match &first.kind {
        Kind::Map(_) => {
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
        Kind::Array(_) => {
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
        Kind::Scalar(..) => {
            let as_array = Value::Array(resource.to_vec());
            element(&as_array, first, path, anchors)
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
    StringPattern::new(pattern).matches(value)
}

/// A scalar string pattern (`"!*:latest"`, `">0"`, `"RuntimeDefault | Localhost"`, `"1-10"`, `"<=1Gi"`) compiled:
/// split into `|` alternatives of `&` conjunctions, each operator, operand, range and the operand read as a duration
/// and as a quantity found once.
#[derive(Debug, Clone)]
struct StringPattern {
    /// The whole pattern: a value equal to it matches.
    text: String,
    alternatives: Vec<Vec<Check>>,
}

#[derive(Debug, Clone)]
enum Check {
    Compare {
        op: Op,
        /// The operand, compiled as a wildcard pattern.
        operand: Glob,
        duration: Option<f64>,
        quantity: Option<Quantity>,
    },
    /// `a!-b`: either check.
    Either(Box<Check>, Box<Check>),
    /// `a-b`: both checks.
    Both(Box<Check>, Box<Check>),
}

impl StringPattern {
    fn new(pattern: &str) -> StringPattern {
        let alternatives = if !pattern.contains(['|', '&', ' ']) {
            vec![vec![Check::new(pattern)]]
        } else {
            pattern
                .split('|')
                .map(|alt| {
                    alt.trim_matches(' ')
                        .split('&')
                        .map(|c| Check::new(c.trim_matches(' ')))
                        .collect()
                })
                .collect()
        };
        StringPattern {
            text: pattern.to_string(),
            alternatives,
        }
    }

    fn matches(&self, value: &Value) -> bool {
        if value.as_str() == Some(self.text.as_str()) {
            return true;
        }
        self.alternatives
            .iter()
            .any(|alt| alt.iter().all(|c| c.matches(value)))
    }
}

impl Check {
    fn new(pattern: &str) -> Check {
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
                return Check::Either(
                    Box::new(Check::new(&format!("< {l}"))),
                    Box::new(Check::new(&format!("> {r}"))),
                );
            }
            if let Some((l, r)) = range_operands(pattern, "-") {
                return Check::Both(
                    Box::new(Check::new(&format!(">= {l}"))),
                    Box::new(Check::new(&format!("<= {r}"))),
                );
            }
            Op::Equal
        };
        let prefix = match op {
            Op::Equal => 0,
            Op::NotEqual | Op::More | Op::Less => 1,
            Op::MoreEqual | Op::LessEqual => 2,
        };
        let operand = pattern.get(prefix..).unwrap_or("").trim();
        Check::Compare {
            op,
            operand: Glob::new(operand),
            duration: parse_duration(operand),
            quantity: parse_quantity(operand),
        }
    }

    fn matches(&self, value: &Value) -> bool {
        match self {
            Check::Compare {
                op,
                operand,
                duration,
                quantity,
            } => {
                compare_duration(value, *duration, *op)
                    || compare_quantity(value, *quantity, *op)
                    || compare_string(value, operand, *op)
            }
            Check::Either(a, b) => a.matches(value) || b.matches(value),
            Check::Both(a, b) => a.matches(value) && b.matches(value),
        }
    }
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

fn compare_duration(value: &Value, pattern: Option<f64>, op: Op) -> bool {
    let Some(p) = pattern else {
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

fn compare_quantity(value: &Value, pattern: Option<Quantity>, op: Op) -> bool {
    let Some(p) = pattern else {
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

fn compare_string(value: &Value, pattern: &Glob, op: Op) -> bool {
    if let Value::String(s) = value {
        return match op {
            Op::Equal => pattern.matches(s),
            Op::NotEqual => !pattern.matches(s),
            _ => false,
        };
    }
    let text: std::borrow::Cow<'_, str> = match value {
        Value::String(s) => s.as_str().into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string().into(),
            None => format!("{:E}", n.as_f64().unwrap_or(0.0)).into(),
        },
        Value::Bool(true) => "true".into(),
        Value::Bool(false) => "false".into(),
        Value::Null => "".into(),
        _ => return false,
    };
    match op {
        Op::Equal => pattern.matches(&text),
        Op::NotEqual => !pattern.matches(&text),
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
    fn paths_render_and_display_alike() {
        let root = Path::Root;
        let spec = Path::Key(&root, "spec");
        let containers = Path::Key(&spec, "containers");
        for i in [0, 9, 10, 123] {
            let item = Path::Index(&containers, i);
            let image = Path::Key(&item, "image");
            let rendered = image.render();
            assert_eq!(rendered, format!("/spec/containers/{i}/image/"));
            assert_eq!(rendered, image.to_string());
            assert_eq!(rendered.len(), image.rendered_len());
        }
        assert_eq!(root.render(), "/");
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

    fn root_entries(p: &Pattern) -> &[Entry] {
        match &p.root.kind {
            Kind::Map(m) => &m.entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn compiling_parses_every_anchor_once_and_flags_subtrees() {
        let p = Pattern::new(json!({"spec": {
            "=(hostPID)": false,
            "(name)": "a*",
            "containers": [{"X(hostPath)": "null", "image": "!*:latest"}],
            "volumes": "*",
            "labels": {"app.kubernetes.io/*": "?*"}
        }}));
        let spec = &root_entries(&p)[0];
        assert_eq!(spec.key, "spec");
        assert_eq!(spec.anchor(), None);
        assert!(spec.value.anchors_inside);
        let Kind::Map(m) = &spec.value.kind else {
            panic!("spec is a map")
        };
        // Key order, each anchor parsed with its bare key.
        let keys: Vec<(&str, Option<(Anchor, &str)>)> = m
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.anchor()))
            .collect();
        assert_eq!(
            keys,
            [
                ("(name)", Some((Anchor::Condition, "name"))),
                ("=(hostPID)", Some((Anchor::Equality, "hostPID"))),
                ("containers", None),
                ("labels", None),
                ("volumes", None),
            ]
        );
        assert!(m.tracked, "a condition anchor is tracked");
        assert!(!m.wildcard_keys);
        let by_key = |k: &str| &m.entries.iter().find(|e| e.key == k).expect(k).value;
        assert!(by_key("containers").anchors_inside);
        assert!(!by_key("labels").anchors_inside);
        assert!(by_key("volumes").is_star());
        let Kind::Map(labels) = &by_key("labels").kind else {
            panic!("labels is a map")
        };
        assert!(labels.wildcard_keys && !labels.tracked);
    }

    #[test]
    fn a_compiled_pattern_gives_the_failing_path_and_can_be_reused() {
        let p =
            Pattern::new(json!({"spec": {"containers": [{"name": "*", "image": "!*:latest"}]}}));
        let bad = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:latest"}]}});
        let good = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}]}});
        for _ in 0..2 {
            assert_eq!(
                p.matches(&bad),
                Err(PatternError::Fail {
                    path: "/spec/containers/1/image/".into(),
                    message: "value 'b:latest' does not match '!*:latest' at path /spec/containers/1/image/"
                        .into()
                })
            );
            assert_eq!(p.matches(&good), Ok(()));
        }
        // A condition key found nowhere turns a failure into an error; found once (in any map with the same anchor
        // key), it stays a failure.
        let c =
            Pattern::new(json!({"spec": {"^(containers)": [{"(sidecar)": "true", "name": "x"}]}}));
        let r = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            c.matches(&r),
            Err(PatternError::Error(
                "existence anchor validation failed at path /spec/containers/".into()
            ))
        );
        let r = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "sidecar": "false"}]}});
        assert!(
            matches!(c.matches(&r), Err(PatternError::Fail { .. })),
            "{:?}",
            c.matches(&r)
        );
        // Wildcard keys expand against the resource, with the anchor kept and the path naming the resource's key.
        let w = Pattern::new(
            json!({"metadata": {"labels": {"=(app.kubernetes.io/*)": "?*", "team": "*"}}}),
        );
        let r = json!({"metadata": {"labels": {"app.kubernetes.io/name": "", "team": "t"}}});
        assert_eq!(
            w.matches(&r),
            Err(PatternError::Fail {
                path: "/metadata/labels/app.kubernetes.io/name/".into(),
                message:
                    "value '' does not match '?*' at path /metadata/labels/app.kubernetes.io/name/"
                        .into()
            })
        );
        let r = json!({"metadata": {"labels": {"other": "x"}}});
        assert_eq!(
            w.matches(&r),
            Err(PatternError::Fail {
                path: "/metadata/labels/".into(),
                message: "/metadata/labels//team not found".into()
            })
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
