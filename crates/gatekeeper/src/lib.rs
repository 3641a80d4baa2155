//! Gatekeeper ConstraintTemplates and Constraints, evaluated with regorus.
//!
//! - Claims `templates.gatekeeper.sh/*` `ConstraintTemplate` (v1, v1beta1, v1alpha1) and every kind of
//!   `constraints.gatekeeper.sh/*`. A constraint's kind must be the `spec.crd.spec.names.kind` of a loaded template.
//! - Each template is compiled once per policy set into its own regorus engine (templates may share a package name,
//!   so they are never loaded together) and then into a regorus VM program; evaluations take a machine from the
//!   template's pool (or clone the prepared interpreter, for the templates that run there: see [`divergence`]).
//!   Every evaluation has the time limit of the [`EvalContext`]. Legacy `targets[].rego` and `code[]` Rego are Rego
//!   v0 unless `code[].source.version` is `"v1"`; libs keep their `lib.*` packages.
//! - Each constraint is one policy named after the constraint. `spec.match` is checked in Rust before any Rego runs;
//!   the template's `operations` filter requests; `spec.parameters` is validated against the template's
//!   `openAPIV3Schema` when loading.
//! - The template sees `input = {review, parameters}` ([`review`]); results without `msg` are dropped, `details`
//!   defaults to `{}`, duplicates collapse. An evaluation error (including the time limit) is the policy's
//!   [`EvalError`], handled by the failure policy.
//! - `enforcementAction`: `deny` (or empty) denies, `warn` warns, `dryrun` only records, `scoped` uses the actions
//!   listed for `validation.gatekeeper.sh` (or `*`).
//! - Template sources may only reference `data.inventory` and `data.lib.*`; `http.send` and `external_data` are
//!   rejected when loading (no network access; external data providers are not supported). Templates and
//!   constraints are validated strictly: an unknown field (outside `parameters` and `openAPIV3Schema`) is a load
//!   error naming its path, with a "did you mean".
//! - A template's CEL (`code[]` with `engine: K8sNativeValidation`) runs instead of its Rego, as Gatekeeper's default
//!   driver does; [`LoadOptions::prefer_rego`] runs the Rego of templates that have both. The CEL sees `params` (the
//!   constraint), `variables.params` (its `spec.parameters`), `variables.anyObject` (the old object on DELETE),
//!   `object`, `oldObject`, `request` and `namespaceObject`; `matchCondition`, `variables`, `validations` and
//!   `failurePolicy` are honoured, `generateVAP` is ignored with a load warning.
//! - Known regorus/OPA differences are rewritten or reported when loading: see [`divergence`].
//! - `data.inventory` comes from the cluster context (the kinds a Gatekeeper `Config` or `SyncSet` among the policy
//!   files names); a template that reads it with no such document loaded gets a load warning.
//! - Gatekeeper's other resources (mutators, `ExpansionTemplate`, external data `Provider`) are accepted beside
//!   policies and reported as load warnings that say what policyctl does not do with them.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

// The core crate's modules under their usual names, so paths read `crate::policy::…` as before the split.
use policyctl_core::{admission, engine, policy, select};
use policyctl_regorus as support;

pub mod constraint;
/// The regorus/OPA divergences and their handling, shared with plain Rego.
pub use support::divergence;
pub mod matching;
pub mod review;
pub mod schema;
mod strict;
pub mod template;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::admission::Review;
use crate::engine::{Built, Engine, EngineInput, LoadOptions};
use crate::policy::{
    EnforcementPoint, EvalContext, EvalError, Evaluation, Policy, PolicyError, PolicyInfo,
    RuleResult, RuleStatus, Violation,
};
use crate::select::Scope;
pub use constraint::{Constraint, ConstraintError, Finding};
pub use review::{gator_request, ReviewError};
pub use template::Template;

/// API group of templates.
pub const TEMPLATES_GROUP: &str = "templates.gatekeeper.sh/";
/// API group of constraints.
pub const CONSTRAINTS_GROUP: &str = "constraints.gatekeeper.sh/";

/// The Gatekeeper engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatekeeperEngine;

/// Whether a document is a ConstraintTemplate.
pub fn is_template(api_version: &str, kind: &str) -> bool {
    api_version.starts_with(TEMPLATES_GROUP) && kind == "ConstraintTemplate"
}

