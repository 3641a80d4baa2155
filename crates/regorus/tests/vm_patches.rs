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
