//! Kyverno variables: the evaluation context (`request.*`, `serviceAccountName`, `images.*`, `element`, context
//! entries) and `{{ }}` substitution in JSON documents.
//!
//! Expressions are Kyverno-flavoured JMESPath ([`crate::jmespath`]): a missing key is an error (`Unknown key`), which
//! is why policies write `{{ x || '' }}`. Substitution rules:
//! - `{{ expr }}` is found in map values **and keys**; `\{{` escapes;
//! - a string that is exactly one `{{ }}` takes the value's JSON type; otherwise strings are inserted raw and other
//!   values as JSON text;
//! - nested `{{ }}` resolve inside out; `{{- expr }}` is not re-scanned;
//! - on DELETE, `request.object` in an expression reads `request.oldObject`;
//! - in a validation pattern, a value that is exactly `{{@}}` is the resource's value at the same place;
//! - policyctl extension: an expression starting with `$` (`{{ $.request.object.metadata.name }}`) is JSONPath
//!   (RFC 9535, evaluated with jsonpath-rust) over the same document: one match is the value, several a list, none
//!   a missing-key error.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use regex::Regex;
use serde_json::{Map, Value};

/// A variable that could not be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("failed to substitute variable {expression:?}: {message}")]
pub struct VarError {
    /// The expression text.
    pub expression: String,
    /// Why.
    pub message: String,
    /// Whether the failure is a missing key.
    pub not_found: bool,
    /// Whether a bound (deadline, work budget) stopped the evaluation: never resolved leniently.
    pub bound: bool,
}

/// How unresolvable variables are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any error fails the substitution.
    Strict,
    /// Errors resolve to `""` (Kyverno's preconditions resolver), except those of a bound (deadline, budget): an
    /// expression stopped by a bound has no value, and reading it as `""` could turn a deny into a pass.
    Lenient,
}

/// Where the base document of a context comes from.
#[derive(Debug, Clone)]
pub enum Base<'r> {
    /// A document built beforehand.
    Ready(Arc<Value>),
    /// A served review: the document is built on first use, once per review, and shared by every policy (rules
    /// without variables never pay for it).
    Served(Served<'r>),
}

/// A served review and its own `request` (looked up once, not per query).
#[derive(Debug, Clone, Copy)]
pub struct Served<'r> {
    review: &'r crate::admission::Review,
    request: &'r Value,
}

impl<'r> Base<'r> {
    /// The base of a served review.
    pub fn served(review: &'r crate::admission::Review) -> Base<'r> {
        Base::served_with(review, review.request())
    }

    /// [`Base::served`] with the review's request already looked up (`request` is `review.request()`).
    pub fn served_with(review: &'r crate::admission::Review, request: &'r Value) -> Base<'r> {
        Base::Served(Served { review, request })
    }
}

/// The evaluation context of one rule: a JSON document that expressions query.
///
/// The document is layered: a base document shared by every rule of a review (built once per review), plus the
/// variables a rule sets on top of it (context entries, foreach `element`s). Lookups go through the layers, so
/// setting a variable or cloning the context for a foreach element costs nothing more than the variable itself,
/// never a copy of the request: a foreach over N elements stays linear in N.
#[derive(Debug, Clone)]
pub struct Context<'r> {
    base: Base<'r>,
    /// The base document, once resolved (so that query results can borrow from it).
    resolved: OnceCell<Arc<Value>>,
    /// A served review's base document without `request` (read from the review itself) and `images`, once resolved.
    thin: OnceCell<Arc<Value>>,
    /// A served review's `images`, once an expression has read them.
    images: OnceCell<Arc<Value>>,
    overlay: Vec<(Name, Shared<'r>)>,
    merged: RefCell<Option<Arc<Value>>>,
    delete: bool,
    deadline: Option<Instant>,
}

/// The expression of a text that is exactly one `{{ expr }}`, compiled once (at load): [`Context::query_compiled`]
/// answers it as [`Context::query_cow`] answers the text.
#[derive(Debug, Clone)]
pub struct CompiledQuery {
    /// The expression's text (as errors name it).
    expression: String,
    expr: crate::jmespath::Expression,
    /// Whether the text mentions `request.object` (rewritten to `request.oldObject` on DELETE: the text path
    /// answers those).
    mentions_object: bool,
    /// What the expression reads of the root, found once.
    reads: Reads,
}

/// What an expression reads of the root of a served review's document (see [`Context::search`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reads {
    /// [`reads_request_members_only`].
    request_members_only: bool,
    /// Whether it may read `images`.
    images: bool,
}

impl Reads {
    fn of(expr: &crate::jmespath::Expression) -> Reads {
        Reads {
            request_members_only: reads_request_members_only(expr),
            images: expr
                .root_reads()
                .iter()
                .any(|read| read.name.as_deref() == Some("images")),
        }
    }
}

impl CompiledQuery {
    /// The compiled expression of `text` when it is exactly one JMESPath variable that compiles (not `@`, not
    /// JSONPath); `None` otherwise (the text path answers, and reports any error).
    pub fn new(text: &str) -> Option<CompiledQuery> {
        if !has_variables(text) {
            return None;
        }
        let expression = whole_variable(text)?;
        let trimmed = expression.trim();
        if trimmed == "@" || trimmed.starts_with('$') {
            return None;
        }
        let expr = crate::jmespath::Expression::compile(trimmed).ok()?;
        Some(CompiledQuery {
            expression: expression.to_string(),
            reads: Reads::of(&expr),
            expr,
            mentions_object: trimmed.contains("request.object"),
        })
    }
}

/// A foreach `list` expression compiled once (at load): [`Context::elements_compiled`] answers it as
/// [`Context::elements`] answers the text, without looking the expression up by its text per evaluation.
#[derive(Debug, Clone)]
pub struct CompiledList {
    expr: crate::jmespath::Expression,
    /// Whether the text mentions `request.object` (rewritten to `request.oldObject` on DELETE: the text path
    /// answers those).
    mentions_object: bool,
    /// What the expression reads of the root, found once.
    reads: Reads,
}

