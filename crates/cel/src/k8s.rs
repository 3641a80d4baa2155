//! Kubernetes CEL libraries the `cel` crate lacks: the Kubernetes lists library (`isSorted`, `sum`, `min`, `max`,
//! `indexOf`, `lastIndexOf`), `ext.Sets` (`sets.contains`, `sets.equivalent`, `sets.intersects`) and the Kubernetes
//! regex library (`find`, `findAll`; `matches` is compiled to a version that keeps its pattern compiled), and `cel.bind(name, value, expression)` (cel-go's `ext.Bindings`, a macro:
//! `value` is evaluated once and named in `expression`).
//!
//! Cost: every function is linear in its input, except `sets.*`, which compare every pair of elements and refuse to
//! compare more than [`MAX_PAIRS`] pairs (an error, so the failure policy applies); regular expressions are compiled
//! with a size limit.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cel::common::ast::{ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue};
use cel::common::types::{INT_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::args::{take, text, value};

/// The most element pairs one `sets.*` call compares.
pub const MAX_PAIRS: usize = 1_000_000;

/// The largest compiled regular expression (bytes of the compiled program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn list(function: &str, v: &CowVal<'_, '_>) -> Result<std::sync::Arc<Vec<Value>>, ExecutionError> {
    match value(v)? {
        Value::List(items) => Ok(items),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected a list, got {}", crate::type_name(&other)),
        )),
    }
}

fn owned<'b, 'v>(v: Value) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::Owned(crate::bind::from_value(v)?))
}

/// CEL equality, with numbers compared across int, uint and double (`1 == 1u == 1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// The order of two elements of one comparable type.
fn compare(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    if std::mem::discriminant(a) != std::mem::discriminant(b) {
        return Err(ExecutionError::function_error(
            function,
            "list elements must have the same type",
        ));
    }
    a.partial_cmp(b)
        .ok_or_else(|| ExecutionError::function_error(function, "list elements must be comparable"))
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [l] = take(args)?;
    let items = list("isSorted", &l)?;
    for pair in items.windows(2) {
        if compare("isSorted", &pair[0], &pair[1])? == Ordering::Greater {
            return owned(Value::Bool(false));
        }
    }
    owned(Value::Bool(true))
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [l] = take(args)?;
    let items = list("sum", &l)?;
    let overflow = || ExecutionError::function_error("sum", "integer overflow");
    let mut total = match items.first() {
        None => return owned(Value::Int(0)),
        Some(Value::Int(_)) => Value::Int(0),
        Some(Value::UInt(_)) => Value::UInt(0),
        Some(Value::Float(_)) => Value::Float(0.0),
        Some(Value::Duration(_)) => Value::Duration(chrono::Duration::zero()),
        Some(other) => {
            return Err(ExecutionError::function_error(
                "sum",
                format!("cannot sum a list of {}", crate::type_name(other)),
            ))
        }
    };
    for item in items.iter() {
        total = match (total, item) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_add(*b).ok_or_else(overflow)?),
            (Value::UInt(a), Value::UInt(b)) => {
                Value::UInt(a.checked_add(*b).ok_or_else(overflow)?)
            }
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (Value::Duration(a), Value::Duration(b)) => {
                Value::Duration(a.checked_add(b).ok_or_else(overflow)?)
            }
            _ => {
                return Err(ExecutionError::function_error(
                    "sum",
                    "list elements must have the same type",
                ))
            }
        };
    }
    owned(total)
}

fn extreme<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [l] = take(args)?;
    let items = list(function, &l)?;
    let mut best = items.first().ok_or_else(|| {
        ExecutionError::function_error(function, format!("{function} of an empty list"))
    })?;
    for item in items.iter().skip(1) {
        if compare(function, item, best)? == keep {
            best = item;
        }
    }
    owned(best.clone())
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("min", args, Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("max", args, Ordering::Greater)
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [l, x] = take(args)?;
    let (items, x) = (list("indexOf", &l)?, value(&x)?);
    let found = items.iter().position(|i| equal(i, &x));
    owned(Value::Int(found.map_or(-1, |i| i as i64)))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [l, x] = take(args)?;
    let (items, x) = (list("lastIndexOf", &l)?, value(&x)?);
    let found = items.iter().rposition(|i| equal(i, &x));
    owned(Value::Int(found.map_or(-1, |i| i as i64)))
}

