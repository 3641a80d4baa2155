//! A constraint's `spec.match`, evaluated in Rust before any Rego runs.
//!
//! All matchers are ANDed and an absent matcher matches. A constraint matches a request when either the `object` or
//! the `oldObject` matches. `namespaceSelector` on a namespaced object needs the Namespace object; when it is not
//! available, matching fails with an error, which the policy turns into a denial (Gatekeeper's autoreject).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kube::core::{Expression, Selector, SelectorExt};

use serde::Deserialize;
use serde_json::Value;

use crate::select::{OpSet, Scope};

/// `spec.match`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// `kinds[]`: ORed group/kind lists.
    #[serde(default)]
    pub kinds: Vec<KindMatch>,
    /// `Cluster`, `Namespaced`, anything else matches all.
    #[serde(default)]
    pub scope: Option<String>,
    /// Namespaces (wildcards) the object must be in.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces (wildcards) the object must not be in.
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
    /// Selector on the object's labels.
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
    /// Selector on the labels of the object's namespace.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// The object's name (a wildcard).
    #[serde(default)]
    pub name: Option<String>,
    /// `All` (default), `Original` or `Generated`.
    #[serde(default)]
    pub source: Option<String>,
}

/// One `kinds[]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KindMatch {
    /// API groups; empty or `*` for any, `""` for the core group.
    #[serde(default)]
    pub api_groups: Vec<String>,
    /// Kinds; empty or `*` for any.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// A Kubernetes label selector, matched by kube's [`Selector`] (built once, on first use).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
    #[serde(skip)]
    compiled: OnceLock<Selector>,
}

