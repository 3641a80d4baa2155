//! Kyverno `policies.kyverno.io` MutatingPolicy (v1alpha1, v1beta1, v1), on the shared CEL layer
//! ([`policyctl_cel`]) and the ValidatingPolicy engine's matching ([`policyctl_vpol`]).
//!
//! A MutatingPolicy is a MutatingAdmissionPolicy without a binding: `matchConstraints`, `matchConditions`, lazily
//! evaluated `variables`, `failurePolicy` and `mutations`, each of one of two types:
//! - `JSONPatch`: the expression returns a list of `JSONPatch{op, path, value, from}`, applied with RFC 6902
//!   semantics (all or nothing); `jsonpatch.escapeKey` escapes a path segment;
//! - `ApplyConfiguration`: the expression returns `Object{...}`, merged into the object with server-side-apply
//!   semantics ([`merge`]).
//!
//! The mutations run in order, each seeing the object as the previous ones left it (`variables` are evaluated again
//! for each). A request the constraints do not match, or whose `matchConditions` do not all hold, is not mutated. A
//! CEL error, a patch that does not apply, the cost budget or the deadline running out is an error, which the decide
//! stage sends to the failure policy (default `Fail`): the policy's mutation is then discarded.
//!
//! Autogen: a policy that matches only Pods also mutates the Pod template of Pod controllers (Deployment,
//! DaemonSet, StatefulSet, ReplicaSet, Job; CronJob), unless `autogen.podControllers.controllers` says otherwise.
//! The expressions see the template as a Pod: `object.metadata` and `object.spec` are the template's (with the
//! controller's namespace, apiVersion and kind), and the result is written back into the template. `oldObject` stays
//! the controller.
//!
//! Not supported: `evaluation.mode: JSON`, `reinvocationPolicy: IfNeeded` (a policy runs once), mutation of
//! existing resources (`evaluation.mutateExisting`, `targetMatchConstraints`).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod map;
pub mod matching;
pub mod merge;
mod strict;

use std::collections::BTreeMap;
use std::sync::Arc;

use matching::{MatchResources, ResourceRule};
use policyctl_cel::{Activation, Dialect, EvalError, Limits, Program, ReviewBindings, Shared};
use policyctl_core::admission::Review;
use policyctl_core::engine::{Built, Engine, EngineInput, LoadOptions};
use policyctl_core::policy::source::Document;
use policyctl_core::policy::{
    Action, EvalContext, EvalError as PolicyEvalError, Evaluation, FailurePolicy, LoadError,
    Mutation, Policy, PolicyError, PolicyInfo, RuleResult, RuleStatus,
};
use policyctl_core::select::Scope;
use policyctl_vpol::params::{ParamKind, ParamRef};
use serde::Deserialize;
use serde_json::Value;

/// The engine name.
pub const ENGINE: &str = "kyverno-mpol";

/// Whether an apiVersion/kind is a MutatingPolicy.
pub fn is_mutating_policy(api_version: &str, kind: &str) -> bool {
    matches!(
        api_version,
        "policies.kyverno.io/v1alpha1" | "policies.kyverno.io/v1beta1" | "policies.kyverno.io/v1"
    ) && kind == "MutatingPolicy"
}

/// The MutatingPolicy engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct MutatingPolicyEngine;

