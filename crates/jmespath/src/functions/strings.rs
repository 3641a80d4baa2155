//! Kyverno's string, regular-expression and wildcard functions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex::Regex;
use serde_json::Value;

use super::{format_float, Args, Function};
use crate::eval::{json_equal, Interp};
use crate::JmesError;

pub(crate) static FUNCTIONS: &[Function] = &[
    Function::new("compare", 2, Some(2), compare),
    Function::new("equal_fold", 2, Some(2), equal_fold),
    Function::new("replace", 4, Some(4), replace),
    Function::new("replace_all", 3, Some(3), replace_all),
    Function::new("to_upper", 1, Some(1), to_upper),
    Function::new("to_lower", 1, Some(1), to_lower),
    Function::new("trim", 2, Some(2), trim),
    Function::new("trim_prefix", 2, Some(2), trim_prefix),
    Function::new("split", 2, Some(2), split),
    Function::new("truncate", 2, Some(2), truncate),
    Function::new("regex_replace_all", 3, Some(3), regex_replace_all),
    Function::new(
        "regex_replace_all_literal",
        3,
        Some(3),
        regex_replace_all_literal,
    ),
    Function::new("regex_match", 2, Some(2), regex_match),
    Function::new("pattern_match", 2, Some(2), pattern_match),
    Function::new("label_match", 2, Some(2), label_match),
    Function::new("to_boolean", 1, Some(1), to_boolean),
];

/// Longest string a string function may build.
const MAX_OUTPUT: usize = 8 * 1024 * 1024;

fn output(a: &Args<'_, '_>, s: String) -> Result<Value, JmesError> {
    if s.len() > MAX_OUTPUT {
        return Err(a.error(format!("result longer than {MAX_OUTPUT} bytes")));
    }
    Ok(Value::String(s))
}

fn compare(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let ord = a.string(0)?.cmp(a.string(1)?);
    Ok(Value::from(ord as i64))
}

fn equal_fold(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (x, y) = (a.string(0)?, a.string(1)?);
    let same = x.chars().count() == y.chars().count()
        && x.chars()
            .zip(y.chars())
            .all(|(p, q)| p == q || p.to_lowercase().eq(q.to_lowercase()));
    Ok(Value::Bool(same))
}

/// The length `replace` may produce, checked before building it.
fn replaced_len(s: &str, old: &str, new: &str, count: usize) -> usize {
    let matches = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let matches = matches.min(count);
    s.len().saturating_add(matches.saturating_mul(new.len()))
}

fn replace(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (s, old, new) = (a.string(0)?, a.string(1)?, a.string(2)?);
    let n = a.float(3)?;
    let count = if n < 0.0 { usize::MAX } else { n as usize };
    if replaced_len(s, old, new, count) > MAX_OUTPUT {
        return Err(a.error(format!("result longer than {MAX_OUTPUT} bytes")));
    }
    let out = if count == usize::MAX {
        s.replace(old, new)
    } else {
        s.replacen(old, new, count)
    };
    output(a, out)
}

fn replace_all(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (s, old, new) = (a.string(0)?, a.string(1)?, a.string(2)?);
    if replaced_len(s, old, new, usize::MAX) > MAX_OUTPUT {
        return Err(a.error(format!("result longer than {MAX_OUTPUT} bytes")));
    }
    output(a, s.replace(old, new))
}

fn to_upper(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::String(a.string(0)?.to_uppercase()))
}

fn to_lower(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::String(a.string(0)?.to_lowercase()))
}

fn trim(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (s, cutset) = (a.string(0)?, a.string(1)?);
    Ok(Value::String(
        s.trim_matches(|c| cutset.contains(c)).to_string(),
    ))
}

fn trim_prefix(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (s, prefix) = (a.string(0)?, a.string(1)?);
    Ok(Value::String(
        s.strip_prefix(prefix).unwrap_or(s).to_string(),
    ))
}

fn split(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (s, sep) = (a.string(0)?, a.string(1)?);
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep).map(|p| Value::String(p.to_string())).collect()
    };
    Ok(Value::Array(parts))
}

fn truncate(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let s = a.string(0)?;
    let n = a.float(1)?;
    let keep = if n < 0.0 { 0 } else { n as usize };
    Ok(Value::String(s.chars().take(keep).collect()))
}

/// Text of a string, number or boolean argument (Kyverno accepts numbers where it matches text).
pub(crate) fn text_arg<'v>(
    a: &'v Args<'_, '_>,
    i: usize,
) -> Result<std::borrow::Cow<'v, str>, JmesError> {
    match a.value(i)? {
        // A string argument is read in place (regex_match and pattern_match on every element would copy it).
        Value::String(s) => Ok(std::borrow::Cow::Borrowed(s)),
        Value::Bool(b) => Ok(b.to_string().into()),
        Value::Number(n) => Ok(match n.as_i64() {
            Some(i) => i.to_string(),
            None => n
                .as_f64()
                .map(|f| format_float(f64::from(f as f32)))
                .unwrap_or_else(|| n.to_string()),
        }
        .into()),
        other => Err(a.type_error(i, "string or number", other)),
    }
}

