use std::sync::Arc;
use std::time::{Duration, Instant};

use policyctl_core::admission::{Operation, Review};
use serde_json::json;

use super::*;

fn pod(containers: usize) -> serde_json::Value {
    let containers: Vec<_> = (0..containers)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("registry.example.com/app-{i}:v1")}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "containers": containers}
    })
}

fn activation(object: serde_json::Value) -> Activation {
    let review = Review::for_object(object, None, Operation::Create);
    Activation::new(ReviewBindings::of(&review))
}

fn eval(a: &Activation, src: &str) -> Result<Value, EvalError> {
    let p = Program::compile(src).expect("compiles");
    a.evaluate(&p, &Limits::default())
}

#[test]
fn kubernetes_variables_and_library() {
    let a = activation(pod(3)).with_namespace_object(bind::shared(&json!({
        "metadata": {"name": "default", "labels": {"team": "a"}}
    })));
    for src in [
        "object.metadata.name == 'p'",
        "object.spec.replicas + 1 == 4", // JSON integers are int, as in Kubernetes
        "type(object.spec.replicas) == int",
        "object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))",
        "object.spec.containers.map(c, c.name).join(',') == 'c0,c1,c2'",
        "object.?metadata.?labels.?missing.orValue('x') == 'x'",
        "has(object.metadata.labels) && !has(object.metadata.annotations)",
        "oldObject == null",
        "request.operation == 'CREATE' && !has(request.object)",
        "namespaceObject.metadata.labels.team == 'a'",
        "params == null",
        "'a,b'.split(',') == ['a', 'b'] && [3, 1].sort() == [1, 3]",
    ] {
        assert_eq!(eval(&a, src), Ok(Value::Bool(true)), "{src}");
    }
}

#[test]
fn variables_are_lazy_shared_and_chained() {
    let vars = [
        ("names", "object.spec.containers.map(c, c.name)"),
        ("count", "size(variables.names)"),
        ("broken", "1 / 0"),
    ]
    .map(|(n, e)| (n.to_string(), Program::compile(e).expect("compiles")));
    let a = activation(pod(2)).with_variables(&vars);
    // `broken` is never read, so its error does not matter.
    assert_eq!(
        eval(&a, "variables.count == 2 && variables.names[1] == 'c1'"),
        Ok(Value::Bool(true))
    );
    let err = eval(&a, "variables.broken == 1").unwrap_err();
    assert!(err.to_string().contains("variables.broken"), "{err}");
    assert!(eval(&a, "variables.nope").is_err());
}

/// List and map variables are bound as the values the evaluation returned (no `cel::Value` round trip): they must
/// behave exactly as the round-tripped ones did, whether they come straight from the object or are computed.
#[test]
fn list_and_map_variables_behave_as_plain_values() {
    let vars = [
        ("containers", "object.spec.containers"),
        ("all", "object.spec.containers + object.spec.containers"),
        ("labels", "object.metadata.labels"),
        ("built", "{'a': [1, 2], 'b': {'c': 'd'}}"),
        ("name", "object.metadata.name"),
    ]
    .map(|(n, e)| (n.to_string(), Program::compile(e).expect("compiles")));
    let a = activation(pod(2)).with_variables(&vars);
    for src in [
        "size(variables.containers) == 2 && size(variables.all) == 4",
        "variables.all.map(c, c.name) == ['c0', 'c1', 'c0', 'c1']",
        "variables.containers.all(c, c.image.startsWith('registry.example.com/'))",
        "variables.containers[1].name == 'c1' && variables.containers == object.spec.containers",
        "variables.labels == {'app': 'web'} && 'app' in variables.labels && variables.labels.app == 'web'",
        "variables.built.a == [1, 2] && variables.built.b.c == 'd' && type(variables.built) == map",
        "type(variables.containers) == list && variables.containers + [] == object.spec.containers",
        "variables.name == 'p' && type(variables.name) == string",
    ] {
        assert_eq!(eval(&a, src), Ok(Value::Bool(true)), "{src}");
    }
}

