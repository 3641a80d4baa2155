//! gator `Suite` files (`test.gatekeeper.sh/v1alpha1`), run with `gator verify` semantics.
//!
//! - A test names a template and a constraint, with paths relative to the suite file (absolute paths are rejected).
//!   The constraint's kind must be the template's kind. `invalid: true` expects the constraint to fail its parameter
//!   schema; its cases are not run.
//! - A case's `object` file holds exactly one document: a plain object, reviewed with the review gator synthesizes
//!   (`uid: ""`, `operation: ""`, `userInfo: {}`), or an `admission.k8s.io` `AdmissionReview`, whose `request` (with
//!   `object` or `oldObject`) is reviewed as the webhook would.
//! - `inventory` files are loaded into `data.inventory` (`cluster[groupVersion][kind][name]`,
//!   `namespace[ns][groupVersion][kind][name]`); a Namespace in the inventory is the review's `namespaceObject`.
//! - An assertion `{violations: yes|no|N, message: regex}` counts the results whose message matches the regex
//!   (unanchored, case-sensitive; absent or empty matches all): `yes` wants at least one, `no` none, `N` exactly N.
//! - A `scoped` constraint runs only if it lists the `gator.gatekeeper.sh` enforcement point (or `*`).
//! - A template that fails to evaluate gives one result whose message is the error text (Gatekeeper fails closed).
//! - `skip: true` on a suite, test or case reports it as skipped.
//!
//! Rows: suite = the suite file, test = the test name, case = the case name (`""` for a test-level result).
//!
//! Templates and constraints load with the Gatekeeper engine's own loaders (`Template::load`, `Constraint::load`:
//! gator reports schema errors per test, which a whole-set load would not), and every case is evaluated on the
//! webhook's path: the constraint as a policy, through the pipeline, at gator's enforcement point
//! ([`EnforcementPoint::Test`]: no operation filter, `scoped` actions for `gator.gatekeeper.sh`), with the case's
//! inventory as its cluster context.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::report::{CaseResult, Outcome};
use super::{SuiteRunner, TestOptions};
use crate::admission::Review;
use crate::engine::gatekeeper::{
    gator_request, is_template, Constraint, ConstraintError, ConstraintPolicy, ReviewError,
    Template,
};
use crate::pipeline;
use crate::policy::source::{documents, parse_value, yaml_documents};
use crate::policy::{
    ClusterContext, Deadline, EnforcementPoint, EvalContext, LoadError, Policy, SourceFile,
    SourceRef,
};

/// Time limit of one case's evaluation.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gator runner.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatorRunner;

#[derive(Debug, Deserialize)]
struct Suite {
    #[serde(default)]
    tests: Vec<TestSpec>,
    #[serde(default)]
    skip: bool,
}

#[derive(Debug, Deserialize)]
struct TestSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    constraint: String,
    #[serde(default)]
    expansion: Option<String>,
    #[serde(default)]
    cases: Vec<CaseSpec>,
    #[serde(default)]
    invalid: bool,
    #[serde(default)]
    skip: bool,
}

#[derive(Debug, Deserialize)]
struct CaseSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    inventory: Vec<String>,
    #[serde(default)]
    assertions: Vec<AssertionSpec>,
    #[serde(default)]
    skip: bool,
}

#[derive(Debug, Deserialize)]
struct AssertionSpec {
    #[serde(default)]
    violations: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// How many results an assertion wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    AtLeastOne,
    None,
    Exactly(u64),
}

