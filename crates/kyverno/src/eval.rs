//! What every rule needs while it runs: the environment (user, namespace labels, mocks, cluster), context entries
//! and condition blocks.

use std::borrow::Cow;
use std::time::Instant;

use serde_json::{Map, Value};

use super::conditions::{evaluate, Operator};
use super::matching::UserContext;
use super::spec::ContextEntry;
use super::variables::{
    substitute, substitute_str, substitute_str_cow, value_has_braces, CompiledQuery, Context, Mode,
    VarError,
};
use crate::policy::ClusterContext;

/// Values that replace lookups when testing (`kyverno test` Values files), served by the test's cluster context.
pub use crate::policy::Overrides as Mocks;

/// Where data from outside the request comes from.
#[derive(Debug, Clone, Copy)]
pub enum Lookups<'a> {
    /// Testing: only mocks; `configMap` / `apiCall` entries not mocked are not loaded (Kyverno CLI behaviour).
    Mocks(&'a Mocks),
    /// Serving: the cluster context.
    Cluster(&'a dyn ClusterContext),
}

/// The environment of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The requester.
    pub user: &'a UserContext,
    /// Labels of the request's namespace, when known.
    pub namespace_labels: Option<&'a Map<String, Value>>,
    /// Lookups.
    pub lookups: Lookups<'a>,
    /// The request's deadline: loops over elements stop once it has passed.
    pub deadline: Option<Instant>,
}

/// What a test's [`Env`] borrows: no requester, mocked lookups (none), no namespace labels, no deadline.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestEnv {
    user: UserContext,
    mocks: Mocks,
}

#[cfg(test)]
impl TestEnv {
    /// The environment.
    pub(crate) fn env(&self) -> Env<'_> {
        Env {
            user: &self.user,
            namespace_labels: None,
            lookups: Lookups::Mocks(&self.mocks),
            deadline: None,
        }
    }
}

/// The message of a rule stopped by the request's deadline.
pub const DEADLINE_MESSAGE: &str = "evaluation stopped: the request deadline passed";

impl Env<'_> {
    /// Whether the request's deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl Env<'_> {
    /// Rule-level mocks for a rule (autogen names fall back to the rule they came from).
    pub fn rule_values(&self, rule: &str) -> Option<&Map<String, Value>> {
        let Lookups::Mocks(m) = self.lookups else {
            return None;
        };
        m.rules.get(rule).or_else(|| {
            let base = rule
                .strip_prefix("autogen-cronjob-")
                .or_else(|| rule.strip_prefix("autogen-"))?;
            m.rules.get(base)
        })
    }

    /// Apply the `foreachValues` mocks of a rule for iteration `index`: each variable takes the index-th value
    /// of its list.
    pub fn apply_foreach_values(&self, rule: &str, index: usize, ctx: &mut Context<'_>) {
        let Lookups::Mocks(m) = self.lookups else {
            return;
        };
        let values = m.foreach.get(rule).or_else(|| {
            let base = rule
                .strip_prefix("autogen-cronjob-")
                .or_else(|| rule.strip_prefix("autogen-"))?;
            m.foreach.get(base)
        });
        for (name, list) in values.into_iter().flatten() {
            if let Some(v) = list.as_array().and_then(|l| l.get(index)) {
                ctx.add_path(name, v.clone());
            }
        }
    }
}