#[test]
fn a_variable_using_itself_is_an_error() {
    let vars = [(
        "x".to_string(),
        Program::compile("variables.x + 1").unwrap(),
    )];
    let a = activation(pod(1)).with_variables(&vars);
    let err = eval(&a, "variables.x == 1").unwrap_err();
    assert!(err.to_string().contains("refers to itself"), "{err}");
}

#[test]
fn budget_stops_a_quadratic_comprehension() {
    let a = activation(pod(5000));
    let p = Program::compile(
        "object.spec.containers.all(c, object.spec.containers.exists(d, d.name == c.name))",
    )
    .unwrap();
    let err = a.evaluate(&p, &Limits::default()).unwrap_err();
    assert!(
        matches!(err, EvalError::Cost { limit, .. } if limit == DEFAULT_COST_LIMIT),
        "{err}"
    );
    // error absorption by `||` does not turn it into a pass
    let p = Program::compile(
        "object.spec.containers.all(c, object.spec.containers.all(d, d.name != '')) || true",
    )
    .unwrap();
    assert!(matches!(
        a.evaluate(&p, &Limits::default()),
        Err(EvalError::Cost { .. })
    ));
    // the same expression over a small object fits the budget
    let small = activation(pod(10));
    assert_eq!(
        small.evaluate(&p, &Limits::default()),
        Ok(Value::Bool(true))
    );
}

#[test]
fn budget_is_shared_with_variables() {
    let vars = [(
        "pairs".to_string(),
        Program::compile("object.spec.containers.map(c, object.spec.containers.map(d, d.name))")
            .unwrap(),
    )];
    let a = activation(pod(5000)).with_variables(&vars);
    let p = Program::compile("size(variables.pairs) > 0 || true").unwrap();
    assert!(matches!(
        a.evaluate(&p, &Limits::default()),
        Err(EvalError::Cost { .. })
    ));
}

#[test]
fn a_passed_deadline_is_an_error() {
    let a = activation(pod(3));
    let p = Program::compile("object.spec.containers.all(c, true)").unwrap();
    let past = Instant::now() - Duration::from_millis(1);
    assert_eq!(
        a.evaluate(&p, &Limits::until(past)),
        Err(EvalError::Deadline)
    );
    let future = Instant::now() + Duration::from_secs(60);
    assert_eq!(
        a.evaluate(&p, &Limits::until(future)),
        Ok(Value::Bool(true))
    );
}

#[test]
fn hostile_expressions_are_rejected_at_compile() {
    let chain = |n: usize| format!("1{}", "+1".repeat(n));
    let nest = |n: usize| {
        let mut s = "true".to_string();
        for i in 0..n {
            s = format!("[1].all(x{i}, {s})");
        }
        s
    };
    let cases = [
        format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}1{}", "(".repeat(40), ")".repeat(40)),
        format!("'{}' +", "a".repeat(70_000)),
        chain(10_000),
        chain(300),
        format!("object{}", ".a".repeat(10_000)),
        format!("object{}", ".a".repeat(60)),
        nest(40),
        nest(5),
        "object.spec.containers.all(".to_string(),
    ];
    for src in &cases {
        let r = Program::compile(src);
        assert!(r.is_err(), "accepted: {}", &src[..src.len().min(60)]);
    }
    // a syntax error far into a long line is reported without panicking
    let err = Program::compile(&format!("'{}' +", "a".repeat(60_000))).unwrap_err();
    assert!(matches!(err, CompileError::Syntax(_)), "{err}");
    // ordinary expressions still compile
    assert!(Program::compile(&chain(40)).is_ok());
    assert!(Program::compile(&nest(3)).is_ok());
}

#[test]
fn non_bool_results_are_type_errors() {
    let a = activation(pod(1));
    let p = Program::compile("object.metadata.name").unwrap();
    assert!(matches!(
        a.evaluate_bool(&p, &Limits::default()),
        Err(EvalError::Type { want: "bool", .. })
    ));
    assert_eq!(a.evaluate_string(&p, &Limits::default()), Ok("p".into()));
}

