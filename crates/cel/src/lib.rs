//! The CEL layer shared by policyctl's CEL policy kinds (Kyverno `validate.cel` today).
//!
//! Built on the `cel` crate (cel-rust), pinned exactly, behind this thin facade:
//! - [`Program::compile`]: compile once per policy set through [`guard::safe_compile`] (length, nesting and AST depth
//!   limits; hostile source is rejected, never a crash), plus a static cost pass ([`budget::analyze`]);
//! - [`ReviewBindings`]: `object`, `oldObject` and `request` converted once per review (through
//!   [`Review::cached`]) into Arc-shared CEL values ([`bind::Shared`]) that every expression of every policy reuses;
//! - [`Activation`]: the Kubernetes variables (`object`, `oldObject`, `request`, `params`, `namespaceObject`,
//!   `variables`), where `variables` are evaluated lazily, at most once per activation;
//! - [`Activation::evaluate`]: evaluation under a cost budget and the request deadline ([`Limits`]); exceeding either
//!   is an [`EvalError`], never a result.
//!
//! The environment is the CEL standard library with optional types, the `cel` crate's strings, lists, math and
//! encoders extensions, Kubernetes' libraries ([`k8s`], [`quantity`], [`semver`], [`net`], [`urls`], [`format`]),
//! `cel.bind` and two-variable comprehensions ([`comprehensions`]); [`lint`] checks expressions against the environment
//! at load. The Kyverno dialect adds Kyverno's libraries ([`kyverno`]), cel-go's regex extension ([`regex_ext`]) and
//! Kyverno Authz's `envoy`/`http` response builders ([`authz`]), `jwt.Decode` ([`jwt`]) and image references
//! ([`image`]). Kubernetes' `authorizer` and lists `includes` are not available yet.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

mod args;
pub mod authz;
pub mod bind;
pub mod budget;
pub mod checks;
pub mod comprehensions;
pub mod format;
pub mod guard;
pub mod image;
pub mod jwt;
pub mod k8s;
pub mod kyverno;
pub mod lint;
pub mod mutation;
pub mod net;
pub mod quantity;
pub mod regex_ext;
pub mod semver;
pub mod urls;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use cel::common::traits::Indexer;
use cel::common::types::{CelString, Type, MAP_TYPE};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::parser::Expression;
use cel::{Context, Env, ExecutionError, Value};
use policyctl_core::admission::Review;
use serde_json::Value as Json;

pub use bind::Shared;
pub use budget::Stats;
/// A CEL value (the `cel` crate's), as evaluations return it.
pub use cel::Value as CelValue;

/// Kubernetes' per-expression runtime cost limit (`PerCallLimit`), used as the default budget.
pub const DEFAULT_COST_LIMIT: u64 = 1_000_000;

/// Nested evaluations (variables using variables) deeper than this fail: each level adds a full evaluation to the
/// thread's stack.
const MAX_VARIABLE_NESTING: usize = 8;

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    /// The source is longer than accepted.
    #[error("expression too long ({len} > {max} bytes)")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Brackets nest too deeply.
    #[error("expression nested too deeply ({depth} > {max} brackets)")]
    TooNested {
        /// The nesting found.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// The syntax tree is too deep.
    #[error("expression too deep ({depth} > {max} levels)")]
    TooDeep {
        /// The depth found.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// Comprehensions nest too deeply for a bounded cost.
    #[error("comprehensions nested too deeply ({depth} > {max}): the cost cannot be bounded")]
    TooExpensive {
        /// The nesting found.
        depth: u64,
        /// The limit.
        max: u64,
    },
    /// A syntax error.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The compiler failed (it panicked, or its environment could not be built).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why an evaluation has no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A CEL runtime error (no such key, no matching overload, division by zero, …).
    #[error("{0}")]
    Execution(String),
    /// The cost budget ran out.
    #[error("operation cancelled: actual cost limit exceeded ({used} > {limit})")]
    Cost {
        /// Units charged when it stopped.
        used: u64,
        /// The budget.
        limit: u64,
    },
    /// The request deadline passed.
    #[error("operation cancelled: request deadline exceeded")]
    Deadline,
    /// The result has the wrong type.
    #[error("expected a {want} result, got {got}")]
    Type {
        /// The expected type.
        want: &'static str,
        /// What came out.
        got: String,
    },
    /// The interpreter failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How much an evaluation may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Cost units per expression (comprehension iterations × body size).
    pub cost: u64,
    /// The request deadline.
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cost: DEFAULT_COST_LIMIT,
            deadline: None,
        }
    }
}

