//! cel-go's regex extension (`ext.Regex`, which Kyverno's CEL environment includes): `regex.replace(target, pattern,
//! replacement[, count])`, `regex.extract(target, pattern)` and `regex.extractAll(target, pattern[, limit])`.
//!
//! - `replace` replaces every match (at most `count` when given; a negative count is every match, 0 none).
//!   In the replacement, `\1` … `\9` are capture groups, `\0` the whole match and `\\` a backslash; any other
//!   backslash escape, or a group the pattern does not have, is an error.
//! - `extract` is the first match, as an optional: its capture group when the pattern has one (none when the group
//!   did not take part), else the whole match; more than one capture group is an error.
//! - `extractAll` lists every match (at most `limit`, when given and not negative) the same way, skipping matches
//!   whose group did not take part.
//!
//! Patterns are compiled with the size limit and cache of the Kubernetes regex library ([`crate::k8s`]); as
//! everywhere in policyctl, they are Rust `regex` patterns (RE2 syntax; `\d`, `\w`, `\s` are Unicode-aware).

use std::sync::Arc;

use cel::common::types::{CelOptional, CelString, INT_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::args::{out, take, text, value};
use crate::k8s::regex;

/// One piece of a parsed replacement: literal text or a capture group.
enum Piece {
    Text(String),
    Group(usize),
}

fn parse_replacement(
    function: &str,
    replacement: &str,
    groups: usize,
) -> Result<Vec<Piece>, ExecutionError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = replacement.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            literal.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => literal.push('\\'),
            Some(d @ '0'..='9') => {
                let n = d as usize - '0' as usize;
                if n > groups {
                    return Err(ExecutionError::function_error(
                        function,
                        format!("replacement refers to group {n}; the pattern has {groups}"),
                    ));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Group(n));
            }
            Some(other) => {
                return Err(ExecutionError::function_error(
                    function,
                    format!("invalid escape \\{other} in the replacement (\\0 to \\9 or \\\\)"),
                ))
            }
            None => {
                return Err(ExecutionError::function_error(
                    function,
                    "the replacement ends with a lone backslash",
                ))
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// An int argument as a limit: negative is no limit.
fn limit(function: &str, v: &CowVal<'_, '_>) -> Result<usize, ExecutionError> {
    match value(v)? {
        Value::Int(n) if n < 0 => Ok(usize::MAX),
        Value::Int(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected an int, got {}", crate::type_name(&other)),
        )),
    }
}

fn replace_up_to<'b, 'v>(
    target: &CowVal<'b, 'v>,
    pattern: &CowVal<'b, 'v>,
    replacement: &CowVal<'b, 'v>,
    count: usize,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "regex.replace";
    let (target, pattern, replacement) =
        (text(F, target)?, text(F, pattern)?, text(F, replacement)?);
    let re = regex(F, &pattern)?;
    let pieces = parse_replacement(F, &replacement, re.captures_len().saturating_sub(1))?;
    let mut result = String::with_capacity(target.len());
    let mut last = 0;
    for caps in re.captures_iter(&target).take(count) {
        let Some(whole) = caps.get(0) else { continue };
        result.push_str(&target[last..whole.start()]);
        for piece in &pieces {
            match piece {
                Piece::Text(t) => result.push_str(t),
                Piece::Group(n) => result.push_str(caps.get(*n).map_or("", |m| m.as_str())),
            }
        }
        last = whole.end();
    }
    result.push_str(&target[last..]);
    out(Value::String(Arc::new(result)))
}

fn replace<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [target, pattern, replacement] = take(args)?;
    replace_up_to(&target, &pattern, &replacement, usize::MAX)
}

fn replace_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [target, pattern, replacement, count] = take(args)?;
    let count = limit("regex.replace", &count)?;
    replace_up_to(&target, &pattern, &replacement, count)
}

/// The compiled pattern, refusing more than one capture group.
fn extracting(function: &str, pattern: &str) -> Result<Arc<::regex::Regex>, ExecutionError> {
    let re = regex(function, pattern)?;
    if re.captures_len() > 2 {
        return Err(ExecutionError::function_error(
            function,
            "the pattern has more than one capture group",
        ));
    }
    Ok(re)
}

/// What one match extracts: its group when the pattern has one (`None` when the group did not take part).
fn extracted<'t>(re: &::regex::Regex, caps: &::regex::Captures<'t>) -> Option<&'t str> {
    let i = usize::from(re.captures_len() == 2);
    caps.get(i).map(|m| m.as_str())
}

