//! Kubernetes `admissionregistration.k8s.io` ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding (v1,
//! v1beta1), on the shared CEL layer.
//!
//! One policyctl policy per ValidatingAdmissionPolicy, evaluated once per binding that names it (in document order):
//! the policy's `matchConstraints` (Kubernetes' default `matchPolicy` is `Equivalent`) and the binding's
//! `matchResources` must both match; the binding's `paramRef` picks the params, each param is one evaluation; the
//! policy's `matchConditions`, `variables` and `validations` run as in [`crate::common`]. A failed validation is one
//! violation per binding `validationActions` entry, worded as the API server words it (`ValidatingAdmissionPolicy
//! 'p' with binding 'b' denied request: <message>` for Deny, `Validation failed for ValidatingAdmissionPolicy 'p'
//! with binding 'b': <message>` for Warn and Audit). Errors go to the policy's `failurePolicy` (default `Fail`).
//!
//! Params: documents of the policy's `paramKind` in the policy set (any file of the set; a test's `paramResources`),
//! else a GET through the cluster context. A binding's `paramRef` selects by `name` or `selector`, in `namespace`
//! (default: the request's namespace; a param document without a namespace matches any). No param found is an error
//! under the failure policy when `parameterNotFoundAction` is `Deny` (the default), a pass when `Allow`.
//!
//! `auditAnnotations` are evaluated when the policy applied and reported as Audit facts
//! (`<policy>/<key>: <value>`; a `null` or empty value is omitted).
//!
//! Bindings without their policy and policies without a binding are load warnings. An unbound policy is still
//! enforced, as the Kyverno CLI does, with `validationActions: [Deny]` and no params (the API server would not run
//! it).

use std::collections::BTreeMap;
use std::sync::Arc;

use policyctl_cel::{Activation, Dialect, EvalError, Limits, Program, ReviewBindings, Shared};
use policyctl_core::admission::Review;
use policyctl_core::engine::{Built, Engine, EngineInput, LoadOptions};
use policyctl_core::policy::source::Document;
use policyctl_core::policy::{
    Action, EvalContext, Evaluation, FailurePolicy, LoadError, Policy, PolicyInfo, RuleResult,
    RuleStatus, Violation,
};
use policyctl_core::select::Scope;
use serde::Deserialize;
use serde_json::Value;

use crate::common::{
    is_stop, namespace_object, record, CheckSpecs, Checks, MatchResources, Named, Outcome,
    ValidationSpec,
};
use crate::params::{self, ParamKind, ParamRef};
use crate::strict;

/// The engine name.
pub const ENGINE: &str = "vap";

const API_VERSIONS: [&str; 2] = [
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1beta1",
];

/// Whether an apiVersion/kind is a ValidatingAdmissionPolicy.
pub fn is_validating_admission_policy(api_version: &str, kind: &str) -> bool {
    API_VERSIONS.contains(&api_version) && kind == "ValidatingAdmissionPolicy"
}

/// Whether an apiVersion/kind is a ValidatingAdmissionPolicyBinding.
pub fn is_binding(api_version: &str, kind: &str) -> bool {
    API_VERSIONS.contains(&api_version) && kind == "ValidatingAdmissionPolicyBinding"
}

