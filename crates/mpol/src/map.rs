//! Kubernetes `admissionregistration.k8s.io` MutatingAdmissionPolicy (v1alpha1, v1beta1, v1) and
//! MutatingAdmissionPolicyBinding, on the same mutation core as Kyverno's MutatingPolicy (the Kubernetes CEL
//! dialect, no autogen).
//!
//! A binding's `matchResources` narrows where its policy applies (both must match); each binding that selects a
//! request applies the policy once, in document order. A policy without any binding applies on its own constraints,
//! as the Kyverno CLI applies it (the API server would not run it at all). A binding naming no loaded policy is a
//! load warning.
//!
//! Params: the policy's `paramKind` and each binding's `paramRef` select params as for a ValidatingAdmissionPolicy
//! ([`policyctl_vpol::params`]: documents of the kind in the policy set, else the cluster's). A `paramRef.name` binds
//! that param as `params`; a `paramRef.selector` binds the selected params as a list, `params.items`, as the Kyverno
//! CLI does (the API server would apply the policy once per param). No param found is an error under the failure
//! policy, unless `parameterNotFoundAction: Allow` (the binding then does nothing).
use std::collections::BTreeMap;
use std::sync::Arc;

use policyctl_cel::Dialect;
use policyctl_core::engine::{Built, Engine, EngineInput, LoadOptions};
use policyctl_core::policy::source::Document;
use policyctl_core::policy::strict::{Shape, LABEL_SELECTOR, OBJECT_META};
use policyctl_vpol::params::{self, ParamRef};
use serde::Deserialize;

use crate::matching::MatchResources;
use crate::{Binding, MutatingPolicy};

const VERSIONS: [&str; 3] = [
    "admissionregistration.k8s.io/v1alpha1",
    "admissionregistration.k8s.io/v1beta1",
    "admissionregistration.k8s.io/v1",
];

/// The engine name.
pub const ENGINE: &str = "mutating-admission-policy";

/// Whether an apiVersion/kind is a MutatingAdmissionPolicy.
pub fn is_mutating_admission_policy(api_version: &str, kind: &str) -> bool {
    VERSIONS.contains(&api_version) && kind == "MutatingAdmissionPolicy"
}

/// Whether an apiVersion/kind is a MutatingAdmissionPolicyBinding.
pub fn is_binding(api_version: &str, kind: &str) -> bool {
    VERSIONS.contains(&api_version) && kind == "MutatingAdmissionPolicyBinding"
}

/// The MutatingAdmissionPolicy engine (policies and their bindings).
#[derive(Debug, Clone, Copy, Default)]
pub struct MutatingAdmissionPolicyEngine;

#[derive(Debug, Deserialize)]
struct BindingDoc {
    #[serde(default)]
    metadata: BindingMeta,
    #[serde(default)]
    spec: BindingSpec,
}

#[derive(Debug, Default, Deserialize)]
struct BindingMeta {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingSpec {
    #[serde(default)]
    policy_name: String,
    #[serde(default)]
    match_resources: Option<MatchResources>,
    #[serde(default)]
    param_ref: Option<ParamRef>,
}

static RESOURCE_RULE: Shape = Shape::Object(&[
    ("apiGroups", Shape::Any),
    ("apiVersions", Shape::Any),
    ("operations", Shape::Any),
    ("resources", Shape::Any),
    ("resourceNames", Shape::Any),
    ("scope", Shape::Any),
]);

const MATCH_RESOURCES: Shape = Shape::Object(&[
    ("resourceRules", Shape::List(&RESOURCE_RULE)),
    ("excludeResourceRules", Shape::List(&RESOURCE_RULE)),
    ("namespaceSelector", LABEL_SELECTOR),
    ("objectSelector", LABEL_SELECTOR),
    ("matchPolicy", Shape::Any),
]);

const NAMED_EXPRESSION: Shape = Shape::Object(&[("name", Shape::Any), ("expression", Shape::Any)]);
const EXPRESSION: Shape = Shape::Object(&[("expression", Shape::Any)]);

static POLICY: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            ("paramKind", Shape::Any),
            ("matchConstraints", MATCH_RESOURCES),
            ("variables", Shape::List(&NAMED_EXPRESSION)),
            (
                "mutations",
                Shape::List(&Shape::Object(&[
                    ("patchType", Shape::Any),
                    ("applyConfiguration", EXPRESSION),
                    ("jsonPatch", EXPRESSION),
                ])),
            ),
            ("failurePolicy", Shape::Any),
            ("matchConditions", Shape::List(&NAMED_EXPRESSION)),
            ("reinvocationPolicy", Shape::Any),
        ]),
    ),
    ("status", Shape::Any),
]);

