//! Policy sources: files, their YAML documents, and load errors that name the file, document and field.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The text of one policy file, whatever it came from (a file on disk, a ConfigMap key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it came from, as shown in messages: a path, or `namespace/configmap/key`.
    pub origin: String,
    /// The file's text.
    pub content: String,
}

impl SourceFile {
    /// Whether this is a Rego module.
    pub fn is_rego(&self) -> bool {
        self.origin.ends_with(".rego")
    }
}

/// Where a policy or an error comes from: a file and, for YAML, a document in it (numbered from 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourceRef {
    /// The file (or ConfigMap key).
    pub origin: Arc<str>,
    /// The YAML document, counted from 1; `None` for a whole file (Rego).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
}

impl SourceRef {
    /// A whole file.
    pub fn file(origin: &str) -> Self {
        SourceRef {
            origin: origin.into(),
            document: None,
        }
    }

    /// A document of a file, counted from 1.
    pub fn document(origin: &str, document: usize) -> Self {
        SourceRef {
            origin: origin.into(),
            document: Some(document),
        }
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(n) => write!(f, "{}, document {}", self.origin, n),
            None => write!(f, "{}", self.origin),
        }
    }
}

/// A problem found while loading policies: the file, the document, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct LoadError {
    /// File and document.
    pub location: SourceRef,
    /// The field, as a dotted path (`spec.parameters.labels[0]`), when the problem has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// For a warning about a selected kind no built-in API has: that kind, so a load that knows the cluster's
    /// custom resources can drop the warning when a CRD defines it (see [`super::kinds::KnownKinds`]).
    #[serde(skip)]
    pub unknown_kind: Option<Box<super::kinds::KindRef>>,
}

impl LoadError {
    /// An error about a whole document or file.
    pub fn new(source: SourceRef, message: impl Into<String>) -> Self {
        LoadError {
            location: source,
            field: None,
            message: message.into(),
            unknown_kind: None,
        }
    }

    /// An error about one field.
    pub fn at(source: SourceRef, field: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError {
            location: source,
            field: Some(field.into()),
            message: message.into(),
            unknown_kind: None,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.location, field, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// One YAML document of a policy file.
#[derive(Debug, Clone)]
pub struct Document {
    /// File and document number.
    pub source: SourceRef,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// The whole document.
    pub value: Value,
}

impl Document {
    /// A document from a parsed value; `apiVersion` and `kind` are `""` when absent.
    pub fn from_value(source: SourceRef, value: Value) -> Document {
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        Document {
            source,
            api_version,
            kind,
            value,
        }
    }

    /// `metadata.name`, or `""`.
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// An error about a field of this document.
    pub fn error_at(&self, field: impl Into<String>, message: impl Into<String>) -> LoadError {
        LoadError::at(self.source.clone(), field, message)
    }

    /// An error about this document as a whole.
    pub fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError::new(self.source.clone(), message)
    }

    /// Deserialize the document into `T`, reporting the failing field path.
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, LoadError> {
        parse_value(&self.value).map_err(|(field, message)| LoadError {
            location: self.source.clone(),
            field: Some(field).filter(|f| !f.is_empty() && f != "."),
            message,
            unknown_kind: None,
        })
    }
}

/// Deserialize a JSON value into `T`; on failure return the field path and the message.
pub fn parse_value<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        (path, err.into_inner().to_string())
    })
}

/// Split a YAML file into its documents. Empty documents (comments only, a leading `---`) are skipped but still
/// counted, so document numbers match what an editor shows between `---` separators.
pub fn yaml_documents(file: &SourceFile) -> Result<Vec<(SourceRef, Value)>, LoadError> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&file.content).enumerate() {
        let source = SourceRef::document(&file.origin, index + 1);
        let value = Value::deserialize(document)
            .map_err(|err| LoadError::new(source.clone(), yaml_message(&err)))?;
        if !value.is_null() {
            out.push((source, value));
        }
    }
    Ok(out)
}

/// Parse every document of a YAML file as a [`Document`]: each must be a mapping with `apiVersion` and `kind`.
pub fn documents(file: &SourceFile) -> (Vec<Document>, Vec<LoadError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let values = match yaml_documents(file) {
        Ok(values) => values,
        Err(err) => return (docs, vec![err]),
    };
    for (source, value) in values {
        if !value.is_object() {
            errors.push(LoadError::new(
                source,
                "a document must be a mapping with apiVersion and kind",
            ));
            continue;
        }
        let doc = Document::from_value(source, value);
        if doc.api_version.is_empty() {
            errors.push(doc.error_at("apiVersion", "missing"));
            continue;
        }
        if doc.kind.is_empty() {
            errors.push(doc.error_at("kind", "missing"));
            continue;
        }
        docs.push(doc);
    }
    (docs, errors)
}

/// serde_yaml's message with its location, on one line.
fn yaml_message(err: &serde_yaml::Error) -> String {
    let text = err.to_string().replace('\n', " ");
    format!("invalid YAML: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> SourceFile {
        SourceFile {
            origin: "p.yaml".into(),
            content: content.into(),
        }
    }

    #[test]
    fn counts_documents_from_one_and_skips_empty_ones() {
        let docs =
            yaml_documents(&file("---\n# only a comment\n---\na: 1\n---\nb: 2\n")).expect("parses");
        let numbers: Vec<_> = docs.iter().map(|(s, _)| s.document).collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(numbers.last(), Some(&Some(3)));
    }

    #[test]
    fn yaml_1_2_keeps_yes_and_no_as_strings() {
        let docs = yaml_documents(&file("a: yes\nb: no\nc: true\n")).expect("parses");
        assert_eq!(
            docs[0].1,
            serde_json::json!({"a": "yes", "b": "no", "c": true})
        );
    }

    #[test]
    fn syntax_error_names_the_document() {
        let err = yaml_documents(&file("a: 1\n---\nb: [1, 2\n")).expect_err("broken");
        assert_eq!(err.location.document, Some(2));
        assert!(
            err.to_string()
                .starts_with("p.yaml, document 2: invalid YAML"),
            "{err}"
        );
    }

    #[test]
    fn documents_require_api_version_and_kind() {
        let (docs, errors) = documents(&file(
            "kind: X\n---\napiVersion: v1\n---\n[1]\n---\napiVersion: v1\nkind: Y\n",
        ));
        assert_eq!(docs.len(), 1);
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "p.yaml, document 1: apiVersion: missing",
                "p.yaml, document 2: kind: missing",
                "p.yaml, document 3: a document must be a mapping with apiVersion and kind",
            ]
        );
    }

    #[test]
    fn parse_reports_the_field_path() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Spec {
            labels: Vec<String>,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Doc {
            spec: Spec,
        }
        let (docs, _) = documents(&file(
            "apiVersion: v1\nkind: X\nspec:\n  labels: [a, {b: 1}]\n",
        ));
        let err = docs[0].parse::<Doc>().expect_err("bad field");
        assert_eq!(err.field.as_deref(), Some("spec.labels[1]"));
    }
}