/// The ValidatingAdmissionPolicy engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidatingAdmissionPolicyEngine;

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditAnnotationSpec {
    key: String,
    value_expression: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicySpec {
    #[serde(default)]
    param_kind: Option<ParamKind>,
    #[serde(default)]
    match_constraints: Option<MatchResources>,
    #[serde(default)]
    match_conditions: Vec<Named>,
    #[serde(default)]
    variables: Vec<Named>,
    #[serde(default)]
    validations: Vec<ValidationSpec>,
    #[serde(default)]
    audit_annotations: Vec<AuditAnnotationSpec>,
    #[serde(default)]
    failure_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PolicyDoc {
    metadata: Metadata,
    #[serde(default)]
    spec: PolicySpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingSpec {
    #[serde(default)]
    policy_name: String,
    #[serde(default)]
    param_ref: Option<ParamRef>,
    #[serde(default)]
    match_resources: Option<MatchResources>,
    #[serde(default)]
    validation_actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct BindingDoc {
    metadata: Metadata,
    #[serde(default)]
    spec: BindingSpec,
}

/// A loaded binding.
#[derive(Debug, Clone)]
struct Binding {
    /// Empty for the implicit binding of an unbound policy.
    name: String,
    policy: String,
    param_ref: Option<ParamRef>,
    match_resources: Option<MatchResources>,
    actions: Vec<Action>,
}

/// A compiled ValidatingAdmissionPolicy with its bindings.
#[derive(Debug)]
pub struct ValidatingAdmissionPolicy {
    info: PolicyInfo,
    constraints: MatchResources,
    equivalent: bool,
    checks: Checks,
    audit_annotations: Vec<(String, Program)>,
    param_kind: Option<ParamKind>,
    bindings: Vec<Binding>,
    /// The documents of `paramKind` in the policy set.
    params: Vec<Value>,
}

impl Engine for ValidatingAdmissionPolicyEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_validating_admission_policy(api_version, kind) || is_binding(api_version, kind)
    }

    fn param_kinds(&self, documents: &[Document]) -> Vec<(String, String)> {
        params::param_kinds(documents, is_validating_admission_policy)
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy",
            "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding",
            "admissionregistration.k8s.io/v1beta1 ValidatingAdmissionPolicy",
            "admissionregistration.k8s.io/v1beta1 ValidatingAdmissionPolicyBinding",
        ]
    }

    fn build(&self, input: EngineInput, _options: &LoadOptions) -> Built {
        let mut built = Built::default();
        let mut policies: Vec<(Document, ValidatingAdmissionPolicy)> = Vec::new();
        let mut bindings: Vec<(Document, Binding)> = Vec::new();
        for doc in input.documents.iter() {
            let is_policy = is_validating_admission_policy(&doc.api_version, &doc.kind);
            let shape = if is_policy {
                &strict::VAP
            } else {
                &strict::BINDING
            };
            let unknown = policyctl_core::policy::strict::check(doc, "", &doc.value, shape);
            if !unknown.is_empty() {
                built.errors.extend(unknown);
                continue;
            }
            let loaded = if is_policy {
                ValidatingAdmissionPolicy::from_document(doc)
                    .map(|p| policies.push((doc.clone(), p)))
            } else {
                Binding::from_document(doc).map(|(b, warnings)| {
                    built.warnings.extend(warnings);
                    bindings.push((doc.clone(), b))
                })
            };
            if let Err(e) = loaded {
                built.errors.push(e);
            }
        }
        for (doc, binding) in &bindings {
            if !policies.iter().any(|(_, p)| p.info.name == binding.policy) {
                built.warnings.push(doc.error_at(
                    "spec.policyName",
                    format!(
                        "no ValidatingAdmissionPolicy named {:?} in the policy set: this binding does nothing",
                        binding.policy
                    ),
                ));
            }
        }
        for (doc, mut policy) in policies {
            policy.bindings = bindings
                .iter()
                .filter(|(_, b)| b.policy == policy.info.name)
                .map(|(_, b)| b.clone())
                .collect();
            if policy.bindings.is_empty() {
                built.warnings.push(doc.error_at(
                    "metadata.name",
                    "no ValidatingAdmissionPolicyBinding binds this policy: policyctl enforces it with \
                     validationActions [Deny] and no params, as the Kyverno CLI does (the API server would not run it)",
                ));
                policy.bindings.push(Binding {
                    name: String::new(),
                    policy: policy.info.name.clone(),
                    param_ref: None,
                    match_resources: None,
                    actions: vec![Action::Deny],
                });
            }
            if let Some(kind) = &policy.param_kind {
                policy.params = kind.documents(&input.params);
                if policy.bindings.iter().any(|b| b.param_ref.is_none()) {
                    built.warnings.push(doc.error_at(
                        "spec.paramKind",
                        "the policy has a paramKind but a binding has no paramRef: its evaluations fail under \
                         the failure policy",
                    ));
                }
            }
            built.policies.push(Arc::new(policy));
        }
        built
    }
}

fn parse_actions(doc: &Document, list: &[String]) -> Result<Vec<Action>, LoadError> {
    let mut actions = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let action = match a.as_str() {
            "Deny" => Action::Deny,
            "Warn" => Action::Warn,
            "Audit" => Action::Audit,
            other => {
                return Err(doc.error_at(
                    format!("spec.validationActions[{i}]"),
                    format!("unknown validation action {other:?} (Deny, Warn or Audit)"),
                ))
            }
        };
        if actions.contains(&action) {
            return Err(doc.error_at(
                format!("spec.validationActions[{i}]"),
                format!("duplicate validation action {a:?}"),
            ));
        }
        actions.push(action);
    }
    if actions.contains(&Action::Deny) && actions.contains(&Action::Warn) {
        return Err(doc.error_at(
            "spec.validationActions",
            "Deny and Warn may not be used together",
        ));
    }
    Ok(actions)
}

