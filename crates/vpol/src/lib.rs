//! Kyverno `policies.kyverno.io` ValidatingPolicy (v1alpha1, v1beta1, v1), on the shared CEL layer
//! ([`policyctl_cel`]).
//!
//! A ValidatingPolicy is a ValidatingAdmissionPolicy without a binding: `matchConstraints` (resource rules by group,
//! version, resource and subresource, operations, resource names, scope; `excludeResourceRules`; namespace and
//! object selectors), `matchConditions`, lazily evaluated `variables`, `validations` (`expression`, `message`,
//! `messageExpression`), `validationActions` (Deny, Warn, Audit) and `failurePolicy`.
//!
//! Evaluation: a request the constraints do not match, or whose `matchConditions` do not all hold, is not validated.
//! The validations run in order; the first that does not return `true` fails the policy with its message (or its
//! `messageExpression`'s result, or `failed expression: <expression>`), reported once per validation action. A CEL
//! runtime error, the cost budget or the request deadline running out is an error, which the decide stage sends to
//! the failure policy (default `Fail`).
//!
//! Autogen: a policy that matches only Pods also runs on Pod controllers (Deployment, DaemonSet, StatefulSet,
//! ReplicaSet, Job; CronJob), unless `autogen.podControllers.controllers` says otherwise. As in Kyverno, the
//! expressions are rewritten textually: `object.spec` → `object.spec.template.spec`, `object.metadata` →
//! `object.spec.template.metadata` except `object.metadata.namespace`, the same for `oldObject`, and
//! `spec.jobTemplate.spec.template` for CronJobs.
//!
//! Kyverno's CEL libraries: `resource.Get`/`resource.List` (API GETs through the cluster context; a test's context
//! file when testing), `image.GetMetadata` (a test's context file) and `parseServiceAccount`.
//!
//! Evaluation modes: with `evaluation.mode` `JSON`, `HTTP` or `Envoy` the policy checks payloads
//! ([`Policy::validate_payload`], `object` = the payload) and never admission requests; it needs no resource rules.
//! In `HTTP` and `Envoy` the validations return Kyverno Authz responses ([`policyctl_cel::authz`]) or `null`, and the
//! first response decides ([`policyctl_cel::checks::Checks::run_responses`]).
//!
//! The matching and the checks are shared with Kubernetes' ValidatingAdmissionPolicy ([`vap`]).
//!
//! Not supported: Kyverno's other CEL libraries (`http.Get`, `image()`, `globalContext`, `resource.Post`, …),
//! `auditAnnotations` (ignored), `matchPolicy: Equivalent` (only the exact resource matches).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod common;
pub mod exception;
pub mod params;
pub mod strict;
pub mod vap;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{
    namespace_object, rule_matches, CheckSpecs, Checks, MatchResources, Named, ResourceRule,
    ValidationSpec,
};
use policyctl_cel::kyverno::DataError;
use policyctl_cel::{Activation, Dialect, Limits, ReviewBindings, Shared};
use policyctl_core::admission::Review;
use policyctl_core::engine::{Built, Engine, EngineInput, LoadOptions};
use policyctl_core::policy::source::Document;
use policyctl_core::policy::{
    Action, EvalContext, Evaluation, FailurePolicy, LoadError, PayloadMode, Policy, PolicyInfo,
    RuleResult, RuleStatus,
};
use policyctl_core::select::Scope;
use serde::Deserialize;
use serde_json::Value;

/// The engine name.
pub const ENGINE: &str = "kyverno-vpol";

/// Whether an apiVersion/kind is a ValidatingPolicy.
pub fn is_validating_policy(api_version: &str, kind: &str) -> bool {
    matches!(
        api_version,
        "policies.kyverno.io/v1alpha1" | "policies.kyverno.io/v1beta1" | "policies.kyverno.io/v1"
    ) && kind == "ValidatingPolicy"
}

/// The ValidatingPolicy engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidatingPolicyEngine;