impl CompiledList {
    /// The compiled expression of a foreach `list` (with or without `{{ }}`) that is JMESPath and compiles (not
    /// `@`, not JSONPath); `None` otherwise (the text path answers).
    pub fn new(list: &str) -> Option<CompiledList> {
        let text = list_expression(list).trim();
        if text == "@" || text.starts_with('$') {
            return None;
        }
        let expr = crate::jmespath::Expression::compile(text).ok()?;
        Some(CompiledList {
            reads: Reads::of(&expr),
            expr,
            mentions_object: text.contains("request.object"),
        })
    }
}

/// The name of a variable the context sets: a constant (`element`, `elementIndex0`, set per foreach element, costs no
/// allocation) or a shared name.
#[derive(Debug, Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

/// The value of a variable: shared with other variables, or borrowed from a document that outlives the context
/// (a foreach element of the request is the request's own value, not a copy).
#[derive(Debug, Clone)]
pub enum Shared<'r> {
    /// A value the context shares.
    Arc(Arc<Value>),
    /// A value borrowed from a longer-lived document.
    Ref(&'r Value),
}

impl std::ops::Deref for Shared<'_> {
    type Target = Value;
    fn deref(&self) -> &Value {
        match self {
            Shared::Arc(v) => v,
            Shared::Ref(v) => v,
        }
    }
}

impl Shared<'_> {
    /// The value, no longer borrowing anything (a copy of a borrowed value).
    pub fn into_owned(self) -> Shared<'static> {
        match self {
            Shared::Arc(v) => Shared::Arc(v),
            Shared::Ref(v) => Shared::Arc(Arc::new(v.clone())),
        }
    }
}

impl From<Arc<Value>> for Shared<'_> {
    fn from(value: Arc<Value>) -> Self {
        Shared::Arc(value)
    }
}

impl<'r> From<Cow<'r, Value>> for Shared<'r> {
    fn from(value: Cow<'r, Value>) -> Self {
        match value {
            Cow::Borrowed(v) => Shared::Ref(v),
            Cow::Owned(v) => Shared::Arc(Arc::new(v)),
        }
    }
}

