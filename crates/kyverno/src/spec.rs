//! Serde types of `kyverno.io/v1` / `v2beta1` `ClusterPolicy` and `Policy`.
//!
//! Only the fields the engine uses are typed; patterns, conditions and other free-form parts stay JSON values. Field
//! names are Kyverno's (camelCase). Unknown fields are accepted: Kyverno keeps adding optional ones.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A whole policy document.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyDocument {
    /// `metadata`.
    #[serde(default)]
    pub metadata: Metadata,
    /// `spec`.
    pub spec: Spec,
}

/// The metadata the engine uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    /// `metadata.name`.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace` (namespaced `Policy`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `metadata.annotations`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `spec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The rules; may be rewritten by autogen before they are typed, so kept as JSON here.
    #[serde(default)]
    pub rules: Vec<Value>,
    /// `All` (default) or `One`.
    #[serde(default)]
    pub apply_rules: Option<String>,
    /// `Audit` (default) or `Enforce`.
    #[serde(default)]
    pub validation_failure_action: Option<String>,
    /// Per-namespace overrides of the action.
    #[serde(default)]
    pub validation_failure_action_overrides: Vec<ActionOverride>,
    /// Deprecated `spec.failurePolicy`.
    #[serde(default)]
    pub failure_policy: Option<String>,
    /// `webhookConfiguration`.
    #[serde(default)]
    pub webhook_configuration: Option<WebhookConfiguration>,
    /// Return warnings for Audit failures.
    #[serde(default)]
    pub emit_warning: Option<bool>,
    /// Whether the policy applies at admission (default true).
    #[serde(default)]
    pub admission: Option<bool>,
    /// `spec.background` (default true): whether background scans (audits) evaluate the policy.
    #[serde(default)]
    pub background: Option<bool>,
}

/// `webhookConfiguration`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfiguration {
    /// `Fail` or `Ignore`.
    #[serde(default)]
    pub failure_policy: Option<String>,
}

/// A failure-action override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionOverride {
    /// `Audit` or `Enforce`.
    #[serde(default)]
    pub action: String,
    /// Namespaces (wildcards).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A label selector on the namespace.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
}

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// `name`.
    pub name: String,
    /// Context entries.
    #[serde(default)]
    pub context: Vec<ContextEntry>,
    /// `match`.
    #[serde(rename = "match", default)]
    pub matches: MatchResources,
    /// `exclude`.
    #[serde(default)]
    pub exclude: Option<MatchResources>,
    /// `preconditions` (`{any, all}` or a legacy list).
    #[serde(default)]
    pub preconditions: Option<Value>,
    /// `validate`.
    #[serde(default)]
    pub validate: Option<Validation>,
    /// `mutate`.
    #[serde(default)]
    pub mutate: Option<Mutation>,
    /// `generate` (unsupported).
    #[serde(default)]
    pub generate: Option<Value>,
    /// `verifyImages` (unsupported).
    #[serde(default)]
    pub verify_images: Option<Value>,
    /// `celPreconditions` (unsupported).
    #[serde(default)]
    pub cel_preconditions: Option<Value>,
    /// `preconditions`, compiled at load.
    #[serde(skip)]
    pub preconditions_compiled: Option<std::sync::Arc<crate::eval::Conditions>>,
}

/// `match` / `exclude`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchResources {
    /// OR of filters.
    #[serde(default)]
    pub any: Vec<ResourceFilter>,
    /// AND of filters.
    #[serde(default)]
    pub all: Vec<ResourceFilter>,
    /// Legacy direct form.
    #[serde(default)]
    pub resources: Option<ResourceDescription>,
    /// Legacy direct form.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// Legacy direct form.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Legacy direct form.
    #[serde(default)]
    pub cluster_roles: Vec<String>,
    /// Set by [`MatchResources::prepare`] when every filter that decides names kinds, each exactly (no wildcard):
    /// those kinds. A request of another kind cannot match (nor be excluded), whatever the rest of the block says.
    #[serde(skip)]
    pub kind_gate: Option<Vec<String>>,
}

impl MatchResources {
    /// Parse every kind selector once, and find the block's kind gate.
    pub fn prepare(&mut self) {
        for f in self.any.iter_mut().chain(self.all.iter_mut()) {
            f.resources.prepare();
        }
        if let Some(r) = &mut self.resources {
            r.prepare();
        }
        self.kind_gate = self.find_kind_gate();
    }

