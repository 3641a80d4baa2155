//! `validate` rules: pattern, anyPattern, deny and foreach, with Kyverno's results and messages.

use std::sync::Arc;

use serde_json::Value;

use super::eval::{check_conditions, load_context, Conditions, Env};
use super::pattern::{Pattern, PatternError};
use super::result::{RuleResponse, RuleStatus, RuleType};
use super::spec::{Deny, ForEachValidation, Validation};
use super::variables::{
    resolve_references, substitute_pattern, substitute_str, value_has_variables, CompiledList,
    Context, Mode, Shared, VarError,
};

fn response(rule: &str, status: RuleStatus, message: impl Into<String>) -> RuleResponse {
    RuleResponse::new(rule, RuleType::Validation, status, message)
}

/// The pieces of a validation body (a rule or a foreach entry).
struct Body<'a> {
    pattern: Option<&'a Value>,
    any_pattern: Option<&'a Value>,
    deny: Option<&'a Deny>,
    foreach: Option<&'a [ForEachValidation]>,
    /// What of it was compiled at load.
    compiled: Option<&'a CompiledBody>,
}

/// A validation body (a rule's `validate` or a foreach entry) compiled at load: the patterns without variables, the
/// deny conditions and the (foreach) preconditions. A pattern with variables is compiled after substitution, per
/// evaluation.
#[derive(Debug, Clone, Default)]
pub struct CompiledBody {
    /// `pattern`, when it has no variable.
    pub(crate) pattern: Option<Pattern>,
    /// `anyPattern`, when it is a list without variables.
    pub(crate) any_pattern: Option<Vec<Pattern>>,
    /// `deny.conditions`.
    pub(crate) deny: Option<Conditions>,
    /// The foreach entry's `preconditions`.
    pub(crate) preconditions: Option<Conditions>,
    /// A rule-level body's pass message, rendered once for the rule it was compiled for (see [`passed`]).
    pub(crate) passed: Option<Passed>,
    /// The foreach entry's `list`, when it is JMESPath that compiles.
    pub(crate) list: Option<CompiledList>,
}

/// The message of a rule whose body passed (`validation rule '<rule>' passed.`), rendered at load.
#[derive(Debug, Clone)]
pub struct Passed {
    rule: String,
    text: String,
    /// The message of a pass by the first `anyPattern`.
    first_any: String,
}

impl Passed {
    /// The pass message of `rule`.
    pub fn new(rule: &str) -> Passed {
        Passed {
            rule: rule.to_string(),
            text: pass_text(rule),
            first_any: any_pass_text(rule, 0),
        }
    }
}

fn pass_text(rule: &str) -> String {
    format!("validation rule '{rule}' passed.")
}

fn any_pass_text(rule: &str, i: usize) -> String {
    format!("validation rule '{rule}' anyPattern[{i}] passed.")
}

/// The pass message of `rule`'s `anyPattern[i]`: rendered at load for the first, else now.
fn any_passed(rule: &str, i: usize, compiled: Option<&CompiledBody>) -> String {
    match compiled.and_then(|c| c.passed.as_ref()) {
        Some(p) if i == 0 && p.rule == rule => p.first_any.clone(),
        _ => any_pass_text(rule, i),
    }
}

/// The pass message of `rule`: the one rendered at load when the body was compiled for this rule, else rendered now.
fn passed(rule: &str, compiled: Option<&CompiledBody>) -> String {
    match compiled.and_then(|c| c.passed.as_ref()) {
        Some(p) if p.rule == rule => p.text.clone(),
        _ => pass_text(rule),
    }
}

impl CompiledBody {
    /// Compile the parts of a body.
    pub fn new(
        pattern: Option<&Value>,
        any_pattern: Option<&Value>,
        deny: Option<&Deny>,
        preconditions: Option<&Value>,
    ) -> CompiledBody {
        CompiledBody {
            pattern: pattern
                .filter(|p| !value_has_variables(p))
                .map(|p| Pattern::new(p.clone())),
            any_pattern: match any_pattern {
                Some(Value::Array(items)) if !items.iter().any(value_has_variables) => {
                    Some(items.iter().map(|p| Pattern::new(p.clone())).collect())
                }
                _ => None,
            },
            deny: deny.map(|d| Conditions::new(d.conditions.as_ref().unwrap_or(&Value::Null))),
            preconditions: preconditions.map(Conditions::new),
            passed: None,
            list: None,
        }
    }