/// Why a rule's context entries could not be loaded. Every message starts with `context entry <name>: `.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ContextError {
    /// A variable (`{{ }}`) of the entry could not be substituted.
    #[error("context entry {entry}: {source}")]
    Variable {
        /// The entry's name.
        entry: String,
        /// The substitution's error.
        #[source]
        source: VarError,
    },
    /// The entry's `jmesPath` failed on its value.
    #[error("context entry {entry}: {source}")]
    Search {
        /// The entry's name.
        entry: String,
        /// The evaluation's error.
        #[source]
        source: crate::jmespath::JmesError,
    },
    /// The entry's `jmesPath` failed on the context.
    #[error("context entry {entry}: {source}")]
    Query {
        /// The entry's name.
        entry: String,
        /// The query's error.
        #[source]
        source: VarError,
    },
    /// A `variable` entry has neither a value nor a `jmesPath` nor a default.
    #[error("context entry {entry}: a variable needs a value or a jmesPath")]
    NoValue {
        /// The entry's name.
        entry: String,
    },
    /// The cluster context has no such ConfigMap.
    #[error(
        "context entry {entry}: ConfigMap {namespace}/{name} is not available (needs cluster context)"
    )]
    ConfigMap {
        /// The entry's name.
        entry: String,
        /// The ConfigMap's namespace.
        namespace: String,
        /// The ConfigMap's name.
        name: String,
    },
    /// An `apiCall` without `urlPath` (service calls are not supported).
    #[error("context entry {entry}: only apiCall.urlPath is supported")]
    NoUrlPath {
        /// The entry's name.
        entry: String,
    },
    /// An `apiCall` with a method other than GET.
    #[error("context entry {entry}: only GET API calls are supported")]
    Method {
        /// The entry's name.
        entry: String,
    },
    /// The API call failed.
    #[error("context entry {entry}: API call {path} needs cluster context: {source}")]
    ApiCall {
        /// The entry's name.
        entry: String,
        /// The URL path called.
        path: String,
        /// Why the read failed.
        #[source]
        source: policyctl_core::policy::ApiReadError,
    },
    /// An entry kind policyctl does not load (`imageRegistry`, `globalReference`, ...).
    #[error("context entry {entry}: this kind of context entry is not supported")]
    Unsupported {
        /// The entry's name.
        entry: String,
    },
}

/// Why a condition block could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    /// The block is neither a list nor `{any, all}`.
    #[error("conditions must be a list or {{any, all}}")]
    Shape,
    /// A condition names an operator Kyverno does not have.
    #[error("unknown condition operator {0:?}")]
    UnknownOperator(String),
    /// A key, value or message variable could not be resolved.
    #[error(transparent)]
    Variable(#[from] VarError),
}

/// Load context entries into `ctx`. Errors name the entry.
pub fn load_context(
    entries: &[ContextEntry],
    ctx: &mut Context<'_>,
    env: &Env<'_>,
    rule: &str,
) -> Result<(), ContextError> {
    let variable = |entry: &ContextEntry| {
        let entry = entry.name.clone();
        move |source| ContextError::Variable { entry, source }
    };
    for entry in entries {
        if let Some(var) = &entry.variable {
            let value = match &var.value {
                Some(v) => match substitute(v, ctx, Mode::Strict) {
                    Ok(v) => Some(v),
                    Err(e) if var.default.is_some() => {
                        let _ = e;
                        None
                    }
                    Err(e) => return Err(variable(entry)(e)),
                },
                None => None,
            };
            let result = match (&var.jmes_path, value) {
                (Some(path), value) => {
                    let path = match substitute_str(path, ctx, Mode::Strict) {
                        Ok(Value::String(s)) => s,
                        Ok(other) => other.to_string(),
                        Err(e) => return Err(variable(entry)(e)),
                    };
                    let searched = match value {
                        Some(v) => crate::jmespath::search(&path, &v).map_err(|source| {
                            ContextError::Search {
                                entry: entry.name.clone(),
                                source,
                            }
                        }),
                        None => ctx.query(&path).map_err(|source| ContextError::Query {
                            entry: entry.name.clone(),
                            source,
                        }),
                    };
                    match searched {
                        Ok(Value::Null) | Err(_) if var.default.is_some() => {
                            var.default.clone().unwrap_or(Value::Null)
                        }
                        Ok(v) => v,
                        Err(e) => return Err(e),
                    }
                }
                (None, Some(v)) => {
                    if v.is_null() {
                        var.default.clone().unwrap_or(Value::Null)
                    } else {
                        v
                    }
                }
                (None, None) => match &var.default {
                    Some(d) => d.clone(),
                    None => {
                        return Err(ContextError::NoValue {
                            entry: entry.name.clone(),
                        })
                    }
                },
            };
            ctx.set(&entry.name, result);
            continue;
        }
        match env.lookups {
            Lookups::Mocks(_) => {
                // Not loaded: rule values below provide mocked entries.
            }
            Lookups::Cluster(cluster) => {
                if let Some(cm) = &entry.config_map {
                    let name = text(&cm.name, ctx, &entry.name)?;
                    let namespace = text(&cm.namespace, ctx, &entry.name)?;
                    let Some(found) = cluster.config_map(&namespace, &name) else {
                        return Err(ContextError::ConfigMap {
                            entry: entry.name.clone(),
                            namespace,
                            name,
                        });
                    };
                    ctx.set(&entry.name, found);
                } else if let Some(call) = &entry.api_call {
                    let Some(path) = &call.url_path else {
                        return Err(ContextError::NoUrlPath {
                            entry: entry.name.clone(),
                        });
                    };
                    if call
                        .method
                        .as_deref()
                        .is_some_and(|m| !m.eq_ignore_ascii_case("GET"))
                    {
                        return Err(ContextError::Method {
                            entry: entry.name.clone(),
                        });
                    }
                    let path = text(path, ctx, &entry.name)?;
                    let response = match cluster.api_get(&path) {
                        Ok(v) => Ok(v),
                        Err(source) => Err(ContextError::ApiCall {
                            entry: entry.name.clone(),
                            path: path.clone(),
                            source,
                        }),
                    };
                    let value = match (response, &call.jmes_path) {
                        (Ok(v), Some(jp)) => {
                            crate::jmespath::search(jp, &v).map_err(|source| ContextError::Search {
                                entry: entry.name.clone(),
                                source,
                            })
                        }
                        (r, None) => r,
                        (Err(e), _) => Err(e),
                    };
                    let value = match (value, &call.default) {
                        (Ok(v), _) => v,
                        (Err(_), Some(d)) => d.clone(),
                        (Err(e), None) => return Err(e),
                    };
                    ctx.set(&entry.name, value);
                } else {
                    return Err(ContextError::Unsupported {
                        entry: entry.name.clone(),
                    });
                }
            }
        }
    }
    if let Some(values) = env.rule_values(rule) {
        for (k, v) in values {
            ctx.add_path(k, v.clone());
        }
    }
    Ok(())
}