    /// The kinds one of which a request must have to be matched, when the block says so: `any` decides when it has
    /// filters, else `all`, else the legacy form; every filter of the deciding list needs kinds (a filter without
    /// them may match any kind) and every selector an exact kind.
    fn find_kind_gate(&self) -> Option<Vec<String>> {
        let descs: Vec<&ResourceDescription> = if !self.any.is_empty() {
            self.any.iter().map(|f| &f.resources).collect()
        } else if !self.all.is_empty() {
            self.all.iter().map(|f| &f.resources).collect()
        } else {
            vec![self.resources.as_ref()?]
        };
        let mut kinds = Vec::new();
        for d in descs {
            if d.kinds.is_empty() || d.parsed_kinds.len() != d.kinds.len() {
                return None;
            }
            for k in &d.parsed_kinds {
                let kind = k.exact_kind()?;
                if !kinds.iter().any(|known: &String| known == kind) {
                    kinds.push(kind.to_string());
                }
            }
        }
        Some(kinds)
    }

    /// Whether a request of `kind` may be matched (false only when the kind gate rules it out).
    pub fn may_match_kind(&self, kind: &str) -> bool {
        self.kind_gate
            .as_ref()
            .is_none_or(|gate| gate.iter().any(|k| k == kind))
    }
}

/// One filter of `any` / `all`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFilter {
    /// The resource part.
    #[serde(default)]
    pub resources: ResourceDescription,
    /// Subjects.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// `namespace:role` names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Cluster role names.
    #[serde(default)]
    pub cluster_roles: Vec<String>,
}

/// What resources a filter selects; every present field must match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescription {
    /// Kind selectors.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Deprecated single name.
    #[serde(default)]
    pub name: Option<String>,
    /// Names (wildcards).
    #[serde(default)]
    pub names: Vec<String>,
    /// Namespaces (wildcards).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Annotations (wildcards in keys and values).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Label selector on the object.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// Label selector on the object's namespace.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Operations.
    #[serde(default)]
    pub operations: Vec<String>,
    /// `kinds`, parsed once ([`ResourceDescription::prepare`]).
    #[serde(skip)]
    pub parsed_kinds: Vec<super::matching::KindSelector>,
}

impl ResourceDescription {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
            && self.name.is_none()
            && self.names.is_empty()
            && self.namespaces.is_empty()
            && self.annotations.is_empty()
            && self.selector.is_none()
            && self.namespace_selector.is_none()
            && self.operations.is_empty()
    }

    /// Parse the kind selectors once.
    pub fn prepare(&mut self) {
        self.parsed_kinds = self
            .kinds
            .iter()
            .map(|k| super::matching::parse_kind(k))
            .collect();
    }
}

/// A metav1.LabelSelector.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Exact labels (Kyverno accepts wildcards in values).
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Expressions.
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

/// One selector expression.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LabelExpression {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    /// Values.
    #[serde(default)]
    pub values: Vec<String>,
}

/// An rbacv1.Subject.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (ServiceAccount).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A context entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextEntry {
    /// The variable name.
    pub name: String,
    /// `variable`.
    #[serde(default)]
    pub variable: Option<VariableEntry>,
    /// `configMap`.
    #[serde(default)]
    pub config_map: Option<ConfigMapEntry>,
    /// `apiCall`.
    #[serde(default)]
    pub api_call: Option<ApiCallEntry>,
    /// `imageRegistry` (unsupported).
    #[serde(default)]
    pub image_registry: Option<Value>,
    /// `globalReference` (unsupported).
    #[serde(default)]
    pub global_reference: Option<Value>,
}

/// `variable` context entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariableEntry {
    /// A literal value (variables substituted).
    #[serde(default)]
    pub value: Option<Value>,
    /// An expression.
    #[serde(default)]
    pub jmes_path: Option<String>,
    /// Used when the expression fails or yields null.
    #[serde(default)]
    pub default: Option<Value>,
}

/// `configMap` context entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigMapEntry {
    /// Name (variables allowed).
    #[serde(default)]
    pub name: String,
    /// Namespace (variables allowed).
    #[serde(default)]
    pub namespace: String,
}

/// `apiCall` context entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCallEntry {
    /// The API path.
    #[serde(default)]
    pub url_path: Option<String>,
    /// `GET` (default) or `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// An external service (unsupported).
    #[serde(default)]
    pub service: Option<Value>,
    /// Applied to the response.
    #[serde(default)]
    pub jmes_path: Option<String>,
    /// Used when the call or the expression fails.
    #[serde(default)]
    pub default: Option<Value>,
}

