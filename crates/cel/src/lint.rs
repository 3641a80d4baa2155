//! Load-time lint of compiled expressions: unknown functions and methods, wrong argument counts where certain, and
//! unknown top-level identifiers.
//!
//! The `cel` crate has no type checker and keeps its function table private, so a typo such as
//! `object.metadata.name.startWith("x")` compiles and only fails when evaluated (and then goes through the failure
//! policy: with `Ignore`, silently). This pass walks the parsed expression (after policyctl's own rewrites) and:
//! - asks the environment itself whether a function or method name exists, by evaluating a zero-argument call of it
//!   once per name and dialect (an unknown name is the only way to get an "undeclared reference" error from a call:
//!   a known name with the wrong arguments gives "no such overload"). So a name is never reported unknown while the
//!   interpreter would find it;
//! - checks the argument count of the functions listed in [`arities`] (the built-ins and the libraries we register;
//!   only names whose every overload is listed, so a count reported wrong is certainly wrong);
//! - checks that every free identifier is a variable the policy kind provides, a comprehension variable in scope,
//!   or a name the environment resolves (type names such as `int`).
//!
//! Internal names (operators, `@`-prefixed helpers) are not checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, ExecutionError};

use crate::Dialect;

/// The top-level variables of a ValidatingAdmissionPolicy or MutatingAdmissionPolicy (also Gatekeeper's
/// `K8sNativeValidation` and Kyverno's ClusterPolicy `validate.cel`, which use the same environment).
/// Kubernetes' `authorizer` is not among them: policyctl does not provide it, and lint says so.
pub const KUBERNETES_VARIABLES: &[&str] = &[
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "variables",
];

/// The top-level variables of Kyverno's ValidatingPolicy, MutatingPolicy and CEL PolicyException (no `params`, no
/// `authorizer`).
pub const KYVERNO_VARIABLES: &[&str] = &[
    "object",
    "oldObject",
    "request",
    "namespaceObject",
    "variables",
];

/// What lint found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    /// A function or method the environment does not have.
    #[error("unknown {} {name}{}", if *.method { "method" } else { "function" }, hint(.suggestion))]
    UnknownFunction {
        /// The name as called (qualified for namespaced functions).
        name: String,
        /// Whether it was called as a method (`x.name()`).
        method: bool,
        /// A close known name.
        suggestion: Option<String>,
    },
    /// A known function called with an argument count none of its overloads takes.
    #[error("{name} takes {expected}, not {got}")]
    Arity {
        /// The function.
        name: String,
        /// What it takes, in words.
        expected: String,
        /// The count found.
        got: usize,
    },
    /// A macro called with the wrong number of arguments (it was left as a call the interpreter cannot run).
    #[error("{name} is a macro taking {expected}, not {got}")]
    Macro {
        /// The macro.
        name: String,
        /// What it takes, in words.
        expected: &'static str,
        /// The count found.
        got: usize,
    },
    /// A variable Kubernetes provides that policyctl does not.
    #[error("{0} is not supported by policyctl")]
    Unsupported(&'static str),
    /// An identifier that is neither a variable of the policy kind, a comprehension variable nor a type.
    #[error("undeclared identifier {name}{}", hint(.suggestion))]
    UnknownIdentifier {
        /// The identifier.
        name: String,
        /// A close known name.
        suggestion: Option<String>,
    },
}

