//! JMESPath with Kyverno's semantics, over `serde_json::Value`.
//!
//! Kyverno evaluates `{{ }}` variables, `jmesPath:` context entries and foreach `list:` values with its own fork of
//! JMESPath, which differs from the specification in ways policies depend on:
//!
//! * a field lookup on an object that lacks the key is an error, [`JmesError::NotFound`]
//!   (`Unknown key "x" in path`), not `null`; a lookup on `null` or on a non-object is still `null`;
//! * `a || b` evaluates `b` when `a` is false-ish (`null`, `false`, `""`, `[]`, `{}`) **or** raised `NotFound`, which
//!   is why policies write `request.object.metadata.labels.app || ''`; a `NotFound` in `b` makes the result `null`
//!   (Kyverno's `limits.memory || requests.memory` on a container with neither is `null`, not an error);
//! * inside projections (`[*]`, `[]`, `.*`, slices) and filters (`[?...]`), an element whose evaluation raises
//!   `NotFound` is dropped instead of aborting the whole projection;
//! * in a multi-select list or hash (`[a, b]`, `{x: a}`) a member raising `NotFound` is `null`, so the common
//!   `request.object.spec.[initContainers, containers][]` works on Pods without init containers;
//! * about fifty extra functions (strings, regular expressions, wildcards, quantity/duration arithmetic, time,
//!   encoding, YAML/JSON parsing, ...) on top of the 26 standard ones. See [`function_names`].
//!
//! Functions: the 26 of the specification (`abs avg ceil contains ends_with floor join keys length map max max_by
//! merge min min_by not_null reverse sort sort_by starts_with sum to_array to_number to_string type values`, where
//! `sum` is Kyverno's quantity-aware version that rejects an empty array) and Kyverno's:
//!
//! | family | functions |
//! |---|---|
//! | strings | `compare equal_fold replace replace_all to_upper to_lower trim trim_prefix split truncate` |
//! | matching | `regex_match regex_replace_all regex_replace_all_literal pattern_match` (`*` any run, `?` exactly one character) `label_match` |
//! | conversion | `to_boolean parse_json parse_yaml` |
//! | arithmetic | `add sum subtract multiply divide modulo round` on numbers, quantities (`"100Mi"`) and durations (`"1h"`) |
//! | encoding | `base64_decode base64_encode sha256 sha1 md5 x509_decode` |
//! | misc | `path_canonicalize semver_compare image_normalize is_external_url lookup items object_from_lists random` |
//! | time | `time_now time_now_utc time_add time_parse` (Go layouts) `time_since time_to_cron time_utc time_diff time_before time_after time_between time_truncate` |
//!
//! Every function of Kyverno's list is implemented; `x509_decode` gives the fields Go's JSON of an `x509.Certificate`
//! or `x509.CertificateRequest` has that policies read (see `functions/x509.rs`).
//!
//! Everything else follows the JMESPath specification: literals (`` `json` `` and `'raw'`), sub-expressions, pipes,
//! indexes and slices, projections, flatten, filters, comparisons, `&&`, `!`, multi-select lists and hashes, `@` and
//! function calls with `&expr` references, with the specification's type checking of function arguments.
//!
//! Numbers stay integral when integers go in and come out (`length(x)` is `3`, not `3.0`); any integral result of
//! floating-point arithmetic is returned as an integer too, which is what Kyverno's Go implementation prints.
//!
//! The parser is the `jmespath` crate's; the interpreter is this module's own. Evaluation never panics, refuses
//! expressions nested too deeply, and bounds the work one search may do (steps and copied values), so a hostile
//! expression or request cannot take the webhook down.
//!
//! ```
//! use policyctl_jmespath::{search, Expression};
//! use serde_json::json;
//!
//! let data = json!({"metadata": {"name": "web"}});
//! assert_eq!(search("metadata.name", &data).unwrap(), json!("web"));
//! assert!(search("metadata.labels", &data).unwrap_err().is_not_found());
//! assert_eq!(search("metadata.labels.app || 'none'", &data).unwrap(), json!("none"));
//! let expr = Expression::compile("to_upper(metadata.name)").unwrap();
//! assert_eq!(expr.search(&data).unwrap(), json!("WEB"));
//! ```

