//! What Kyverno's ValidatingPolicy and Kubernetes' ValidatingAdmissionPolicy share: `matchConstraints` (resource
//! rules, exclusions, namespace and object selectors, `matchPolicy`) and the checks (`matchConditions`, lazily
//! evaluated `variables`, `validations` with their messages).

use policyctl_cel::{Activation, Dialect, EvalError, Limits, Program};
use policyctl_core::admission::Review;
use policyctl_core::policy::source::Document;
use policyctl_core::policy::{
    Action, EvalContext, EvalError as PolicyEvalError, Evaluation, LoadError, PolicyError,
    RuleResult, RuleStatus, Violation,
};
use policyctl_kyverno::matching::selector_matches;
use policyctl_kyverno::spec::LabelSelector;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `matchConstraints` (a policy) or `matchResources` (a binding).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MatchResources {
    #[serde(default)]
    pub resource_rules: Vec<ResourceRule>,
    #[serde(default)]
    pub exclude_resource_rules: Vec<ResourceRule>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub object_selector: Option<LabelSelector>,
    #[serde(default)]
    pub match_policy: Option<String>,
}

/// One `resourceRules` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceRule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub api_versions: Vec<String>,
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// A `{name, expression}` entry (`matchConditions`, `variables`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Named {
    pub name: String,
    pub expression: String,
}

/// A `validations` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValidationSpec {
    pub expression: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub message_expression: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

fn resource_matches(list: &[String], resource: &str, sub: &str) -> bool {
    list.iter().any(|r| {
        let (res, rsub) = r.split_once('/').unwrap_or((r.as_str(), ""));
        (res == "*" || res == resource) && (rsub == sub || (rsub == "*" && !sub.is_empty()))
    })
}

/// Whether a resource rule matches a review. `equivalent` (`matchPolicy: Equivalent`) matches the same group and
/// resource in any version (policyctl does not know which versions the API server converts between).
pub(crate) fn rule_matches(rule: &ResourceRule, review: &Review, equivalent: bool) -> bool {
    let namespace = review.namespace.as_deref().unwrap_or("");
    let scope_ok = match rule.scope.as_deref() {
        Some("Cluster") => namespace.is_empty(),
        Some("Namespaced") => !namespace.is_empty(),
        _ => true,
    };
    scope_ok
        && any_or(&rule.api_groups, &review.resource.group)
        && (equivalent || any_or(&rule.api_versions, &review.resource.version))
        // No operations at all matches every operation (the API server requires them; the Kyverno CLI matches).
        && (rule.operations.is_empty() || any_or(&rule.operations, review.operation_str()))
        && resource_matches(
            &rule.resources,
            &review.resource.resource,
            review.sub_resource.as_deref().unwrap_or(""),
        )
        && (rule.resource_names.is_empty() || rule.resource_names.contains(&review.name))
}

pub(crate) fn labels_of(object: Option<&Value>) -> Option<&Map<String, Value>> {
    object
        .and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
}

impl MatchResources {
    /// Whether `matchPolicy` is `Equivalent` (the Kubernetes default is `Equivalent`, Kyverno's `Exact`).
    pub fn equivalent(&self, default_equivalent: bool) -> bool {
        match self.match_policy.as_deref() {
            Some("Equivalent") => true,
            Some(_) => false,
            None => default_equivalent,
        }
    }

    /// The exclusions and the namespace and object selectors (the resource rules are matched by the caller).
    pub fn selected(&self, review: &Review, ctx: &EvalContext, equivalent: bool) -> bool {
        if self
            .exclude_resource_rules
            .iter()
            .any(|r| rule_matches(r, review, equivalent))
        {
            return false;
        }
        if let Some(sel) = &self.object_selector {
            let new = selector_matches(sel, labels_of(review.object()));
            let old = review.old_object().is_some()
                && selector_matches(sel, labels_of(review.old_object()));
            if !new && !old {
                return false;
            }
        }
        if let Some(sel) = &self.namespace_selector {
            let is_namespace = review.kind.group.is_empty() && review.kind.kind == "Namespace";
            let labels = if is_namespace {
                labels_of(review.subject()).cloned()
            } else {
                match review.namespace.as_deref().filter(|n| !n.is_empty()) {
                    // Cluster-scoped resources are not filtered by namespace selectors.
                    None => return true,
                    Some(ns) => ctx
                        .cluster
                        .namespace(ns)
                        .and_then(|n| labels_of(Some(&n)).cloned()),
                }
            };
            if !selector_matches(sel, labels.as_ref()) {
                return false;
            }
        }
        true
    }