impl Limits {
    /// The default cost budget with a deadline.
    pub fn until(deadline: Instant) -> Self {
        Limits {
            deadline: Some(deadline),
            ..Limits::default()
        }
    }
}

/// Which policy kind's CEL environment: the libraries differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Kubernetes (ValidatingAdmissionPolicy).
    Kubernetes,
    /// Kyverno: as Kubernetes, plus Kyverno's `orValue` compatibility: on a value that is not optional,
    /// `x.orValue(y)` returns `x` (Kyverno registers it so policies written before optional types keep working).
    Kyverno,
}

/// Kyverno's `orValue`: `x.orValue(y)` calls are rewritten to `@orValue(x, y)` at compile time (the standard
/// overload accepts any receiver and then fails on a non-optional one, so an extra overload would never be picked).
const KYVERNO_OR_VALUE: &str = "@orValue";

fn kyverno_or_value<'b, 'v>(
    mut args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    if args.len() != 2 {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    }
    let other = args.swap_remove(1);
    let this = args.swap_remove(0);
    match this.downcast_ref::<cel::common::types::CelOptional<'_>>() {
        Some(o) => Ok(match o.option() {
            Some(v) => CowVal::Owned(v.clone_as_boxed()),
            None => other,
        }),
        None => Ok(this),
    }
}

fn kyverno_extension(env: &mut Env) -> Result<(), cel::DeclarationError> {
    use cel::common::types as t;
    env.add_overload(
        KYVERNO_OR_VALUE,
        "kyverno_or_value",
        vec![t::DYN_TYPE, t::DYN_TYPE],
        kyverno_or_value,
    )
}

/// Rewrites `x.orValue(y)` into `@orValue(x, y)` (Kyverno).
fn rewrite_or_value(e: &mut cel::common::ast::IdedExpr) {
    use cel::common::ast::Expr;
    budget::children_mut(e, &mut rewrite_or_value);
    if let Expr::Call(c) = &mut e.expr {
        if c.func_name == "orValue" && c.args.len() == 1 {
            if let Some(target) = c.target.take() {
                c.func_name = KYVERNO_OR_VALUE.to_string();
                c.args.insert(0, *target);
            }
        }
    }
}

fn build_env(dialect: Dialect) -> Result<Arc<Env>, String> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .map_err(|e| e.to_string())?;
    env.add_extension(cel::extensions::lists)
        .map_err(|e| e.to_string())?;
    env.add_extension(cel::extensions::math)
        .map_err(|e| e.to_string())?;
    env.add_extension(cel::extensions::encoders)
        .map_err(|e| e.to_string())?;
    env.add_extension(budget::extension)
        .map_err(|e| e.to_string())?;
    env.add_extension(k8s::extension)
        .map_err(|e| e.to_string())?;
    env.add_extension(comprehensions::extension)
        .map_err(|e| e.to_string())?;
    env.add_extension(quantity::extension)
        .map_err(|e| e.to_string())?;
    env.add_extension(semver::extension)
        .map_err(|e| e.to_string())?;
    env.add_extension(net::extension)
        .map_err(|e| e.to_string())?;
    env.add_extension(urls::extension)
        .map_err(|e| e.to_string())?;
    env.add_extension(format::extension)
        .map_err(|e| e.to_string())?;
    if dialect == Dialect::Kyverno {
        env.add_extension(kyverno_extension)
            .map_err(|e| e.to_string())?;
        env.add_extension(kyverno::extension)
            .map_err(|e| e.to_string())?;
        env.add_extension(regex_ext::extension)
            .map_err(|e| e.to_string())?;
        env.add_extension(authz::extension)
            .map_err(|e| e.to_string())?;
        env.add_extension(jwt::extension)
            .map_err(|e| e.to_string())?;
        env.add_extension(image::extension)
            .map_err(|e| e.to_string())?;
    }
    Ok(Arc::new(env))
}