/// Whether a document is a constraint.
pub fn is_constraint(api_version: &str) -> bool {
    api_version.starts_with(CONSTRAINTS_GROUP)
}

/// Other Gatekeeper resources that may sit beside templates and constraints: loaded as warnings that say what does
/// not happen, so a Gatekeeper policy repository loads as it is.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("mutations.gatekeeper.sh/", "Gatekeeper mutators are not supported by policyctl: this mutation is not applied"),
    (
        "expansion.gatekeeper.sh/",
        "ExpansionTemplate is not supported by policyctl: workloads are not expanded into the resources they generate",
    ),
    ("externaldata.gatekeeper.sh/", "external data providers are not supported by policyctl"),
];

/// Gatekeeper's sync configuration (`Config`, `SyncSet`): read by the cluster context to fill `data.inventory`
/// (`cluster::inventory`); the engine only notes that one is present.
fn is_sync_config(api_version: &str, kind: &str) -> bool {
    (api_version.starts_with("config.gatekeeper.sh/") && kind == "Config")
        || (api_version.starts_with("syncset.gatekeeper.sh/") && kind == "SyncSet")
}

fn unsupported(api_version: &str) -> Option<&'static str> {
    UNSUPPORTED
        .iter()
        .find(|(group, _)| api_version.starts_with(group))
        .map(|(_, why)| *why)
}

impl Engine for GatekeeperEngine {
    fn name(&self) -> &'static str {
        "gatekeeper"
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_template(api_version, kind)
            || is_constraint(api_version)
            || is_sync_config(api_version, kind)
            || unsupported(api_version).is_some()
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "templates.gatekeeper.sh ConstraintTemplate",
            "constraints.gatekeeper.sh <template kind>",
        ]
    }

    fn build(&self, input: EngineInput, options: &LoadOptions) -> Built {
        let mut built = Built::default();
        let mut templates: HashMap<String, Arc<Template>> = HashMap::new();
        for doc in input
            .documents
            .iter()
            .filter(|d| is_template(&d.api_version, &d.kind))
        {
            match Template::load_with(doc, options.eval_timeout, options.prefer_rego) {
                Ok((template, warnings)) => {
                    built.warnings.extend(warnings);
                    if let Some(previous) = templates.get(&template.kind) {
                        built.errors.push(doc.error_at(
                            "spec.crd.spec.names.kind",
                            format!(
                                "kind {} is already defined by the template in {}",
                                template.kind, previous.source
                            ),
                        ));
                        continue;
                    }
                    templates.insert(template.kind.clone(), Arc::new(template));
                }
                Err(errors) => built.errors.extend(errors),
            }
        }
        let syncs = input
            .documents
            .iter()
            .any(|d| is_sync_config(&d.api_version, &d.kind));
        if !syncs {
            for template in templates.values().filter(|t| t.reads_inventory) {
                built.warnings.push(crate::policy::LoadError::new(
                    template.source.clone(),
                    format!(
                        "template {} reads data.inventory, but no Gatekeeper Config or SyncSet among the policy files \
                         names kinds to sync: in the webhook the inventory is empty and referential checks find nothing",
                        template.name
                    ),
                ));
            }
        }
        let mut names: HashMap<(String, String), crate::policy::SourceRef> = HashMap::new();
        for doc in input
            .documents
            .iter()
            .filter(|d| !is_template(&d.api_version, &d.kind))
        {
            if is_sync_config(&doc.api_version, &doc.kind) {
                continue;
            }
            if let Some(why) = unsupported(&doc.api_version) {
                built
                    .warnings
                    .push(doc.error_at("kind", format!("{} {}: {why}", doc.kind, doc.name())));
                continue;
            }
            match Constraint::load(doc, &templates) {
                Ok(mut constraint) => {
                    built.warnings.append(&mut constraint.warnings);
                    let key = (doc.kind.clone(), constraint.name.clone());
                    if let Some(previous) = names.get(&key) {
                        built.errors.push(doc.error_at(
                            "metadata.name",
                            format!(
                                "constraint {} {} is already defined in {}",
                                doc.kind, constraint.name, previous
                            ),
                        ));
                        continue;
                    }
                    names.insert(key, doc.source.clone());
                    built.policies.push(Arc::new(ConstraintPolicy::new(
                        constraint,
                        doc.source.clone(),
                        options.eval_timeout,
                    )));
                }
                Err(err) => built.errors.extend(err.errors()),
            }
        }
        built
    }
}