fn text(template: &str, ctx: &Context<'_>, entry: &str) -> Result<String, ContextError> {
    match substitute_str(template, ctx, Mode::Strict) {
        Ok(Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(source) => Err(ContextError::Variable {
            entry: entry.to_string(),
            source,
        }),
    }
}

/// The outcome of a condition block: whether it holds and the messages of the conditions that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionsOutcome {
    /// `any ∧ all`.
    pub holds: bool,
    /// Messages of the conditions that were false (for preconditions) or true (for deny), joined with `; `.
    pub messages: String,
}

/// A condition block (`{any, all}` or a legacy list meaning `all`) compiled once: operators parsed, and for every
/// key, value and message whether it holds a `{{ }}` variable. A part without variables is used as written, borrowed:
/// it is neither substituted nor copied per evaluation.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// The conditions, or why the block has no valid shape (reported when it is evaluated).
    block: Result<Block, ConditionError>,
}

#[derive(Debug, Clone, Default)]
struct Block {
    any: Vec<Condition>,
    all: Vec<Condition>,
    /// How many memo slots the block's repeated terms share (see [`Term::slot`]).
    slots: usize,
}

/// The values of a block's repeated terms, resolved once per evaluation of the block.
type Memo<'a> = Vec<Option<Cow<'a, Value>>>;

#[derive(Debug, Clone)]
struct Condition {
    /// The operator, or the error of an unknown one (reported when the condition is reached).
    operator: Result<Operator, ConditionError>,
    key: Term,
    value: Term,
    message: Option<Term>,
}

/// A part of a condition and whether it holds a variable.
#[derive(Debug, Clone)]
struct Term {
    value: Value,
    variables: bool,
    /// The expression of a string that is exactly one variable, compiled at load.
    query: Option<CompiledQuery>,
    /// For a variable string that other keys or values of the block repeat (Kyverno's foreach checks often test
    /// several keys against one `{{ element... }}` value), the memo slot its resolved value shares with them: it is
    /// resolved once per evaluation of the block. Only for expressions that call no function whose answer changes
    /// between calls (`random`, `time_*`).
    slot: Option<usize>,
}