static BINDING: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            ("policyName", Shape::Any),
            ("paramRef", Shape::Any),
            ("matchResources", MATCH_RESOURCES),
        ]),
    ),
]);

impl Engine for MutatingAdmissionPolicyEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_mutating_admission_policy(api_version, kind) || is_binding(api_version, kind)
    }

    fn param_kinds(&self, documents: &[Document]) -> Vec<(String, String)> {
        params::param_kinds(documents, is_mutating_admission_policy)
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "admissionregistration.k8s.io/v1alpha1 MutatingAdmissionPolicy",
            "admissionregistration.k8s.io/v1beta1 MutatingAdmissionPolicy",
            "admissionregistration.k8s.io/v1 MutatingAdmissionPolicy",
            "admissionregistration.k8s.io/v1alpha1 MutatingAdmissionPolicyBinding",
            "admissionregistration.k8s.io/v1beta1 MutatingAdmissionPolicyBinding",
            "admissionregistration.k8s.io/v1 MutatingAdmissionPolicyBinding",
        ]
    }

    fn build(&self, input: EngineInput, _options: &LoadOptions) -> Built {
        let mut built = Built::default();
        let mut bindings: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
        let mut binding_docs = Vec::new();
        for doc in input
            .documents
            .iter()
            .filter(|d| is_binding(&d.api_version, &d.kind))
        {
            let unknown = policyctl_core::policy::strict::check(doc, "", &doc.value, &BINDING);
            if !unknown.is_empty() {
                built.errors.extend(unknown);
                continue;
            }
            match doc.parse::<BindingDoc>() {
                Ok(b) if b.spec.policy_name.is_empty() => built
                    .errors
                    .push(doc.error_at("spec.policyName", "a binding needs a policyName")),
                Ok(b) => {
                    if let Some(r) = &b.spec.param_ref {
                        if let Err(e) = r.check(doc, "spec.paramRef") {
                            built.errors.push(e);
                            continue;
                        }
                    }
                    binding_docs.push((doc, b.spec.policy_name.clone()));
                    bindings
                        .entry(b.spec.policy_name)
                        .or_default()
                        .push(Binding {
                            name: b.metadata.name,
                            match_resources: b.spec.match_resources,
                            param_ref: b.spec.param_ref,
                        });
                }
                Err(e) => built.errors.push(e),
            }
        }
        let mut names = Vec::new();
        for doc in input
            .documents
            .iter()
            .filter(|d| is_mutating_admission_policy(&d.api_version, &d.kind))
        {
            let unknown = policyctl_core::policy::strict::check(doc, "", &doc.value, &POLICY);
            if !unknown.is_empty() {
                built.errors.extend(unknown);
                continue;
            }
            let name = doc.name().to_string();
            let own = bindings.get(&name).cloned().unwrap_or_default();
            match MutatingPolicy::build(doc, Dialect::Kubernetes, false, own) {
                Ok((mut policy, warnings)) => {
                    policy.info.engine = ENGINE;
                    if let Some(kind) = &policy.param_kind {
                        policy.params = kind.documents(&input.params);
                    }
                    built.warnings.extend(warnings);
                    names.push(name);
                    built.policies.push(Arc::new(policy));
                }
                Err(e) => built.errors.push(e),
            }
        }
        for (doc, policy) in binding_docs {
            if !names.contains(&policy) {
                built.warnings.push(doc.error_at(
                    "spec.policyName",
                    format!(
                        "no MutatingAdmissionPolicy {policy:?} is loaded: the binding does nothing"
                    ),
                ));
            }
        }
        built
    }
}

