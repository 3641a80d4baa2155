//! The interpreter: walks a compiled [`Node`] tree over borrowed JSON, copying only what the result needs.
//!
//! Every search gets a fresh [`Interp`] with a budget: evaluation steps, values copied (which is what a hostile
//! expression such as `[@, @] | [@, @] | ...` would blow up) and recursion depth.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::time::Instant;

use serde_json::{Map, Value};

use super::ast::{Cmp, Node};
use super::functions::{Arg, Args, Function};
use super::JmesError;

/// Most nodes one search may evaluate.
const MAX_STEPS: u64 = 2_000_000;
/// Most value nodes one search may copy or create (a string counts one per 32 bytes).
const MAX_COPIED: u64 = 1_000_000;
/// Deepest recursion of the interpreter.
const MAX_DEPTH: u32 = 256;
/// The deadline is checked every this many steps (a clock read is far dearer than a step).
const DEADLINE_CHECK_INTERVAL: u64 = 1024;

/// Top-level members that shadow the root document's, for a search over a layered document (Kyverno's context:
/// a shared base document plus per-rule and per-element variables) without building the merged document.
pub(crate) struct RootScope<'o> {
    /// The root document; only lookups on this very value are shadowed.
    pub(crate) root: &'o Value,
    /// The shadowing members, later ones first.
    pub(crate) overlay: &'o [(&'o str, &'o Value)],
}

/// One evaluation's state and budget.
pub(crate) struct Interp<'o> {
    steps: u64,
    copied: u64,
    depth: u32,
    deadline: Option<Instant>,
    scope: Option<RootScope<'o>>,
}

type Res<'a> = Result<Cow<'a, Value>, JmesError>;

impl<'o> Interp<'o> {
    pub(crate) fn new(deadline: Option<Instant>, scope: Option<RootScope<'o>>) -> Self {
        Interp {
            steps: 0,
            copied: 0,
            depth: 0,
            deadline,
            scope,
        }
    }