fn pairs(function: &str, a: &[Value], b: &[Value]) -> Result<(), ExecutionError> {
    if a.len().saturating_mul(b.len()) > MAX_PAIRS {
        return Err(ExecutionError::function_error(
            function,
            format!(
                "comparing {} elements with {} exceeds the cost limit ({MAX_PAIRS} comparisons)",
                a.len(),
                b.len()
            ),
        ));
    }
    Ok(())
}

fn contains_all(a: &[Value], b: &[Value]) -> bool {
    b.iter().all(|x| a.iter().any(|y| equal(x, y)))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    let (a, b) = (list("sets.contains", &a)?, list("sets.contains", &b)?);
    pairs("sets.contains", &a, &b)?;
    owned(Value::Bool(contains_all(&a, &b)))
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    let (a, b) = (list("sets.equivalent", &a)?, list("sets.equivalent", &b)?);
    pairs("sets.equivalent", &a, &b)?;
    owned(Value::Bool(contains_all(&a, &b) && contains_all(&b, &a)))
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    let (a, b) = (list("sets.intersects", &a)?, list("sets.intersects", &b)?);
    pairs("sets.intersects", &a, &b)?;
    owned(Value::Bool(a.iter().any(|x| b.iter().any(|y| equal(x, y)))))
}

/// The name `matches` calls are compiled to ([`rewrite_matches`]): the same search (does the pattern match anywhere
/// in the string), with the pattern compiled once and kept — cel's own `matches` compiles it on every call, in a
/// comprehension once per element.
pub(crate) const CACHED_MATCHES: &str = "@matches";

/// Patterns kept compiled at most (the cache is emptied when full: patterns built from request data cannot grow it
/// without bound).
const REGEX_CACHE_ENTRIES: usize = 64;

/// A pattern compiled with the size limit, from the process-wide cache when it was compiled before.
pub(crate) fn regex(function: &str, pattern: &str) -> Result<Arc<regex::Regex>, ExecutionError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<regex::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(re) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(pattern)
    {
        return Ok(re.clone());
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Arc::new)
        .map_err(|e| ExecutionError::function_error(function, format!("invalid regex: {e}")))?;
    let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if cached.len() >= REGEX_CACHE_ENTRIES {
        cached.clear();
    }
    cached.insert(pattern.to_string(), re.clone());
    Ok(re)
}

fn matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, re] = take(args)?;
    let (s, re) = (text("matches", &s)?, text("matches", &re)?);
    owned(Value::Bool(regex("matches", &re)?.is_match(&s)))
}

/// Compile `s.matches(re)` and `matches(s, re)` to [`CACHED_MATCHES`].
pub(crate) fn rewrite_matches(e: &mut IdedExpr) {
    crate::budget::children_mut(e, &mut rewrite_matches);
    if let Expr::Call(c) = &mut e.expr {
        if c.func_name != "matches" {
            return;
        }
        match (c.target.take(), c.args.len()) {
            (Some(target), 1) => {
                c.func_name = CACHED_MATCHES.to_string();
                c.args.insert(0, *target);
            }
            (None, 2) => c.func_name = CACHED_MATCHES.to_string(),
            (target, _) => c.target = target,
        }
    }
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, re] = take(args)?;
    let (s, re) = (text("find", &s)?, text("find", &re)?);
    let found = regex("find", &re)?
        .find(&s)
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    owned(Value::String(found.into()))
}