impl Binding {
    /// A binding and its load warnings.
    fn from_document(doc: &Document) -> Result<(Binding, Vec<LoadError>), LoadError> {
        let parsed: BindingDoc = doc.parse()?;
        if parsed.metadata.name.is_empty() {
            return Err(doc.error_at("metadata.name", "a binding needs a name"));
        }
        if parsed.spec.policy_name.is_empty() {
            return Err(doc.error_at("spec.policyName", "the policy to bind is required"));
        }
        if let Some(r) = &parsed.spec.param_ref {
            r.check(doc, "spec.paramRef")?;
        }
        let mut warnings = Vec::new();
        let mut actions = parse_actions(doc, &parsed.spec.validation_actions)?;
        if actions.is_empty() {
            // The API server requires them; the Kyverno CLI denies.
            warnings.push(doc.error_at(
                "spec.validationActions",
                "no validation actions (the API server requires at least one): policyctl uses [Deny]",
            ));
            actions.push(Action::Deny);
        }
        Ok((
            Binding {
                name: parsed.metadata.name,
                policy: parsed.spec.policy_name,
                param_ref: parsed.spec.param_ref,
                match_resources: parsed.spec.match_resources,
                actions,
            },
            warnings,
        ))
    }
}

impl ValidatingAdmissionPolicy {
    /// Compiles a ValidatingAdmissionPolicy document (without bindings).
    fn from_document(doc: &Document) -> Result<ValidatingAdmissionPolicy, LoadError> {
        let parsed: PolicyDoc = doc.parse()?;
        let name = parsed.metadata.name.clone();
        if name.is_empty() {
            return Err(doc.error_at("metadata.name", "a ValidatingAdmissionPolicy needs a name"));
        }
        let spec = &parsed.spec;
        let constraints = spec.match_constraints.clone().unwrap_or_default();
        if constraints.resource_rules.is_empty() {
            return Err(doc.error_at(
                "spec.matchConstraints.resourceRules",
                "at least one resource rule is required",
            ));
        }
        if spec.validations.is_empty() && spec.audit_annotations.is_empty() {
            return Err(doc.error_at(
                "spec.validations",
                "at least one validation or audit annotation is required",
            ));
        }
        if let Some(k) = &spec.param_kind {
            k.check(doc, "spec.paramKind")?;
        }
        for (i, v) in spec.validations.iter().enumerate() {
            if let Some(r) = v.reason.as_deref() {
                if policyctl_core::admission::Reason::from_name(r).is_none() {
                    let names: Vec<&str> = policyctl_core::admission::Reason::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect();
                    return Err(doc.error_at(
                        format!("spec.validations[{i}].reason"),
                        format!("unknown reason {r:?} (one of {})", names.join(", ")),
                    ));
                }
            }
        }
        let failure_policy = spec
            .failure_policy
            .as_deref()
            .map(str::parse::<FailurePolicy>)
            .transpose()
            .map_err(|e| doc.error_at("spec.failurePolicy", e))?
            .unwrap_or(FailurePolicy::Fail);
        let checks = CheckSpecs {
            prefix: "spec",
            conditions_field: "matchConditions",
            conditions: &spec.match_conditions,
            variables: &spec.variables,
            validations: &spec.validations,
            provided: &[],
            reasons: true,
            identifiers: policyctl_cel::lint::KUBERNETES_VARIABLES,
        }
        .compile(doc, Dialect::Kubernetes, &|s| s.to_string())?;
        let mut audit_annotations = Vec::new();
        for (i, a) in spec.audit_annotations.iter().enumerate() {
            if a.key.is_empty() {
                return Err(doc.error_at(
                    format!("spec.auditAnnotations[{i}].key"),
                    "a key is required",
                ));
            }
            let field = format!("spec.auditAnnotations[{i}].valueExpression");
            let program =
                Program::compile_for(Dialect::Kubernetes, &a.value_expression).map_err(|e| {
                    doc.error_at(&field, format!("CEL expression does not compile: {e}"))
                })?;
            program
                .lint(policyctl_cel::lint::KUBERNETES_VARIABLES)
                .map_err(|e| doc.error_at(&field, format!("CEL expression is invalid: {e}")))?;
            audit_annotations.push((a.key.clone(), program));
        }
        Ok(ValidatingAdmissionPolicy {
            info: PolicyInfo {
                name,
                kind: doc.kind.clone(),
                engine: ENGINE,
                source: doc.source.clone(),
                failure_policy: Some(failure_policy),
                annotations: parsed.metadata.annotations.clone(),
            },
            equivalent: constraints.equivalent(true),
            constraints,
            checks,
            audit_annotations,
            param_kind: spec.param_kind.clone(),
            bindings: Vec::new(),
            params: Vec::new(),
        })
    }