fn hint(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// Argument counts (the receiver not counted) of member functions whose every overload is listed here.
const METHOD_ARITIES: &[(&str, &[usize])] = &[
    ("size", &[0]),
    ("contains", &[1]),
    ("startsWith", &[1]),
    ("endsWith", &[1]),
    ("matches", &[1]),
    ("charAt", &[1]),
    ("indexOf", &[1, 2]),
    ("lastIndexOf", &[1, 2]),
    ("lowerAscii", &[0]),
    ("upperAscii", &[0]),
    ("trim", &[0]),
    ("replace", &[2, 3]),
    ("split", &[1, 2]),
    ("substring", &[1, 2]),
    ("join", &[0, 1]),
    ("reverse", &[0]),
    ("format", &[1]),
    ("slice", &[2]),
    ("flatten", &[0, 1]),
    ("distinct", &[0]),
    ("sort", &[0]),
    ("getDate", &[0, 1]),
    ("getDayOfMonth", &[0, 1]),
    ("getDayOfWeek", &[0, 1]),
    ("getDayOfYear", &[0, 1]),
    ("getFullYear", &[0, 1]),
    ("getMonth", &[0, 1]),
    ("getHours", &[0, 1]),
    ("getMinutes", &[0, 1]),
    ("getSeconds", &[0, 1]),
    ("getMilliseconds", &[0, 1]),
    ("hasValue", &[0]),
    ("value", &[0]),
    ("or", &[1]),
    ("orValue", &[1]),
    ("isSorted", &[0]),
    ("sum", &[0]),
    ("min", &[0]),
    ("max", &[0]),
    ("find", &[1]),
    ("findAll", &[1, 2]),
    ("sign", &[0]),
    ("isInteger", &[0]),
    ("asInteger", &[0]),
    ("asApproximateFloat", &[0]),
    ("add", &[1]),
    ("sub", &[1]),
    ("isGreaterThan", &[1]),
    ("isLessThan", &[1]),
    ("compareTo", &[1]),
    ("major", &[0]),
    ("minor", &[0]),
    ("patch", &[0]),
    ("getScheme", &[0]),
    ("getHost", &[0]),
    ("getHostname", &[0]),
    ("getPort", &[0]),
    ("getEscapedPath", &[0]),
    ("getQuery", &[0]),
    ("family", &[0]),
    ("isUnspecified", &[0]),
    ("isLoopback", &[0]),
    ("isLinkLocalMulticast", &[0]),
    ("isLinkLocalUnicast", &[0]),
    ("isGlobalUnicast", &[0]),
    ("containsIP", &[1]),
    ("containsCIDR", &[1]),
    ("ip", &[0]),
    ("prefixLength", &[0]),
    ("masked", &[0]),
    ("validate", &[1]),
];

/// Argument counts of global functions whose every overload is listed here.
const FUNCTION_ARITIES: &[(&str, &[usize])] = &[
    ("size", &[1]),
    ("int", &[1]),
    ("uint", &[1]),
    ("double", &[1]),
    ("string", &[1]),
    ("bool", &[1]),
    ("bytes", &[1]),
    ("duration", &[1]),
    ("timestamp", &[1]),
    ("dyn", &[1]),
    ("type", &[1]),
    ("matches", &[2]),
    ("quantity", &[1]),
    ("isQuantity", &[1]),
    ("semver", &[1, 2]),
    ("isSemver", &[1, 2]),
    ("url", &[1]),
    ("isURL", &[1]),
    ("ip", &[1]),
    ("isIP", &[1]),
    ("ip.isCanonical", &[1]),
    ("cidr", &[1]),
    ("isCIDR", &[1]),
    ("sets.contains", &[2]),
    ("sets.equivalent", &[2]),
    ("sets.intersects", &[2]),
    ("base64.encode", &[1]),
    ("base64.decode", &[1]),
    ("strings.quote", &[1]),
    ("lists.range", &[1]),
    ("optional.of", &[1]),
    ("optional.ofNonZeroValue", &[1]),
    ("optional.none", &[0]),
    ("math.ceil", &[1]),
    ("math.floor", &[1]),
    ("math.round", &[1]),
    ("math.trunc", &[1]),
    ("math.abs", &[1]),
    ("math.sign", &[1]),
    ("math.isInf", &[1]),
    ("math.isNaN", &[1]),
    ("math.isFinite", &[1]),
    ("math.sqrt", &[1]),
    ("math.bitNot", &[1]),
    ("math.bitAnd", &[2]),
    ("math.bitOr", &[2]),
    ("math.bitXor", &[2]),
    ("math.bitShiftLeft", &[2]),
    ("math.bitShiftRight", &[2]),
    ("math.greatest", &[]),
    ("math.least", &[]),
    ("format.named", &[1]),
    ("format.dns1123Label", &[0]),
    ("format.dns1123Subdomain", &[0]),
    ("format.dns1035Label", &[0]),
    ("format.qualifiedName", &[0]),
    ("format.dns1123LabelPrefix", &[0]),
    ("format.dns1123SubdomainPrefix", &[0]),
    ("format.dns1035LabelPrefix", &[0]),
    ("format.labelValue", &[0]),
    ("format.uri", &[0]),
    ("format.uuid", &[0]),
    ("format.byte", &[0]),
    ("format.date", &[0]),
    ("format.datetime", &[0]),
    ("time.now", &[0]),
    ("resource.Get", &[4]),
    ("resource.get", &[4]),
    ("resource.List", &[3]),
    ("resource.list", &[3]),
    ("image.GetMetadata", &[1]),
    ("parseServiceAccount", &[1]),
];

/// The macros and the argument counts they expand at (the receiver not counted).
const MACROS: &[(&str, &str)] = &[
    ("has", "1 argument (a field selection)"),
    (
        "all",
        "2 or 3 arguments (one or two variables and a predicate)",
    ),
    (
        "exists",
        "2 or 3 arguments (one or two variables and a predicate)",
    ),
    ("exists_one", "2 arguments (a variable and a predicate)"),
    (
        "existsOne",
        "2 or 3 arguments (one or two variables and a predicate)",
    ),
    (
        "map",
        "2 or 3 arguments (a variable, an optional filter, an expression)",
    ),
    ("filter", "2 arguments (a variable and a predicate)"),
    ("optMap", "2 arguments (a variable and an expression)"),
    ("optFlatMap", "2 arguments (a variable and an expression)"),
    ("sortBy", "2 arguments (a variable and a key expression)"),
    ("bind", "3 arguments (a name, a value and an expression)"),
    (
        "transformList",
        "3 or 4 arguments (two variables, an optional filter, an expression)",
    ),
    (
        "transformMap",
        "3 or 4 arguments (two variables, an optional filter, an expression)",
    ),
    (
        "transformMapEntry",
        "3 or 4 arguments (two variables, an optional filter, an expression)",
    ),
];

/// Every name [`arities`] knows, for suggestions: (name, is a method).
pub fn known_names() -> impl Iterator<Item = (&'static str, bool)> {
    METHOD_ARITIES
        .iter()
        .map(|(n, _)| (*n, true))
        .chain(FUNCTION_ARITIES.iter().map(|(n, _)| (*n, false)))
}

/// The argument counts of a function, when every overload is known (`Some(&[])`: variadic, unchecked).
pub fn arities(name: &str, method: bool) -> Option<&'static [usize]> {
    let table = if method {
        METHOD_ARITIES
    } else {
        FUNCTION_ARITIES
    };
    table.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Probe {
    Method,
    Function,
    Identifier,
}

/// Whether the environment resolves a name: evaluates `null.name()`, `name()` or `name` once per dialect and name.
/// Only "undeclared reference" means unknown; anything else (a value, no matching overload, a panic) means known.
fn resolves(dialect: Dialect, env: &Arc<Env>, probe: Probe, name: &str) -> bool {
    type Cache = Mutex<HashMap<(Dialect, Probe, String), bool>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = (dialect, probe, name.to_string());
    if let Some(known) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return *known;
    }
    // Names come from a parsed expression, so they are identifiers (dotted for qualified ones).
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        || name.is_empty()
    {
        return true;
    }
    let source = match probe {
        Probe::Method => format!("null.{name}()"),
        Probe::Function => format!("{name}()"),
        Probe::Identifier => name.to_string(),
    };
    let known = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Ok(program) = env.compile(&source) else {
            return true;
        };
        let ctx = Context::with_env(env.clone());
        !matches!(
            program.execute(&ctx),
            Err(ExecutionError::UndeclaredReference(_))
        )
    }))
    .unwrap_or(true);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, known);
    known
}