impl PartialEq for LabelSelector {
    fn eq(&self, other: &Self) -> bool {
        self.match_labels == other.match_labels && self.match_expressions == other.match_expressions
    }
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Check the selector's shape; the error names the field below the selector.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, req) in self.match_expressions.iter().enumerate() {
            let field = format!("matchExpressions[{i}]");
            match req.operator.as_str() {
                "In" | "NotIn" if req.values.is_empty() => {
                    return Err((
                        format!("{field}.values"),
                        format!("operator {} needs values", req.operator),
                    ))
                }
                "Exists" | "DoesNotExist" if !req.values.is_empty() => {
                    return Err((
                        format!("{field}.values"),
                        format!("operator {} takes no values", req.operator),
                    ))
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => {
                    return Err((
                        format!("{field}.operator"),
                        format!(
                            "unknown operator {other:?}; use In, NotIn, Exists or DoesNotExist"
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// kube's selector for this one ([`LabelSelector::validate`] has checked the operators at load).
    fn selector(&self) -> &Selector {
        self.compiled.get_or_init(|| {
            let equality = self
                .match_labels
                .iter()
                .map(|(k, v)| Expression::Equal(k.clone(), v.clone()));
            let requirements = self.match_expressions.iter().map(|req| {
                let key = req.key.clone();
                let values = || req.values.iter().cloned().collect();
                match req.operator.as_str() {
                    "In" => Expression::In(key, values()),
                    "NotIn" => Expression::NotIn(key, values()),
                    "Exists" => Expression::Exists(key),
                    "DoesNotExist" => Expression::DoesNotExist(key),
                    // Refused at load; should one slip through, it matches nothing.
                    _ => Expression::In(key, Default::default()),
                }
            });
            equality.chain(requirements).collect()
        })
    }

    /// Whether `labels` satisfy the selector (non-string label values are ignored).
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let labels: BTreeMap<String, String> = labels
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        self.selector().matches(&labels)
    }
}

/// Gatekeeper's wildcard: exact, `prefix*`, `*suffix`, `*contains*`, or `*`.
pub fn wildcard(pattern: &str, value: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        _ if pattern == "*" => true,
        (Some(rest), _) if rest.ends_with('*') => value.contains(rest.trim_end_matches('*')),
        (Some(suffix), _) => value.ends_with(suffix),
        (None, Some(prefix)) => value.starts_with(prefix),
        (None, None) => pattern == value,
    }
}

/// `generateName` only matches the `prefix*` and `*contains*` forms.
fn wildcard_generate_name(pattern: &str, generate_name: &str) -> bool {
    pattern.ends_with('*') && pattern.len() > 1 && wildcard(pattern, generate_name)
}

/// What a request offers the matcher.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `request.kind.group`.
    pub group: &'a str,
    /// `request.kind.kind`.
    pub kind: &'a str,
    /// `request.object` (for DELETE: the old object).
    pub object: Option<&'a Value>,
    /// `request.oldObject`.
    pub old_object: Option<&'a Value>,
    /// `request.namespace`.
    pub request_namespace: Option<&'a str>,
    /// The Namespace object of the request's namespace, when known.
    pub namespace_object: Option<&'a Value>,
}

fn meta<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn labels(object: &Value) -> Option<&serde_json::Map<String, Value>> {
    object
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
}

impl Match {
    /// Check wildcards and selectors when loading; the error is `(field under spec.match, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(sel) = &self.label_selector {
            sel.validate()
                .map_err(|(f, m)| (format!("labelSelector.{f}"), m))?;
        }
        if let Some(sel) = &self.namespace_selector {
            sel.validate()
                .map_err(|(f, m)| (format!("namespaceSelector.{f}"), m))?;
        }
        if let Some(source) = &self.source {
            if !matches!(source.as_str(), "All" | "Original" | "Generated" | "") {
                return Err((
                    "source".into(),
                    format!("unknown source {source:?}; use All, Original or Generated"),
                ));
            }
        }
        Ok(())
    }

    /// The kinds and operations this match can apply to, for the request index.
    pub fn scope(&self, operations: OpSet) -> Scope {
        let mut scope = Scope::default();
        if self.kinds.is_empty() {
            scope.add(None, None, operations);
            return scope;
        }
        for entry in &self.kinds {
            let any = |list: &[String]| list.is_empty() || list.iter().any(|x| x == "*");
            let groups: Vec<Option<&str>> = if any(&entry.api_groups) {
                vec![None]
            } else {
                entry.api_groups.iter().map(|g| Some(g.as_str())).collect()
            };
            let kinds: Vec<Option<&str>> = if any(&entry.kinds) {
                vec![None]
            } else {
                entry.kinds.iter().map(|k| Some(k.as_str())).collect()
            };
            for group in &groups {
                for kind in &kinds {
                    scope.add(*group, *kind, operations);
                }
            }
        }
        scope
    }

    /// Whether the request matches: `Ok(true/false)`, or an error when a namespace selector cannot be decided.
    pub fn matches(&self, target: &Target<'_>) -> Result<bool, MatchError> {
        if !self.kind_matches(target.group, target.kind) {
            return Ok(false);
        }
        if self.source.as_deref() == Some("Generated") {
            return Ok(false);
        }
        let objects: Vec<&Value> = [target.object, target.old_object]
            .into_iter()
            .flatten()
            .collect();
        let empty = Value::Object(Default::default());
        let objects = if objects.is_empty() {
            vec![&empty]
        } else {
            objects
        };
        let mut error = None;
        for object in objects {
            match self.object_matches(target, object) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => error = Some(e),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    fn kind_matches(&self, group: &str, kind: &str) -> bool {
        self.kinds.is_empty()
            || self.kinds.iter().any(|entry| {
                let groups = entry.api_groups.is_empty()
                    || entry.api_groups.iter().any(|g| g == "*" || g == group);
                let kinds =
                    entry.kinds.is_empty() || entry.kinds.iter().any(|k| k == "*" || k == kind);
                groups && kinds
            })
    }

    fn object_matches(&self, target: &Target<'_>, object: &Value) -> Result<bool, MatchError> {
        let is_namespace = target.group.is_empty() && target.kind == "Namespace";
        let namespace_name = target.namespace_object.and_then(|ns| meta(ns, "name"));
        let own_namespace = meta(object, "namespace")
            .or(target.request_namespace)
            .or(namespace_name);
        match self.scope.as_deref() {
            Some("Cluster") if !(is_namespace || own_namespace.is_none()) => return Ok(false),
            Some("Namespaced") if is_namespace || own_namespace.is_none() => return Ok(false),
            _ => {}
        }
        // The namespace the namespace matchers compare.
        let compared = if is_namespace {
            meta(object, "name")
        } else {
            namespace_name.or(own_namespace)
        };
        if let Some(ns) = compared {
            if !self.namespaces.is_empty() && !self.namespaces.iter().any(|p| wildcard(p, ns)) {
                return Ok(false);
            }
            if self.excluded_namespaces.iter().any(|p| wildcard(p, ns)) {
                return Ok(false);
            }
        }
        if let Some(selector) = &self.label_selector {
            if !selector.matches(labels(object)) {
                return Ok(false);
            }
        }
        if let Some(selector) = &self.namespace_selector {
            if is_namespace {
                if !selector.matches(labels(object)) {
                    return Ok(false);
                }
            } else if let Some(ns) = own_namespace {
                match target.namespace_object {
                    Some(ns_object) => {
                        if !selector.matches(labels(ns_object)) {
                            return Ok(false);
                        }
                    }
                    None => {
                        return Err(MatchError::NamespaceUnavailable {
                            namespace: ns.to_string(),
                        })
                    }
                }
            }
        }
        if let Some(pattern) = self.name.as_deref().filter(|p| !p.is_empty()) {
            let by_name = meta(object, "name").is_some_and(|n| wildcard(pattern, n));
            let by_generate_name =
                meta(object, "generateName").is_some_and(|g| wildcard_generate_name(pattern, g));
            if !(by_name || by_generate_name) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Why a constraint's match cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The constraint has a namespace selector and the request's Namespace object is not known: as Gatekeeper does,
    /// the request is rejected (autoreject).
    #[error(
        "namespace {namespace:?} is not available, so the namespaceSelector of this constraint cannot be evaluated; \
         the request is rejected (autoreject)"
    )]
    NamespaceUnavailable {
        /// The request's namespace.
        namespace: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Match {
        serde_json::from_value(v).expect("match parses")
    }

    fn pod(ns: &str, name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels}})
    }

    fn target<'a>(kind: &'a str, object: &'a Value, ns_object: Option<&'a Value>) -> Target<'a> {
        Target {
            group: "",
            kind,
            object: Some(object),
            old_object: None,
            request_namespace: None,
            namespace_object: ns_object,
        }
    }

    #[test]
    fn wildcards() {
        for (pattern, value, expected) in [
            ("kube-system", "kube-system", true),
            ("kube-system", "kube-systemx", false),
            ("kube-*", "kube-public", true),
            ("*-system", "kube-system", true),
            ("*-system", "kube-systems", false),
            ("*ube*", "kube-system", true),
            ("*", "anything", true),
            ("*x*", "abc", false),
        ] {
            assert_eq!(wildcard(pattern, value), expected, "{pattern} vs {value}");
        }
    }

    #[test]
    fn matching_table() {
        let p = pod("prod", "web-1", json!({"app": "web"}));
        let ns_prod = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "labels": {"env": "prod"}}});
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
        type Case<'a> = (
            Value,
            &'a str,
            &'a Value,
            Option<&'a Value>,
            Result<bool, ()>,
        );
        let cases: Vec<Case<'_>> = vec![
            (json!({}), "Pod", &p, None, Ok(true)),
            (
                json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}),
                "Pod",
                &p,
                None,
                Ok(true),
            ),
            (
                json!({"kinds": [{"apiGroups": ["apps"], "kinds": ["Pod"]}]}),
                "Pod",
                &p,
                None,
                Ok(false),
            ),
            (
                json!({"kinds": [{"apiGroups": ["*"], "kinds": []}]}),
                "Pod",
                &p,
                None,
                Ok(true),
            ),
            (json!({"scope": "Cluster"}), "Pod", &p, None, Ok(false)),
            (json!({"scope": "Namespaced"}), "Pod", &p, None, Ok(true)),
            (
                json!({"scope": "Namespaced"}),
                "Node",
                &node,
                None,
                Ok(false),
            ),
            (json!({"scope": "Cluster"}), "Node", &node, None, Ok(true)),
            (json!({"scope": "typo"}), "Node", &node, None, Ok(true)),
            (json!({"namespaces": ["pro*"]}), "Pod", &p, None, Ok(true)),
            (json!({"namespaces": ["dev"]}), "Pod", &p, None, Ok(false)),
            (
                json!({"namespaces": ["dev"]}),
                "Node",
                &node,
                None,
                Ok(true),
            ),
            (
                json!({"excludedNamespaces": ["*od"]}),
                "Pod",
                &p,
                None,
                Ok(false),
            ),
            (
                json!({"labelSelector": {"matchLabels": {"app": "web"}}}),
                "Pod",
                &p,
                None,
                Ok(true),
            ),
            (
                json!({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}}),
                "Pod",
                &p,
                None,
                Ok(false),
            ),
            (
                json!({"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}),
                "Pod",
                &p,
                None,
                Ok(true),
            ),
            (
                json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
                "Pod",
                &p,
                Some(&ns_prod),
                Ok(true),
            ),
            (
                json!({"namespaceSelector": {"matchLabels": {"env": "dev"}}}),
                "Pod",
                &p,
                Some(&ns_prod),
                Ok(false),
            ),
            (
                json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
                "Pod",
                &p,
                None,
                Err(()),
            ),
            (
                json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
                "Node",
                &node,
                None,
                Ok(true),
            ),
            (
                json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
                "Namespace",
                &ns_prod,
                None,
                Ok(true),
            ),
            (json!({"name": "web-*"}), "Pod", &p, None, Ok(true)),
            (json!({"name": "*-2"}), "Pod", &p, None, Ok(false)),
        ];
        for (i, (m, kind, object, ns, expected)) in cases.into_iter().enumerate() {
            let m = parse(m);
            let got = m.matches(&target(kind, object, ns)).map_err(|_| ());
            assert_eq!(got, expected, "case {i}: {m:?}");
        }
    }

    #[test]
    fn generate_name_matches_only_prefix_and_contains_forms() {
        let object = json!({"metadata": {"generateName": "web-", "namespace": "a"}});
        for (pattern, expected) in [
            ("web-*", true),
            ("*eb*", true),
            ("web-", false),
            ("*-", false),
        ] {
            let m = parse(json!({"name": pattern}));
            assert_eq!(
                m.matches(&target("Pod", &object, None)),
                Ok(expected),
                "{pattern}"
            );
        }
    }

    #[test]
    fn old_object_can_match() {
        let new = pod("a", "x", json!({}));
        let old = pod("a", "x", json!({"app": "web"}));
        let m = parse(json!({"labelSelector": {"matchLabels": {"app": "web"}}}));
        let mut t = target("Pod", &new, None);
        assert_eq!(m.matches(&t), Ok(false));
        t.old_object = Some(&old);
        assert_eq!(m.matches(&t), Ok(true));
    }

    #[test]
    fn scope_comes_from_kinds() {
        let m = parse(
            json!({"kinds": [{"apiGroups": ["", "apps"], "kinds": ["Pod", "Deployment"]}, {"apiGroups": ["*"], "kinds": ["Ingress"]}]}),
        );
        let scope = m.scope(OpSet::ALL);
        assert_eq!(scope.entries.len(), 5);
        assert_eq!(scope.entries[4].group, None);
        assert_eq!(scope.entries[4].kind.as_deref(), Some("Ingress"));
    }

    #[test]
    fn selectors_are_validated() {
        let m = parse(
            json!({"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}}),
        );
        assert_eq!(
            m.validate().map_err(|e| e.0),
            Err("labelSelector.matchExpressions[0].operator".to_string())
        );
    }
}