mod ast;
mod eval;
mod functions;
#[cfg(test)]
mod tests;
pub mod units;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use serde_json::Value;

pub use ast::RootRead;
pub use functions::strings::{has_wildcards, wildcard_match};
pub use functions::{function_names, json_string};

/// Longest expression text accepted.
pub const MAX_EXPRESSION_LEN: usize = 16 * 1024;
/// Most operator characters (`( [ { ! & * . | = < >`) an expression may contain outside quotes and literals; bounds
/// the depth of the parsed tree, hence the parser's and the interpreter's recursion.
pub const MAX_NESTING_TOKENS: usize = 128;
/// How many compiled expressions [`search`] keeps.
const CACHE_CAPACITY: usize = 512;
/// Longer expressions are compiled on every [`search`] rather than cached (they are usually one-off texts with
/// substituted values, and would make the cache's memory grow).
const CACHE_MAX_TEXT: usize = 1024;

/// Errors of compiling or evaluating an expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JmesError {
    /// The text is not a valid expression (syntax, unknown function, wrong number of arguments, too complex).
    #[error("invalid JMESPath expression {expression:?}: {message}")]
    Parse {
        /// The expression text.
        expression: String,
        /// What is wrong with it.
        message: String,
    },
    /// A field lookup on an object that has no such key (Kyverno's semantics; the specification returns null).
    #[error("Unknown key \"{key}\" in path")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// A function was called with arguments of the wrong type or value, or failed.
    #[error("function {name}: {message}")]
    Function {
        /// The function's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The evaluation hit a work budget (steps, values copied, recursion depth).
    #[error("{message}")]
    Budget {
        /// Which budget.
        message: String,
    },
    /// The caller's deadline passed during the evaluation.
    #[error("evaluation stopped: the request deadline passed")]
    Deadline,
    /// Any other evaluation error (invalid slice, resource limits, ...).
    #[error("{message}")]
    Type {
        /// What went wrong.
        message: String,
    },
}

impl JmesError {
    /// Whether this is the error of a missing key ([`JmesError::NotFound`]).
    pub fn is_not_found(&self) -> bool {
        matches!(self, JmesError::NotFound { .. })
    }

    /// Whether the evaluation was stopped by a bound (the deadline, or the step, copy or depth budget) rather than
    /// by the data: such an error must never be read as a value.
    pub fn is_bound(&self) -> bool {
        matches!(self, JmesError::Deadline | JmesError::Budget { .. })
    }
}

/// A compiled expression; `Send + Sync + Clone + Debug`, cheap to clone.
#[derive(Debug, Clone)]
pub struct Expression {
    text: Arc<str>,
    root: Arc<ast::Node>,
    /// Whether the result is made of parts of the searched document ([`ast::borrowable`]), which can be returned
    /// without a copy.
    borrowable: bool,
    /// What the expression may read of the root of the searched document.
    root_reads: Arc<[RootRead]>,
}

