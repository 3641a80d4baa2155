//! Kyverno `ClusterPolicy` / `Policy` (`kyverno.io/v1`, `v2beta1`): validate and mutate rules with Kyverno's
//! semantics (see `../shared/reference/kyverno.md`).
//!
//! Each Kyverno policy becomes one [`KyvernoPolicy`] named after `metadata.name`. Rules run in Kyverno's order:
//! match / exclude → context entries → preconditions → the rule body. Rules on Pods are also generated for Pod
//! controllers (autogen, [`autogen`]).
//!
//! At admission:
//! - a failing validate rule whose action is `Enforce` denies (`<rule>: <message>`); `Audit` is recorded, and also
//!   returned as a warning when `emitWarning` is set. Actions follow rule `failureActionOverrides` →
//!   rule `failureAction` → spec `validationFailureActionOverrides` → spec `validationFailureAction` (default Audit);
//! - a rule error follows the policy's failure policy (`webhookConfiguration.failurePolicy`, or the deprecated
//!   `spec.failurePolicy`; default Fail);
//! - mutate rules run in order, each on the result of the one before;
//! - rule types policyctl does not implement (`validate.cel`, `validate.podSecurity`, `validate.manifests`,
//!   `generate`, `verifyImages`, `mutate.targets`, `imageRegistry` / `globalReference` context entries, CEL
//!   preconditions) load with a warning and are skipped at admission.
//! - Loading is strict: a field Kyverno's schema does not have is an error with a "did you mean" ([`strict`]), and
//!   every `{{ }}` variable and `list` / `jmesPath` expression of a rule policyctl runs is compiled (unbalanced
//!   braces, syntax, unknown functions, argument counts are errors). A kind no built-in API has is a warning.
//! - `configMap` and `apiCall` (urlPath, GET) context entries read the cluster context; without one the rule errors
//!   with "needs cluster context".
//!
//! Variables: `{{ }}` is Kyverno-flavoured JMESPath ([`crate::jmespath`]); see [`variables`].
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

// The core crate's modules under their usual names, so paths read `crate::policy::…` as before the split.
use policyctl_core::{admission, engine, policy, select};
use policyctl_jmespath as jmespath;

pub mod autogen;
pub mod cel;
pub mod conditions;
pub mod eval;
pub mod exception;
pub mod matching;
pub mod mutate;
pub mod pattern;
pub mod pss;
pub mod result;
pub mod scalar;
pub mod spec;
pub mod strict;
pub mod validate;
pub mod variables;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::admission::Review;
use crate::engine::{
    Built, Engine, EngineInput, LoadOptions, UnsupportedRules, UNSUPPORTED_RULES_ANNOTATION,
};
use crate::policy::source::{parse_value, Document};
use crate::policy::{
    Action, ClusterContext, EnforcementPoint, EvalContext, EvalError, Evaluation, FailurePolicy,
    LoadError, Mutation as PolicyMutation, Policy, PolicyError, PolicyInfo, RuleResult, Violation,
};
use crate::select::{OpSet, Scope};
use eval::{check_conditions, load_context, Env, Lookups, Mocks};
use exception::PolicyException;
use matching::{MatchInput, UserContext};
pub use result::{PolicyResponse, RuleResponse, RuleStatus, RuleType};
use scalar::wildcard;
use spec::{ActionOverride, PolicyDocument, Rule};
use variables::{Base, Context, Mode};

/// The Kyverno engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct KyvernoEngine;

/// Whether an apiVersion/kind is a Kyverno policy this engine loads.
pub fn is_kyverno_policy(api_version: &str, kind: &str) -> bool {
    matches!(api_version, "kyverno.io/v1" | "kyverno.io/v2beta1")
        && matches!(kind, "ClusterPolicy" | "Policy")
}

impl Engine for KyvernoEngine {
    fn name(&self) -> &'static str {
        "kyverno"
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_kyverno_policy(api_version, kind) || exception::is_policy_exception(api_version, kind)
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "kyverno.io/v1 ClusterPolicy",
            "kyverno.io/v1 Policy",
            "kyverno.io/v2beta1 ClusterPolicy",
            "kyverno.io/v2beta1 Policy",
            "kyverno.io/v2 PolicyException",
            "kyverno.io/v2beta1 PolicyException",
        ]
    }

    fn build(&self, input: EngineInput, options: &LoadOptions) -> Built {
        let mut built = Built::default();
        let (exception_docs, policy_docs): (Vec<&Document>, Vec<&Document>) = input
            .documents
            .iter()
            .partition(|d| exception::is_policy_exception(&d.api_version, &d.kind));
        let mut exceptions = Vec::new();
        for doc in exception_docs {
            match PolicyException::from_document(doc) {
                Ok(e) => exceptions.push(Arc::new(e)),
                Err(errors) => built.errors.extend(errors),
            }
        }
        let mut named = vec![false; exceptions.len()];
        for doc in policy_docs {
            let (policy, errors, warnings) = KyvernoPolicy::load(doc);
            built.errors.extend(errors);
            built.warnings.extend(warnings);
            if let Some(policy) = policy {
                let refused = policy.unsupported_enforcement_errors(doc, options.unsupported_rules);
                if !refused.is_empty() {
                    built.errors.extend(refused);
                    continue;
                }
                let policy = policy.with_exceptions(&exceptions);
                for (i, e) in exceptions.iter().enumerate() {
                    named[i] |= e.names_policy(&policy.exception_key());
                }
                built.policies.push(Arc::new(policy));
            }
        }
        for (e, named) in exceptions.iter().zip(named) {
            if !named {
                built.warnings.push(LoadError::new(
                    crate::policy::SourceRef::file(&e.name),
                    format!(
                        "PolicyException {} names no policy of this set; it exempts nothing",
                        e.name
                    ),
                ));
            }
        }
        built
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The rule.
    pub spec: Rule,
    /// Why policyctl cannot run it, if it cannot.
    pub unsupported: Option<String>,
    /// The compiled `validate.cel`, when the rule has one.
    pub cel: Option<Arc<cel::CelValidation>>,
    /// The compiled `celPreconditions`, when the rule has them.
    pub cel_preconditions: Option<Arc<cel::CelPreconditions>>,
}

impl CompiledRule {
    fn is_validate(&self) -> bool {
        self.spec.validate.is_some()
    }
    fn is_mutate(&self) -> bool {
        self.spec.mutate.is_some()
    }
}