impl Engine for MutatingPolicyEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_mutating_policy(api_version, kind)
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "policies.kyverno.io/v1alpha1 MutatingPolicy",
            "policies.kyverno.io/v1beta1 MutatingPolicy",
            "policies.kyverno.io/v1 MutatingPolicy",
        ]
    }

    fn param_kinds(&self, _documents: &[Document]) -> Vec<(String, String)> {
        policyctl_vpol::exception::exception_kinds()
    }

    fn build(&self, input: EngineInput, _options: &LoadOptions) -> Built {
        policyctl_vpol::exception::build_excepted(
            &input,
            "MutatingPolicy",
            &strict::POLICY,
            MutatingPolicy::from_document,
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
    mutations: Vec<MutationSpec>,
    #[serde(default)]
    failure_policy: Option<String>,
    #[serde(default)]
    evaluation: Option<EvaluationSpec>,
    #[serde(default)]
    autogen: Option<AutogenSpec>,
    #[serde(default)]
    param_kind: Option<ParamKind>,
}

#[derive(Debug, Clone, Deserialize)]
struct Named {
    name: String,
    expression: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MutationSpec {
    #[serde(default)]
    patch_type: String,
    #[serde(default)]
    apply_configuration: Option<ExpressionSpec>,
    #[serde(default)]
    json_patch: Option<ExpressionSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct ExpressionSpec {
    #[serde(default)]
    expression: String,
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

/// The two mutation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902 operations.
    JsonPatch,
    /// An `Object{...}` merged with server-side-apply semantics.
    ApplyConfiguration,
}

#[derive(Debug)]
struct CompiledMutation {
    patch_type: PatchType,
    program: Program,
}

/// Where autogen finds the Pod template in a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    /// The object itself (no autogen).
    Object,
    /// `spec.template`.
    Controller,
    /// `spec.jobTemplate.spec.template`.
    CronJob,
}

impl Template {
    fn pointer(self) -> &'static str {
        match self {
            Template::Object => "",
            Template::Controller => "/spec/template",
            Template::CronJob => "/spec/jobTemplate/spec/template",
        }
    }
}

#[derive(Debug)]
struct Variant {
    rule: String,
    rules: Vec<ResourceRule>,
    template: Template,
}

/// A compiled MutatingPolicy.
#[derive(Debug)]
pub struct MutatingPolicy {
    info: PolicyInfo,
    variants: Vec<Variant>,
    /// `matchConstraints` (its resource rules are in the variants).
    constraints: MatchResources,
    /// The CEL environment: Kyverno's kind or Kubernetes'.
    dialect: Dialect,
    conditions: Vec<(String, Program)>,
    variables: Vec<(String, Program)>,
    mutations: Vec<CompiledMutation>,
    admission: bool,
    unsupported: Option<String>,
    /// A MutatingAdmissionPolicy's `paramKind`, and the documents of that kind in the policy set.
    param_kind: Option<ParamKind>,
    params: Vec<Value>,
    /// Kubernetes MutatingAdmissionPolicy bindings (empty for Kyverno's kind, and for a MutatingAdmissionPolicy
    /// without one, which then applies on its own constraints, as the Kyverno CLI applies it).
    bindings: Vec<Binding>,
    /// The `policies.kyverno.io` PolicyExceptions that name this policy (Kyverno's kind only).
    exceptions: Vec<Arc<policyctl_vpol::exception::CelException>>,
}

/// A MutatingAdmissionPolicyBinding: further constraints on where its policy applies.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    /// The binding's name.
    pub name: String,
    /// `matchResources` (empty: everything the policy matches).
    pub match_resources: Option<MatchResources>,
    /// `paramRef`: the params the policy's `paramKind` names.
    pub param_ref: Option<ParamRef>,
}

impl Binding {
    fn selects(&self, review: &Review, ctx: &EvalContext) -> bool {
        let Some(m) = &self.match_resources else {
            return true;
        };
        // A binding's matchPolicy defaults to Equivalent, as in Kubernetes.
        matching::matches(m, review, ctx, m.equivalent(true))
    }
}

fn compile(
    doc: &Document,
    dialect: Dialect,
    field: String,
    source: &str,
) -> Result<Program, LoadError> {
    Program::compile_for(dialect, source)
        .map_err(|e| doc.error_at(field, format!("CEL expression does not compile: {e}")))
}

fn named(
    doc: &Document,
    dialect: Dialect,
    list: &[Named],
    what: &str,
) -> Result<Vec<(String, Program)>, LoadError> {
    list.iter()
        .enumerate()
        .map(|(i, n)| {
            if n.name.is_empty() {
                return Err(doc.error_at(format!("spec.{what}[{i}].name"), "a name is required"));
            }
            Ok((
                n.name.clone(),
                compile(
                    doc,
                    dialect,
                    format!("spec.{what}[{i}].expression"),
                    &n.expression,
                )?,
            ))
        })
        .collect()
}

