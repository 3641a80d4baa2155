//! The behaviour of the patched regorus VM (vendor/regorus, POLICYCTL-PATCHES.md), next to the interpreter's answer
//! for the same module: they must agree, because templates and plain Rego modules run on the VM.

use regorus::rvm::vm::{ExecutionMode, VmError};
use regorus::rvm::RegoVM;
use regorus::Value;

/// Evaluate `rule` of a Rego v1 module on the VM, in the given execution mode.
fn vm(
    module: &str,
    rule: &str,
    input: serde_json::Value,
    mode: ExecutionMode,
) -> Result<Value, VmError> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("m.rego".into(), module.into())
        .expect("parses");
    let compiled = engine
        .compile_with_entrypoint(&rule.into())
        .expect("compiles");
    let program =
        regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[rule])
            .expect("the VM compiler accepts the module");
    let mut machine = RegoVM::new_with_policy(compiled);
    machine.load_program(program);
    machine.set_execution_mode(mode);
    machine.set_input(policyctl_regorus::to_rego(&input));
    machine.execute()
}

/// Evaluate `rule` on the interpreter.
fn interpreter(module: &str, rule: &str, input: serde_json::Value) -> Result<Value, String> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("m.rego".into(), module.into())
        .expect("parses");
    engine.set_input(policyctl_regorus::to_rego(&input));
    engine.eval_rule(rule.into()).map_err(|e| e.to_string())
}

const MODES: [ExecutionMode; 2] = [ExecutionMode::RunToCompletion, ExecutionMode::Suspendable];

const FUNCTIONS: &str = r#"package t
suffix(q) := "m" if startswith(q, "m")
suffix(q) := "i" if endswith(q, "i")
same(q) := "x" if startswith(q, "m")
same(q) := "x" if endswith(q, "i")
s := suffix(input.q)
t := same(input.q)
"#;

const RULES: &str = r#"package t
level := "a" if input.a
level := "b" if input.b
guarded if not level == "c"
"#;

#[test]
fn conflicting_function_values_are_an_error_on_the_vm_as_on_the_interpreter() {
    for mode in MODES {
        // One definition applies: its value.
        let one = vm(FUNCTIONS, "data.t.s", serde_json::json!({"q": "mx"}), mode);
        assert_eq!(one, Ok(Value::from("m")), "{mode:?}");
        // Both apply with different values: an error, not an undefined rule.
        let both = vm(FUNCTIONS, "data.t.s", serde_json::json!({"q": "mi"}), mode);
        match both {
            Err(VmError::ConflictingFunctionValues { ref function, .. }) => {
                assert_eq!(function, "data.t.suffix", "{mode:?}")
            }
            other => panic!("{mode:?}: {other:?}"),
        }
        let text = both.map_err(|e| e.to_string()).expect_err("conflict");
        assert!(
            text.contains(
                "eval_conflict_error: functions must not produce multiple outputs for same inputs"
            ),
            "{text}"
        );
        // Both apply with the same value: that value.
        let same = vm(FUNCTIONS, "data.t.t", serde_json::json!({"q": "mi"}), mode);
        assert_eq!(same, Ok(Value::from("x")), "{mode:?}");
    }
    let text =
        interpreter(FUNCTIONS, "data.t.s", serde_json::json!({"q": "mi"})).expect_err("conflict");
    assert!(
        text.contains("functions must not produce multiple outputs for same inputs"),
        "{text}"
    );
    assert_eq!(
        interpreter(FUNCTIONS, "data.t.t", serde_json::json!({"q": "mi"})),
        Ok(Value::from("x"))
    );
}

#[test]
fn conflicting_complete_rule_values_are_an_error_even_under_not() {
    for mode in MODES {
        let one = vm(RULES, "data.t.level", serde_json::json!({"a": true}), mode);
        assert_eq!(one, Ok(Value::from("a")), "{mode:?}");
        for rule in ["data.t.level", "data.t.guarded"] {
            let both = vm(RULES, rule, serde_json::json!({"a": true, "b": true}), mode);
            assert!(
                matches!(both, Err(VmError::ConflictingRuleValues { ref rule, .. }) if rule == "data.t.level"),
                "{mode:?} {rule}: {both:?}"
            );
        }
    }
    for rule in ["data.t.level", "data.t.guarded"] {
        let text = interpreter(RULES, rule, serde_json::json!({"a": true, "b": true}))
            .expect_err("conflict");
        assert!(text.contains("rule conflicts with rule"), "{rule}: {text}");
    }
}

const ELSE: &str = r#"package t
f(c) := t if { t := c.a.b } else := t if { t := "default" }
g(c) := t if { c.a.b == 1; t := "one" } else := t if { t := "default" }
r := f(input)
s := g(input)
"#;

#[test]
fn else_is_tried_after_an_undefined_reference() {
    for mode in MODES {
        for (rule, input, want) in [
            ("data.t.r", serde_json::json!({"a": {"b": "x"}}), "x"),
            ("data.t.r", serde_json::json!({}), "default"),
            ("data.t.s", serde_json::json!({"a": {"b": 1}}), "one"),
            ("data.t.s", serde_json::json!({}), "default"),
        ] {
            assert_eq!(
                vm(ELSE, rule, input.clone(), mode),
                Ok(Value::from(want)),
                "{mode:?} {rule} {input}"
            );
            assert_eq!(
                interpreter(ELSE, rule, input.clone()),
                Ok(Value::from(want)),
                "{rule} {input}"
            );
        }
    }
}

