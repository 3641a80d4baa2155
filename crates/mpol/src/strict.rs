//! Kyverno's MutatingPolicy schema (`policies.kyverno.io`), for strict field validation: an unknown or misspelled
//! field is a load error naming its path. Every field Kyverno has is listed, used by policyctl or not.

use policyctl_core::policy::strict::{Shape, OBJECT_META};
use policyctl_vpol::strict::{MATCH_RESOURCES, NAMED_EXPRESSION};

/// A whole MutatingPolicy document.
pub static POLICY: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    ("spec", SPEC),
    ("status", Shape::Any),
]);

const EXPRESSION: Shape = Shape::Object(&[("expression", Shape::Any)]);

const SPEC: Shape = Shape::Object(&[
    ("matchConstraints", MATCH_RESOURCES),
    ("matchConditions", Shape::List(&NAMED_EXPRESSION)),
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
    ("reinvocationPolicy", Shape::Any),
    ("targetMatchConstraints", Shape::Any),
    (
        "webhookConfiguration",
        Shape::Object(&[("timeoutSeconds", Shape::Any)]),
    ),
    (
        "evaluation",
        Shape::Object(&[
            ("mode", Shape::Any),
            ("admission", Shape::Object(&[("enabled", Shape::Any)])),
            ("mutateExisting", Shape::Object(&[("enabled", Shape::Any)])),
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
                "mutatingAdmissionPolicy",
                Shape::Object(&[("enabled", Shape::Any)]),
            ),
        ]),
    ),
    ("paramKind", Shape::Any),
    ("paramRef", Shape::Any),
]);
