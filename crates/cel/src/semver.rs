//! The Kubernetes semver library: `semver(s[, normalize])`, `isSemver(s[, normalize])` and, on a
//! `kubernetes.Semver`, `major()`, `minor()`, `patch()`, `compareTo(v)`, `isGreaterThan(v)`, `isLessThan(v)`.
//! Parsing is strict Semantic Versioning 2.0 (the `semver` crate); with `normalize`, a leading `v`, missing minor or
//! patch numbers and leading zeros are accepted first (`v1.02` → `1.2.0`). Comparison is semver precedence (build
//! metadata ignored).

use std::sync::Arc;

use cel::common::types::{Type, BOOL_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::args::{opaque_arg, out, take, value, Comparison};

/// The CEL type name.
pub const TYPE_NAME: &str = "kubernetes.Semver";

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver(semver::Version);

impl Opaque for Semver {
    fn runtime_type_name(&self) -> &str {
        TYPE_NAME
    }
}

/// `v1.02` → `1.2.0`: what `normalize` accepts, rewritten to strict semver.
fn normalized(s: &str) -> String {
    let s = s.strip_prefix('v').unwrap_or(s);
    let end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(end);
    let mut parts: Vec<String> = core
        .split('.')
        .map(|p| {
            let trimmed = p.trim_start_matches('0');
            if trimmed.is_empty() && !p.is_empty() {
                "0".to_string()
            } else {
                trimmed.to_string()
            }
        })
        .collect();
    while parts.len() < 3 {
        parts.push("0".to_string());
    }
    format!("{}{rest}", parts.join("."))
}

/// Parses a version, `normalize`d first if asked.
pub fn parse(s: &str, normalize: bool) -> Option<Semver> {
    let text = if normalize {
        normalized(s)
    } else {
        s.to_string()
    };
    semver::Version::parse(&text).ok().map(Semver)
}

fn semver_type() -> Type {
    Type::new_opaque_type(TYPE_NAME)
}

/// The string and the `normalize` flag of `semver`/`isSemver`.
fn text_args(function: &str, args: &[CowVal<'_, '_>]) -> Result<(String, bool), ExecutionError> {
    let bad = || ExecutionError::function_error(function, "expected (string) or (string, bool)");
    let text = match args.first().map(value).transpose()? {
        Some(Value::String(s)) => s.to_string(),
        _ => return Err(bad()),
    };
    let normalize = match args.get(1).map(value).transpose()? {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(bad()),
    };
    if args.len() > 2 {
        return Err(bad());
    }
    Ok((text, normalize))
}

fn semver_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, normalize) = text_args("semver", &args)?;
    let v = parse(&text, normalize).ok_or_else(|| {
        ExecutionError::function_error("semver", format!("invalid semver {text:?}"))
    })?;
    out(Value::Opaque(Arc::new(v)))
}

fn is_semver<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, normalize) = text_args("isSemver", &args)?;
    out(Value::Bool(parse(&text, normalize).is_some()))
}

fn version(function: &str, v: &CowVal<'_, '_>) -> Result<Semver, ExecutionError> {
    opaque_arg(function, v, "expected a semver")
}

fn component<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    part: fn(&semver::Version) -> u64,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [v]: [CowVal<'b, 'v>; 1] = args
        .try_into()
        .map_err(|a: Vec<_>| ExecutionError::invalid_argument_count(1, a.len()))?;
    let n = part(&version(function, &v)?.0);
    out(Value::Int(i64::try_from(n).map_err(|_| {
        ExecutionError::function_error(function, "version number too large")
    })?))
}

fn major<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    component("major", args, |v| v.major)
}

fn minor<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    component("minor", args, |v| v.minor)
}

fn patch<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    component("patch", args, |v| v.patch)
}

fn comparison<'b, 'v>(
    which: Comparison,
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    which.result(
        version(which.name(), &a)?
            .0
            .cmp_precedence(&version(which.name(), &b)?.0),
    )
}

fn compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    comparison(Comparison::CompareTo, args)
}

fn greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    comparison(Comparison::IsGreaterThan, args)
}

fn less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    comparison(Comparison::IsLessThan, args)
}

/// Registers the type and its functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let v = semver_type;
    env.add_type(v())?;
    env.add_overload("semver", "semver(string)", vec![STRING_TYPE], semver_fn)?;
    env.add_overload(
        "semver",
        "semver(string,bool)",
        vec![STRING_TYPE, BOOL_TYPE],
        semver_fn,
    )?;
    env.add_overload("isSemver", "isSemver(string)", vec![STRING_TYPE], is_semver)?;
    env.add_overload(
        "isSemver",
        "isSemver(string,bool)",
        vec![STRING_TYPE, BOOL_TYPE],
        is_semver,
    )?;
    env.add_member_overload("major", "semver.major()", v(), vec![], major)?;
    env.add_member_overload("minor", "semver.minor()", v(), vec![], minor)?;
    env.add_member_overload("patch", "semver.patch()", v(), vec![], patch)?;
    env.add_member_overload(
        "compareTo",
        "semver.compareTo(semver)",
        v(),
        vec![v()],
        compare_to,
    )?;
    env.add_member_overload(
        "isGreaterThan",
        "semver.isGreaterThan(semver)",
        v(),
        vec![v()],
        greater,
    )?;
    env.add_member_overload(
        "isLessThan",
        "semver.isLessThan(semver)",
        v(),
        vec![v()],
        less,
    )
}

#[cfg(test)]
mod tests {
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p",
            "labels": {"version": "1.4.2"}}}),
            src,
        )
    }

    #[test]
    fn semver() {
        for src in [
            "semver('1.2.3').major() == 1 && semver('1.2.3').minor() == 2 && semver('1.2.3').patch() == 3",
            "semver(object.metadata.labels.version).isGreaterThan(semver('1.4.1'))",
            "semver('1.0.0-alpha').isLessThan(semver('1.0.0'))",
            "semver('1.0.0+build1').compareTo(semver('1.0.0+build2')) == 0",
            "semver('2.0.0').compareTo(semver('10.0.0')) == -1",
            "isSemver('1.2.3') && !isSemver('v1.2') && isSemver('v1.2', true) && !isSemver('x', true)",
            "semver('v01.2', true) == semver('1.2.0')",
            // Quantities and versions have their own compareTo.
            "quantity('1').compareTo(quantity('2')) == -1 && semver('2.0.0').compareTo(semver('1.0.0')) == 1",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let e = eval("semver('1.2')").expect_err("not strict semver");
        assert!(e.to_string().contains("invalid semver"), "{e}");
    }
}
