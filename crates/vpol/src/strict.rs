//! Kyverno's ValidatingPolicy schema (`policies.kyverno.io`), for strict field validation: an unknown or misspelled
//! field (`validationActons`, `matchConstraints.resourceRule`) is a load error naming its path, as `kubectl apply`
//! with strict field validation would make it. Every field Kyverno has is listed, used by policyctl or not; the same
//! for Kubernetes' ValidatingAdmissionPolicy and its binding.

use policyctl_core::policy::strict::{Shape, LABEL_SELECTOR, OBJECT_META};

/// A whole ValidatingPolicy document.
pub static POLICY: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    ("spec", SPEC),
    ("status", Shape::Any),
]);

static VALIDATION: Shape = Shape::Object(&[
    ("expression", Shape::Any),
    ("message", Shape::Any),
    ("messageExpression", Shape::Any),
    ("reason", Shape::Any),
]);

static AUDIT_ANNOTATION: Shape =
    Shape::Object(&[("key", Shape::Any), ("valueExpression", Shape::Any)]);

/// A `{name, expression}` entry (`matchConditions`, `variables`), shared by the CEL policy kinds.
pub const NAMED_EXPRESSION: Shape =
    Shape::Object(&[("name", Shape::Any), ("expression", Shape::Any)]);

/// A resource rule of `matchConstraints` (`resourceRules`, `excludeResourceRules`).
pub static RESOURCE_RULE: Shape = Shape::Object(&[
    ("apiGroups", Shape::Any),
    ("apiVersions", Shape::Any),
    ("operations", Shape::Any),
    ("resources", Shape::Any),
    ("resourceNames", Shape::Any),
    ("scope", Shape::Any),
]);

const SPEC: Shape = Shape::Object(&[
    ("matchConstraints", MATCH_RESOURCES),
    ("matchConditions", Shape::List(&NAMED_EXPRESSION)),
    ("variables", Shape::List(&NAMED_EXPRESSION)),
    ("validations", Shape::List(&VALIDATION)),
    ("validationActions", Shape::Any),
    ("failurePolicy", Shape::Any),
    ("auditAnnotations", Shape::List(&AUDIT_ANNOTATION)),
    (
        "webhookConfiguration",
        Shape::Object(&[("timeoutSeconds", Shape::Any)]),
    ),
    (
        "evaluation",
        Shape::Object(&[
            ("mode", Shape::Any),
            ("admission", Shape::Object(&[("enabled", Shape::Any)])),
            ("background", Shape::Object(&[("enabled", Shape::Any)])),
        ]),
    ),
    (
        "autogen",
        Shape::Object(&[
            (
                "podControllers",
                Shape::Object(&[("controllers", Shape::Any)]),
            ),
            (
                "validatingAdmissionPolicy",
                Shape::Object(&[("enabled", Shape::Any)]),
            ),
        ]),
    ),
    ("paramKind", Shape::Any),
    ("paramRef", Shape::Any),
]);

/// `matchConstraints` / a binding's `matchResources`, shared by the CEL policy kinds.
pub const MATCH_RESOURCES: Shape = Shape::Object(&[
    ("resourceRules", Shape::List(&RESOURCE_RULE)),
    ("excludeResourceRules", Shape::List(&RESOURCE_RULE)),
    ("namespaceSelector", LABEL_SELECTOR),
    ("objectSelector", LABEL_SELECTOR),
    ("matchPolicy", Shape::Any),
]);

/// A whole `admissionregistration.k8s.io` ValidatingAdmissionPolicy document.
pub static VAP: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            (
                "paramKind",
                Shape::Object(&[("apiVersion", Shape::Any), ("kind", Shape::Any)]),
            ),
            ("matchConstraints", MATCH_RESOURCES),
            ("matchConditions", Shape::List(&NAMED_EXPRESSION)),
            ("variables", Shape::List(&NAMED_EXPRESSION)),
            ("validations", Shape::List(&VALIDATION)),
            ("auditAnnotations", Shape::List(&AUDIT_ANNOTATION)),
            ("failurePolicy", Shape::Any),
        ]),
    ),
    ("status", Shape::Any),
]);

/// A whole ValidatingAdmissionPolicyBinding document.
pub static BINDING: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            ("policyName", Shape::Any),
            (
                "paramRef",
                Shape::Object(&[
                    ("name", Shape::Any),
                    ("namespace", Shape::Any),
                    ("selector", LABEL_SELECTOR),
                    ("parameterNotFoundAction", Shape::Any),
                ]),
            ),
            ("matchResources", MATCH_RESOURCES),
            ("validationActions", Shape::Any),
        ]),
    ),
    ("status", Shape::Any),
]);
