//! Everything this crate takes from the ValidatingPolicy engine's matching (`matchConstraints`, binding
//! `matchResources`, autogen's controller rules, the namespace object, Kyverno's data libraries), in one place: the
//! rest of the crate calls these, so a change to `policyctl_vpol`'s matching API touches only this file.
use std::sync::Arc;

use policyctl_core::admission::Review;
use policyctl_core::policy::EvalContext;
use serde_json::Value;

pub use policyctl_vpol::common::{MatchResources, ResourceRule};

/// Whether one resource rule matches the review (group, version, resource/subresource, operation, name, scope).
/// `equivalent` is `matchPolicy: Equivalent` (any version of the group and resource).
pub fn rule_matches(rule: &ResourceRule, review: &Review, equivalent: bool) -> bool {
    policyctl_vpol::common::rule_matches(rule, review, equivalent)
}

/// Whether the review passes the exclusions and the namespace and object selectors of `m` (its resource rules are
/// checked apart, with [`rule_matches`]).
pub fn selected(m: &MatchResources, review: &Review, ctx: &EvalContext, equivalent: bool) -> bool {
    m.selected(review, ctx, equivalent)
}

/// Resource rules (none matches everything, as in a binding), exclusions and selectors.
pub fn matches(m: &MatchResources, review: &Review, ctx: &EvalContext, equivalent: bool) -> bool {
    m.matches(review, ctx, equivalent)
}

/// Whether resource rules match only Pods (autogen applies).
pub fn matches_only_pods(rules: &[ResourceRule]) -> bool {
    policyctl_vpol::matches_only_pods(rules)
}

/// The Pod controllers autogen covers by default.
pub fn default_controllers() -> Vec<String> {
    policyctl_vpol::DEFAULT_CONTROLLERS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The resource rules autogen derives from a Pod rule for `controllers`.
pub fn controller_rules(template: &ResourceRule, controllers: &[&str]) -> Vec<ResourceRule> {
    policyctl_vpol::controller_rule(template, controllers)
}

/// `namespaceObject` for a review.
pub fn namespace_object(review: &Review, ctx: &EvalContext) -> Option<Value> {
    policyctl_vpol::common::namespace_object(review, ctx)
}

/// Kyverno's `resource` and `image` libraries over the evaluation's cluster context.
pub fn kyverno_data(ctx: &EvalContext) -> Arc<dyn policyctl_cel::kyverno::KyvernoData> {
    Arc::new(policyctl_vpol::ClusterData(ctx.cluster.clone()))
}