// ---- Patch 3 (per-call and per-instruction overhead): the VM borrows rule metadata and builds error values only
// on the error path. These tests pin that rule calls, functions, else chains and partial rules give the
// interpreter's answers in both execution modes, and that errors still surface.

/// Evaluate `rule` on the VM with strict builtin errors on or off.
fn vm_strict(
    module: &str,
    rule: &str,
    input: serde_json::Value,
    mode: ExecutionMode,
    strict: bool,
) -> Result<Value, VmError> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("m.rego".into(), module.into())
        .expect("parses");
    let compiled = engine
        .compile_with_entrypoint(&rule.into())
        .expect("compiles");
    let program =
        regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[rule])
            .expect("the VM compiler accepts the module");
    let mut machine = RegoVM::new_with_policy(compiled);
    machine.load_program(program);
    machine.set_execution_mode(mode);
    machine.set_strict_builtin_errors(strict);
    machine.set_input(policyctl_regorus::to_rego(&input));
    machine.execute()
}

/// Evaluate `rule` on the interpreter with strict builtin errors on or off.
fn interpreter_strict(
    module: &str,
    rule: &str,
    input: serde_json::Value,
    strict: bool,
) -> Result<Value, String> {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(strict);
    engine
        .add_policy("m.rego".into(), module.into())
        .expect("parses");
    engine.set_input(policyctl_regorus::to_rego(&input));
    engine.eval_rule(rule.into()).map_err(|e| e.to_string())
}

const CALLS: &str = r#"package t
import rego.v1

default base := "none"
base := input.kind if input.kind
shout := upper(base)
tagged := concat(":", [shout, base])

double(x) := x * 2
quad(x) := double(double(x))
sum_quads := sum([quad(n) | some n in input.nums])

label(x) := "big" if x > 10
label(x) := "small" if x <= 10
labels := [label(n) | some n in input.nums]

grade(x) := "a" if { x >= 90 } else := "b" if { x >= 80 } else := "c"
grades := {g | some n in input.nums; g := grade(n)}

names contains n if some n in input.names
names contains "always"
by_name[n] := count(n) if some n in input.names

pair(a, b) := [double(a), double(b), quad(a)]
pairs := [pair(n, n + 1) | some n in input.nums]

has_big if { some n in input.nums; label(n) == "big" }
summary := {"tagged": tagged, "sum": sum_quads, "labels": labels, "grades": grades,
  "names": names, "by_name": by_name, "pairs": pairs, "has_big": has_big}
"#;

#[test]
fn rule_and_function_calls_give_the_interpreters_answers_in_both_modes() {
    let inputs = [
        serde_json::json!({"kind": "pod", "nums": [1, 85, 93, 12], "names": ["a", "bb"]}),
        serde_json::json!({"nums": [], "names": []}),
        serde_json::json!({"kind": "svc", "nums": [10, 11, 79, 80, 90], "names": ["x"]}),
    ];
    let rules = [
        "data.t.base",
        "data.t.shout",
        "data.t.tagged",
        "data.t.sum_quads",
        "data.t.labels",
        "data.t.grades",
        "data.t.names",
        "data.t.by_name",
        "data.t.pairs",
        "data.t.has_big",
        "data.t.summary",
    ];
    for input in &inputs {
        for rule in rules {
            let want = interpreter(CALLS, rule, input.clone());
            for mode in MODES {
                let got = vm(CALLS, rule, input.clone(), mode).map_err(|e| e.to_string());
                assert_eq!(got, want, "{mode:?} {rule} {input}");
            }
        }
    }
}

const NESTED_ERRORS: &str = r#"package t
import rego.v1
pick(x) := "m" if startswith(x, "m")
pick(x) := "i" if endswith(x, "i")
outer(x) := pick(x)
all_picks := [outer(q) | some q in input.qs]
num := to_number(input.s)
nums := [to_number(s) | some s in input.ss]
"#;

#[test]
fn errors_from_nested_calls_still_surface_and_builtin_errors_match() {
    for mode in MODES {
        // A conflict two calls deep, inside a comprehension: still an error.
        let got = vm(
            NESTED_ERRORS,
            "data.t.all_picks",
            serde_json::json!({"qs": ["mx", "mi"]}),
            mode,
        );
        assert!(
            matches!(got, Err(VmError::ConflictingFunctionValues { ref function, .. }) if function == "data.t.pick"),
            "{mode:?}: {got:?}"
        );
        // Without a conflict: the interpreter's value.
        let input = serde_json::json!({"qs": ["mx", "xi"]});
        assert_eq!(
            vm(NESTED_ERRORS, "data.t.all_picks", input.clone(), mode).map_err(|e| e.to_string()),
            interpreter(NESTED_ERRORS, "data.t.all_picks", input),
            "{mode:?}"
        );
        // A builtin error in non-strict mode (policyctl's setting): the interpreter's answer.
        for (rule, input) in [
            ("data.t.num", serde_json::json!({"s": "abc"})),
            ("data.t.nums", serde_json::json!({"ss": ["1", "2"]})),
        ] {
            let lax = vm_strict(NESTED_ERRORS, rule, input.clone(), mode, false)
                .map_err(|e| e.to_string());
            assert_eq!(
                lax,
                interpreter_strict(NESTED_ERRORS, rule, input, false),
                "{mode:?} {rule}"
            );
        }
    }
}
