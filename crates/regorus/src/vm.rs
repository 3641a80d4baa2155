//! Running compiled Rego on the regorus VM: one program per policy, with a pool of machines so concurrent
//! evaluations never share one and a machine is not rebuilt for every request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use policyctl_core::policy::EvalError;

/// The instruction cap of the VM: high, because the time limit is the real bound.
const MAX_INSTRUCTIONS: usize = 100_000_000;

/// Work units between two clock reads of the time limit: reading the clock every 32 units cost about 10 % of a
/// typical review; every 256 units the limit is still checked many times per millisecond.
const TIMER_CHECK_INTERVAL: u32 = 256;

/// Machines kept per program for reuse.
const POOL_SIZE: usize = 16;

/// A policy whose rules or functions call themselves (directly or through others).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {what} is recursive: {chain} (rules and functions may not call themselves, as in OPA)"
)]
pub struct Recursive {
    /// What was compiled (`template`, `package`).
    pub what: String,
    /// The cycle, `data.pkg.f -> data.pkg.g -> data.pkg.f`.
    pub chain: String,
}

/// The call chain of a recursion the VM compiler reports (policyctl patch 10 and regorus's own rule check), if the
/// error is one.
fn recursion_chain(error: &str) -> Option<String> {
    const PATCHED: &str = "recursion: ";
    const OWN: &str = "Compile-time recursion detected in rule call chain: ";
    if let Some(at) = error.find(PATCHED) {
        let rest = error.get(at + PATCHED.len()..)?;
        let chain = rest.split(" (rules and functions").next().unwrap_or(rest);
        return Some(chain.trim().to_string());
    }
    let at = error.find(OWN)?;
    Some(error.get(at + OWN.len()..)?.trim().to_string())
}

/// A VM program compiled from a prepared regorus policy, and its pool of machines.
pub struct Vm {
    program: Arc<regorus::rvm::Program>,
    policy: regorus::CompiledPolicy,
    pool: Mutex<Vec<regorus::rvm::RegoVM>>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("entry_points", &self.program.entry_points.keys())
            .finish_non_exhaustive()
    }
}

/// The load warning for Rego that runs on the interpreter (`reason`: the second half of [`Vm::compile`]'s answer): the
/// author should know that it is slower, and why.
pub fn interpreter_warning(reason: &str) -> String {
    format!("runs on the regorus interpreter, 3-5x slower than its VM: {reason}")
}

impl Vm {
    /// Compile the rules `entry_points` (full paths, `data.pkg.rule`) of a prepared policy. When the VM compiler
    /// rejects them (e.g. `with`), there is no VM and the reason, worded for `what` (`template`, `package`), says why:
    /// the caller then runs the policy on the interpreter. A policy whose rules or functions call themselves is
    /// refused ([`Recursive`]): it runs on neither (both would recurse on the native stack, as deep as the input
    /// makes them), as OPA refuses it.
    pub fn compile(
        policy: &regorus::CompiledPolicy,
        entry_points: &[&str],
        what: &str,
    ) -> Result<(Option<Vm>, Option<String>), Recursive> {
        match regorus::languages::rego::compiler::Compiler::compile_from_policy(
            policy,
            entry_points,
        ) {
            Ok(program) => Ok((
                Some(Vm {
                    program,
                    policy: policy.clone(),
                    pool: Mutex::new(Vec::new()),
                }),
                None,
            )),
            Err(err) => {
                let text = err.to_string();
                // A program the VM compiler rejects for another reason first (e.g. `with`) would run on the
                // interpreter: its functions are searched for a cycle here (the interpreter also fails such a call
                // at run time, regorus patch 11, but a load error is what OPA gives).
                match recursion_chain(&text)
                    .or_else(|| crate::check::recursive_functions(policy.get_modules()))
                {
                    Some(chain) => Err(Recursive {
                        what: what.to_string(),
                        chain,
                    }),
                    None => Ok((
                        None,
                        Some(format!("the VM compiler rejects the {what}: {text}")),
                    )),
                }
            }
        }
    }

    /// Evaluate several entry points on `input`, in order, as one evaluation within `limit`: rules and function
    /// calls they share are evaluated once. The results come in the same order and stop after the first error.
    pub fn eval_all(
        &self,
        entry_points: &[&str],
        input: regorus::Value,
        limit: Duration,
    ) -> Vec<Result<regorus::Value, EvalError>> {
        let mut machine = self.machine();
        machine.set_execution_timer_config(Some(timer(limit)));
        machine.set_input(input);
        let mut results = Vec::with_capacity(entry_points.len());
        for (i, name) in entry_points.iter().enumerate() {
            let result = if i == 0 {
                machine.execute_entry_point_by_name(name)
            } else {
                machine.execute_entry_point_continuing(name)
            };
            let failed = result.is_err();
            results.push(result_of(result, limit));
            if failed {
                // A machine that failed is dropped rather than reused.
                return results;
            }
        }
        machine.set_input(regorus::Value::Null);
        machine.release_execution();
        self.give_back(machine);
        results
    }