/// The segments of a qualified name (`a.b.c`), when `e` is one.
fn qualified(e: &IdedExpr) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut e = e;
    loop {
        match &e.expr {
            Expr::Ident(n) => {
                out.push(n.as_str());
                out.reverse();
                return Some(out);
            }
            Expr::Select(s) if !s.test => {
                out.push(s.field.as_str());
                e = &s.operand;
            }
            _ => return None,
        }
    }
}

fn is_internal(name: &str) -> bool {
    name.starts_with(['_', '@', '!', '-'])
        || name.contains(['[', ']', '?', '&', '|', '=', '<', '>'])
}

fn expected(arities: &[usize]) -> String {
    let words: Vec<String> = arities.iter().map(|n| n.to_string()).collect();
    let last = arities.last().copied().unwrap_or(0);
    let noun = if last == 1 { "argument" } else { "arguments" };
    match words.as_slice() {
        [one] => format!("{one} {noun}"),
        [init @ .., last] => format!("{} or {last} {noun}", init.join(", ")),
        [] => "any number of arguments".to_string(),
    }
}

struct Linter<'a> {
    dialect: Dialect,
    env: &'a Arc<Env>,
    variables: &'a [&'a str],
    scope: Vec<String>,
}

impl Linter<'_> {
    fn in_scope(&self, name: &str) -> bool {
        self.scope.iter().any(|s| s == name) || self.variables.contains(&name)
    }

    fn identifier(&self, name: &str) -> Result<(), LintError> {
        if self.in_scope(name) || resolves(self.dialect, self.env, Probe::Identifier, name) {
            return Ok(());
        }
        if name == "authorizer" {
            return Err(LintError::Unsupported(
                "authorizer (Kubernetes' authorization checks from CEL)",
            ));
        }
        let candidates = self
            .variables
            .iter()
            .copied()
            .chain(self.scope.iter().map(String::as_str));
        Err(LintError::UnknownIdentifier {
            name: name.to_string(),
            suggestion: policyctl_core::policy::strict::suggest(name, candidates)
                .map(str::to_string),
        })
    }

    fn function(&self, name: &str, method: bool, args: usize) -> Result<(), LintError> {
        let probe = if method {
            Probe::Method
        } else {
            Probe::Function
        };
        if !resolves(self.dialect, self.env, probe, name) {
            if let Some((_, expected)) = MACROS.iter().find(|(m, _)| *m == name) {
                return Err(LintError::Macro {
                    name: name.to_string(),
                    expected,
                    got: args,
                });
            }
            let same_kind = known_names().filter(|(_, m)| *m == method).map(|(n, _)| n);
            return Err(LintError::UnknownFunction {
                name: name.to_string(),
                method,
                suggestion: policyctl_core::policy::strict::suggest(name, same_kind)
                    .map(str::to_string),
            });
        }
        match arities(name, method) {
            Some(a) if !a.is_empty() && !a.contains(&args) => Err(LintError::Arity {
                name: name.to_string(),
                expected: expected(a),
                got: args,
            }),
            _ => Ok(()),
        }
    }

    /// `target.name(...)`: a namespaced function (`math.ceil(x)`) when the target spells a name that is not a
    /// variable and the environment has the function, else a method of the target.
    fn method_or_namespaced(
        &mut self,
        target: &IdedExpr,
        name: &str,
        args: usize,
    ) -> Result<(), LintError> {
        if let Some(segments) = qualified(target) {
            let root = segments.first().copied().unwrap_or_default();
            if !self.in_scope(root) {
                let qualified = format!("{}.{name}", segments.join("."));
                if resolves(self.dialect, self.env, Probe::Function, &qualified) {
                    return self.function(&qualified, false, args);
                }
                let namespace = format!("{root}.");
                if known_names().any(|(n, m)| !m && n.starts_with(&namespace)) {
                    return self.function(&qualified, false, args);
                }
            }
        }
        self.walk(target)?;
        self.function(name, true, args)
    }

    fn walk(&mut self, e: &IdedExpr) -> Result<(), LintError> {
        match &e.expr {
            Expr::Ident(name) => self.identifier(name),
            Expr::Select(s) => {
                if let Some(segments) = qualified(e) {
                    let root = segments.first().copied().unwrap_or_default();
                    if !self.in_scope(root)
                        && resolves(
                            self.dialect,
                            self.env,
                            Probe::Identifier,
                            &segments.join("."),
                        )
                    {
                        return Ok(());
                    }
                    return self.identifier(root);
                }
                self.walk(&s.operand)
            }
            Expr::Call(c) => {
                // The function first: a macro called with the wrong arguments leaves its variables as identifiers.
                if is_internal(&c.func_name) {
                    if let Some(t) = &c.target {
                        self.walk(t)?;
                    }
                } else if let Some(target) = &c.target {
                    self.method_or_namespaced(target, &c.func_name, c.args.len())?;
                } else {
                    self.function(&c.func_name, false, c.args.len())?;
                }
                c.args.iter().try_for_each(|a| self.walk(a))
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range)?;
                self.walk(&c.accu_init)?;
                let depth = self.scope.len();
                self.scope.push(c.accu_var.clone());
                self.scope.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.scope.push(v.clone());
                }
                let body = self
                    .walk(&c.loop_cond)
                    .and_then(|_| self.walk(&c.loop_step));
                self.scope.truncate(depth + 1);
                let result = body.and_then(|_| self.walk(&c.result));
                self.scope.truncate(depth);
                result
            }
            Expr::List(l) => l.elements.iter().try_for_each(|x| self.walk(x)),
            Expr::Map(m) => m.entries.iter().try_for_each(|en| match &en.expr {
                EntryExpr::MapEntry(me) => self.walk(&me.key).and_then(|_| self.walk(&me.value)),
                EntryExpr::StructField(f) => self.walk(&f.value),
            }),
            Expr::Struct(s) => s.entries.iter().try_for_each(|en| match &en.expr {
                EntryExpr::MapEntry(me) => self.walk(&me.key).and_then(|_| self.walk(&me.value)),
                EntryExpr::StructField(f) => self.walk(&f.value),
            }),
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }
}