fn find_all_up_to<'b, 'v>(
    s: &CowVal<'b, 'v>,
    re: &CowVal<'b, 'v>,
    limit: Option<i64>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (s, re) = (text("findAll", s)?, text("findAll", re)?);
    let limit = match limit {
        Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    let found: Vec<Value> = regex("findAll", &re)?
        .find_iter(&s)
        .take(limit)
        .map(|m| Value::String(m.as_str().to_string().into()))
        .collect();
    owned(Value::List(found.into()))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, re] = take(args)?;
    find_all_up_to(&s, &re, None)
}

fn find_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, re, n] = take(args)?;
    let n = match value(&n)? {
        Value::Int(n) => n,
        other => {
            return Err(ExecutionError::function_error(
                "findAll",
                format!("expected an int, got {}", crate::type_name(&other)),
            ))
        }
    };
    find_all_up_to(&s, &re, Some(n))
}

/// Expands `cel.bind(name, value, expression)` into a comprehension over an empty list whose accumulator, `name`,
/// starts as `value`: the result is `expression`, with `name` bound. Other `x.bind(...)` calls are left alone.
fn bind_macro(
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    let is_cel =
        matches!(target.as_ref().map(|t| &t.expr), Some(Expr::Ident(name)) if name == "cel");
    if !is_cel || args.len() != 3 {
        return Ok(None);
    }
    let result = args
        .pop()
        .ok_or_else(|| helper.new_error(0, "cel.bind needs 3 arguments"))?;
    let init = args
        .pop()
        .ok_or_else(|| helper.new_error(0, "cel.bind needs 3 arguments"))?;
    let var = args
        .pop()
        .ok_or_else(|| helper.new_error(0, "cel.bind needs 3 arguments"))?;
    let Expr::Ident(name) = &var.expr else {
        return Err(helper.new_error(
            var.id,
            "cel.bind() variable name must be a simple identifier",
        ));
    };
    let name = name.clone();
    let bind = ComprehensionExpr {
        iter_range: helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
        iter_var: "#unused".to_owned(),
        iter_var2: None,
        accu_var: name.clone(),
        accu_init: init,
        loop_cond: helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into()))),
        loop_step: helper.next_expr(Expr::Ident(name)),
        result,
    };
    target.take();
    Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(bind)))))
}