/// The functions whose first argument is a regular expression: a literal one is compiled with the expression.
pub(crate) const REGEX_FUNCTIONS: [&str; 3] = [
    "regex_match",
    "regex_replace_all",
    "regex_replace_all_literal",
];

/// Compile a regular expression (Go RE2 syntax is close to Rust's) with the size limits of every regex function.
pub(crate) fn build_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
}

/// The compiled form of `pattern`: the one compiled with the expression when the pattern is a literal, else
/// shared through a small cache. Shared, not cloned: a cloned `Regex` starts with an empty matching cache that its
/// first match must allocate and fill, which cost more than the match itself.
pub(crate) fn regex(a: &Args<'_, '_>, pattern: &str) -> Result<Arc<Regex>, JmesError> {
    if let Some(re) = a.regex {
        return Ok(Arc::clone(re));
    }
    // foldhash (seeded per process): the lookup runs for every regex_match.
    type RegexCache = HashMap<String, Arc<Regex>, foldhash::fast::RandomState>;
    static CACHE: OnceLock<Mutex<RegexCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(RegexCache::default()));
    if let Ok(map) = cache.lock() {
        if let Some(re) = map.get(pattern) {
            return Ok(Arc::clone(re));
        }
    }
    let re = Arc::new(
        build_regex(pattern)
            .map_err(|e| a.error(format!("invalid regular expression {pattern:?}: {e}")))?,
    );
    if let Ok(mut map) = cache.lock() {
        if map.len() >= 256 {
            map.clear();
        }
        map.insert(pattern.to_string(), Arc::clone(&re));
    }
    Ok(re)
}

fn regex_replace_all(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let re = regex(a, a.string(0)?)?;
    let (src, repl) = (text_arg(a, 1)?, text_arg(a, 2)?);
    bounded_replace(a, &re, &src, &repl, true)
}

/// `Regex::replace_all`, stopping as soon as the result grows past [`MAX_OUTPUT`] (a short pattern and a long
/// replacement could otherwise multiply the input's size).
fn bounded_replace(
    a: &Args<'_, '_>,
    re: &Regex,
    src: &str,
    repl: &str,
    expand: bool,
) -> Result<Value, JmesError> {
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(src) {
        let Some(whole) = caps.get(0) else {
            continue;
        };
        out.push_str(src.get(last..whole.start()).unwrap_or(""));
        if expand {
            caps.expand(repl, &mut out);
        } else {
            out.push_str(repl);
        }
        last = whole.end();
        if out.len() > MAX_OUTPUT {
            return Err(a.error(format!("result longer than {MAX_OUTPUT} bytes")));
        }
    }
    out.push_str(src.get(last..).unwrap_or(""));
    output(a, out)
}

fn regex_replace_all_literal(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let re = regex(a, a.string(0)?)?;
    let (src, repl) = (text_arg(a, 1)?, text_arg(a, 2)?);
    bounded_replace(a, &re, &src, &repl, false)
}

fn regex_match(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let re = regex(a, a.string(0)?)?;
    Ok(Value::Bool(re.is_match(&text_arg(a, 1)?)))
}

fn pattern_match(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let pattern = a.string(0)?;
    Ok(Value::Bool(wildcard_match(pattern, &text_arg(a, 1)?)))
}

/// Kyverno's wildcard match: `*` is any run of characters (possibly empty), `?` exactly one character; everything
/// else is literal. An empty pattern matches only the empty string. Linear-time (no backtracking blow-up). The one
/// wildcard matcher of policyctl's Kyverno dialect: patterns, conditions, match blocks and `pattern_match()`.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if !has_wildcards(pattern) {
        return pattern == text;
    }
    if pattern.is_ascii() && text.is_ascii() {
        return wildcard_units(pattern.as_bytes(), text.as_bytes());
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    wildcard_units(&p, &t)
}

/// Whether `pattern` holds a `*` or `?` wildcard. A byte scan: both are ASCII, so they never occur inside another
/// character's UTF-8 encoding (and `contains` with a set of chars decodes every character, several times the cost on
/// the hot paths that ask).
pub fn has_wildcards(pattern: &str) -> bool {
    pattern.bytes().any(|b| matches!(b, b'*' | b'?'))
}

/// Iterative `*` / `?` matching with backtracking to the last star, over bytes (ASCII) or chars.
fn wildcard_units<T: Copy + PartialEq + From<u8>>(p: &[T], t: &[T]) -> bool {
    let star = T::from(b'*');
    let any = T::from(b'?');
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(c) if *c == star => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == any || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    backtrack = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == star))
}

fn label_match(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let selector = a.object(0)?;
    let labels = a.object(1)?;
    let matched = selector
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|w| json_equal(v, w)));
    Ok(Value::Bool(matched))
}

fn to_boolean(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let s = a.string(0)?;
    match s.to_lowercase().as_str() {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        _ => Err(a.error(format!(
            "lowercase argument must be 'true' or 'false', got {s:?}"
        ))),
    }
}