/// Lints an expression of `dialect` whose free identifiers may be `variables`.
pub(crate) fn lint(
    dialect: Dialect,
    env: &Arc<Env>,
    expression: &IdedExpr,
    variables: &[&str],
) -> Result<(), LintError> {
    let mut linter = Linter {
        dialect,
        env,
        variables,
        scope: Vec::new(),
    };
    // Deep expressions are bounded at compile time (guard::MAX_AST_DEPTH), so the recursion is too.
    linter.walk(expression)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dialect, Program};

    fn lint_k8s(src: &str) -> Result<(), LintError> {
        Program::compile(src)
            .expect("compiles")
            .lint(KUBERNETES_VARIABLES)
    }

    fn lint_kyverno(src: &str) -> Result<(), LintError> {
        Program::compile_for(Dialect::Kyverno, src)
            .expect("compiles")
            .lint(KYVERNO_VARIABLES)
    }

    #[test]
    fn an_unknown_method_is_reported_with_a_suggestion() {
        let e = lint_k8s("object.metadata.name.startWith('x')").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown method startWith (did you mean startsWith?)"
        );
        let e =
            lint_k8s("object.spec.containers.exists(c, c.image.endswith(':latest'))").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown method endswith (did you mean endsWith?)"
        );
    }

    #[test]
    fn an_unknown_function_is_reported_namespaced_or_not() {
        let e = lint_k8s("sise(object.spec.containers) > 0").unwrap_err();
        assert_eq!(e.to_string(), "unknown function sise (did you mean size?)");
        let e = lint_k8s("sets.contain([1], [1])").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown function sets.contain (did you mean sets.contains?)"
        );
        // Kyverno's libraries exist only in Kyverno's environment.
        assert!(lint_k8s("time.now() > timestamp('2020-01-01T00:00:00Z')").is_err());
        lint_kyverno("time.now() > timestamp('2020-01-01T00:00:00Z')")
            .expect("kyverno has time.now");
    }

    #[test]
    fn a_wrong_argument_count_is_reported_where_certain() {
        let e = lint_k8s("size(object.spec.containers, 1) < 5").unwrap_err();
        assert_eq!(e.to_string(), "size takes 1 argument, not 2");
        let e = lint_k8s("object.metadata.name.startsWith('a', 'b')").unwrap_err();
        assert_eq!(e.to_string(), "startsWith takes 1 argument, not 2");
        let e = lint_k8s("'a,b'.split()").unwrap_err();
        assert_eq!(e.to_string(), "split takes 1 or 2 arguments, not 0");
        let e = lint_k8s("object.spec.containers.all(c)").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("all is a macro taking 2 or 3 arguments"),
            "{e}"
        );
        let e = lint_k8s("object.spec.containers.transformList(i, c)").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("transformList is a macro taking 3 or 4"),
            "{e}"
        );
        lint_k8s("object.spec.containers.all(i, c, c.name != '' && i >= 0)")
            .expect("two variables");
    }

    #[test]
    fn unknown_identifiers_are_reported_per_kind() {
        let e = lint_k8s("objet.metadata.name == 'x'").unwrap_err();
        assert_eq!(
            e.to_string(),
            "undeclared identifier objet (did you mean object?)"
        );
        let e = lint_k8s("object.spec.containers.all(c, d.name != '')").unwrap_err();
        assert!(e.to_string().starts_with("undeclared identifier d"), "{e}");
        // `params` belongs to ValidatingAdmissionPolicy, not to Kyverno's ValidatingPolicy.
        lint_k8s("params.max > 1").expect("VAP has params");
        assert!(lint_kyverno("params.max > 1").is_err());
        let e =
            lint_k8s("authorizer.group('').resource('pods').check('get').allowed()").unwrap_err();
        assert!(e.to_string().starts_with("authorizer"), "{e}");
    }

    #[test]
    fn valid_expressions_pass() {
        for src in [
            "object.spec.containers.all(c, c.name.startsWith('a') && size(c.name) < 10)",
            "object.spec.containers.map(c, c.image).filter(i, i.endsWith(':latest')).size() == 0",
            "[1, 2].exists_one(x, x == 1) && [1].exists(x, x > 0)",
            "has(object.spec.hostNetwork) ? !object.spec.hostNetwork : true",
            "type(object.metadata.name) == string && int('1') == 1 && dyn(1) == 1",
            "math.ceil(1.5) == 2.0 && optional.none().orValue(1) == 1",
            "object.metadata.?labels.?team.hasValue()",
            "quantity('1Gi').isGreaterThan(quantity('1Mi')) && semver('1.0.0').major() == 1",
            "cel.bind(n, object.metadata.name, n + n) != ''",
            "[3, 1].sortBy(x, x) == [1, 3] && lists.range(2) == [0, 1]",
            "url('https://x').getHost() == 'x' && ip('10.0.0.1').family() == 4",
            "'abc'.matches('^a') && matches('abc', 'c$') && 'x'.find('x') == 'x'",
            "variables.foo == request.operation && namespaceObject.metadata.name != '' && oldObject == null",
        ] {
            lint_k8s(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        }
        lint_kyverno(
            "object.spec.foo.orValue(1) == 1 && resource.Get('v1', 'pods', 'ns', 'n') != null",
        )
        .expect("kyverno");
    }

    #[test]
    fn every_listed_function_exists_in_the_environment() {
        let env = crate::environment(Dialect::Kyverno).expect("env");
        for (name, method) in known_names() {
            let probe = if method {
                Probe::Method
            } else {
                Probe::Function
            };
            assert!(resolves(Dialect::Kyverno, &env, probe, name), "{name}");
        }
    }
}