    /// The params a binding selects for a review: `Ok(None)` when the policy has no `paramKind`.
    fn params_for(
        &self,
        binding: &Binding,
        review: &Review,
        ctx: &EvalContext,
    ) -> Result<Option<Vec<Value>>, String> {
        let Some(kind) = &self.param_kind else {
            return Ok(None);
        };
        let Some(r) = &binding.param_ref else {
            return Err(format!(
                "the policy has paramKind {} {} but its binding has no paramRef",
                kind.api_version, kind.kind
            ));
        };
        r.select(kind, &self.params, review, ctx).map(Some)
    }
}

impl ValidatingAdmissionPolicy {
    /// `ValidatingAdmissionPolicy 'p'` and, for a real binding, ` with binding 'b'`.
    fn subject(&self, binding: &Binding) -> String {
        let policy = format!("ValidatingAdmissionPolicy '{}'", self.info.name);
        if binding.name.is_empty() {
            policy
        } else {
            format!("{policy} with binding '{}'", binding.name)
        }
    }

    fn rule_name(&self, binding: &Binding) -> String {
        if binding.name.is_empty() {
            self.info.name.clone()
        } else {
            binding.name.clone()
        }
    }

    fn evaluate_binding(
        &self,
        binding: &Binding,
        review: &Review,
        ctx: &EvalContext,
        base: &Activation,
        limits: &Limits,
        out: &mut Evaluation,
    ) {
        let rule = self.rule_name(binding);
        let subject = self.subject(binding);
        let denied = format!("{subject} denied request");
        let warned = format!("Validation failed for {subject}");
        let message_for = |action: Action, m: &str| match action {
            Action::Deny => format!("{denied}: {m}"),
            _ => format!("{warned}: {m}"),
        };
        let error_for = |e: &str| format!("{denied}: {e}");
        let params = match self.params_for(binding, review, ctx) {
            Ok(None) => vec![Shared::null()],
            Ok(Some(found)) if found.is_empty() => {
                let allow = binding
                    .param_ref
                    .as_ref()
                    .is_some_and(ParamRef::allows_missing);
                let outcome = if allow {
                    Outcome::Pass
                } else {
                    Outcome::Error(EvalError::Execution(
                        "no params found for policy binding with `Deny` parameterNotFoundAction"
                            .to_string(),
                    ))
                };
                record(
                    out,
                    outcome,
                    &binding.actions,
                    ctx,
                    &rule,
                    &message_for,
                    &error_for,
                );
                return;
            }
            Ok(Some(found)) => found.iter().map(policyctl_cel::bind::shared).collect(),
            Err(e) => {
                record(
                    out,
                    Outcome::Error(EvalError::Execution(e)),
                    &binding.actions,
                    ctx,
                    &rule,
                    &message_for,
                    &error_for,
                );
                return;
            }
        };
        for param in params {
            let activation = base.clone().with_params(param);
            let outcome = self.checks.run(&activation, limits);
            let applied = !matches!(outcome, Outcome::NotMet);
            let stop = matches!(&outcome, Outcome::Error(e) if is_stop(e));
            record(
                out,
                outcome,
                &binding.actions,
                ctx,
                &rule,
                &message_for,
                &error_for,
            );
            if stop {
                return;
            }
            if applied {
                self.audit(&activation, limits, out);
            }
        }
    }