    /// The same body, with the pass message of `rule` rendered once.
    pub fn for_rule(mut self, rule: &str) -> CompiledBody {
        self.passed = Some(Passed::new(rule));
        self
    }

    /// Compile a foreach list's entries (and their nested lists) in place.
    pub fn compile_foreach(list: &mut [ForEachValidation]) {
        for fe in list {
            fe.compiled = Some(Arc::new(CompiledBody {
                list: CompiledList::new(&fe.list),
                ..CompiledBody::new(
                    fe.pattern.as_ref(),
                    fe.any_pattern.as_ref(),
                    fe.deny.as_ref(),
                    fe.preconditions.as_ref(),
                )
            }));
            if let Some(nested) = fe.foreach.as_mut() {
                CompiledBody::compile_foreach(nested);
            }
        }
    }
}

/// Evaluate the `validate` part of a rule (context and preconditions already done). `None`: no response (DELETE
/// of a pattern rule, empty foreach).
pub fn validate(
    rule: &str,
    v: &Validation,
    ctx: &Context<'_>,
    resource: &Value,
    delete: bool,
    env: &Env<'_>,
) -> Option<RuleResponse> {
    if let Some(pss) = &v.pod_security_compiled {
        if delete {
            return None;
        }
        return Some(match pss.check(rule, resource) {
            None => response(
                rule,
                RuleStatus::Pass,
                format!("validation rule '{rule}' passed."),
            ),
            Some(message) => response(rule, RuleStatus::Fail, message),
        });
    }
    let body = Body {
        pattern: v.pattern.as_ref(),
        any_pattern: v.any_pattern.as_ref(),
        deny: v.deny.as_ref(),
        foreach: v.foreach.as_deref(),
        compiled: v.compiled.as_deref(),
    };
    run_body(
        rule,
        v.message.as_deref(),
        &body,
        ctx,
        resource,
        delete,
        false,
        0,
        env,
    )
}

#[allow(clippy::too_many_arguments)]
fn run_body(
    rule: &str,
    message: Option<&str>,
    body: &Body<'_>,
    ctx: &Context<'_>,
    resource: &Value,
    delete: bool,
    in_foreach: bool,
    nesting: usize,
    env: &Env<'_>,
) -> Option<RuleResponse> {
    if let Some(deny) = body.deny {
        return Some(validate_deny(
            rule,
            message,
            deny,
            body.compiled,
            ctx,
            in_foreach,
        ));
    }
    if body.pattern.is_some() || body.any_pattern.is_some() {
        if delete && !in_foreach {
            return None;
        }
        return Some(validate_patterns(
            rule, message, body, ctx, resource, in_foreach,
        ));
    }
    if let Some(list) = body.foreach {
        return validate_foreach(rule, message, list, ctx, resource, nesting, env);
    }
    None
}

/// A rule's `message` whose variables could not be substituted (the rule's message then reports this).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("validation error: variables substitution error in rule {rule} execution error: {source}")]
pub struct MessageError {
    /// The rule's name.
    pub rule: String,
    /// The substitution's error.
    #[source]
    pub source: VarError,
}

fn render_message(
    rule: &str,
    message: Option<&str>,
    ctx: &Context<'_>,
) -> Result<Option<String>, MessageError> {
    let Some(m) = message.filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    match substitute_str(m, ctx, Mode::Strict) {
        Ok(Value::String(s)) => Ok(Some(s)),
        Ok(other) => Ok(Some(other.to_string())),
        Err(source) => Err(MessageError {
            rule: rule.to_string(),
            source,
        }),
    }
}

fn error_message(
    rule: &str,
    message: Option<&str>,
    ctx: &Context<'_>,
    err: &str,
    path: &str,
) -> String {
    match render_message(rule, message, ctx) {
        Err(e) => e.to_string(),
        Ok(None) if !path.is_empty() => {
            format!("validation error: rule {rule} failed at path {path}")
        }
        Ok(None) => format!("validation error: rule {rule} execution error: {err}"),
        Ok(Some(mut m)) => {
            if !m.ends_with('.') {
                m.push('.');
            }
            if path.is_empty() {
                format!("validation error: {m} rule {rule} execution error: {err}")
            } else {
                format!("validation error: {m} rule {rule} failed at path {path}")
            }
        }
    }
}

/// The message of a pass, unless `quiet` (a foreach element's result: only its status is read).
fn pass_message(rule: &str, compiled: Option<&CompiledBody>, quiet: bool) -> String {
    if quiet {
        String::new()
    } else {
        passed(rule, compiled)
    }
}