/// The environment of a dialect (built once per process).
pub fn environment(dialect: Dialect) -> Result<Arc<Env>, CompileError> {
    static KUBERNETES: OnceLock<Result<Arc<Env>, String>> = OnceLock::new();
    static KYVERNO: OnceLock<Result<Arc<Env>, String>> = OnceLock::new();
    let cell = match dialect {
        Dialect::Kubernetes => &KUBERNETES,
        Dialect::Kyverno => &KYVERNO,
    };
    cell.get_or_init(|| build_env(dialect))
        .clone()
        .map_err(|e| CompileError::Internal(format!("cannot build the CEL environment: {e}")))
}

/// A compiled expression: its source, its instrumented AST and what the static pass learnt.
#[derive(Clone)]
pub struct Program {
    dialect: Dialect,
    env: Arc<Env>,
    source: Arc<str>,
    expression: Arc<Expression>,
    stats: Stats,
}

impl Program {
    /// Compiles an expression for Kubernetes (safely; see [`guard`]).
    pub fn compile(source: &str) -> Result<Program, CompileError> {
        Program::compile_for(Dialect::Kubernetes, source)
    }

    /// Compiles an expression for a dialect (safely; see [`guard`]).
    pub fn compile_for(dialect: Dialect, source: &str) -> Result<Program, CompileError> {
        let env = environment(dialect)?;
        let program = guard::safe_compile(&env, source)?;
        let stats = budget::analyze(program.expression(), 1000.0);
        if stats.max_nesting > budget::MAX_COMPREHENSION_NESTING {
            return Err(CompileError::TooExpensive {
                depth: stats.max_nesting,
                max: budget::MAX_COMPREHENSION_NESTING,
            });
        }
        let mut expression = budget::instrument(program.expression());
        k8s::rewrite_matches(&mut expression);
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

    /// The names read as `variables.<name>` (a policy's declared variables must include them).
    pub fn variable_references(&self) -> std::collections::BTreeSet<String> {
        use cel::common::ast::Expr;
        let mut out = std::collections::BTreeSet::new();
        let mut stack: Vec<&cel::common::ast::IdedExpr> = vec![&self.expression];
        while let Some(e) = stack.pop() {
            if let Expr::Select(s) = &e.expr {
                if matches!(&s.operand.expr, Expr::Ident(n) if n == "variables") {
                    out.insert(s.field.clone());
                }
            }
            budget::for_each_child(e, &mut |c| stack.push(c));
        }
        out
    }

    /// Lints the expression (see [`lint`]): unknown functions and methods, wrong argument counts, identifiers that
    /// are neither in `variables` nor bound by a comprehension nor a type name.
    pub fn lint(&self, variables: &[&str]) -> Result<(), lint::LintError> {
        lint::lint(self.dialect, &self.env, &self.expression, variables)
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The static analysis (worst-case estimate with lists of 1,000 items).
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// `object`, `oldObject` and `request` of one review as shared CEL values, built once per review.
#[derive(Debug, Clone)]
pub struct ReviewBindings {
    /// `object` (`null` on DELETE).
    pub object: Shared,
    /// `oldObject` (`null` on CREATE).
    pub old_object: Shared,
    /// `request`: the admission request without `object` and `oldObject`.
    pub request: Shared,
}

impl ReviewBindings {
    /// Converts a review.
    pub fn new(review: &Review) -> ReviewBindings {
        let request = match review.request() {
            Json::Object(m) => Json::Object(
                m.iter()
                    .filter(|(k, _)| k.as_str() != "object" && k.as_str() != "oldObject")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        let or_null = |v: Option<&Json>| v.map(bind::shared).unwrap_or_else(Shared::null);
        ReviewBindings {
            object: or_null(review.object()),
            old_object: or_null(review.old_object()),
            request: bind::shared(&request),
        }
    }

    /// The bindings of a review, converted on first use and shared by every policy that evaluates it.
    pub fn of(review: &Review) -> Arc<ReviewBindings> {
        review.cached(ReviewBindings::new)
    }
}

/// What expressions are evaluated against.
#[derive(Clone)]
pub struct Activation {
    review: Arc<ReviewBindings>,
    data: Option<Arc<dyn kyverno::KyvernoData>>,
    params: Shared,
    namespace_object: Shared,
    variables: Option<Variables>,
}

impl Activation {
    /// An activation over a review's bindings; `params` and `namespaceObject` are `null` until set.
    pub fn new(review: Arc<ReviewBindings>) -> Activation {
        Activation {
            review,
            data: None,
            params: Shared::null(),
            namespace_object: Shared::null(),
            variables: None,
        }
    }

    /// Sets where Kyverno's `resource` and `image` libraries read from.
    pub fn with_kyverno_data(mut self, data: Arc<dyn kyverno::KyvernoData>) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets `params`.
    pub fn with_params(mut self, params: Shared) -> Self {
        self.params = params;
        self
    }

    /// Sets `namespaceObject`.
    pub fn with_namespace_object(mut self, namespace: Shared) -> Self {
        self.namespace_object = namespace;
        self
    }

    /// Declares the named `variables` (evaluated lazily, at most once each, in this activation).
    pub fn with_variables(mut self, variables: &[(String, Program)]) -> Self {
        if variables.is_empty() {
            return self;
        }
        let base = Activation {
            variables: None,
            ..self.clone()
        };
        self.variables = Some(Variables(Arc::new(VariablesInner {
            base,
            index: variables
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.clone(), i))
                .collect(),
            programs: variables.iter().map(|(_, p)| p.clone()).collect(),
            slots: variables
                .iter()
                .map(|_| Mutex::new(Slot::Pending))
                .collect(),
        })));
        self
    }

    fn context(&self, env: &Arc<Env>) -> Context<'static, 'static> {
        let mut ctx = Context::with_env(env.clone());
        ctx.add_variable_as_val("object", self.review.object.boxed());
        ctx.add_variable_as_val("oldObject", self.review.old_object.boxed());
        ctx.add_variable_as_val("request", self.review.request.boxed());
        ctx.add_variable_as_val("params", self.params.boxed());
        ctx.add_variable_as_val("namespaceObject", self.namespace_object.boxed());
        let variables: Box<dyn Val> = match &self.variables {
            Some(v) => Box::new(v.clone()),
            None => Box::new(Variables::empty()),
        };
        ctx.add_variable_as_val("variables", variables);
        ctx
    }

    /// Evaluates a program under `limits`.
    pub fn evaluate(&self, program: &Program, limits: &Limits) -> Result<Value, EvalError> {
        let ctx = self.context(&program.env);
        let _installed = self.data.clone().map(|d| kyverno::install(Some(d)));
        budget::eval_bounded(&program.expression, &ctx, limits.cost, limits.deadline).0
    }

    /// Evaluates a program that must return a bool.
    pub fn evaluate_bool(&self, program: &Program, limits: &Limits) -> Result<bool, EvalError> {
        match self.evaluate(program, limits)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::Type {
                want: "bool",
                got: type_name(&other),
            }),
        }
    }

    /// Evaluates a program that must return a string.
    pub fn evaluate_string(&self, program: &Program, limits: &Limits) -> Result<String, EvalError> {
        match self.evaluate(program, limits)? {
            Value::String(s) => Ok(s.to_string()),
            other => Err(EvalError::Type {
                want: "string",
                got: type_name(&other),
            }),
        }
    }
}

/// A CEL value's type name, for messages.
pub fn type_name(v: &Value) -> String {
    match v {
        Value::List(_) => "list".into(),
        Value::Map(_) => "map".into(),
        Value::Int(_) => "int".into(),
        Value::UInt(_) => "uint".into(),
        Value::Float(_) => "double".into(),
        Value::String(_) => "string".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => "null".into(),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

enum Slot {
    Pending,
    Running,
    Done(Result<Arc<dyn Val>, String>),
}

struct VariablesInner {
    base: Activation,
    index: HashMap<String, usize>,
    programs: Vec<Program>,
    slots: Vec<Mutex<Slot>>,
}

/// The `variables` map: each entry evaluated on first access, in the activation it belongs to, sharing the budget of
/// the evaluation that reads it.
#[derive(Clone)]
pub struct Variables(Arc<VariablesInner>);

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("variables", &self.variables)
            .field("kyverno_data", &self.data.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("source", &self.source)
            .field("stats", &self.stats)
            .finish()
    }
}

impl std::fmt::Debug for Variables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variables")
            .field("names", &self.0.index.keys().collect::<Vec<_>>())
            .finish()
    }
}

