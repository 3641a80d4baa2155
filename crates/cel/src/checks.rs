//! The checks every CEL policy kind runs: `matchConditions`, lazily evaluated `variables` and `validations` with
//! their messages (Kubernetes' ValidatingAdmissionPolicy, Kyverno's ValidatingPolicy, Gatekeeper's
//! `K8sNativeValidation`), and how their outcome becomes the facts of an [`Evaluation`].

use policyctl_core::admission::Reason;
use policyctl_core::policy::source::Document;
use policyctl_core::policy::{
    Action, EvalContext, EvalError as PolicyEvalError, Evaluation, LoadError, PolicyError,
    RuleResult, RuleStatus, Violation,
};
use serde::Deserialize;

use crate::{Activation, Dialect, EvalError, Limits, Program};

/// A `{name, expression}` entry (`matchConditions`, `variables`).
#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    /// `name`.
    pub name: String,
    /// `expression`.
    pub expression: String,
}

/// A `validations` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationSpec {
    /// `expression`.
    pub expression: String,
    /// `message`.
    #[serde(default)]
    pub message: Option<String>,
    /// `messageExpression`.
    #[serde(default)]
    pub message_expression: Option<String>,
    /// `reason` (ValidatingAdmissionPolicy).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One compiled validation.
#[derive(Debug)]
pub struct Validation {
    /// `expression`.
    pub program: Program,
    /// `message`, when not blank.
    pub message: Option<String>,
    /// `messageExpression`.
    pub message_expression: Option<Program>,
    /// `reason`, when the policy kind honours it (ValidatingAdmissionPolicy): the status of the denial.
    pub reason: Option<Reason>,
}

/// The compiled checks of a policy: `matchConditions`, `variables`, `validations`.
#[derive(Debug)]
pub struct Checks {
    /// `matchConditions`, by name.
    pub conditions: Vec<(String, Program)>,
    /// `variables`, by name.
    pub variables: Vec<(String, Program)>,
    /// `validations`, in order.
    pub validations: Vec<Validation>,
}

/// What the checks found.
pub enum Outcome {
    /// Every validation held.
    Pass,
    /// A validation failed, with its message and its `reason` (when the kind honours it).
    Fail(String, Option<Reason>),
    /// An expression could not be evaluated.
    Error(EvalError),
    /// A match condition did not hold: not validated.
    NotMet,
}

/// Errors that are not the expression's own (cost, deadline, internal): never wrapped or swallowed.
pub fn is_stop(e: &EvalError) -> bool {
    matches!(
        e,
        EvalError::Cost { .. } | EvalError::Deadline | EvalError::Internal(_)
    )
}

/// The most a `messageExpression` result may be (Kubernetes' limit).
const MAX_MESSAGE: usize = 5 * 1024;

/// Compiles the checks of a spec. `prefix` is the field path of the spec (`spec`, or the code block's source);
/// `rewrite` transforms each expression before compiling (Kyverno autogen).
pub struct CheckSpecs<'a> {
    /// The field path of the spec in its document (`spec`).
    pub prefix: &'a str,
    /// The name of the conditions field (`matchConditions`; Gatekeeper's `matchCondition`).
    pub conditions_field: &'a str,
    /// The match conditions.
    pub conditions: &'a [Named],
    /// The variables.
    pub variables: &'a [Named],
    /// The validations.
    pub validations: &'a [ValidationSpec],
    /// Variables the policy kind provides besides its declared ones (Gatekeeper's `params`, `anyObject`).
    pub provided: &'a [&'a str],
    /// Whether a validation's `reason` sets the status of the denial (ValidatingAdmissionPolicy; the kind checks the
    /// names).
    pub reasons: bool,
    /// The top-level identifiers the policy kind binds ([`crate::lint::KUBERNETES_VARIABLES`],
    /// [`crate::lint::KYVERNO_VARIABLES`]); any other free identifier is a load error.
    pub identifiers: &'a [&'a str],
}

impl CheckSpecs<'_> {
    /// Compiles every expression in `dialect`, after `rewrite`; an expression that does not compile is an error
    /// naming its field.
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
                reason: v
                    .reason
                    .as_deref()
                    .filter(|_| self.reasons)
                    .and_then(Reason::from_name),
            });
        }
        let declared: Vec<&str> = self
            .variables
            .iter()
            .map(|v| v.name.as_str())
            .chain(self.provided.iter().copied())
            .collect();
        let mut programs: Vec<(String, &Program)> = Vec::new();
        for (i, (_, p)) in conditions.iter().enumerate() {
            programs.push((
                format!("{prefix}.{}[{i}].expression", self.conditions_field),
                p,
            ));
        }
        for (i, (_, p)) in variables.iter().enumerate() {
            programs.push((format!("{prefix}.variables[{i}].expression"), p));
        }
        for (i, v) in validations.iter().enumerate() {
            programs.push((format!("{prefix}.validations[{i}].expression"), &v.program));
            if let Some(m) = &v.message_expression {
                programs.push((format!("{prefix}.validations[{i}].messageExpression"), m));
            }
        }
        for (field, program) in programs {
            check_references(doc, prefix, field, program, &declared, self.identifiers)?;
        }
        Ok(Checks {
            conditions,
            variables,
            validations,
        })
    }
}