impl<'r> Context<'r> {
    /// A context over a base document (an object with `request` etc.).
    pub fn new(base: Arc<Value>, delete: bool) -> Context<'r> {
        Context::with_base(Base::Ready(base), delete)
    }

    /// A context over a [`Base`].
    pub fn with_base(base: Base<'r>, delete: bool) -> Context<'r> {
        Context {
            base,
            resolved: OnceCell::new(),
            thin: OnceCell::new(),
            images: OnceCell::new(),
            overlay: Vec::new(),
            merged: RefCell::new(None),
            delete,
            deadline: None,
        }
    }

    /// The same context, whose queries give up once `deadline` has passed.
    pub fn until(mut self, deadline: Option<Instant>) -> Context<'r> {
        self.deadline = deadline;
        self
    }

    /// The deadline of the queries.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn base_document(&self) -> Arc<Value> {
        Arc::clone(self.base_ref())
    }

    /// The base document, resolved on first use.
    fn base_ref(&self) -> &Arc<Value> {
        match &self.base {
            Base::Ready(doc) => doc,
            Base::Served(served) => self
                .resolved
                .get_or_init(|| super::serving_base(served.review)),
        }
    }

    /// A top-level variable: the overlay's, else the base document's.
    fn variable(&self, name: &str) -> Option<Value> {
        match self.overlay.iter().find(|(k, _)| &**k == name) {
            Some((_, v)) => Some((**v).clone()),
            None => self.base_document().get(name).cloned(),
        }
    }

    /// The whole document, merged. Costs a copy of the base document when variables are set: only `@` and JSONPath
    /// need it; queries read the layers directly.
    pub fn document(&self) -> Arc<Value> {
        if self.overlay.is_empty() {
            return self.base_document();
        }
        if let Some(doc) = self.merged.borrow().as_ref() {
            return doc.clone();
        }
        let mut map = self
            .base_document()
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in &self.overlay {
            merge_into(&mut map, k, (**v).clone());
        }
        let doc = Arc::new(Value::Object(map));
        *self.merged.borrow_mut() = Some(doc.clone());
        doc
    }

    /// Set a top-level variable (replacing it).
    pub fn set(&mut self, name: &str, value: Value) {
        self.set_shared(name, Arc::new(value));
    }

    /// Set a variable to a value shared with other variables (no copy of it is made).
    pub fn set_shared(&mut self, name: &str, value: impl Into<Shared<'r>>) {
        let value = value.into();
        match self.overlay.iter_mut().find(|(k, _)| &**k == name) {
            Some(slot) => slot.1 = value,
            None => self.overlay.push((Name::Shared(Arc::from(name)), value)),
        }
        *self.merged.borrow_mut() = None;
    }

    /// [`Context::set_shared`] for a variable whose name is a constant: no name is allocated.
    pub fn set_static(&mut self, name: &'static str, value: impl Into<Shared<'r>>) {
        let value = value.into();
        match self.overlay.iter_mut().find(|(k, _)| &**k == name) {
            Some(slot) => slot.1 = value,
            None => self.overlay.push((Name::Static(name), value)),
        }
        *self.merged.borrow_mut() = None;
    }

    /// Add a variable by dotted path (`request.object.metadata.name`, as values files do), merging into what
    /// exists.
    pub fn add_path(&mut self, path: &str, value: Value) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(first) = parts.first().copied() else {
            return;
        };
        parts.remove(0);
        let mut nested = value;
        for part in parts.iter().rev() {
            let mut m = Map::new();
            m.insert((*part).to_string(), nested);
            nested = Value::Object(m);
        }
        let merged = match self.variable(first) {
            Some(mut existing) => {
                deep_merge(&mut existing, nested);
                existing
            }
            None => nested,
        };
        self.set(first, merged);
    }

    /// Make `request.object` the given object: `request` becomes a copy of the current one with that object
    /// (nothing is copied when it already is).
    pub fn set_object(&mut self, object: &Value) {
        let current = match self.overlay.iter().find(|(k, _)| &**k == "request") {
            Some((_, v)) => v.clone(),
            None => {
                let base = self.base_document();
                match base.get("request") {
                    Some(r) if r.get("object") == Some(object) => return,
                    Some(r) => Shared::Arc(Arc::new(r.clone())),
                    None => Shared::Arc(Arc::new(Value::Object(Map::new()))),
                }
            }
        };
        if current.get("object") == Some(object) {
            return;
        }
        let mut request = (*current).clone();
        match request.as_object_mut() {
            Some(map) => {
                map.insert("object".into(), object.clone());
            }
            None => {
                let mut map = Map::new();
                map.insert("object".into(), object.clone());
                request = Value::Object(map);
            }
        }
        self.set("request", request);
    }

    /// Whether a served review's `images` have been built for this context.
    #[cfg(test)]
    pub(crate) fn images_built(&self) -> bool {
        self.images.get().is_some()
    }

    /// Whether the base document (the served review's, with its request copied in) has been built.
    pub fn base_built(&self) -> bool {
        matches!(self.base, Base::Ready(_)) || self.resolved.get().is_some()
    }

    /// Evaluate an expression (without braces).
    pub fn query(&self, expression: &str) -> Result<Value, VarError> {
        self.query_cow(expression).map(Cow::into_owned)
    }

    /// [`Context::query`] without copying what the context already holds: a plain path
    /// (`request.object.spec.containers`, `element.name`) gives the document's own value, borrowed.
    pub fn query_cow(&self, expression: &str) -> Result<Cow<'_, Value>, VarError> {
        self.query_parts(expression)
            .map(crate::jmespath::Parts::into_value)
    }

    /// [`Context::query_cow`], where a list the expression builds of the context's values
    /// (`request.object.spec.[initContainers, containers][]`) is a list of borrowed values, not a copy.
    pub fn query_parts(&self, expression: &str) -> Result<crate::jmespath::Parts<'_>, VarError> {
        self.query_parts_quiet(expression)
            .map_err(|e| e.into_var(expression))
    }

    /// [`Context::query_parts`], whose JMESPath error is not rendered: for callers that only need to know whether
    /// the expression has a value.
    fn query_parts_quiet(
        &self,
        expression: &str,
    ) -> Result<crate::jmespath::Parts<'_>, QueryError> {
        let text = expression.trim();
        let rewritten;
        let text = if self.delete && text.contains("request.object") {
            rewritten = text.replace("request.object", "request.oldObject");
            rewritten.as_str()
        } else {
            text
        };
        if text == "@" {
            return Ok(crate::jmespath::Parts::Value(Cow::Owned(
                (*self.document()).clone(),
            )));
        }
        if text.starts_with('$') {
            return self
                .json_path(expression, text)
                .map(|v| crate::jmespath::Parts::Value(Cow::Owned(v)))
                .map_err(QueryError::Var);
        }
        crate::jmespath::compile_cached(text)
            .and_then(|expr| self.search(&expr, None))
            .map_err(QueryError::Jmes)
    }

    /// Evaluate a compiled expression over the context's layers (the text path's last step: the expression is
    /// neither `@` nor JSONPath, and any DELETE rewrite is already done).
    fn search(
        &self,
        expr: &crate::jmespath::Expression,
        reads: Option<Reads>,
    ) -> Result<crate::jmespath::Parts<'_>, crate::jmespath::JmesError> {
        // A served review's base document is its request with a few members added, plus service account and
        // images. An expression that never looks at those members reads the review's own request: the document
        // with the request copied into it is not built for it. `images` are built (once per review) only for an
        // expression that may read them. Both are layered after the context's own variables, which shadow them.
        let placeholder: (&str, &Value) = ("", &Value::Null);
        let mut extra = [placeholder; 2];
        let mut extras = 0;
        let served = match &self.base {
            Base::Served(served) => Some((served, reads.unwrap_or_else(|| Reads::of(expr)))),
            Base::Ready(_) => None,
        };
        let base: &Value = match served {
            Some((served, reads)) if reads.request_members_only => {
                let review = served.review;
                extra[0] = ("request", served.request);
                extras = 1;
                if reads.images {
                    let images: &Value = self.images.get_or_init(|| super::serving_images(review));
                    extra[1] = ("images", images);
                    extras = 2;
                }
                self.thin.get_or_init(|| super::serving_thin(review))
            }
            _ => self.base_ref(),
        };
        let extra = extra.get(..extras).unwrap_or_default();
        // The layers on the stack, unless the context has more variables than that (then a vector).
        const ON_STACK: usize = 8;
        let len = self.overlay.len() + extra.len();
        if len > ON_STACK {
            let mut heap: Vec<(&str, &Value)> = Vec::with_capacity(len);
            heap.extend(self.overlay.iter().map(|(k, v)| (&**k, &**v)));
            heap.extend_from_slice(extra);
            return expr.search_layered_parts(&heap, base, self.deadline);
        }
        let mut stack = [placeholder; ON_STACK];
        let layers = self
            .overlay
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .chain(extra.iter().copied());
        for (slot, layer) in stack.iter_mut().zip(layers) {
            *slot = layer;
        }
        let overlay = stack.get(..len).unwrap_or_default();
        expr.search_layered_parts(overlay, base, self.deadline)
    }

    /// [`Context::query_cow`] of a text compiled at load ([`CompiledQuery`]): the same answer, without looking the
    /// expression up by its text. `None` when the text path must answer (a DELETE, whose `request.object` reads
    /// `request.oldObject`, of an expression that mentions it).
    ///
    /// Resolved as a whole variable is in `mode`: leniently, an error (but a bound's) is `""`, and is not rendered.
    pub fn query_compiled(
        &self,
        query: &CompiledQuery,
        mode: Mode,
    ) -> Option<Result<Cow<'_, Value>, VarError>> {
        if self.delete && query.mentions_object {
            return None;
        }
        Some(match self.search(&query.expr, Some(query.reads)) {
            Ok(parts) => Ok(parts.into_value()),
            Err(e) if mode == Mode::Lenient && !e.is_bound() => {
                Ok(Cow::Owned(Value::String(String::new())))
            }
            Err(e) => Err(QueryError::Jmes(e).into_var(&query.expression)),
        })
    }

    /// [`Context::elements`] of a list compiled at load (`compiled`, of the text `list`): the same answer.
    pub(crate) fn elements_compiled(
        &self,
        list: &str,
        compiled: Option<&CompiledList>,
    ) -> Option<Vec<Shared<'_>>> {
        match compiled {
            Some(c) if !(self.delete && c.mentions_object) => {
                self.search(&c.expr, Some(c.reads)).ok().map(elements_of)
            }
            _ => self.elements(list),
        }
    }

    /// The elements of a foreach `list` expression, or `None` when it has no value (an error nobody reads is not
    /// rendered): see [`crate::validate::elements`].
    pub(crate) fn elements(&self, list: &str) -> Option<Vec<Shared<'_>>> {
        self.query_parts_quiet(list_expression(list))
            .ok()
            .map(elements_of)
    }
}