/// A constraint as a policy of the webhook.
#[derive(Debug)]
pub struct ConstraintPolicy {
    info: PolicyInfo,
    constraint: Constraint,
    scope: Scope,
    /// Longest one evaluation may take, inside the request's deadline.
    cap: std::time::Duration,
}

impl ConstraintPolicy {
    /// Wrap a loaded constraint.
    pub fn new(
        constraint: Constraint,
        source: crate::policy::SourceRef,
        cap: std::time::Duration,
    ) -> Self {
        let scope = if constraint.action.is_some() {
            constraint.matcher.scope(constraint.template.operations)
        } else {
            Scope::default()
        };
        let info = PolicyInfo {
            name: constraint.name.clone(),
            kind: constraint.template.kind.clone(),
            engine: "gatekeeper",
            source,
            failure_policy: constraint
                .template
                .cel
                .as_ref()
                .and_then(|c| c.failure_policy),
            annotations: constraint.annotations.clone(),
        };
        ConstraintPolicy {
            info,
            constraint,
            scope,
            cap,
        }
    }

    /// The constraint.
    pub fn constraint(&self) -> &Constraint {
        &self.constraint
    }
}

/// The templates' `data` document, `{"inventory": …}`, from the cluster context's synced objects (`None` without
/// them). Converted once per inventory snapshot and shared by every evaluation until the inventory changes.
fn inventory_data(ctx: &EvalContext) -> Option<regorus::Value> {
    static CACHE: Mutex<Option<(Arc<serde_json::Value>, regorus::Value)>> = Mutex::new(None);
    let inventory = ctx.cluster.inventory()?;
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((source, data)) = cache.as_ref() {
        if Arc::ptr_eq(source, &inventory) {
            return Some(data.clone());
        }
    }
    let mut document = serde_json::Map::new();
    document.insert("inventory".to_string(), (*inventory).clone());
    let data = crate::support::to_rego(&serde_json::Value::Object(document));
    *cache = Some((inventory, data.clone()));
    Some(data)
}

/// The Gatekeeper form of a served review, built once per review and shared by every constraint: `input.review`
/// (from the review's shared regorus value) and the Namespace object of its namespace.
struct Served {
    input: Result<regorus::Value, review::ReviewError>,
    namespace_object: Option<serde_json::Value>,
}

impl Policy for ConstraintPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }

    fn scope(&self) -> Scope {
        self.scope.clone()
    }

    fn validates(&self) -> bool {
        self.constraint.action.is_some()
    }

    fn validate(&self, review: &Review, ctx: &EvalContext) -> Evaluation {
        let point = match ctx.point {
            EnforcementPoint::Webhook => constraint::WEBHOOK_POINT,
            EnforcementPoint::Audit => constraint::AUDIT_POINT,
            EnforcementPoint::Test => constraint::GATOR_POINT,
        };
        let Some(action) = self.constraint.action_at(point) else {
            return Evaluation::skip();
        };
        // A template's operations filter admission requests; audits and gator review objects, not operations.
        if ctx.point == EnforcementPoint::Webhook
            && !self
                .constraint
                .template
                .operations
                .contains(&review.operation)
        {
            return Evaluation::skip();
        }
        if let Some(cel) = &self.constraint.template.cel {
            return self.validate_cel(cel, action, review, ctx);
        }
        let served = review.cached(|r| {
            let namespace = r
                .namespace
                .as_deref()
                .filter(|_| !(r.kind.group.is_empty() && r.kind.kind == "Namespace"));
            let namespace_object = namespace.and_then(|ns| ctx.cluster.namespace(ns));
            let shared = support::review_value(r);
            let input = review::served_review(&shared, r.request(), namespace_object.as_ref());
            Served {
                input,
                namespace_object,
            }
        });
        // As in Gatekeeper, an evaluation error is a result of the constraint's own enforcement action; the decide
        // stage turns a `deny` constraint's error into the failure policy and a `warn`/`dryrun` one's into a warning
        // or a record.
        let name = &self.info.name;
        let on_error = |error: EvalError| Evaluation {
            applied: true,
            rules: explained(ctx, name, RuleStatus::Error, error.to_string()),
            errors: vec![PolicyError { error, action }],
            ..Evaluation::default()
        };
        let input = match served.input.as_ref() {
            Ok(input) => input,
            Err(e) => return on_error(EvalError::Engine(e.to_string())),
        };
        let target = review::target_of(review.request(), served.namespace_object.as_ref());
        // Only templates that read data.inventory get it: for the others it would only cost time. An inventory that
        // cannot fill (a synced kind we may not list) makes a matching constraint fail under its failure policy,
        // rather than find nothing in objects that will never arrive.
        let data = if self.constraint.template.reads_inventory {
            if let Some(problem) = ctx.cluster.inventory_problem() {
                if self.constraint.matches(&target) == Ok(false) {
                    return Evaluation::skip();
                }
                return on_error(EvalError::MissingContext(problem));
            }
            inventory_data(ctx)
        } else {
            None
        };
        let limit = ctx.time_limit(self.cap);
        let findings = match self.constraint.review(&target, input, data.as_ref(), limit) {
            Ok(Some(findings)) => findings,
            Ok(None) => return Evaluation::skip(),
            Err(EvalError::Timeout(_)) => {
                return on_error(EvalError::Timeout(ctx.deadline.budget()))
            }
            Err(err) => return on_error(err),
        };
        let mut evaluation = Evaluation::found(
            findings
                .into_iter()
                .map(|f| Violation {
                    message: f.msg,
                    action: if f.autoreject {
                        crate::policy::Action::Deny
                    } else {
                        action
                    },
                    reason: None,
                })
                .collect(),
        );
        if ctx.explain {
            let (status, message) = if evaluation.violations.is_empty() {
                (RuleStatus::Pass, String::new())
            } else {
                let messages: Vec<&str> = evaluation
                    .violations
                    .iter()
                    .map(|v| v.message.as_str())
                    .collect();
                (RuleStatus::Fail, messages.join("; "))
            };
            evaluation.rules = explained(ctx, name, status, message);
        }
        evaluation
    }
}