    /// Evaluate one entry point (`None`: the first) on `input`, with `data` as the data document besides the
    /// policy's own rules, within `limit`.
    pub fn eval(
        &self,
        entry_point: Option<&str>,
        input: regorus::Value,
        data: Option<&regorus::Value>,
        limit: Duration,
    ) -> Result<regorus::Value, EvalError> {
        let mut machine = self.machine();
        machine.set_execution_timer_config(Some(timer(limit)));
        if let Some(data) = data {
            machine
                .set_data(data.clone())
                .map_err(|e| EvalError::Engine(format!("cannot load data: {e}")))?;
        }
        machine.set_input(input);
        let result = match entry_point {
            Some(name) => machine.execute_entry_point_by_name(name),
            None => machine.execute(),
        };
        // A machine that failed is dropped rather than reused; a reused one drops the input (and data) and what
        // the run kept (rule values, function memo, registers) first.
        if result.is_err() {
            return result_of(result, limit);
        }
        machine.set_input(regorus::Value::Null);
        machine.release_execution();
        if data.is_some() && machine.set_data(regorus::Value::new_object()).is_err() {
            return result_of(result, limit);
        }
        self.give_back(machine);
        result_of(result, limit)
    }

    /// A machine from the pool, or a new one. Pooled machines always hold the empty data document between
    /// evaluations.
    fn machine(&self) -> regorus::rvm::RegoVM {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        pooled.unwrap_or_else(|| {
            let mut machine = regorus::rvm::RegoVM::new_with_policy(self.policy.clone());
            machine.load_program(self.program.clone());
            machine.set_max_instructions(MAX_INSTRUCTIONS);
            machine.set_strict_builtin_errors(false);
            let _ = machine.set_data(regorus::Value::new_object());
            machine
        })
    }

    /// Return a machine that evaluated successfully (its input, data and execution state already released) to the
    /// pool.
    fn give_back(&self, machine: regorus::rvm::RegoVM) {
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(machine);
        }
    }
}

/// The VM's timer for one evaluation of at most `limit`.
fn timer(limit: Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: std::num::NonZeroU32::new(TIMER_CHECK_INTERVAL)
            .unwrap_or(std::num::NonZeroU32::MIN),
    }
}

