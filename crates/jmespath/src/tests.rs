//! Unit tests of the JMESPath module: every construct, the Kyverno semantics, every function, limits.

use serde_json::{json, Value};

use super::units::{format_duration, parse_duration, Quantity};
use super::*;

fn eval(expr: &str, data: &Value) -> Result<Value, JmesError> {
    Expression::compile(expr).expect("compiles").search(data)
}

fn ok(expr: &str, data: &Value) -> Value {
    match eval(expr, data) {
        Ok(v) => v,
        Err(e) => panic!("{expr}: unexpected error {e}"),
    }
}

/// Evaluate against null (for expressions made of literals and functions).
fn lit(expr: &str) -> Value {
    ok(expr, &json!({}))
}

fn err(expr: &str, data: &Value) -> JmesError {
    match eval(expr, data) {
        Ok(v) => panic!("{expr}: expected an error, got {v}"),
        Err(e) => e,
    }
}

/// A function error naming `name`.
fn fn_err(expr: &str, name: &str) -> String {
    match err(expr, &json!({})) {
        JmesError::Function { name: n, message } => {
            assert_eq!(n, name, "{expr}: {message}");
            message
        }
        other => panic!("{expr}: expected a function error, got {other:?}"),
    }
}

fn compile_err(expr: &str) -> String {
    match Expression::compile(expr) {
        Ok(_) => panic!("{expr}: expected a compile error"),
        Err(e @ JmesError::Parse { .. }) => e.to_string(),
        Err(other) => panic!("{expr}: expected a parse error, got {other:?}"),
    }
}

fn pod() -> Value {
    json!({
        "request": {
            "operation": "CREATE",
            "object": {
                "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web", "tier": "front"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25", "securityContext": {"privileged": true}},
                        {"name": "sidecar", "image": "busybox", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
                        {"name": "log", "image": "fluentd:v1", "securityContext": {"privileged": false}}
                    ]
                }
            }
        }
    })
}

// ------------------------------------------------------------------------------------------------------------
// Field lookups and Kyverno's NotFound semantics

#[test]
fn field_lookup_semantics() {
    let data = json!({"a": {"b": 1}, "n": null, "s": "text", "l": [1]});
    assert_eq!(eval("a.b", &data), Ok(json!(1)));
    assert_eq!(
        eval("a.c", &data),
        Err(JmesError::NotFound { key: "c".into() })
    );
    assert_eq!(
        eval("missing.x", &data),
        Err(JmesError::NotFound {
            key: "missing".into()
        })
    );
    assert_eq!(
        eval("n.x", &data),
        Ok(Value::Null),
        "lookup on null is null"
    );
    assert_eq!(
        eval("a.b.c", &data),
        Ok(Value::Null),
        "lookup on a number is null"
    );
    assert_eq!(eval("s.x", &data), Ok(Value::Null));
    assert_eq!(eval("l.x", &data), Ok(Value::Null));
    assert_eq!(
        eval("\"a\".\"b\"", &data),
        Ok(json!(1)),
        "quoted identifiers"
    );
    assert_eq!(
        eval("n", &data),
        Ok(Value::Null),
        "a present null is not NotFound"
    );
}

#[test]
fn not_found_error_text() {
    let e = err("metadata.labels.app", &json!({"metadata": {}}));
    assert!(e.is_not_found());
    assert_eq!(e.to_string(), "Unknown key \"labels\" in path");
    assert!(!JmesError::Type {
        message: "x".into()
    }
    .is_not_found());
}

#[test]
fn or_defaults_on_not_found_and_falsy() {
    let data = json!({"metadata": {"name": "", "labels": {}}, "zero": 0, "f": false});
    assert_eq!(ok("metadata.annotations.x || 'none'", &data), json!("none"));
    assert_eq!(ok("metadata.name || 'unnamed'", &data), json!("unnamed"));
    assert_eq!(
        ok("metadata.labels || `{\"a\": 1}`", &data),
        json!({"a": 1})
    );
    assert_eq!(ok("zero || `5`", &data), json!(0), "0 is truthy");
    assert_eq!(ok("f || 'x'", &data), json!("x"));
    assert_eq!(ok("missing || other || 'last'", &data), json!("last"));
    // A NotFound on the right-hand side gives null (Kyverno: `limits.memory || requests.memory` on `resources: {}`).
    assert_eq!(ok("missing || other", &data), Value::Null);
    assert_eq!(
        ok("metadata.name || metadata.missing.deeper", &data),
        Value::Null
    );
    assert_eq!(ok("(missing || other).x", &data), Value::Null);
    let c = json!({"resources": {}});
    assert_eq!(
        ok("resources.limits.memory || resources.requests.memory", &c),
        Value::Null
    );
    // Other errors on the right-hand side propagate.
    assert!(matches!(
        err("missing || length(`1`)", &data),
        JmesError::Function { .. }
    ));
    // A non-NotFound error on the left is not swallowed.
    let e = err("length(`1`) || 'x'", &data);
    assert!(matches!(e, JmesError::Function { .. }), "{e:?}");
}

#[test]
fn and_not_and_truthiness() {
    let data = json!({"t": true, "f": false, "e": [], "o": {}, "s": "x", "n": 0});
    assert_eq!(ok("t && s", &data), json!("x"));
    assert_eq!(ok("f && s", &data), json!(false));
    assert_eq!(ok("e && s", &data), json!([]));
    assert_eq!(ok("!t", &data), json!(false));
    assert_eq!(ok("!e", &data), json!(true));
    assert_eq!(ok("!o", &data), json!(true));
    assert_eq!(ok("!n", &data), json!(false));
    assert_eq!(ok("!''", &data), json!(true));
    assert!(
        err("t && missing", &data).is_not_found(),
        "&& does not default"
    );
    assert!(err("!missing", &data).is_not_found());
    assert_eq!(ok("f && missing", &data), json!(false), "short-circuit");
}

// ------------------------------------------------------------------------------------------------------------
// Indexes, slices, projections, flatten, filters

#[test]
fn indexes_and_slices() {
    let data = json!({"l": [0, 1, 2, 3, 4, 5], "o": {"a": 1}});
    assert_eq!(ok("l[0]", &data), json!(0));
    assert_eq!(ok("l[-1]", &data), json!(5));
    assert_eq!(ok("l[10]", &data), Value::Null);
    assert_eq!(ok("l[-10]", &data), Value::Null);
    assert_eq!(ok("o[0]", &data), Value::Null);
    assert_eq!(ok("l[1:3]", &data), json!([1, 2]));
    assert_eq!(ok("l[:2]", &data), json!([0, 1]));
    assert_eq!(ok("l[4:]", &data), json!([4, 5]));
    assert_eq!(ok("l[::2]", &data), json!([0, 2, 4]));
    assert_eq!(ok("l[::-1]", &data), json!([5, 4, 3, 2, 1, 0]));
    assert_eq!(ok("l[-2:]", &data), json!([4, 5]));
    assert_eq!(ok("l[5:1:-2]", &data), json!([5, 3]));
    assert_eq!(ok("l[100:]", &data), json!([]));
    assert_eq!(ok("l[-100:2]", &data), json!([0, 1]));
    assert_eq!(ok("o[1:2]", &data), Value::Null);
    assert!(compile_err("l[::0]").contains("slice step cannot be 0"));
}

#[test]
fn projections_drop_nulls_and_not_found() {
    let data = pod();
    let spec = "request.object.spec";
    assert_eq!(
        ok(&format!("{spec}.containers[*].name"), &data),
        json!(["nginx", "sidecar", "log"])
    );
    assert_eq!(
        ok(&format!("{spec}.containers[].name"), &data),
        json!(["nginx", "sidecar", "log"])
    );
    // `securityContext` is missing on the sidecar: NotFound drops the element instead of failing.
    assert_eq!(
        ok(
            &format!("{spec}.containers[].securityContext.privileged"),
            &data
        ),
        json!([true, false])
    );
    assert_eq!(
        ok(&format!("{spec}.containers[].ports[].containerPort"), &data),
        json!([80, 443])
    );
    assert_eq!(
        ok(
            &format!("{spec}.containers[*].ports[*].containerPort"),
            &data
        ),
        json!([[80, 443]])
    );
    // A missing key before the projection is still an error.
    assert!(err(&format!("{spec}.initContainers[].image"), &data).is_not_found());
    assert_eq!(
        ok(&format!("{spec}.initContainers[].image || `[]`"), &data),
        json!([])
    );
    // Projection on a non-array is null.
    assert_eq!(ok("request.operation[*]", &data), Value::Null);
    assert_eq!(ok("request.operation[]", &data), Value::Null);
}

