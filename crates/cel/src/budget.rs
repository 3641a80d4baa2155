//! Bounded evaluation. The `cel` crate has no cost model, step counter or cancellation hook, so we add two layers:
//!
//! 1. a static pass at compile time ([`analyze`]): comprehension nesting and a worst-case estimate; programs
//!    nesting comprehensions deeper than [`MAX_COMPREHENSION_NESTING`] are rejected;
//! 2. a runtime charge ([`instrument`]): every comprehension range `R` becomes `@budget(R, w)`, with `w` the size of
//!    the loop body. `@budget` charges `size(R) * w` units to a thread-local budget before the loop starts, checks
//!    the deadline, and returns `R` unchanged (a refcount bump for [`crate::Shared`] values). Charging the whole range
//!    up front over-counts `all`/`exists` that stop early: a conservative bound, at no per-iteration cost. Names
//!    starting with `@` cannot be written in CEL source, so policies cannot call it.
//!
//! CEL absorbs errors in `||`, `&&` and `exists` (`expensive || true`), so a budget error could be swallowed:
//! [`eval_bounded`] checks the thread-local "exceeded" mark after evaluation and fails regardless. Once exceeded,
//! every later comprehension fails at its first `@budget`, so evaluation winds down fast. Evaluation is synchronous,
//! so the thread-local is sound on any thread (never `.await` inside an evaluation).
use std::cell::RefCell;
use std::time::Instant;

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelInt, DYN_TYPE, INT_TYPE};
use cel::common::value::{BuiltinRef, CowVal, Val};
use cel::parser::Expression;
use cel::{Context, DeclarationError, Env, ExecutionError, Value};

use crate::EvalError;

/// The internal charging function.
pub const BUDGET_FN: &str = "@budget";

/// Programs nesting comprehensions deeper than this are rejected at compile time.
pub const MAX_COMPREHENSION_NESTING: u64 = 4;

#[derive(Debug, Clone)]
enum Exceeded {
    Cost(u64, u64),
    Deadline,
}

struct State {
    limit: u64,
    used: u64,
    deadline: Option<Instant>,
    exceeded: Option<Exceeded>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn exceeded_message(e: &Exceeded) -> String {
    match e {
        Exceeded::Cost(used, limit) => {
            format!("operation cancelled: actual cost limit exceeded ({used} > {limit})")
        }
        Exceeded::Deadline => "operation cancelled: request deadline exceeded".into(),
    }
}

fn charge<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let weight = args
        .get(1)
        .and_then(|w| w.downcast_ref::<CelInt>().map(|i| *i.inner()))
        .unwrap_or(1)
        .max(1) as u64;
    if args.is_empty() {
        return Err(ExecutionError::invalid_argument_count(2, 0));
    }
    let range = args.swap_remove(0);
    let items = range
        .as_sizer()
        .map(|s| *s.size().inner())
        .unwrap_or(0)
        .max(0) as u64;
    // Entering a comprehension costs one unit even over an empty range.
    let cost = items.saturating_mul(weight).saturating_add(1);
    STATE
        .with(|s| {
            let mut s = s.borrow_mut();
            let Some(st) = s.as_mut() else {
                return Ok(());
            };
            if let Some(e) = &st.exceeded {
                return Err(exceeded_message(e));
            }
            st.used = st.used.saturating_add(cost);
            let e = if st.used > st.limit {
                Some(Exceeded::Cost(st.used, st.limit))
            } else if st.deadline.is_some_and(|d| Instant::now() >= d) {
                Some(Exceeded::Deadline)
            } else {
                None
            };
            match e {
                Some(e) => {
                    let m = exceeded_message(&e);
                    st.exceeded = Some(e);
                    Err(m)
                }
                None => Ok(()),
            }
        })
        .map_err(|m| ExecutionError::function_error(BUDGET_FN, m))?;
    Ok(range)
}

/// Registers `@budget` in an environment.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(
        BUDGET_FN,
        "@budget_dyn_int",
        vec![DYN_TYPE, INT_TYPE],
        charge,
    )
}