impl Term {
    fn new(value: Value) -> Term {
        Term {
            variables: value_has_braces(&value),
            query: value.as_str().and_then(CompiledQuery::new),
            value,
            slot: None,
        }
    }

    /// The resolved value of the term, from its memo slot when it has one (resolved and kept there on first use).
    /// `Ok(None)`: the value is in `memo`, read it with [`Term::memoized`].
    fn resolve_memo<'a>(
        &'a self,
        ctx: &'a Context<'_>,
        mode: Mode,
        memo: &mut Memo<'a>,
    ) -> Result<Option<Cow<'a, Value>>, VarError> {
        match self.slot.and_then(|s| memo.get_mut(s)) {
            Some(slot) => {
                if slot.is_none() {
                    *slot = Some(self.resolve(ctx, mode)?);
                }
                Ok(None)
            }
            None => self.resolve(ctx, mode).map(Some),
        }
    }

    /// The value [`Term::resolve_memo`] resolved: `own` when it gave one, else the term's memo slot.
    fn memoized<'m>(&'m self, own: &'m Option<Cow<'_, Value>>, memo: &'m Memo<'_>) -> &'m Value {
        match own {
            Some(v) => v,
            None => self
                .slot
                .and_then(|s| memo.get(s))
                .and_then(Option::as_deref)
                // Not reached: a slot is filled before it is read.
                .unwrap_or(&self.value),
        }
    }

    /// Whether the term may share a memo slot: a variable string whose expression's answer is the same each time
    /// it is evaluated in one context.
    fn memoizable(&self) -> bool {
        self.variables
            && self
                .value
                .as_str()
                .is_some_and(|t| !t.contains("random") && !t.contains("time_"))
    }

    /// The value with its variables substituted; borrowed when it has none, and when it is one variable whose
    /// value the context holds.
    fn resolve<'a>(&'a self, ctx: &'a Context<'_>, mode: Mode) -> Result<Cow<'a, Value>, VarError> {
        if !self.variables {
            return Ok(Cow::Borrowed(&self.value));
        }
        if let Some(found) = self
            .query
            .as_ref()
            .and_then(|q| ctx.query_compiled(q, mode))
        {
            return found;
        }
        if let Value::String(text) = &self.value {
            return substitute_str_cow(text, ctx, mode);
        }
        substitute(&self.value, ctx, mode).map(Cow::Owned)
    }
}

impl Condition {
    fn new(c: &Value) -> Condition {
        let op_name = c.get("operator").and_then(Value::as_str).unwrap_or("");
        Condition {
            operator: Operator::parse(op_name)
                .ok_or_else(|| ConditionError::UnknownOperator(op_name.to_string())),
            key: Term::new(c.get("key").cloned().unwrap_or(Value::Null)),
            value: Term::new(c.get("value").cloned().unwrap_or(Value::Null)),
            message: c
                .get("message")
                .and_then(Value::as_str)
                .map(|m| Term::new(Value::String(m.to_string()))),
        }
    }