/// The JMESPath expression of a foreach `list`: its text, without the `{{ }}` it may be written in.
pub(crate) fn list_expression(list: &str) -> &str {
    let expr = list.trim();
    expr.strip_prefix("{{")
        .and_then(|e| e.strip_suffix("}}"))
        .map(str::trim)
        .unwrap_or(expr)
}

/// The elements of a foreach list's value: a list, or a single value wrapped in one.
pub(crate) fn elements_of(parts: crate::jmespath::Parts<'_>) -> Vec<Shared<'_>> {
    match parts {
        crate::jmespath::Parts::List(items) => items.into_iter().map(Shared::Ref).collect(),
        crate::jmespath::Parts::Value(Cow::Borrowed(Value::Array(items))) => {
            items.iter().map(Shared::Ref).collect()
        }
        crate::jmespath::Parts::Value(Cow::Owned(Value::Array(items))) => items
            .into_iter()
            .map(|item| Shared::Arc(Arc::new(item)))
            .collect(),
        crate::jmespath::Parts::Value(other) => vec![Shared::from(other)],
    }
}

/// Why a query failed, before a JMESPath error is rendered.
enum QueryError {
    Var(VarError),
    Jmes(crate::jmespath::JmesError),
}

impl QueryError {
    /// Whether a bound (deadline, work budget) stopped the query.
    fn bound(&self) -> bool {
        match self {
            QueryError::Var(e) => e.bound,
            QueryError::Jmes(e) => e.is_bound(),
        }
    }

    /// The error of the query of `expression`, rendered.
    fn into_var(self, expression: &str) -> VarError {
        match self {
            QueryError::Var(e) => e,
            QueryError::Jmes(e) => VarError {
                expression: expression.to_string(),
                message: e.to_string(),
                not_found: e.is_not_found(),
                bound: e.is_bound(),
            },
        }
    }
}

/// The members the base document's `request` has beyond the review's own request (see
/// [`super::base_document`]).
const ADDED_REQUEST_MEMBERS: [&str; 3] = ["roles", "clusterRoles", "userInfo"];

/// Whether an expression reads, of the root, only other members than `request` and members of `request` that
/// the review's own request has unchanged: never the whole root, the whole `request` or an added member.
fn reads_request_members_only(expr: &crate::jmespath::Expression) -> bool {
    expr.root_reads()
        .iter()
        .all(|read| match read.name.as_deref() {
            None => false,
            Some("request") => read
                .member
                .as_deref()
                .is_some_and(|m| !ADDED_REQUEST_MEMBERS.contains(&m)),
            Some(_) => true,
        })
}

impl Context<'_> {
    /// policyctl's extension: an expression starting with `$` is JSONPath (RFC 9535, jsonpath-rust) over the same
    /// document. One match gives the value, several give a list, none is a missing-key error (as in Kyverno's
    /// JMESPath).
    fn json_path(&self, expression: &str, text: &str) -> Result<Value, VarError> {
        use jsonpath_rust::JsonPath;
        let doc = self.document();
        let error = |message: String, not_found: bool| VarError {
            expression: expression.to_string(),
            message,
            not_found,
            bound: false,
        };
        let found = doc
            .query(text)
            .map_err(|e| error(format!("invalid JSONPath: {e}"), false))?;
        match found.as_slice() {
            [] => Err(error(format!("JSONPath {text} matches nothing"), true)),
            [one] => Ok((*one).clone()),
            many => Ok(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
        }
    }
}

fn merge_into(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.insert(key.to_string(), value);
}

/// Merge `patch` into `target`: objects recursively, anything else replaces.
pub fn deep_merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn variable_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(^|[^\\])(\{\{(?:\{[^{}]*\}|[^{}])*\}\})").ok())
        .as_ref()
}

/// The expressions of the `{{ }}` variables in a text (innermost ones only).
pub fn expressions_in(text: &str) -> Vec<String> {
    let Some(re) = variable_regex() else {
        return Vec::new();
    };
    re.captures_iter(text)
        .filter_map(|c| c.get(2))
        .map(|m| {
            let raw = m.as_str();
            let inner = raw.get(2..raw.len().saturating_sub(2)).unwrap_or("").trim();
            inner.strip_prefix('-').unwrap_or(inner).trim().to_string()
        })
        .collect()
}

/// Why the `{{ }}` of a text do not balance (`{{ request.name }` misses a brace), or `None` when they do. Escaped
/// openings (`\{{`) are literal text.
pub fn unbalanced(text: &str) -> Option<String> {
    let re = variable_regex()?;
    let mut rest = text.replace("\\{{", "");
    // Replace variables innermost first, as substitution does, until none is left.
    loop {
        let next = re.replace_all(&rest, "${1}_").into_owned();
        if next == rest {
            break;
        }
        rest = next;
    }
    if rest.contains("{{") {
        Some("unbalanced \"{{\": a variable is not closed with \"}}\"".to_string())
    } else if rest.contains("}}") {
        Some("unbalanced \"}}\": a variable is closed but not opened with \"{{\"".to_string())
    } else {
        None
    }
}

/// Whether a string contains a `{{ }}` variable.
pub fn has_variables(text: &str) -> bool {
    text.contains("{{")
}

/// Whether a JSON value contains a `{{ }}` variable or a `$( )` reference anywhere (keys included).
pub fn value_has_variables(value: &Value) -> bool {
    match value {
        Value::String(s) => has_variables(s) || s.contains("$("),
        Value::Array(a) => a.iter().any(value_has_variables),
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| has_variables(k) || value_has_variables(v)),
        _ => false,
    }
}

/// Whether a JSON value contains a `{{ }}` variable anywhere (keys included): [`substitute`] gives it back unchanged
/// when it does not.
pub fn value_has_braces(value: &Value) -> bool {
    match value {
        Value::String(s) => has_variables(s),
        Value::Array(a) => a.iter().any(value_has_braces),
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| has_variables(k) || value_has_braces(v)),
        _ => false,
    }
}

