//! `match` / `exclude`: resource filters, the kind selector grammar and user-info filters.
//!
//! Roles and cluster roles come from the request's `roles` / `clusterRoles` (the test runner's UserInfo file); the
//! webhook does not resolve RBAC bindings, so role filters only match when that data is supplied. Without any user
//! information, the user part of **match** filters is ignored (Kyverno's background / CLI behaviour) while
//! **exclude** user filters never match.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::scalar::{wildcard, Glob};
use super::spec::{LabelSelector, MatchResources, ResourceDescription, ResourceFilter, Subject};

/// A parsed kind selector. Its parts are read-only: how each matches is decided once, when it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSelector {
    /// Group (`*` for any).
    group: String,
    /// Version (`*` for any).
    version: String,
    /// Kind (may contain wildcards).
    kind: String,
    /// Subresource; `None` for the main resource, `Some("*")` for any.
    subresource: Option<String>,
    /// How `group`, `version` and `kind` match, compiled once when parsed (selectors are matched for every rule of
    /// every request).
    shapes: [Glob; 3],
}

impl KindSelector {
    /// A selector of these parts.
    pub fn new(group: String, version: String, kind: String, subresource: Option<String>) -> Self {
        let shapes = [Glob::new(&group), Glob::new(&version), Glob::new(&kind)];
        KindSelector {
            group,
            version,
            kind,
            subresource,
            shapes,
        }
    }

    /// Group (`*` for any; may contain wildcards).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Kind (`*` for any; may contain wildcards).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Subresource; `None` for the main resource, `Some("*")` for any.
    pub fn subresource(&self) -> Option<&str> {
        self.subresource.as_deref()
    }

    /// The group, when it names exactly one (neither `*` nor a wildcard pattern).
    pub fn exact_group(&self) -> Option<&str> {
        matches!(self.shapes[0], Glob::Exact(_)).then_some(self.group.as_str())
    }

    /// The kind, when it names exactly one (neither `*` nor a wildcard pattern).
    pub fn exact_kind(&self) -> Option<&str> {
        matches!(self.shapes[2], Glob::Exact(_)).then_some(self.kind.as_str())
    }
}

fn is_version(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    if tail.is_empty() {
        return true;
    }
    let num = tail
        .strip_prefix("alpha")
        .or_else(|| tail.strip_prefix("beta"));
    num.is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Parse a kind selector (`Pod`, `v1/Pod`, `apps/v1/Deployment`, `Pod/exec`, `Pod.status`, `*/*`, ...).
pub fn parse_kind(selector: &str) -> KindSelector {
    let any = || "*".to_string();
    let parts: Vec<&str> = selector.split('/').collect();
    let split_sub = |last: &str| -> (String, Option<String>) {
        match last.split_once('.') {
            Some((k, s)) => (k.to_string(), Some(s.to_string())),
            None => (last.to_string(), None),
        }
    };
    match parts.as_slice() {
        [kind] => {
            let (kind, sub) = split_sub(kind);
            KindSelector::new(any(), any(), kind, sub)
        }
        ["*", "*"] => KindSelector::new(any(), any(), any(), Some(any())),
        [first, second] => {
            if *first == "*" && second.chars().all(|c| c.is_ascii_lowercase()) {
                KindSelector::new(any(), any(), any(), Some((*second).to_string()))
            } else if is_version(first) {
                let (kind, sub) = split_sub(second);
                KindSelector::new(any(), (*first).to_string(), kind, sub)
            } else {
                KindSelector::new(
                    any(),
                    any(),
                    (*first).to_string(),
                    Some((*second).to_string()),
                )
            }
        }
        [first, second, third] => {
            if is_version(first) {
                KindSelector::new(
                    any(),
                    (*first).to_string(),
                    (*second).to_string(),
                    Some((*third).to_string()),
                )
            } else {
                let (kind, sub) = split_sub(third);
                KindSelector::new((*first).to_string(), (*second).to_string(), kind, sub)
            }
        }
        [group, version, kind, sub, ..] => KindSelector::new(
            (*group).to_string(),
            (*version).to_string(),
            (*kind).to_string(),
            Some((*sub).to_string()),
        ),
        [] => KindSelector::new(any(), any(), any(), None),
    }
}

impl KindSelector {
    /// Whether the selector matches a resource of this group/version/kind and subresource (`""` for none).
    pub fn matches(&self, group: &str, version: &str, kind: &str, subresource: &str) -> bool {
        // The kind first: it is the part that tells most selectors apart (autogen adds several per rule).
        let [group_shape, version_shape, kind_shape] = &self.shapes;
        if !(kind_shape.matches(kind)
            && group_shape.matches(group)
            && version_shape.matches(version))
        {
            return false;
        }
        match &self.subresource {
            None => subresource.is_empty(),
            Some(s) => s == "*" || s.eq_ignore_ascii_case(subresource),
        }
    }
}

/// The requester, as far as it is known.
#[derive(Debug, Clone, Default)]
pub struct UserContext {
    /// Username.
    pub username: String,
    /// Groups.
    pub groups: Vec<String>,
    /// `namespace:role` names.
    pub roles: Vec<String>,
    /// Cluster role names.
    pub cluster_roles: Vec<String>,
}

impl UserContext {
    /// Whether nothing is known about the requester.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.groups.is_empty()
            && self.roles.is_empty()
            && self.cluster_roles.is_empty()
    }
}