/// Registers the functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_macro(Macro::receiver("bind", 3, bind_macro))?;
    env.add_member_overload("isSorted", "list.isSorted()", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list.sum()", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list.min()", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list.max()", LIST_TYPE, vec![], max)?;
    env.add_member_overload(
        "indexOf",
        "list.indexOf(dyn)",
        LIST_TYPE,
        vec![cel::common::types::DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list.lastIndexOf(dyn)",
        LIST_TYPE,
        vec![cel::common::types::DYN_TYPE],
        last_index_of,
    )?;
    env.add_overload(
        "sets.contains",
        "sets.contains(list,list)",
        vec![LIST_TYPE, LIST_TYPE],
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "sets.equivalent(list,list)",
        vec![LIST_TYPE, LIST_TYPE],
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "sets.intersects(list,list)",
        vec![LIST_TYPE, LIST_TYPE],
        sets_intersects,
    )?;
    env.add_overload(
        CACHED_MATCHES,
        "@matches(string,string)",
        vec![STRING_TYPE, STRING_TYPE],
        matches,
    )?;
    env.add_member_overload(
        "find",
        "string.find(string)",
        STRING_TYPE,
        vec![STRING_TYPE],
        find,
    )?;
    env.add_member_overload(
        "findAll",
        "string.findAll(string)",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string.findAll(string,int)",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )
}

#[cfg(test)]
mod tests {
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"ports": [3, 1, 2], "names": ["b", "a"], "sorted": [1, 2, 2, 5]}}),
            src,
        )
    }

    #[test]
    fn lists() {
        for src in [
            "[1, 2, 2, 3].isSorted() && !object.spec.ports.isSorted() && object.spec.sorted.isSorted()",
            "[].isSorted() && ['a', 'b'].isSorted()",
            "object.spec.ports.sum() == 6 && [].sum() == 0 && [1.5, 2.5].sum() == 4.0",
            "object.spec.ports.min() == 1 && object.spec.ports.max() == 3",
            "object.spec.names.min() == 'a' && object.spec.names.max() == 'b'",
            "[1, 2, 3, 2].indexOf(2) == 1 && [1, 2, 3, 2].lastIndexOf(2) == 3 && [1].indexOf(9) == -1",
            "object.spec.names.indexOf('a') == 1",
            // The strings extension's indexOf still works beside the list overload.
            "'hello'.indexOf('l') == 2",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        for (src, error) in [
            ("[].min()", "min of an empty list"),
            ("[1, 'a'].isSorted()", "same type"),
            ("[9223372036854775807, 1].sum()", "overflow"),
        ] {
            let e = eval(src).expect_err(src);
            assert!(e.to_string().contains(error), "{src}: {e}");
        }
    }

    #[test]
    fn sets() {
        for src in [
            "sets.contains([1, 2, 3], [3, 1]) && !sets.contains([1], [2]) && sets.contains([1], [])",
            "sets.equivalent([1, 2, 2], [2, 1]) && !sets.equivalent([1], [1, 2])",
            "sets.contains([1, 2], [1u, 2.0])",
            "sets.intersects(object.spec.names, ['x', 'a']) && !sets.intersects([1], [])",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let e = eval("sets.contains(lists.range(2000), lists.range(2000))")
            .expect_err("too many pairs");
        assert!(e.to_string().contains("exceeds the cost limit"), "{e}");
    }

    #[test]
    fn cel_bind() {
        for src in [
            "cel.bind(n, object.metadata.name, n + n == 'pp')",
            "cel.bind(xs, [1, 2, 3], xs.all(x, x > 0) && size(xs) == 3)",
            "cel.bind(a, 1, cel.bind(b, a + 1, a + b == 3))",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let bad = crate::Program::compile("cel.bind('n', 1, n)");
        assert!(bad.is_err());
    }

    #[test]
    fn regex_find() {
        for src in [
            "'abc 123 def 456'.find('[0-9]+') == '123' && 'abc'.find('[0-9]+') == ''",
            "'abc 123 def 456'.findAll('[0-9]+') == ['123', '456']",
            "'a1b2c3'.findAll('[0-9]', 2) == ['1', '2'] && 'a1b2'.findAll('[0-9]', -1) == ['1', '2']",
            "object.metadata.name.find('p') == 'p'",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let e = eval("'x'.find('(')").expect_err("bad regex");
        assert!(e.to_string().contains("invalid regex"), "{e}");
    }

    #[test]
    fn matches_is_compiled_to_the_cached_version_with_the_same_answers() {
        let p = crate::Program::compile("'abc'.matches('^a') && matches('abc', 'c$')")
            .expect("compiles");
        let refs = p.expression.references();
        assert!(!refs.has_function("matches"), "{:?}", refs.functions());
        assert!(refs.has_function(super::CACHED_MATCHES));
        for src in [
            "'abc'.matches('^a') && matches('abc', 'c$') && 'abc'.matches('b')",
            "!'abc'.matches('^b') && !matches('abc', 'x')",
            // The same pattern many times (a comprehension): one compilation, the same answers.
            "[1, 2, 3].all(i, string(i).matches('^[0-9]$')) && ![1, 22].all(i, string(i).matches('^[0-9]$'))",
            "object.metadata.name.matches('^p')",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let e = eval("'x'.matches('(')").expect_err("bad regex");
        assert!(e.to_string().contains("invalid regex"), "{e}");
        // A pattern too large to compile within the size limit is an error, never a pass.
        let e = eval("'x'.matches('(a{1000}){1000}')").expect_err("too large");
        assert!(e.to_string().contains("invalid regex"), "{e}");
    }
}