fn want(value: Option<&Value>) -> Result<Want, CaseError> {
    match value {
        None | Some(Value::Null) => Ok(Want::AtLeastOne),
        Some(Value::String(s)) if s == "yes" => Ok(Want::AtLeastOne),
        Some(Value::String(s)) if s == "no" => Ok(Want::None),
        // A string is shown quoted, other values as JSON.
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map(Want::Exactly)
            .map_err(|_| CaseError::Violations(format!("{s:?}"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Want::Exactly)
            .ok_or_else(|| CaseError::Violations(n.to_string())),
        Some(other) => Err(CaseError::Violations(other.to_string())),
    }
}

/// Why a gator test or case cannot run: the case's error text.
#[derive(Debug, Clone, thiserror::Error)]
enum CaseError {
    /// An assertion's `violations` is not yes, no or a count (the value as written).
    #[error("invalid violations value {0}: use yes, no or a non-negative number")]
    Violations(String),
    /// An assertion's `message` is not a regular expression.
    #[error("invalid message regex {pattern:?}: {source}")]
    MessageRegex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    /// A file of the suite cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A file of the suite does not load (every problem, `; `-separated).
    #[error("{}", join(.0))]
    Load(Vec<LoadError>),
    /// The template file holds no ConstraintTemplate.
    #[error("{}: no ConstraintTemplate in the file", .0.display())]
    NoTemplate(PathBuf),
    /// The test names no file of this role (`template`, `constraint`, `object`, `inventory`).
    #[error("the test has no {0}")]
    Missing(&'static str),
    /// A file of the suite is named by an absolute path.
    #[error("{what} path {path:?} must be relative to the suite")]
    Absolute { what: &'static str, path: String },
    /// The constraint file does not hold exactly one document.
    #[error("{}: a constraint file must hold exactly one document, found {count}", path.display())]
    ConstraintDocuments { path: PathBuf, count: usize },
    /// The constraint is not of the template's kind.
    #[error("{}: constraint kind {found:?} does not match the template's kind {expected:?}", path.display())]
    ConstraintKind {
        path: PathBuf,
        found: String,
        expected: String,
    },
    /// A case without assertions proves nothing.
    #[error("the case has no assertions")]
    NoAssertions,
    /// The object file does not hold exactly one document.
    #[error("{}: object must hold exactly one document, found {count}", path.display())]
    ObjectDocuments { path: PathBuf, count: usize },
    /// An AdmissionReview object without a request.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// An AdmissionReview request with neither object.
    #[error("AdmissionReview request has neither object nor oldObject")]
    NoObject,
    /// The object cannot be reviewed.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// An inventory object without its identity.
    #[error("{}: inventory objects need apiVersion, kind and metadata.name", .0.display())]
    InventoryIdentity(PathBuf),
}

impl From<LoadError> for CaseError {
    fn from(error: LoadError) -> Self {
        CaseError::Load(vec![error])
    }
}

/// Load errors, `; `-separated.
fn join(errors: &[LoadError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Check one assertion against the messages; `Err` is the failure text.
fn check_assertion(
    assertion: &AssertionSpec,
    messages: &[String],
) -> Result<Result<(), String>, CaseError> {
    let wanted = want(assertion.violations.as_ref())?;
    let pattern = assertion.message.as_deref().filter(|m| !m.is_empty());
    let regex = match pattern {
        Some(p) => Some(Regex::new(p).map_err(|source| CaseError::MessageRegex {
            pattern: p.to_string(),
            source,
        })?),
        None => None,
    };
    let count = messages
        .iter()
        .filter(|m| regex.as_ref().is_none_or(|re| re.is_match(m)))
        .count() as u64;
    let holds = match wanted {
        Want::AtLeastOne => count >= 1,
        Want::None => count == 0,
        Want::Exactly(n) => count == n,
    };
    if holds {
        return Ok(Ok(()));
    }
    let containing = pattern
        .map(|p| format!(" containing {p:?}"))
        .unwrap_or_default();
    let want_text = match wanted {
        Want::AtLeastOne => "at least 1".to_string(),
        Want::None => "none".to_string(),
        Want::Exactly(n) => format!("exactly {n}"),
    };
    let got = serde_json::to_string(messages).unwrap_or_default();
    Ok(Err(format!(
        "got {count} violations{containing} but want {want_text}; got messages {got}"
    )))
}

impl SuiteRunner for GatorRunner {
    fn name(&self) -> &'static str {
        "gator"
    }

    fn sniff(&self, content: &str) -> bool {
        content.contains("test.gatekeeper.sh")
    }

    fn detect(&self, documents: &[Value]) -> bool {
        documents.iter().any(is_suite)
    }

    fn run(&self, path: &Path, documents: Vec<Value>, options: &TestOptions) -> Vec<CaseResult> {
        let origin = path.display().to_string();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut results = Vec::new();
        let mut cache = TemplateCache {
            prefer_rego: options.load.prefer_rego,
            ..TemplateCache::default()
        };
        for document in documents.iter().filter(|d| is_suite(d)) {
            let suite: Suite = match parse_value(document) {
                Ok(suite) => suite,
                Err((field, message)) => {
                    results.push(CaseResult::error(
                        &origin,
                        format!("invalid suite: {field}: {message}"),
                    ));
                    continue;
                }
            };
            for test in &suite.tests {
                results.extend(run_test(
                    &origin, &dir, test, suite.skip, options, &mut cache,
                ));
            }
        }
        results
    }
}

fn is_suite(document: &Value) -> bool {
    document
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("test.gatekeeper.sh/"))
        && document.get("kind").and_then(Value::as_str) == Some("Suite")
}

/// Templates compiled once per suite file, by path.
#[derive(Default)]
struct TemplateCache {
    templates: HashMap<PathBuf, Result<Arc<Template>, CaseError>>,
    /// Run the Rego of templates that also carry CEL.
    prefer_rego: bool,
}

impl TemplateCache {
    fn get(&mut self, path: &Path) -> Result<Arc<Template>, CaseError> {
        self.templates
            .entry(path.to_path_buf())
            .or_insert_with(|| load_template(path, self.prefer_rego))
            .clone()
    }
}

fn read(path: &Path) -> Result<SourceFile, CaseError> {
    let content = std::fs::read_to_string(path).map_err(|source| CaseError::Read {
        path: path.to_path_buf(),
        source: Arc::new(source),
    })?;
    Ok(SourceFile {
        origin: path.display().to_string(),
        content,
    })
}

fn load_template(path: &Path, prefer_rego: bool) -> Result<Arc<Template>, CaseError> {
    let file = read(path)?;
    let (docs, errors) = documents(&file);
    if let Some(err) = errors.into_iter().next() {
        return Err(err.into());
    }
    let Some(doc) = docs.iter().find(|d| is_template(&d.api_version, &d.kind)) else {
        return Err(CaseError::NoTemplate(path.to_path_buf()));
    };
    Template::load_with(doc, CASE_TIMEOUT, prefer_rego)
        .map(|(t, _)| Arc::new(t))
        .map_err(CaseError::Load)
}

/// A path of the suite, relative to its directory.
fn relative(dir: &Path, path: &str, what: &'static str) -> Result<PathBuf, CaseError> {
    if path.is_empty() {
        return Err(CaseError::Missing(what));
    }
    if Path::new(path).is_absolute() {
        return Err(CaseError::Absolute {
            what,
            path: path.to_string(),
        });
    }
    Ok(dir.join(path))
}

fn load_constraint(
    dir: &Path,
    test: &TestSpec,
    cache: &mut TemplateCache,
) -> Result<Result<Constraint, ConstraintError>, CaseError> {
    let template = cache.get(&relative(dir, &test.template, "template")?)?;
    let path = relative(dir, &test.constraint, "constraint")?;
    let file = read(&path)?;
    let (docs, errors) = documents(&file);
    if let Some(err) = errors.into_iter().next() {
        return Err(err.into());
    }
    let [doc] = docs.as_slice() else {
        return Err(CaseError::ConstraintDocuments {
            path,
            count: docs.len(),
        });
    };
    if doc.kind != template.kind {
        return Err(CaseError::ConstraintKind {
            path,
            found: doc.kind.clone(),
            expected: template.kind.clone(),
        });
    }
    let templates = HashMap::from([(template.kind.clone(), template)]);
    Ok(Constraint::load(doc, &templates))
}

fn run_test(
    origin: &str,
    dir: &Path,
    test: &TestSpec,
    suite_skip: bool,
    options: &TestOptions,
    cache: &mut TemplateCache,
) -> Vec<CaseResult> {
    let selected: Vec<&CaseSpec> = test
        .cases
        .iter()
        .filter(|c| options.selected(&test.name, &c.name))
        .collect();
    if selected.is_empty() && !(test.cases.is_empty() && options.selected(&test.name, "")) {
        return Vec::new();
    }
    let row = |case: &str, outcome, reason: String| {
        CaseResult::new(origin, &test.name, case, outcome, reason)
    };
    let all = |outcome: Outcome, reason: &str| -> Vec<CaseResult> {
        if selected.is_empty() {
            vec![row("", outcome, reason.to_string())]
        } else {
            selected
                .iter()
                .map(|c| row(&c.name, outcome, reason.to_string()))
                .collect()
        }
    };
    if suite_skip {
        return all(Outcome::Skip, "suite is skipped");
    }
    if test.skip {
        return all(Outcome::Skip, "test is skipped");
    }
    if test.expansion.as_deref().is_some_and(|e| !e.is_empty()) {
        return all(
            Outcome::Unsupported,
            "expansion (generated resources) is not supported",
        );
    }
    let constraint = match load_constraint(dir, test, cache) {
        Ok(c) => c,
        Err(err) => return all(Outcome::Error, &err.to_string()),
    };
    if test.invalid {
        return match constraint {
            Err(ConstraintError::Schema(_)) => vec![row("", Outcome::Pass, String::new())],
            Err(ConstraintError::Invalid(err)) => {
                vec![row(
                    "",
                    Outcome::Fail,
                    format!("want a parameter schema error, got: {err}"),
                )]
            }
            Err(ConstraintError::Fields(errors)) => {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                vec![row(
                    "",
                    Outcome::Fail,
                    format!("want a parameter schema error, got: {}", text.join("; ")),
                )]
            }
            Ok(_) => vec![row(
                "",
                Outcome::Fail,
                "want a parameter schema error, but the constraint is valid".into(),
            )],
        };
    }
    let constraint = match constraint {
        Ok(c) => c,
        Err(err) => {
            let text = err
                .errors()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return all(Outcome::Error, &text);
        }
    };
    if selected.is_empty() {
        return vec![row("", Outcome::Error, "the test has no cases".into())];
    }
    // The constraint is evaluated as the webhook evaluates it: as a policy, through the pipeline, at gator's
    // enforcement point.
    let source = SourceRef::file(&dir.join(&test.constraint).display().to_string());
    let policy: Arc<dyn Policy> = Arc::new(ConstraintPolicy::new(constraint, source, CASE_TIMEOUT));
    selected
        .into_iter()
        .map(|case| {
            if case.skip {
                return row(&case.name, Outcome::Skip, "case is skipped".into());
            }
            match run_case(dir, case, &policy) {
                Ok(Ok(())) => row(&case.name, Outcome::Pass, String::new()),
                Ok(Err(failure)) => row(&case.name, Outcome::Fail, failure),
                Err(error) => row(&case.name, Outcome::Error, error.to_string()),
            }
        })
        .collect()
}

/// Run one case: `Err` when it cannot run, `Ok(Err)` when an assertion fails.
fn run_case(
    dir: &Path,
    case: &CaseSpec,
    policy: &Arc<dyn Policy>,
) -> Result<Result<(), String>, CaseError> {
    if case.assertions.is_empty() {
        return Err(CaseError::NoAssertions);
    }
    let object_path = relative(dir, &case.object, "object")?;
    let file = read(&object_path)?;
    let values = yaml_documents(&file)?;
    let [(_, object)] = values.as_slice() else {
        return Err(CaseError::ObjectDocuments {
            path: object_path,
            count: values.len(),
        });
    };
    let inventory = inventory(dir, &case.inventory)?;
    let review = review_for(object)?;
    let ctx = EvalContext {
        deadline: Deadline::after(CASE_TIMEOUT),
        cluster: Arc::new(GatorCluster {
            inventory: inventory.map(Arc::new),
        }),
        explain: true,
        point: EnforcementPoint::Test,
    };
    // A `scoped` constraint that does not list gator's enforcement point gives no results. As in Gatekeeper, an
    // evaluation error is one result whose message is the error text.
    let messages: Vec<String> =
        pipeline::validate_policies(std::slice::from_ref(policy), &review, &ctx)
            .into_iter()
            .flat_map(|run| {
                let outcome = run.outcome;
                let errors = outcome.errors.into_iter().map(|e| e.error.to_string());
                outcome
                    .violations
                    .into_iter()
                    .map(|v| v.message)
                    .chain(errors)
                    .collect::<Vec<_>>()
            })
            .collect();
    for assertion in &case.assertions {
        if let Err(failure) = check_assertion(assertion, &messages)? {
            return Ok(Err(failure));
        }
    }
    Ok(Ok(()))
}

/// What a gator case knows of the cluster: its inventory files (`data.inventory`), whose Namespaces are the reviews'
/// `namespaceObject`.
#[derive(Debug)]
struct GatorCluster {
    inventory: Option<Arc<Value>>,
}

impl ClusterContext for GatorCluster {
    fn namespace(&self, name: &str) -> Option<Value> {
        self.inventory
            .as_ref()?
            .pointer(&format!(
                "/cluster/v1/Namespace/{}",
                name.replace('~', "~0").replace('/', "~1")
            ))
            .cloned()
    }

    fn inventory(&self) -> Option<Arc<Value>> {
        self.inventory.clone()
    }
}

/// The review of a case's object: an AdmissionReview's request as written, or the request gator synthesizes for a
/// plain object.
fn review_for(object: &Value) -> Result<Review, CaseError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.starts_with("admission.k8s.io/") && kind == "AdmissionReview" {
        let Some(request) = object.get("request").filter(|r| r.is_object()) else {
            return Err(CaseError::NoRequest);
        };
        let present = |field: &str| request.get(field).is_some_and(|v| !v.is_null());
        if !present("object") && !present("oldObject") {
            return Err(CaseError::NoObject);
        }
        return Ok(Review::synthesized(request.clone()));
    }
    Ok(Review::synthesized(gator_request(object.clone())?))
}

/// `data.inventory` from inventory files, or `None` when the case has none.
fn inventory(dir: &Path, files: &[String]) -> Result<Option<Value>, CaseError> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut inventory = serde_json::json!({"cluster": {}, "namespace": {}});
    for file in files {
        let path = relative(dir, file, "inventory")?;
        let values = yaml_documents(&read(&path)?)?;
        for (_, object) in values {
            let field = |f: &str| {
                object
                    .get(f)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let meta = |f: &str| {
                object
                    .get("metadata")
                    .and_then(|m| m.get(f))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let (api_version, kind, name, namespace) = (
                field("apiVersion"),
                field("kind"),
                meta("name"),
                meta("namespace"),
            );
            if api_version.is_empty() || kind.is_empty() || name.is_empty() {
                return Err(CaseError::InventoryIdentity(path));
            }
            let slot = if namespace.is_empty() {
                &mut inventory["cluster"]
            } else {
                &mut inventory["namespace"][namespace.as_str()]
            };
            slot[api_version.as_str()][kind.as_str()][name.as_str()] = object.clone();
        }
    }
    Ok(Some(inventory))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(violations: Option<Value>, message: Option<&str>) -> AssertionSpec {
        AssertionSpec {
            violations,
            message: message.map(Into::into),
        }
    }

    #[test]
    fn assertions_count_matching_messages() {
        let msgs = vec![
            "missing label owner".to_string(),
            "bad image nginx".to_string(),
        ];
        let yes = Some(Value::String("yes".into()));
        let no = Some(Value::String("no".into()));
        let holds = |a: AssertionSpec| matches!(check_assertion(&a, &msgs), Ok(Ok(())));
        assert!(holds(assertion(None, None)));
        assert!(holds(assertion(yes.clone(), Some("owner"))));
        assert!(holds(assertion(Some(serde_json::json!(2)), None)));
        assert!(holds(assertion(Some(serde_json::json!(1)), Some("^bad"))));
        let failure = check_assertion(&assertion(no, None), &msgs).expect("valid");
        assert!(
            failure
                .clone()
                .expect_err("fails")
                .starts_with("got 2 violations but want none"),
            "{failure:?}"
        );
        let failure = check_assertion(&assertion(yes, Some("Owner")), &msgs).expect("valid");
        assert!(
            failure
                .clone()
                .expect_err("case-sensitive")
                .starts_with("got 0 violations containing \"Owner\" but want at least 1"),
            "{failure:?}"
        );
        let invalid = |a: AssertionSpec| match check_assertion(&a, &msgs) {
            Err(error) => error.to_string(),
            Ok(result) => panic!("{result:?}"),
        };
        assert_eq!(
            invalid(assertion(Some(serde_json::json!(-1)), None)),
            "invalid violations value -1: use yes, no or a non-negative number"
        );
        assert_eq!(
            invalid(assertion(Some(Value::String("maybe".into())), None)),
            "invalid violations value \"maybe\": use yes, no or a non-negative number"
        );
        assert_eq!(
            invalid(assertion(Some(serde_json::json!([1])), None)),
            "invalid violations value [1]: use yes, no or a non-negative number"
        );
        assert!(invalid(assertion(None, Some("("))).starts_with("invalid message regex \"(\": "));
    }

    #[test]
    fn admission_reviews_are_converted_strictly() {
        let no_request =
            serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        assert!(matches!(review_for(&no_request), Err(CaseError::NoRequest)));
        let no_object = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}});
        assert!(matches!(review_for(&no_object), Err(CaseError::NoObject)));
        assert!(matches!(
            review_for(&serde_json::json!("not a mapping")),
            Err(CaseError::Review(ReviewError::NotAMapping))
        ));
        let ok = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "operation": "UPDATE", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "userInfo": {"username": "alice"}, "object": {"metadata": {"name": "p"}}}});
        let review = review_for(&ok).expect("valid");
        assert_eq!(review.request()["userInfo"]["username"], "alice");
        assert_eq!(review.operation_str(), "UPDATE");
        // A plain object gets gator's synthesized request: no operation, no user.
        let plain = review_for(
            &serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        )
        .expect("valid");
        assert_eq!(plain.request()["operation"], "");
        assert_eq!(plain.request()["uid"], "");
    }
}
