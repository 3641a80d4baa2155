//! Strict field validation of policy documents, as the API server's `fieldValidation=Strict` does on `kubectl apply`:
//! a field the schema does not have is an error naming its path, with a "did you mean" when a known field is close.
//!
//! Engines describe the closed parts of their schemas as a tree of [`Shape`]s; free-form parts (patterns, parameters
//! checked elsewhere, fields of features an engine does not implement) are [`Shape::Any`]. Only field names are
//! checked here: value types are the serde types' business.

use serde_json::Value;

use super::source::{Document, LoadError};

/// The shape of a value in a policy document.
#[derive(Debug)]
pub enum Shape {
    /// Anything: free-form, or checked elsewhere.
    Any,
    /// A mapping with exactly these fields (any of them optional).
    Object(&'static [(&'static str, Shape)]),
    /// A list whose items have this shape.
    List(&'static Shape),
    /// A mapping with arbitrary keys whose values have this shape.
    Map(&'static Shape),
    /// A mapping of the first shape, or a list of the second (Kyverno's `{any, all}` or legacy condition lists).
    ObjectOrList(&'static Shape, &'static Shape),
}

/// `metadata` (an ObjectMeta) as the API server knows it.
pub const OBJECT_META: Shape = Shape::Object(&[
    ("name", Shape::Any),
    ("generateName", Shape::Any),
    ("namespace", Shape::Any),
    ("labels", Shape::Any),
    ("annotations", Shape::Any),
    ("uid", Shape::Any),
    ("resourceVersion", Shape::Any),
    ("generation", Shape::Any),
    ("creationTimestamp", Shape::Any),
    ("deletionTimestamp", Shape::Any),
    ("deletionGracePeriodSeconds", Shape::Any),
    ("ownerReferences", Shape::Any),
    ("finalizers", Shape::Any),
    ("managedFields", Shape::Any),
    ("selfLink", Shape::Any),
]);

/// A metav1.LabelSelector.
pub const LABEL_SELECTOR: Shape = Shape::Object(&[
    ("matchLabels", Shape::Any),
    (
        "matchExpressions",
        Shape::List(&Shape::Object(&[
            ("key", Shape::Any),
            ("operator", Shape::Any),
            ("values", Shape::Any),
        ])),
    ),
]);

/// Check `value` against `shape`; every unknown field is one error at `path` (dotted, `[i]` or `[name]` for list
/// items that have a `name`).
pub fn check(doc: &Document, path: &str, value: &Value, shape: &Shape) -> Vec<LoadError> {
    let mut errors = Vec::new();
    walk(doc, path, value, shape, &mut errors);
    errors
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(doc: &Document, path: &str, value: &Value, shape: &Shape, errors: &mut Vec<LoadError>) {
    match (shape, value) {
        (Shape::Any, _) => {}
        (Shape::Object(fields), Value::Object(map)) => {
            for (key, v) in map {
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, inner)) => walk(doc, &join(path, key), v, inner, errors),
                    None => errors.push(doc.error_at(
                        join(path, key),
                        unknown_field_message(key, fields.iter().map(|(n, _)| *n)),
                    )),
                }
            }
        }
        (Shape::List(inner), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let label = match item.get("name").and_then(Value::as_str) {
                    Some(name) if !name.is_empty() => name.to_string(),
                    _ => i.to_string(),
                };
                walk(doc, &format!("{path}[{label}]"), item, inner, errors);
            }
        }
        (Shape::Map(inner), Value::Object(map)) => {
            for (key, v) in map {
                walk(doc, &join(path, key), v, inner, errors);
            }
        }
        (Shape::ObjectOrList(object, _), Value::Object(_)) => {
            walk(doc, path, value, object, errors)
        }
        (Shape::ObjectOrList(_, list), Value::Array(_)) => walk(doc, path, value, list, errors),
        // A value of the wrong type is reported by the engine's typed parse.
        _ => {}
    }
}

/// `unknown field "x"`, with the closest known field when one is close enough to be a typo.
pub fn unknown_field_message<'a>(field: &str, known: impl Iterator<Item = &'a str>) -> String {
    match suggest(field, known) {
        Some(s) => format!("unknown field {field:?} (did you mean {s:?}?)"),
        None => format!("unknown field {field:?}"),
    }
}

/// The candidate closest to `word` by edit distance (case-insensitive), when it is close enough to be a typo: at most
/// a third of the word's length, and at least one edit allowed.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an adjacent transposition as one edit.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SourceRef;
    use serde_json::json;

    static SHAPE: Shape = Shape::Object(&[
        ("metadata", Shape::Any),
        (
            "spec",
            Shape::Object(&[
                ("validationFailureAction", Shape::Any),
                (
                    "rules",
                    Shape::List(&Shape::Object(&[
                        ("name", Shape::Any),
                        ("match", Shape::Any),
                    ])),
                ),
            ]),
        ),
    ]);

    fn doc(value: Value) -> Document {
        Document::from_value(SourceRef::document("p.yaml", 2), value)
    }

    #[test]
    fn unknown_fields_name_file_document_path_and_suggestion() {
        let d = doc(json!({"spec": {"validationFailureActon": "Enforce",
            "rules": [{"name": "r", "mach": {}}, {"nme": "x"}]}}));
        let errors: Vec<String> = check(&d, "", &d.value, &SHAPE)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "p.yaml, document 2: spec.rules[r].mach: unknown field \"mach\" (did you mean \"match\"?)",
                "p.yaml, document 2: spec.rules[1].nme: unknown field \"nme\" (did you mean \"name\"?)",
                "p.yaml, document 2: spec.validationFailureActon: unknown field \"validationFailureActon\" \
                 (did you mean \"validationFailureAction\"?)",
            ]
        );
    }

    #[test]
    fn far_fields_get_no_suggestion() {
        assert_eq!(suggest("background", ["rules", "match"].into_iter()), None);
        assert_eq!(
            unknown_field_message("zzz", ["rules"].into_iter()),
            "unknown field \"zzz\""
        );
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("kinds", "knids"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("pod", "pdo"), 1);
    }
}
