//! Compiling mutation expressions (MutatingAdmissionPolicy, Kyverno MutatingPolicy).
//!
//! Mutations build typed values: `Object{spec: Object.spec{...}}` (ApplyConfiguration) and
//! `JSONPatch{op: ..., path: ..., value: ...}` (JSONPatch). The `cel` crate parses struct construction but can only
//! evaluate it for registered struct types, and the field-path types of `Object` are open-ended. The field names are
//! all a mutation needs (the merge is driven by the path, not the type), so after parsing, struct construction of
//! `Object`, `Object.<path>` and `JSONPatch` is rewritten into map construction with string keys (`?field` optional
//! entries keep their optional flag). `jsonpatch.escapeKey(k)` becomes `k.replace("~", "~0").replace("/", "~1")`
//! (RFC 6901 escaping).
//!
//! The rewrite also rejects shapes the interpreter would panic on (a struct field inside a map literal, an
//! unspecified node), so a policy file can never crash an evaluation.
use std::sync::Arc;

use cel::common::ast::{
    CallExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr, LiteralValue, MapEntryExpr, MapExpr,
};
use cel::common::types::CelString;
use cel::Value;
use serde_json::Value as Json;

use crate::{
    budget, environment, guard, rewrite_or_value, CompileError, Dialect, EvalError, Program,
};

/// Whether a struct type name is one a mutation builds: `Object`, `Object.<field path>` or `JSONPatch`.
pub fn is_mutation_type(name: &str) -> bool {
    let name = name.strip_prefix('.').unwrap_or(name);
    name == "Object" || name.starts_with("Object.") || name == "JSONPatch"
}

fn max_id(e: &IdedExpr) -> u64 {
    let mut m = e.id;
    budget::for_each_child(e, &mut |c| m = m.max(max_id(c)));
    m
}

fn string_literal(id: &mut u64, s: &str) -> IdedExpr {
    *id += 1;
    IdedExpr {
        id: *id,
        expr: Expr::Literal(LiteralValue::String(CelString::from(s.to_string()))),
    }
}

fn replace_call(id: &mut u64, target: IdedExpr, from: &str, to: &str) -> IdedExpr {
    let from = string_literal(id, from);
    let to = string_literal(id, to);
    *id += 1;
    IdedExpr {
        id: *id,
        expr: Expr::Call(CallExpr {
            func_name: "replace".into(),
            target: Some(Box::new(target)),
            args: vec![from, to],
        }),
    }
}

fn rewrite_node(e: &mut IdedExpr, id: &mut u64) -> Result<(), CompileError> {
    // Children first (struct fields are children; map entries holding struct fields are rejected below).
    let mut failed = None;
    budget::children_mut(e, &mut |c| {
        if failed.is_none() {
            if let Err(err) = rewrite_node(c, id) {
                failed = Some(err);
            }
        }
    });
    if let Some(err) = failed {
        return Err(err);
    }
    match &mut e.expr {
        Expr::Unspecified => {
            return Err(CompileError::Syntax("incomplete expression".into()));
        }
        Expr::Map(m)
            if m.entries
                .iter()
                .any(|en| matches!(en.expr, EntryExpr::StructField(_))) =>
        {
            return Err(CompileError::Syntax(
                "a map literal holds a struct field initializer".into(),
            ));
        }
        Expr::Struct(s) => {
            if s.entries
                .iter()
                .any(|en| matches!(en.expr, EntryExpr::MapEntry(_)))
            {
                return Err(CompileError::Syntax(format!(
                    "{}{{...}} holds a map entry where a field initializer belongs",
                    s.type_name
                )));
            }
            if is_mutation_type(&s.type_name) {
                let mut entries = Vec::with_capacity(s.entries.len());
                for en in std::mem::take(&mut s.entries) {
                    if let EntryExpr::StructField(f) = en.expr {
                        entries.push(IdedEntryExpr {
                            id: en.id,
                            expr: EntryExpr::MapEntry(MapEntryExpr {
                                key: string_literal(id, &f.field),
                                value: f.value,
                                optional: f.optional,
                            }),
                        });
                    }
                }
                e.expr = Expr::Map(MapExpr { entries });
            }
        }
        Expr::Call(c) => {
            let is_escape = c.func_name == "escapeKey"
                && c.args.len() == 1
                && matches!(c.target.as_deref(), Some(IdedExpr { expr: Expr::Ident(n), .. }) if n == "jsonpatch");
            if is_escape {
                if let Some(arg) = c.args.pop() {
                    let tilde = replace_call(id, arg, "~", "~0");
                    *e = replace_call(id, tilde, "/", "~1");
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rewrites a parsed mutation expression (see the module docs).
pub fn rewrite(e: &mut IdedExpr) -> Result<(), CompileError> {
    let mut id = max_id(e);
    rewrite_node(e, &mut id)
}

impl Program {
    /// Compiles a mutation expression (`Object{...}`, `JSONPatch{...}`, `jsonpatch.escapeKey`) for a dialect, with
    /// the same safety limits as [`Program::compile_for`].
    pub fn compile_mutation(dialect: Dialect, source: &str) -> Result<Program, CompileError> {
        let env = environment(dialect)?;
        let program = guard::safe_compile(&env, source)?;
        let mut expr = program.expression().clone();
        rewrite(&mut expr)?;
        let depth = guard::ast_depth(&expr);
        if depth > guard::MAX_AST_DEPTH + 2 {
            return Err(CompileError::TooDeep {
                depth,
                max: guard::MAX_AST_DEPTH,
            });
        }
        let stats = budget::analyze(&expr, 1000.0);
        if stats.max_nesting > budget::MAX_COMPREHENSION_NESTING {
            return Err(CompileError::TooExpensive {
                depth: stats.max_nesting,
                max: budget::MAX_COMPREHENSION_NESTING,
            });
        }
        let mut expression = budget::instrument(&expr);
        if dialect == Dialect::Kyverno {
            rewrite_or_value(&mut expression);
        }
        Ok(Program {
            dialect,
            env,
            source: source.into(),
            expression: Arc::new(expression),
            stats,
        })
    }
}

/// Converts an evaluation result into JSON: maps with string keys, lists, scalars. Timestamps become RFC 3339
/// strings; a value JSON cannot hold (bytes, durations, types, functions, optionals) is an error.
pub fn to_json(value: &Value) -> Result<Json, EvalError> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| EvalError::Execution(format!("{f} is not a JSON number")))?,
        Value::String(s) => Json::String(s.to_string()),
        Value::Timestamp(t) => Json::String(t.to_rfc3339()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(map) => {
            let mut out = serde_json::Map::with_capacity(map.map.len());
            for (k, v) in map.map.iter() {
                let key = match k {
                    cel::objects::Key::String(s) => s.to_string(),
                    other => {
                        return Err(EvalError::Execution(format!(
                            "map key {other:?} is not a string"
                        )))
                    }
                };
                out.insert(key, to_json(v)?);
            }
            Json::Object(out)
        }
        other => {
            return Err(EvalError::Type {
                want: "JSON value",
                got: crate::type_name(other),
            })
        }
    })
}