fn validate_deny(
    rule: &str,
    message: Option<&str>,
    deny: &Deny,
    body: Option<&CompiledBody>,
    ctx: &Context<'_>,
    quiet: bool,
) -> RuleResponse {
    let compiled = body.and_then(|c| c.deny.as_ref());
    let outcome = match compiled {
        Some(c) => c.check(ctx, Mode::Lenient),
        None => check_conditions(
            deny.conditions.as_ref().unwrap_or(&Value::Null),
            ctx,
            Mode::Lenient,
        ),
    };
    match outcome {
        Err(e) => response(
            rule,
            RuleStatus::Error,
            format!("failed to check deny conditions: {e}"),
        ),
        Ok(outcome) if outcome.holds => {
            let text = match render_message(rule, message, ctx) {
                Ok(Some(m)) if outcome.messages.is_empty() => m,
                Ok(Some(m)) => format!("{m}; {}", outcome.messages),
                Ok(None) if !outcome.messages.is_empty() => outcome.messages,
                Ok(None) => format!("validation error: rule {rule} failed"),
                Err(e) => e.to_string(),
            };
            response(rule, RuleStatus::Fail, text)
        }
        Ok(_) => response(rule, RuleStatus::Pass, pass_message(rule, body, quiet)),
    }
}

/// A pattern with its variables substituted and its `$(...)` references resolved, ready to match `resource`.
fn substituted_pattern(
    pattern: &Value,
    resource: &Value,
    ctx: &Context<'_>,
) -> Result<Pattern, VarError> {
    substitute_pattern(pattern, Some(resource), ctx, Mode::Strict)
        .and_then(|p| resolve_references(&p))
        .map(Pattern::new)
}

/// The rule's error when a pattern's variables could not be substituted.
fn substitution_failed(rule: &str, error: &VarError) -> RuleResponse {
    response(
        rule,
        RuleStatus::Error,
        format!("variable substitution failed: {error}"),
    )
}

fn validate_patterns(
    rule: &str,
    message: Option<&str>,
    body: &Body<'_>,
    ctx: &Context<'_>,
    resource: &Value,
    quiet: bool,
) -> RuleResponse {
    let (pattern, any_pattern, compiled) = (body.pattern, body.any_pattern, body.compiled);
    if let Some(pattern) = pattern {
        let substituted;
        let pattern = match compiled.and_then(|c| c.pattern.as_ref()) {
            Some(p) => p,
            None => {
                let value = if value_has_variables(pattern) {
                    substituted_pattern(pattern, resource, ctx)
                } else {
                    Ok(Pattern::new(pattern.clone()))
                };
                substituted = match value {
                    Ok(p) => p,
                    Err(e) => return substitution_failed(rule, &e),
                };
                &substituted
            }
        };
        return match pattern.matches(resource) {
            Ok(()) => response(rule, RuleStatus::Pass, pass_message(rule, compiled, quiet)),
            Err(PatternError::Skip(m)) => response(rule, RuleStatus::Skip, m),
            Err(PatternError::Error(m)) => response(
                rule,
                RuleStatus::Error,
                error_message(rule, message, ctx, &m, ""),
            ),
            Err(PatternError::Fail { path, message: m }) => response(
                rule,
                RuleStatus::Fail,
                error_message(rule, message, ctx, &m, &path),
            ),
        };
    }
    let Some(any) = any_pattern else {
        return response(
            rule,
            RuleStatus::Pass,
            message.unwrap_or_default().to_string(),
        );
    };
    let substituted;
    let patterns: &[Pattern] = if let Some(list) = compiled.and_then(|c| c.any_pattern.as_ref()) {
        list
    } else {
        let Value::Array(items) = any else {
            return response(rule, RuleStatus::Error, "anyPattern must be a list");
        };
        substituted = match items
            .iter()
            .map(|p| substituted_pattern(p, resource, ctx))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(list) => list,
            Err(e) => return substitution_failed(rule, &e),
        };
        &substituted
    };
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        match p.matches(resource) {
            Ok(()) if quiet => return response(rule, RuleStatus::Pass, String::new()),
            Ok(()) => {
                return response(rule, RuleStatus::Pass, any_passed(rule, i, compiled));
            }
            Err(PatternError::Skip(m)) => skipped.push(format!("rule {rule}[{i}] skipped: {m}")),
            Err(PatternError::Error(m)) => failed.push(format!("rule {rule}[{i}] failed: {m}")),
            Err(PatternError::Fail { path, .. }) => {
                failed.push(format!("rule {rule}[{i}] failed at path {path}"))
            }
        }
    }
    if !failed.is_empty() {
        let text = match render_message(rule, message, ctx) {
            Ok(Some(mut m)) => {
                if !m.ends_with('.') {
                    m.push('.');
                }
                format!("validation error: {m} {}", failed.join(" "))
            }
            Ok(None) => format!("validation error: {}", failed.join(" ")),
            Err(e) => e.to_string(),
        };
        return response(rule, RuleStatus::Fail, text);
    }
    if !skipped.is_empty() {
        return response(rule, RuleStatus::Skip, skipped.join(" "));
    }
    response(
        rule,
        RuleStatus::Pass,
        message.unwrap_or_default().to_string(),
    )
}