#[test]
fn object_projection_and_flatten() {
    let data = json!({"o": {"a": {"v": 1}, "b": {"v": 2}, "c": {"w": 3}}, "nested": [[1, 2], [3, [4]], 5]});
    let mut values = ok("o.*.v", &data).as_array().cloned().expect("array");
    values.sort_by_key(|v| v.as_i64());
    assert_eq!(values, vec![json!(1), json!(2)]);
    assert_eq!(ok("nested[]", &data), json!([1, 2, 3, [4], 5]));
    assert_eq!(ok("nested[][]", &data), json!([1, 2, 3, 4, 5]));
    assert_eq!(ok("o.a.*", &data), json!([1]));
    assert_eq!(ok("nested.*", &data), Value::Null);
    assert_eq!(ok("*", &json!({"x": 1})), json!([1]));
}

#[test]
fn pipes_stop_projections() {
    let data = pod();
    assert_eq!(
        ok("request.object.spec.containers[*].name | [0]", &data),
        json!("nginx")
    );
    assert_eq!(
        ok("request.object.spec.containers[*].name[0]", &data),
        json!([])
    );
    assert_eq!(
        ok("request.object.spec.containers | length(@)", &data),
        json!(3)
    );
    assert_eq!(ok("request.object | metadata | name", &data), json!("web"));
    // Owned intermediate results (after a projection) indexed and looked up.
    assert_eq!(
        ok("request.object.spec.containers[*].name | [-1]", &data),
        json!("log")
    );
    assert_eq!(
        ok("request.object.spec.containers[*] | [5]", &data),
        Value::Null
    );
    assert_eq!(
        ok(
            "request.object.spec.containers[?name == 'log'] | [0] | image",
            &data
        ),
        json!("fluentd:v1")
    );
    assert!(eval(
        "request.object.spec.containers[?name == 'log'] | [0] | nope",
        &data
    )
    .expect_err("missing")
    .is_not_found());
}

#[test]
fn filters() {
    let data = pod();
    let c = "request.object.spec.containers";
    assert_eq!(
        ok(&format!("{c}[?securityContext.privileged].name"), &data),
        json!(["nginx"])
    );
    assert_eq!(
        ok(
            &format!("{c}[?securityContext.privileged == `false`].name"),
            &data
        ),
        json!(["log"])
    );
    assert_eq!(
        ok(&format!("{c}[?name == 'sidecar'] | [0].image"), &data),
        json!("busybox")
    );
    assert_eq!(
        ok(&format!("{c}[?starts_with(image, 'nginx')].name"), &data),
        json!(["nginx"])
    );
    assert_eq!(
        ok(&format!("{c}[?!securityContext].name"), &data),
        json!([]),
        "NotFound in the predicate drops"
    );
    assert_eq!(ok(&format!("{c}[?ports].name"), &data), json!(["sidecar"]));
    assert_eq!(
        ok(&format!("length({c}[?contains(image, ':')])"), &data),
        json!(2)
    );
    assert_eq!(ok("[?@ > `2`]", &json!([1, 2, 3, 4])), json!([3, 4]));
    assert_eq!(ok("x[?@]", &json!({"x": "notarray"})), Value::Null);
}

#[test]
fn comparisons() {
    let data =
        json!({"a": 1, "b": 1.0, "c": 2, "s": "x", "l": [1, {"k": 2}], "m": [1, {"k": 2.0}]});
    assert_eq!(ok("a == b", &data), json!(true), "1 == 1.0");
    assert_eq!(ok("a != c", &data), json!(true));
    assert_eq!(ok("a < c", &data), json!(true));
    assert_eq!(ok("c <= a", &data), json!(false));
    assert_eq!(ok("c >= c", &data), json!(true));
    assert_eq!(ok("c > b", &data), json!(true));
    assert_eq!(ok("s == 'x'", &data), json!(true));
    assert_eq!(
        ok("s < 'y'", &data),
        Value::Null,
        "ordering is for numbers only"
    );
    assert_eq!(
        ok("l == m", &data),
        json!(true),
        "deep equality with numeric values"
    );
    assert_eq!(ok("a == s", &data), json!(false));
    assert_eq!(ok("`null` == nothing_here || `true`", &data), json!(true));
}

#[test]
fn literals() {
    assert_eq!(
        lit("`{\"a\": [1, 2.5, \"x\", null, true]}`"),
        json!({"a": [1, 2.5, "x", null, true]})
    );
    assert_eq!(lit("'raw string'"), json!("raw string"));
    assert_eq!(lit(r"'it\'s'"), json!("it's"));
    assert_eq!(lit("`\"backtick\"`"), json!("backtick"));
    assert_eq!(lit("`5`"), json!(5));
    assert!(lit("`5`").is_i64(), "integer literals stay integers");
    assert!(compile_err("`{bad json`").contains("invalid JMESPath expression"));
}

#[test]
fn multiselect_and_current_node() {
    let data = json!({"a": 1, "b": {"c": 2}});
    assert_eq!(ok("[a, b.c]", &data), json!([1, 2]));
    assert_eq!(ok("{x: a, y: b.c}", &data), json!({"x": 1, "y": 2}));
    assert_eq!(ok("b.[c, @]", &data), json!([2, {"c": 2}]));
    assert_eq!(ok("@", &data), data);
    assert_eq!(ok("@.a", &data), json!(1));
    assert_eq!(
        ok("nothing.[a]", &json!({"nothing": null})),
        Value::Null,
        "multiselect on null"
    );
    assert_eq!(ok("nothing.{a: a}", &json!({"nothing": null})), Value::Null);
    // A missing member is null, not an error.
    assert_eq!(ok("[a, missing]", &data), json!([1, null]));
    assert_eq!(
        ok("{a: a, m: missing.deeper}", &data),
        json!({"a": 1, "m": null})
    );
    assert_eq!(
        ok("[*].[a, b]", &json!([{"a": 1, "b": 2}, {"a": 3}])),
        json!([[1, 2], [3, null]])
    );
    // The Kyverno idiom: all containers of a Pod, whichever lists exist.
    let pod = json!({"spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "i"}]}});
    assert_eq!(
        ok(
            "spec.[ephemeralContainers, initContainers, containers][].name",
            &pod
        ),
        json!(["i", "c"])
    );
    // Errors other than NotFound still propagate.
    assert!(matches!(
        err("[a, length(`1`)]", &data),
        JmesError::Function { .. }
    ));
}

#[test]
fn expression_references() {
    let data = json!({"people": [{"n": "b", "age": 30}, {"n": "a", "age": 20}]});
    assert_eq!(ok("sort_by(people, &age)[].n", &data), json!(["a", "b"]));
    assert_eq!(ok("map(&n, people)", &data), json!(["b", "a"]));
    let e = err("&age", &data);
    assert!(matches!(e, JmesError::Type { .. }), "{e:?}");
}

// ------------------------------------------------------------------------------------------------------------
// Compile errors, cache and limits

#[test]
fn compile_errors() {
    assert!(compile_err("a.").contains("invalid JMESPath expression \"a.\""));
    assert!(compile_err("").contains("unexpected token -- found the end of the expression"));
    assert!(compile_err("a || ").contains("found the end of the expression (at offset 5)"));
    assert!(compile_err("x509_decode(@, @)").contains("expects 1 argument, got 2"));
    assert!(compile_err("foo(").starts_with("invalid JMESPath expression"));
    assert!(compile_err("no_such_fn(@)").contains("unknown function no_such_fn()"));
    assert!(compile_err("length(a, b)").contains("expects 1 argument, got 2"));
    assert!(compile_err("replace('a')").contains("expects 4 arguments, got 1"));
    assert!(compile_err("merge()").contains("at least 1"));
    assert!(compile_err("[a, b").contains("invalid"));
    assert!(compile_err("a[?b").contains("invalid"));
    assert!(compile_err(&"a".repeat(MAX_EXPRESSION_LEN + 1)).contains("longer than"));
    assert!(
        compile_err(&format!("{}a{}", "(".repeat(300), ")".repeat(300))).contains("too complex")
    );
}

#[test]
fn deep_but_allowed_nesting_does_not_overflow() {
    // Run on a small stack, as a webhook worker would.
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let parens = format!("{}a{}", "(".repeat(127), ")".repeat(127));
            let nots = format!("{}a", "!".repeat(127));
            let dots = vec!["a"; 128].join(".");
            let projections = vec!["a[*]"; 42].join(".");
            let calls = format!("{}a{}", "abs(".repeat(120), ")".repeat(120));
            for text in [parens, nots, dots, projections, calls] {
                let expr = Expression::compile(&text).expect("within limits");
                let _ = expr.search(&json!({"a": {"a": [1]}}));
            }
        })
        .expect("spawn");
    handle.join().expect("no stack overflow");
}