impl Engine for ValidatingPolicyEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_validating_policy(api_version, kind)
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "policies.kyverno.io/v1alpha1 ValidatingPolicy",
            "policies.kyverno.io/v1beta1 ValidatingPolicy",
            "policies.kyverno.io/v1 ValidatingPolicy",
        ]
    }

    fn param_kinds(&self, _documents: &[Document]) -> Vec<(String, String)> {
        exception::exception_kinds()
    }

    fn build(&self, input: EngineInput, _options: &LoadOptions) -> Built {
        exception::build_excepted(
            &input,
            "ValidatingPolicy",
            &strict::POLICY,
            ValidatingPolicy::from_document,
            |policy, exceptions| policy.exceptions = exceptions,
        )
    }
}

#[derive(Debug, Deserialize)]
struct PolicyDoc {
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    match_constraints: Option<MatchResources>,
    #[serde(default)]
    match_conditions: Vec<Named>,
    #[serde(default)]
    variables: Vec<Named>,
    #[serde(default)]
    validations: Vec<ValidationSpec>,
    #[serde(default)]
    validation_actions: Vec<String>,
    #[serde(default)]
    failure_policy: Option<String>,
    #[serde(default)]
    evaluation: Option<EvaluationSpec>,
    #[serde(default)]
    autogen: Option<AutogenSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EvaluationSpec {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    admission: Option<Enabled>,
}

#[derive(Debug, Default, Deserialize)]
struct Enabled {
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AutogenSpec {
    #[serde(default)]
    pod_controllers: Option<PodControllers>,
}

#[derive(Debug, Default, Deserialize)]
struct PodControllers {
    #[serde(default)]
    controllers: Option<Vec<String>>,
}

/// One evaluated form of the policy: as written, or autogen's for Pod controllers or CronJobs.
#[derive(Debug)]
struct Variant {
    /// The rule name reported: the policy's name, `autogen-<name>` or `autogen-cronjob-<name>`.
    rule: String,
    rules: Vec<ResourceRule>,
    checks: Checks,
}

/// A compiled ValidatingPolicy.
#[derive(Debug)]
pub struct ValidatingPolicy {
    info: PolicyInfo,
    variants: Vec<Variant>,
    /// Exclusions and selectors (the resource rules are the variants').
    constraints: MatchResources,
    actions: Vec<Action>,
    admission: bool,
    /// The payloads it evaluates instead of admission requests (`evaluation.mode` JSON, HTTP, Envoy).
    mode: Option<PayloadMode>,
    /// The CEL PolicyExceptions that name this policy.
    exceptions: Vec<Arc<exception::CelException>>,
}

const POD_CONTROLLERS: [(&str, &str, &str); 7] = [
    ("Deployment", "apps", "deployments"),
    ("DaemonSet", "apps", "daemonsets"),
    ("StatefulSet", "apps", "statefulsets"),
    ("ReplicaSet", "apps", "replicasets"),
    ("Job", "batch", "jobs"),
    ("ReplicationController", "", "replicationcontrollers"),
    ("CronJob", "batch", "cronjobs"),
];

/// The Pod controllers autogen covers by default.
pub const DEFAULT_CONTROLLERS: [&str; 6] = [
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

/// Autogen's textual rewrite of one expression.
pub fn autogen_rewrite(expression: &str, cronjob: bool) -> String {
    let template = if cronjob {
        "spec.jobTemplate.spec.template"
    } else {
        "spec.template"
    };
    let mut out = expression.to_string();
    for (i, root) in ["object", "oldObject"].iter().enumerate() {
        let keep = format!("\u{0}{i}\u{0}");
        out = out
            .replace(&format!("{root}.metadata.namespace"), &keep)
            .replace(&format!("{root}.spec"), &format!("{root}.{template}.spec"))
            .replace(
                &format!("{root}.metadata"),
                &format!("{root}.{template}.metadata"),
            )
            .replace(&keep, &format!("{root}.metadata.namespace"));
    }
    out
}

/// Whether resource rules match only Pods (autogen applies).
pub fn matches_only_pods(rules: &[ResourceRule]) -> bool {
    !rules.is_empty()
        && rules.iter().all(|r| {
            r.api_groups.iter().all(|g| g.is_empty())
                && !r.resources.is_empty()
                && r.resources.iter().all(|res| res == "pods")
                && r.resource_names.is_empty()
        })
}

/// The resource rules autogen derives from a Pod rule for `controllers` (kinds or resources).
pub fn controller_rule(template: &ResourceRule, controllers: &[&str]) -> Vec<ResourceRule> {
    let mut by_group: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in controllers {
        if let Some((_, group, resource)) = POD_CONTROLLERS
            .iter()
            .find(|(k, _, r)| k.eq_ignore_ascii_case(c) || r.eq_ignore_ascii_case(c))
        {
            by_group
                .entry(group)
                .or_default()
                .push(resource.to_string());
        }
    }
    by_group
        .into_iter()
        .map(|(group, resources)| ResourceRule {
            api_groups: vec![group.to_string()],
            api_versions: vec!["*".into()],
            operations: template.operations.clone(),
            resources,
            resource_names: Vec::new(),
            scope: None,
        })
        .collect()
}

fn compile_variant(
    doc: &Document,
    spec: &Spec,
    rule: String,
    rules: Vec<ResourceRule>,
    rewrite: &dyn Fn(&str) -> String,
) -> Result<Variant, LoadError> {
    let checks = CheckSpecs {
        prefix: "spec",
        conditions_field: "matchConditions",
        conditions: &spec.match_conditions,
        variables: &spec.variables,
        validations: &spec.validations,
        provided: &[],
        reasons: false,
        identifiers: policyctl_cel::lint::KYVERNO_VARIABLES,
    }
    .compile(doc, Dialect::Kyverno, rewrite)?;
    Ok(Variant {
        rule,
        rules,
        checks,
    })
}

impl ValidatingPolicy {
    /// Compiles a ValidatingPolicy document; returns the policy and its load warnings.
    pub fn from_document(doc: &Document) -> Result<(ValidatingPolicy, Vec<LoadError>), LoadError> {
        let parsed: PolicyDoc = doc.parse()?;
        let name = parsed.metadata.name.clone();
        if name.is_empty() {
            return Err(doc.error_at("metadata.name", "a ValidatingPolicy needs a name"));
        }
        let spec = &parsed.spec;
        let mut warnings = Vec::new();
        let constraints = spec.match_constraints.clone().unwrap_or_default();
        let evaluation = spec.evaluation.as_ref();
        let mode = match evaluation.and_then(|e| e.mode.as_deref()) {
            None | Some("Kubernetes") => None,
            Some(other) => Some(PayloadMode::parse(other).ok_or_else(|| {
                doc.error_at(
                    "spec.evaluation.mode",
                    format!("unknown evaluation mode {other:?} (Kubernetes, JSON, HTTP or Envoy)"),
                )
            })?),
        };
        // A payload-mode policy matches payloads, not resources: it needs no resource rules (Kyverno ignores them).
        if mode.is_none() && constraints.resource_rules.is_empty() {
            return Err(doc.error_at(
                "spec.matchConstraints.resourceRules",
                "at least one resource rule is required",
            ));
        }
        if spec.validations.is_empty() {
            return Err(doc.error_at("spec.validations", "at least one validation is required"));
        }
        let mut actions = Vec::new();
        for (i, a) in spec.validation_actions.iter().enumerate() {
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
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
        if actions.is_empty() {
            actions.push(Action::Deny);
        }
        let failure_policy = spec
            .failure_policy
            .as_deref()
            .map(str::parse::<FailurePolicy>)
            .transpose()
            .map_err(|e| doc.error_at("spec.failurePolicy", e))?
            .unwrap_or(FailurePolicy::Fail);
        let identity = |s: &str| s.to_string();
        let mut variants = vec![compile_variant(
            doc,
            spec,
            name.clone(),
            constraints.resource_rules.clone(),
            &identity,
        )?];
        if mode.is_none() && matches_only_pods(&constraints.resource_rules) {
            let controllers: Vec<String> = match spec
                .autogen
                .as_ref()
                .and_then(|a| a.pod_controllers.as_ref())
                .and_then(|p| p.controllers.clone())
            {
                Some(list) => list,
                None => DEFAULT_CONTROLLERS.iter().map(|s| s.to_string()).collect(),
            };
            let template = &constraints.resource_rules[0];
            let (cron, plain): (Vec<&str>, Vec<&str>) =
                controllers.iter().map(String::as_str).partition(|c| {
                    c.eq_ignore_ascii_case("CronJob") || c.eq_ignore_ascii_case("cronjobs")
                });
            if !plain.is_empty() {
                variants.push(compile_variant(
                    doc,
                    spec,
                    format!("autogen-{name}"),
                    controller_rule(template, &plain),
                    &|s| autogen_rewrite(s, false),
                )?);
            }
            if !cron.is_empty() {
                variants.push(compile_variant(
                    doc,
                    spec,
                    format!("autogen-cronjob-{name}"),
                    controller_rule(template, &cron),
                    &|s| autogen_rewrite(s, true),
                )?);
            }
        }
        if mode.is_some() && spec.match_constraints.is_some() {
            warnings.push(doc.error_at(
                "spec.matchConstraints",
                "ignored: a policy of a payload evaluation mode matches payloads, not resources",
            ));
        }
        if let Some(mode) = mode {
            warnings.push(doc.error_at(
                "spec.evaluation.mode",
                format!(
                    "{mode} mode: evaluates {mode} payloads (`policyctl test` {}, `policyctl eval --payload`), \
                     never admission requests; the webhook does not run it",
                    payload_key(mode)
                ),
            ));
        }
        Ok((
            ValidatingPolicy {
                info: PolicyInfo {
                    name,
                    kind: doc.kind.clone(),
                    engine: ENGINE,
                    source: doc.source.clone(),
                    failure_policy: Some(failure_policy),
                    annotations: parsed.metadata.annotations.clone(),
                },
                variants,
                constraints,
                actions,
                admission: evaluation
                    .and_then(|e| e.admission.as_ref())
                    .and_then(|a| a.enabled)
                    .unwrap_or(true),
                mode,
                exceptions: Vec::new(),
            },
            warnings,
        ))
    }
}

/// The `policyctl test` field that carries payloads of a mode.
pub fn payload_key(mode: PayloadMode) -> &'static str {
    match mode {
        PayloadMode::Json => "jsonPayloads",
        PayloadMode::Http => "httpPayloads",
        PayloadMode::Envoy => "envoyPayloads",
    }
}

/// Kyverno's `resource` and `image` libraries over the cluster context: `resource.Get`/`List` are API GETs (served
/// from a test's context file when testing), `image.GetMetadata` reads the context's image data.
pub struct ClusterData(pub Arc<dyn policyctl_core::policy::ClusterContext>);

/// A path segment a policy may name: no separators, queries or dot segments (a policy reads resources, it does not
/// build arbitrary API URLs).
fn segment(what: &'static str, s: &str) -> Result<(), DataError> {
    let bad = s.is_empty()
        || s == "."
        || s == ".."
        || s.chars()
            .any(|c| matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_whitespace());
    if bad {
        Err(DataError::InvalidSegment {
            what,
            value: s.to_string(),
        })
    } else {
        Ok(())
    }
}

fn api_path(api_version: &str, resource: &str, namespace: &str) -> Result<String, DataError> {
    let (root, parts) = match api_version.split_once('/') {
        Some((group, version)) => ("apis", vec![group, version]),
        None => ("api", vec![api_version]),
    };
    for p in parts {
        segment("apiVersion", p)?;
    }
    segment("resource", resource)?;
    Ok(if namespace.is_empty() {
        format!("/{root}/{api_version}/{resource}")
    } else {
        segment("namespace", namespace)?;
        format!("/{root}/{api_version}/namespaces/{namespace}/{resource}")
    })
}

impl policyctl_cel::kyverno::KyvernoData for ClusterData {
    fn get(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, DataError> {
        segment("name", name)?;
        Ok(self.0.api_get(&format!(
            "{}/{name}",
            api_path(api_version, resource, namespace)?
        ))?)
    }

    fn list(&self, api_version: &str, resource: &str, namespace: &str) -> Result<Value, DataError> {
        Ok(self
            .0
            .api_get(&api_path(api_version, resource, namespace)?)?)
    }

    fn image_metadata(&self, image: &str) -> Result<Value, DataError> {
        self.0
            .image_data(image)
            .ok_or_else(|| DataError::NoImageMetadata {
                image: image.to_string(),
            })
    }
}

impl Policy for ValidatingPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }

    fn scope(&self) -> Scope {
        if self.mode.is_some() {
            // A payload-mode policy never sees an admission request.
            return Scope::default();
        }
        common::scope_of(self.variants.iter().flat_map(|v| &v.rules))
    }

    fn validates(&self) -> bool {
        self.admission && self.mode.is_none()
    }

    fn payload_mode(&self) -> Option<PayloadMode> {
        self.mode
    }

    fn validate_payload(&self, payload: &Value, ctx: &EvalContext) -> Evaluation {
        let (Some(mode), Some(variant)) = (self.mode, self.variants.first()) else {
            return Evaluation::skip();
        };
        // `object` is the payload; there is no old object, request or namespace.
        let bindings = ReviewBindings {
            object: policyctl_cel::bind::shared(payload),
            old_object: Shared::null(),
            request: Shared::null(),
        };
        let activation = Activation::new(Arc::new(bindings))
            .with_kyverno_data(Arc::new(ClusterData(ctx.cluster.clone())));
        self.run_checks(variant, &activation, ctx, Some(mode))
    }

    fn validate(&self, review: &Review, ctx: &EvalContext) -> Evaluation {
        if self.mode.is_some() {
            // A payload-mode policy never matches an admission request.
            return Evaluation::skip();
        }
        let Some(variant) = self
            .variants
            .iter()
            .find(|v| v.rules.iter().any(|r| rule_matches(r, review, false)))
        else {
            return Evaluation::skip();
        };
        if !self.constraints.selected(review, ctx, false) {
            return Evaluation::skip();
        }
        let namespace = namespace_object(review, ctx)
            .map(|n| policyctl_cel::bind::shared(&n))
            .unwrap_or_else(Shared::null);
        let activation = Activation::new(ReviewBindings::of(review))
            .with_namespace_object(namespace)
            .with_kyverno_data(Arc::new(ClusterData(ctx.cluster.clone())));
        self.run_checks(variant, &activation, ctx, None)
    }
}

impl ValidatingPolicy {
    /// The exceptions, then the checks of `variant` (in `mode`: HTTP and Envoy validations return responses).
    fn run_checks(
        &self,
        variant: &Variant,
        activation: &Activation,
        ctx: &EvalContext,
        mode: Option<PayloadMode>,
    ) -> Evaluation {
        let mut out = Evaluation::skip();
        let limits = Limits::until(ctx.deadline.instant());
        if let Some(e) = self
            .exceptions
            .iter()
            .find(|e| e.excepts(activation, &limits))
        {
            if ctx.explain {
                out.rules.push(RuleResult {
                    rule: variant.rule.clone(),
                    status: RuleStatus::Skip,
                    message: format!("skipped due to policy exception {}", e.name),
                });
            }
            return out;
        }
        let outcome = match mode {
            Some(PayloadMode::Http) | Some(PayloadMode::Envoy) => {
                variant.checks.run_responses(activation, &limits)
            }
            Some(PayloadMode::Json) | None => variant.checks.run(activation, &limits),
        };
        common::record(
            &mut out,
            outcome,
            &self.actions,
            ctx,
            &variant.rule,
            &|_, m| m.to_string(),
            &|e| e.to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests;