/// `validate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// Message (variables allowed).
    #[serde(default)]
    pub message: Option<String>,
    /// Rule-level action.
    #[serde(default)]
    pub failure_action: Option<String>,
    /// Rule-level overrides.
    #[serde(default)]
    pub failure_action_overrides: Vec<ActionOverride>,
    /// Default true.
    #[serde(default)]
    pub allow_existing_violations: Option<bool>,
    /// `pattern`.
    #[serde(default)]
    pub pattern: Option<Value>,
    /// `anyPattern`.
    #[serde(default)]
    pub any_pattern: Option<Value>,
    /// `deny`.
    #[serde(default)]
    pub deny: Option<Deny>,
    /// `foreach`.
    #[serde(default)]
    pub foreach: Option<Vec<ForEachValidation>>,
    /// `podSecurity`.
    #[serde(default)]
    pub pod_security: Option<Value>,
    /// `podSecurity`, compiled at load.
    #[serde(skip)]
    pub pod_security_compiled: Option<std::sync::Arc<crate::pss::PodSecurity>>,
    /// `cel` (unsupported).
    #[serde(default)]
    pub cel: Option<Value>,
    /// `manifests` (unsupported).
    #[serde(default)]
    pub manifests: Option<Value>,
    /// Set when the rule is compiled and `pattern` / `anyPattern` contain no variable: substitution is skipped.
    #[serde(skip)]
    pub static_patterns: bool,
    /// `pattern`, `anyPattern` and `deny`, compiled at load.
    #[serde(skip)]
    pub compiled: Option<std::sync::Arc<crate::validate::CompiledBody>>,
}

/// `deny`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Deny {
    /// `{any, all}` or a list.
    #[serde(default)]
    pub conditions: Option<Value>,
}

/// One `validate.foreach` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForEachValidation {
    /// JMESPath without braces.
    #[serde(default)]
    pub list: String,
    /// Whether a map element becomes the validated resource (default true).
    #[serde(default)]
    pub element_scope: Option<bool>,
    /// Context entries loaded per element.
    #[serde(default)]
    pub context: Vec<ContextEntry>,
    /// Preconditions per element.
    #[serde(default)]
    pub preconditions: Option<Value>,
    /// `pattern`.
    #[serde(default)]
    pub pattern: Option<Value>,
    /// `anyPattern`.
    #[serde(default)]
    pub any_pattern: Option<Value>,
    /// `deny`.
    #[serde(default)]
    pub deny: Option<Deny>,
    /// Nested foreach.
    #[serde(default)]
    pub foreach: Option<Vec<ForEachValidation>>,
    /// `preconditions`, `pattern`, `anyPattern` and `deny`, compiled at load.
    #[serde(skip)]
    pub compiled: Option<std::sync::Arc<crate::validate::CompiledBody>>,
}

/// `mutate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutation {
    /// Strategic merge overlay.
    #[serde(default)]
    pub patch_strategic_merge: Option<Value>,
    /// RFC 6902 operations as a YAML string.
    #[serde(rename = "patchesJson6902", default)]
    pub patches_json6902: Option<String>,
    /// `foreach`.
    #[serde(default)]
    pub foreach: Option<Vec<ForEachMutation>>,
    /// Mutate existing resources (unsupported).
    #[serde(default)]
    pub targets: Option<Value>,
}

/// One `mutate.foreach` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForEachMutation {
    /// JMESPath without braces.
    #[serde(default)]
    pub list: String,
    /// `Ascending` or `Descending`.
    #[serde(default)]
    pub order: Option<String>,
    /// Context entries loaded per element.
    #[serde(default)]
    pub context: Vec<ContextEntry>,
    /// Preconditions per element.
    #[serde(default)]
    pub preconditions: Option<Value>,
    /// Strategic merge overlay.
    #[serde(default)]
    pub patch_strategic_merge: Option<Value>,
    /// RFC 6902 operations.
    #[serde(rename = "patchesJson6902", default)]
    pub patches_json6902: Option<String>,
    /// Nested foreach.
    #[serde(default)]
    pub foreach: Option<Vec<ForEachMutation>>,
    /// `list`, compiled at load when it is JMESPath that compiles.
    #[serde(skip)]
    pub compiled_list: Option<crate::variables::CompiledList>,
}