/// One Kyverno policy.
#[derive(Debug, Clone)]
pub struct KyvernoPolicy {
    info: PolicyInfo,
    namespace: Option<String>,
    rules: Vec<CompiledRule>,
    enforce: bool,
    overrides: Vec<ActionOverride>,
    emit_warning: bool,
    apply_one: bool,
    admission: bool,
    /// `spec.background`: audits evaluate the policy.
    background: bool,
    scored: bool,
    scope: Scope,
    /// The PolicyExceptions that name this policy.
    exceptions: Vec<Arc<PolicyException>>,
}

/// Which rules [`KyvernoPolicy::apply`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Mutate rules, then validate rules on the mutated resource (the `kyverno test` / `apply` flow).
    All,
    /// Validate rules only.
    Validate,
    /// Mutate rules only.
    Mutate,
}

/// Everything [`KyvernoPolicy::apply`] needs besides the review.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'a> {
    /// The requester (username, groups, roles, cluster roles).
    pub user: &'a UserContext,
    /// Labels of the request's namespace.
    pub namespace_labels: Option<&'a Map<String, Value>>,
    /// Mocks (testing) or the cluster (serving).
    pub lookups: Lookups<'a>,
    /// Which rules run.
    pub part: Part,
    /// The request's deadline: rules, foreach elements and expressions stop once it has passed.
    pub deadline: Option<std::time::Instant>,
}

fn is_enforce(action: &str) -> bool {
    action.eq_ignore_ascii_case("enforce")
}

fn unsupported_reason(rule: &Rule) -> Option<String> {
    if let Some(v) = &rule.validate {
        if v.manifests.is_some() {
            return Some("validate.manifests rules are not supported".into());
        }
    }
    if rule.generate.is_some() {
        return Some("generate rules are not supported".into());
    }
    if rule.verify_images.is_some() {
        return Some("verifyImages rules are not supported".into());
    }
    if let Some(m) = &rule.mutate {
        if m.targets.is_some() {
            return Some("mutate.targets (mutate existing resources) is not supported".into());
        }
    }
    let mut contexts: Vec<&spec::ContextEntry> = rule.context.iter().collect();
    if let Some(list) = rule.validate.as_ref().and_then(|v| v.foreach.as_ref()) {
        contexts.extend(list.iter().flat_map(|f| f.context.iter()));
    }
    if let Some(list) = rule.mutate.as_ref().and_then(|m| m.foreach.as_ref()) {
        contexts.extend(list.iter().flat_map(|f| f.context.iter()));
    }
    for c in contexts {
        if c.image_registry.is_some() {
            return Some(format!(
                "context entry {}: imageRegistry is not supported",
                c.name
            ));
        }
        if c.global_reference.is_some() {
            return Some(format!(
                "context entry {}: globalReference is not supported",
                c.name
            ));
        }
        if c.api_call.as_ref().is_some_and(|a| a.service.is_some()) {
            return Some(format!(
                "context entry {}: apiCall.service (external calls) is not supported",
                c.name
            ));
        }
    }
    None
}

/// Compiles a rule's `validate.cel` and `celPreconditions`. An expression that does not compile, or a `cel` block of
/// the wrong shape, is a load error at its field (`{rule}.validate.cel.expressions[0].expression`); a feature
/// policyctl does not implement (parameter resources) makes the rule unsupported.
#[allow(clippy::type_complexity)]
fn compile_cel(
    doc: &Document,
    rule_field: &str,
    rule: &Rule,
    unsupported: &mut Option<String>,
    errors: &mut Vec<LoadError>,
) -> (
    Option<Arc<cel::CelValidation>>,
    Option<Arc<cel::CelPreconditions>>,
) {
    if unsupported.is_some() {
        return (None, None);
    }
    let mut failed = |e: cel::CelRuleError| match e {
        cel::CelRuleError::Unsupported(reason) => *unsupported = Some(reason),
        cel::CelRuleError::Spec { field, message } => {
            errors.push(doc.error_at(format!("{rule_field}.{field}"), message))
        }
        cel::CelRuleError::Compile { field, source } => errors.push(doc.error_at(
            format!("{rule_field}.{field}"),
            format!("CEL expression does not compile: {source}"),
        )),
        cel::CelRuleError::Lint { field, source } => errors.push(doc.error_at(
            format!("{rule_field}.{field}"),
            format!("CEL expression is invalid: {source}"),
        )),
    };
    let pre = match rule
        .cel_preconditions
        .as_ref()
        .map(cel::CelPreconditions::compile)
    {
        Some(Ok(p)) => Some(Arc::new(p)),
        Some(Err(e)) => {
            failed(e);
            return (None, None);
        }
        None => None,
    };
    let validation = rule.validate.as_ref().and_then(|v| {
        v.cel
            .as_ref()
            .map(|raw| cel::CelValidation::compile(raw, v.message.as_deref()))
    });
    let validation = match validation {
        Some(Ok(v)) => Some(Arc::new(v)),
        Some(Err(e)) => {
            failed(e);
            return (None, None);
        }
        None => None,
    };
    (validation, pre)
}

/// Every expression of a rule, compiled: `{{ }}` variables in strings and keys (balanced braces, JMESPath that
/// parses, known functions with the right number of arguments; `$…` is JSONPath) and the brace-less `list` /
/// `jmesPath` fields. Each problem is `(field path, message)`.
fn expression_errors(path: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => check_text(path, s, out),
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                expression_errors(&format!("{path}[{i}]"), v, out);
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                let inner = format!("{path}.{k}");
                check_text(&inner, k, out);
                if (k == "list" || k == "jmesPath")
                    && !variables::has_variables(v.as_str().unwrap_or(""))
                {
                    if let Some(text) = v.as_str() {
                        if let Err(e) = compile_expression(text.trim()) {
                            out.push((inner.clone(), e.to_string()));
                        }
                    }
                    continue;
                }
                expression_errors(&inner, v, out);
            }
        }
        _ => {}
    }
}

/// Operator names of conditions, as Kyverno documents them (for "did you mean").
const OPERATORS: &[&str] = &[
    "Equals",
    "NotEquals",
    "AnyIn",
    "AllIn",
    "AnyNotIn",
    "AllNotIn",
    "In",
    "NotIn",
    "GreaterThan",
    "GreaterThanOrEquals",
    "LessThan",
    "LessThanOrEquals",
    "DurationGreaterThan",
    "DurationGreaterThanOrEquals",
    "DurationLessThan",
    "DurationLessThanOrEquals",
];