/// Compiles the `mutations` of a policy document (shared by the mutating policy kinds).
fn compile_mutations(
    doc: &Document,
    dialect: Dialect,
    mutations: &[MutationSpec],
) -> Result<Vec<CompiledMutation>, LoadError> {
    let mut out = Vec::with_capacity(mutations.len());
    for (i, m) in mutations.iter().enumerate() {
        let field = format!("spec.mutations[{i}]");
        let (patch_type, expression, sub) = match m.patch_type.as_str() {
            "JSONPatch" => (PatchType::JsonPatch, m.json_patch.as_ref(), "jsonPatch"),
            "ApplyConfiguration" => (
                PatchType::ApplyConfiguration,
                m.apply_configuration.as_ref(),
                "applyConfiguration",
            ),
            other => {
                return Err(doc.error_at(
                    format!("{field}.patchType"),
                    format!("unknown patch type {other:?} (JSONPatch or ApplyConfiguration)"),
                ))
            }
        };
        let source = expression
            .map(|e| e.expression.as_str())
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| {
                doc.error_at(
                    format!("{field}.{sub}.expression"),
                    "an expression is required",
                )
            })?;
        let program = Program::compile_mutation(dialect, source).map_err(|e| {
            doc.error_at(
                format!("{field}.{sub}.expression"),
                format!("CEL expression does not compile: {e}"),
            )
        })?;
        out.push(CompiledMutation {
            patch_type,
            program,
        });
    }
    Ok(out)
}

/// The load-time checks of every expression: `variables.<name>` must be declared, and lint (unknown functions,
/// argument counts, identifiers) must find nothing.
fn lint(
    doc: &Document,
    dialect: Dialect,
    conditions: &[(String, Program)],
    variables: &[(String, Program)],
    mutations: &[CompiledMutation],
) -> Result<(), LoadError> {
    let identifiers = match dialect {
        Dialect::Kyverno => policyctl_cel::lint::KYVERNO_VARIABLES,
        Dialect::Kubernetes => policyctl_cel::lint::KUBERNETES_VARIABLES,
    };
    let declared: Vec<&str> = variables.iter().map(|(n, _)| n.as_str()).collect();
    let check = |field: String, program: &Program| {
        policyctl_cel::checks::check_references(doc, "spec", field, program, &declared, identifiers)
    };
    for (i, (_, p)) in conditions.iter().enumerate() {
        check(format!("spec.matchConditions[{i}].expression"), p)?;
    }
    for (i, (_, p)) in variables.iter().enumerate() {
        check(format!("spec.variables[{i}].expression"), p)?;
    }
    for (i, m) in mutations.iter().enumerate() {
        let sub = match m.patch_type {
            PatchType::JsonPatch => "jsonPatch",
            PatchType::ApplyConfiguration => "applyConfiguration",
        };
        check(format!("spec.mutations[{i}].{sub}.expression"), &m.program)?;
    }
    Ok(())
}

impl MutatingPolicy {
    /// Compiles a MutatingPolicy document; returns the policy and its load warnings.
    pub fn from_document(doc: &Document) -> Result<(MutatingPolicy, Vec<LoadError>), LoadError> {
        MutatingPolicy::build(doc, Dialect::Kyverno, true, Vec::new())
    }