/// The load-time checks of one compiled expression at `field`: every `variables.<name>` it reads is in `declared`
/// (the names of `{prefix}.variables` and those the kind provides), and [`Program::lint`] finds nothing with the
/// kind's top-level `identifiers`.
pub fn check_references(
    doc: &Document,
    prefix: &str,
    field: String,
    program: &Program,
    declared: &[&str],
    identifiers: &[&str],
) -> Result<(), LoadError> {
    // A typo would otherwise only fail at admission (and then under the failure policy).
    if let Some(name) = program
        .variable_references()
        .into_iter()
        .find(|n| !declared.contains(&n.as_str()))
    {
        let hint = match policyctl_core::policy::strict::suggest(&name, declared.iter().copied()) {
            Some(s) => format!(" (did you mean {s:?}?)"),
            None => String::new(),
        };
        return Err(doc.error_at(
            field,
            format!("variables.{name} is not declared in {prefix}.variables{hint}"),
        ));
    }
    program
        .lint(identifiers)
        .map_err(|e| doc.error_at(field, format!("CEL expression is invalid: {e}")))
}

impl Checks {
    /// Runs the match conditions, then the validations in order; the first that does not return `true` fails with
    /// its message (the trimmed `messageExpression` result when it is a non-empty single line of at most 5 KiB, else
    /// the trimmed `message`, else `failed expression: <expression>`).
    pub fn run(&self, activation: &Activation, limits: &Limits) -> Outcome {
        // Variables are lazy: declaring them costs nothing, and match conditions may use them (as in Kubernetes).
        let activation = activation.clone().with_variables(&self.variables);
        if let Some(outcome) = self.unmet(&activation, limits) {
            return outcome;
        }
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
                v.reason,
            );
        }
        Outcome::Pass
    }

    /// The match conditions: `None` when they all hold, else what stops the checks (not met, or an error).
    fn unmet(&self, activation: &Activation, limits: &Limits) -> Option<Outcome> {
        for (name, program) in &self.conditions {
            match activation.evaluate_bool(program, limits) {
                Ok(true) => {}
                Ok(false) => return Some(Outcome::NotMet),
                Err(e) if is_stop(&e) => return Some(Outcome::Error(e)),
                Err(e) => {
                    return Some(Outcome::Error(EvalError::Execution(format!(
                        "matchCondition {name}: {e}"
                    ))))
                }
            }
        }
        None
    }

    /// The checks of Kyverno's authorization modes (ValidatingPolicy `evaluation.mode` HTTP and Envoy): the match
    /// conditions, then the validations in order, each returning a response ([`crate::authz`]) or `null`. The first
    /// response decides: allowed passes, denied fails with its body or reason. All `null` passes (Kyverno Authz
    /// allows a request no policy decides). Any other result is an error.
    pub fn run_responses(&self, activation: &Activation, limits: &Limits) -> Outcome {
        let activation = activation.clone().with_variables(&self.variables);
        if let Some(outcome) = self.unmet(&activation, limits) {
            return outcome;
        }
        for v in &self.validations {
            match activation.evaluate(&v.program, limits) {
                Ok(crate::CelValue::Null) => continue,
                Ok(response) => {
                    return match crate::authz::verdict(&response) {
                        Ok(crate::authz::Verdict::Allowed) => Outcome::Pass,
                        Ok(crate::authz::Verdict::Denied(message)) => Outcome::Fail(message, None),
                        Err(crate::authz::NotAResponse { got }) => {
                            Outcome::Error(EvalError::Type {
                                want: "CheckResponse or null",
                                got,
                            })
                        }
                    }
                }
                Err(e) if is_stop(&e) => return Outcome::Error(e),
                Err(e) => {
                    return Outcome::Error(EvalError::Execution(format!(
                        "expression '{}' resulted in error: {e}",
                        v.program.source().trim()
                    )))
                }
            }
        }
        Outcome::Pass
    }
}

/// Records what the checks found in an evaluation: a failure is one violation per validation action (worded by
/// `message_for`), an error is one error under the failure policy (worded by `error_for`), blocking only through an
/// enforcing action. `rule` names the per-rule result when the context explains.
pub fn record(
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
        Outcome::Fail(message, reason) => {
            for action in actions {
                out.violations.push(Violation {
                    message: message_for(*action, &message),
                    action: *action,
                    reason,
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