/// Every condition of a rule (`preconditions`, `deny.conditions`, in `foreach` entries too) has an operator Kyverno
/// knows: an unknown one would make the rule error on every request it matches.
fn operator_errors(path: &str, rule: &Value, out: &mut Vec<(String, String)>) {
    fn conditions(path: &str, value: Option<&Value>, out: &mut Vec<(String, String)>) {
        let Some(value) = value else {
            return;
        };
        let lists: Vec<(String, &Value)> = match value {
            Value::Array(_) => vec![(path.to_string(), value)],
            Value::Object(m) => ["any", "all"]
                .iter()
                .filter_map(|k| m.get(*k).map(|v| (format!("{path}.{k}"), v)))
                .collect(),
            _ => Vec::new(),
        };
        for (list_path, list) in lists {
            for (i, c) in list.as_array().into_iter().flatten().enumerate() {
                let Some(op) = c.get("operator") else {
                    let misspelled = c.as_object().is_some_and(|m| {
                        m.keys()
                            .any(|k| !matches!(k.as_str(), "key" | "value" | "message"))
                    });
                    // A misspelled `operator` is already reported by the strict field check.
                    if misspelled {
                        continue;
                    }
                    out.push((
                        format!("{list_path}[{i}]"),
                        "a condition needs an operator".into(),
                    ));
                    continue;
                };
                let name = op.as_str().unwrap_or("");
                if conditions::Operator::parse(name).is_none() {
                    let hint = crate::policy::strict::suggest(name, OPERATORS.iter().copied())
                        .map(|s| format!(" (did you mean {s:?}?)"))
                        .unwrap_or_default();
                    out.push((
                        format!("{list_path}[{i}].operator"),
                        format!("unknown condition operator {op}{hint}"),
                    ));
                }
            }
        }
    }
    fn foreach(path: &str, list: Option<&Value>, out: &mut Vec<(String, String)>) {
        for (i, entry) in list
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{path}[{i}]");
            conditions(
                &format!("{at}.preconditions"),
                entry.get("preconditions"),
                out,
            );
            conditions(
                &format!("{at}.deny.conditions"),
                entry.pointer("/deny/conditions"),
                out,
            );
            foreach(&format!("{at}.foreach"), entry.get("foreach"), out);
        }
    }
    conditions(
        &format!("{path}.preconditions"),
        rule.get("preconditions"),
        out,
    );
    conditions(
        &format!("{path}.validate.deny.conditions"),
        rule.pointer("/validate/deny/conditions"),
        out,
    );
    foreach(
        &format!("{path}.validate.foreach"),
        rule.pointer("/validate/foreach"),
        out,
    );
    foreach(
        &format!("{path}.mutate.foreach"),
        rule.pointer("/mutate/foreach"),
        out,
    );
}

/// The `{{ }}` variables of one string: balanced, and each compiles.
fn check_text(path: &str, text: &str, out: &mut Vec<(String, String)>) {
    if !text.contains("{{") && !text.contains("}}") {
        return;
    }
    if let Some(problem) = variables::unbalanced(text) {
        out.push((path.to_string(), problem));
        return;
    }
    for e in variables::expressions_in(text) {
        if let Err(e) = compile_expression(&e) {
            out.push((path.to_string(), e.to_string()));
        }
    }
}

/// An expression of a policy that does not compile (reported at load with the field that holds it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpressionError {
    /// A JSONPath (`$...`) expression.
    #[error("JSONPath {expression:?} does not compile: {source}")]
    JsonPath {
        /// The expression text.
        expression: String,
        /// The parser's error.
        #[source]
        source: jsonpath_rust::parser::errors::JsonPathError,
    },
    /// A JMESPath expression.
    #[error("expression {expression:?} does not compile: {source}")]
    JmesPath {
        /// The expression text.
        expression: String,
        /// The compiler's error.
        #[source]
        source: crate::jmespath::JmesError,
    },
}

/// Compile one expression: JMESPath, or JSONPath when it starts with `$`.
fn compile_expression(expr: &str) -> Result<(), ExpressionError> {
    if expr.is_empty() || expr == "@" {
        return Ok(());
    }
    if expr.starts_with('$') {
        use jsonpath_rust::JsonPath;
        return match Value::Null.query(expr) {
            Ok(_) => Ok(()),
            Err(source) => Err(ExpressionError::JsonPath {
                expression: expr.to_string(),
                source,
            }),
        };
    }
    crate::jmespath::Expression::compile(expr)
        .map(|_| ())
        .map_err(|source| ExpressionError::JmesPath {
            expression: expr.to_string(),
            source,
        })
}

/// Strict field validation of a policy document against Kyverno's schema ([`strict`]): the document without its
/// rules, then each rule as written (autogen rules are derived from them).
fn strict_errors(doc: &Document) -> Vec<LoadError> {
    use crate::policy::strict::check;
    let mut errors = check(doc, "", &doc.value, &strict::POLICY);
    if let Some(rules) = doc.value.pointer("/spec/rules").and_then(Value::as_array) {
        for (i, rule) in rules.iter().enumerate() {
            let path = match rule.get("name").and_then(Value::as_str) {
                Some(n) => format!("spec.rules[{n}]"),
                None => format!("spec.rules[{i}]"),
            };
            errors.extend(check(doc, &path, rule, &strict::RULE));
        }
    }
    errors
}

/// A warning for each kind in a rule's `match` / `exclude` that no built-in API has (`Pdo`): such a selector only
/// matches if a CRD defines the kind.
fn kind_warnings(doc: &Document, field: &str, rule: &Rule) -> Vec<LoadError> {
    let mut out = Vec::new();
    let blocks = std::iter::once(("match", &rule.matches))
        .chain(rule.exclude.as_ref().map(|e| ("exclude", e)));
    for (name, block) in blocks {
        let mut descriptions: Vec<(String, &spec::ResourceDescription)> = Vec::new();
        for (list, filters) in [("any", &block.any), ("all", &block.all)] {
            for (i, f) in filters.iter().enumerate() {
                descriptions.push((format!("{name}.{list}[{i}].resources"), &f.resources));
            }
        }
        if let Some(r) = &block.resources {
            descriptions.push((format!("{name}.resources"), r));
        }
        for (path, description) in descriptions {
            for (i, kind) in description.kinds.iter().enumerate() {
                let sel = matching::parse_kind(kind);
                let group = (sel.group() != "*").then_some(sel.group());
                out.extend(crate::policy::kinds::unknown_kind_warning(
                    doc,
                    format!("{field}.{path}.kinds[{i}]"),
                    group,
                    sel.kind(),
                ));
            }
        }
    }
    out
}

fn scope_for(rules: &[CompiledRule]) -> Scope {
    let mut scope = Scope::default();
    for rule in rules {
        let kinds = matching::kinds(&rule.spec.matches);
        if kinds.is_empty() {
            return Scope::any();
        }
        let ops = match matching::operations(&rule.spec.matches) {
            Some(list) => list
                .iter()
                .filter_map(|o| OpSet::parse(o))
                .fold(OpSet::NONE, OpSet::union),
            None => OpSet::ALL,
        };
        for k in kinds {
            let sel = matching::parse_kind(&k);
            let kind = sel.exact_kind().filter(|_| sel.subresource().is_none());
            scope.add(sel.exact_group(), kind, ops);
        }
    }
    scope
}

