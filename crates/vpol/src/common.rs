//! What Kyverno's ValidatingPolicy and Kubernetes' ValidatingAdmissionPolicy share: `matchConstraints` (resource
//! rules, exclusions, namespace and object selectors, `matchPolicy`). The checks (`matchConditions`, `variables`,
//! `validations`) are shared with Gatekeeper's CEL too: [`policyctl_cel::checks`].

pub(crate) use policyctl_cel::checks::{
    is_stop, record, CheckSpecs, Checks, Named, Outcome, ValidationSpec,
};

use policyctl_core::admission::Review;
use policyctl_core::policy::EvalContext;
use policyctl_core::select::{OpSet, Scope};
use policyctl_kyverno::matching::selector_matches;
use policyctl_kyverno::spec::LabelSelector;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `matchConstraints` (a policy) or `matchResources` (a binding).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchResources {
    /// `resourceRules`.
    #[serde(default)]
    pub resource_rules: Vec<ResourceRule>,
    /// `excludeResourceRules`.
    #[serde(default)]
    pub exclude_resource_rules: Vec<ResourceRule>,
    /// `namespaceSelector`.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// `objectSelector`.
    #[serde(default)]
    pub object_selector: Option<LabelSelector>,
    /// `matchPolicy` (`Exact` or `Equivalent`).
    #[serde(default)]
    pub match_policy: Option<String>,
}

/// One `resourceRules` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    /// `apiGroups`.
    #[serde(default)]
    pub api_groups: Vec<String>,
    /// `apiVersions`.
    #[serde(default)]
    pub api_versions: Vec<String>,
    /// `operations`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// `resources` (`resource/subresource` for subresources).
    #[serde(default)]
    pub resources: Vec<String>,
    /// `resourceNames`.
    #[serde(default)]
    pub resource_names: Vec<String>,
    /// `scope` (`Cluster`, `Namespaced` or `*`).
    #[serde(default)]
    pub scope: Option<String>,
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
pub fn rule_matches(rule: &ResourceRule, review: &Review, equivalent: bool) -> bool {
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

/// The selection scope of resource rules: every `apiGroups` × `resources` pair with the rule's operations. Versions,
/// resource names, `scope` and exclusions only narrow a match, so the scope leaves them to [`rule_matches`], and it
/// covers every version of a group and resource (`matchPolicy: Equivalent` included). A rule with no groups, no
/// resources or only unknown operations matches nothing, as in [`rule_matches`].
pub fn scope_of<'a>(rules: impl IntoIterator<Item = &'a ResourceRule>) -> Scope {
    let mut scope = Scope::default();
    for rule in rules {
        let operations = if rule.operations.is_empty() {
            OpSet::ALL
        } else {
            rule.operations
                .iter()
                .filter_map(|o| OpSet::parse(o))
                .fold(OpSet::NONE, OpSet::union)
        };
        if operations == OpSet::NONE {
            continue;
        }
        for group in &rule.api_groups {
            let group = (group != "*").then_some(group.as_str());
            for resource in &rule.resources {
                scope.add_resource(group, resource, operations);
            }
        }
    }
    scope
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
pub fn namespace_object(review: &Review, ctx: &EvalContext) -> Option<Value> {
    let ns = review.namespace.as_deref().filter(|n| !n.is_empty())?;
    if review.kind.group.is_empty() && review.kind.kind == "Namespace" {
        return None;
    }
    Some(ctx.cluster.namespace(ns).unwrap_or_else(
        || serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    ))
}