    /// Compiles a mutating policy document of either kind: Kyverno's (autogen) or Kubernetes' (with its bindings).
    fn build(
        doc: &Document,
        dialect: Dialect,
        autogen: bool,
        bindings: Vec<Binding>,
    ) -> Result<(MutatingPolicy, Vec<LoadError>), LoadError> {
        let parsed: PolicyDoc = doc.parse()?;
        let name = parsed.metadata.name.clone();
        if name.is_empty() {
            return Err(doc.error_at("metadata.name", "a MutatingPolicy needs a name"));
        }
        let spec = &parsed.spec;
        let constraints = spec.match_constraints.clone().unwrap_or_default();
        if constraints.resource_rules.is_empty() {
            return Err(doc.error_at(
                "spec.matchConstraints.resourceRules",
                "at least one resource rule is required",
            ));
        }
        if spec.mutations.is_empty() {
            return Err(doc.error_at("spec.mutations", "at least one mutation is required"));
        }
        let failure_policy = spec
            .failure_policy
            .as_deref()
            .map(str::parse::<FailurePolicy>)
            .transpose()
            .map_err(|e| doc.error_at("spec.failurePolicy", e))?
            .unwrap_or(FailurePolicy::Fail);
        let evaluation = spec.evaluation.as_ref();
        let mut unsupported = None;
        if let Some(mode) = evaluation.and_then(|e| e.mode.as_deref()) {
            if mode != "Kubernetes" {
                unsupported = Some(format!("evaluation.mode {mode} is not supported"));
            }
        }
        if let Some(kind) = &spec.param_kind {
            kind.check(doc, "spec.paramKind")?;
        }
        let conditions = named(doc, dialect, &spec.match_conditions, "matchConditions")?;
        let variables = named(doc, dialect, &spec.variables, "variables")?;
        let mutations = compile_mutations(doc, dialect, &spec.mutations)?;
        lint(doc, dialect, &conditions, &variables, &mutations)?;

        let mut variants = vec![Variant {
            rule: name.clone(),
            rules: constraints.resource_rules.clone(),
            template: Template::Object,
        }];
        let pod_template = constraints
            .resource_rules
            .first()
            .filter(|_| autogen && matching::matches_only_pods(&constraints.resource_rules));
        if let Some(template) = pod_template {
            let controllers: Vec<String> = match spec
                .autogen
                .as_ref()
                .and_then(|a| a.pod_controllers.as_ref())
                .and_then(|p| p.controllers.clone())
            {
                Some(list) => list,
                None => matching::default_controllers(),
            };
            let (cron, plain): (Vec<&str>, Vec<&str>) =
                controllers.iter().map(String::as_str).partition(|c| {
                    c.eq_ignore_ascii_case("CronJob") || c.eq_ignore_ascii_case("cronjobs")
                });
            if !plain.is_empty() {
                variants.push(Variant {
                    rule: format!("autogen-{name}"),
                    rules: matching::controller_rules(template, &plain),
                    template: Template::Controller,
                });
            }
            if !cron.is_empty() {
                variants.push(Variant {
                    rule: format!("autogen-cronjob-{name}"),
                    rules: matching::controller_rules(template, &cron),
                    template: Template::CronJob,
                });
            }
        }
        let mut warnings = Vec::new();
        if let Some(reason) = &unsupported {
            warnings.push(doc.error_at(
                "spec",
                format!("unsupported, skipped at admission: {reason}"),
            ));
        }
        Ok((
            MutatingPolicy {
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
                dialect,
                conditions,
                variables,
                mutations,
                admission: evaluation
                    .and_then(|e| e.admission.as_ref())
                    .and_then(|a| a.enabled)
                    .unwrap_or(true),
                unsupported,
                param_kind: spec.param_kind.clone(),
                params: Vec::new(),
                bindings,
                exceptions: Vec::new(),
            },
            warnings,
        ))
    }
}

/// Why a mutation failed.
#[derive(Debug)]
enum Failure {
    Eval(EvalError),
    /// Mutation `index` (from 0) gave a result that could not be applied.
    Patch {
        index: usize,
        error: PatchError,
    },
}

/// Why a mutation's result could not be applied to the object.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The expression's value is not JSON.
    #[error(transparent)]
    Value(EvalError),
    /// A JSONPatch mutation returned something other than a list.
    #[error("a JSONPatch expression must return a list of JSONPatch, got {0}")]
    NotAPatchList(Value),
    /// An element of the list is not a JSONPatch operation.
    #[error("JSONPatch [{index}] {item}: {source}")]
    NotAnOperation {
        /// The element's index.
        index: usize,
        /// The element.
        item: Value,
        /// What reading it found.
        #[source]
        source: serde_json::Error,
    },
    /// The JSONPatch does not apply to the object.
    #[error("JSONPatch: {0}")]
    Patch(#[source] json_patch::PatchError),
    /// An ApplyConfiguration mutation returned something other than an object.
    #[error("an ApplyConfiguration expression must return an Object, got {0}")]
    NotAConfiguration(Value),
    /// The object to mutate is not an object.
    #[error("the object to mutate is not an object")]
    NotAnObject,
    /// The configuration does not merge into the object.
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
    /// After the mutation the object is no longer an object.
    #[error("the mutated object is not an object: {0}")]
    MutatedNotAnObject(Value),
    /// The mutation changed the object's apiVersion or kind.
    #[error("a mutation may not change the object's apiVersion or kind")]
    IdentityChanged,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Eval(e) => write!(f, "{e}"),
            Failure::Patch { index, error } => write!(f, "mutation [{index}]: {error}"),
        }
    }
}