impl KyvernoPolicy {
    /// Compile a policy document; returns the policy and load warnings (unsupported rules, kinds no built-in API
    /// has), or every error found (unknown fields, expressions that do not compile, ...).
    pub fn from_document(
        doc: &Document,
    ) -> Result<(KyvernoPolicy, Vec<LoadError>), Vec<LoadError>> {
        let (policy, errors, mut warnings) = Self::load(doc);
        // Offline: kinds of custom groups need the cluster's CRDs to be judged (the loader does that when serving).
        crate::policy::kinds::drop_cluster_only(&mut warnings);
        match policy {
            Some(policy) => Ok((policy, warnings)),
            None => Err(errors),
        }
    }

    /// Compile a policy document: the policy when there is no error, the errors, and the warnings (reported whether
    /// the policy loads or not).
    pub fn load(doc: &Document) -> (Option<KyvernoPolicy>, Vec<LoadError>, Vec<LoadError>) {
        let mut errors = strict_errors(doc);
        let mut warnings = Vec::new();
        match Self::compile(doc, &mut warnings, &mut errors) {
            Ok(policy) if errors.is_empty() => (Some(policy), errors, warnings),
            Ok(_) => (None, errors, warnings),
            Err(e) => {
                // A field error the strict check already explains (an unknown field) is not repeated.
                if !errors.iter().any(|s| s.field == e.field) {
                    errors.push(e);
                }
                (None, errors, warnings)
            }
        }
    }

