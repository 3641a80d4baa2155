//! Two-variable comprehensions (cel-go's `ext.TwoVarComprehensions`, Kubernetes 1.32): `all(k, v, p)`,
//! `exists(k, v, p)`, `existsOne(k, v, p)`, `transformList(k, v, [filter,] e)`, `transformMap(k, v, [filter,] e)` and
//! `transformMapEntry(k, v, [filter,] e)`. Over a list, `k` is the index and `v` the element; over a map, the key and
//! its value.
//!
//! The `cel` crate's interpreter binds only the first iteration variable of a comprehension, so these macros expand
//! into one-variable comprehensions over `@entries(range)` (a list of `[k, v]` pairs), whose body names the pair's
//! halves with two `cel.bind`-shaped comprehensions. The body appears once, so the expansion is linear in the source;
//! its cost is charged like any comprehension's (`budget::instrument` runs after macro expansion). Building a list or
//! map result copies the accumulator at each step (quadratic in the number of entries, bounded by the cost budget's
//! per-iteration charge and the request deadline).

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{
    operators, CallExpr, ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue, MapExpr,
};
use cel::common::types::{DYN_TYPE, LIST_TYPE, MAP_TYPE};
use cel::common::value::CowVal;
use cel::objects::Key;
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::args::{out, take, value};

const ENTRIES: &str = "@entries";
const MAP_INSERT: &str = "@mapInsert";
const MAP_MERGE: &str = "@mapMerge";
const ACCU: &str = "@result";
const ENTRY: &str = "@entry";

fn key_value(k: &Key) -> Value {
    match k {
        Key::Int(i) => Value::Int(*i),
        Key::Uint(u) => Value::UInt(*u),
        Key::Bool(b) => Value::Bool(*b),
        Key::String(s) => Value::String(s.clone()),
    }
}

fn to_key(function: &str, v: Value) -> Result<Key, ExecutionError> {
    v.try_into().map_err(|v: Value| {
        ExecutionError::function_error(
            function,
            format!("{} cannot be a map key", crate::type_name(&v)),
        )
    })
}

/// `@entries(x)`: `[[index, element], ...]` of a list, `[[key, value], ...]` of a map.
fn entries<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [x] = take(args)?;
    let pairs: Vec<Value> = match value(&x)? {
        Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Value::List(Arc::new(vec![
                    Value::Int(i64::try_from(i).unwrap_or(i64::MAX)),
                    v.clone(),
                ]))
            })
            .collect(),
        Value::Map(m) => m
            .map
            .iter()
            .map(|(k, v)| Value::List(Arc::new(vec![key_value(k), v.clone()])))
            .collect(),
        other => {
            return Err(ExecutionError::function_error(
                "comprehension",
                format!("expected a list or a map, got {}", crate::type_name(&other)),
            ))
        }
    };
    out(Value::List(Arc::new(pairs)))
}

fn map_of(function: &str, v: &CowVal<'_, '_>) -> Result<HashMap<Key, Value>, ExecutionError> {
    match value(v)? {
        Value::Map(m) => Ok(m.map.as_ref().clone()),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected a map, got {}", crate::type_name(&other)),
        )),
    }
}

/// `@mapInsert(m, k, v)`: `m` with `k: v` (transformMap; a key is produced once, as each source key is visited once).
fn map_insert<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [m, k, v] = take(args)?;
    let mut map = map_of("transformMap", &m)?;
    map.insert(to_key("transformMap", value(&k)?)?, value(&v)?);
    out(Value::Map(cel::objects::Map { map: Arc::new(map) }))
}

/// `@mapMerge(m, entry)`: `m` with the entries of `entry`; a key already present is an error (transformMapEntry).
fn map_merge<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [m, entry] = take(args)?;
    let mut map = map_of("transformMapEntry", &m)?;
    for (k, v) in map_of("transformMapEntry", &entry)? {
        if map.contains_key(&k) {
            return Err(ExecutionError::function_error(
                "transformMapEntry",
                format!("duplicate key {:?} in the result", key_value(&k)),
            ));
        }
        map.insert(k, v);
    }
    out(Value::Map(cel::objects::Map { map: Arc::new(map) }))
}

fn ident(h: &mut MacroExprHelper<'_>, name: &str) -> IdedExpr {
    h.next_expr(Expr::Ident(name.to_string()))
}

fn call(h: &mut MacroExprHelper<'_>, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
    h.next_expr(Expr::Call(CallExpr {
        func_name: name.to_string(),
        target: None,
        args,
    }))
}

fn int(h: &mut MacroExprHelper<'_>, i: i64) -> IdedExpr {
    h.next_expr(Expr::Literal(LiteralValue::Int(i.into())))
}

