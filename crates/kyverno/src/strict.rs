//! Kyverno's own schema (`kyverno.io/v1` `ClusterPolicy` / `Policy`, `api/kyverno/v1`), for strict field validation:
//! every field Kyverno has is listed, whether policyctl uses it or not, so a misspelled field (`validationFailureActon`)
//! is a load error instead of a silently weaker policy. Parts Kyverno's CRD leaves free-form (patterns, overlays,
//! values) and the bodies of features policyctl does not implement (`generate`, `verifyImages`, CEL) are
//! [`Shape::Any`].
//!
//! Kyverno's CRD keeps conditions free-form, but Kyverno reads them as `{key, operator, value, message}` and ignores
//! anything else; a typo there would drop a check, so they are closed here too.

use crate::policy::strict::{Shape, LABEL_SELECTOR, OBJECT_META};

/// A whole policy document.
pub static POLICY: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    ("spec", SPEC),
    ("status", Shape::Any),
]);

const SPEC: Shape = Shape::Object(&[
    ("rules", Shape::Any), // checked rule by rule after autogen (see [`RULE`])
    ("applyRules", Shape::Any),
    ("failurePolicy", Shape::Any),
    ("validationFailureAction", Shape::Any),
    ("validationFailureActionOverrides", Shape::List(&OVERRIDE)),
    ("admission", Shape::Any),
    ("background", Shape::Any),
    ("schemaValidation", Shape::Any),
    ("webhookTimeoutSeconds", Shape::Any),
    ("mutateExistingOnPolicyUpdate", Shape::Any),
    ("generateExisting", Shape::Any),
    ("generateExistingOnPolicyUpdate", Shape::Any),
    ("useServerSideApply", Shape::Any),
    ("emitWarning", Shape::Any),
    (
        "webhookConfiguration",
        Shape::Object(&[
            ("failurePolicy", Shape::Any),
            ("timeoutSeconds", Shape::Any),
            ("matchConditions", Shape::Any),
        ]),
    ),
]);

static OVERRIDE: Shape = Shape::Object(&[
    ("action", Shape::Any),
    ("namespaces", Shape::Any),
    ("namespaceSelector", LABEL_SELECTOR),
]);

/// A `PolicyException` document: its `match` is closed like a rule's, since an ignored misspelled filter
/// (`namespace:` for `namespaces:`) would exempt more resources than intended.
pub static EXCEPTION: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            (
                "exceptions",
                Shape::List(&Shape::Object(&[
                    ("policyName", Shape::Any),
                    ("ruleNames", Shape::Any),
                ])),
            ),
            ("match", MATCH),
            ("conditions", CONDITIONS),
            ("background", Shape::Any),
            ("podSecurity", Shape::Any),
        ]),
    ),
    ("status", Shape::Any),
]);

/// One rule (after autogen).
pub static RULE: Shape = Shape::Object(&[
    ("name", Shape::Any),
    ("context", Shape::List(&CONTEXT_ENTRY)),
    ("match", MATCH),
    ("exclude", MATCH),
    ("preconditions", CONDITIONS),
    ("celPreconditions", Shape::Any),
    ("imageExtractors", Shape::Any),
    ("reportProperties", Shape::Any),
    ("skipBackgroundRequests", Shape::Any),
    ("validate", VALIDATE),
    ("mutate", MUTATE),
    ("generate", Shape::Any),
    ("verifyImages", Shape::Any),
]);

static CONTEXT_ENTRY: Shape = Shape::Object(&[
    ("name", Shape::Any),
    (
        "variable",
        Shape::Object(&[
            ("value", Shape::Any),
            ("jmesPath", Shape::Any),
            ("default", Shape::Any),
        ]),
    ),
    (
        "configMap",
        Shape::Object(&[("name", Shape::Any), ("namespace", Shape::Any)]),
    ),
    (
        "apiCall",
        Shape::Object(&[
            ("urlPath", Shape::Any),
            ("method", Shape::Any),
            ("data", Shape::Any),
            ("service", Shape::Any),
            ("jmesPath", Shape::Any),
            ("default", Shape::Any),
        ]),
    ),
    ("imageRegistry", Shape::Any),
    ("globalReference", Shape::Any),
]);