/// The elements of a foreach `list` expression: a list, or a single value wrapped in one. Elements of a list the
/// context already holds (`request.object.spec.containers`) are borrowed from it; computed ones are shared
/// ([`Arc`]), so putting one into a context copies nothing.
pub fn elements<'c>(ctx: &'c Context<'_>, list: &str) -> Result<Vec<Shared<'c>>, VarError> {
    ctx.query_parts(super::variables::list_expression(list))
        .map(super::variables::elements_of)
}

/// `element<n>` and `elementIndex<n>` of the usual nesting depths, without formatting them per element.
const ELEMENT: [&str; 4] = ["element0", "element1", "element2", "element3"];
const ELEMENT_INDEX: [&str; 4] = [
    "elementIndex0",
    "elementIndex1",
    "elementIndex2",
    "elementIndex3",
];

/// The value of `elementIndex` for `index`: the usual small indexes are shared values made once per process, so
/// that setting one allocates nothing.
fn index_value(index: usize) -> Arc<Value> {
    const SHARED: usize = 64;
    static SMALL: std::sync::OnceLock<Vec<Arc<Value>>> = std::sync::OnceLock::new();
    let small = SMALL.get_or_init(|| (0..SHARED).map(|i| Arc::new(Value::from(i))).collect());
    match small.get(index) {
        Some(v) => Arc::clone(v),
        None => Arc::new(Value::from(index)),
    }
}

/// Put a foreach element into the context.
pub fn set_element<'c>(ctx: &mut Context<'c>, element: &Shared<'c>, index: usize, nesting: usize) {
    // `element` and `element<nesting>` share the list's own copy of the element (or the document's).
    let index_value = index_value(index);
    ctx.set_static("element", element.clone());
    ctx.set_static("elementIndex", Arc::clone(&index_value));
    match (ELEMENT.get(nesting), ELEMENT_INDEX.get(nesting)) {
        (Some(element_n), Some(index_n)) => {
            ctx.set_static(element_n, element.clone());
            ctx.set_static(index_n, index_value);
        }
        _ => {
            ctx.set_shared(&format!("element{nesting}"), element.clone());
            ctx.set(&format!("elementIndex{nesting}"), Value::from(index));
        }
    }
}

fn validate_foreach(
    rule: &str,
    message: Option<&str>,
    list: &[ForEachValidation],
    ctx: &Context<'_>,
    resource: &Value,
    nesting: usize,
    env: &Env<'_>,
) -> Option<RuleResponse> {
    let mut applied = 0;
    for fe in list {
        let compiled = fe.compiled.as_deref().and_then(|c| c.list.as_ref());
        let Some(items) = ctx.elements_compiled(&fe.list, compiled) else {
            continue;
        };
        let (resp, count) =
            validate_elements(rule, message, fe, &items, ctx, resource, nesting, env);
        if resp.status != RuleStatus::Pass {
            return Some(resp);
        }
        applied += count;
    }
    if applied == 0 {
        return Some(response(rule, RuleStatus::Skip, "rule skipped"));
    }
    Some(response(rule, RuleStatus::Pass, "rule passed"))
}