thread_local! {
    static NESTING: Cell<usize> = const { Cell::new(0) };
}

impl Variables {
    fn empty() -> Variables {
        let review = Arc::new(ReviewBindings {
            object: Shared::null(),
            old_object: Shared::null(),
            request: Shared::null(),
        });
        Variables(Arc::new(VariablesInner {
            base: Activation::new(review),
            index: HashMap::new(),
            programs: Vec::new(),
            slots: Vec::new(),
        }))
    }

    fn resolve(&self, i: usize, name: &str) -> Result<Arc<dyn Val>, String> {
        let inner = &self.0;
        let slot = inner.slots.get(i).ok_or("no such variable")?;
        {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            match &*s {
                Slot::Done(r) => return r.clone(),
                Slot::Running => return Err(format!("variable {name} refers to itself")),
                Slot::Pending => *s = Slot::Running,
            }
        }
        let depth = NESTING.with(|n| n.get());
        let result = if depth >= MAX_VARIABLE_NESTING {
            Err(format!(
                "variables nested more than {MAX_VARIABLE_NESTING} deep"
            ))
        } else {
            NESTING.with(|n| n.set(depth + 1));
            let r = self.evaluate(i);
            NESTING.with(|n| n.set(depth));
            r
        };
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        *s = Slot::Done(result.clone());
        result
    }