    /// The shadowing member `key` when `data` is the root of a layered search.
    fn shadowed<'a>(&self, key: &str, data: &'a Value) -> Option<&'a Value>
    where
        'o: 'a,
    {
        let scope = self.scope.as_ref()?;
        if !std::ptr::eq(scope.root, data) {
            return None;
        }
        scope
            .overlay
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| *value)
    }

    /// `@` at the root of a layered search: the merged document, built (and charged) only for this rare case.
    fn merged_root(&mut self, data: &Value) -> Result<Option<Value>, JmesError> {
        let Some(scope) = self.scope.as_ref() else {
            return Ok(None);
        };
        if !std::ptr::eq(scope.root, data) || scope.overlay.is_empty() {
            return Ok(None);
        }
        let mut map = data.as_object().cloned().unwrap_or_default();
        for (name, value) in scope.overlay.iter().rev() {
            map.insert((*name).to_string(), (*value).clone());
        }
        let merged = Value::Object(map);
        self.charge_value(&merged)?;
        Ok(Some(merged))
    }

    /// Evaluate `node` against `data` and return an owned result.
    pub(crate) fn run(&mut self, node: &Node, data: &Value) -> Result<Value, JmesError> {
        self.apply(node, data)
    }

    /// Evaluate an expression reference for a function (`sort_by`, `map`, ...).
    pub(crate) fn apply(&mut self, node: &Node, data: &Value) -> Result<Value, JmesError> {
        let result = self.eval(node, data)?;
        self.own(result)
    }

    /// Take ownership of a result, copying it (and charging the copy) when it is borrowed.
    pub(crate) fn own(&mut self, value: Cow<'_, Value>) -> Result<Value, JmesError> {
        match value {
            Cow::Owned(v) => Ok(v),
            Cow::Borrowed(v) => {
                self.charge_value(v)?;
                Ok(v.clone())
            }
        }
    }

    /// Charge the budget for `n` created value nodes.
    pub(crate) fn charge(&mut self, n: u64) -> Result<(), JmesError> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > MAX_COPIED {
            return Err(JmesError::Budget {
                message: format!(
                    "expression result too large (more than {MAX_COPIED} values built)"
                ),
            });
        }
        Ok(())
    }

    /// Charge the budget for the size of `value` (a copy about to be made, or a freshly built function result).
    pub(crate) fn charge_value(&mut self, value: &Value) -> Result<(), JmesError> {
        // A scalar costs what the walk below charges for it, without the walk's stack.
        match value {
            Value::String(s) => return self.charge(1 + (s.len() as u64) / 32),
            Value::Null | Value::Bool(_) | Value::Number(_) => return self.charge(1),
            Value::Array(_) | Value::Object(_) => {}
        }
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            let cost = match v {
                Value::String(s) => 1 + (s.len() as u64) / 32,
                Value::Array(items) => {
                    stack.extend(items.iter());
                    1
                }
                Value::Object(map) => {
                    stack.extend(map.values());
                    1 + map.len() as u64 / 4
                }
                _ => 1,
            };
            self.charge(cost)?;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), JmesError> {
        self.steps += 1;
        if self.steps.is_multiple_of(DEADLINE_CHECK_INTERVAL)
            && self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return Err(JmesError::Deadline);
        }
        if self.steps > MAX_STEPS {
            return Err(JmesError::Budget {
                message: format!("expression too expensive (more than {MAX_STEPS} steps)"),
            });
        }
        if self.depth > MAX_DEPTH {
            return Err(JmesError::Budget {
                message: "expression nested too deeply".to_string(),
            });
        }
        Ok(())
    }

    pub(crate) fn eval<'a>(&mut self, node: &'a Node, data: &'a Value) -> Res<'a>
    where
        'o: 'a,
    {
        self.step()?;
        self.depth += 1;
        let result = self.eval_inner(node, data);
        self.depth -= 1;
        result
    }

    /// Evaluate `node` on an intermediate result (borrowed or owned).
    fn eval_on<'a>(&mut self, node: &'a Node, input: Cow<'a, Value>) -> Res<'a>
    where
        'o: 'a,
    {
        match input {
            Cow::Borrowed(v) => self.eval(node, v),
            Cow::Owned(v) => {
                // Cheap paths that move out of the owned value instead of copying.
                match (node, v) {
                    (Node::Identity, v) => Ok(Cow::Owned(v)),
                    (Node::Field(key), Value::Object(mut map)) => {
                        self.step()?;
                        match map.remove(key.as_str()) {
                            Some(found) => Ok(Cow::Owned(found)),
                            None => Err(JmesError::NotFound { key: key.clone() }),
                        }
                    }
                    (Node::Index(idx), Value::Array(items)) => {
                        self.step()?;
                        let found =
                            resolve_index(items.len(), *idx).and_then(|i| items.into_iter().nth(i));
                        Ok(Cow::Owned(found.unwrap_or(Value::Null)))
                    }
                    (node, v) => {
                        let result = self.eval(node, &v)?;
                        Ok(Cow::Owned(self.own(result)?))
                    }
                }
            }
        }
    }

    #[inline]
    fn eval_inner<'a>(&mut self, node: &'a Node, data: &'a Value) -> Res<'a>
    where
        'o: 'a,
    {
        // The heavier arms live in their own (non-inlined) functions to keep this recursive frame small.
        match node {
            Node::Identity => match self.merged_root(data)? {
                Some(merged) => Ok(Cow::Owned(merged)),
                None => Ok(Cow::Borrowed(data)),
            },
            Node::Field(key) if self.scope.is_some() => match self.shadowed(key, data) {
                Some(found) => Ok(Cow::Borrowed(found)),
                None => field(key, data),
            },
            Node::Field(key) => match data {
                Value::Object(map) => match map.get(key.as_str()) {
                    Some(found) => Ok(Cow::Borrowed(found)),
                    None => Err(JmesError::NotFound { key: key.clone() }),
                },
                _ => Ok(Cow::Owned(Value::Null)),
            },
            Node::Index(idx) => match data {
                Value::Array(items) => Ok(
                    match resolve_index(items.len(), *idx).and_then(|i| items.get(i)) {
                        Some(found) => Cow::Borrowed(found),
                        None => Cow::Owned(Value::Null),
                    },
                ),
                _ => Ok(Cow::Owned(Value::Null)),
            },
            Node::Slice { start, stop, step } => self.slice(data, *start, *stop, *step),
            Node::Literal(value) => Ok(Cow::Borrowed(value)),
            Node::Subexpr(lhs, rhs) => {
                let left = self.eval(lhs, data)?;
                self.eval_on(rhs, left)
            }
            Node::Projection(lhs, rhs) => {
                let left = self.eval(lhs, data)?;
                self.project(left, rhs)
            }
            Node::ObjectValues(inner) => {
                let value = self.eval(inner, data)?;
                self.object_values(value)
            }
            Node::Flatten(inner) => {
                let value = self.eval(inner, data)?;
                self.flatten(value)
            }
            Node::Condition(predicate, then) => {
                let test = self.eval(predicate, data)?;
                if is_truthy(&test) {
                    self.eval(then, data)
                } else {
                    Ok(Cow::Owned(Value::Null))
                }
            }
            Node::Comparison(op, lhs, rhs) => {
                let left = self.eval(lhs, data)?;
                let right = self.eval(rhs, data)?;
                Ok(Cow::Owned(compare(*op, &left, &right)))
            }
            Node::And(lhs, rhs) => {
                let left = self.eval(lhs, data)?;
                if is_truthy(&left) {
                    self.eval(rhs, data)
                } else {
                    Ok(left)
                }
            }
            Node::Or(lhs, rhs) => match self.eval(lhs, data) {
                Ok(left) if is_truthy(&left) => Ok(left),
                Ok(_) => self.eval_or_null(rhs, data),
                Err(e) if e.is_not_found() => self.eval_or_null(rhs, data),
                Err(e) => Err(e),
            },
            Node::Not(inner) => {
                let value = self.eval(inner, data)?;
                Ok(Cow::Owned(Value::Bool(!is_truthy(&value))))
            }
            Node::MultiList(elements) => self.multi_list(elements, data),
            Node::MultiHash(pairs) => self.multi_hash(pairs, data),
            Node::Call(function, arg_nodes, regex) => {
                self.call(function, arg_nodes, regex.as_ref(), data)
            }
            Node::Expref(_) => Err(JmesError::Type {
                message: "an expression reference (&expr) can only be a function argument"
                    .to_string(),
            }),
        }
    }

    #[inline(never)]
    fn slice<'a>(
        &mut self,
        data: &'a Value,
        start: Option<i64>,
        stop: Option<i64>,
        step: i64,
    ) -> Res<'a>
    where
        'o: 'a,
    {
        let Value::Array(items) = data else {
            return Ok(Cow::Owned(Value::Null));
        };
        let picked = slice_indices(items.len(), start, stop, step);
        let mut out = Vec::with_capacity(picked.len());
        for i in picked {
            if let Some(item) = items.get(i) {
                out.push(self.own(Cow::Borrowed(item))?);
            }
        }
        Ok(Cow::Owned(Value::Array(out)))
    }

    #[inline(never)]
    fn object_values<'a>(&mut self, value: Cow<'a, Value>) -> Res<'a>
    where
        'o: 'a,
    {
        match value {
            Cow::Borrowed(Value::Object(map)) => {
                let mut out = Vec::with_capacity(map.len());
                for v in map.values() {
                    out.push(self.own(Cow::Borrowed(v))?);
                }
                Ok(Cow::Owned(Value::Array(out)))
            }
            Cow::Owned(Value::Object(map)) => Ok(Cow::Owned(Value::Array(
                map.into_iter().map(|(_, v)| v).collect(),
            ))),
            _ => Ok(Cow::Owned(Value::Null)),
        }
    }

    #[inline(never)]
    fn flatten<'a>(&mut self, value: Cow<'a, Value>) -> Res<'a>
    where
        'o: 'a,
    {
        let items = match value {
            Cow::Borrowed(Value::Array(items)) => {
                let mut owned = Vec::with_capacity(items.len());
                for item in items {
                    owned.push(self.own(Cow::Borrowed(item))?);
                }
                owned
            }
            Cow::Owned(Value::Array(items)) => items,
            _ => return Ok(Cow::Owned(Value::Null)),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::Array(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        Ok(Cow::Owned(Value::Array(out)))
    }

    #[inline(never)]
    fn multi_list<'a>(&mut self, elements: &'a [Node], data: &'a Value) -> Res<'a>
    where
        'o: 'a,
    {
        if data.is_null() {
            return Ok(Cow::Owned(Value::Null));
        }
        let mut out = Vec::with_capacity(elements.len());
        for element in elements {
            let value = self.eval_or_null(element, data)?;
            out.push(self.own(value)?);
        }
        Ok(Cow::Owned(Value::Array(out)))
    }

    #[inline(never)]
    fn multi_hash<'a>(&mut self, pairs: &'a [(String, Node)], data: &'a Value) -> Res<'a>
    where
        'o: 'a,
    {
        if data.is_null() {
            return Ok(Cow::Owned(Value::Null));
        }
        let mut out = Map::new();
        for (key, element) in pairs {
            let value = self.eval_or_null(element, data)?;
            out.insert(key.clone(), self.own(value)?);
        }
        Ok(Cow::Owned(Value::Object(out)))
    }

    #[inline(never)]
    fn call<'a>(
        &mut self,
        function: &'static Function,
        arg_nodes: &'a [Node],
        regex: Option<&'a std::sync::Arc<regex::Regex>>,
        data: &'a Value,
    ) -> Res<'a>
    where
        'o: 'a,
    {
        // The arguments of the usual short calls on the stack; longer lists in a vector.
        const ON_STACK: usize = 4;
        let mut stack: [Arg<'a>; ON_STACK] =
            std::array::from_fn(|_| Arg::Value(Cow::Owned(Value::Null)));
        let mut heap = Vec::new();
        let spill = arg_nodes.len() > ON_STACK;
        if spill {
            heap.reserve(arg_nodes.len());
        }
        for (i, arg) in arg_nodes.iter().enumerate() {
            let value = match arg {
                Node::Expref(inner) => Arg::Expref(inner),
                other => Arg::Value(self.eval(other, data)?),
            };
            match stack.get_mut(i).filter(|_| !spill) {
                Some(slot) => *slot = value,
                None => heap.push(value),
            }
        }
        let args: &[Arg<'a>] = if spill {
            &heap
        } else {
            stack.get(..arg_nodes.len()).unwrap_or_default()
        };
        let result = (function.call)(self, &Args::new(function.name, args).with_regex(regex))?;
        self.charge_value(&result)?;
        Ok(Cow::Owned(result))
    }

    /// Evaluate where a missing key gives null instead of an error: multi-select members (so that the common
    /// `spec.[initContainers, containers][]` works on Pods without init containers) and the right-hand side of `||`
    /// (`a.missing || b.missing` is null), as in Kyverno.
    fn eval_or_null<'a>(&mut self, node: &'a Node, data: &'a Value) -> Res<'a>
    where
        'o: 'a,
    {
        match self.eval(node, data) {
            Err(e) if e.is_not_found() => Ok(Cow::Owned(Value::Null)),
            other => other,
        }
    }

    /// Apply `rhs` to every element of an array; null results and elements raising NotFound are dropped.
    fn project<'a>(&mut self, left: Cow<'a, Value>, rhs: &'a Node) -> Res<'a>
    where
        'o: 'a,
    {
        let mut out = Vec::new();
        match left {
            Cow::Borrowed(Value::Array(items)) => {
                out.reserve(items.len());
                for item in items {
                    match self.eval(rhs, item) {
                        Ok(v) if v.is_null() => {}
                        Ok(v) => out.push(self.own(v)?),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Cow::Owned(Value::Array(items)) => {
                out.reserve(items.len());
                for item in items {
                    match self.eval_on(rhs, Cow::Owned(item)) {
                        Ok(v) if v.is_null() => {}
                        Ok(v) => out.push(self.own(v)?),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            _ => return Ok(Cow::Owned(Value::Null)),
        }
        Ok(Cow::Owned(Value::Array(out)))
    }
}

/// The layered document [`borrow`] reads: the root, and the top-level members that shadow the root's.
pub(crate) struct Layers<'s, 'd> {
    pub(crate) root: &'d Value,
    pub(crate) overlay: &'s [(&'s str, &'d Value)],
}

/// What [`borrow`] found: one value of the document, or a list (built by the expression) of values of it.
pub(crate) enum Refs<'d> {
    One(&'d Value),
    Many(Vec<&'d Value>),
}

static NULL: Value = Value::Null;

/// Evaluate a [`super::ast::borrowable`] expression without copying: the same value [`Interp`] computes, as
/// references into the document (and `null`s). `None` when this expression on this data needs computed values
/// after all (`@` of a layered root, a list where a single value is needed): the interpreter must run it.
///
/// Kyverno's semantics as in [`Interp`]: a missing key of an object is `NotFound`; a field of a non-object, an
/// index of a non-array or out of range is null; multi-select members and projection elements raising `NotFound`
/// are null (multi-select) or dropped (projection); projections drop nulls; flatten expands one level.
pub(crate) fn borrow<'d>(
    node: &Node,
    scope: &Layers<'_, 'd>,
    data: &'d Value,
) -> Option<Result<Refs<'d>, JmesError>> {
    let one = |v: &'d Value| Some(Ok(Refs::One(v)));
    match node {
        Node::Identity => {
            if std::ptr::eq(scope.root, data) && !scope.overlay.is_empty() {
                return None;
            }
            one(data)
        }
        Node::Field(key) => {
            if std::ptr::eq(scope.root, data) {
                if let Some((_, v)) = scope.overlay.iter().find(|(name, _)| *name == key.as_str()) {
                    return one(v);
                }
            }
            match data {
                Value::Object(map) => match map.get(key.as_str()) {
                    Some(found) => one(found),
                    None => Some(Err(JmesError::NotFound { key: key.clone() })),
                },
                _ => one(&NULL),
            }
        }
        Node::Index(idx) => match data {
            Value::Array(items) => one(resolve_index(items.len(), *idx)
                .and_then(|i| items.get(i))
                .unwrap_or(&NULL)),
            _ => one(&NULL),
        },
        Node::Subexpr(lhs, rhs) => match borrow(lhs, scope, data)? {
            Ok(Refs::One(v)) => borrow(rhs, scope, v),
            Ok(Refs::Many(_)) => None,
            Err(e) => Some(Err(e)),
        },
        Node::MultiList(elements) => {
            if data.is_null() {
                return one(&NULL);
            }
            let mut out = Vec::with_capacity(elements.len());
            for element in elements {
                match borrow(element, scope, data)? {
                    Ok(Refs::One(v)) => out.push(v),
                    Ok(Refs::Many(_)) => return None,
                    Err(e) if e.is_not_found() => out.push(&NULL),
                    Err(e) => return Some(Err(e)),
                }
            }
            Some(Ok(Refs::Many(out)))
        }
        Node::Flatten(inner) => {
            let items: Vec<&'d Value> = match borrow(inner, scope, data)? {
                Ok(Refs::One(Value::Array(items))) => items.iter().collect(),
                Ok(Refs::One(_)) => return one(&NULL),
                Ok(Refs::Many(list)) => list,
                Err(e) => return Some(Err(e)),
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Array(inner) => out.extend(inner.iter()),
                    other => out.push(other),
                }
            }
            Some(Ok(Refs::Many(out)))
        }
        Node::Projection(lhs, rhs) => {
            let items: Vec<&'d Value> = match borrow(lhs, scope, data)? {
                Ok(Refs::One(Value::Array(items))) => items.iter().collect(),
                Ok(Refs::One(_)) => return one(&NULL),
                Ok(Refs::Many(list)) => list,
                Err(e) => return Some(Err(e)),
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match borrow(rhs, scope, item)? {
                    Ok(Refs::One(v)) if v.is_null() => {}
                    Ok(Refs::One(v)) => out.push(v),
                    Ok(Refs::Many(_)) => return None,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            Some(Ok(Refs::Many(out)))
        }
        _ => None,
    }
}

/// JMESPath truthiness: `null`, `false`, `""`, `[]` and `{}` are false; everything else (including 0) is true.
fn field<'a>(key: &str, data: &'a Value) -> Res<'a> {
    match data {
        Value::Object(map) => match map.get(key) {
            Some(found) => Ok(Cow::Borrowed(found)),
            None => Err(JmesError::NotFound {
                key: key.to_string(),
            }),
        },
        _ => Ok(Cow::Owned(Value::Null)),
    }
}

pub(crate) fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(_) => true,
    }
}

/// Deep equality where numbers compare by value (`1 == 1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Compare two numbers exactly when both are integers, else as floats.
pub(crate) fn number_cmp(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return Some(a.cmp(&b));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

fn compare(op: Cmp, left: &Value, right: &Value) -> Value {
    match op {
        Cmp::Eq => Value::Bool(json_equal(left, right)),
        Cmp::Ne => Value::Bool(!json_equal(left, right)),
        _ => {
            let (Value::Number(a), Value::Number(b)) = (left, right) else {
                return Value::Null;
            };
            let Some(ord) = number_cmp(a, b) else {
                return Value::Null;
            };
            Value::Bool(match op {
                Cmp::Lt => ord == Ordering::Less,
                Cmp::Le => ord != Ordering::Greater,
                Cmp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            })
        }
    }
}

fn resolve_index(len: usize, idx: i64) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let actual = if idx < 0 { len + idx } else { idx };
    if actual < 0 || actual >= len {
        None
    } else {
        usize::try_from(actual).ok()
    }
}

/// The indexes a slice `[start:stop:step]` picks from an array of `len` elements (JMESPath/Python semantics).
pub(crate) fn slice_indices(
    len: usize,
    start: Option<i64>,
    stop: Option<i64>,
    step: i64,
) -> Vec<usize> {
    let Ok(len) = i64::try_from(len) else {
        return Vec::new();
    };
    if step == 0 {
        return Vec::new();
    }
    let cap = |actual: i64| -> i64 {
        if actual < 0 {
            let shifted = actual + len;
            if shifted < 0 {
                if step < 0 {
                    -1
                } else {
                    0
                }
            } else {
                shifted
            }
        } else if actual >= len {
            if step < 0 {
                len - 1
            } else {
                len
            }
        } else {
            actual
        }
    };
    let start = match start {
        Some(s) => cap(s),
        None if step < 0 => len - 1,
        None => 0,
    };
    let stop = match stop {
        Some(s) => cap(s),
        None if step < 0 => -1,
        None => len,
    };
    let mut out = Vec::new();
    let mut i = start;
    if step > 0 {
        while i < stop {
            if let Ok(u) = usize::try_from(i) {
                out.push(u);
            }
            i = i.saturating_add(step);
        }
    } else {
        while i > stop {
            if let Ok(u) = usize::try_from(i) {
                out.push(u);
            }
            i = i.saturating_add(step);
        }
    }
    out
}
