//! Constraint `spec.parameters` validation against the template's `openAPIV3Schema`.
//!
//! In a cluster the API server does this through the constraint CRD that Gatekeeper generates; here there is no CRD,
//! so the schema is checked when the constraint is loaded. The OpenAPI v3 dialect Kubernetes uses is JSON Schema draft
//! 4 plus a few extensions, translated before compiling: `nullable: true` admits `null`,
//! `x-kubernetes-int-or-string: true` admits an integer or a string. Other `x-kubernetes-*` keys are annotations.

use serde_json::{Map, Value};

/// A compiled parameter schema.
#[derive(Debug)]
pub struct ParamSchema {
    validator: jsonschema::Validator,
}

impl ParamSchema {
    /// Compile an `openAPIV3Schema`; the error is the schema problem.
    pub fn compile(schema: &Value) -> Result<ParamSchema, SchemaError> {
        let translated = translate(schema);
        let validator = jsonschema::draft4::new(&translated).map_err(SchemaError)?;
        Ok(ParamSchema { validator })
    }

    /// Validate parameters; every problem as `(field, message)` with the field written from `spec.parameters`.
    pub fn validate(&self, parameters: &Value) -> Vec<(String, String)> {
        self.validator
            .iter_errors(parameters)
            .map(|err| (field_path(err.instance_path().as_str()), err.to_string()))
            .collect()
    }
}

/// A template's `openAPIV3Schema` that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid openAPIV3Schema: {0}")]
pub struct SchemaError(#[source] jsonschema::ValidationError<'static>);

/// `/labels/0/key` → `spec.parameters.labels[0].key`.
fn field_path(pointer: &str) -> String {
    let mut out = String::from("spec.parameters");
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            out.push('.');
            out.push_str(&segment);
        }
    }
    out
}

/// Translate the Kubernetes OpenAPI extensions into plain draft-4 JSON Schema.
fn translate(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let value = match key.as_str() {
                    // Maps of schemas.
                    "properties" | "patternProperties" | "definitions" => match value {
                        Value::Object(props) => Value::Object(
                            props
                                .iter()
                                .map(|(k, v)| (k.clone(), translate(v)))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    // Schemas or lists of schemas.
                    "items"
                    | "additionalProperties"
                    | "not"
                    | "allOf"
                    | "anyOf"
                    | "oneOf"
                    | "additionalItems" => translate(value),
                    _ => value.clone(),
                };
                out.insert(key.clone(), value);
            }
            if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                out.remove("type");
                out.insert(
                    "anyOf".into(),
                    serde_json::json!([{"type": "integer"}, {"type": "string"}]),
                );
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), serde_json::json!([t, "null"]));
                    }
                    Some(Value::Array(mut types)) => {
                        types.push(Value::String("null".into()));
                        out.insert("type".into(), Value::Array(types));
                    }
                    _ => {}
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(translate).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_field() {
        let schema = ParamSchema::compile(&json!({
            "type": "object",
            "properties": {"labels": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}}}}}
        }))
        .expect("compiles");
        assert!(schema
            .validate(&json!({"labels": [{"key": "owner"}]}))
            .is_empty());
        let errors = schema.validate(&json!({"labels": [{"key": "a"}, {"key": 5}]}));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "spec.parameters.labels[1].key");
        assert!(errors[0].1.contains("string"), "{errors:?}");
        let errors = schema.validate(&json!("nope"));
        assert_eq!(errors[0].0, "spec.parameters");
    }

    #[test]
    fn a_schema_that_does_not_compile_says_so() {
        let error = ParamSchema::compile(&json!({"type": "no-such-type"})).expect_err("invalid");
        assert!(
            error.to_string().starts_with("invalid openAPIV3Schema: "),
            "{error}"
        );
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn kubernetes_extensions_are_understood() {
        let schema = ParamSchema::compile(&json!({
            "type": "object",
            "properties": {
                "n": {"x-kubernetes-int-or-string": true},
                "s": {"type": "string", "nullable": true},
                "min": {"type": "integer", "minimum": 0, "exclusiveMinimum": true}
            }
        }))
        .expect("compiles");
        assert!(schema
            .validate(&json!({"n": 3, "s": null, "min": 1}))
            .is_empty());
        assert!(schema.validate(&json!({"n": "50%"})).is_empty());
        assert_eq!(schema.validate(&json!({"n": true})).len(), 1);
        assert_eq!(schema.validate(&json!({"min": 0})).len(), 1);
    }
}