/// Applies one mutation's result to `object`.
pub fn apply_result(
    patch_type: PatchType,
    object: &mut Value,
    result: &Value,
) -> Result<(), PatchError> {
    match patch_type {
        PatchType::JsonPatch => {
            let Value::Array(items) = result else {
                return Err(PatchError::NotAPatchList(result.clone()));
            };
            // Kubernetes drops unset fields of JSONPatch{}: a `null` `from` or `value` is the zero value.
            let mut ops = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let op: json_patch::PatchOperation =
                    serde_json::from_value(item.clone()).map_err(|source| {
                        PatchError::NotAnOperation {
                            index: i,
                            item: item.clone(),
                            source,
                        }
                    })?;
                ops.push(op);
            }
            json_patch::patch(object, &ops).map_err(PatchError::Patch)
        }
        PatchType::ApplyConfiguration => {
            if !result.is_object() {
                return Err(PatchError::NotAConfiguration(result.clone()));
            }
            if !object.is_object() {
                return Err(PatchError::NotAnObject);
            }
            // Merged into a copy: a refused configuration leaves the object as it was.
            let mut merged = object.clone();
            merge::apply(&mut merged, result)?;
            *object = merged;
            Ok(())
        }
    }
}

/// An expression on one line, shortened, for messages.
fn one_line(source: &str) -> String {
    let line = source.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 120 {
        format!("{}...", line.chars().take(120).collect::<String>())
    } else {
        line
    }
}

fn is_stop(e: &EvalError) -> bool {
    matches!(
        e,
        EvalError::Cost { .. } | EvalError::Deadline | EvalError::Internal(_)
    )
}

enum Outcome {
    NotMet,
    Done(Value),
    Failed(Failure),
}

impl MutatingPolicy {
    /// The `params` a binding gives the policy: `null` without a `paramKind`; the param its `paramRef` names; with a
    /// `selector`, the selected params as a list (`params.items`), as the Kyverno CLI binds them (the API server
    /// would apply the policy once per param). `Ok(None)`: no param found and `parameterNotFoundAction: Allow`.
    fn params_for(
        &self,
        binding: &Binding,
        review: &Review,
        ctx: &EvalContext,
    ) -> Result<Option<Shared>, String> {
        let Some(kind) = &self.param_kind else {
            return Ok(Some(Shared::null()));
        };
        let Some(r) = &binding.param_ref else {
            return Err(format!(
                "the policy has paramKind {} {} but binding {} has no paramRef",
                kind.api_version, kind.kind, binding.name
            ));
        };
        let mut found = r.select(kind, &self.params, review, ctx)?;
        if found.is_empty() {
            return if r.allows_missing() {
                Ok(None)
            } else {
                Err(format!(
                    "no params found for binding {} with `Deny` parameterNotFoundAction",
                    binding.name
                ))
            };
        }
        let params = if r.name.is_some() {
            found.swap_remove(0)
        } else {
            serde_json::json!({"items": found})
        };
        Ok(Some(policyctl_cel::bind::shared(&params)))
    }

    fn run(
        &self,
        review: &Review,
        object: Value,
        namespace: &Shared,
        params: &Shared,
        ctx: &EvalContext,
    ) -> Outcome {
        let limits = Limits::until(ctx.deadline.instant());
        let data = matching::kyverno_data(ctx);
        let activation_for = |object: &Value| {
            let subject = review.with_object(object.clone());
            Activation::new(Arc::new(ReviewBindings::new(&subject)))
                .with_namespace_object(namespace.clone())
                .with_params(params.clone())
                .with_kyverno_data(data.clone())
        };
        // As in Kyverno, match conditions may read `variables`.
        let activation = activation_for(&object).with_variables(&self.variables);
        for (name, program) in &self.conditions {
            match activation.evaluate_bool(program, &limits) {
                Ok(true) => {}
                Ok(false) => return Outcome::NotMet,
                Err(e) if is_stop(&e) => return Outcome::Failed(Failure::Eval(e)),
                Err(e) => {
                    return Outcome::Failed(Failure::Eval(EvalError::Execution(format!(
                        "matchCondition {name}: {e}"
                    ))))
                }
            }
        }
        let object_identity = identity(&object);
        let mut current = object;
        for (i, m) in self.mutations.iter().enumerate() {
            let activation = activation_for(&current).with_variables(&self.variables);
            let value = match activation.evaluate(&m.program, &limits) {
                Ok(v) => v,
                Err(e) if is_stop(&e) => return Outcome::Failed(Failure::Eval(e)),
                Err(e) => {
                    return Outcome::Failed(Failure::Eval(EvalError::Execution(format!(
                        "mutation [{i}]: {e} (expression: {})",
                        one_line(m.program.source())
                    ))))
                }
            };
            let applied = policyctl_cel::mutation::to_json(&value)
                .map_err(PatchError::Value)
                .and_then(|result| apply_result(m.patch_type, &mut current, &result))
                .and_then(|()| still_the_same_object(&object_identity, &current));
            if let Err(error) = applied {
                return Outcome::Failed(Failure::Patch { index: i, error });
            }
        }
        Outcome::Done(current)
    }
}