/// A VM result as an evaluation result, recognising the time limit.
fn result_of(
    result: Result<regorus::Value, regorus::rvm::vm::VmError>,
    limit: Duration,
) -> Result<regorus::Value, EvalError> {
    result.map_err(|e| {
        let text = e.to_string();
        if matches!(e, regorus::rvm::vm::VmError::TimeLimitExceeded { .. })
            || text.contains("time limit")
        {
            EvalError::Timeout(limit)
        } else {
            EvalError::Engine(text)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"package t
import rego.v1
names contains n if some n in input.names
label(n) := concat("-", [n, "x"])
deny contains label(n) if some n in names
warn contains n if {
    some n in names
    startswith(n, "w")
}
"#;

    fn vm() -> Vm {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("t.rego".into(), MODULE.into())
            .expect("parses");
        let compiled = engine
            .compile_with_entrypoint(&"data.t.deny".into())
            .expect("compiles");
        let (vm, reason) = Vm::compile(&compiled, &["data.t.deny", "data.t.warn"], "package")
            .expect("not recursive");
        assert_eq!(reason, None);
        vm.expect("the VM compiler accepts the module")
    }

    fn input(names: &[&str]) -> regorus::Value {
        crate::to_rego(&serde_json::json!({ "names": names }))
    }

    fn strings(items: &[&str]) -> regorus::Value {
        regorus::Value::from(
            items
                .iter()
                .map(|i| regorus::Value::from(*i))
                .collect::<std::collections::BTreeSet<_>>(),
        )
    }

    /// The machines in the pool hold no register (and so none of the last run's values) between evaluations.
    fn pooled_machines_are_empty(vm: &Vm) {
        let pool = vm.pool.lock().expect("pool");
        assert_eq!(pool.len(), 1);
        for machine in pool.iter() {
            assert!(
                machine.get_registers().is_empty(),
                "a pooled machine keeps {:?}",
                machine.get_registers()
            );
        }
    }

    #[test]
    fn a_pooled_machine_keeps_nothing_of_the_last_run_and_the_next_run_starts_afresh() {
        let vm = vm();
        let limit = Duration::from_secs(10);
        assert_eq!(
            vm.eval(Some("data.t.deny"), input(&["a", "wb"]), None, limit),
            Ok(strings(&["a-x", "wb-x"]))
        );
        pooled_machines_are_empty(&vm);
        // The reused machine evaluates the next input, not the last run's rule values.
        assert_eq!(
            vm.eval(Some("data.t.deny"), input(&["c"]), None, limit),
            Ok(strings(&["c-x"]))
        );
        pooled_machines_are_empty(&vm);

        let results = vm.eval_all(&["data.t.deny", "data.t.warn"], input(&["wd", "e"]), limit);
        assert_eq!(
            results,
            vec![Ok(strings(&["e-x", "wd-x"])), Ok(strings(&["wd"]))]
        );
        pooled_machines_are_empty(&vm);
        let results = vm.eval_all(&["data.t.warn", "data.t.deny"], input(&["f"]), limit);
        assert_eq!(results, vec![Ok(strings(&[])), Ok(strings(&["f-x"]))]);
        pooled_machines_are_empty(&vm);
    }

    fn compile_module(
        module: &str,
        entry: &str,
    ) -> Result<(Option<Vm>, Option<String>), Recursive> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("r.rego".into(), module.into())
            .expect("parses");
        let compiled = engine
            .compile_with_entrypoint(&entry.into())
            .expect("compiles");
        Vm::compile(&compiled, &[entry], "package")
    }

    #[test]
    fn recursive_functions_and_rules_are_refused_at_load() {
        // Direct recursion with a depth the input chooses: on either engine it would overflow the native stack.
        let direct = "package r\nimport rego.v1\ndown(n) := 0 if n <= 0\ndown(n) := down(n - 1) + 1 if n > 0\ndeny contains x if { x := down(input.n) }\n";
        assert_eq!(
            compile_module(direct, "data.r.deny").map(|_| ()),
            Err(Recursive {
                what: "package".into(),
                chain: "data.r.down -> data.r.down".into(),
            })
        );
        // Through another function, reached from a rule compiled earlier by another path.
        let mutual = "package r\nimport rego.v1\nf(n) := g(n)\ng(n) := f(n - 1) if n > 0\ng(n) := 0 if n <= 0\nuses_g := g(1)\ndeny contains x if { uses_g; x := f(input.n) }\n";
        let error = compile_module(mutual, "data.r.deny")
            .map(|_| ())
            .expect_err("recursive");
        assert!(
            error.chain == "data.r.g -> data.r.f -> data.r.g"
                || error.chain == "data.r.f -> data.r.g -> data.r.f",
            "{error}"
        );
        assert!(
            error.to_string().starts_with("the package is recursive: "),
            "{error}"
        );
        // A rule that reads itself.
        let rule = "package r\nimport rego.v1\na := b\nb := a\ndeny contains 1 if a\n";
        assert!(compile_module(rule, "data.r.deny").is_err());
        // Calls that only look alike are fine: the same function called twice, a function calling another.
        let fine = "package r\nimport rego.v1\nh(n) := n + 1\nk(n) := h(h(n))\ndeny contains x if { x := k(input.n); h(1) == 2 }\n";
        let (vm, reason) = compile_module(fine, "data.r.deny").expect("not recursive");
        assert!(vm.is_some() && reason.is_none(), "{reason:?}");
        // A program the VM compiler rejects first (`with`) is searched for recursive functions all the same: on the
        // interpreter its depth would be the input's choice.
        let with = direct.replace(
            "x := down(input.n) }",
            "x := down(input.n) with input.flag as true }",
        );
        assert_eq!(
            compile_module(&with, "data.r.deny").map(|_| ()),
            Err(Recursive {
                what: "package".into(),
                chain: "data.r.down -> data.r.down".into(),
            })
        );
        let (vm, reason) = compile_module(
            &fine.replace("h(1) == 2 }", "h(1) == 2 with input.flag as true }"),
            "data.r.deny",
        )
        .expect("not recursive");
        assert!(vm.is_none() && reason.is_some(), "{reason:?}");
    }

    #[test]
    fn a_default_function_runs_on_the_vm_with_a_constant_value_and_otherwise_on_the_interpreter() {
        let constant = "package r\nimport rego.v1\ndefault label(_) := \"none\"\nlabel(x) := \"big\" if x > 10\ndeny contains x if { some n in input.ns; x := label(n) }\n";
        let (vm, reason) = compile_module(constant, "data.r.deny").expect("not recursive");
        let vm = vm.expect("the VM compiles it");
        assert_eq!(reason, None);
        let input = crate::to_rego(&serde_json::json!({"ns": [1, 20]}));
        assert_eq!(
            vm.eval(Some("data.r.deny"), input, None, Duration::from_secs(5)),
            Ok(strings(&["big", "none"]))
        );
        // A value the compiler cannot fix at load (a comprehension): no VM, and the reason names the function.
        let computed = "package r\nimport rego.v1\ndefault label(_) := [x | some x in [1]]\nlabel(x) := [x] if x > 10\ndeny contains x if { some n in input.ns; x := label(n) }\n";
        let (vm, reason) = compile_module(computed, "data.r.deny").expect("not recursive");
        assert!(vm.is_none());
        assert!(
            reason.as_deref().is_some_and(
                |r| r.contains("the default value of 'data.r.label' is not a constant")
            ),
            "{reason:?}"
        );
    }
}