#[cfg(test)]
mod tests {
    use policyctl_core::admission::{Operation, Review};
    use policyctl_core::engine::{Engine, EngineInput, LoadOptions};
    use policyctl_core::policy::source::documents;
    use policyctl_core::policy::{EvalContext, SourceFile};
    use serde_json::{json, Value};

    use super::MutatingAdmissionPolicyEngine;

    const POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata: {name: label}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >-
        Object{metadata: Object.metadata{labels: {"seen": string(size(object.data))}}}
"#;

    fn build(yaml: &str) -> policyctl_core::engine::Built {
        let (docs, errors) = documents(&SourceFile {
            origin: "map.yaml".into(),
            content: yaml.into(),
        });
        assert!(errors.is_empty(), "{errors:?}");
        MutatingAdmissionPolicyEngine.build(
            EngineInput {
                documents: docs,
                ..EngineInput::default()
            },
            &LoadOptions::default(),
        )
    }

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "default"}, "data": {"a": "1"}})
    }

    fn mutated(built: &policyctl_core::engine::Built, object: Value) -> Option<Value> {
        let review = Review::for_object(object, None, Operation::Create);
        built.policies[0]
            .mutate(&review, &EvalContext::default())
            .object
    }

    #[test]
    fn the_index_offers_its_resources_in_every_version() {
        let built = build(POLICY);
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        let set = policyctl_core::policy::PolicySet::new(built.policies.clone(), 1, String::new());
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}});
        let review = Review::for_object(pod, None, Operation::Create);
        assert!(set.select(&review).is_empty());
        // The rule names v1; another version of configmaps is offered and matches (Equivalent is the default).
        let mut other = cm("a");
        other["apiVersion"] = json!("v2");
        let review = Review::for_object(other, None, Operation::Create);
        let selected = set.select(&review);
        assert_eq!(selected.len(), 1);
        let out = selected[0].mutate(&review, &EvalContext::default());
        assert!(out.object.is_some(), "{out:?}");
    }

    #[test]
    fn an_unbound_policy_applies_on_its_constraints() {
        let built = build(POLICY);
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        let out = mutated(&built, cm("a")).expect("mutated");
        assert_eq!(out["metadata"]["labels"]["seen"], "1");
    }

    #[test]
    fn bindings_narrow_where_the_policy_applies() {
        let yaml = format!(
            "{POLICY}---\napiVersion: admissionregistration.k8s.io/v1beta1\nkind: MutatingAdmissionPolicyBinding\n\
             metadata: {{name: b}}\nspec:\n  policyName: label\n  matchResources:\n    resourceRules:\n    \
             - {{apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [configmaps], resourceNames: [only]}}\n"
        );
        let built = build(&yaml);
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        assert!(built.warnings.is_empty(), "{:?}", built.warnings);
        assert!(mutated(&built, cm("only")).is_some());
        assert_eq!(mutated(&built, cm("other")), None);
    }

    #[test]
    fn a_binding_without_its_policy_warns_and_unknown_fields_are_errors() {
        let built = build(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingAdmissionPolicyBinding\n\
             metadata: {name: b}\nspec: {policyName: missing}\n",
        );
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        assert_eq!(built.warnings.len(), 1);
        assert!(built.warnings[0].to_string().contains("missing"));

        let built = build(&POLICY.replace("reinvocationPolicy", "reinvocationPolicyy"));
        assert_eq!(built.errors.len(), 1, "{:?}", built.errors);
        assert!(built.policies.is_empty());
    }

    const PARAM_POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1alpha1