fn extract<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "regex.extract";
    let [target, pattern] = take(args)?;
    let (target, pattern) = (text(F, &target)?, text(F, &pattern)?);
    let re = extracting(F, &pattern)?;
    let found = re
        .captures(&target)
        .and_then(|c| extracted(&re, &c).map(str::to_string));
    Ok(CowVal::Owned(Box::new(match found {
        Some(s) => CelOptional::of(Box::new(CelString::from(s))),
        None => CelOptional::none(),
    })))
}

fn extract_all_up_to<'b, 'v>(
    target: &CowVal<'b, 'v>,
    pattern: &CowVal<'b, 'v>,
    limit: usize,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "regex.extractAll";
    let (target, pattern) = (text(F, target)?, text(F, pattern)?);
    let re = extracting(F, &pattern)?;
    let found: Vec<Value> = re
        .captures_iter(&target)
        .filter_map(|c| extracted(&re, &c).map(|s| Value::String(Arc::new(s.to_string()))))
        .take(limit)
        .collect();
    out(Value::List(Arc::new(found)))
}

fn extract_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [target, pattern] = take(args)?;
    extract_all_up_to(&target, &pattern, usize::MAX)
}

fn extract_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [target, pattern, n] = take(args)?;
    let n = limit("regex.extractAll", &n)?;
    extract_all_up_to(&target, &pattern, n)
}

/// Registers the functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    const S: cel::common::types::Type = STRING_TYPE;
    env.add_overload(
        "regex.replace",
        "regex.replace(string,string,string)",
        vec![S, S, S],
        replace,
    )?;
    env.add_overload(
        "regex.replace",
        "regex.replace(string,string,string,int)",
        vec![S, S, S, INT_TYPE],
        replace_n,
    )?;
    env.add_overload(
        "regex.extract",
        "regex.extract(string,string)",
        vec![S, S],
        extract,
    )?;
    env.add_overload(
        "regex.extractAll",
        "regex.extractAll(string,string)",
        vec![S, S],
        extract_all,
    )?;
    env.add_overload(
        "regex.extractAll",
        "regex.extractAll(string,string,int)",
        vec![S, S, INT_TYPE],
        extract_all_n,
    )
}

#[cfg(test)]
mod tests {
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on_for(
            crate::Dialect::Kyverno,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
            src,
        )
    }

    fn holds(src: &str) {
        assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
    }

    #[test]
    fn replace_with_groups_counts_and_escapes() {
        holds(
            r#"regex.replace('docker.io/nginx:1', '^docker\\.io/(.*)', r'myregistry.io/\1') == 'myregistry.io/nginx:1'"#,
        );
        holds(r#"regex.replace('quay.io/x', '^docker\\.io/(.*)', r'r/\1') == 'quay.io/x'"#);
        holds(r#"regex.replace('a-b-c', '-', '+') == 'a+b+c'"#);
        holds(r#"regex.replace('a-b-c', '-', '+', 1) == 'a+b-c'"#);
        holds(r#"regex.replace('a-b-c', '-', '+', 0) == 'a-b-c'"#);
        holds(r#"regex.replace('a-b-c', '-', '+', -1) == 'a+b+c'"#);
        holds(r#"regex.replace('ab', '(a)(b)', r'\2\1\0\\') == 'baab\\'"#);
        // `$` is literal in a replacement (not Rust's group syntax).
        holds(r#"regex.replace('ab', 'a', '$1') == '$1b'"#);
        assert!(eval(r#"regex.replace('ab', '(a)', r'\2')"#).is_err());
        assert!(eval(r#"regex.replace('ab', 'a', r'\q')"#).is_err());
        assert!(eval(r#"regex.replace('ab', '(', 'x')"#).is_err());
    }

    #[test]
    fn extract_and_extract_all() {
        holds(r#"regex.extract('item-123', '[0-9]+').value() == '123'"#);
        holds(r#"regex.extract('item-123', 'item-([0-9]+)').value() == '123'"#);
        holds(r#"!regex.extract('item', '[0-9]+').hasValue()"#);
        holds(r#"!regex.extract('item', 'item(-[0-9]+)?').hasValue()"#);
        assert!(eval(r#"regex.extract('ab', '(a)(b)')"#).is_err());
        holds(r#"regex.extractAll('a1 b2 c3', '[a-z]([0-9])') == ['1', '2', '3']"#);
        holds(r#"regex.extractAll('a1 b2 c3', '[a-z][0-9]', 2) == ['a1', 'b2']"#);
        holds(r#"regex.extractAll('a1 b2 c3', '[a-z][0-9]', -1) == ['a1', 'b2', 'c3']"#);
        holds(r#"regex.extractAll('none', '[0-9]') == []"#);
    }
}