/// Everything matching looks at.
#[derive(Debug, Clone)]
pub struct MatchInput<'a> {
    /// API group of the object.
    pub group: &'a str,
    /// API version.
    pub version: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Subresource or `""`.
    pub subresource: &'a str,
    /// The object (old object on DELETE).
    pub object: &'a Value,
    /// The namespace of the request.
    pub namespace: &'a str,
    /// `CREATE`, `UPDATE`, ...
    pub operation: &'a str,
    /// The requester.
    pub user: &'a UserContext,
    /// Labels of the object's namespace, when known.
    pub namespace_labels: Option<&'a Map<String, Value>>,
}

fn object_str<'v>(object: &'v Value, pointer: &str) -> &'v str {
    // A plain walk: `Value::pointer` unescapes every token, which shows in profiles.
    pointer
        .split('/')
        .skip(1)
        .try_fold(object, |v, key| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether a label selector matches labels (`matchLabels` values accept wildcards).
pub fn selector_matches(selector: &LabelSelector, labels: Option<&Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    for (k, v) in &selector.match_labels {
        match get(k) {
            Some(actual) if wildcard(v, actual) => {}
            _ => return false,
        }
    }
    for expr in &selector.match_expressions {
        let actual = get(&expr.key);
        let ok = match expr.operator.as_str() {
            "In" => actual.is_some_and(|a| expr.values.iter().any(|v| v == a)),
            "NotIn" => actual.is_none_or(|a| !expr.values.iter().any(|v| v == a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn description_matches(desc: &ResourceDescription, input: &MatchInput<'_>) -> bool {
    if !desc.kinds.is_empty() {
        let matches =
            |k: &KindSelector| k.matches(input.group, input.version, input.kind, input.subresource);
        let found = if desc.parsed_kinds.len() == desc.kinds.len() {
            desc.parsed_kinds.iter().any(matches)
        } else {
            desc.kinds.iter().any(|k| matches(&parse_kind(k)))
        };
        if !found {
            return false;
        }
    }
    let name = || match object_str(input.object, "/metadata/name") {
        "" => object_str(input.object, "/metadata/generateName"),
        n => n,
    };
    if let Some(pattern) = desc.name.as_deref().filter(|n| !n.is_empty()) {
        if !wildcard(pattern, name()) {
            return false;
        }
    }
    if !desc.names.is_empty() && !desc.names.iter().any(|p| wildcard(p, name())) {
        return false;
    }
    if !desc.namespaces.is_empty() {
        let ns = if input.kind == "Namespace" {
            name()
        } else {
            match input.namespace {
                "" => object_str(input.object, "/metadata/namespace"),
                ns => ns,
            }
        };
        if !desc.namespaces.iter().any(|p| wildcard(p, ns)) {
            return false;
        }
    }
    if !desc.annotations.is_empty() {
        let annotations = input
            .object
            .pointer("/metadata/annotations")
            .and_then(Value::as_object);
        for (k, v) in &desc.annotations {
            let found = annotations.is_some_and(|a| {
                a.iter()
                    .any(|(ak, av)| wildcard(k, ak) && av.as_str().is_some_and(|s| wildcard(v, s)))
            });
            if !found {
                return false;
            }
        }
    }
    if let Some(selector) = &desc.selector {
        let labels = input
            .object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        if !selector_matches(selector, labels) {
            return false;
        }
    }
    if let Some(selector) = &desc.namespace_selector {
        if input.kind == "Namespace" || !selector_matches(selector, input.namespace_labels) {
            return false;
        }
    }
    if !desc.operations.is_empty()
        && !desc
            .operations
            .iter()
            .any(|o| o.eq_ignore_ascii_case(input.operation))
    {
        return false;
    }
    true
}

fn subject_matches(subject: &Subject, user: &UserContext) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.username,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().unwrap_or("");
            user.username == format!("system:serviceaccount:{ns}:{}", subject.name)
        }
        _ => false,
    }
}

fn user_matches(
    roles: &[String],
    cluster_roles: &[String],
    subjects: &[Subject],
    user: &UserContext,
) -> bool {
    if !roles.is_empty() && !roles.iter().any(|r| user.roles.contains(r)) {
        return false;
    }
    if !cluster_roles.is_empty() && !cluster_roles.iter().any(|r| user.cluster_roles.contains(r)) {
        return false;
    }
    if !subjects.is_empty() && !subjects.iter().any(|s| subject_matches(s, user)) {
        return false;
    }
    true
}

fn has_user(roles: &[String], cluster_roles: &[String], subjects: &[Subject]) -> bool {
    !(roles.is_empty() && cluster_roles.is_empty() && subjects.is_empty())
}

fn filter_matches(filter: &ResourceFilter, input: &MatchInput<'_>, exclude: bool) -> bool {
    parts_match(
        &filter.resources,
        &filter.roles,
        &filter.cluster_roles,
        &filter.subjects,
        input,
        exclude,
    )
}

/// [`filter_matches`] of a filter given by its parts (the legacy form's are the block's own: nothing is copied).
fn parts_match(
    resources: &ResourceDescription,
    roles: &[String],
    cluster_roles: &[String],
    subjects: &[Subject],
    input: &MatchInput<'_>,
    exclude: bool,
) -> bool {
    if resources.is_empty() && !has_user(roles, cluster_roles, subjects) {
        return false;
    }
    if !resources.is_empty() && !description_matches(resources, input) {
        return false;
    }
    if has_user(roles, cluster_roles, subjects) && (exclude || !input.user.is_empty()) {
        return user_matches(roles, cluster_roles, subjects, input.user);
    }
    true
}

/// Whether a rule's `match` selects the input.
pub fn matches(m: &MatchResources, input: &MatchInput<'_>) -> bool {
    evaluate(m, input, false)
}

/// Whether a rule's `exclude` removes the input.
pub fn excluded(m: &MatchResources, input: &MatchInput<'_>) -> bool {
    evaluate(m, input, true)
}

fn evaluate(m: &MatchResources, input: &MatchInput<'_>, exclude: bool) -> bool {
    if !m.may_match_kind(input.kind) {
        return false;
    }
    if !m.any.is_empty() {
        return m.any.iter().any(|f| filter_matches(f, input, exclude));
    }
    if !m.all.is_empty() {
        return m.all.iter().all(|f| filter_matches(f, input, exclude));
    }
    let none = ResourceDescription::default();
    parts_match(
        m.resources.as_ref().unwrap_or(&none),
        &m.roles,
        &m.cluster_roles,
        &m.subjects,
        input,
        exclude,
    )
}

/// Every kind selector of a match block.
pub fn kinds(m: &MatchResources) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in m.any.iter().chain(&m.all) {
        out.extend(f.resources.kinds.iter().cloned());
    }
    if let Some(r) = &m.resources {
        out.extend(r.kinds.iter().cloned());
    }
    out
}

/// The operations a match block is limited to; `None` when some filter allows every operation.
pub fn operations(m: &MatchResources) -> Option<Vec<String>> {
    let mut out: BTreeMap<String, ()> = BTreeMap::new();
    let descs: Vec<&ResourceDescription> = m
        .any
        .iter()
        .chain(&m.all)
        .map(|f| &f.resources)
        .chain(m.resources.as_ref())
        .collect();
    if descs.is_empty() {
        return None;
    }
    for d in descs {
        if d.operations.is_empty() {
            return None;
        }
        for o in &d.operations {
            out.insert(o.to_ascii_uppercase(), ());
        }
    }
    Some(out.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ks(s: &str) -> (String, String, String, Option<String>) {
        let k = parse_kind(s);
        (k.group, k.version, k.kind, k.subresource)
    }

    #[test]
    fn kind_grammar() {
        let s = |x: &str| x.to_string();
        assert_eq!(ks("Pod"), (s("*"), s("*"), s("Pod"), None));
        assert_eq!(ks("*"), (s("*"), s("*"), s("*"), None));
        assert_eq!(ks("*/*"), (s("*"), s("*"), s("*"), Some(s("*"))));
        assert_eq!(ks("*/status"), (s("*"), s("*"), s("*"), Some(s("status"))));
        assert_eq!(ks("v1/Pod"), (s("*"), s("v1"), s("Pod"), None));
        assert_eq!(ks("*/Pod"), (s("*"), s("*"), s("Pod"), None));
        assert_eq!(ks("Pod/exec"), (s("*"), s("*"), s("Pod"), Some(s("exec"))));
        assert_eq!(
            ks("Pod.status"),
            (s("*"), s("*"), s("Pod"), Some(s("status")))
        );
        assert_eq!(
            ks("v1/Pod/status"),
            (s("*"), s("v1"), s("Pod"), Some(s("status")))
        );
        assert_eq!(
            ks("apps/v1/Deployment"),
            (s("apps"), s("v1"), s("Deployment"), None)
        );
        assert_eq!(
            ks("batch/*/CronJob"),
            (s("batch"), s("*"), s("CronJob"), None)
        );
        assert_eq!(
            ks("apps/v1/Deployment/scale"),
            (s("apps"), s("v1"), s("Deployment"), Some(s("scale")))
        );
        assert_eq!(
            ks("networking.k8s.io/v1/Ingress"),
            (s("networking.k8s.io"), s("v1"), s("Ingress"), None)
        );
        assert!(parse_kind("Pod").matches("", "v1", "Pod", ""));
        assert!(!parse_kind("Pod").matches("", "v1", "Pod", "exec"));
        assert!(parse_kind("Pod/exec").matches("", "v1", "Pod", "exec"));
        assert!(parse_kind("*/*").matches("apps", "v1", "Deployment", "scale"));
        assert!(!parse_kind("apps/v1/Deployment").matches("", "v1", "Deployment", ""));
        assert!(parse_kind("v2beta1/HorizontalPodAutoscaler").matches(
            "autoscaling",
            "v2beta1",
            "HorizontalPodAutoscaler",
            ""
        ));
    }

    #[test]
    fn filters() {
        let m: MatchResources = serde_json::from_value(json!({"any": [{"resources": {
            "kinds": ["Pod"], "namespaces": ["prod-*"], "selector": {"matchLabels": {"app": "w*"}},
            "operations": ["CREATE"]}}]}))
        .expect("match");
        let obj =
            json!({"metadata": {"name": "p", "namespace": "prod-1", "labels": {"app": "web"}}});
        let user = UserContext::default();
        let mut input = MatchInput {
            group: "",
            version: "v1",
            kind: "Pod",
            subresource: "",
            object: &obj,
            namespace: "prod-1",
            operation: "CREATE",
            user: &user,
            namespace_labels: None,
        };
        assert!(matches(&m, &input));
        input.operation = "UPDATE";
        assert!(!matches(&m, &input));
        input.operation = "CREATE";
        input.namespace = "dev";
        assert!(!matches(&m, &input));
    }

    #[test]
    fn kind_gate_rules_out_other_kinds_and_answers_as_the_full_match() {
        let gate = |block: Value| {
            let mut m: MatchResources = serde_json::from_value(block).expect("match");
            m.prepare();
            m
        };
        let s = |x: &str| x.to_string();
        let cases = [
            (
                json!({"any": [{"resources": {"kinds": ["Pod", "apps/v1/Deployment"]}},
                               {"resources": {"kinds": ["Pod/exec"], "namespaces": ["a"]}}]}),
                Some(vec![s("Pod"), s("Deployment")]),
            ),
            (
                json!({"all": [{"resources": {"kinds": ["Pod"]}}, {"resources": {"kinds": ["Job"]}}]}),
                Some(vec![s("Pod"), s("Job")]),
            ),
            (
                json!({"resources": {"kinds": ["Pod"]}, "subjects": [{"kind": "User", "name": "u"}]}),
                Some(vec![s("Pod")]),
            ),
            // A wildcard kind, a filter without kinds, a user-only filter: no gate.
            (json!({"any": [{"resources": {"kinds": ["Po*"]}}]}), None),
            (json!({"any": [{"resources": {"kinds": ["*"]}}]}), None),
            (
                json!({"any": [{"resources": {"kinds": ["Pod"]}}, {"resources": {"names": ["x"]}}]}),
                None,
            ),
            (
                json!({"any": [{"resources": {"kinds": ["Pod"]}}, {"clusterRoles": ["admin"]}]}),
                None,
            ),
            (json!({"subjects": [{"kind": "User", "name": "u"}]}), None),
            (json!({}), None),
        ];
        let obj = json!({"metadata": {"name": "p", "namespace": "a"}});
        let user = UserContext {
            username: "u".into(),
            cluster_roles: vec![s("admin")],
            ..UserContext::default()
        };
        for (block, want) in cases {
            let prepared = gate(block.clone());
            assert_eq!(prepared.kind_gate, want, "{block}");
            let ungated = MatchResources {
                kind_gate: None,
                ..prepared.clone()
            };
            for kind in ["Pod", "Deployment", "Job", "Service"] {
                for subresource in ["", "exec"] {
                    let input = MatchInput {
                        group: if kind == "Deployment" { "apps" } else { "" },
                        version: "v1",
                        kind,
                        subresource,
                        object: &obj,
                        namespace: "a",
                        operation: "CREATE",
                        user: &user,
                        namespace_labels: None,
                    };
                    assert_eq!(
                        matches(&prepared, &input),
                        matches(&ungated, &input),
                        "{block} {kind}/{subresource}"
                    );
                    assert_eq!(
                        excluded(&prepared, &input),
                        excluded(&ungated, &input),
                        "{block} {kind}/{subresource}"
                    );
                }
            }
        }
    }

    #[test]
    fn user_filters() {
        let ex: MatchResources =
            serde_json::from_value(json!({"any": [{"clusterRoles": ["cluster-admin"]}]}))
                .expect("m");
        let obj = json!({"metadata": {"name": "p"}});
        let admin = UserContext {
            cluster_roles: vec!["cluster-admin".into()],
            ..Default::default()
        };
        let nobody = UserContext::default();
        let input = |user| MatchInput {
            group: "",
            version: "v1",
            kind: "Pod",
            subresource: "",
            object: &obj,
            namespace: "",
            operation: "CREATE",
            user,
            namespace_labels: None,
        };
        assert!(excluded(&ex, &input(&admin)));
        assert!(!excluded(&ex, &input(&nobody)));
    }
}