    /// Compile a document: a fatal problem is the `Err`; problems that do not stop the compilation (each
    /// expression that does not compile) are added to `errors`.
    fn compile(
        doc: &Document,
        warnings: &mut Vec<LoadError>,
        errors: &mut Vec<LoadError>,
    ) -> Result<KyvernoPolicy, LoadError> {
        let parsed: PolicyDocument = doc.parse()?;
        if parsed.metadata.name.is_empty() {
            return Err(doc.error_at("metadata.name", "a Kyverno policy needs a name"));
        }
        let expanded = autogen::expand(&parsed.metadata.annotations, &parsed.spec.rules);
        let mut rules = Vec::with_capacity(expanded.len());
        let mut names = BTreeMap::new();
        for (i, raw) in expanded.iter().enumerate() {
            let field = match raw.get("name").and_then(Value::as_str) {
                Some(n) => format!("spec.rules[{n}]"),
                None => format!("spec.rules[{i}]"),
            };
            let mut rule: Rule = parse_value(raw).map_err(|(path, message)| {
                doc.error_at(
                    if path.is_empty() || path == "." {
                        field.clone()
                    } else {
                        format!("{field}.{path}")
                    },
                    message,
                )
            })?;
            if names.insert(rule.name.clone(), ()).is_some() {
                return Err(doc.error_at(field, format!("duplicate rule name {:?}", rule.name)));
            }
            let kinds = [
                rule.validate.is_some(),
                rule.mutate.is_some(),
                rule.generate.is_some(),
                rule.verify_images.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(doc.error_at(
                    field,
                    "a rule needs exactly one of validate, mutate, generate, verifyImages",
                ));
            }
            if let Some(v) = &mut rule.validate {
                if let Some(raw) = &v.pod_security {
                    match pss::PodSecurity::compile(raw) {
                        Ok(p) => v.pod_security_compiled = Some(Arc::new(p)),
                        Err((path, message)) => {
                            let at = if path.is_empty() {
                                format!("{field}.validate.podSecurity")
                            } else {
                                format!("{field}.validate.podSecurity.{path}")
                            };
                            errors.push(doc.error_at(at, message));
                        }
                    }
                }
                v.static_patterns = !v
                    .pattern
                    .as_ref()
                    .is_some_and(variables::value_has_variables)
                    && !v
                        .any_pattern
                        .as_ref()
                        .is_some_and(variables::value_has_variables);
                v.compiled = Some(Arc::new(
                    validate::CompiledBody::new(
                        v.pattern.as_ref(),
                        v.any_pattern.as_ref(),
                        v.deny.as_ref(),
                        None,
                    )
                    .for_rule(&rule.name),
                ));
                if let Some(list) = v.foreach.as_mut() {
                    validate::CompiledBody::compile_foreach(list);
                }
            }
            if let Some(list) = rule.mutate.as_mut().and_then(|m| m.foreach.as_mut()) {
                mutate::compile_foreach(list);
            }
            rule.preconditions_compiled = rule
                .preconditions
                .as_ref()
                .map(|p| Arc::new(eval::Conditions::new(p)));
            rule.matches.prepare();
            if let Some(e) = &mut rule.exclude {
                e.prepare();
            }
            if !autogen::is_autogen(&rule.name) {
                warnings.extend(kind_warnings(doc, &field, &rule));
            }
            let mut unsupported = unsupported_reason(&rule);
            // A rule policyctl runs has every expression compiled now: one that does not compile would otherwise
            // only fail (or be skipped) at admission. Unsupported rules are skipped whole, with a warning.
            if unsupported.is_none() && !autogen::is_autogen(&rule.name) {
                let mut problems = Vec::new();
                expression_errors(&field, raw, &mut problems);
                operator_errors(&field, raw, &mut problems);
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(path, message)| doc.error_at(path, message)),
                );
            }
            let (cel, cel_preconditions) = if autogen::is_autogen(&rule.name) {
                // The rule it was generated from reports the same errors once.
                compile_cel(doc, &field, &rule, &mut unsupported, &mut Vec::new())
            } else {
                compile_cel(doc, &field, &rule, &mut unsupported, errors)
            };
            if let Some(reason) = &unsupported {
                if !autogen::is_autogen(&rule.name) {
                    warnings.push(doc.error_at(
                        field.clone(),
                        format!("unsupported, skipped at admission: {reason}"),
                    ));
                }
            }
            for c in &rule.context {
                if c.variable.is_none()
                    && c.config_map.is_none()
                    && c.api_call.is_none()
                    && c.image_registry.is_none()
                    && c.global_reference.is_none()
                {
                    return Err(doc.error_at(
                        format!("{field}.context[{}]", c.name),
                        "unknown context entry type",
                    ));
                }
            }
            rules.push(CompiledRule {
                spec: rule,
                unsupported,
                cel,
                cel_preconditions,
            });
        }
        let spec = &parsed.spec;
        let failure_policy = spec
            .webhook_configuration
            .as_ref()
            .and_then(|w| w.failure_policy.as_deref())
            .or(spec.failure_policy.as_deref())
            .map(|f| f.parse::<FailurePolicy>())
            .transpose()
            .map_err(|e| doc.error_at("spec.webhookConfiguration.failurePolicy", e))?
            .unwrap_or(FailurePolicy::Fail);
        let namespace = (doc.kind == "Policy").then(|| {
            parsed
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into())
        });
        let scope = scope_for(&rules);
        let policy = KyvernoPolicy {
            info: PolicyInfo {
                name: parsed.metadata.name.clone(),
                kind: doc.kind.clone(),
                engine: "kyverno",
                source: doc.source.clone(),
                failure_policy: Some(failure_policy),
                annotations: parsed.metadata.annotations.clone(),
            },
            namespace,
            enforce: spec
                .validation_failure_action
                .as_deref()
                .is_some_and(is_enforce),
            overrides: spec.validation_failure_action_overrides.clone(),
            emit_warning: spec.emit_warning.unwrap_or(false),
            apply_one: spec
                .apply_rules
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("one")),
            admission: spec.admission.unwrap_or(true),
            background: spec.background.unwrap_or(true),
            scored: parsed
                .metadata
                .annotations
                .get("policies.kyverno.io/scored")
                .is_none_or(|s| s != "false"),
            rules,
            scope,
            exceptions: Vec::new(),
        };
        Ok(policy)
    }

    /// The same policy with the exceptions of `all` that name it.
    pub fn with_exceptions(mut self, all: &[Arc<PolicyException>]) -> Self {
        let key = self.exception_key();
        self.exceptions = all
            .iter()
            .filter(|e| e.names_policy(&key))
            .cloned()
            .collect();
        self
    }

    /// How PolicyExceptions name this policy: `name`, or `namespace/name` for a namespaced Policy.
    pub fn exception_key(&self) -> String {
        match (&self.namespace, self.info.kind.as_str()) {
            (Some(ns), "Policy") => format!("{ns}/{}", self.info.name),
            _ => self.info.name.clone(),
        }
    }

    /// The compiled rules (autogen rules included).
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Whether failures count as `warn` (annotation `policies.kyverno.io/scored: "false"`).
    pub fn scored(&self) -> bool {
        self.scored
    }

    /// Whether a rule can enforce anywhere: a validate rule whose action (its own, an override's, or the policy's) is
    /// `Enforce` for some namespace, or a verifyImages rule of an enforcing policy (or with `failureAction: Enforce`).
    fn may_enforce(&self, rule: &Rule) -> bool {
        let policy_level = || self.enforce || self.overrides.iter().any(|o| is_enforce(&o.action));
        if let Some(v) = &rule.validate {
            if v.failure_action_overrides
                .iter()
                .any(|o| is_enforce(&o.action))
            {
                return true;
            }
            return match &v.failure_action {
                Some(a) => is_enforce(a),
                None => policy_level(),
            };
        }
        if let Some(list) = rule.verify_images.as_ref().and_then(Value::as_array) {
            let own: Vec<&str> = list
                .iter()
                .filter_map(|entry| entry.get("failureAction").and_then(Value::as_str))
                .collect();
            return if own.len() == list.len() && !list.is_empty() {
                own.iter().any(|a| is_enforce(a))
            } else {
                policy_level() || own.iter().any(|a| is_enforce(a))
            };
        }
        false
    }

    /// The load errors for rules policyctl does not run in a policy that enforces them: skipped at admission they
    /// would admit what the policy is there to deny. None when `mode` is [`UnsupportedRules::Report`] or the policy
    /// opts out with the `policyctl.io/unsupported-rules: skip` annotation.
    pub fn unsupported_enforcement_errors(
        &self,
        doc: &Document,
        mode: UnsupportedRules,
    ) -> Vec<LoadError> {
        if mode == UnsupportedRules::Report {
            return Vec::new();
        }
        let opted_out = self
            .info
            .annotations
            .get(UNSUPPORTED_RULES_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("skip"));
        if opted_out {
            return Vec::new();
        }
        self.rules
            .iter()
            .filter(|r| !autogen::is_autogen(&r.spec.name))
            .filter_map(|r| {
                let reason = r.unsupported.as_ref()?;
                if !self.may_enforce(&r.spec) {
                    return None;
                }
                Some(doc.error_at(
                    format!("spec.rules[{}]", r.spec.name),
                    format!(
                        "policyctl does not run this rule ({reason}) and the policy enforces it: serving the \
                         policy with the rule skipped would admit what it should deny. Remove the rule, make it \
                         Audit, or annotate the policy `{UNSUPPORTED_RULES_ANNOTATION}: skip` to load it with the \
                         rule skipped"
                    ),
                ))
            })
            .collect()
    }

    /// Whether a rule's failure is enforced for a resource in `namespace`.
    pub fn enforced(
        &self,
        rule: &Rule,
        namespace: &str,
        labels: Option<&Map<String, Value>>,
    ) -> bool {
        let matches = |o: &ActionOverride| {
            let ns_ok =
                o.namespaces.is_empty() || o.namespaces.iter().any(|p| wildcard(p, namespace));
            let sel_ok = o
                .namespace_selector
                .as_ref()
                .is_none_or(|s| matching::selector_matches(s, labels));
            ns_ok && sel_ok
        };
        if let Some(v) = &rule.validate {
            if let Some(o) = v.failure_action_overrides.iter().find(|o| matches(o)) {
                return is_enforce(&o.action);
            }
            if let Some(a) = &v.failure_action {
                return is_enforce(a);
            }
        }
        if let Some(o) = self.overrides.iter().find(|o| matches(o)) {
            return is_enforce(&o.action);
        }
        self.enforce
    }

    /// Run the policy on a review: mutate rules (patched resource kept), then validate rules on the result.
    pub fn apply(
        &self,
        review: &Review,
        options: &ApplyOptions<'_>,
        mocks_base: Option<&Mocks>,
    ) -> PolicyResponse {
        let mut response = PolicyResponse::default();
        let review_ns: &str = match review.namespace.as_deref() {
            Some(ns) => ns,
            None => review
                .subject()
                .and_then(|o| o.pointer("/metadata/namespace"))
                .and_then(Value::as_str)
                .unwrap_or(""),
        };
        if let Some(ns) = &self.namespace {
            if ns != review_ns {
                return response;
            }
        }
        let delete = matches!(review.operation, crate::admission::Operation::Delete);
        // The object as changed by this policy's mutate rules so far (`None`: unchanged).
        let mut patched: Option<Value> = None;
        let request = review.request();
        let base = match mocks_base {
            Some(m) => Base::Ready(Arc::new(base_document(review, options.user, Some(m)))),
            None if options.user.roles.is_empty() && options.user.cluster_roles.is_empty() => {
                Base::served_with(review, request)
            }
            None => Base::Ready(Arc::new(base_document(review, options.user, None))),
        };
        let env = Env {
            user: options.user,
            namespace_labels: options.namespace_labels,
            lookups: options.lookups,
            deadline: options.deadline,
        };
        let empty = Value::Null;
        // Looked up once, not per rule (and only the one the rules look at).
        // (`Review::object` / `old_object`, read from the request looked up once.)
        let present = |member: &str| request.get(member).filter(|v| !v.is_null());
        let (object, old_object) = if delete {
            (None, present("oldObject"))
        } else {
            (present("object"), None)
        };
        let mut stop = false;
        let runs_mutate = matches!(options.part, Part::All | Part::Mutate);
        let runs_validate = matches!(options.part, Part::All | Part::Validate);
        for pass in [true, false] {
            if (pass && !runs_mutate) || (!pass && !runs_validate) || stop {
                continue;
            }
            for rule in &self.rules {
                if stop {
                    break;
                }
                if (pass && !rule.is_mutate()) || (!pass && rule.is_mutate()) {
                    continue;
                }
                // A rule whose match block names other kinds is passed over before anything else is looked at.
                if !rule.spec.matches.may_match_kind(&review.kind.kind) {
                    continue;
                }
                let subject = if delete {
                    old_object.unwrap_or(&empty)
                } else {
                    patched.as_ref().or(object).unwrap_or(&empty)
                };
                let input = MatchInput {
                    group: &review.kind.group,
                    version: &review.kind.version,
                    kind: &review.kind.kind,
                    subresource: review.sub_resource.as_deref().unwrap_or(""),
                    object: subject,
                    namespace: review_ns,
                    operation: review.operation_str(),
                    user: options.user,
                    namespace_labels: options.namespace_labels,
                };
                if !matching::matches(&rule.spec.matches, &input) {
                    continue;
                }
                if rule
                    .spec
                    .exclude
                    .as_ref()
                    .is_some_and(|e| matching::excluded(e, &input))
                {
                    continue;
                }
                // Room for every rule's response at once (most rules that match respond), not grown one by one.
                if response.rules.capacity() == 0 {
                    response.rules.reserve_exact(self.rules.len());
                }
                // No key is built for the common policy without exceptions.
                let excepting: Vec<&Arc<PolicyException>> = if self.exceptions.is_empty() {
                    Vec::new()
                } else {
                    let key = self.exception_key();
                    self.exceptions
                        .iter()
                        .filter(|e| e.exempts(&key, &rule.spec.name, &input))
                        .collect()
                };
                // An exception with podSecurity controls excuses those controls of a podSecurity rule, which still
                // runs; any other exception skips the rule.
                let pss = rule
                    .spec
                    .validate
                    .as_ref()
                    .and_then(|v| v.pod_security_compiled.as_ref());
                let relaxed: Option<CompiledRule> = match pss {
                    Some(pss)
                        if !excepting.is_empty()
                            && excepting.iter().all(|e| !e.pod_security.is_empty()) =>
                    {
                        let extra: Vec<pss::Exclusion> = excepting
                            .iter()
                            .flat_map(|e| e.pod_security.iter().cloned())
                            .collect();
                        let mut relaxed = rule.clone();
                        if let Some(v) = relaxed.spec.validate.as_mut() {
                            v.pod_security_compiled = Some(Arc::new(pss.with_exclusions(&extra)));
                        }
                        Some(relaxed)
                    }
                    _ => None,
                };
                let rule = relaxed.as_ref().unwrap_or(rule);
                if let Some(e) = excepting.first().filter(|_| relaxed.is_none()) {
                    response.rules.push(RuleResponse::new(
                        &rule.spec.name,
                        if rule.is_mutate() {
                            RuleType::Mutation
                        } else {
                            RuleType::Validation
                        },
                        RuleStatus::Skip,
                        format!("rule is skipped due to policy exception {}", e.name),
                    ));
                    continue;
                }
                let rule_type = if rule.is_mutate() {
                    RuleType::Mutation
                } else if rule.is_validate() {
                    RuleType::Validation
                } else {
                    RuleType::Other
                };
                if let Some(reason) = &rule.unsupported {
                    response.rules.push(RuleResponse::new(
                        &rule.spec.name,
                        rule_type,
                        RuleStatus::Unsupported,
                        reason.clone(),
                    ));
                    continue;
                }
                if env.expired() {
                    response.rules.push(RuleResponse::new(
                        &rule.spec.name,
                        rule_type,
                        RuleStatus::Error,
                        eval::DEADLINE_MESSAGE,
                    ));
                    stop = true;
                    continue;
                }
                let mut ctx = Context::with_base(base.clone(), delete).until(options.deadline);
                if let Some(o) = &patched {
                    mutate::set_object(&mut ctx, o);
                }
                let resp =
                    self.run_rule(rule, rule_type, &mut ctx, subject, review, review_ns, &env);
                let Some((resp, changed)) = resp else {
                    continue;
                };
                if let Some(p) = changed {
                    patched = Some(p);
                }
                if self.apply_one
                    && matches!(
                        resp.status,
                        RuleStatus::Pass | RuleStatus::Fail | RuleStatus::Error
                    )
                {
                    stop = true;
                }
                response.rules.push(resp);
            }
        }
        response.patched = patched;
        response
    }

    #[allow(clippy::too_many_arguments)]
    fn run_rule(
        &self,
        rule: &CompiledRule,
        rule_type: RuleType,
        ctx: &mut Context<'_>,
        subject: &Value,
        review: &Review,
        namespace: &str,
        env: &Env<'_>,
    ) -> Option<(RuleResponse, Option<Value>)> {
        let name = rule.spec.name.as_str();
        let error = |m: String| {
            Some((
                RuleResponse::new(name, rule_type, RuleStatus::Error, m),
                None,
            ))
        };
        let delete = matches!(review.operation, crate::admission::Operation::Delete);
        // Kyverno does not run validate.cel on DELETE.
        if rule.cel.is_some() && delete {
            return None;
        }
        if rule.cel_preconditions.is_some() || rule.cel.is_some() {
            let patched = review
                .object()
                .is_none_or(|o| !std::ptr::eq(o, subject))
                .then_some(subject);
            let input = cel::Input {
                review,
                patched: patched.filter(|_| !delete),
                namespace,
                namespace_labels: env.namespace_labels,
                limits: match env.deadline {
                    Some(d) => policyctl_cel::Limits::until(d),
                    None => policyctl_cel::Limits::default(),
                },
            };
            if let Some(pre) = &rule.cel_preconditions {
                match pre.check(&input) {
                    cel::Verdict::Pass => {}
                    cel::Verdict::Fail(m) => {
                        return Some((
                            RuleResponse::new(name, rule_type, RuleStatus::Skip, m),
                            None,
                        ))
                    }
                    cel::Verdict::Error(m) => return error(m),
                }
            }
            if let Some(c) = &rule.cel {
                let resp = match c.validate(&input) {
                    cel::Verdict::Pass => RuleResponse::new(
                        name,
                        rule_type,
                        RuleStatus::Pass,
                        format!("Validation rule '{name}' passed."),
                    ),
                    cel::Verdict::Fail(m) => {
                        RuleResponse::new(name, rule_type, RuleStatus::Fail, m)
                    }
                    cel::Verdict::Error(m) => return error(m),
                };
                return Some((resp, None));
            }
        }
        if let Err(e) = load_context(&rule.spec.context, ctx, env, name) {
            return error(format!("failed to load context: {e}"));
        }
        if let Some(pre) = &rule.spec.preconditions {
            let outcome = match &rule.spec.preconditions_compiled {
                Some(c) => c.check(ctx, Mode::Lenient),
                None => check_conditions(pre, ctx, Mode::Lenient),
            };
            match outcome {
                Err(e) => return error(format!("failed to evaluate preconditions: {e}")),
                Ok(o) if !o.holds => {
                    let msg = if o.messages.is_empty() {
                        "preconditions not met".to_string()
                    } else {
                        format!("preconditions not met; {}", o.messages)
                    };
                    return Some((
                        RuleResponse::new(name, rule_type, RuleStatus::Skip, msg),
                        None,
                    ));
                }
                Ok(_) => {}
            }
        }
        if let Some(m) = &rule.spec.mutate {
            if delete {
                return None;
            }
            let (resp, patched) = mutate::mutate(name, m, ctx, subject, env);
            return Some((resp, patched));
        }
        let v = rule.spec.validate.as_ref()?;
        let resp = validate::validate(name, v, ctx, subject, delete, env)?;
        // Pre-existing violations are allowed on UPDATE for enforced pattern rules.
        if resp.status == RuleStatus::Fail
            && (v.pattern.is_some() || v.any_pattern.is_some())
            && matches!(review.operation, crate::admission::Operation::Update)
            && v.allow_existing_violations.unwrap_or(true)
            && self.enforced(&rule.spec, namespace, env.namespace_labels)
        {
            if let Some(old) = review.old_object() {
                let mut old_ctx = ctx.clone();
                mutate::set_object(&mut old_ctx, old);
                if let Some(old_resp) = validate::validate(name, v, &old_ctx, old, false, env) {
                    if old_resp.status == RuleStatus::Fail {
                        return Some((
                            RuleResponse::new(
                                name,
                                rule_type,
                                RuleStatus::Skip,
                                "skipping the rule evaluation as pre-existing violations are allowed",
                            ),
                            None,
                        ));
                    }
                }
            }
        }
        Some((resp, None))
    }

    fn serving_apply(&self, review: &Review, ctx: &EvalContext, part: Part) -> PolicyResponse {
        self.serving_apply_in(review, ctx, part, &serving_env(review, ctx))
    }

    /// [`KyvernoPolicy::serving_apply`] with the review's serving environment already at hand.
    fn serving_apply_in(
        &self,
        review: &Review,
        ctx: &EvalContext,
        part: Part,
        env: &ServingEnv,
    ) -> PolicyResponse {
        let cluster: &dyn ClusterContext = ctx.cluster.as_ref();
        // A test's cluster context carries the Values file: its values replace lookups and set variables.
        let overrides = cluster.overrides();
        let options = ApplyOptions {
            user: &env.user,
            namespace_labels: env.labels.as_ref(),
            lookups: match overrides {
                Some(values) => Lookups::Mocks(values),
                None => Lookups::Cluster(cluster),
            },
            part,
            deadline: Some(ctx.deadline.instant()),
        };
        self.apply(review, &options, overrides)
    }

    /// Per-rule results as a policy report states them (an unscored policy's failures are warnings), when the
    /// context explains.
    fn explained(&self, response: &PolicyResponse, ctx: &EvalContext) -> Vec<RuleResult> {
        if !ctx.explain {
            return Vec::new();
        }
        response
            .rules
            .iter()
            .map(|r| RuleResult {
                rule: r.name.clone(),
                status: if r.status == RuleStatus::Fail && !self.scored {
                    RuleStatus::Warn
                } else {
                    r.status
                },
                message: r.message.clone(),
            })
            .collect()
    }
}