fn boolean(h: &mut MacroExprHelper<'_>, b: bool) -> IdedExpr {
    h.next_expr(Expr::Literal(LiteralValue::Boolean(b.into())))
}

/// `name` bound to `init` in `body` (the `cel.bind` shape: a comprehension over nothing whose accumulator is `name`).
fn bind(h: &mut MacroExprHelper<'_>, name: &str, init: IdedExpr, body: IdedExpr) -> IdedExpr {
    let bind = ComprehensionExpr {
        iter_range: h.next_expr(Expr::List(ListExpr::new(Vec::new()))),
        iter_var: "#unused".to_owned(),
        iter_var2: None,
        accu_var: name.to_string(),
        accu_init: init,
        loop_cond: boolean(h, false),
        loop_step: ident(h, name),
        result: body,
    };
    h.next_expr(Expr::Comprehension(Box::new(bind)))
}

#[derive(Clone, Copy)]
enum Kind {
    All,
    Exists,
    ExistsOne,
    TransformList,
    TransformMap,
    TransformMapEntry,
}

fn variable(h: &mut MacroExprHelper<'_>, e: &IdedExpr) -> Result<String, ParseError> {
    match &e.expr {
        Expr::Ident(n) => Ok(n.clone()),
        _ => Err(h.new_error(e.id, "argument must be a simple name")),
    }
}

fn expand(
    kind: Kind,
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    let Some(range) = target.take() else {
        return Ok(None);
    };
    let mut args = std::mem::take(args).into_iter();
    let (Some(k), Some(v)) = (args.next(), args.next()) else {
        return Err(h.new_error(range.id, "two variables are required"));
    };
    let (k, v) = (variable(h, &k)?, variable(h, &v)?);
    if k == v {
        return Err(h.new_error(range.id, "the two variables must differ"));
    }
    let rest: Vec<IdedExpr> = args.collect();
    let (filter, body) = match rest.len() {
        1 => (None, rest.into_iter().next()),
        2 => {
            let mut r = rest.into_iter();
            (r.next(), r.next())
        }
        _ => (None, None),
    };
    let Some(body) = body else {
        return Err(h.new_error(range.id, "wrong number of arguments"));
    };
    let accu = || ACCU.to_string();
    // The step, before the variables are bound.
    let (init, cond, step, result) = match kind {
        Kind::All | Kind::Exists => {
            let all = matches!(kind, Kind::All);
            let a = ident(h, ACCU);
            let cond_arg = if all {
                a
            } else {
                call(h, operators::LOGICAL_NOT, vec![a])
            };
            let cond = call(h, operators::NOT_STRICTLY_FALSE, vec![cond_arg]);
            let a = ident(h, ACCU);
            let op = if all {
                operators::LOGICAL_AND
            } else {
                operators::LOGICAL_OR
            };
            let step = call(h, op, vec![a, body]);
            (boolean(h, all), cond, step, ident(h, ACCU))
        }
        Kind::ExistsOne => {
            let a = ident(h, ACCU);
            let one = int(h, 1);
            let plus = call(h, operators::ADD, vec![a, one]);
            let same = ident(h, ACCU);
            let step = call(h, operators::CONDITIONAL, vec![body, plus, same]);
            let a = ident(h, ACCU);
            let one = int(h, 1);
            let result = call(h, operators::EQUALS, vec![a, one]);
            (int(h, 0), boolean(h, true), step, result)
        }
        Kind::TransformList | Kind::TransformMap | Kind::TransformMapEntry => {
            let a = ident(h, ACCU);
            let (init, grown) = match kind {
                Kind::TransformList => {
                    let item = h.next_expr(Expr::List(ListExpr::new(vec![body])));
                    (
                        h.next_expr(Expr::List(ListExpr::new(Vec::new()))),
                        call(h, operators::ADD, vec![a, item]),
                    )
                }
                Kind::TransformMap => {
                    let key = ident(h, &k);
                    (
                        h.next_expr(Expr::Map(MapExpr::default())),
                        call(h, MAP_INSERT, vec![a, key, body]),
                    )
                }
                _ => (
                    h.next_expr(Expr::Map(MapExpr::default())),
                    call(h, MAP_MERGE, vec![a, body]),
                ),
            };
            let step = match filter {
                Some(f) => {
                    let same = ident(h, ACCU);
                    call(h, operators::CONDITIONAL, vec![f, grown, same])
                }
                None => grown,
            };
            (init, boolean(h, true), step, ident(h, ACCU))
        }
    };
    // Name the pair's halves around the step: `k` is `@entry[0]`, `v` is `@entry[1]`.
    let entry = ident(h, ENTRY);
    let zero = int(h, 0);
    let first = call(h, operators::INDEX, vec![entry, zero]);
    let entry = ident(h, ENTRY);
    let one = int(h, 1);
    let second = call(h, operators::INDEX, vec![entry, one]);
    let inner = bind(h, &v, second, step);
    let step = bind(h, &k, first, inner);
    let range = call(h, ENTRIES, vec![range]);
    let comprehension = ComprehensionExpr {
        iter_range: range,
        iter_var: ENTRY.to_string(),
        iter_var2: None,
        accu_var: accu(),
        accu_init: init,
        loop_cond: cond,
        loop_step: step,
        result,
    };
    Ok(Some(
        h.next_expr(Expr::Comprehension(Box::new(comprehension))),
    ))
}