#[test]
fn work_is_bounded() {
    // Each stage doubles the value: the copy budget stops it long before memory runs out.
    let text = vec!["[@, @, @, @]"; 40].join(" | ");
    let e = Expression::compile(&text)
        .expect("compiles")
        .search(&json!({"k": "v"}))
        .expect_err("budget");
    assert!(e.to_string().contains("too large"), "{e}");
    // Doubling strings through functions is bounded too.
    let text = vec!["join('', [@, @, @, @])"; 40].join(" | ");
    let e = Expression::compile(&text)
        .expect("compiles")
        .search(&json!("abcdefgh"))
        .expect_err("budget");
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn steps_are_bounded() {
    let data = Value::Array(vec![json!(0); 300_000]);
    let e =
        eval("[?@ == `1` || @ == `2` || @ == `3` || @ == `4`]", &data).expect_err("step budget");
    assert!(e.to_string().contains("too expensive"), "{e}");
    // A cheaper filter over the same data is fine.
    assert_eq!(eval("length([?@ == `1`])", &data), Ok(json!(0)));
}

#[test]
fn search_uses_cache_and_matches_compile() {
    let data = pod();
    for _ in 0..3 {
        assert_eq!(
            search("request.object.metadata.name", &data),
            Ok(json!("web"))
        );
    }
    assert!(search("a.", &data).is_err());
    // Fill past the capacity: still correct, and the cache stays bounded.
    for i in 0..(CACHE_CAPACITY + 10) {
        assert_eq!(search(&format!("`{i}`"), &data), Ok(json!(i)));
    }
    assert!(cache().read().map(|m| m.len()).unwrap_or(0) <= CACHE_CAPACITY);
    // Long texts are evaluated but not kept.
    let long = format!("'{}'", "x".repeat(CACHE_MAX_TEXT));
    assert_eq!(search(&long, &data), Ok(json!("x".repeat(CACHE_MAX_TEXT))));
    assert!(cache()
        .read()
        .map(|m| !m.contains_key(long.as_str()))
        .unwrap_or(false));
}

#[test]
fn expression_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Expression>();
    let e = Expression::compile("a").expect("compiles");
    assert_eq!(e.text(), "a");
    assert_eq!(e.clone(), e);
    let handle = std::thread::spawn(move || e.search(&json!({"a": 1})));
    assert_eq!(handle.join().expect("thread"), Ok(json!(1)));
}