#[allow(clippy::too_many_arguments)]
fn validate_elements<'c>(
    rule: &str,
    message: Option<&str>,
    fe: &ForEachValidation,
    items: &[Shared<'c>],
    ctx: &'c Context<'_>,
    resource: &Value,
    nesting: usize,
    env: &Env<'_>,
) -> (RuleResponse, usize) {
    let mut applied = 0;
    let last = items.len().saturating_sub(1);
    // Without context entries and mocks, an element's context is the rule's plus the element variables, which the
    // next element replaces: one context serves every element (instead of a copy per element).
    let reuse = fe.context.is_empty() && !matches!(env.lookups, super::eval::Lookups::Mocks(_));
    let mut shared: Option<Context<'c>> = None;
    for (index, element) in items.iter().enumerate() {
        if element.is_null() {
            continue;
        }
        if env.expired() {
            return (
                response(rule, RuleStatus::Error, super::eval::DEADLINE_MESSAGE),
                applied,
            );
        }
        let mut fresh;
        let ectx: &mut Context<'c> = if reuse {
            shared.get_or_insert_with(|| ctx.clone())
        } else {
            fresh = ctx.clone();
            &mut fresh
        };
        set_element(ectx, element, index, nesting);
        env.apply_foreach_values(rule, index, ectx);
        if let Err(e) = load_context(&fe.context, ectx, env, rule) {
            return (
                response(
                    rule,
                    RuleStatus::Error,
                    format!("failed to process foreach: {e}"),
                ),
                applied,
            );
        }
        let scoped = element.is_object() && fe.element_scope != Some(false);
        let target = if scoped { &**element } else { resource };
        let compiled = fe.compiled.as_deref();
        let preconditions = match (
            compiled.and_then(|c| c.preconditions.as_ref()),
            &fe.preconditions,
        ) {
            (Some(c), _) => Some(c.check(ectx, Mode::Lenient)),
            (None, Some(p)) => Some(check_conditions(p, ectx, Mode::Lenient)),
            (None, None) => None,
        };
        let result = match preconditions {
            Some(Err(e)) => Some(response(
                rule,
                RuleStatus::Error,
                format!("failed to evaluate preconditions: {e}"),
            )),
            Some(Ok(o)) if !o.holds => {
                Some(response(rule, RuleStatus::Skip, "preconditions not met"))
            }
            _ => {
                let body = Body {
                    pattern: fe.pattern.as_ref(),
                    any_pattern: fe.any_pattern.as_ref(),
                    deny: fe.deny.as_ref(),
                    foreach: fe.foreach.as_deref(),
                    compiled,
                };
                run_body(
                    rule,
                    message,
                    &body,
                    ectx,
                    target,
                    false,
                    true,
                    nesting + 1,
                    env,
                )
            }
        };
        match result {
            None => continue,
            Some(r) if r.status == RuleStatus::Skip => continue,
            Some(r) if r.status == RuleStatus::Error => {
                if index < last {
                    continue;
                }
                return (
                    response(
                        rule,
                        RuleStatus::Error,
                        format!("validation failure: {}", r.message),
                    ),
                    applied,
                );
            }
            Some(r) if r.status != RuleStatus::Pass => {
                return (
                    response(
                        rule,
                        RuleStatus::Fail,
                        format!("validation failure: {}", r.message),
                    ),
                    applied,
                );
            }
            Some(_) => applied += 1,
        }
    }
    (response(rule, RuleStatus::Pass, ""), applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message reaches rule responses and PolicyReports: its text is pinned.
    #[test]
    fn message_error_text_is_kept() {
        let e = MessageError {
            rule: "check-labels".to_string(),
            source: VarError {
                expression: "request.x".to_string(),
                message: "boom".to_string(),
                not_found: false,
                bound: false,
            },
        };
        assert_eq!(
            e.to_string(),
            "validation error: variables substitution error in rule check-labels execution error: \
             failed to substitute variable \"request.x\": boom"
        );
    }

    #[test]
    fn element_indexes_are_shared_values_of_the_index() {
        for i in [0, 1, 63, 64, 1000] {
            assert_eq!(*index_value(i), Value::from(i));
        }
        assert!(Arc::ptr_eq(&index_value(5), &index_value(5)), "shared");
        assert!(!Arc::ptr_eq(&index_value(64), &index_value(64)), "made");
    }

    #[test]
    fn pass_messages_rendered_at_load_are_the_rules_own() {
        let body = CompiledBody::default().for_rule("r");
        assert_eq!(passed("r", Some(&body)), "validation rule 'r' passed.");
        assert_eq!(
            passed("other", Some(&body)),
            "validation rule 'other' passed."
        );
        assert_eq!(passed("r", None), "validation rule 'r' passed.");
        assert_eq!(
            any_passed("r", 0, Some(&body)),
            "validation rule 'r' anyPattern[0] passed."
        );
        assert_eq!(
            any_passed("r", 2, Some(&body)),
            "validation rule 'r' anyPattern[2] passed."
        );
        assert_eq!(
            any_passed("x", 0, Some(&body)),
            "validation rule 'x' anyPattern[0] passed."
        );
    }
}