const MATCH: Shape = Shape::Object(&[
    ("any", Shape::List(&FILTER)),
    ("all", Shape::List(&FILTER)),
    ("resources", RESOURCES),
    ("subjects", Shape::List(&SUBJECT)),
    ("roles", Shape::Any),
    ("clusterRoles", Shape::Any),
]);

static FILTER: Shape = Shape::Object(&[
    ("resources", RESOURCES),
    ("subjects", Shape::List(&SUBJECT)),
    ("roles", Shape::Any),
    ("clusterRoles", Shape::Any),
]);

const RESOURCES: Shape = Shape::Object(&[
    ("kinds", Shape::Any),
    ("name", Shape::Any),
    ("names", Shape::Any),
    ("namespaces", Shape::Any),
    ("annotations", Shape::Any),
    ("selector", LABEL_SELECTOR),
    ("namespaceSelector", LABEL_SELECTOR),
    ("operations", Shape::Any),
]);

static SUBJECT: Shape = Shape::Object(&[
    ("kind", Shape::Any),
    ("name", Shape::Any),
    ("namespace", Shape::Any),
    ("apiGroup", Shape::Any),
]);

/// `{any, all}` or a legacy list of conditions.
const CONDITIONS: Shape = Shape::ObjectOrList(&ANY_ALL, &CONDITION_LIST);

static ANY_ALL: Shape = Shape::Object(&[
    ("any", Shape::List(&CONDITION)),
    ("all", Shape::List(&CONDITION)),
]);

static CONDITION_LIST: Shape = Shape::List(&CONDITION);

static CONDITION: Shape = Shape::Object(&[
    ("key", Shape::Any),
    ("operator", Shape::Any),
    ("value", Shape::Any),
    ("message", Shape::Any),
]);

const VALIDATE: Shape = Shape::Object(&[
    ("message", Shape::Any),
    ("failureAction", Shape::Any),
    ("failureActionOverrides", Shape::List(&OVERRIDE)),
    ("allowExistingViolations", Shape::Any),
    ("pattern", Shape::Any),
    ("anyPattern", Shape::Any),
    ("deny", DENY),
    ("foreach", Shape::List(&FOREACH_VALIDATION)),
    ("podSecurity", Shape::Any),
    ("cel", Shape::Any),
    ("manifests", Shape::Any),
    ("assert", Shape::Any),
]);

const DENY: Shape = Shape::Object(&[("conditions", CONDITIONS)]);

static FOREACH_VALIDATION: Shape = Shape::Object(&[
    ("list", Shape::Any),
    ("elementScope", Shape::Any),
    ("context", Shape::List(&CONTEXT_ENTRY)),
    ("preconditions", CONDITIONS),
    ("pattern", Shape::Any),
    ("anyPattern", Shape::Any),
    ("deny", DENY),
    ("foreach", Shape::List(&FOREACH_VALIDATION)),
]);

const MUTATE: Shape = Shape::Object(&[
    ("patchStrategicMerge", Shape::Any),
    ("patchesJson6902", Shape::Any),
    ("foreach", Shape::List(&FOREACH_MUTATION)),
    ("targets", Shape::Any),
    ("mutateExistingOnPolicyUpdate", Shape::Any),
]);

static FOREACH_MUTATION: Shape = Shape::Object(&[
    ("list", Shape::Any),
    ("order", Shape::Any),
    ("context", Shape::List(&CONTEXT_ENTRY)),
    ("preconditions", CONDITIONS),
    ("patchStrategicMerge", Shape::Any),
    ("patchesJson6902", Shape::Any),
    ("foreach", Shape::List(&FOREACH_MUTATION)),
]);