/// What a mutation may not change: the object stays an object of the same apiVersion and kind.
fn identity(object: &Value) -> (Option<Value>, Option<Value>) {
    (
        object.get("apiVersion").cloned(),
        object.get("kind").cloned(),
    )
}

fn still_the_same_object(
    before: &(Option<Value>, Option<Value>),
    object: &Value,
) -> Result<(), PatchError> {
    if !object.is_object() {
        return Err(PatchError::MutatedNotAnObject(object.clone()));
    }
    if identity(object) != *before {
        return Err(PatchError::IdentityChanged);
    }
    Ok(())
}

/// The Pod autogen mutates for a controller: the template's metadata (with the controller's namespace) and spec,
/// under the controller's apiVersion and kind.
fn template_pod(object: &Value, template: Template) -> Option<Value> {
    let t = object.pointer(template.pointer())?;
    let mut metadata = t
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if let (Some(ns), Some(m)) = (
        object.pointer("/metadata/namespace"),
        metadata.as_object_mut(),
    ) {
        m.insert("namespace".into(), ns.clone());
    }
    let mut pod = serde_json::Map::new();
    for k in ["apiVersion", "kind"] {
        if let Some(v) = object.get(k) {
            pod.insert(k.into(), v.clone());
        }
    }
    pod.insert("metadata".into(), metadata);
    if let Some(spec) = t.get("spec") {
        pod.insert("spec".into(), spec.clone());
    }
    Some(Value::Object(pod))
}

/// Writes a mutated template Pod back into the controller.
fn put_back(object: &Value, template: Template, pod: Value, had_namespace: bool) -> Value {
    let mut out = object.clone();
    let Some(t) = out
        .pointer_mut(template.pointer())
        .and_then(Value::as_object_mut)
    else {
        return out;
    };
    if let Value::Object(mut pod) = pod {
        if let Some(mut metadata) = pod.remove("metadata") {
            if !had_namespace {
                if let Some(m) = metadata.as_object_mut() {
                    m.remove("namespace");
                }
            }
            if metadata.as_object().is_some_and(|m| !m.is_empty()) || t.contains_key("metadata") {
                t.insert("metadata".into(), metadata);
            }
        }
        if let Some(spec) = pod.remove("spec") {
            t.insert("spec".into(), spec);
        }
    }
    out
}