impl Expression {
    /// Compile an expression. Unknown functions and wrong argument counts are reported here, not at evaluation.
    pub fn compile(text: &str) -> Result<Expression, JmesError> {
        let parse_error = |message: String| JmesError::Parse {
            expression: text.to_string(),
            message,
        };
        if text.len() > MAX_EXPRESSION_LEN {
            return Err(parse_error(format!(
                "expression longer than {MAX_EXPRESSION_LEN} bytes"
            )));
        }
        if nesting_tokens(text) > MAX_NESTING_TOKENS {
            return Err(parse_error(format!(
                "expression too complex (more than {MAX_NESTING_TOKENS} operators and brackets)"
            )));
        }
        // The parser is not ours: contain any panic it might have on odd input.
        let parsed = std::panic::catch_unwind(|| jmespath::parse(text))
            .map_err(|_| parse_error("the expression could not be parsed".to_string()))?;
        let parsed = parsed.map_err(|e| parse_error(parse_message(&e)))?;
        let root = ast::convert(&parsed, text)?;
        let borrowable = ast::borrowable(&root);
        let mut root_reads = Vec::new();
        ast::root_reads(&root, true, &mut root_reads);
        root_reads.dedup();
        Ok(Expression {
            text: Arc::from(text),
            root: Arc::new(root),
            borrowable,
            root_reads: Arc::from(root_reads),
        })
    }

    /// Evaluate the expression against `data`.
    pub fn search(&self, data: &Value) -> Result<Value, JmesError> {
        eval::Interp::new(None, None).run(&self.root, data)
    }