#[test]
fn bindings_are_built_once_per_review() {
    let review = Review::for_object(pod(1), None, Operation::Create);
    let a = ReviewBindings::of(&review);
    let b = ReviewBindings::of(&review);
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn scalar_variables_work_with_operators() {
    let vars = [
        ("flag", "has(object.metadata.labels)"),
        ("d", "'8h'"),
        ("m", "{'a': [1, 2]}"),
    ]
    .map(|(n, e)| (n.to_string(), Program::compile(e).expect("compiles")));
    let a = activation(pod(1)).with_variables(&vars);
    for src in [
        "!variables.flag == false",
        "duration(variables.d) > duration('1h')",
        "variables.m.a.all(x, x > 0) && variables.m == {'a': [1, 2]}",
    ] {
        assert_eq!(eval(&a, src), Ok(Value::Bool(true)), "{src}");
    }
}

#[test]
fn kyverno_or_value_accepts_plain_values() {
    let a = activation(pod(2));
    let src = "object.spec.containers.orValue([]).size() == 2 && object.?metadata.?nope.orValue('x') == 'x'";
    let p = Program::compile_for(Dialect::Kyverno, src).unwrap();
    assert_eq!(a.evaluate(&p, &Limits::default()), Ok(Value::Bool(true)));
    // Kubernetes has no such overload
    let p = Program::compile(src).unwrap();
    assert!(a.evaluate(&p, &Limits::default()).is_err());
}

struct FakeData;

impl kyverno::KyvernoData for FakeData {
    fn get(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<serde_json::Value, kyverno::DataError> {
        if (api_version, resource, namespace, name) == ("v1", "configmaps", "default", "regs") {
            Ok(json!({"data": {"registries": "ghcr.io, quay.io"}}))
        } else {
            Err(kyverno::DataError::Api(
                policyctl_core::policy::ApiReadError::Status {
                    path: format!("/api/{api_version}/namespaces/{namespace}/{resource}/{name}"),
                    code: 404,
                    message: format!("{resource} {name:?} not found"),
                },
            ))
        }
    }
    fn list(&self, _: &str, _: &str, _: &str) -> Result<serde_json::Value, kyverno::DataError> {
        Ok(json!({"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]}))
    }
    fn image_metadata(&self, image: &str) -> Result<serde_json::Value, kyverno::DataError> {
        Ok(json!({"config": {"User": if image == "root:1" { "0" } else { "1000" }}}))
    }
}

#[test]
fn kyverno_libraries_read_the_data_source() {
    let a = activation(pod(1)).with_kyverno_data(Arc::new(FakeData));
    let vars = [(
        "regs".to_string(),
        Program::compile_for(
            Dialect::Kyverno,
            "resource.Get('v1', 'configmaps', 'default', 'regs').data.registries.split(', ')",
        )
        .unwrap(),
    )];
    let a = a.with_variables(&vars);
    for src in [
        "variables.regs == ['ghcr.io', 'quay.io']",
        "resource.List('apps/v1', 'deployments', 'default').items.map(i, i.metadata.name) == ['a', 'b']",
        "resource.list('apps/v1', 'deployments', 'default') == resource.List('apps/v1', 'deployments', 'default')",
        "resource.get('v1', 'configmaps', 'default', 'regs') == resource.Get('v1', 'configmaps', 'default', 'regs')",
        "image.GetMetadata('root:1').config.User == '0' && image.GetMetadata('app:1').config.User == '1000'",
        "parseServiceAccount('system:serviceaccount:ns:sa').Name == 'sa' && parseServiceAccount('alice').Namespace == ''",
        "time.now() > timestamp('2024-01-01T00:00:00Z') && time.now() - duration('1h') < time.now()",
    ] {
        let p = Program::compile_for(Dialect::Kyverno, src).unwrap();
        assert_eq!(a.evaluate(&p, &Limits::default()), Ok(Value::Bool(true)), "{src}");
    }
    let missing = Program::compile_for(
        Dialect::Kyverno,
        "resource.Get('v1', 'configmaps', 'x', 'y')",
    )
    .unwrap();
    let err = a.evaluate(&missing, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // Without a data source the functions fail rather than invent data.
    let bare = activation(pod(1));
    assert!(bare.evaluate(&missing, &Limits::default()).is_err());
}