impl ConstraintPolicy {
    /// A template's CEL code on a review: the constraint's match first (in Rust, as for Rego), then the checks with
    /// `params` = the constraint, `variables.params` = its parameters and `variables.anyObject`. A failed validation
    /// is a violation with the validation's message, of the constraint's enforcement action.
    fn validate_cel(
        &self,
        cel: &template::CelCode,
        action: crate::policy::Action,
        review: &Review,
        ctx: &EvalContext,
    ) -> Evaluation {
        let name = &self.info.name;
        let namespace_object = review
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .filter(|_| !(review.kind.group.is_empty() && review.kind.kind == "Namespace"))
            .and_then(|ns| ctx.cluster.namespace(ns));
        let target = review::target_of(review.request(), namespace_object.as_ref());
        match self.constraint.matcher.matches(&target) {
            Ok(true) => {}
            Ok(false) => return Evaluation::skip(),
            Err(autoreject) => {
                let autoreject = autoreject.to_string();
                let mut out = Evaluation::found(vec![Violation::deny(autoreject.clone())]);
                out.rules = explained(ctx, name, RuleStatus::Fail, autoreject);
                return out;
            }
        }
        let params = self
            .constraint
            .cel_object
            .clone()
            .unwrap_or_else(policyctl_cel::Shared::null);
        let activation = policyctl_cel::Activation::new(policyctl_cel::ReviewBindings::of(review))
            .with_params(params)
            .with_namespace_object(
                namespace_object
                    .as_ref()
                    .map(policyctl_cel::bind::shared)
                    .unwrap_or_else(policyctl_cel::Shared::null),
            );
        let limits =
            policyctl_cel::Limits::until(std::time::Instant::now() + ctx.time_limit(self.cap));
        let outcome = cel.checks.run(&activation, &limits);
        let mut out = Evaluation::skip();
        policyctl_cel::checks::record(
            &mut out,
            outcome,
            &[action],
            ctx,
            name,
            &|_, m| m.to_string(),
            &|e| e.to_string(),
        );
        // A constraint that matched applied, even when a match condition left it unvalidated.
        out.applied = true;
        out
    }
}

/// The per-rule result of a constraint (its one "rule" is the constraint), when the context explains.
fn explained(
    ctx: &EvalContext,
    name: &str,
    status: RuleStatus,
    message: String,
) -> Vec<RuleResult> {
    if !ctx.explain {
        return Vec::new();
    }
    vec![RuleResult {
        rule: name.to_string(),
        status,
        message,
    }]
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cel_tests;

#[cfg(test)]
mod cross_check_tests;
