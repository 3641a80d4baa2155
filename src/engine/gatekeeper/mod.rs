//! Gatekeeper ConstraintTemplates and Constraints, evaluated with regorus.
//!
//! - Claims `templates.gatekeeper.sh/*` `ConstraintTemplate` (v1, v1beta1, v1alpha1) and every kind of
//!   `constraints.gatekeeper.sh/*`. A constraint's kind must be the `spec.crd.spec.names.kind` of a loaded template.
//! - Each template is compiled once per policy set into its own prepared regorus engine (templates may share a
//!   package name, so they are never loaded together), cloned per evaluation. Legacy `targets[].rego` and `code[]`
//!   Rego are Rego v0 unless `code[].source.version` is `"v1"`; libs keep their `lib.*` packages.
//! - Each constraint is one policy named after the constraint. `spec.match` is checked in Rust before any Rego runs;
//!   the template's `operations` filter requests; `spec.parameters` is validated against the template's
//!   `openAPIV3Schema` when loading.
//! - The template sees `input = {review, parameters}` ([`review`]); results without `msg` are dropped, `details`
//!   defaults to `{}`, duplicates collapse. An evaluation error (including the time limit) is the policy's
//!   [`EvalError`], handled by the failure policy.
//! - `enforcementAction`: `deny` (or empty) denies, `warn` warns, `dryrun` only records, `scoped` uses the actions
//!   listed for `validation.gatekeeper.sh` (or `*`).
//! - Template sources may only reference `data.inventory` and `data.lib.*`; `http.send` is rejected when loading.
//! - Known regorus/OPA differences are rewritten or reported when loading: see [`divergence`].

pub mod constraint;
pub mod divergence;
mod lexer;
pub mod matching;
pub mod review;
pub mod schema;
pub mod template;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Built, Engine, EngineInput, LoadOptions};
use crate::admission::Review;
use crate::policy::{EvalContext, EvalError, Policy, PolicyInfo, Violation};
use crate::select::Scope;
pub use constraint::{Constraint, ConstraintError, Finding};
pub use review::Request;
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

impl Engine for GatekeeperEngine {
    fn name(&self) -> &'static str {
        "gatekeeper"
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_template(api_version, kind) || is_constraint(api_version)
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
            match Template::load(doc, options.eval_timeout) {
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
        let mut names: HashMap<(String, String), crate::policy::SourceRef> = HashMap::new();
        for doc in input
            .documents
            .iter()
            .filter(|d| !is_template(&d.api_version, &d.kind))
        {
            match Constraint::load(doc, &templates) {
                Ok(constraint) => {
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
}

impl ConstraintPolicy {
    /// Wrap a loaded constraint.
    pub fn new(constraint: Constraint, source: crate::policy::SourceRef) -> Self {
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
            failure_policy: None,
        };
        ConstraintPolicy {
            info,
            constraint,
            scope,
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
    let data = crate::engine::rego::support::to_rego(&serde_json::Value::Object(document));
    *cache = Some((inventory, data.clone()));
    Some(data)
}

/// The Gatekeeper form of a review, built once per review and shared by every constraint.
struct CachedRequest(Result<Request, String>);

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

    fn validate(&self, review: &Review, ctx: &EvalContext) -> Result<Vec<Violation>, EvalError> {
        let Some(action) = self.constraint.action else {
            return Ok(Vec::new());
        };
        if !self
            .constraint
            .template
            .operations
            .contains(&review.operation)
        {
            return Ok(Vec::new());
        }
        let cached = review.cached(|r| {
            let namespace = r
                .namespace
                .as_deref()
                .filter(|_| !(r.kind.group.is_empty() && r.kind.kind == "Namespace"));
            let namespace_object = namespace.and_then(|ns| ctx.cluster.namespace(ns));
            CachedRequest(Request::new(r.request().clone(), namespace_object))
        });
        let request = cached
            .0
            .as_ref()
            .map_err(|e| EvalError::Engine(e.clone()))?;
        let data = inventory_data(ctx);
        let findings = self
            .constraint
            .review(request, data.as_ref(), ctx.timeout)?;
        Ok(findings
            .into_iter()
            .map(|f| Violation {
                message: f.msg,
                action: if f.autoreject {
                    crate::policy::Action::Deny
                } else {
                    action
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