    /// Evaluate the expression against `data`, giving up with [`JmesError::Deadline`] once `deadline` has passed.
    pub fn search_until(
        &self,
        data: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, JmesError> {
        eval::Interp::new(deadline, None).run(&self.root, data)
    }

    /// Evaluate the expression against a layered document: `base`, whose top-level members are shadowed by those
    /// of `overlay` (the first entry of a name wins). Equivalent to searching the merged document, without building
    /// it: a lookup costs nothing more than on `base` alone, whatever the size of either.
    pub fn search_layered(
        &self,
        overlay: &[(&str, &Value)],
        base: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, JmesError> {
        let scope = eval::RootScope {
            root: base,
            overlay,
        };
        eval::Interp::new(deadline, Some(scope)).run(&self.root, base)
    }

    /// [`Expression::search_layered`] without copying what the document already holds: an expression that only
    /// selects (fields, indexes, multi-select lists, flattens and projections: `request.object.spec.containers`,
    /// `request.object.spec.[initContainers, containers][]`) gives the document's own values, borrowed (a list of
    /// them when the result is a list the expression built); any other expression gives its computed value, owned.
    /// The value is the same either way.
    pub fn search_layered_parts<'d>(
        &self,
        overlay: &[(&str, &'d Value)],
        base: &'d Value,
        deadline: Option<Instant>,
    ) -> Result<Parts<'d>, JmesError> {
        if self.borrowable {
            let layers = eval::Layers {
                root: base,
                overlay,
            };
            if let Some(found) = eval::borrow(&self.root, &layers, base) {
                return found.map(|found| match found {
                    eval::Refs::One(v) => Parts::Value(Cow::Borrowed(v)),
                    eval::Refs::Many(list) => Parts::List(list),
                });
            }
        }
        self.search_layered(overlay, base, deadline)
            .map(|v| Parts::Value(Cow::Owned(v)))
    }

    /// [`Expression::search_layered_parts`] as one value: borrowed when the result is a part of the document, owned
    /// otherwise (a list of parts is copied into a new list).
    pub fn search_layered_cow<'d>(
        &self,
        overlay: &[(&str, &'d Value)],
        base: &'d Value,
        deadline: Option<Instant>,
    ) -> Result<Cow<'d, Value>, JmesError> {
        self.search_layered_parts(overlay, base, deadline)
            .map(Parts::into_value)
    }

    /// Every read the expression may make of the root of the document it searches (a superset), e.g.
    /// `request.object.spec.containers[*].image || images` reads `request`'s `object` and `images` whole. A
    /// caller can tell from it that some members of the root are never looked at.
    pub fn root_reads(&self) -> &[RootRead] {
        &self.root_reads
    }

    /// The expression's source text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// Compile `text` (through a small, bounded, thread-safe cache of compiled expressions) and evaluate it against
/// `data`.
pub fn search(text: &str, data: &Value) -> Result<Value, JmesError> {
    cached(text)?.search(data)
}

/// [`search`] with a deadline.
pub fn search_until(
    text: &str,
    data: &Value,
    deadline: Option<Instant>,
) -> Result<Value, JmesError> {
    cached(text)?.search_until(data, deadline)
}

/// The result of [`Expression::search_layered_parts`].
#[derive(Debug, Clone, PartialEq)]
pub enum Parts<'d> {
    /// The value: borrowed from the document, or computed.
    Value(Cow<'d, Value>),
    /// A list the expression built, of values borrowed from the document.
    List(Vec<&'d Value>),
}

impl<'d> Parts<'d> {
    /// The result as one value (a list of parts is copied into a new list).
    pub fn into_value(self) -> Cow<'d, Value> {
        match self {
            Parts::Value(v) => v,
            Parts::List(list) => Cow::Owned(Value::Array(list.into_iter().cloned().collect())),
        }
    }
}

/// The compiled form of `text`, through the cache [`search`] uses.
pub fn compile_cached(text: &str) -> Result<Expression, JmesError> {
    cached(text)
}

/// [`Expression::search_layered_parts`] of `text`, compiled through the cache.
pub fn search_layered_parts<'d>(
    text: &str,
    overlay: &[(&str, &'d Value)],
    base: &'d Value,
    deadline: Option<Instant>,
) -> Result<Parts<'d>, JmesError> {
    cached(text)?.search_layered_parts(overlay, base, deadline)
}

/// [`Expression::search_layered_cow`] of `text`, compiled through the cache.
pub fn search_layered_cow<'d>(
    text: &str,
    overlay: &[(&str, &'d Value)],
    base: &'d Value,
    deadline: Option<Instant>,
) -> Result<Cow<'d, Value>, JmesError> {
    cached(text)?.search_layered_cow(overlay, base, deadline)
}

/// [`Expression::search_layered`] of `text`, compiled through the cache.
pub fn search_layered(
    text: &str,
    overlay: &[(&str, &Value)],
    base: &Value,
    deadline: Option<Instant>,
) -> Result<Value, JmesError> {
    cached(text)?.search_layered(overlay, base, deadline)
}

/// The compiled expressions by text. foldhash (seeded per process) instead of SipHash: the lookup runs for every
/// query, and the texts are the policies' own.
type ExpressionCache = HashMap<Arc<str>, Expression, foldhash::fast::RandomState>;

fn cache() -> &'static RwLock<ExpressionCache> {
    static CACHE: OnceLock<RwLock<ExpressionCache>> = OnceLock::new();
    CACHE.get_or_init(|| RwLock::new(ExpressionCache::default()))
}

/// The compiled form of `text`, from the cache when possible. When the cache is full it is emptied: policies use a
/// bounded set of expressions, so it refills with the ones in use.
fn cached(text: &str) -> Result<Expression, JmesError> {
    if let Ok(map) = cache().read() {
        if let Some(found) = map.get(text) {
            return Ok(found.clone());
        }
    }
    let compiled = Expression::compile(text)?;
    if text.len() > CACHE_MAX_TEXT {
        return Ok(compiled);
    }
    if let Ok(mut map) = cache().write() {
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(compiled.text.clone(), compiled.clone());
    }
    Ok(compiled)
}

/// Count the tokens that make the parser recurse, outside quoted strings and literals.
fn nesting_tokens(text: &str) -> usize {
    let mut count = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            '(' | '[' | '{' | '!' | '&' | '*' | '.' | '|' | '=' | '<' | '>' => count += 1,
            _ => {}
        }
    }
    count
}

/// The parser's message without its multi-line caret drawing.
fn parse_message(error: &jmespath::JmespathError) -> String {
    let reason = match &error.reason {
        jmespath::ErrorReason::Parse(m) => m.clone(),
        other => other.to_string(),
    };
    let reason = reason
        .replace("Unexpected nud token", "unexpected token")
        .replace("found Eof", "found the end of the expression");
    format!("{reason} (at offset {})", error.offset)
}