    fn evaluate(&self, i: usize) -> Result<Arc<dyn Val>, String> {
        let program = self.0.programs.get(i).ok_or("no such variable")?;
        let mut activation = self.0.base.clone();
        activation.variables = Some(self.clone());
        let ctx = activation.context(&program.env);
        let boxed = budget::eval_bounded_val(&program.expression, &ctx, DEFAULT_COST_LIMIT, None)
            .0
            .map_err(|e| e.to_string())?;
        Ok(Arc::from(boxed))
    }
}

impl Val for Variables {
    fn get_type(&self) -> &Type {
        &MAP_TYPE
    }
    fn cel_type() -> &'static Type {
        &MAP_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn into_indexer<'v>(self: Box<Self>) -> Option<Box<dyn Indexer + 'v>>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other
            .downcast_ref::<Variables>()
            .is_some_and(|o| Arc::ptr_eq(&o.0, &self.0))
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl StaticVal for Variables {}

impl Indexer for Variables {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Some(name) = idx.downcast_ref::<CelString<'_>>() else {
            return Err(ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "string".to_owned(),
            });
        };
        let name: &str = name.inner();
        let Some(&i) = self.0.index.get(name) else {
            return Err(ExecutionError::no_such_key(name));
        };
        match self.resolve(i, name) {
            Ok(v) => Ok(CowVal::Owned(v.clone_as_boxed())),
            Err(e) => Err(ExecutionError::function_error(
                &format!("variables.{name}"),
                e,
            )),
        }
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

#[cfg(test)]
mod tests;

/// Evaluates `src` with `object` as the object of a CREATE review (the libraries' tests).
#[cfg(test)]
pub(crate) fn eval_on(object: Json, src: &str) -> Result<Value, EvalError> {
    eval_on_for(Dialect::Kubernetes, object, src)
}

/// Evaluates `src`, compiled for `dialect`, with `object` as the object of a CREATE review (the libraries' tests).
#[cfg(test)]
pub(crate) fn eval_on_for(dialect: Dialect, object: Json, src: &str) -> Result<Value, EvalError> {
    let review = Review::for_object(object, None, policyctl_core::admission::Operation::Create);
    let activation = Activation::new(ReviewBindings::of(&review));
    let program =
        Program::compile_for(dialect, src).map_err(|e| EvalError::Execution(e.to_string()))?;
    activation.evaluate(&program, &Limits::default())
}