/// Substitute the variables of a map key; a non-string result is written as JSON.
fn substitute_key(key: &str, ctx: &Context<'_>, mode: Mode) -> Result<String, VarError> {
    if !has_variables(key) {
        return Ok(key.to_string());
    }
    Ok(match substitute_str(key, ctx, mode)? {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// Substitute every variable in `value`.
pub fn substitute(value: &Value, ctx: &Context<'_>, mode: Mode) -> Result<Value, VarError> {
    match value {
        Value::String(s) => substitute_str(s, ctx, mode),
        Value::Array(items) => items
            .iter()
            .map(|v| substitute(v, ctx, mode))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let key = substitute_key(k, ctx, mode)?;
                out.insert(key, substitute(v, ctx, mode)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Substitute the variables of a validation pattern. Besides the usual variables, a value that is exactly `{{@}}`
/// is the resource's value at the same place as the pattern value (anchors removed from keys; list element `i` of
/// the pattern reads element `i` of the resource).
pub fn substitute_pattern(
    pattern: &Value,
    resource: Option<&Value>,
    ctx: &Context<'_>,
    mode: Mode,
) -> Result<Value, VarError> {
    match pattern {
        Value::String(s) if is_at_reference(s) => match resource {
            Some(v) => Ok(v.clone()),
            None => Err(VarError {
                expression: "@".into(),
                message: "the resource has no value at this place of the pattern".into(),
                not_found: true,
                bound: false,
            }),
        },
        Value::String(s) => substitute_str(s, ctx, mode),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| substitute_pattern(v, resource.and_then(|r| r.get(i)), ctx, mode))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let key = substitute_key(k, ctx, mode)?;
                let bare = super::pattern::parse_anchor(&key)
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_else(|| key.clone());
                let child = resource.and_then(|r| r.get(bare.as_str()));
                out.insert(key, substitute_pattern(v, child, ctx, mode)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Resolve `$(path)` references in a pattern: `path` is relative to the referring field (`./../limits/memory`:
/// `.` is the field itself, `..` its parent) or absolute (`/spec/...`) and names another value of the same
/// pattern (anchored keys match by their bare name). A string that is exactly one reference takes the value; an
/// embedded reference is replaced by its text. `\$(` escapes.
pub fn resolve_references(pattern: &Value) -> Result<Value, VarError> {
    if !has_reference(pattern) {
        return Ok(pattern.clone());
    }
    let mut path = Vec::new();
    resolve_in(pattern, pattern, &mut path)
}

fn has_reference(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("$("),
        Value::Array(a) => a.iter().any(has_reference),
        Value::Object(m) => m.values().any(has_reference),
        _ => false,
    }
}

fn resolve_in(root: &Value, v: &Value, path: &mut Vec<String>) -> Result<Value, VarError> {
    match v {
        Value::String(s) if s.contains("$(") => resolve_string(root, s, path),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                out.push(resolve_in(root, item, path)?);
                path.pop();
            }
            Ok(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, item) in map {
                let bare = super::pattern::parse_anchor(k).map(|(_, b)| b).unwrap_or(k);
                path.push(bare.to_string());
                out.insert(k.clone(), resolve_in(root, item, path)?);
                path.pop();
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

fn lookup<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(root, |v, seg| match v {
        Value::Object(m) => m.get(seg.as_str()).or_else(|| {
            m.iter()
                .find(|(k, _)| super::pattern::parse_anchor(k).is_some_and(|(_, b)| b == seg))
                .map(|(_, v)| v)
        }),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn resolve_string(root: &Value, text: &str, path: &[String]) -> Result<Value, VarError> {
    let mut out = String::new();
    let mut rest = text;
    let mut whole: Option<Value> = None;
    while let Some(pos) = rest.find("$(") {
        if rest[..pos].ends_with('\\') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("$(");
            rest = &rest[pos + 2..];
            continue;
        }
        let Some(end) = rest[pos..].find(')') else {
            break;
        };
        let reference = &rest[pos + 2..pos + end];
        // An operator may lead the reference (`$(<=./../limits/memory)`); it is kept in front of the value.
        let operator_len = [">=", "<=", ">", "<", "!"]
            .iter()
            .find(|op| reference.starts_with(**op))
            .map_or(0, |op| op.len());
        let (operator, reference) = reference.split_at(operator_len);
        let mut target: Vec<String> = if reference.starts_with('/') {
            Vec::new()
        } else {
            path.to_vec()
        };
        for seg in reference.split('/').filter(|s| !s.is_empty()) {
            match seg {
                "." => {}
                ".." => {
                    target.pop();
                }
                other => target.push(other.to_string()),
            }
        }
        let found = lookup(root, &target).ok_or_else(|| VarError {
            expression: format!("$({reference})"),
            message: format!("the pattern has no value at /{}", target.join("/")),
            not_found: true,
            bound: false,
        })?;
        if pos == 0 && end + 1 == rest.len() && out.is_empty() && operator.is_empty() {
            whole = Some(found.clone());
        }
        out.push_str(&rest[..pos]);
        out.push_str(operator);
        match found {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[pos + end + 1..];
    }
    out.push_str(rest);
    Ok(whole.unwrap_or(Value::String(out)))
}

fn is_at_reference(text: &str) -> bool {
    text.strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .is_some_and(|inner| inner.trim() == "@")
}

/// The value of a text that is exactly one variable (`expr` is its expression), borrowed when the context holds it.
fn whole_variable_value<'c>(
    expr: &str,
    ctx: &'c Context<'_>,
    mode: Mode,
) -> Result<Cow<'c, Value>, VarError> {
    // The error is rendered only when it is reported (a lenient miss reads "" without it).
    match ctx.query_parts_quiet(expr) {
        Ok(parts) => Ok(parts.into_value()),
        Err(e) if mode == Mode::Lenient && !e.bound() => {
            Ok(Cow::Owned(Value::String(String::new())))
        }
        Err(e) => Err(e.into_var(expr)),
    }
}

/// [`substitute_str`] without copying a value the context holds: a text that is exactly one variable whose value
/// is the document's own (`{{ element.securityContext.capabilities.drop }}`) gives it borrowed.
pub fn substitute_str_cow<'c>(
    text: &str,
    ctx: &'c Context<'_>,
    mode: Mode,
) -> Result<Cow<'c, Value>, VarError> {
    if has_variables(text) {
        if let Some(expr) = whole_variable(text) {
            return whole_variable_value(expr, ctx, mode);
        }
    }
    substitute_str(text, ctx, mode).map(Cow::Owned)
}

/// Substitute the variables of one string; a string that is exactly one variable keeps the value's type.
pub fn substitute_str(text: &str, ctx: &Context<'_>, mode: Mode) -> Result<Value, VarError> {
    if !has_variables(text) {
        return Ok(Value::String(text.to_string()));
    }
    if let Some(expr) = whole_variable(text) {
        // The text is exactly one variable: its value, as the scan below would find it, without the scan.
        return whole_variable_value(expr, ctx, mode).map(Cow::into_owned);
    }
    let Some(re) = variable_regex() else {
        return Ok(Value::String(text.to_string()));
    };
    let mut current = text.to_string();
    // Bounded re-scan: each pass resolves the innermost variables.
    for _ in 0..32 {
        let Some(caps) = re.captures(&current) else {
            break;
        };
        let Some(whole) = caps.get(2) else { break };
        let raw = whole.as_str();
        let inner = raw.get(2..raw.len().saturating_sub(2)).unwrap_or("");
        let (shallow, expr) = match inner.trim_start().strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, inner.trim()),
        };
        let resolved = match ctx.query_cow(expr) {
            Ok(v) => v,
            Err(e) => match mode {
                Mode::Lenient if !e.bound => Cow::Owned(Value::String(String::new())),
                _ => return Err(e),
            },
        };
        if whole.start() == 0 && whole.end() == current.len() {
            // The value is data: it is not scanned for variables again.
            return Ok(resolved.into_owned());
        }
        let insert = match &*resolved {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut next = String::with_capacity(current.len() + insert.len());
        next.push_str(&current[..whole.start()]);
        next.push_str(&insert);
        next.push_str(&current[whole.end()..]);
        if shallow {
            // Do not re-scan what was inserted.
            let tail = substitute_str(&current[whole.end()..], ctx, mode)?;
            let tail = match tail {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let head = &current[..whole.start()];
            return Ok(Value::String(
                format!("{head}{insert}{tail}").replace("\\{{", "{{"),
            ));
        }
        current = next;
    }
    Ok(Value::String(current.replace("\\{{", "{{")))
}

/// The expression of a text that is exactly one `{{ expr }}` (or `{{- expr }}`) with no brace inside: the first
/// match of [`variable_regex`] is then the whole text, so [`substitute_str`] can skip the scan (most policy values
/// are such texts, and the scan is most of their cost). `None` for anything else, which takes the scan.
fn whole_variable(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
    // Bytes, not chars: the braces are ASCII (and a byte scan is several times cheaper on this hot path).
    if inner.bytes().any(|b| matches!(b, b'{' | b'}')) {
        return None;
    }
    let inner = inner.trim_start();
    Some(inner.strip_prefix('-').unwrap_or(inner).trim())
}

/// Parse a `system:serviceaccount:<ns>:<name>` username into (namespace, name).
pub fn service_account(username: &str) -> (String, String) {
    match username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), String::new()),
    }
}

/// Parse an image reference into Kyverno's `images.*` fields.
pub fn image_info(image: &str) -> Value {
    let (rest, digest) = image.split_once('@').unwrap_or((image, ""));
    let (registry, remainder) = match rest.split_once('/') {
        Some((first, tail)) if first.contains(['.', ':']) || first == "localhost" => (first, tail),
        _ => ("docker.io", rest),
    };
    let (path, tag) = match remainder.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (remainder, ""),
    };
    let tag = if tag.is_empty() && digest.is_empty() {
        "latest"
    } else {
        tag
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    // `registry/path:tag` always; the reference drops an empty tag and adds `@digest`.
    let mut reference_with_tag = String::with_capacity(registry.len() + path.len() + tag.len() + 2);
    reference_with_tag.push_str(registry);
    reference_with_tag.push('/');
    reference_with_tag.push_str(path);
    let untagged = reference_with_tag.len();
    reference_with_tag.push(':');
    reference_with_tag.push_str(tag);
    let mut reference = String::with_capacity(reference_with_tag.len() + digest.len() + 1);
    reference.push_str(if tag.is_empty() {
        &reference_with_tag[..untagged]
    } else {
        &reference_with_tag
    });
    if !digest.is_empty() {
        reference.push('@');
        reference.push_str(digest);
    }
    let text = |s: &str| Value::String(s.to_string());
    Value::Object(Map::from_iter([
        ("digest".to_string(), text(digest)),
        ("name".to_string(), text(name)),
        ("path".to_string(), text(path)),
        ("reference".to_string(), Value::String(reference)),
        (
            "referenceWithTag".to_string(),
            Value::String(reference_with_tag),
        ),
        ("registry".to_string(), text(registry)),
        ("tag".to_string(), text(tag)),
    ]))
}

/// `images` for an object: containers, initContainers and ephemeralContainers by container name, for Pods and pod
/// templates (controllers, CronJobs).
pub fn images_of(object: &Value) -> Value {
    let paths: [&[&str]; 3] = [
        &["spec"],
        &["spec", "template", "spec"],
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ];
    let spec = paths
        .iter()
        .filter_map(|p| p.iter().try_fold(object, |v, k| v.get(*k)))
        .find(|s| s.get("containers").is_some());
    let mut out = Map::new();
    if let Some(spec) = spec {
        for field in ["containers", "initContainers", "ephemeralContainers"] {
            let Some(items) = spec.get(field).and_then(Value::as_array) else {
                continue;
            };
            let mut by_name = Map::new();
            for c in items {
                if let (Some(name), Some(image)) = (
                    c.get("name").and_then(Value::as_str),
                    c.get("image").and_then(Value::as_str),
                ) {
                    by_name.insert(name.to_string(), image_info(image));
                }
            }
            if !by_name.is_empty() {
                out.insert(field.to_string(), Value::Object(by_name));
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context<'static> {
        Context::new(
            Arc::new(
                json!({"request": {"object": {"metadata": {"name": "web", "labels": {"n": 3}}}, "operation": "CREATE"}}),
            ),
            false,
        )
    }

    #[test]
    fn keeps_types_and_embeds() {
        let c = ctx();
        assert_eq!(
            substitute_str("{{ request.object.metadata.labels.n }}", &c, Mode::Strict),
            Ok(json!(3))
        );
        assert_eq!(
            substitute_str("name={{request.object.metadata.name}}!", &c, Mode::Strict),
            Ok(json!("name=web!"))
        );
        assert_eq!(
            substitute_str("{{ request.object.metadata.labels }}x", &c, Mode::Strict),
            Ok(json!("{\"n\":3}x"))
        );
        assert_eq!(
            substitute_str("\\{{ not }}", &c, Mode::Strict),
            Ok(json!("{{ not }}"))
        );
    }

    /// The substitution as it was before the whole-variable shortcut: always the regex scan.
    fn scanned(text: &str, c: &Context<'_>, mode: Mode) -> Result<Value, VarError> {
        let re = variable_regex().expect("regex");
        let caps = re.captures(text).expect("a variable");
        let whole = caps.get(2).expect("group");
        assert!(whole.start() == 0 && whole.end() == text.len());
        let raw = whole.as_str();
        let inner = &raw[2..raw.len() - 2];
        let expr = match inner.trim_start().strip_prefix('-') {
            Some(rest) => rest.trim(),
            None => inner.trim(),
        };
        match c.query(expr) {
            Ok(v) => Ok(v),
            Err(e) if mode == Mode::Lenient && !e.bound => Ok(Value::String(String::new())),
            Err(e) => Err(e),
        }
    }

    #[test]
    fn a_whole_variable_text_skips_the_scan_with_the_same_result() {
        let c = ctx();
        let texts = [
            "{{ request.object.metadata.labels.n }}",
            "{{request.object.metadata.name}}",
            "{{- request.object.metadata.name }}",
            "{{ request.object.metadata.missing }}",
            "{{ request.object.metadata.labels }}",
            "{{ request.object.metadata.name || 'x' }}",
            "{{ @ }}",
            "{{}}",
        ];
        for text in texts {
            assert!(whole_variable(text).is_some(), "{text}");
            for mode in [Mode::Strict, Mode::Lenient] {
                assert_eq!(
                    substitute_str(text, &c, mode),
                    scanned(text, &c, mode),
                    "{text}"
                );
            }
        }
        // Braces inside, text around or an escape: the scan decides.
        for text in [
            "{{ request.object.metadata.{n: name} }}",
            " {{ request.object.metadata.name }}",
            "\\{{ request.object.metadata.name }}",
            "{{ a }}{{ b }}",
        ] {
            assert_eq!(whole_variable(text), None, "{text}");
        }
        assert_eq!(
            substitute_str(
                "{{ a }}-{{ request.object.metadata.name }}",
                &c,
                Mode::Lenient
            ),
            Ok(json!("-web"))
        );
    }

    #[test]
    fn resolved_values_are_not_evaluated_again() {
        let c = Context::new(Arc::new(json!({"a": "{{ a }}", "b": "{{ b }}x"})), false);
        assert_eq!(
            substitute_str("{{ a }}", &c, Mode::Strict),
            Ok(json!("{{ a }}"))
        );
        // Embedded values are re-scanned (nested variables resolve inside out) but the scan is bounded.
        assert!(substitute_str("-{{ b }}", &c, Mode::Strict).is_ok());
    }

    #[test]
    fn at_reference_in_patterns() {
        let c = ctx();
        let resource = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let pattern = json!({"spec": {"containers": [{"=(name)": "{{@}}", "image": "{{ request.object.metadata.name }}"}]}});
        assert_eq!(
            substitute_pattern(&pattern, Some(&resource), &c, Mode::Strict),
            Ok(json!({"spec": {"containers": [{"=(name)": "a", "image": "web"}]}}))
        );
        let missing = json!({"spec": {"hostname": "{{ @ }}"}});
        assert!(substitute_pattern(&missing, Some(&resource), &c, Mode::Strict).is_err());
    }

    #[test]
    fn pattern_references() {
        let pattern = json!({"spec": {"containers": [{"resources": {
            "requests": {"memory": "$(<=./../../limits/memory)", "cpu": "$(./../../limits/cpu)"},
            "limits": {"memory": "2Gi", "=(cpu)": 2}}}],
            "hostname": "\\$(literal)"}});
        let out = resolve_references(&pattern).expect("references");
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["requests"]["memory"],
            "<=2Gi"
        );
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["requests"]["cpu"], 2,
            "whole reference keeps the type"
        );
        assert_eq!(out["spec"]["hostname"], "$(literal)");
        assert!(resolve_references(&json!({"a": "$(./../missing)"})).is_err());
    }

    #[test]
    fn missing_keys() {
        let c = ctx();
        let err = substitute_str("{{ request.object.spec }}", &c, Mode::Strict);
        assert!(err.is_err());
        assert_eq!(
            substitute_str("{{ request.object.spec }}", &c, Mode::Lenient),
            Ok(json!(""))
        );
    }

    #[test]
    fn keys_and_paths() {
        let mut c = ctx();
        c.add_path("request.operation", json!("DELETE"));
        c.add_path("cm.data.x", json!("1"));
        let doc = json!({"{{ cm.data.x }}": "{{ request.operation }}"});
        assert_eq!(
            substitute(&doc, &c, Mode::Strict),
            Ok(json!({"1": "DELETE"}))
        );
        assert_eq!(
            c.query("request.object.metadata.name"),
            Ok(json!("web")),
            "merge keeps siblings"
        );
    }

    #[test]
    fn json_path_extension() {
        let c = ctx();
        assert_eq!(
            substitute_str("{{ $.request.object.metadata.name }}", &c, Mode::Strict),
            Ok(json!("web"))
        );
        assert_eq!(
            substitute_str("{{ $.request.object.metadata.labels.* }}", &c, Mode::Strict),
            Ok(json!(3))
        );
        let err =
            substitute_str("{{ $.request.nothing }}", &c, Mode::Strict).expect_err("no match");
        assert!(err.not_found);
        assert!(substitute_str("{{ $.[ }}", &c, Mode::Strict).is_err());
    }

    /// `image_info` as it was before it was made leaner: the oracle of its test.
    fn image_info_before(image: &str) -> Value {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, d.to_string()),
            None => (image, String::new()),
        };
        let (registry, remainder) = match rest.split_once('/') {
            Some((first, tail)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), tail)
            }
            _ => ("docker.io".to_string(), rest),
        };
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p.to_string(), t.to_string()),
            _ => (remainder.to_string(), String::new()),
        };
        let tag = if tag.is_empty() && digest.is_empty() {
            "latest".to_string()
        } else {
            tag
        };
        let name = path.rsplit('/').next().unwrap_or(&path).to_string();
        let mut reference = format!("{registry}/{path}");
        let reference_with_tag = format!("{reference}:{tag}");
        if !tag.is_empty() {
            reference = format!("{reference}:{tag}");
        }
        if !digest.is_empty() {
            reference = format!("{reference}@{digest}");
        }
        let mut info = Map::new();
        for (key, value) in [
            ("registry", registry),
            ("path", path),
            ("name", name),
            ("tag", tag),
            ("digest", digest),
            ("reference", reference),
            ("referenceWithTag", reference_with_tag),
        ] {
            info.insert(key.to_string(), Value::String(value));
        }
        Value::Object(info)
    }

    #[test]
    fn image_info_is_the_same_as_before() {
        for image in [
            "nginx",
            "nginx:1.2",
            "library/nginx:latest",
            "ghcr.io/org/app:1.2",
            "localhost/app",
            "localhost:5000/org/app:2@sha256:abc",
            "registry.example.com:443/a/b/c",
            "app@sha256:def",
            "a/b:c/d",
            "",
            ":",
            "x:@",
        ] {
            assert_eq!(image_info(image), image_info_before(image), "{image:?}");
        }
    }

    #[test]
    fn images() {
        let i = image_info("ghcr.io/org/app:1.2");
        assert_eq!(i["registry"], "ghcr.io");
        assert_eq!(i["path"], "org/app");
        assert_eq!(i["tag"], "1.2");
        let i = image_info("nginx");
        assert_eq!(i["registry"], "docker.io");
        assert_eq!(i["tag"], "latest");
        assert_eq!(
            service_account("system:serviceaccount:ns:sa"),
            ("ns".into(), "sa".into())
        );
    }

    #[test]
    fn variables_are_layered_and_never_copy_the_base_document() {
        let mut c = ctx();
        for i in 0..1000 {
            let mut element = c.clone();
            element.set("element", json!({"i": i}));
            assert_eq!(element.query("element.i"), Ok(json!(i)));
            assert_eq!(
                element.query("request.object.metadata.name"),
                Ok(json!("web"))
            );
            assert_eq!(
                element.query("[element.i, request.operation]"),
                Ok(json!([i, "CREATE"]))
            );
            // Lookups read the layers: the merged document is never built.
            assert!(element.merged.borrow().is_none());
        }
        // A variable shadows the base document's member of the same name; `@` sees the merged document.
        c.set("request", json!({"operation": "DELETE"}));
        assert_eq!(c.query("request.operation"), Ok(json!("DELETE")));
        assert!(c.query("request.object").is_err_and(|e| e.not_found));
        c.set("extra", json!(1));
        assert_eq!(
            c.query("@"),
            Ok(json!({"request": {"operation": "DELETE"}, "extra": 1}))
        );
        assert_eq!(
            c.query("keys(@) | sort(@)"),
            Ok(json!(["extra", "request"]))
        );
    }

    #[test]
    fn queries_see_every_variable_however_many_are_set() {
        // Many variables: each is still found, and the last one set of a name is the one seen.
        let mut c = ctx();
        for i in 0..12 {
            c.set(&format!("v{i}"), json!(i));
        }
        for i in 0..12 {
            assert_eq!(c.query(&format!("v{i}")), Ok(json!(i)));
        }
        c.set("v11", json!("again"));
        assert_eq!(c.query("[v0, v7, v8, v11]"), Ok(json!([0, 7, 8, "again"])));
        assert_eq!(c.query("request.object.metadata.name"), Ok(json!("web")));
    }

    #[test]
    fn foreach_elements_and_selections_borrow_the_request() {
        let base = Arc::new(json!({"request": {"object": {"spec": {
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b"}]
        }}}}));
        let c = Context::new(Arc::clone(&base), false);
        let spec = &base["request"]["object"]["spec"];
        let items = crate::validate::elements(
            &c,
            "request.object.spec.[ephemeralContainers, initContainers, containers][]",
        )
        .expect("elements");
        let names: Vec<&Value> = items.iter().map(|e| &e["name"]).collect();
        assert_eq!(names, [&json!("i"), &json!("a"), &json!("b")]);
        assert!(
            matches!(&items[0], Shared::Ref(v) if std::ptr::eq(*v, &spec["initContainers"][0])),
            "the element is the request's own value"
        );
        let items = crate::validate::elements(&c, "{{ request.object.spec.containers }}")
            .expect("elements");
        assert!(matches!(&items[1], Shared::Ref(v) if std::ptr::eq(*v, &spec["containers"][1])));
        // An element in a context is read like any variable, and its own selections borrow too.
        let mut e = c.clone();
        crate::validate::set_element(&mut e, &items[1], 1, 0);
        assert_eq!(e.query("element.name"), Ok(json!("b")));
        assert_eq!(e.query("elementIndex"), Ok(json!(1)));
        assert!(
            matches!(e.query_cow("element0"), Ok(Cow::Borrowed(v)) if std::ptr::eq(v, &spec["containers"][1]))
        );
        // Computed values are owned, and the same as before.
        assert_eq!(
            e.query_cow("request.object.spec.containers[?name == 'a'].name")
                .map(Cow::into_owned),
            Ok(json!(["a"]))
        );
        let items = crate::validate::elements(&c, "request.object.spec.containers[?name == 'b']")
            .expect("elements");
        assert!(matches!(&items[..], [Shared::Arc(v)] if v["name"] == "b"));
    }

    #[test]
    fn a_bound_is_never_resolved_leniently() {
        let mut c = ctx().until(Some(std::time::Instant::now()));
        c.set("items", json!((0..5000).collect::<Vec<u32>>()));
        // Thousands of steps: the interpreter meets the passed deadline.
        let result = substitute_str("{{ items[?@ > `-1`] | length(@) }}", &c, Mode::Lenient);
        let err = result.expect_err("a passed deadline is an error, even in lenient mode");
        assert!(err.bound, "{err}");
        assert!(err.message.contains("deadline"), "{err}");
    }
}
