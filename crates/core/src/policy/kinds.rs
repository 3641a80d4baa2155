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
}
