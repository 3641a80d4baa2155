//! Kyverno's `policies.kyverno.io` PolicyException, the exceptions of the CEL policy kinds: `spec.policyRefs` names
//! policies by kind and name, and `spec.matchConditions` (CEL, over the same `object`/`oldObject`/`request` as the
//! policy) say which requests are excepted. A request every condition of a matching exception holds for is skipped
//! by the policy, as Kyverno does.
//!
//! The loader gives these documents to the engine as parameter resources ([`Engine::param_kinds`]): no engine claims
//! the kind, so it is not an unknown kind, and every CEL policy engine that names it gets them.
//!
//! A condition that cannot be evaluated (an error, the deadline) does not except the request: the policy runs.

use std::sync::Arc;

use policyctl_cel::{Activation, Dialect, Limits, Program};
use policyctl_core::engine::{Built, EngineInput};
use policyctl_core::policy::source::{Document, SourceRef};
use policyctl_core::policy::strict::{Shape, OBJECT_META};

use crate::strict::NAMED_EXPRESSION;
use policyctl_core::policy::LoadError;
use serde::Deserialize;

/// The apiVersions of the CEL PolicyException.
const VERSIONS: [&str; 3] = [
    "policies.kyverno.io/v1alpha1",
    "policies.kyverno.io/v1beta1",
    "policies.kyverno.io/v1",
];

/// Whether an apiVersion/kind is a CEL PolicyException.
pub fn is_cel_policy_exception(api_version: &str, kind: &str) -> bool {
    kind == "PolicyException" && VERSIONS.contains(&api_version)
}

/// The `(apiVersion, kind)` pairs to ask the loader for ([`Engine::param_kinds`]).
///
/// [`Engine::param_kinds`]: policyctl_core::engine::Engine::param_kinds
pub fn exception_kinds() -> Vec<(String, String)> {
    VERSIONS
        .iter()
        .map(|v| (v.to_string(), "PolicyException".to_string()))
        .collect()
}

/// A whole CEL PolicyException document (strict fields).
static DOCUMENT: Shape = Shape::Object(&[
    ("apiVersion", Shape::Any),
    ("kind", Shape::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Shape::Object(&[
            (
                "policyRefs",
                Shape::List(&Shape::Object(&[
                    ("name", Shape::Any),
                    ("kind", Shape::Any),
                ])),
            ),
            ("matchConditions", Shape::List(&NAMED_EXPRESSION)),
            ("images", Shape::Any),
            ("background", Shape::Any),
        ]),
    ),
    ("status", Shape::Any),
]);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    metadata: Meta,
    spec: Spec,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    policy_refs: Vec<Ref>,
    #[serde(default)]
    match_conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Ref {
    name: String,
    kind: String,
}

#[derive(Deserialize)]
struct Condition {
    name: String,
    expression: String,
}

/// A loaded CEL PolicyException.
#[derive(Clone)]
pub struct CelException {
    /// `metadata.name`.
    pub name: String,
    /// Its file and document.
    source: SourceRef,
    refs: Vec<(String, String)>,
    conditions: Vec<(String, Program)>,
}

impl std::fmt::Debug for CelException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelException")
            .field("name", &self.name)
            .field("refs", &self.refs)
            .field("conditions", &self.conditions.len())
            .finish()
    }
}

