//! The closed parts of Gatekeeper's schemas (`ConstraintTemplate` v1, and the constraint CRDs Gatekeeper generates),
//! for strict field validation: an unknown or misspelled field (`enforcmentAction`, `match.namespace`) is a load
//! error naming its path. `openAPIV3Schema`, `code[].source` and a constraint's `parameters` (checked against the
//! template's schema) are free-form here.

use crate::policy::strict::{Shape, LABEL_SELECTOR, OBJECT_META};

/// A `ConstraintTemplate` document.
pub static TEMPLATE: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            (
                "crd",
                Shape::Object(&[(
                    "spec",
                    Shape::Object(&[
                        (
                            "names",
                            Shape::Object(&[("kind", Shape::Any), ("shortNames", Shape::Any)]),
                        ),
                        (
                            "validation",
                            Shape::Object(&[
                                ("openAPIV3Schema", Shape::Any),
                                ("legacySchema", Shape::Any),
                            ]),
                        ),
                    ]),
                )]),
            ),
            (
                "targets",
                Shape::List(&Shape::Object(&[
                    ("target", Shape::Any),
                    ("rego", Shape::Any),
                    ("libs", Shape::Any),
                    (
                        "code",
                        Shape::List(&Shape::Object(&[
                            ("engine", Shape::Any),
                            ("source", Shape::Any),
                        ])),
                    ),
                    ("operations", Shape::Any),
                ])),
            ),
        ]),
    ),
    ("status", Shape::Any),
]);

/// A constraint document (any kind of `constraints.gatekeeper.sh`).
pub static CONSTRAINT: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            ("match", MATCH),
            ("enforcementAction", Shape::Any),
            (
                "scopedEnforcementActions",
                Shape::List(&Shape::Object(&[
                    ("action", Shape::Any),
                    (
                        "enforcementPoints",
                        Shape::List(&Shape::Object(&[("name", Shape::Any)])),
                    ),
                ])),
            ),
            ("parameters", Shape::Any),
        ]),
    ),
    ("status", Shape::Any),
]);

const MATCH: Shape = Shape::Object(&[
    (
        "kinds",
        Shape::List(&Shape::Object(&[
            ("apiGroups", Shape::Any),
            ("kinds", Shape::Any),
        ])),
    ),
    ("scope", Shape::Any),
    ("namespaces", Shape::Any),
    ("excludedNamespaces", Shape::Any),
    ("labelSelector", LABEL_SELECTOR),
    ("namespaceSelector", LABEL_SELECTOR),
    ("name", Shape::Any),
    ("source", Shape::Any),
]);