#[test]
fn function_names_lists_standard_and_kyverno() {
    let names = function_names();
    for n in [
        "length",
        "sort_by",
        "to_string",
        "label_match",
        "time_now_utc",
        "add",
        "random",
        "lookup",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    assert!(
        names.windows(2).all(|w| w.first() < w.get(1)),
        "sorted and unique"
    );
}

// ------------------------------------------------------------------------------------------------------------
// Standard functions

#[test]
fn standard_numeric_functions() {
    assert_eq!(lit("abs(`-3`)"), json!(3));
    assert_eq!(lit("abs(`-3.5`)"), json!(3.5));
    assert_eq!(lit("avg(`[1, 2, 3, 4]`)"), json!(2.5));
    assert_eq!(lit("avg(`[2, 2]`)"), json!(2));
    assert_eq!(lit("avg(`[]`)"), Value::Null);
    assert_eq!(lit("ceil(`1.2`)"), json!(2));
    assert!(lit("ceil(`1.2`)").is_i64());
    assert_eq!(lit("floor(`-1.2`)"), json!(-2));
    assert_eq!(lit("floor(`7`)"), json!(7));
    assert_eq!(lit("max(`[1, 3, 2]`)"), json!(3));
    assert_eq!(lit("min(`[1, 3, 2]`)"), json!(1));
    assert_eq!(lit("max(`[\"a\", \"c\", \"b\"]`)"), json!("c"));
    assert_eq!(lit("min(`[]`)"), Value::Null);
    assert!(fn_err("abs('x')", "abs").contains("expected number, got string"));
    assert!(fn_err("avg(`[1, \"x\"]`)", "avg").contains("array of numbers"));
    assert!(fn_err("max(`[1, \"x\"]`)", "max").contains("numbers or all strings"));
    assert!(fn_err("min(`[{}]`)", "min").contains("numbers or strings"));
}

#[test]
fn standard_string_and_collection_functions() {
    let data = json!({"o": {"b": 2, "a": 1}, "l": ["x", "y"]});
    assert_eq!(ok("contains(l, 'x')", &data), json!(true));
    assert_eq!(ok("contains(l, 'z')", &data), json!(false));
    assert_eq!(ok("contains('foobar', 'oba')", &data), json!(true));
    assert_eq!(ok("contains('foobar', `1`)", &data), json!(false));
    assert_eq!(ok("contains(`[1, 2]`, `2.0`)", &data), json!(true));
    assert!(fn_err("contains(`1`, `1`)", "contains").contains("expected array or string"));
    assert_eq!(ok("starts_with('nginx:1', 'nginx')", &data), json!(true));
    assert_eq!(ok("ends_with('nginx:1', ':1')", &data), json!(true));
    assert!(fn_err("starts_with(`1`, 'a')", "starts_with").contains("argument 1: expected string"));
    assert_eq!(ok("join(', ', l)", &data), json!("x, y"));
    assert!(fn_err("join(',', `[1]`)", "join").contains("array of strings"));
    assert_eq!(ok("keys(o)", &data), json!(["a", "b"]));
    assert_eq!(ok("values(o)", &data), json!([1, 2]));
    assert!(fn_err("keys(`[]`)", "keys").contains("expected object, got array"));
    assert_eq!(
        ok("length('héllo')", &data),
        json!(5),
        "length counts characters"
    );
    assert_eq!(ok("length(l)", &data), json!(2));
    assert_eq!(ok("length(o)", &data), json!(2));
    assert!(ok("length(o)", &data).is_u64());
    assert!(fn_err("length(`null`)", "length").contains("got null"));
    assert_eq!(
        ok("merge(o, `{\"b\": 3, \"c\": 4}`)", &data),
        json!({"a": 1, "b": 3, "c": 4})
    );
    assert!(fn_err("merge(`{}`, `1`)", "merge").contains("argument 2: expected object"));
    assert_eq!(
        ok("not_null(missing_is_error || `null`, `null`, 'x')", &data),
        json!("x")
    );
    assert_eq!(ok("not_null(`null`)", &data), Value::Null);
    assert_eq!(ok("reverse(l)", &data), json!(["y", "x"]));
    assert_eq!(ok("reverse('abc')", &data), json!("cba"));
    assert_eq!(ok("sort(`[3, 1, 2]`)", &data), json!([1, 2, 3]));
    assert_eq!(ok("sort(`[\"b\", \"a\"]`)", &data), json!(["a", "b"]));
    assert!(fn_err("sort(`[1, \"a\"]`)", "sort").contains("numbers or all strings"));
    assert_eq!(ok("to_array('x')", &data), json!(["x"]));
    assert_eq!(ok("to_array(l)", &data), json!(["x", "y"]));
    assert_eq!(ok("to_number('12')", &data), json!(12));
    assert!(ok("to_number('12')", &data).is_i64());
    assert_eq!(ok("to_number('1.5')", &data), json!(1.5));
    assert_eq!(ok("to_number('abc')", &data), Value::Null);
    assert_eq!(
        ok("to_number(' 1')", &data),
        Value::Null,
        "no trimming, as Go's ParseFloat"
    );
    assert_eq!(ok("to_number('-7')", &data), json!(-7));
    assert_eq!(ok("to_number(`true`)", &data), Value::Null);
    assert_eq!(ok("to_string('x')", &data), json!("x"));
    assert_eq!(ok("to_string(o)", &data), json!("{\"a\":1,\"b\":2}"));
    assert_eq!(
        ok("to_string(`1.0`)", &data),
        json!("1"),
        "Go prints integral floats without a fraction"
    );
    assert_eq!(ok("to_string(`[true, null]`)", &data), json!("[true,null]"));
    assert_eq!(ok("type(o)", &data), json!("object"));
    assert_eq!(ok("type(l)", &data), json!("array"));
    assert_eq!(ok("type('')", &data), json!("string"));
    assert_eq!(ok("type(`1`)", &data), json!("number"));
    assert_eq!(ok("type(`true`)", &data), json!("boolean"));
    assert_eq!(ok("type(`null`)", &data), json!("null"));
}

#[test]
fn standard_expref_functions() {
    let data = json!({"p": [{"n": "b", "a": 3}, {"n": "a", "a": 1}, {"n": "c", "a": 3}]});
    assert_eq!(
        ok("max_by(p, &a).n", &data),
        json!("b"),
        "first maximum wins"
    );
    assert_eq!(ok("min_by(p, &a).n", &data), json!("a"));
    assert_eq!(ok("min_by(p, &n).n", &data), json!("a"));
    assert_eq!(
        ok("sort_by(p, &a)[].n", &data),
        json!(["a", "b", "c"]),
        "stable"
    );
    assert_eq!(ok("sort_by(p, &n)[].n", &data), json!(["a", "b", "c"]));
    assert_eq!(ok("map(&a, p)", &data), json!([3, 1, 3]));
    assert_eq!(ok("map(&[n, a], p)[0]", &data), json!(["b", 3]));
    assert_eq!(ok("max_by(`[]`, &a)", &data), Value::Null);
    let m = fn_err("sort_by(`[{\"a\": 1}, {\"a\": \"x\"}]`, &a)", "sort_by");
    assert!(m.contains("numbers or all strings"), "{m}");
    assert!(fn_err("sort_by(`[1]`, 'a')", "sort_by").contains("expected expression"));
    assert!(fn_err("map(&a, 'x')", "map").contains("expected array"));
    assert!(fn_err("length(&a)", "length").contains("expected a value"));
    // NotFound inside an expression reference is an error.
    assert!(eval("map(&zz, p)", &data)
        .expect_err("not found")
        .is_not_found());
}

// ------------------------------------------------------------------------------------------------------------
// Kyverno string functions

#[test]
fn kyverno_string_functions() {
    assert_eq!(lit("compare('a', 'b')"), json!(-1));
    assert_eq!(lit("compare('b', 'b')"), json!(0));
    assert_eq!(lit("compare('c', 'b')"), json!(1));
    assert_eq!(lit("equal_fold('Go', 'GO')"), json!(true));
    assert_eq!(lit("equal_fold('Go', 'Goo')"), json!(false));
    assert_eq!(lit("replace('aaa', 'a', 'b', `2`)"), json!("bba"));
    assert_eq!(lit("replace('aaa', 'a', 'b', `-1`)"), json!("bbb"));
    assert_eq!(lit("replace_all('a-b-c', '-', '_')"), json!("a_b_c"));
    assert_eq!(lit("to_upper('abc')"), json!("ABC"));
    assert_eq!(lit("to_lower('ABC')"), json!("abc"));
    assert_eq!(lit("trim('  x  ', ' ')"), json!("x"));
    assert_eq!(
        lit("trim('xxhixy', 'xy')"),
        json!("hi"),
        "trim takes a set of characters"
    );
    assert_eq!(
        lit("trim_prefix('docker.io/nginx', 'docker.io/')"),
        json!("nginx")
    );
    assert_eq!(lit("trim_prefix('nginx', 'docker.io/')"), json!("nginx"));
    assert_eq!(lit("split('a,b,,c', ',')"), json!(["a", "b", "", "c"]));
    assert_eq!(lit("split('abc', '')"), json!(["a", "b", "c"]));
    assert_eq!(lit("split('', ',')"), json!([""]));
    assert_eq!(lit("truncate('abcdef', `3`)"), json!("abc"));
    assert_eq!(lit("truncate('ab', `3`)"), json!("ab"));
    assert_eq!(lit("truncate('ab', `-1`)"), json!(""));
    assert!(fn_err("to_upper(`1`)", "to_upper").contains("expected string, got number"));
    assert!(fn_err("split('a', `1`)", "split").contains("argument 2"));
    assert!(
        fn_err("replace('a', 'a', 'b', 'x')", "replace").contains("argument 4: expected number")
    );
}

#[test]
fn kyverno_regex_and_wildcards() {
    assert_eq!(lit("regex_match('^[a-z]+$', 'abc')"), json!(true));
    assert_eq!(lit("regex_match('^[a-z]+$', 'ab1')"), json!(false));
    assert_eq!(
        lit("regex_match('^[0-9]+$', `123`)"),
        json!(true),
        "numbers are matched as text"
    );
    assert_eq!(
        lit("regex_match('\\bjcmd\\b', 'run jcmd now')"),
        json!(true)
    );
    assert!(fn_err("regex_match('(', 'x')", "regex_match").contains("invalid regular expression"));
    assert_eq!(
        lit("regex_replace_all('([a-z]+)-([0-9]+)', 'abc-123', '$2-$1')"),
        json!("123-abc")
    );
    assert_eq!(
        lit("regex_replace_all('h.*', '2400h0m0s', '')"),
        json!("2400")
    );
    assert_eq!(
        lit("regex_replace_all('[0-9]', `1234`, 'x')"),
        json!("xxxx")
    );
    assert_eq!(
        lit("regex_replace_all_literal('[a-z]', 'a1b', '$0')"),
        json!("$01$0")
    );
    assert_eq!(
        lit("regex_replace_all('x*', 'abc', '-')"),
        json!("-a-b-c-"),
        "empty matches, as Go"
    );
    let big = json!({"s": "a".repeat(10_000), "r": "b".repeat(10_000)});
    let e = eval("regex_replace_all('', s, r)", &big).expect_err("bounded");
    assert!(e.to_string().contains("result longer than"), "{e}");
    let e = eval("replace_all(s, 'a', r)", &big).expect_err("bounded");
    assert!(e.to_string().contains("result longer than"), "{e}");
    assert_eq!(lit("pattern_match('nginx:*', 'nginx:1.25')"), json!(true));
    assert_eq!(lit("pattern_match('v?', 'v1')"), json!(true));
    assert_eq!(
        lit("pattern_match('v?', 'v')"),
        json!(false),
        "? is exactly one character"
    );
    assert_eq!(lit("pattern_match('*', '')"), json!(true));
    assert_eq!(lit("pattern_match('1*', `123`)"), json!(true));
    assert!(wildcard_match("a*b*c", "axxbyyc"));
    assert!(wildcard_match("?*", "x"));
    assert!(!wildcard_match("?*", ""));
    assert!(!wildcard_match("a*b", "acbd"));
    assert!(wildcard_match("", ""));
    assert!(!wildcard_match("", "a"));
    assert!(wildcard_match("*.example.com", "api.example.com"));
    assert!(
        !wildcard_match(&"*a".repeat(50), &"a".repeat(40)),
        "no exponential backtracking"
    );
}

#[test]
fn kyverno_label_match_and_to_boolean() {
    let data = json!({"sel": {"app": "web"}, "labels": {"app": "web", "tier": "x"}});
    assert_eq!(ok("label_match(sel, labels)", &data), json!(true));
    assert_eq!(ok("label_match(labels, sel)", &data), json!(false));
    assert_eq!(ok("label_match(`{}`, sel)", &data), json!(true));
    assert!(fn_err("label_match('x', `{}`)", "label_match").contains("expected object"));
    assert_eq!(lit("to_boolean('True')"), json!(true));
    assert_eq!(lit("to_boolean('false')"), json!(false));
    assert!(fn_err("to_boolean('yes')", "to_boolean").contains("'true' or 'false'"));
}

// ------------------------------------------------------------------------------------------------------------
// Arithmetic, quantities, durations

#[test]
fn kyverno_arithmetic_numbers() {
    assert_eq!(lit("add(`1`, `2`)"), json!(3));
    assert!(lit("add(`1`, `2`)").is_i64());
    assert_eq!(lit("add(`1.5`, `2`)"), json!(3.5));
    assert_eq!(lit("subtract(`10`, `2.5`)"), json!(7.5));
    assert_eq!(lit("multiply(`3`, `4`)"), json!(12));
    assert_eq!(lit("divide(`10`, `4`)"), json!(2.5));
    assert_eq!(lit("divide(`10`, `5`)"), json!(2));
    assert_eq!(lit("modulo(`10`, `3`)"), json!(1));
    assert!(fn_err("divide(`1`, `0`)", "divide").contains("zero divisor"));
    assert!(fn_err("modulo(`1`, `0`)", "modulo").contains("zero divisor"));
    assert!(fn_err("modulo(`1.5`, `1`)", "modulo").contains("non-integer"));
    assert_eq!(lit("round(`2.71828`, `2`)"), json!(2.72));
    assert_eq!(lit("round(`2.5`, `0`)"), json!(3));
    assert_eq!(lit("round(`7`, `2`)"), json!(7));
    assert!(fn_err("round(`1.5`, `-1`)", "round").contains("non-negative"));
    assert!(fn_err("round(`1.5`, `0.5`)", "round").contains("integer"));
    assert!(fn_err("add('abc', `1`)", "add").contains("not a number, quantity or duration"));
    assert!(fn_err("add(`[]`, `1`)", "add").contains("argument 1"));
    assert_eq!(lit("sum(`[1, 2, 3]`)"), json!(6));
    assert_eq!(lit("sum(`[1.5, 2]`)"), json!(3.5));
    assert_eq!(lit("sum(`[4]`)"), json!(4));
    assert!(fn_err("sum(`[]`)", "sum").contains("at least one element"));
    assert!(fn_err("sum(`0`)", "sum").contains("expected array"));
    assert_eq!(
        lit("add(`9223372036854775807`, `1`)"),
        json!(9_223_372_036_854_775_808.0_f64),
        "overflow goes to float"
    );
}

#[test]
fn kyverno_arithmetic_quantities_and_durations() {
    assert_eq!(lit("add('100Mi', '100Mi')"), json!("200Mi"));
    assert_eq!(lit("add('1Gi', '512Mi')"), json!("1536Mi"));
    assert_eq!(lit("add('1', '500m')"), json!("1500m"));
    assert_eq!(lit("subtract('1', '250m')"), json!("750m"));
    assert_eq!(lit("sum(['1Gi', '1Gi', '2Gi'])"), json!("4Gi"));
    assert_eq!(lit("multiply('100Mi', `3`)"), json!("300Mi"));
    assert_eq!(lit("multiply(`2`, '250m')"), json!("500m"));
    assert_eq!(lit("divide('1Gi', '256Mi')"), json!(4));
    assert_eq!(lit("divide('1Gi', `4`)"), json!("256Mi"));
    assert_eq!(lit("modulo('10', '3')"), json!("1"));
    assert_eq!(lit("add('1h', '30m')"), json!("1h30m0s"));
    assert_eq!(lit("subtract('1h', '90m')"), json!("-30m0s"));
    assert_eq!(lit("multiply('1h', `1.5`)"), json!("1h30m0s"));
    // Like Kyverno, a lone "30m" is a quantity (30 milli-units), not a duration.
    assert_eq!(lit("multiply('30m', `3`)"), json!("90m"));
    assert_eq!(lit("divide('1h', '30m')"), json!(2));
    assert_eq!(lit("divide('1h', `4`)"), json!("15m0s"));
    assert_eq!(lit("modulo('90m', '1h')"), json!("30m0s"));
    assert_eq!(lit("sum(['1s', '500ms'])"), json!("1.5s"));
    assert!(fn_err("add('1h', '100Mi')", "add").contains("types mismatch"));
    assert!(fn_err("add('1h', `1`)", "add").contains("types mismatch"));
    assert!(fn_err("multiply('1Gi', '1Gi')", "multiply").contains("types mismatch"));
    assert!(fn_err("divide('1h', '0s')", "divide").contains("zero divisor"));
}

#[test]
fn quantities() {
    let q = |s: &str| Quantity::parse(s).map(|q| q.to_string());
    assert_eq!(q("100Mi").as_deref(), Some("100Mi"));
    assert_eq!(q("1024Mi").as_deref(), Some("1Gi"));
    assert_eq!(q("1.5Gi").as_deref(), Some("1536Mi"));
    assert_eq!(q("1000").as_deref(), Some("1k"));
    assert_eq!(q("1200").as_deref(), Some("1200"));
    assert_eq!(q("1.5").as_deref(), Some("1500m"));
    assert_eq!(q("0.1").as_deref(), Some("100m"));
    assert_eq!(q("500m").as_deref(), Some("500m"));
    assert_eq!(q("1e3").as_deref(), Some("1e3"));
    assert_eq!(q("2E").as_deref(), Some("2E"));
    assert_eq!(q("0").as_deref(), Some("0"));
    assert_eq!(q("-1k").as_deref(), Some("-1k"));
    assert_eq!(q("512").as_deref(), Some("512"));
    assert_eq!(q("+.5").as_deref(), Some("500m"));
    assert_eq!(
        q("1.0000000000000000000000000000000000000000000").as_deref(),
        Some("1")
    );
    for bad in ["", "abc", "1x", "Mi", "1.2.3", "--1", "1 Mi", "1e", "1h"] {
        assert_eq!(q(bad), None, "{bad:?}");
    }
    assert!(Quantity::parse("1Gi") > Quantity::parse("1000Mi"));
    assert_eq!(Quantity::parse("1k"), Quantity::parse("1000"));
    assert_eq!(Quantity::parse("1n").map(|q| q.nanos()), Some(1));
    assert_eq!(
        Quantity::parse("0.1n").map(|q| q.nanos()),
        Some(1),
        "sub-nano rounds up"
    );
    assert!(
        Quantity::parse("999999999999999999999999999999999999999E").is_none(),
        "overflow is refused"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1h"), Some(3_600_000_000_000));
    assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
    assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
    assert_eq!(parse_duration("-2m"), Some(-120_000_000_000));
    assert_eq!(parse_duration("300ms"), Some(300_000_000));
    assert_eq!(parse_duration("1µs"), Some(1_000));
    assert_eq!(parse_duration("1us"), Some(1_000));
    assert_eq!(parse_duration("0"), Some(0));
    for bad in ["", "1", "h", "1d", ".h", "9999999999999h", "1h-1m", "1h 1m"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
    assert_eq!(format_duration(0), "0s");
    assert_eq!(format_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(format_duration(90_000_000_000), "1m30s");
    assert_eq!(format_duration(1_500_000_000), "1.5s");
    assert_eq!(format_duration(1_500_000), "1.5ms");
    assert_eq!(format_duration(1_000), "1µs");
    assert_eq!(format_duration(12), "12ns");
    assert_eq!(format_duration(-61_000_000_000), "-1m1s");
    assert_eq!(format_duration(i64::MIN), "-2562047h47m16.854775808s");
}

// ------------------------------------------------------------------------------------------------------------
// Encoding, parsing, misc

#[test]
fn kyverno_encoding_functions() {
    assert_eq!(lit("base64_encode('hello')"), json!("aGVsbG8="));
    assert_eq!(lit("base64_decode('aGVsbG8=')"), json!("hello"));
    assert!(fn_err("base64_decode('!!!')", "base64_decode").contains("invalid base64"));
    assert_eq!(
        lit("sha256('abc')"),
        json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(lit("parse_json('{\"a\": [1, 2]}').a[1]"), json!(2));
    assert_eq!(lit("parse_json('\"x\"')"), json!("x"));
    assert!(fn_err("parse_json('{')", "parse_json").contains("invalid JSON"));
    assert_eq!(
        lit("parse_yaml('a: 1\nb: [x, y]\n1: one\ntrue: yes')"),
        json!({"a": 1, "b": ["x", "y"], "1": "one", "true": "yes"})
    );
    assert_eq!(
        lit("parse_yaml('clusterName: prod').clusterName"),
        json!("prod")
    );
    assert!(fn_err("parse_yaml('a: [')", "parse_yaml").contains("invalid YAML"));
    assert_eq!(
        lit("base64_decode(base64_encode('{\"k\": \"v\"}')).parse_json(@).k"),
        json!("v"),
        "chains as used by policies"
    );
}

#[test]
fn kyverno_misc_functions() {
    assert_eq!(
        lit("path_canonicalize('//etc/../etc/./kubernetes/')"),
        json!("/etc/kubernetes")
    );
    assert_eq!(lit("path_canonicalize('a/../../b')"), json!("../b"));
    assert_eq!(lit("path_canonicalize('/..')"), json!("/"));
    assert_eq!(lit("path_canonicalize('')"), json!(""));
    assert_eq!(lit("path_canonicalize('a/..')"), json!("."));
    assert_eq!(lit("semver_compare('1.2.3', '>1.0.0')"), json!(true));
    assert_eq!(
        lit("semver_compare('1.2.3', '>1.0.0 <1.2.0')"),
        json!(false)
    );
    assert_eq!(
        lit("semver_compare('1.2.3', '<1.0.0 || >=1.2.3')"),
        json!(true)
    );
    assert_eq!(lit("semver_compare('1.2.3', '1.2.3')"), json!(true));
    assert_eq!(lit("semver_compare('1.2.3', '!1.2.3')"), json!(false));
    assert_eq!(lit("semver_compare('1.2.3', '1.x')"), json!(true));
    assert_eq!(lit("semver_compare('2.0.0', '1.x')"), json!(false));
    assert_eq!(lit("semver_compare('1.2.9', '1.2.x')"), json!(true));
    assert_eq!(lit("semver_compare('1.0.0-alpha', '<1.0.0')"), json!(true));
    assert_eq!(
        lit("semver_compare('1.0.0-alpha.2', '>1.0.0-alpha.10')"),
        json!(false)
    );
    assert_eq!(lit("semver_compare('1.0.0', '>= 1.0.0')"), json!(true));
    assert!(fn_err("semver_compare('1.2', '>1.0.0')", "semver_compare")
        .contains("invalid semantic version"));
    assert!(fn_err("semver_compare('1.2.3', '>>1')", "semver_compare").contains("range"));
    assert_eq!(
        lit("image_normalize('nginx')"),
        json!("docker.io/nginx:latest")
    );
    assert_eq!(
        lit("image_normalize('nginx:1.25')"),
        json!("docker.io/nginx:1.25")
    );
    assert_eq!(
        lit("image_normalize('ghcr.io/org/app:v1')"),
        json!("ghcr.io/org/app:v1")
    );
    assert_eq!(
        lit("image_normalize('localhost:5000/app')"),
        json!("localhost:5000/app:latest")
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        lit(&format!("image_normalize('nginx:1@{digest}')")),
        json!(format!("docker.io/nginx@{digest}"))
    );
    assert!(
        fn_err("image_normalize('Nginx')", "image_normalize").contains("invalid image reference")
    );
    assert!(
        fn_err("image_normalize('nginx:')", "image_normalize").contains("invalid image reference")
    );
    assert_eq!(lit("is_external_url('https://example.com/x')"), json!(true));
    assert_eq!(
        lit("is_external_url('http://localhost:8080')"),
        json!(false)
    );
    assert_eq!(lit("is_external_url('http://127.0.0.1/')"), json!(false));
    assert_eq!(lit("is_external_url('http://10.1.2.3/')"), json!(false));
    assert_eq!(lit("is_external_url('http://[::1]:80/')"), json!(false));
    assert_eq!(lit("is_external_url('http://8.8.8.8/')"), json!(true));
    assert_eq!(lit("is_external_url('not a url')"), json!(false));
}

#[test]
fn kyverno_collection_functions() {
    let data = json!({"m": {"b": 2, "a": 1}, "l": ["x", "y"]});
    assert_eq!(ok("lookup(m, 'a')", &data), json!(1));
    assert_eq!(ok("lookup(m, 'z')", &data), Value::Null);
    assert_eq!(ok("lookup(l, `1`)", &data), json!("y"));
    assert_eq!(ok("lookup(l, `5`)", &data), Value::Null);
    assert_eq!(ok("lookup(l, `-1`)", &data), Value::Null);
    assert!(fn_err("lookup(`{}`, `1`)", "lookup").contains("expected string"));
    assert!(fn_err("lookup(`[]`, 'a')", "lookup").contains("expected number"));
    assert!(fn_err("lookup('s', 'a')", "lookup").contains("object or array"));
    assert_eq!(
        ok("items(m, 'key', 'value')", &data),
        json!([{"key": "a", "value": 1}, {"key": "b", "value": 2}])
    );
    assert_eq!(
        ok("items(l, 'i', 'v')", &data),
        json!([{"i": 0, "v": "x"}, {"i": 1, "v": "y"}])
    );
    assert_eq!(
        ok("object_from_lists(l, `[1]`)", &data),
        json!({"x": 1, "y": null})
    );
    assert_eq!(
        ok("object_from_lists(`[1, true]`, l)", &data),
        json!({"1": "x", "true": "y"})
    );
    assert!(
        fn_err("object_from_lists(`[{}]`, `[]`)", "object_from_lists")
            .contains("keys must be strings")
    );
}

#[test]
fn kyverno_random() {
    let re = regex::Regex::new("^[a-z0-9]{12}$").expect("regex");
    let first = lit("random('[a-z0-9]{12}')");
    let text = first.as_str().expect("string");
    assert!(re.is_match(text), "{text}");
    let many: std::collections::HashSet<String> = (0..20)
        .map(|_| {
            lit("random('[a-z]{16}')")
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(many.len() > 1, "random varies");
    let v = lit("random('(ab|cd)-[0-9]+x?')");
    assert!(
        regex::Regex::new("^(ab|cd)-[0-9]+x?$")
            .expect("regex")
            .is_match(v.as_str().unwrap_or("")),
        "{v}"
    );
    assert!(fn_err("random('')", "random").contains("no pattern"));
    assert!(fn_err("random('[')", "random").contains("invalid pattern"));
    assert!(fn_err("random('a{5000}')", "random").contains("too large"));
    assert!(fn_err("random('(a{100}){100}')", "random").contains("more than"));
    let m = fn_err("random('(?:a|){1000}{1000}{1000}')", "random");
    assert!(
        m.contains("too expensive") || m.contains("more than"),
        "{m}"
    );
}

// ------------------------------------------------------------------------------------------------------------
// Time

#[test]
fn kyverno_time_functions() {
    let now = lit("time_now_utc()");
    let now = now.as_str().expect("string");
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            .expect("re")
            .is_match(now),
        "{now}"
    );
    assert!(lit("time_now()").is_string());
    assert_eq!(
        lit("time_add('2023-01-01T00:00:00Z', '1h30m')"),
        json!("2023-01-01T01:30:00Z")
    );
    assert_eq!(
        lit("time_add('2023-01-01T00:00:00+02:00', '-1h')"),
        json!("2022-12-31T23:00:00+02:00")
    );
    assert_eq!(
        lit("time_utc('2023-01-01T02:00:00+02:00')"),
        json!("2023-01-01T00:00:00Z")
    );
    assert_eq!(
        lit("time_diff('2023-01-01T00:00:00Z', '2023-01-02T01:00:00Z')"),
        json!("25h0m0s")
    );
    assert_eq!(
        lit("time_diff('2023-01-01T01:00:00Z', '2023-01-01T00:00:00Z')"),
        json!("-1h0m0s")
    );
    assert_eq!(
        lit("time_before('2023-01-01T00:00:00Z', '2023-01-02T00:00:00Z')"),
        json!(true)
    );
    assert_eq!(
        lit("time_after('2023-01-01T00:00:00Z', '2023-01-02T00:00:00Z')"),
        json!(false)
    );
    assert_eq!(
        lit("time_between('2023-01-01T12:00:00Z', '2023-01-01T00:00:00Z', '2023-01-02T00:00:00Z')"),
        json!(true)
    );
    assert_eq!(
        lit("time_between('2023-01-01T00:00:00Z', '2023-01-01T00:00:00Z', '2023-01-02T00:00:00Z')"),
        json!(false),
        "bounds are exclusive"
    );
    assert_eq!(
        lit("time_truncate('2023-01-01T10:37:12Z', '1h')"),
        json!("2023-01-01T10:00:00Z")
    );
    assert_eq!(
        lit("time_truncate('2023-01-01T10:37:12Z', '15m')"),
        json!("2023-01-01T10:30:00Z")
    );
    assert_eq!(
        lit("time_to_cron('2023-03-05T14:30:00Z')"),
        json!("30 14 5 3 0")
    );
    assert_eq!(
        lit("time_to_cron('2023-03-05T14:30:00Z').split(@, ' ') | [1].to_number(@)"),
        json!(14)
    );
    assert_eq!(
        lit("time_since('', '2023-01-01T00:00:00Z', '2023-01-01T00:00:10Z')"),
        json!("10s")
    );
    assert!(lit("time_since('', '2023-01-01T00:00:00Z', '')")
        .as_str()
        .is_some_and(|s| s.ends_with('s')));
    assert_eq!(
        lit("time_since('2006-01-02', '2023-01-01', '2023-01-03')"),
        json!("48h0m0s"),
        "with a Go layout"
    );
    assert!(fn_err("time_add('yesterday', '1h')", "time_add").contains("invalid RFC 3339"));
    assert!(
        fn_err("time_add('2023-01-01T00:00:00Z', '1d')", "time_add").contains("invalid duration")
    );
}

#[test]
fn go_time_layouts() {
    let cases = [
        (
            "2006-01-02T15:04:05Z07:00",
            "2023-06-22T17:45:00+01:00",
            "2023-06-22T17:45:00+01:00",
        ),
        (
            "Mon Jan 02 2006 15:04:05 -0700",
            "Thu Jun 22 2023 17:45:00 +0100",
            "2023-06-22T17:45:00+01:00",
        ),
        ("2006-01-02", "2023-06-22", "2023-06-22T00:00:00Z"),
        ("02/01/06 3:04PM", "22/06/23 5:45PM", "2023-06-22T17:45:00Z"),
        ("January 2, 2006", "June 2, 2023", "2023-06-02T00:00:00Z"),
        (
            "2006-01-02 15:04:05.000",
            "2023-06-22 17:45:00.123",
            "2023-06-22T17:45:00Z",
        ),
        (
            "2006-01-02 15:04:05",
            "2023-06-22 17:45:00.5",
            "2023-06-22T17:45:00Z",
        ),
        (
            "Jan _2 15:04:05 2006 MST",
            "Jun  2 17:45:00 2023 UTC",
            "2023-06-02T17:45:00Z",
        ),
        ("2006.002", "2023.032", "2023-02-01T00:00:00Z"),
    ];
    for (layout, text, want) in cases {
        let expr = format!("time_parse('{layout}', '{text}')");
        assert_eq!(lit(&expr), json!(want), "{layout}");
    }
    assert!(
        fn_err("time_parse('2006-01-02', '2023-02-30')", "time_parse").contains("day out of range")
    );
    assert!(fn_err("time_parse('2006-01-02', '2023-02-01x')", "time_parse").contains("extra text"));
    assert!(fn_err("time_parse('2006-01-02', 'June')", "time_parse").contains("cannot parse"));
}

// ------------------------------------------------------------------------------------------------------------
// Go-compatible JSON text

#[test]
fn json_string_matches_go() {
    assert_eq!(
        json_string(&json!({"b": 1, "a": [true, null]})),
        r#"{"a":[true,null],"b":1}"#
    );
    assert_eq!(json_string(&json!(1.0)), "1");
    assert_eq!(json_string(&json!(1.5)), "1.5");
    assert_eq!(json_string(&json!(1e21)), "1e+21");
    assert_eq!(json_string(&json!(1e-7)), "1e-07");
    assert_eq!(json_string(&json!(123456789.0)), "123456789");
    assert_eq!(
        json_string(&json!("<a & b>")),
        r#""\u003ca \u0026 b\u003e""#
    );
    assert_eq!(json_string(&json!("line\nquote\"")), r#""line\nquote\"""#);
}

// ------------------------------------------------------------------------------------------------------------
// Real-looking policy snippets: every `{{ }}` (and jmesPath / list value) must compile.

const POLICY_SNIPPETS: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: snippets
spec:
  rules:
  - name: labels
    context:
    - name: team
      variable:
        jmesPath: request.object.metadata.labels.team || 'none'
    - name: count
      variable:
        jmesPath: length(request.object.spec.containers[?securityContext.privileged == `true`])
    validate:
      message: "Pod {{ request.object.metadata.name }} in {{ request.namespace || 'default' }} needs a team, has {{ team }}"
      deny:
        conditions:
          any:
          - key: "{{ request.object.metadata.labels.\"app.kubernetes.io/name\" || '' }}"
            operator: Equals
            value: ""
          - key: "{{ request.object.spec.containers[].image | [?!contains(@, ':')] | length(@) }}"
            operator: GreaterThan
            value: 0
          - key: "{{ keys(request.object.metadata.annotations || `{}`) }}"
            operator: AnyIn
            value: ["forbidden/*"]
          - key: "{{ to_string(sum(request.object.spec.containers[].resources.limits.cpu || ['0'])) }}"
            operator: GreaterThan
            value: "4"
          - key: "{{ time_since('', request.object.metadata.creationTimestamp, '') }}"
            operator: GreaterThan
            value: 1h
          - key: "{{ split(request.object.spec.containers[0].image, ':') | [1] || 'latest' }}"
            operator: Equals
            value: latest
  - name: foreach
    validate:
      foreach:
      - list: request.object.spec.[containers, initContainers, ephemeralContainers][]
        deny:
          conditions:
            all:
            - key: "{{ element.securityContext.capabilities.drop[].to_upper(@) || `[]` }}"
              operator: AllNotIn
              value: ["ALL"]
            - key: "{{ regex_match('^registry\\.corp/.*', element.image) }}"
              operator: Equals
              value: false
            - key: "{{ elementIndex }}"
              operator: LessThan
              value: 10
  - name: mutate
    mutate:
      patchStrategicMerge:
        metadata:
          annotations:
            stamp: "{{ time_now_utc() }}"
            id: "{{ random('[a-z0-9]{8}') }}"
            sel: "{{ label_match(`{\"app\": \"web\"}`, request.object.metadata.labels || `{}`) }}"
            quota: "{{ add('100Mi', request.object.spec.containers[0].resources.requests.memory || '0') }}"
            digest: "{{ image_normalize(request.object.spec.containers[0].image) }}"
            items: "{{ items(request.object.metadata.labels || `{}`, 'key', 'value')[].key | join(',', @) }}"
            merged: "{{ merge(request.object.metadata.labels || `{}`, {policy: 'snippets'}) }}"
            yaml: "{{ parse_yaml(base64_decode('YTogMQ==')).a }}"
"#;

/// Find `{{ ... }}` bodies (one level of nested braces allowed, as Kyverno's regex does).
fn variables(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\{\{((?:\{[^{}]*\}|[^{}])*)\}\}").expect("regex");
    re.captures_iter(text)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().trim().to_string())
        .collect()
}

fn collect(value: &serde_yaml::Value, out: &mut Vec<String>) {
    match value {
        serde_yaml::Value::String(s) => out.extend(variables(s)),
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| collect(v, out)),
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                if let (Some("jmesPath" | "list"), Some(s)) = (k.as_str(), v.as_str()) {
                    out.push(s.to_string());
                }
                collect(v, out);
            }
        }
        _ => {}
    }
}

#[test]
fn policy_snippet_expressions_compile_and_run() {
    let doc: serde_yaml::Value = serde_yaml::from_str(POLICY_SNIPPETS).expect("yaml");
    let mut expressions = Vec::new();
    collect(&doc, &mut expressions);
    assert!(expressions.len() >= 20, "found {}", expressions.len());
    let mut data = pod();
    if let Some(req) = data.get_mut("request").and_then(Value::as_object_mut) {
        req.insert("namespace".into(), json!("prod"));
    }
    if let Some(obj) = data
        .pointer_mut("/request/object/metadata")
        .and_then(Value::as_object_mut)
    {
        obj.insert("creationTimestamp".into(), json!("2024-01-01T00:00:00Z"));
    }
    data.as_object_mut()
        .map(|o| o.insert("element".into(), json!({"image": "registry.corp/x:1"})));
    data.as_object_mut()
        .map(|o| o.insert("elementIndex".into(), json!(0)));
    data.as_object_mut()
        .map(|o| o.insert("team".into(), json!("none")));
    for text in &expressions {
        let expr = Expression::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        // Evaluation may fail (missing keys in this sample) but never panics; errors are typed.
        let _ = expr.search(&data);
    }
    assert_eq!(
        search("request.object.spec.[containers, initContainers][]", &data)
            .map(|v| v.as_array().map(Vec::len)),
        Ok(Some(3))
    );
}

#[test]
fn hashes() {
    assert_eq!(
        lit("sha1('abc')"),
        json!("a9993e364706816aba3e25717850c26c9cd0d89d")
    );
    assert_eq!(lit("md5('abc')"), json!("900150983cd24fb0d6963f7d28e17f72"));
    assert_eq!(
        lit("sha256('abc')"),
        json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
}

#[test]
fn x509_decode_reads_certificates_and_requests_with_go_field_names() {
    let data = json!({
        "cert": include_str!("../testdata/certificate.pem"),
        "csr": include_str!("../testdata/request.pem"),
    });
    let cert = ok("x509_decode(cert)", &data);
    assert_eq!(cert["Version"], 3);
    assert_eq!(cert["SerialNumber"], 4660);
    assert_eq!(cert["Subject"]["CommonName"], "webhook.example");
    assert_eq!(cert["Subject"]["Organization"], json!(["Example Org"]));
    assert_eq!(cert["Subject"]["Country"], json!(["DE"]));
    assert_eq!(
        cert["Subject"]["Locality"],
        Value::Null,
        "Go marshals nil slices as null"
    );
    assert_eq!(
        cert["Subject"]["Names"][2],
        json!({"Type": [2, 5, 4, 3], "Value": "webhook.example"})
    );
    assert_eq!(cert["Issuer"], cert["Subject"], "self-signed");
    assert_eq!(cert["DNSNames"], json!(["webhook.example", "alt.example"]));
    assert_eq!(cert["IPAddresses"], json!(["10.0.0.1"]));
    assert_eq!(cert["EmailAddresses"], json!(["ops@example.com"]));
    assert_eq!(cert["IsCA"], true);
    assert_eq!(cert["BasicConstraintsValid"], true);
    assert_eq!(cert["MaxPathLen"], 1);
    // digitalSignature (1 << 0) | keyCertSign (1 << 5); serverAuth 1, clientAuth 2; ECDSA, ECDSAWithSHA256.
    assert_eq!(cert["KeyUsage"], 33);
    assert_eq!(cert["ExtKeyUsage"], json!([1, 2]));
    assert_eq!(cert["PublicKeyAlgorithm"], 3);
    assert_eq!(cert["SignatureAlgorithm"], 10);
    assert_eq!(cert["NotBefore"], "2026-11-27T13:11:21Z");
    assert_eq!(cert["NotAfter"], "2036-11-24T13:11:21Z");
    assert!(cert["Raw"].as_str().is_some_and(|r| r.starts_with("MII")));

    // The form Kyverno's inspect-csr policy uses: a CSR, its Subject as a string.
    let csr = ok("x509_decode(csr)", &data);
    assert_eq!(csr["Version"], 0);
    assert_eq!(csr["Subject"]["CommonName"], "system:node:worker-1");
    assert_eq!(csr["Subject"]["Organization"], json!(["system:nodes"]));
    assert_eq!(csr["DNSNames"], json!(["worker-1.internal"]));
    let subject = ok("x509_decode(csr).Subject | to_string(@)", &data);
    assert!(
        subject
            .as_str()
            .is_some_and(|s| s.contains("\"CommonName\":\"system:node:worker-1\"")),
        "{subject}"
    );

    // Not PEM, or not a certificate: errors.
    assert!(err("x509_decode('hello')", &data)
        .to_string()
        .contains("invalid certificate"));
    let key = json!({"k": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"});
    assert!(err("x509_decode(k)", &key)
        .to_string()
        .contains("PRIVATE KEY"));
    let garbage = json!({"k": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"});
    assert!(err("x509_decode(k)", &garbage)
        .to_string()
        .contains("invalid certificate"));
}

#[test]
fn selections_borrow_the_document_and_agree_with_the_interpreter() {
    let base = json!({
        "request": {"object": {"spec": {
            "containers": [{"name": "a", "ports": [1, 2]}, {"name": "b"}, null, [3, [4]]],
            "initContainers": [{"name": "i"}],
            "single": {"name": "s"}
        }}},
        "n": null,
        "s": "text",
        "element": {"shadowed": true}
    });
    let element = json!({"name": "x", "list": [{"k": 1}, {"j": 2}, {"k": null}]});
    let overlay: Vec<(&str, &Value)> = vec![("element", &element)];
    let cases = [
        "request.object.spec.containers",
        "request.object.spec.containers[0]",
        "request.object.spec.containers[-1].name",
        "request.object.spec.containers[5]",
        "request.object.spec.containers[5].name",
        "request.object.spec.containers[0].ports[1]",
        "request.object.spec.missing",
        "request.object.spec.containers.name",
        "s.x",
        "s[0]",
        "n.x.y",
        "n[0]",
        "element",
        "element.name",
        "element.list[0].k",
        "element.shadowed",
        "\"request\".object",
        "missing",
        "request.object.spec.[ephemeralContainers, initContainers, containers][]",
        "request.object.spec.[initContainers, containers]",
        "request.object.spec.[initContainers, single][]",
        "request.object.spec.[initContainers, missing.x][]",
        "n.[a, b]",
        "s.[a, b]",
        "request.object.spec.containers[]",
        "request.object.spec.containers[][]",
        "request.object.spec.containers[*]",
        "request.object.spec.containers[*].name",
        "request.object.spec.containers[*].ports[0]",
        "request.object.spec.single[*]",
        "request.object.spec.single[]",
        "element.list[*].k",
        "element.list[].k",
        "request.object.spec.[containers, initContainers][].name",
        "request.object.spec.[containers[0], single]",
        "request.object.spec.containers[*].[name, ports]",
        "request.object.spec.[initContainers, containers][][]",
        "[element, s]",
        "@",
        "element | @",
        "element.list[*] | [0]",
        "s[*]",
        "s[]",
    ];
    for text in cases {
        let expr = Expression::compile(text).expect("compiles");
        assert!(expr.borrowable, "{text} only selects");
        for layers in [&overlay[..], &[]] {
            let parts = expr
                .search_layered_parts(layers, &base, None)
                .map(Parts::into_value);
            let computed = expr.search_layered(layers, &base, None);
            assert_eq!(
                parts.as_deref().map_err(Clone::clone),
                computed.as_ref().map_err(Clone::clone),
                "{text} with {} overlay members",
                layers.len()
            );
        }
    }
    // Parts of the document come back borrowed, not copied.
    let expr = Expression::compile("request.object.spec.containers").expect("compiles");
    let found = expr
        .search_layered_cow(&overlay, &base, None)
        .expect("found");
    assert!(matches!(found, std::borrow::Cow::Borrowed(_)));
    assert!(std::ptr::eq(
        &*found,
        &base["request"]["object"]["spec"]["containers"]
    ));
    let expr = Expression::compile("request.object.spec.[initContainers, containers][]")
        .expect("compiles");
    let Ok(Parts::List(list)) = expr.search_layered_parts(&[], &base, None) else {
        panic!("a list of parts");
    };
    assert_eq!(list.len(), 4, "the projection drops the null");
    assert!(std::ptr::eq(
        list[0],
        &base["request"]["object"]["spec"]["initContainers"][0]
    ));
    // Anything else is computed (owned) and still the interpreter's value.
    for text in [
        "element || s",
        "length(s)",
        "request.object.spec.containers[?name].name",
        "request.object.spec.*",
        "request.object.spec.containers[0:1]",
        "{a: s}",
    ] {
        let expr = Expression::compile(text).expect("compiles");
        assert!(!expr.borrowable, "{text} computes");
        assert_eq!(
            expr.search_layered_cow(&overlay, &base, None)
                .map(|v| v.into_owned()),
            expr.search_layered(&overlay, &base, None),
            "{text}"
        );
    }
}

#[test]
fn root_reads_name_what_an_expression_may_read_of_the_root() {
    let reads = |text: &str| -> Vec<(Option<String>, Option<String>)> {
        Expression::compile(text)
            .expect("compiles")
            .root_reads()
            .iter()
            .map(|r| (r.name.clone(), r.member.clone()))
            .collect()
    };
    let read =
        |name: &str, member: Option<&str>| (Some(name.to_string()), member.map(str::to_string));
    let root = (None, None);
    assert_eq!(
        reads("request.object.metadata.name"),
        [read("request", Some("object"))]
    );
    assert_eq!(
        reads("request | object.spec"),
        [read("request", Some("object"))]
    );
    assert_eq!(
        reads("request.object.spec.[initContainers, containers][].image || images"),
        [read("request", Some("object")), read("images", None)]
    );
    assert_eq!(
        reads("request.object.spec.volumes[].keys(@)[] || `[]`"),
        [read("request", Some("object"))],
        "@ inside a projection of a part is not the root"
    );
    assert_eq!(
        reads("request.object.spec.containers[?name == element.name].image"),
        [read("request", Some("object"))],
        "a filter reads the elements"
    );
    assert_eq!(reads("length(request)"), [read("request", None)]);
    assert_eq!(reads("request"), [read("request", None)]);
    assert_eq!(reads("request.roles"), [read("request", Some("roles"))]);
    assert_eq!(reads("request[0]"), [read("request", None)]);
    assert_eq!(reads("request.[object, roles]"), [read("request", None)]);
    assert_eq!(reads("@"), std::slice::from_ref(&root));
    assert_eq!(reads("keys(@)"), std::slice::from_ref(&root));
    assert!(reads("@.request.object").contains(&root));
    assert!(reads("*.object").contains(&root));
    assert!(reads("[@][0].request.roles").contains(&root));
    assert!(reads("map(&request.roles, [@])").contains(&read("request", Some("roles"))));
    assert_eq!(reads("`1`"), []);
}

/// A literal pattern of a regex function is compiled with the expression; the call answers exactly as with the same
/// pattern read from the data (the cache's path), errors included.
#[test]
fn literal_regex_patterns_compiled_with_the_expression_answer_as_the_cache() {
    let patterns = ["^web-.*$", "(?i)WEB", "", "a{2,}", "[", "x|y", "^$"];
    let texts = ["web-1", "WEB", "", "aaa", "nope", "xy"];
    for pattern in patterns {
        for text in texts {
            let data = json!({"p": pattern, "t": text});
            for (literal, general) in [
                (
                    format!("regex_match('{pattern}', t)"),
                    "regex_match(p, t)".to_string(),
                ),
                (
                    format!("regex_replace_all('{pattern}', t, 'Z$0')"),
                    "regex_replace_all(p, t, 'Z$0')".to_string(),
                ),
                (
                    format!("regex_replace_all_literal('{pattern}', t, 'Z$0')"),
                    "regex_replace_all_literal(p, t, 'Z$0')".to_string(),
                ),
            ] {
                let compiled = Expression::compile(&literal).expect("compiles");
                let prepared = matches!(&*compiled.root, ast::Node::Call(_, _, Some(_)));
                assert_eq!(prepared, pattern != "[", "{literal}");
                assert_eq!(
                    compiled.search(&data),
                    eval(&general, &data),
                    "{literal} on {text:?}"
                );
            }
        }
    }
    // Only a literal first argument of a regex function is compiled.
    let e = Expression::compile("regex_match(p, 'x')").expect("compiles");
    assert!(matches!(&*e.root, ast::Node::Call(_, _, None)));
    let e = Expression::compile("pattern_match('a*', 'x')").expect("compiles");
    assert!(matches!(&*e.root, ast::Node::Call(_, _, None)));
}
