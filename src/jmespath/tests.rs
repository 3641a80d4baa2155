//! Unit tests of the JMESPath module.

use serde_json::{json, Value};

use super::*;

fn eval(expr: &str, data: &Value) -> Result<Value, JmesError> {
    Expression::compile(expr).expect("compiles").search(data)
}

#[test]
fn field_lookup_semantics() {
    let data = json!({"a": {"b": 1}, "n": null});
    assert_eq!(eval("a.b", &data), Ok(json!(1)));
    assert_eq!(eval("a.c", &data), Err(JmesError::NotFound { key: "c".into() }));
    assert_eq!(eval("n.x", &data), Ok(Value::Null));
    assert_eq!(eval("a.b.c", &data), Ok(Value::Null));
}