    /// Resource rules (an empty list matches everything, as in a binding's `matchResources`), then
    /// [`MatchResources::selected`].
    pub fn matches(&self, review: &Review, ctx: &EvalContext, equivalent: bool) -> bool {
        (self.resource_rules.is_empty()
            || self
                .resource_rules
                .iter()
                .any(|r| rule_matches(r, review, equivalent)))
            && self.selected(review, ctx, equivalent)
    }
}

/// The namespace object a review is evaluated with: the cluster context's, else one carrying only the name (as the
/// Kyverno CLI builds it); `None` for cluster-scoped resources and for Namespaces themselves.
pub(crate) fn namespace_object(review: &Review, ctx: &EvalContext) -> Option<Value> {
    let ns = review.namespace.as_deref().filter(|n| !n.is_empty())?;
    if review.kind.group.is_empty() && review.kind.kind == "Namespace" {
        return None;
    }
    Some(ctx.cluster.namespace(ns).unwrap_or_else(
        || serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    ))
}

/// One compiled validation.
#[derive(Debug)]
pub(crate) struct Validation {
    pub program: Program,
    pub message: Option<String>,
    pub message_expression: Option<Program>,
}

/// The compiled checks of a policy: `matchConditions`, `variables`, `validations`.
#[derive(Debug)]
pub(crate) struct Checks {
    pub conditions: Vec<(String, Program)>,
    pub variables: Vec<(String, Program)>,
    pub validations: Vec<Validation>,
}

/// What the checks found.
pub(crate) enum Outcome {
    Pass,
    Fail(String),
    Error(EvalError),
    NotMet,
}

/// Errors that are not the expression's own (cost, deadline, internal): never wrapped or swallowed.
pub(crate) fn is_stop(e: &EvalError) -> bool {
    matches!(
        e,
        EvalError::Cost { .. } | EvalError::Deadline | EvalError::Internal(_)
    )
}

/// The most a `messageExpression` result may be (Kubernetes' limit).
const MAX_MESSAGE: usize = 5 * 1024;

/// Compiles the checks of a spec. `prefix` is the field path of the spec (`spec`, or the code block's source);
/// `rewrite` transforms each expression before compiling (Kyverno autogen).
pub(crate) struct CheckSpecs<'a> {
    pub prefix: &'a str,
    pub conditions_field: &'a str,
    pub conditions: &'a [Named],
    pub variables: &'a [Named],
    pub validations: &'a [ValidationSpec],
}

impl CheckSpecs<'_> {
    pub fn compile(
        &self,
        doc: &Document,
        dialect: Dialect,
        rewrite: &dyn Fn(&str) -> String,
    ) -> Result<Checks, LoadError> {
        let prefix = self.prefix;
        let compile = |field: String, source: &str| {
            Program::compile_for(dialect, &rewrite(source))
                .map_err(|e| doc.error_at(field, format!("CEL expression does not compile: {e}")))
        };
        let named = |list: &[Named], what: &str| -> Result<Vec<(String, Program)>, LoadError> {
            list.iter()
                .enumerate()
                .map(|(i, n)| {
                    if n.name.is_empty() {
                        return Err(doc
                            .error_at(format!("{prefix}.{what}[{i}].name"), "a name is required"));
                    }
                    Ok((
                        n.name.clone(),
                        compile(format!("{prefix}.{what}[{i}].expression"), &n.expression)?,
                    ))
                })
                .collect()
        };
        let conditions = named(self.conditions, self.conditions_field)?;
        let variables = named(self.variables, "variables")?;
        let mut validations = Vec::with_capacity(self.validations.len());
        for (i, v) in self.validations.iter().enumerate() {
            let field = format!("{prefix}.validations[{i}]");
            validations.push(Validation {
                program: compile(format!("{field}.expression"), &v.expression)?,
                message: v.message.clone().filter(|m| !m.trim().is_empty()),
                message_expression: v
                    .message_expression
                    .as_deref()
                    .map(|m| compile(format!("{field}.messageExpression"), m))
                    .transpose()?,
            });
        }
        Ok(Checks {
            conditions,
            variables,
            validations,
        })
    }
}

