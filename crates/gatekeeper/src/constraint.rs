//! Constraints: an instance of a template with `match`, `parameters` and an enforcement action.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::matching::{Match, Target};
use super::review;
use super::template::{Template, TemplateResult};
use crate::policy::source::{parse_value, Document};
use crate::policy::{Action, EvalError, LoadError};
use crate::support;

/// The enforcement point of the validating webhook.
pub const WEBHOOK_POINT: &str = "validation.gatekeeper.sh";
/// Gatekeeper's audit enforcement point.
pub const AUDIT_POINT: &str = "audit.gatekeeper.sh";
/// gator's enforcement point.
pub const GATOR_POINT: &str = "gator.gatekeeper.sh";

#[derive(Debug, Deserialize)]
struct ConstraintDoc {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: ConstraintSpec,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConstraintSpec {
    #[serde(default, rename = "match")]
    match_: Option<Value>,
    #[serde(default)]
    enforcement_action: Option<String>,
    #[serde(default)]
    scoped_enforcement_actions: Vec<ScopedAction>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopedAction {
    action: String,
    #[serde(default)]
    enforcement_points: Vec<EnforcementPoint>,
}

#[derive(Debug, Deserialize)]
struct EnforcementPoint {
    name: String,
}

/// Why a constraint does not load. Schema errors are told apart: gator's `invalid: true` tests expect them.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintError {
    /// `spec.parameters` does not satisfy the template's schema.
    Schema(Vec<LoadError>),
    /// Unknown fields (strict field validation: a typo such as `namespace:` for `namespaces:` would otherwise
    /// silently widen the constraint).
    Fields(Vec<LoadError>),
    /// Anything else.
    Invalid(LoadError),
}

impl ConstraintError {
    /// The load errors.
    pub fn errors(self) -> Vec<LoadError> {
        match self {
            ConstraintError::Schema(errors) | ConstraintError::Fields(errors) => errors,
            ConstraintError::Invalid(error) => vec![error],
        }
    }
}

/// A loaded constraint, bound to its compiled template.
#[derive(Debug)]
pub struct Constraint {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.annotations`.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The template.
    pub template: Arc<Template>,
    /// `spec.match`.
    pub matcher: Match,
    /// `spec.parameters` (`{}` when absent), converted once.
    pub parameters: regorus::Value,
    /// What a violation does at the webhook; `None` when a `scoped` action leaves the webhook out.
    pub action: Option<Action>,
    /// With `enforcementAction: scoped`, the enforcement points listed (`None` otherwise: every point).
    pub scoped_points: Option<Vec<String>>,
    /// With `enforcementAction: scoped`, each action with the enforcement points it applies at.
    scoped_actions: Vec<(Action, Vec<String>)>,
    /// Problems that do not stop the constraint from loading (`match.kinds` naming kinds no built-in API has).
    pub warnings: Vec<LoadError>,
    /// The whole constraint as a CEL value (CEL's `params`), when its template runs CEL.
    pub cel_object: Option<policyctl_cel::Shared>,
}

/// A warning for each `spec.match.kinds[].kinds` entry that no built-in API has in any of the listed groups (a
/// typo such as `Pdo`); kinds of custom API groups are not reported.
fn kind_warnings(doc: &Document) -> Vec<LoadError> {
    let Some(entries) = doc
        .value
        .pointer("/spec/match/kinds")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let groups: Vec<&str> = entry
            .get("apiGroups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(kinds) = entry.get("kinds").and_then(Value::as_array) else {
            continue;
        };
        for (j, kind) in kinds.iter().filter_map(Value::as_str).enumerate() {
            let field = format!("spec.match.kinds[{i}].kinds[{j}]");
            let mut warnings: Vec<Option<LoadError>> = if groups.is_empty() {
                vec![crate::policy::kinds::unknown_kind_warning(
                    doc,
                    field.as_str(),
                    None,
                    kind,
                )]
            } else {
                groups
                    .iter()
                    .map(|g| {
                        crate::policy::kinds::unknown_kind_warning(
                            doc,
                            field.as_str(),
                            Some(g),
                            kind,
                        )
                    })
                    .collect()
            };
            // Reported when no listed group has the kind; a cluster that serves it in the last group drops it.
            if warnings.iter().all(Option::is_some) {
                if let Some(Some(warning)) = warnings.pop() {
                    out.push(warning);
                }
            }
        }
    }
    out
}

/// One finding of a constraint on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The message (without the `[name]` prefix).
    pub msg: String,
    /// `details` of the result.
    pub details: Value,
    /// The finding is an autoreject (the match could not be decided), which always denies.
    pub autoreject: bool,
}

fn action_named(name: &str) -> Option<Action> {
    match name {
        "" | "deny" => Some(Action::Deny),
        "warn" => Some(Action::Warn),
        "dryrun" => Some(Action::Audit),
        _ => None,
    }
}

/// The most severe of two actions.
fn stronger(a: Option<Action>, b: Action) -> Action {
    match (a, b) {
        (Some(Action::Deny), _) | (_, Action::Deny) => Action::Deny,
        (Some(Action::Warn), _) | (_, Action::Warn) => Action::Warn,
        _ => Action::Audit,
    }
}

impl Constraint {
    /// Load a constraint document; its kind must be the kind of a loaded template.
    pub fn load(
        doc: &Document,
        templates: &HashMap<String, Arc<Template>>,
    ) -> Result<Constraint, ConstraintError> {
        let invalid = ConstraintError::Invalid;
        let unknown = crate::policy::strict::check(doc, "", &doc.value, &super::strict::CONSTRAINT);
        if !unknown.is_empty() {
            return Err(ConstraintError::Fields(unknown));
        }
        let Some(template) = templates.get(&doc.kind) else {
            let mut known: Vec<&str> = templates.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(invalid(doc.error_at(
                "kind",
                format!(
                    "no ConstraintTemplate defines the constraint kind {:?} (loaded template kinds: {})",
                    doc.kind,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            )));
        };
        let parsed: ConstraintDoc = doc.parse().map_err(invalid)?;
        if parsed.metadata.name.is_empty() {
            return Err(invalid(
                doc.error_at("metadata.name", "a constraint needs a name"),
            ));
        }
        let matcher: Match = match &parsed.spec.match_ {
            None | Some(Value::Null) => Match::default(),
            Some(value) => parse_value(value).map_err(|(field, message)| {
                let field = if field.is_empty() || field == "." {
                    "spec.match".into()
                } else {
                    format!("spec.match.{field}")
                };
                invalid(doc.error_at(field, message))
            })?,
        };
        matcher.validate().map_err(|(field, message)| {
            invalid(doc.error_at(format!("spec.match.{field}"), message))
        })?;
        let mut scoped_points: Option<Vec<String>> = None;
        let mut scoped_actions = Vec::new();
        let action = match parsed.spec.enforcement_action.as_deref().unwrap_or("") {
            "scoped" => {
                let mut action: Option<Action> = None;
                for (i, scoped) in parsed.spec.scoped_enforcement_actions.iter().enumerate() {
                    let Some(this) =
                        action_named(&scoped.action).filter(|_| !scoped.action.is_empty())
                    else {
                        return Err(invalid(doc.error_at(
                            format!("spec.scopedEnforcementActions[{i}].action"),
                            format!(
                                "unknown action {:?}; use deny, warn or dryrun",
                                scoped.action
                            ),
                        )));
                    };
                    if scoped
                        .enforcement_points
                        .iter()
                        .any(|p| p.name == WEBHOOK_POINT || p.name == "*")
                    {
                        action = Some(stronger(action, this));
                    }
                    scoped_actions.push((
                        this,
                        scoped
                            .enforcement_points
                            .iter()
                            .map(|p| p.name.clone())
                            .collect(),
                    ));
                }
                scoped_points = Some(
                    parsed
                        .spec
                        .scoped_enforcement_actions
                        .iter()
                        .flat_map(|a| a.enforcement_points.iter().map(|p| p.name.clone()))
                        .collect(),
                );
                if parsed.spec.scoped_enforcement_actions.is_empty() {
                    return Err(invalid(doc.error_at(
                        "spec.scopedEnforcementActions",
                        "enforcementAction scoped needs scopedEnforcementActions",
                    )));
                }
                action
            }
            other => Some(action_named(other).ok_or_else(|| {
                invalid(doc.error_at(
                    "spec.enforcementAction",
                    format!(
                        "unknown enforcement action {other:?}; use deny, warn, dryrun or scoped"
                    ),
                ))
            })?),
        };
        let parameters = parsed
            .spec
            .parameters
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let Some(schema) = &template.schema {
            let problems = schema.validate(&parameters);
            if !problems.is_empty() {
                let name = &parsed.metadata.name;
                return Err(ConstraintError::Schema(
                    problems
                        .into_iter()
                        .map(|(field, message)| {
                            doc.error_at(
                                field,
                                format!("constraint {} {name}: {message}", doc.kind),
                            )
                        })
                        .collect(),
                ));
            }
        }
        Ok(Constraint {
            name: parsed.metadata.name,
            annotations: parsed.metadata.annotations,
            template: template.clone(),
            matcher,
            parameters: support::to_rego(&parameters),
            action,
            scoped_points,
            scoped_actions,
            warnings: kind_warnings(doc),
            cel_object: template
                .cel
                .as_ref()
                .map(|_| policyctl_cel::bind::shared(&doc.value)),
        })
    }

    /// What a violation does at enforcement `point` (e.g. `gator.gatekeeper.sh`): the constraint's action, or for a
    /// `scoped` one the strongest action listing the point (or `*`); `None` when the constraint does not run there.
    pub fn action_at(&self, point: &str) -> Option<Action> {
        if self.scoped_points.is_none() {
            return self.action;
        }
        self.scoped_actions
            .iter()
            .filter(|(_, points)| points.iter().any(|p| p == point || p == "*"))
            .fold(None, |strongest, (action, _)| {
                Some(stronger(strongest, *action))
            })
    }

    /// Whether the constraint's match selects `target` (`Err` with Gatekeeper's autoreject message when its
    /// namespace selector cannot be checked).
    pub fn matches(&self, target: &Target<'_>) -> Result<bool, crate::matching::MatchError> {
        self.matcher.matches(target)
    }

    /// Match `target` and evaluate `input.review`. `Ok(None)`: the constraint does not match the request; a
    /// namespace selector that cannot be decided gives one finding (the autoreject); an evaluation error is returned
    /// as such.
    pub fn review(
        &self,
        target: &Target<'_>,
        review: &regorus::Value,
        data: Option<&regorus::Value>,
        timeout: Duration,
    ) -> Result<Option<Vec<Finding>>, EvalError> {
        match self.matcher.matches(target) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(autoreject) => {
                return Ok(Some(vec![Finding {
                    msg: autoreject.to_string(),
                    details: Value::Object(Default::default()),
                    autoreject: true,
                }]));
            }
        }
        let input = review::input(review, &self.parameters);
        let results = self.template.evaluate(input, data, timeout)?;
        Ok(Some(
            results
                .into_iter()
                .map(|TemplateResult { msg, details }| Finding {
                    msg,
                    details,
                    autoreject: false,
                })
                .collect(),
        ))
    }
}