kind: MutatingAdmissionPolicy
metadata: {name: replicas}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: EXPRESSION
---
apiVersion: admissionregistration.k8s.io/v1alpha1
kind: MutatingAdmissionPolicyBinding
metadata: {name: b}
spec:
  policyName: replicas
  paramRef: PARAMREF
"#;

    fn param(name: &str, label: &str, value: &str) -> policyctl_core::policy::source::Document {
        let (docs, errors) = documents(&SourceFile {
            origin: "params.yaml".into(),
            content: format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default, \
                 labels: {{type: {label}}}}}\ndata: {{value: '{value}'}}\n"
            ),
        });
        assert!(errors.is_empty(), "{errors:?}");
        docs.into_iter().next().expect("a document")
    }

    fn build_with_params(
        expression: &str,
        param_ref: &str,
        params: Vec<policyctl_core::policy::source::Document>,
    ) -> policyctl_core::engine::Built {
        let yaml = PARAM_POLICY
            .replace("EXPRESSION", expression)
            .replace("PARAMREF", param_ref);
        let (docs, errors) = documents(&SourceFile {
            origin: "map.yaml".into(),
            content: yaml,
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            MutatingAdmissionPolicyEngine.param_kinds(&docs),
            [("v1".to_string(), "ConfigMap".to_string())]
        );
        MutatingAdmissionPolicyEngine.build(
            EngineInput {
                documents: docs,
                params,
                ..EngineInput::default()
            },
            &LoadOptions::default(),
        )
    }

    const LABEL_FROM_PARAM: &str =
        "'Object{metadata: Object.metadata{labels: {\"v\": params.data.value}}}'";

    #[test]
    fn a_param_ref_by_name_binds_that_param() {
        let built = build_with_params(
            LABEL_FROM_PARAM,
            "{name: one, namespace: default}",
            vec![param("one", "p", "1"), param("two", "p", "2")],
        );
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        let out = mutated(&built, cm("a")).expect("mutated");
        assert_eq!(out["metadata"]["labels"]["v"], "1");
    }

    #[test]
    fn a_param_ref_selector_binds_the_selected_params_as_items() {
        let built = build_with_params(
            "'Object{metadata: Object.metadata{labels: {\"v\": params.items.map(p, p.data.value).join(\"-\")}}}'",
            "{selector: {matchLabels: {type: p}}}",
            vec![param("one", "p", "1"), param("other", "q", "x"), param("two", "p", "2")],
        );
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        let out = mutated(&built, cm("a")).expect("mutated");
        assert_eq!(out["metadata"]["labels"]["v"], "1-2");
    }

    #[test]
    fn a_missing_param_is_an_error_unless_the_binding_allows_it() {
        let review = Review::for_object(cm("a"), None, Operation::Create);
        let built = build_with_params(
            LABEL_FROM_PARAM,
            "{name: nowhere}",
            vec![param("one", "p", "1")],
        );
        let m = built.policies[0].mutate(&review, &EvalContext::default());
        assert_eq!(m.object, None);
        assert_eq!(m.errors.len(), 1, "{m:?}");
        assert!(
            m.errors[0].error.to_string().contains("no params found"),
            "{m:?}"
        );

        let built = build_with_params(
            LABEL_FROM_PARAM,
            "{name: nowhere, parameterNotFoundAction: Allow}",
            vec![param("one", "p", "1")],
        );
        let m = built.policies[0].mutate(&review, &EvalContext::default());
        assert_eq!(m.object, None);
        assert!(m.errors.is_empty(), "{m:?}");

        // Both name and selector: a load error naming the field.
        let built = build_with_params(
            LABEL_FROM_PARAM,
            "{name: one, selector: {}}",
            vec![param("one", "p", "1")],
        );
        assert!(
            built
                .errors
                .iter()
                .any(|e| e.to_string().contains("spec.paramRef")),
            "{:?}",
            built.errors
        );
    }
}