/// What every Kyverno policy needs to know about a served review besides the review: computed once per review.
struct ServingEnv {
    user: UserContext,
    labels: Option<Map<String, Value>>,
}

fn serving_env(review: &Review, ctx: &EvalContext) -> Arc<ServingEnv> {
    review.cached(|r| ServingEnv {
        user: serving_user(r, ctx),
        labels: r
            .namespace
            .as_deref()
            .and_then(|ns| ctx.cluster.namespace(ns))
            .and_then(|n| {
                n.pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
            }),
    })
}

/// The base context document of a served review, shared by every Kyverno policy through [`Review::cached`].
struct ServingBase(Arc<Value>);

/// The base context document of a served review, built on first use.
pub(crate) fn serving_base(review: &Review) -> Arc<Value> {
    review
        .cached(|r| ServingBase(Arc::new(base_document(r, &review_user(r), None))))
        .0
        .clone()
}

/// A served review's base document without `request` and `images`: the service account, shared by every policy
/// through [`Review::cached`].
struct ServingThin(Arc<Value>);

/// The base context document of a served review without `request` and `images`, built on first use: expressions
/// that read only the review's own members of `request` take it from the review, and `images` from
/// [`serving_images`] when they read it (see [`Context::query_parts`]).
pub(crate) fn serving_thin(review: &Review) -> Arc<Value> {
    review
        .cached(|r| {
            ServingThin(Arc::new(Value::Object(service_account_members(
                &review_user(r),
            ))))
        })
        .0
        .clone()
}