    fn check<'a>(
        &'a self,
        ctx: &'a Context<'_>,
        mode: Mode,
        memo: &mut Memo<'a>,
    ) -> Result<(bool, Option<String>), ConditionError> {
        let op = self.operator.clone()?;
        let key = self.key.resolve_memo(ctx, mode, memo)?;
        let value = self.value.resolve_memo(ctx, mode, memo)?;
        let (key, value) = (
            self.key.memoized(&key, memo),
            self.value.memoized(&value, memo),
        );
        let message = self.message.as_ref().map(|m| match &m.value {
            Value::String(text) if m.variables => match substitute_str(text, ctx, Mode::Lenient) {
                Ok(Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(_) => text.clone(),
            },
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        Ok((evaluate(op, key, value), message))
    }
}

impl Block {
    /// Give every group of identical memoizable terms (keys and values of any condition) one memo slot.
    fn share_repeated_terms(mut self) -> Block {
        let mut texts: Vec<(&str, usize)> = Vec::new();
        let terms = || {
            self.any
                .iter()
                .chain(&self.all)
                .flat_map(|c| [&c.key, &c.value])
        };
        let mut repeated: Vec<String> = Vec::new();
        for term in terms().filter(|t| t.memoizable()) {
            let text = term.value.as_str().unwrap_or_default();
            match texts.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => {
                    *n += 1;
                    if *n == 2 {
                        repeated.push(text.to_string());
                    }
                }
                None => texts.push((text, 1)),
            }
        }
        self.slots = repeated.len();
        if repeated.is_empty() {
            return self;
        }
        for c in self.any.iter_mut().chain(self.all.iter_mut()) {
            for term in [&mut c.key, &mut c.value] {
                if term.memoizable() {
                    let text = term.value.as_str().unwrap_or_default();
                    term.slot = repeated.iter().position(|r| r == text);
                }
            }
        }
        self
    }
}

impl Conditions {
    /// Compile a condition block.
    pub fn new(block: &Value) -> Conditions {
        let list = |v: Option<&Value>| -> Vec<Condition> {
            v.and_then(Value::as_array)
                .map(|l| l.iter().map(Condition::new).collect())
                .unwrap_or_default()
        };
        let block = match block {
            Value::Array(items) => Ok(Block {
                any: Vec::new(),
                all: items.iter().map(Condition::new).collect(),
                slots: 0,
            }),
            Value::Object(map) => Ok(Block {
                any: list(map.get("any")),
                all: list(map.get("all")),
                slots: 0,
            }),
            Value::Null => Ok(Block::default()),
            _ => Err(ConditionError::Shape),
        };
        Conditions {
            block: block.map(Block::share_repeated_terms),
        }
    }

    /// Evaluate the block. Variables are resolved with `mode`.
    pub fn check(
        &self,
        ctx: &Context<'_>,
        mode: Mode,
    ) -> Result<ConditionsOutcome, ConditionError> {
        let block = self.block.as_ref().map_err(Clone::clone)?;
        let mut memo: Memo<'_> = Vec::new();
        memo.resize_with(block.slots, || None);
        let mut true_messages = Vec::new();
        let mut false_messages = Vec::new();
        let mut any_result = block.any.is_empty();
        for c in &block.any {
            let (ok, msg) = c.check(ctx, mode, &mut memo)?;
            if ok {
                any_result = true;
                if let Some(m) = msg {
                    true_messages.push(m);
                }
                break;
            } else if let Some(m) = msg {
                false_messages.push(m);
            }
        }
        let mut all_result = true;
        for c in &block.all {
            let (ok, msg) = c.check(ctx, mode, &mut memo)?;
            if ok {
                if let Some(m) = msg {
                    true_messages.push(m);
                }
            } else {
                all_result = false;
                if let Some(m) = msg {
                    false_messages.push(m);
                }
                break;
            }
        }
        let holds = any_result && all_result;
        let messages = if holds {
            true_messages.join("; ")
        } else {
            false_messages.join("; ")
        };
        Ok(ConditionsOutcome { holds, messages })
    }
}

/// Evaluate a `{any, all}` block (or a legacy list meaning `all`), compiled for this one use (see [`Conditions`]).
/// Variables are resolved with `mode`.
pub fn check_conditions(
    block: &Value,
    ctx: &Context<'_>,
    mode: Mode,
) -> Result<ConditionsOutcome, ConditionError> {
    Conditions::new(block).check(ctx, mode)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn ctx() -> Context<'static> {
        Context::new(
            Arc::new(
                json!({"request": {"operation": "CREATE", "object": {"metadata": {"name": "web"}}}}),
            ),
            false,
        )
    }

    #[test]
    fn literal_condition_parts_are_borrowed_and_variables_substituted() {
        let block = json!({"all": [{
            "key": "{{ request.operation }}",
            "operator": "AnyIn",
            "value": ["CREATE", "UPDATE"],
            "message": "operation is {{ request.operation }}"
        }]});
        let compiled = Conditions::new(&block);
        let Ok(b) = &compiled.block else {
            panic!("a valid block")
        };
        let c = &b.all[0];
        assert_eq!(
            c.operator,
            Ok(Operator::AnyIn),
            "the operator is parsed once"
        );
        assert!(c.key.variables && !c.value.variables);
        let c2 = ctx();
        match c.value.resolve(&c2, Mode::Lenient) {
            Ok(Cow::Borrowed(v)) => assert!(std::ptr::eq(v, &c.value.value)),
            other => panic!("a literal value is borrowed: {other:?}"),
        }
        assert_eq!(
            c.key.resolve(&c2, Mode::Lenient).map(Cow::into_owned),
            Ok(json!("CREATE"))
        );
        // A whole variable whose value the context holds is borrowed from it too; a computed one is owned.
        let t = Term::new(json!("{{ request.object.metadata }}"));
        assert!(matches!(
            t.resolve(&c2, Mode::Strict),
            Ok(Cow::Borrowed(v)) if *v == json!({"name": "web"})
        ));
        let t = Term::new(json!("{{ request.object.metadata.name }}-x"));
        assert_eq!(t.resolve(&c2, Mode::Strict), Ok(Cow::Owned(json!("web-x"))));
        let t = Term::new(json!("{{ request.nothing }}"));
        assert_eq!(t.resolve(&c2, Mode::Lenient), Ok(Cow::Owned(json!(""))));
        let outcome = compiled.check(&c2, Mode::Lenient).expect("outcome");
        assert!(outcome.holds);
        assert_eq!(outcome.messages, "operation is CREATE");
        assert_eq!(check_conditions(&block, &c2, Mode::Lenient), Ok(outcome));
    }

    #[test]
    fn terms_compiled_at_load_answer_as_the_text_path() {
        let doc = Arc::new(json!({"request": {
            "operation": "DELETE",
            "object": {"metadata": {"name": "new"}},
            "oldObject": {"metadata": {"name": "old", "labels": {"a": "1"}}}
        }}));
        let texts = [
            "{{ request.object.metadata.name }}",
            "{{request.object.metadata.labels.a}}",
            "{{- request.operation }}",
            "{{ request.object.metadata.missing }}",
            "{{ request.object.metadata.missing || 'dflt' }}",
            "{{ to_upper(request.operation) }}",
            "{{ request.oldObject.metadata }}",
            "{{ nothing.here }}",
            "{{ @ }}",
            "{{ $.request.operation }}",
            "x-{{ request.operation }}",
            "{{ request.( }}",
        ];
        for delete in [false, true] {
            let ctx = Context::new(doc.clone(), delete);
            for text in texts {
                let term = Term::new(json!(text));
                let text_path = Term {
                    query: None,
                    ..term.clone()
                };
                let whole_jmespath = !text.starts_with("x-")
                    && !text.contains('@')
                    && !text.contains('$')
                    && !text.contains('(');
                let expect_compiled = whole_jmespath || text.contains("to_upper");
                assert_eq!(term.query.is_some(), expect_compiled, "{text}");
                if let Some(q) = &term.query {
                    // On DELETE an expression that mentions request.object is left to the text path (rewrite).
                    assert_eq!(
                        ctx.query_compiled(q, Mode::Strict).is_none(),
                        delete && text.contains("request.object"),
                        "{text}"
                    );
                }
                for mode in [Mode::Lenient, Mode::Strict] {
                    assert_eq!(
                        term.resolve(&ctx, mode),
                        text_path.resolve(&ctx, mode),
                        "{text} delete={delete} {mode:?}"
                    );
                }
            }
        }
        // The compiled path really answers (not the text path): on CREATE it reads request.object.
        let ctx = Context::new(doc, false);
        let term = Term::new(json!("{{ request.object.metadata.name }}"));
        let q = term.query.as_ref().expect("compiled");
        assert_eq!(
            ctx.query_compiled(q, Mode::Strict)
                .map(|r| r.map(Cow::into_owned)),
            Some(Ok(json!("new")))
        );
    }

    fn var_error() -> VarError {
        VarError {
            expression: "request.x".to_string(),
            message: "Unknown key \"x\" in path".to_string(),
            not_found: true,
            bound: false,
        }
    }

    /// The messages reach rule responses and PolicyReports: each variant's text is pinned.
    #[test]
    fn context_error_messages_are_kept() {
        let entry = || "cfg".to_string();
        let cases = [
            (
                ContextError::Variable {
                    entry: entry(),
                    source: var_error(),
                },
                "context entry cfg: failed to substitute variable \"request.x\": Unknown key \"x\" in path",
            ),
            (
                ContextError::Search {
                    entry: entry(),
                    source: crate::jmespath::JmesError::NotFound {
                        key: "k".to_string(),
                    },
                },
                "context entry cfg: Unknown key \"k\" in path",
            ),
            (
                ContextError::Query {
                    entry: entry(),
                    source: var_error(),
                },
                "context entry cfg: failed to substitute variable \"request.x\": Unknown key \"x\" in path",
            ),
            (
                ContextError::NoValue { entry: entry() },
                "context entry cfg: a variable needs a value or a jmesPath",
            ),
            (
                ContextError::ConfigMap {
                    entry: entry(),
                    namespace: "ns".to_string(),
                    name: "settings".to_string(),
                },
                "context entry cfg: ConfigMap ns/settings is not available (needs cluster context)",
            ),
            (
                ContextError::NoUrlPath { entry: entry() },
                "context entry cfg: only apiCall.urlPath is supported",
            ),
            (
                ContextError::Method { entry: entry() },
                "context entry cfg: only GET API calls are supported",
            ),
            (
                ContextError::ApiCall {
                    entry: entry(),
                    path: "/api/v1/pods".to_string(),
                    source: policyctl_core::policy::ApiReadError::NoCluster {
                        path: "/api/v1/pods".to_string(),
                    },
                },
                "context entry cfg: API call /api/v1/pods needs cluster context: /api/v1/pods: this evaluation has \
                 no cluster context (the Kubernetes API is not available)",
            ),
            (
                ContextError::Unsupported { entry: entry() },
                "context entry cfg: this kind of context entry is not supported",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        // The underlying error is the source.
        let e = ContextError::Variable {
            entry: entry(),
            source: var_error(),
        };
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn condition_error_messages_are_kept() {
        assert_eq!(
            ConditionError::Shape.to_string(),
            "conditions must be a list or {any, all}"
        );
        assert_eq!(
            ConditionError::UnknownOperator("Bogus".to_string()).to_string(),
            "unknown condition operator \"Bogus\""
        );
        assert_eq!(
            ConditionError::Variable(var_error()).to_string(),
            "failed to substitute variable \"request.x\": Unknown key \"x\" in path"
        );
    }

    #[test]
    fn load_context_reports_the_entry_and_its_error() {
        use crate::spec::ContextEntry;
        let test_env = TestEnv::default();
        let env = test_env.env();
        let entries: Vec<ContextEntry> = serde_json::from_value(json!([
            {"name": "v", "variable": {"jmesPath": "request.nothing"}}
        ]))
        .expect("entries");
        let mut c = ctx();
        let err = load_context(&entries, &mut c, &env, "r").expect_err("missing key");
        assert!(matches!(err, ContextError::Query { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "context entry v: failed to substitute variable \"request.nothing\": Unknown key \"nothing\" in path"
        );
        let entries: Vec<ContextEntry> =
            serde_json::from_value(json!([{"name": "v", "variable": {}}])).expect("entries");
        assert_eq!(
            load_context(&entries, &mut c, &env, "r").map_err(|e| e.to_string()),
            Err("context entry v: a variable needs a value or a jmesPath".to_string())
        );
    }

    /// The same block without memo slots: every term resolved on its own (the general path).
    fn without_memo(c: &Conditions) -> Conditions {
        let mut c = c.clone();
        if let Ok(b) = &mut c.block {
            b.slots = 0;
            for cond in b.any.iter_mut().chain(b.all.iter_mut()) {
                cond.key.slot = None;
                cond.value.slot = None;
            }
        }
        c
    }

    #[test]
    fn repeated_terms_resolved_once_answer_as_each_resolved_alone() {
        let drop = "{{ request.object.spec.drop[].to_upper(@) || `[]` }}";
        let keys = "{{ request.object.spec.keys(@)[] }}";
        let missing = "{{ request.nothing }}";
        let blocks = [
            json!({"all": [
                {"key": "CAP_NET_RAW", "operator": "AnyNotIn", "value": drop},
                {"key": "NET_RAW", "operator": "AnyNotIn", "value": drop}
            ]}),
            json!({"any": [
                {"key": "livenessProbe", "operator": "AllNotIn", "value": keys},
                {"key": "readinessProbe", "operator": "AllNotIn", "value": keys}
            ], "all": [
                {"key": keys, "operator": "AnyIn", "value": ["drop", "x"], "message": "has {{ request.object.spec.keys(@) }}"},
                {"key": "startupProbe", "operator": "AllNotIn", "value": keys}
            ]}),
            json!([
                {"key": missing, "operator": "Equals", "value": ""},
                {"key": missing, "operator": "NotEquals", "value": "x"},
                {"key": drop, "operator": "Equals", "value": missing}
            ]),
            json!({"any": [
                {"key": "{{ request.object.spec.drop[0] }}", "operator": "Equals", "value": "all"},
                {"key": "{{ request.object.spec.drop[0] }}", "operator": "Equals", "value": "ALL"}
            ]}),
        ];
        let docs = [
            json!({"request": {"operation": "CREATE", "object": {"spec": {"drop": ["all", "net_raw"]}}}}),
            json!({"request": {"operation": "CREATE", "object": {"spec": {"drop": ["chown"], "livenessProbe": {}}}}}),
            json!({"request": {"operation": "CREATE", "object": {"spec": {}}}}),
            json!({"request": {"operation": "DELETE", "object": null,
                "oldObject": {"spec": {"drop": ["ALL"]}}}}),
        ];
        for (i, block) in blocks.iter().enumerate() {
            let memoized = Conditions::new(block);
            let Ok(b) = &memoized.block else {
                panic!("a valid block")
            };
            assert!(b.slots >= 1, "block {i} shares a term");
            let general = without_memo(&memoized);
            for doc in &docs {
                let delete = doc["request"]["operation"] == "DELETE";
                let c = Context::new(Arc::new(doc.clone()), delete);
                for mode in [Mode::Lenient, Mode::Strict] {
                    assert_eq!(
                        memoized.check(&c, mode),
                        general.check(&c, mode),
                        "block {i} on {doc} {mode:?}"
                    );
                }
            }
        }
        // Terms whose answer may change between calls are never shared.
        let block = json!([
            {"key": "{{ random('[a-z]{8}') }}", "operator": "NotEquals", "value": "{{ random('[a-z]{8}') }}"},
            {"key": "{{ time_now_utc() }}", "operator": "NotEquals", "value": "{{ time_now_utc() }}"}
        ]);
        let Ok(b) = &Conditions::new(&block).block else {
            panic!("a valid block")
        };
        assert_eq!(b.slots, 0);
    }

    #[test]
    fn compiled_conditions_keep_the_errors_and_their_order() {
        let c = ctx();
        // A bad shape is reported when evaluated.
        assert_eq!(
            Conditions::new(&json!("x")).check(&c, Mode::Lenient),
            Err(ConditionError::Shape)
        );
        // An unknown operator is an error only once the condition is reached.
        let block = json!({"any": [
            {"key": 1, "operator": "Equals", "value": 1},
            {"key": 1, "operator": "Bogus", "value": 1}
        ]});
        assert!(Conditions::new(&block)
            .check(&c, Mode::Lenient)
            .is_ok_and(|o| o.holds));
        let block = json!([{"key": 1, "operator": "Bogus", "value": 1}]);
        assert_eq!(
            Conditions::new(&block).check(&c, Mode::Lenient),
            Err(ConditionError::UnknownOperator("Bogus".to_string()))
        );
        // Strict substitution errors name the variable; lenient ones read "".
        let block = json!([{"key": "{{ request.nothing }}", "operator": "Equals", "value": ""}]);
        let err = Conditions::new(&block)
            .check(&c, Mode::Strict)
            .expect_err("missing key");
        assert!(err.to_string().contains("request.nothing"), "{err}");
        assert!(Conditions::new(&block)
            .check(&c, Mode::Lenient)
            .is_ok_and(|o| o.holds));
    }
}