/// Registers the macros and their helpers.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_macro(Macro::receiver("all", 3, |h, t, a| {
        expand(Kind::All, h, t, a)
    }))?;
    env.add_macro(Macro::receiver("exists", 3, |h, t, a| {
        expand(Kind::Exists, h, t, a)
    }))?;
    env.add_macro(Macro::receiver("existsOne", 3, |h, t, a| {
        expand(Kind::ExistsOne, h, t, a)
    }))?;
    for n in [3, 4] {
        env.add_macro(Macro::receiver("transformList", n, |h, t, a| {
            expand(Kind::TransformList, h, t, a)
        }))?;
        env.add_macro(Macro::receiver("transformMap", n, |h, t, a| {
            expand(Kind::TransformMap, h, t, a)
        }))?;
        env.add_macro(Macro::receiver("transformMapEntry", n, |h, t, a| {
            expand(Kind::TransformMapEntry, h, t, a)
        }))?;
    }
    env.add_overload(ENTRIES, "@entries(list)", vec![LIST_TYPE], entries)?;
    env.add_overload(ENTRIES, "@entries(map)", vec![MAP_TYPE], entries)?;
    env.add_overload(
        MAP_INSERT,
        "@mapInsert(map,dyn,dyn)",
        vec![MAP_TYPE, DYN_TYPE, DYN_TYPE],
        map_insert,
    )?;
    env.add_overload(
        MAP_MERGE,
        "@mapMerge(map,map)",
        vec![MAP_TYPE, MAP_TYPE],
        map_merge,
    )
}

#[cfg(test)]
mod tests {
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
                   "spec": {"containers": [{"name": "c0"}, {"name": "c1"}]}}),
            src,
        )
    }

    fn yes(src: &str) {
        assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
    }

    #[test]
    fn all_exists_and_exists_one_bind_index_and_value() {
        yes("object.spec.containers.all(i, c, c.name == 'c' + string(i))");
        yes("!object.spec.containers.all(i, c, i == 0)");
        yes("object.spec.containers.exists(i, c, i == 1 && c.name == 'c1')");
        yes("object.metadata.labels.all(k, v, k in ['a', 'b'] && v in ['1', '2'])");
        yes("object.metadata.labels.existsOne(k, v, v == '2')");
        yes("![1, 1].existsOne(i, v, v == 1)");
        // The one-variable forms still work.
        yes("object.spec.containers.all(c, c.name.startsWith('c'))");
        yes("[1, 2].exists_one(x, x == 2)");
    }

    #[test]
    fn transforms_build_lists_and_maps() {
        yes("[10, 20].transformList(i, v, i + v) == [10, 21]");
        yes("[10, 20, 30].transformList(i, v, i != 1, v) == [10, 30]");
        yes("object.metadata.labels.transformMap(k, v, v + k) == {'a': '1a', 'b': '2b'}");
        yes("object.metadata.labels.transformMap(k, v, k == 'a', int(v)) == {'a': 1}");
        yes("[1, 2].transformMapEntry(i, v, {string(v): i}) == {'1': 0, '2': 1}");
        let dup = eval("[1, 1].transformMapEntry(i, v, {'k': v})");
        assert!(
            matches!(dup, Err(EvalError::Execution(ref m)) if m.contains("duplicate key")),
            "{dup:?}"
        );
        // Scoping: the variables are not visible outside, and may shadow outer names.
        yes("[1].all(object, v, object == 0) && object.metadata.name == 'p'");
    }

    #[test]
    fn they_are_bounded_by_the_cost_budget() {
        let r = eval("lists.range(2000).all(i, v, lists.range(2000).all(j, w, i + j >= 0))");
        assert!(matches!(r, Err(EvalError::Cost { .. })), "{r:?}");
    }
}