/// A served review's `images`, shared by every policy through [`Review::cached`].
struct ServingImages(Arc<Value>);

/// The `images` member of a served review's base document, built the first time an expression reads it.
pub(crate) fn serving_images(review: &Review) -> Arc<Value> {
    review
        .cached(|r| ServingImages(Arc::new(images_member(r))))
        .0
        .clone()
}

/// The requester of a served review, with the roles the cluster context knows (the webhook resolves none; a test's
/// UserInfo file supplies them).
fn serving_user(review: &Review, ctx: &EvalContext) -> UserContext {
    let (roles, cluster_roles) = ctx.cluster.roles(&review.user_info).unwrap_or_default();
    UserContext {
        roles,
        cluster_roles,
        ..review_user(review)
    }
}

/// The requester as the review names it, without roles (the shared base document is built only for reviews whose
/// user has none; see [`KyvernoPolicy::apply`]).
fn review_user(review: &Review) -> UserContext {
    UserContext {
        username: review.user_info.username.clone(),
        groups: review.user_info.groups.clone(),
        roles: Vec::new(),
        cluster_roles: Vec::new(),
    }
}

/// The members of the base context document besides `request`: service account and images.
fn base_members(review: &Review, user: &UserContext) -> Map<String, Value> {
    let mut doc = service_account_members(user);
    doc.insert("images".into(), images_member(review));
    doc
}

