//! Kyverno `validate.cel` rules and `celPreconditions`, on the shared CEL layer ([`policyctl_cel`]).
//!
//! Kyverno's semantics (its `validate.cel` handler runs the Kubernetes ValidatingAdmissionPolicy validator with
//! failure policy `Fail`):
//! - `celPreconditions` must all hold, else the rule is skipped (`cel preconditions not met`);
//! - DELETE requests are not validated (no rule response);
//! - the expressions run in order; the first one that does not return `true` fails the rule with its `message`, its
//!   `messageExpression`'s result, the rule's `validate.message`, or `failed expression: <expression>`; a CEL runtime
//!   error also fails the rule (Kyverno's validator denies on errors), with the error as message;
//! - running out of the cost budget or past the request deadline is a rule **error** (never a pass or a plain
//!   failure), which the decide stage sends to the policy's failure policy;
//! - variables: `object`, `oldObject`, `request`, `namespaceObject` (the namespace's name and labels, as the Kyverno
//!   CLI builds it without a cluster), `variables` (lazy); `params` is `null` (`paramKind`/`paramRef` rules are
//!   reported unsupported).
use std::sync::Arc;

use policyctl_cel::{Activation, EvalError, Limits, Program, ReviewBindings, Shared};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::admission::Review;

/// Why a CEL rule cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CelRuleError {
    /// The `cel` block does not have the expected shape.
    #[error("{field}: {message}")]
    Spec {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An expression does not compile.
    #[error("{field}: CEL expression does not compile: {source}")]
    Compile {
        /// The field.
        field: String,
        /// The compiler's error.
        source: policyctl_cel::CompileError,
    },
    /// An expression refers to a function, method or identifier the environment does not have.
    #[error("{field}: CEL expression is invalid: {source}")]
    Lint {
        /// The field.
        field: String,
        /// What lint found.
        source: policyctl_cel::lint::LintError,
    },
    /// A feature policyctl does not implement.
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CelSpec {
    #[serde(default)]
    expressions: Vec<ValidationSpec>,
    #[serde(default)]
    param_kind: Option<Value>,
    #[serde(default)]
    param_ref: Option<Value>,
    #[serde(default)]
    variables: Vec<NamedExpression>,
    /// Ignored: `policyctl test` and the webhook evaluate audit annotations nowhere.
    #[serde(default)]
    #[allow(dead_code)]
    audit_annotations: Vec<Value>,
    /// Ignored (it asks Kyverno to generate a ValidatingAdmissionPolicy).
    #[serde(default)]
    #[allow(dead_code)]
    generate_validating_admission_policy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidationSpec {
    expression: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_expression: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedExpression {
    name: String,
    expression: String,
}

#[derive(Debug)]
struct Validation {
    program: Program,
    message: Option<String>,
    message_expression: Option<Program>,
}

/// A compiled `validate.cel` block.
#[derive(Debug)]
pub struct CelValidation {
    validations: Vec<Validation>,
    variables: Vec<(String, Program)>,
    rule_message: Option<String>,
}

/// Compiled `celPreconditions`.
#[derive(Debug)]
pub struct CelPreconditions(Vec<(String, Program)>);

/// Compiles and lints an expression (`validate.cel` and `celPreconditions` run in Kubernetes' environment).
fn compile(field: String, source: &str) -> Result<Program, CelRuleError> {
    let program =
        Program::compile_for(policyctl_cel::Dialect::Kyverno, source).map_err(|source| {
            CelRuleError::Compile {
                field: field.clone(),
                source,
            }
        })?;
    program
        .lint(policyctl_cel::lint::KUBERNETES_VARIABLES)
        .map_err(|source| CelRuleError::Lint { field, source })?;
    Ok(program)
}

fn parse<T: for<'de> Deserialize<'de>>(raw: &Value, field: &str) -> Result<T, CelRuleError> {
    serde_json::from_value(raw.clone()).map_err(|e| CelRuleError::Spec {
        field: field.to_string(),
        message: e.to_string(),
    })
}

impl CelValidation {
    /// Compiles `validate.cel` (`raw`); `rule_message` is `validate.message`.
    pub fn compile(raw: &Value, rule_message: Option<&str>) -> Result<CelValidation, CelRuleError> {
        let spec: CelSpec = parse(raw, "validate.cel")?;
        if spec.param_kind.is_some() || spec.param_ref.is_some() {
            return Err(CelRuleError::Unsupported(
                "validate.cel with paramKind/paramRef (parameter resources) is not supported"
                    .into(),
            ));
        }
        if spec.expressions.is_empty() {
            return Err(CelRuleError::Spec {
                field: "validate.cel.expressions".into(),
                message: "at least one expression is required".into(),
            });
        }
        let mut variables = Vec::with_capacity(spec.variables.len());
        for (i, v) in spec.variables.iter().enumerate() {
            let field = format!("validate.cel.variables[{i}]");
            if v.name.is_empty() {
                return Err(CelRuleError::Spec {
                    field,
                    message: "a variable needs a name".into(),
                });
            }
            variables.push((v.name.clone(), compile(field, &v.expression)?));
        }
        let mut validations = Vec::with_capacity(spec.expressions.len());
        for (i, v) in spec.expressions.iter().enumerate() {
            let field = format!("validate.cel.expressions[{i}]");
            validations.push(Validation {
                program: compile(format!("{field}.expression"), &v.expression)?,
                message: v.message.clone().filter(|m| !m.is_empty()),
                message_expression: v
                    .message_expression
                    .as_deref()
                    .map(|m| compile(format!("{field}.messageExpression"), m))
                    .transpose()?,
            });
        }
        Ok(CelValidation {
            validations,
            variables,
            rule_message: rule_message.map(str::to_string).filter(|m| !m.is_empty()),
        })
    }
}

impl CelPreconditions {
    /// Compiles `celPreconditions` (`raw`, a list of `{name, expression}`).
    pub fn compile(raw: &Value) -> Result<CelPreconditions, CelRuleError> {
        let list: Vec<NamedExpression> = parse(raw, "celPreconditions")?;
        list.iter()
            .enumerate()
            .map(|(i, c)| {
                Ok((
                    c.name.clone(),
                    compile(format!("celPreconditions[{i}].expression"), &c.expression)?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(CelPreconditions)
    }
}

/// What a CEL evaluation concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every expression holds (for preconditions: they all hold).
    Pass,
    /// An expression failed (message).
    Fail(String),
    /// Evaluation could not finish (budget, deadline, interpreter failure).
    Error(String),
}

/// The evaluation input of one rule: the review's shared bindings, the subject when earlier mutate rules changed it,
/// and the namespace.
pub struct Input<'a> {
    /// The review.
    pub review: &'a Review,
    /// The object as patched by earlier mutate rules of the policy, if any.
    pub patched: Option<&'a Value>,
    /// The namespace of the request (`""` for cluster-scoped resources).
    pub namespace: &'a str,
    /// The namespace's labels, when known.
    pub namespace_labels: Option<&'a Map<String, Value>>,
    /// Limits.
    pub limits: Limits,
}

impl Input<'_> {
    fn activation(&self) -> Activation {
        let mut bindings = ReviewBindings::of(self.review);
        if let Some(p) = self.patched {
            let mut b = (*bindings).clone();
            b.object = policyctl_cel::bind::shared(p);
            bindings = Arc::new(b);
        }
        let is_namespace =
            self.review.kind.group.is_empty() && self.review.kind.kind == "Namespace";
        let namespace = if self.namespace.is_empty() || is_namespace {
            Shared::null()
        } else {
            let mut meta = Map::new();
            meta.insert("name".into(), Value::String(self.namespace.to_string()));
            if let Some(l) = self.namespace_labels {
                meta.insert("labels".into(), Value::Object(l.clone()));
            }
            let mut ns = Map::new();
            ns.insert("apiVersion".into(), Value::String("v1".into()));
            ns.insert("kind".into(), Value::String("Namespace".into()));
            ns.insert("metadata".into(), Value::Object(meta));
            policyctl_cel::bind::shared(&Value::Object(ns))
        };
        Activation::new(bindings).with_namespace_object(namespace)
    }
}

fn is_stop(e: &EvalError) -> bool {
    matches!(
        e,
        EvalError::Cost { .. } | EvalError::Deadline | EvalError::Internal(_)
    )
}

impl CelPreconditions {
    /// Whether every precondition holds. An error (including a non-bool result) is an error, as a match condition
    /// under failure policy `Fail` is.
    pub fn check(&self, input: &Input<'_>) -> Verdict {
        let activation = input.activation();
        for (name, program) in &self.0 {
            match activation.evaluate_bool(program, &input.limits) {
                Ok(true) => {}
                Ok(false) => return Verdict::Fail("cel preconditions not met".into()),
                Err(e) => {
                    return Verdict::Error(format!(
                        "failed to evaluate cel precondition {name}: {e}"
                    ))
                }
            }
        }
        Verdict::Pass
    }
}

impl CelValidation {
    /// Runs the expressions.
    pub fn validate(&self, input: &Input<'_>) -> Verdict {
        let activation = input.activation().with_variables(&self.variables);
        for v in &self.validations {
            match activation.evaluate_bool(&v.program, &input.limits) {
                Ok(true) => continue,
                Err(e) if is_stop(&e) => {
                    return Verdict::Error(format!(
                        "expression '{}': {e}",
                        v.program.source().trim()
                    ))
                }
                Err(EvalError::Type { got, .. }) => {
                    return Verdict::Fail(format!(
                        "expression '{}' resulted in a {got}, not a bool",
                        v.program.source().trim()
                    ))
                }
                Err(e) => {
                    return Verdict::Fail(format!(
                        "expression '{}' resulted in error: {e}",
                        v.program.source().trim()
                    ))
                }
                Ok(false) => {}
            }
            let from_expression = match &v.message_expression {
                Some(m) => match activation.evaluate_string(m, &input.limits) {
                    Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                    Err(e) if is_stop(&e) => {
                        return Verdict::Error(format!("messageExpression: {e}"));
                    }
                    _ => None,
                },
                None => None,
            };
            let message = from_expression
                .or_else(|| v.message.clone())
                .or_else(|| self.rule_message.clone())
                .unwrap_or_else(|| format!("failed expression: {}", v.program.source().trim()));
            return Verdict::Fail(message);
        }
        Verdict::Pass
    }
}