/// Number of nodes of an expression.
pub fn nodes(e: &IdedExpr) -> u64 {
    let mut n = 1;
    for_each_child(e, &mut |c| n += nodes(c));
    n
}

/// Calls `f` on every direct child of `e`.
pub fn for_each_child<'a>(e: &'a IdedExpr, f: &mut dyn FnMut(&'a IdedExpr)) {
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                f(t);
            }
            c.args.iter().for_each(f);
        }
        Expr::Comprehension(c) => {
            f(&c.iter_range);
            f(&c.accu_init);
            f(&c.loop_cond);
            f(&c.loop_step);
            f(&c.result);
        }
        Expr::List(l) => l.elements.iter().for_each(f),
        Expr::Map(m) => {
            for en in &m.entries {
                if let EntryExpr::MapEntry(me) = &en.expr {
                    f(&me.key);
                    f(&me.value);
                }
            }
        }
        Expr::Struct(s) => {
            for en in &s.entries {
                if let EntryExpr::StructField(sf) = &en.expr {
                    f(&sf.value);
                }
            }
        }
        Expr::Select(s) => f(&s.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Calls `f` on every direct child of `e`, mutably.
pub fn children_mut(e: &mut IdedExpr, f: &mut dyn FnMut(&mut IdedExpr)) {
    match &mut e.expr {
        Expr::Call(c) => {
            if let Some(t) = &mut c.target {
                f(t);
            }
            c.args.iter_mut().for_each(f);
        }
        Expr::Comprehension(c) => {
            f(&mut c.iter_range);
            f(&mut c.accu_init);
            f(&mut c.loop_cond);
            f(&mut c.loop_step);
            f(&mut c.result);
        }
        Expr::List(l) => l.elements.iter_mut().for_each(f),
        Expr::Map(m) => {
            for en in &mut m.entries {
                if let EntryExpr::MapEntry(me) = &mut en.expr {
                    f(&mut me.key);
                    f(&mut me.value);
                }
            }
        }
        Expr::Struct(s) => {
            for en in &mut s.entries {
                if let EntryExpr::StructField(sf) = &mut en.expr {
                    f(&mut sf.value);
                }
            }
        }
        Expr::Select(s) => f(&mut s.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// What the static pass learns about a program.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// AST nodes.
    pub nodes: u64,
    /// Comprehensions (macros such as `all`, `map`, `filter` expand to them).
    pub comprehensions: u64,
    /// Deepest comprehension nesting.
    pub max_nesting: u64,
    /// Worst-case cost (iterations × body size), lists of unknown size assumed to hold `assumed_list_len` items.
    pub estimate: f64,
}

/// Static pass over a compiled program.
pub fn analyze(e: &Expression, assumed_list_len: f64) -> Stats {
    fn walk(e: &IdedExpr, depth: u64, n: f64, st: &mut Stats) -> f64 {
        st.nodes += 1;
        match &e.expr {
            Expr::Comprehension(c) => {
                st.comprehensions += 1;
                st.max_nesting = st.max_nesting.max(depth + 1);
                let len = match &c.iter_range.expr {
                    Expr::List(l) => l.elements.len() as f64,
                    _ => n,
                };
                let mut cost = walk(&c.iter_range, depth, n, st) + walk(&c.accu_init, depth, n, st);
                let body =
                    walk(&c.loop_cond, depth + 1, n, st) + walk(&c.loop_step, depth + 1, n, st);
                cost += len * body + walk(&c.result, depth, n, st);
                cost + 1.0
            }
            _ => {
                let mut kids = Vec::new();
                for_each_child(e, &mut |c| kids.push(c));
                1.0 + kids.into_iter().map(|k| walk(k, depth, n, st)).sum::<f64>()
            }
        }
    }
    let mut st = Stats::default();
    st.estimate = walk(e, 0, assumed_list_len, &mut st);
    st
}

/// A copy of the AST with every comprehension range wrapped in `@budget`.
pub fn instrument(e: &Expression) -> Expression {
    fn max_id(e: &IdedExpr) -> u64 {
        let mut m = e.id;
        for_each_child(e, &mut |c| m = m.max(max_id(c)));
        m
    }
    fn walk(e: &mut IdedExpr, next: &mut u64) {
        children_mut(e, &mut |c| walk(c, next));
        if let Expr::Comprehension(c) = &mut e.expr {
            let weight = 1 + nodes(&c.loop_cond) + nodes(&c.loop_step);
            let range = std::mem::take(&mut c.iter_range);
            *next += 2;
            c.iter_range = IdedExpr {
                id: *next - 1,
                expr: Expr::Call(CallExpr {
                    func_name: BUDGET_FN.to_string(),
                    target: None,
                    args: vec![
                        range,
                        IdedExpr {
                            id: *next,
                            expr: Expr::Literal(LiteralValue::Int(CelInt::from(
                                i64::try_from(weight).unwrap_or(i64::MAX),
                            ))),
                        },
                    ],
                }),
            };
        }
    }
    let mut out = e.clone();
    let mut next = max_id(e) + 1;
    walk(&mut out, &mut next);
    out
}

/// Clears this thread's budget when dropped (also on unwinding).
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        STATE.with(|s| s.borrow_mut().take());
    }
}

/// Whether a bounded evaluation is running on this thread (nested evaluations, such as lazily evaluated
/// variables, then share its budget).
pub fn active() -> bool {
    STATE.with(|s| s.borrow().is_some())
}

/// Evaluates an instrumented expression under a cost limit and deadline. Returns the result and the units charged.
/// Inside an evaluation already running on this thread, the outer budget is shared.
pub fn eval_bounded(
    expr: &Expression,
    ctx: &Context<'_, '_>,
    limit: u64,
    deadline: Option<Instant>,
) -> (Result<Value, EvalError>, u64) {
    bounded(limit, deadline, || ctx.resolve(expr))
}

/// [`eval_bounded`] for a result that is bound again (a named variable): a list or map result stays the CEL value
/// it is, shared ([`crate::bind::Shared`]), instead of being converted to a `cel::Value` and back (two deep copies
/// of, say, every container of the object); any other result takes the `cel::Value` round trip as before.
pub fn eval_bounded_val(
    expr: &Expression,
    ctx: &Context<'static, 'static>,
    limit: u64,
    deadline: Option<Instant>,
) -> (Result<Box<dyn Val + 'static>, EvalError>, u64) {
    bounded(limit, deadline, || {
        let value = Value::resolve_val(expr, ctx)?;
        if matches!(value.as_builtin(), BuiltinRef::List(_) | BuiltinRef::Map(_)) {
            return Ok(crate::bind::share(value.into_owned()));
        }
        let value: Value = value.as_ref().try_into()?;
        crate::bind::from_value(value)
    })
}

/// Runs `eval` under a cost limit and deadline (see [`eval_bounded`]).
fn bounded<T>(
    limit: u64,
    deadline: Option<Instant>,
    eval: impl FnOnce() -> Result<T, ExecutionError>,
) -> (Result<T, EvalError>, u64) {
    if active() {
        let r = eval().map_err(|e| EvalError::Execution(e.to_string()));
        return (r, 0);
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return (Err(EvalError::Deadline), 0);
    }
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            limit,
            used: 0,
            deadline,
            exceeded: None,
        })
    });
    let reset = Reset;
    // The crate is not known to panic on evaluation, but a panic must neither escape into the request path nor
    // leave this thread's budget installed.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(eval));
    let st = STATE.with(|s| s.borrow_mut().take());
    drop(reset);
    let Ok(r) = r else {
        return (
            Err(EvalError::Internal("the CEL interpreter panicked".into())),
            st.map(|s| s.used).unwrap_or(0),
        );
    };
    let (used, exceeded) = st.map(|s| (s.used, s.exceeded)).unwrap_or((0, None));
    match exceeded {
        Some(Exceeded::Cost(used, limit)) => (Err(EvalError::Cost { used, limit }), used),
        Some(Exceeded::Deadline) => (Err(EvalError::Deadline), used),
        None => (r.map_err(|e| EvalError::Execution(e.to_string())), used),
    }
}