/// `serviceAccountName` and `serviceAccountNamespace` of the base document.
fn service_account_members(user: &UserContext) -> Map<String, Value> {
    let (sa_ns, sa_name) = variables::service_account(&user.username);
    let mut doc = Map::new();
    doc.insert("serviceAccountName".into(), Value::String(sa_name));
    doc.insert("serviceAccountNamespace".into(), Value::String(sa_ns));
    doc
}

/// `images` of the base document.
fn images_member(review: &Review) -> Value {
    review
        .subject()
        .map(variables::images_of)
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// The base context document of a review: `request` (with `roles` / `clusterRoles`), service account and images,
/// plus the mocks' global and resource values.
pub fn base_document(review: &Review, user: &UserContext, mocks: Option<&Mocks>) -> Value {
    let strings = |list: &[String]| Value::Array(list.iter().cloned().map(Value::String).collect());
    let mut request = review.request().clone();
    if let Some(map) = request.as_object_mut() {
        map.insert("roles".into(), strings(&user.roles));
        map.insert("clusterRoles".into(), strings(&user.cluster_roles));
        let has_user = map
            .get("userInfo")
            .and_then(|u| u.get("username"))
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty());
        if !has_user && (!user.username.is_empty() || !user.groups.is_empty()) {
            let mut info = Map::new();
            info.insert("username".into(), Value::String(user.username.clone()));
            info.insert("groups".into(), strings(&user.groups));
            map.insert("userInfo".into(), Value::Object(info));
        }
    }
    let mut doc = base_members(review, user);
    doc.insert("request".into(), request);
    let mut doc = Value::Object(doc);
    if let Some(m) = mocks {
        let mut ctx = Context::new(Arc::new(doc), false);
        for (k, v) in m.global.iter().chain(m.resource.iter()) {
            ctx.add_path(k, v.clone());
        }
        doc = (*ctx.document()).clone();
    }
    doc
}

impl Policy for KyvernoPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }

    fn scope(&self) -> Scope {
        self.scope.clone()
    }

    fn validates(&self) -> bool {
        self.admission
            && self
                .rules
                .iter()
                .any(|r| r.is_validate() && r.unsupported.is_none())
    }

    fn mutates(&self) -> bool {
        self.admission
            && self
                .rules
                .iter()
                .any(|r| r.is_mutate() && r.unsupported.is_none())
    }

    fn validate(&self, review: &Review, ctx: &EvalContext) -> Evaluation {
        // `background: false`: background scans (audits) leave the policy out, as Kyverno does.
        if ctx.point == EnforcementPoint::Audit && !self.background {
            return Evaluation::skip();
        }
        let env = serving_env(review, ctx);
        let response = self.serving_apply_in(review, ctx, Part::Validate, &env);
        let namespace = review.namespace.as_deref().unwrap_or_default();
        let labels = env.labels.as_ref();
        let mut out = Evaluation {
            rules: self.explained(&response, ctx),
            ..Evaluation::skip()
        };
        for r in &response.rules {
            if r.status != RuleStatus::Skip {
                out.applied = true;
            }
            // Only the statuses that report something need the action and the message (passes are most rules).
            if !matches!(
                r.status,
                RuleStatus::Fail | RuleStatus::Error | RuleStatus::Warn
            ) {
                continue;
            }
            // The action the rule declares: Enforce denies; Audit records, and warns too with emitWarning.
            let rule = self.rules.iter().find(|c| c.spec.name == r.name);
            let enforce = rule.is_some_and(|c| self.enforced(&c.spec, namespace, labels));
            let message = format!("{}: {}", r.name, r.message);
            match r.status {
                RuleStatus::Fail if enforce => out.violations.push(Violation::deny(message)),
                RuleStatus::Fail => {
                    if self.emit_warning {
                        out.violations.push(Violation::warn(message.clone()));
                    }
                    out.violations.push(Violation {
                        message,
                        action: Action::Audit,
                        reason: None,
                    });
                }
                RuleStatus::Error => {
                    // Kyverno evaluates Audit policies after the response, so an Audit rule's error can never
                    // block; the decide stage sends an enforced rule's error to the failure policy.
                    let action = if enforce {
                        Action::Deny
                    } else if self.emit_warning {
                        Action::Warn
                    } else {
                        Action::Audit
                    };
                    out.errors.push(PolicyError {
                        error: rule_error(&message, ctx),
                        action,
                    });
                }
                RuleStatus::Warn => out.violations.push(Violation::warn(message)),
                _ => {}
            }
        }
        out
    }

    fn mutate(&self, review: &Review, ctx: &EvalContext) -> PolicyMutation {
        let response = self.serving_apply(review, ctx, Part::Mutate);
        let mut out = PolicyMutation {
            rules: self.explained(&response, ctx),
            ..PolicyMutation::default()
        };
        for r in &response.rules {
            if r.status != RuleStatus::Skip {
                out.applied = true;
            }
            // A mutate rule's error follows the policy's failure policy, in the decide stage: under Fail the
            // request is denied, under Ignore it is admitted with a warning saying what failed.
            if r.status == RuleStatus::Error {
                out.errors.push(PolicyError::enforced(rule_error(
                    &format!("{}: {}", r.name, r.message),
                    ctx,
                )));
            }
            if self.emit_warning && r.status == RuleStatus::Pass {
                out.warnings.push(format!(
                    "policy {}.{}: {}",
                    self.info.name, r.name, r.message
                ));
            }
        }
        out.object = response.patched;
        out
    }
}

/// A rule's error text as a typed error: the deadline is a time-out, anything else an engine error.
fn rule_error(message: &str, ctx: &EvalContext) -> EvalError {
    if message.contains(eval::DEADLINE_MESSAGE) || message.contains("request deadline exceeded") {
        EvalError::Timeout(ctx.deadline.budget())
    } else if message.contains("actual cost limit exceeded") {
        EvalError::Budget(message.to_string())
    } else {
        EvalError::Engine(message.to_string())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cel_tests;
#[cfg(test)]
mod pss_tests;