impl Policy for MutatingPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }

    fn scope(&self) -> Scope {
        // The variants' rules (autogen's included); bindings only narrow them.
        policyctl_vpol::common::scope_of(self.variants.iter().flat_map(|v| &v.rules))
    }

    fn validates(&self) -> bool {
        false
    }

    fn mutates(&self) -> bool {
        self.admission
    }

    fn validate(&self, _review: &Review, _ctx: &EvalContext) -> Evaluation {
        Evaluation::skip()
    }

    fn mutate(&self, review: &Review, ctx: &EvalContext) -> Mutation {
        // `matchPolicy` defaults to Exact in Kyverno's kind, Equivalent in Kubernetes'.
        let equivalent = self
            .constraints
            .equivalent(self.dialect == Dialect::Kubernetes);
        let Some(variant) = self.variants.iter().find(|v| {
            v.rules
                .iter()
                .any(|r| matching::rule_matches(r, review, equivalent))
        }) else {
            return Mutation::default();
        };
        if !matching::selected(&self.constraints, review, ctx, equivalent) {
            return Mutation::default();
        }
        let Some(original) = review.object() else {
            return Mutation::default();
        };
        let result = |status: RuleStatus, message: String| RuleResult {
            rule: variant.rule.clone(),
            status,
            message,
        };
        let mut out = Mutation::default();
        if let Some(reason) = &self.unsupported {
            if ctx.explain {
                out.rules
                    .push(result(RuleStatus::Unsupported, reason.clone()));
            }
            return out;
        }
        let subject = match variant.template {
            Template::Object => Some(original.clone()),
            t => template_pod(original, t),
        };
        let Some(subject) = subject else {
            // A controller without a Pod template: nothing to mutate.
            return out;
        };
        let had_namespace = original
            .pointer(variant.template.pointer())
            .and_then(|t| t.pointer("/metadata/namespace"))
            .is_some();
        let namespace = matching::namespace_object(review, ctx)
            .map(|n| policyctl_cel::bind::shared(&n))
            .unwrap_or_else(Shared::null);
        if !self.exceptions.is_empty() {
            let activation = Activation::new(ReviewBindings::of(review))
                .with_namespace_object(namespace.clone())
                .with_kyverno_data(matching::kyverno_data(ctx));
            let limits = Limits::until(ctx.deadline.instant());
            if let Some(e) = self
                .exceptions
                .iter()
                .find(|e| e.excepts(&activation, &limits))
            {
                if ctx.explain {
                    out.rules.push(result(
                        RuleStatus::Skip,
                        format!("skipped due to policy exception {}", e.name),
                    ));
                }
                return out;
            }
        }
        let outcome = if self.bindings.is_empty() {
            match &self.param_kind {
                None => self.run(review, subject, &namespace, &Shared::null(), ctx),
                Some(kind) => Outcome::Failed(Failure::Eval(EvalError::Execution(format!(
                    "the policy has paramKind {} {} but no binding with a paramRef",
                    kind.api_version, kind.kind
                )))),
            }
        } else {
            // Each binding that selects the review applies the policy once, in order, on the object so far.
            let selected: Vec<&Binding> = self
                .bindings
                .iter()
                .filter(|b| b.selects(review, ctx))
                .collect();
            if selected.is_empty() {
                return Mutation::default();
            }
            let mut outcome = Outcome::NotMet;
            let mut current = subject;
            for binding in selected {
                let params = match self.params_for(binding, review, ctx) {
                    Ok(Some(params)) => params,
                    // `parameterNotFoundAction: Allow`: this binding does nothing.
                    Ok(None) => continue,
                    Err(e) => {
                        outcome = Outcome::Failed(Failure::Eval(EvalError::Execution(e)));
                        break;
                    }
                };
                match self.run(review, current.clone(), &namespace, &params, ctx) {
                    Outcome::NotMet => {}
                    Outcome::Done(next) => {
                        current = next.clone();
                        outcome = Outcome::Done(next);
                    }
                    failed @ Outcome::Failed(_) => {
                        outcome = failed;
                        break;
                    }
                }
            }
            outcome
        };
        let (status, message) = match outcome {
            Outcome::NotMet => (RuleStatus::Skip, "match conditions not met".to_string()),
            Outcome::Done(mutated) => {
                let mutated = match variant.template {
                    Template::Object => mutated,
                    t => put_back(original, t, mutated, had_namespace),
                };
                if mutated != *original {
                    out.object = Some(mutated);
                }
                (RuleStatus::Pass, String::new())
            }
            Outcome::Failed(f) => {
                let error = match &f {
                    Failure::Eval(EvalError::Deadline) => {
                        PolicyEvalError::Timeout(ctx.deadline.budget())
                    }
                    Failure::Eval(e @ EvalError::Cost { .. }) => {
                        PolicyEvalError::Budget(e.to_string())
                    }
                    other => PolicyEvalError::Engine(other.to_string()),
                };
                out.errors.push(PolicyError {
                    error,
                    action: Action::Deny,
                });
                (RuleStatus::Error, f.to_string())
            }
        };
        out.applied = status != RuleStatus::Skip;
        if ctx.explain {
            out.rules.push(result(status, message));
        }
        out
    }
}

#[cfg(test)]
mod tests;
