//! The kinds of the built-in Kubernetes APIs, known offline: a policy that selects a kind no built-in API has (a typo
//! such as `Pdo`, or a custom resource) gets a load warning naming it, since such a selector may never match.

/// `(group, kind)` of every built-in API kind a policy can select (core group `""`), Kubernetes 1.31.
pub const BUILTIN_KINDS: &[(&str, &str)] = &[
    ("", "Binding"),
    ("", "ComponentStatus"),
    ("", "ConfigMap"),
    ("", "Endpoints"),
    ("", "Event"),
    ("", "LimitRange"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("", "Pod"),
    ("", "PodTemplate"),
    ("", "ReplicationController"),
    ("", "ResourceQuota"),
    ("", "Secret"),
    ("", "Service"),
    ("", "ServiceAccount"),
    // Subresource kinds a webhook can be sent (`Pod/exec` is `PodExecOptions`, `Pod/eviction` is `Eviction`...).
    ("", "PodAttachOptions"),
    ("", "PodExecOptions"),
    ("", "PodPortForwardOptions"),
    ("", "PodProxyOptions"),
    ("", "NodeProxyOptions"),
    ("", "ServiceProxyOptions"),
    ("", "TokenRequest"),
    ("", "EphemeralContainers"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("apps", "ControllerRevision"),
    ("apps", "DaemonSet"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("authentication.k8s.io", "SelfSubjectReview"),
    ("authentication.k8s.io", "TokenReview"),
    ("authorization.k8s.io", "LocalSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("autoscaling", "Scale"),
    ("batch", "CronJob"),
    ("batch", "Job"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("coordination.k8s.io", "Lease"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("events.k8s.io", "Event"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("internal.apiserver.k8s.io", "StorageVersion"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("node.k8s.io", "RuntimeClass"),
    ("policy", "Eviction"),
    ("policy", "PodDisruptionBudget"),
    ("policy", "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("resource.k8s.io", "DeviceClass"),
    ("resource.k8s.io", "ResourceClaim"),
    ("resource.k8s.io", "ResourceClaimTemplate"),
    ("resource.k8s.io", "ResourceSlice"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "CSIStorageCapacity"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("storagemigration.k8s.io", "StorageVersionMigration"),
];

/// Whether a built-in API has `kind`, in any group when `group` is `None` or contains a wildcard.
pub fn is_builtin(group: Option<&str>, kind: &str) -> bool {
    match group.filter(|g| !g.contains(['*', '?'])) {
        Some(group) => BUILTIN_KINDS.iter().any(|(g, k)| *g == group && *k == kind),
        None => BUILTIN_KINDS.iter().any(|(_, k)| *k == kind),
    }
}

/// Whether `group` is one of the built-in API groups (custom resources live in other groups).
pub fn is_builtin_group(group: &str) -> bool {
    BUILTIN_KINDS.iter().any(|(g, _)| *g == group)
}

/// The built-in kind closest to `kind`, when one is close enough to be a typo.
pub fn suggest(kind: &str) -> Option<&'static str> {
    super::strict::suggest(kind, BUILTIN_KINDS.iter().map(|(_, k)| *k))
}

/// The warning text for a kind no built-in API has, or `None` when one has it. A kind in a group that is not
/// built-in is a custom resource: it is not reported (the cluster may well have it).
pub fn unknown_kind_message(group: Option<&str>, kind: &str) -> Option<String> {
    if kind.is_empty() || kind.contains(['*', '?']) || is_builtin(group, kind) {
        return None;
    }
    if let Some(g) = group.filter(|g| !g.contains(['*', '?'])) {
        if !is_builtin_group(g) {
            return None;
        }
    }
    Some(match suggest(kind) {
        Some(s) => format!(
            "kind {kind:?} is not a built-in Kubernetes kind (did you mean {s:?}?); unless a CRD defines it, \
             this selector never matches"
        ),
        None => format!(
            "kind {kind:?} is not a built-in Kubernetes kind; unless a CRD defines it, this selector never matches"
        ),
    })
}

/// A kind a policy selects: its API group when the selector names one (`None`: any group), and the kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KindRef {
    /// The group (`""` is the core group); `None` when the selector names no group or a wildcard.
    pub group: Option<String>,
    /// The kind.
    pub kind: String,
    /// Reported without knowing the cluster (a kind no built-in API has, with no group or in a built-in group). A
    /// kind of a custom group is reported only when the cluster's CRDs are known.
    pub offline: bool,
}

/// The warning for a selected kind no built-in API has (see [`unknown_kind_message`]), tagged with the kind so that a
/// load which knows the cluster's custom resources can drop it ([`KnownKinds::resolve`]).
pub fn unknown_kind_warning(
    at: &super::source::Document,
    field: impl Into<String>,
    group: Option<&str>,
    kind: &str,
) -> Option<super::LoadError> {
    let group = group.filter(|g| !g.contains(['*', '?']));
    let (message, offline) = match unknown_kind_message(group, kind) {
        Some(message) => (message, true),
        // A custom group's kind: only a load that knows the cluster's CRDs can tell (see [`KnownKinds::resolve`]).
        None => match group {
            Some(g)
                if !g.is_empty()
                    && !is_builtin_group(g)
                    && !kind.is_empty()
                    && !kind.contains(['*', '?']) =>
            {
                (
                    format!(
                        "kind {kind:?} of group {g:?}: no CustomResourceDefinition of the cluster defines it: this \
                         selector never matches"
                    ),
                    false,
                )
            }
            _ => return None,
        },
    };
    let mut warning = at.error_at(field, message);
    warning.unknown_kind = Some(Box::new(KindRef {
        group: group.map(str::to_string),
        kind: kind.to_string(),
        offline,
    }));
    Some(warning)
}

/// Drop the warnings only a load that knows the cluster can make (kinds of custom groups), when it does not.
pub fn drop_cluster_only(warnings: &mut Vec<super::LoadError>) {
    warnings.retain(|w| w.unknown_kind.as_ref().is_none_or(|k| k.offline));
}

/// The kinds the cluster serves beyond the built-in ones (its CustomResourceDefinitions), as read from the API server
/// by the cluster context: with them a load does not warn about a kind a CRD defines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownKinds {
    kinds: std::collections::BTreeSet<(String, String)>,
}

impl KnownKinds {
    /// The set of `(group, kind)`.
    pub fn new(kinds: impl IntoIterator<Item = (String, String)>) -> KnownKinds {
        KnownKinds {
            kinds: kinds.into_iter().collect(),
        }
    }

    /// How many kinds it holds.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Whether the cluster serves `kind` (in `group`, or in any group when `group` is `None`).
    pub fn contains(&self, group: Option<&str>, kind: &str) -> bool {
        match group {
            Some(g) => self.kinds.contains(&(g.to_string(), kind.to_string())),
            None => self.kinds.iter().any(|(_, k)| k == kind),
        }
    }

    /// Drop the unknown-kind warnings of `warnings` for kinds the cluster serves, and say of the others that the
    /// cluster has no such CRD either.
    pub fn resolve(&self, warnings: &mut Vec<super::LoadError>) {
        warnings.retain_mut(|w| match &w.unknown_kind {
            Some(k) if self.contains(k.group.as_deref(), &k.kind) => false,
            Some(k) if !k.offline => true,
            Some(_) => {
                if let Some(cut) = w.message.find("; unless a CRD defines it") {
                    w.message.truncate(cut);
                    w.message
                        .push_str(", and no CustomResourceDefinition of the cluster defines it: this selector never matches");
                }
                true
            }
            None => true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_are_known_in_their_group() {
        assert!(is_builtin(None, "Pod"));
        assert!(is_builtin(Some("apps"), "Deployment"));
        assert!(!is_builtin(Some("apps"), "Pod"));
        assert!(unknown_kind_message(None, "Pod").is_none());
    }

    #[test]
    fn a_misspelled_kind_is_named_with_a_suggestion() {
        let message = unknown_kind_message(None, "Pdo").expect("unknown");
        assert!(message.contains("\"Pdo\""), "{message}");
        assert!(message.contains("did you mean \"Pod\""), "{message}");
    }

    #[test]
    fn custom_groups_and_wildcards_are_not_reported() {
        assert!(unknown_kind_message(Some("cert-manager.io"), "Certificate").is_none());
        assert!(unknown_kind_message(None, "*").is_none());
        assert!(unknown_kind_message(Some("apps"), "Deploymnet").is_some());
    }

    #[test]
    fn the_cluster_s_custom_resources_silence_the_warning_for_their_kinds() {
        use crate::policy::source::{Document, SourceRef};
        let doc = Document::from_value(SourceRef::file("p.yaml"), serde_json::json!({}));
        let mut warnings: Vec<_> = [
            unknown_kind_warning(&doc, "a", None, "Certificate"),
            unknown_kind_warning(&doc, "b", None, "Pdo"),
            unknown_kind_warning(&doc, "c", Some("cert-manager.io"), "Certificate"),
        ]
        .into_iter()
        .flatten()
        .collect();
        warnings.extend(unknown_kind_warning(
            &doc,
            "d",
            Some("cert-manager.io"),
            "Certifcate",
        ));
        assert_eq!(warnings.len(), 4);
        // Offline, a custom group's kinds are not reported.
        let mut offline = warnings.clone();
        drop_cluster_only(&mut offline);
        assert_eq!(offline.len(), 2, "{offline:?}");
        warnings.push(crate::policy::LoadError::new(
            SourceRef::file("p.yaml"),
            "other",
        ));
        let known = KnownKinds::new([("cert-manager.io".to_string(), "Certificate".to_string())]);
        assert!(known.contains(None, "Certificate"));
        assert!(!known.contains(Some("apps"), "Certificate"));
        known.resolve(&mut warnings);
        let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages[0].starts_with("kind \"Pdo\" is not a built-in Kubernetes kind (did you mean \"Pod\"?), and no CustomResourceDefinition of the cluster defines it"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with(
                "kind \"Certifcate\" of group \"cert-manager.io\": no CustomResourceDefinition"
            ),
            "{messages:?}"
        );
        assert_eq!(messages[2], "other");
    }
}