impl CelException {
    /// Load one document: unknown fields and conditions that do not compile are errors at their field.
    pub fn from_document(doc: &Document) -> Result<CelException, Vec<LoadError>> {
        let unknown = policyctl_core::policy::strict::check(doc, "", &doc.value, &DOCUMENT);
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let parsed: Doc = doc.parse().map_err(|e| vec![e])?;
        if parsed.metadata.name.is_empty() {
            return Err(vec![
                doc.error_at("metadata.name", "a PolicyException needs a name")
            ]);
        }
        if parsed.spec.policy_refs.is_empty() {
            return Err(vec![doc.error_at(
                "spec.policyRefs",
                "at least one policy reference is required",
            )]);
        }
        let mut errors = Vec::new();
        let mut conditions = Vec::new();
        for (i, c) in parsed.spec.match_conditions.iter().enumerate() {
            let field = format!("spec.matchConditions[{i}].expression");
            match Program::compile_for(Dialect::Kyverno, &c.expression) {
                Ok(p) => match p.lint(policyctl_cel::lint::KYVERNO_VARIABLES) {
                    Ok(()) => conditions.push((c.name.clone(), p)),
                    Err(e) => {
                        errors.push(doc.error_at(field, format!("CEL expression is invalid: {e}")))
                    }
                },
                Err(e) => errors
                    .push(doc.error_at(field, format!("CEL expression does not compile: {e}"))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CelException {
            name: parsed.metadata.name,
            source: doc.source.clone(),
            refs: parsed
                .spec
                .policy_refs
                .into_iter()
                .map(|r| (r.kind, r.name))
                .collect(),
            conditions,
        })
    }

    /// The `(kind, name)` of the policies it names.
    pub fn refs(&self) -> &[(String, String)] {
        &self.refs
    }

    /// Whether it names the policy `name` of `kind`.
    pub fn names(&self, kind: &str, name: &str) -> bool {
        self.refs.iter().any(|(k, n)| k == kind && n == name)
    }

    /// Whether it excepts the request of `activation`: every condition holds (none: every request).
    pub fn excepts(&self, activation: &Activation, limits: &Limits) -> bool {
        self.conditions
            .iter()
            .all(|(_, p)| activation.evaluate_bool(p, limits).unwrap_or(false))
    }
}

/// The exceptions an engine was given (as parameter resources), loaded once per build.
#[derive(Debug, Default)]
pub struct Exceptions(Vec<Arc<CelException>>);

/// The policy kinds whose engines apply these exceptions.
const APPLIED_TO: [&str; 2] = ["ValidatingPolicy", "MutatingPolicy"];

/// A policy compiled from its document, with its load warnings.
pub type Compiled<P> = Result<(P, Vec<LoadError>), LoadError>;

/// Builds an engine's policies of a kind CEL PolicyExceptions apply to (`kind`: ValidatingPolicy, MutatingPolicy):
/// the exceptions among the parameters are loaded once; each document is checked against `shape` (a misspelled field
/// would otherwise be ignored), compiled, and given the exceptions that name it.
pub fn build_excepted<P: policyctl_core::policy::Policy + 'static>(
    input: &EngineInput,
    kind: &str,
    shape: &Shape,
    compile: fn(&Document) -> Compiled<P>,
    attach: fn(&mut P, Vec<Arc<CelException>>),
) -> Built {
    let mut built = Built::default();
    let exceptions = Exceptions::load(input, kind, &mut built);
    for doc in input.documents.iter() {
        let unknown = policyctl_core::policy::strict::check(doc, "", &doc.value, shape);
        if !unknown.is_empty() {
            built.errors.extend(unknown);
            continue;
        }
        match compile(doc) {
            Ok((mut policy, warnings)) => {
                built.warnings.extend(warnings);
                let excepting = exceptions.naming(kind, &policy.info().name);
                attach(&mut policy, excepting);
                built.policies.push(Arc::new(policy));
            }
            Err(e) => built.errors.push(e),
        }
    }
    built
}

impl Exceptions {
    /// Load the exceptions among `input.params` for the engine of policy `kind`: load errors go to `built`, and so do
    /// warnings for references that engine finds nothing for — a policy of its kind not among `input.documents`,
    /// and (from the ValidatingPolicy engine) a kind no engine applies exceptions to. Engines given the same
    /// documents report the same errors; the loader keeps one copy.
    pub fn load(input: &EngineInput, kind: &str, built: &mut Built) -> Exceptions {
        let mut out = Vec::new();
        for doc in input
            .params
            .iter()
            .filter(|d| is_cel_policy_exception(&d.api_version, &d.kind))
        {
            match CelException::from_document(doc) {
                Ok(e) => out.push(Arc::new(e)),
                Err(e) => built.errors.extend(e),
            }
        }
        let declared = |name: &str| {
            input
                .documents
                .iter()
                .any(|d| d.value.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name))
        };
        for e in &out {
            for (k, name) in e.refs() {
                let problem = if k == kind && !declared(name) {
                    Some(format!(
                        "PolicyException {} names {kind} {name}, which is not in this set; it exempts nothing",
                        e.name
                    ))
                } else if kind == "ValidatingPolicy" && !APPLIED_TO.contains(&k.as_str()) {
                    Some(format!(
                        "PolicyException {} names {k} {name}: exceptions are applied to ValidatingPolicy and \
                         MutatingPolicy only (the policy runs without it)",
                        e.name
                    ))
                } else {
                    None
                };
                if let Some(m) = problem {
                    built
                        .warnings
                        .push(LoadError::at(e.source.clone(), "spec.policyRefs", m));
                }
            }
        }
        Exceptions(out)
    }

    /// The exceptions that name the policy `name` of `kind`.
    pub fn naming(&self, kind: &str, name: &str) -> Vec<Arc<CelException>> {
        self.0
            .iter()
            .filter(|e| e.names(kind, name))
            .cloned()
            .collect()
    }
}