impl Checks {
    /// Runs the match conditions, then the validations in order; the first that does not return `true` fails with
    /// its message (the trimmed `messageExpression` result when it is a non-empty single line of at most 5 KiB, else
    /// the trimmed `message`, else `failed expression: <expression>`).
    pub fn run(&self, activation: &Activation, limits: &Limits) -> Outcome {
        for (name, program) in &self.conditions {
            match activation.evaluate_bool(program, limits) {
                Ok(true) => {}
                Ok(false) => return Outcome::NotMet,
                Err(e) if is_stop(&e) => return Outcome::Error(e),
                Err(e) => {
                    return Outcome::Error(EvalError::Execution(format!(
                        "matchCondition {name}: {e}"
                    )))
                }
            }
        }
        let activation = activation.clone().with_variables(&self.variables);
        for v in &self.validations {
            match activation.evaluate_bool(&v.program, limits) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) if is_stop(&e) => return Outcome::Error(e),
                Err(e) => {
                    return Outcome::Error(EvalError::Execution(format!(
                        "expression '{}' resulted in error: {e}",
                        v.program.source().trim()
                    )))
                }
            }
            let from_expression = match &v.message_expression {
                Some(m) => match activation.evaluate_string(m, limits) {
                    Ok(s) => {
                        let s = s.trim();
                        (!s.is_empty() && s.len() <= MAX_MESSAGE && !s.contains('\n'))
                            .then(|| s.to_string())
                    }
                    Err(e) if is_stop(&e) => return Outcome::Error(e),
                    Err(_) => None,
                },
                None => None,
            };
            return Outcome::Fail(
                from_expression
                    .or_else(|| v.message.as_ref().map(|m| m.trim().to_string()))
                    .unwrap_or_else(|| format!("failed expression: {}", v.program.source().trim())),
            );
        }
        Outcome::Pass
    }
}

/// Records what the checks found in an evaluation: a failure is one violation per validation action (worded by
/// `message_for`), an error is one error under the failure policy (worded by `error_for`), blocking only through an
/// enforcing action. `rule` names the per-rule result when the context explains.
pub(crate) fn record(
    out: &mut Evaluation,
    outcome: Outcome,
    actions: &[Action],
    ctx: &EvalContext,
    rule: &str,
    message_for: &dyn Fn(Action, &str) -> String,
    error_for: &dyn Fn(&str) -> String,
) {
    let (status, message) = match outcome {
        Outcome::NotMet => (RuleStatus::Skip, "match conditions not met".to_string()),
        Outcome::Pass => (RuleStatus::Pass, String::new()),
        Outcome::Fail(message) => {
            for action in actions {
                out.violations.push(Violation {
                    message: message_for(*action, &message),
                    action: *action,
                });
            }
            (RuleStatus::Fail, message)
        }
        Outcome::Error(e) => {
            let error = match &e {
                EvalError::Deadline => PolicyEvalError::Timeout(ctx.deadline.budget()),
                EvalError::Cost { .. } => PolicyEvalError::Budget(error_for(&e.to_string())),
                _ => PolicyEvalError::Engine(error_for(&e.to_string())),
            };
            // An error blocks only through an enforcing (Deny) policy; the decide stage applies the failure policy.
            let action = if actions.contains(&Action::Deny) {
                Action::Deny
            } else if actions.contains(&Action::Warn) {
                Action::Warn
            } else {
                Action::Audit
            };
            out.errors.push(PolicyError { error, action });
            (RuleStatus::Error, e.to_string())
        }
    };
    out.applied |= status != RuleStatus::Skip;
    if ctx.explain {
        out.rules.push(RuleResult {
            rule: rule.to_string(),
            status,
            message,
        });
    }
}
