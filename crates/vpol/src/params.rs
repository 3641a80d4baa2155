//! Params of Kubernetes admission policies (`paramKind` on the policy, `paramRef` on its binding), shared by
//! ValidatingAdmissionPolicy ([`crate::vap`]) and MutatingAdmissionPolicy (policyctl-mpol).
//!
//! Params are the documents of the policy's `paramKind` in the policy set (any file of the set; a test's
//! `paramResources`), else a GET through the cluster context. A binding's `paramRef` selects by `name` or `selector`,
//! in `namespace` (default: the request's namespace; a param document without a namespace matches any).

use policyctl_core::admission::{plural, Review};
use policyctl_core::policy::source::Document;
use policyctl_core::policy::{EvalContext, LoadError};
use policyctl_kyverno::matching::selector_matches;
use policyctl_kyverno::spec::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use crate::common::labels_of;

/// A policy's `paramKind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParamKind {
    /// `apiVersion`.
    #[serde(default)]
    pub api_version: String,
    /// `kind`.
    #[serde(default)]
    pub kind: String,
}

/// A binding's `paramRef`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParamRef {
    /// `name`: one param.
    #[serde(default)]
    pub name: Option<String>,
    /// `namespace` (default: the request's).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `selector`: every param whose labels match.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// `parameterNotFoundAction` (`Allow` or `Deny`, the default).
    #[serde(default)]
    pub parameter_not_found_action: Option<String>,
}

impl ParamKind {
    /// Checks a `paramKind` as written (`field` is its path in `doc`).
    pub fn check(&self, doc: &Document, field: &str) -> Result<(), LoadError> {
        if self.api_version.is_empty() || self.kind.is_empty() {
            return Err(doc.error_at(field, "apiVersion and kind are required"));
        }
        Ok(())
    }

    /// The documents of this kind among `params` (the policy set's parameter documents).
    pub fn documents(&self, params: &[Document]) -> Vec<Value> {
        params
            .iter()
            .filter(|d| d.api_version == self.api_version && d.kind == self.kind)
            .map(|d| d.value.clone())
            .collect()
    }
}

impl ParamRef {
    /// Checks a `paramRef` as written (`field` is its path in `doc`): exactly one of `name` and `selector`, a known
    /// `parameterNotFoundAction`.
    pub fn check(&self, doc: &Document, field: &str) -> Result<(), LoadError> {
        if self.name.is_some() == self.selector.is_some() {
            return Err(doc.error_at(field, "exactly one of name and selector is required"));
        }
        if let Some(a) = self.parameter_not_found_action.as_deref() {
            if a != "Allow" && a != "Deny" {
                return Err(doc.error_at(
                    format!("{field}.parameterNotFoundAction"),
                    format!("unknown action {a:?} (Allow or Deny)"),
                ));
            }
        }
        Ok(())
    }

    /// Whether a missing param allows the request (`parameterNotFoundAction: Allow`).
    pub fn allows_missing(&self) -> bool {
        self.parameter_not_found_action.as_deref() == Some("Allow")
    }

    /// The params of `kind` this reference selects for a review: from `known` (the policy set's documents of the
    /// kind) when there are any, else from the cluster context.
    pub fn select(
        &self,
        kind: &ParamKind,
        known: &[Value],
        review: &Review,
        ctx: &EvalContext,
    ) -> Result<Vec<Value>, String> {
        let namespace = self
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| review.namespace.clone().filter(|n| !n.is_empty()));
        let selected = |p: &Value| {
            let name_ok = match &self.name {
                Some(name) => p.pointer("/metadata/name").and_then(Value::as_str) == Some(name),
                None => self
                    .selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(s, labels_of(Some(p)))),
            };
            let ns = p
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            name_ok && (ns.is_empty() || namespace.as_deref().is_none_or(|n| n == ns))
        };
        if !known.is_empty() {
            return Ok(known.iter().filter(|p| selected(p)).cloned().collect());
        }
        // None in the policy set: the cluster's.
        let path = param_path(kind, namespace.as_deref(), self.name.as_deref())
            .map_err(|e| e.to_string())?;
        let answer = ctx
            .cluster
            .api_get(&path)
            .map_err(|e| format!("params {path}: {e}"))?;
        Ok(match self.name {
            Some(_) => vec![answer],
            None => answer
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| selected(p))
                .cloned()
                .collect(),
        })
    }
}

/// The `(apiVersion, kind)` of every `spec.paramKind` among the documents `is_policy` accepts (the loader routes
/// documents of these kinds to the engine as params).
pub fn param_kinds(
    documents: &[Document],
    is_policy: impl Fn(&str, &str) -> bool,
) -> Vec<(String, String)> {
    documents
        .iter()
        .filter(|d| is_policy(&d.api_version, &d.kind))
        .filter_map(|d| {
            let kind = d.value.pointer("/spec/paramKind")?;
            Some((
                kind.get("apiVersion")?.as_str()?.to_string(),
                kind.get("kind")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The API path of params of `kind` (the resource is the kind's usual plural).
fn param_path(
    kind: &ParamKind,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<String, policyctl_cel::kyverno::DataError> {
    let collection = crate::api_path(
        &kind.api_version,
        &plural(&kind.kind),
        namespace.unwrap_or(""),
    )?;
    match name {
        Some(name) => {
            crate::segment("name", name)?;
            Ok(format!("{collection}/{name}"))
        }
        None => Ok(collection),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policyctl_cel::kyverno::DataError;

    #[test]
    fn params_path_for_cluster_lookups() {
        let kind = ParamKind {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
        };
        assert_eq!(
            param_path(&kind, Some("ns"), Some("x")).ok().as_deref(),
            Some("/api/v1/namespaces/ns/configmaps/x")
        );
        let kind = ParamKind {
            api_version: "example.com/v1".into(),
            kind: "Policy".into(),
        };
        assert_eq!(
            param_path(&kind, None, None).ok().as_deref(),
            Some("/apis/example.com/v1/policies")
        );
        assert!(matches!(
            param_path(&kind, None, Some("../x")),
            Err(DataError::InvalidSegment { what: "name", .. })
        ));
    }
}