    /// `auditAnnotations`, reported as Audit facts.
    fn audit(&self, activation: &Activation, limits: &Limits, out: &mut Evaluation) {
        if self.audit_annotations.is_empty() {
            return;
        }
        let activation = activation.clone().with_variables(&self.checks.variables);
        for (key, program) in &self.audit_annotations {
            let message = match activation.evaluate(program, limits) {
                Ok(policyctl_cel::CelValue::Null) => continue,
                Ok(policyctl_cel::CelValue::String(s)) if s.is_empty() => continue,
                Ok(policyctl_cel::CelValue::String(s)) => format!("{}/{key}: {s}", self.info.name),
                Ok(other) => format!(
                    "{}/{key}: valueExpression must return a string or null, got {}",
                    self.info.name,
                    policyctl_cel::type_name(&other)
                ),
                Err(e) => format!("{}/{key}: {e}", self.info.name),
            };
            out.violations.push(Violation {
                message,
                action: Action::Audit,
                reason: None,
            });
        }
    }
}

impl Policy for ValidatingAdmissionPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }

    fn scope(&self) -> Scope {
        // Bindings only narrow the policy's own constraints.
        crate::common::scope_of(&self.constraints.resource_rules)
    }

    fn validate(&self, review: &Review, ctx: &EvalContext) -> Evaluation {
        let mut out = Evaluation::skip();
        if !self.constraints.matches(review, ctx, self.equivalent) {
            return out;
        }
        let bindings: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| {
                b.match_resources
                    .as_ref()
                    .is_none_or(|m| m.matches(review, ctx, m.equivalent(true)))
            })
            .collect();
        if bindings.is_empty() {
            // The policy matched but no binding does: a skip, as the Kyverno CLI reports it.
            if ctx.explain {
                out.rules = self
                    .bindings
                    .iter()
                    .map(|b| RuleResult {
                        rule: self.rule_name(b),
                        status: RuleStatus::Skip,
                        message: "the binding's matchResources do not match".to_string(),
                    })
                    .collect();
            }
            return out;
        }
        let namespace = namespace_object(review, ctx)
            .map(|n| policyctl_cel::bind::shared(&n))
            .unwrap_or_else(Shared::null);
        let base = Activation::new(ReviewBindings::of(review)).with_namespace_object(namespace);
        let limits = Limits::until(ctx.deadline.instant());
        for binding in bindings {
            self.evaluate_binding(binding, review, ctx, &base, &limits, &mut out);
        }
        out
    }
}

#[cfg(test)]
#[path = "vap_tests.rs"]
mod tests;
