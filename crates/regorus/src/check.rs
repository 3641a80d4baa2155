//! Static checks of compiled Rego modules that regorus leaves to evaluation: a call of a function that neither a
//! builtin nor a rule of the set defines, an import of a `data` package the set does not have, and a `data.…`
//! reference that names no package or rule. regorus only reports these when the expression runs (an undefined
//! function is an error on every request; a missing package silently makes a rule undefined), so policyctl reports
//! them at load time.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead, BUILTINS};
use regorus::utils::get_path_string;

/// One problem: the file (the module's path as given to `add_policy`), the line (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    /// The module's file.
    pub file: String,
    /// The line, counted from 1.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

/// What the modules of one engine define: packages, rule paths and function paths (all `data.…`).
#[derive(Debug, Default)]
struct Defined {
    packages: BTreeSet<String>,
    rules: BTreeSet<String>,
    functions: BTreeSet<String>,
}

impl Defined {
    /// Whether a static `data.…` path names something of the set (a package, a prefix of one, or a path inside a
    /// package that starts with one of its rules), or lies under an external root.
    fn resolves(&self, path: &str, external: &[&str]) -> bool {
        if path == "data" {
            return true;
        }
        if external.iter().any(|e| {
            path == *e || path.starts_with(&format!("{e}.")) || e.starts_with(&format!("{path}."))
        }) {
            return true;
        }
        let prefix = format!("{path}.");
        if self.packages.contains(path) || self.packages.iter().any(|p| p.starts_with(&prefix)) {
            return true;
        }
        if self.rules.contains(path) || self.rules.iter().any(|r| r.starts_with(&prefix)) {
            return true;
        }
        self.rules
            .iter()
            .any(|r| path.starts_with(&format!("{r}.")) || path.starts_with(&format!("{r}[")))
    }
}

/// What `modules` define.
fn defined(modules: &[regorus::unstable::Ref<Module>]) -> Defined {
    let mut defined = Defined::default();
    for module in modules {
        let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
            continue;
        };
        for rule in &module.policy {
            let (refr, function) = match rule.as_ref() {
                Rule::Spec { head, .. } => match head {
                    RuleHead::Func { refr, .. } => (refr, true),
                    RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, false),
                },
                Rule::Default { refr, args, .. } => (refr, !args.is_empty()),
            };
            if let Ok(name) = get_path_string(refr, None) {
                let path = format!("{package}.{name}");
                if function {
                    defined.functions.insert(path.clone());
                }
                defined.rules.insert(path);
            }
        }
        defined.packages.insert(package);
    }
    defined
}

/// Check every module: undefined functions, missing imports, `data` references that resolve to nothing. `external`
/// lists `data` roots that come from outside the modules (Gatekeeper's `data.inventory`).
pub fn unresolved(
    modules: &[regorus::unstable::Ref<Module>],
    external: &[&str],
) -> Vec<Unresolved> {
    walk(modules, external, None).into_iter().collect()
}

/// Walk every module of the set: the problems [`unresolved`] reports, and, when `calls` is given, the functions each
/// function calls (for [`recursive_functions`]).
fn walk(
    modules: &[regorus::unstable::Ref<Module>],
    external: &[&str],
    mut calls: Option<&mut BTreeMap<String, BTreeSet<String>>>,
) -> BTreeSet<Unresolved> {
    let defined = defined(modules);
    let mut out = BTreeSet::new();
    for module in modules {
        let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
            continue;
        };
        let mut checker = Checker {
            defined: &defined,
            external,
            package,
            imports: BTreeMap::new(),
            out: &mut out,
            function: None,
            calls: calls.as_deref_mut(),
        };
        for import in &module.imports {
            let Some((alias, path)) = import_alias(import) else {
                continue;
            };
            if path.starts_with("data.") && !defined.resolves(&path, external) {
                checker.report(
                    &import.span,
                    format!("import {path}: no package or rule of the policy set defines it"),
                );
            }
            checker.imports.insert(alias, path);
        }
        for rule in &module.policy {
            checker.rule(rule);
        }
    }
    out
}

/// A chain of functions that call themselves (`data.p.f -> data.p.g -> data.p.f`), if the modules have one. The VM
/// compiler refuses such programs (regorus patch 10); this finds them in programs that run on the interpreter, which
/// would evaluate them one native stack frame per level, as deep as the input makes it. (Rules that read themselves
/// the interpreter reports at once; a cycle through functions is the unbounded one.)
pub fn recursive_functions(modules: &[regorus::unstable::Ref<Module>]) -> Option<String> {
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    walk(modules, &[], Some(&mut calls));
    // Depth-first search with an explicit stack; `on_path` holds the current chain.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in calls.keys() {
        if done.contains(start.as_str()) {
            continue;
        }
        let mut path: Vec<&str> = vec![start.as_str()];
        let mut stack: Vec<Vec<&str>> = vec![callees(&calls, start)];
        while let Some(next) = stack.last_mut() {
            match next.pop() {
                Some(callee) => {
                    if let Some(at) = path.iter().position(|f| *f == callee) {
                        let mut chain: Vec<&str> = path[at..].to_vec();
                        chain.push(callee);
                        return Some(chain.join(" -> "));
                    }
                    if !done.contains(callee) {
                        path.push(callee);
                        stack.push(callees(&calls, callee));
                    }
                }
                None => {
                    stack.pop();
                    if let Some(finished) = path.pop() {
                        done.insert(finished);
                    }
                }
            }
        }
    }
    None
}

/// An import's alias (its `as`, else the last part of its path) and its path.
fn import_alias(import: &regorus::unstable::Import) -> Option<(String, String)> {
    let path = get_path_string(&import.refr, None).ok()?;
    let alias = match &import.r#as {
        Some(span) => span.text().to_string(),
        None => path.rsplit('.').next().unwrap_or(&path).to_string(),
    };
    Some((alias, path))
}

fn callees<'c>(calls: &'c BTreeMap<String, BTreeSet<String>>, function: &str) -> Vec<&'c str> {
    calls
        .get(function)
        .map(|c| c.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

struct Checker<'a> {
    defined: &'a Defined,
    external: &'a [&'a str],
    package: String,
    imports: BTreeMap<String, String>,
    out: &'a mut BTreeSet<Unresolved>,
    /// The function whose definition is being walked (`data.…`), if any.
    function: Option<String>,
    /// When collecting them: the functions each function calls.
    calls: Option<&'a mut BTreeMap<String, BTreeSet<String>>>,
}

impl Checker<'_> {
    fn report(&mut self, span: &regorus::unstable::Span, message: String) {
        self.out.insert(Unresolved {
            file: span.source.file().clone(),
            line: span.line,
            message,
        });
    }

    fn rule(&mut self, rule: &Rule) {
        self.function = match rule {
            Rule::Spec {
                head: RuleHead::Func { refr, .. },
                ..
            } => get_path_string(refr, None)
                .ok()
                .map(|name| format!("{}.{name}", self.package)),
            _ => None,
        };
        match rule {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { assign, .. } => {
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                    RuleHead::Set { key, .. } => {
                        if let Some(k) = key {
                            self.expr(k);
                        }
                    }
                    RuleHead::Func { assign, .. } => {
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                }
                for body in bodies {
                    if let Some(a) = &body.assign {
                        self.expr(&a.value);
                    }
                    self.query(&body.query);
                }
            }
            Rule::Default { value, .. } => self.expr(value),
        }
    }

    fn query(&mut self, query: &Query) {
        for stmt in &query.stmts {
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    if let Some(k) = key {
                        self.expr(k);
                    }
                    self.expr(value);
                    self.expr(collection);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
            // `with` targets name what they replace (`input`, `data.x`, a function): only their values are checked.
            for m in &stmt.with_mods {
                self.expr(&m.r#as);
            }
        }
    }

    /// The static path of a reference chain rooted at `data` (`data.a.b["c"]`), up to its first dynamic part.
    fn data_path(expr: &Expr) -> Option<String> {
        match expr {
            Expr::Var { span, .. } => (span.text() == "data").then(|| "data".to_string()),
            Expr::RefDot { refr, field, .. } => {
                Self::data_path(refr).map(|p| format!("{p}.{}", field.0.text()))
            }
            Expr::RefBrack { refr, index, .. } => {
                let base = Self::data_path(refr)?;
                match index.as_ref() {
                    Expr::String { value, .. } => match value.as_string() {
                        Ok(s) => Some(format!("{base}.{s}")),
                        Err(_) => Some(base),
                    },
                    _ => Some(base),
                }
            }
            _ => None,
        }
    }

    fn call(&mut self, span: &regorus::unstable::Span, fcn: &Expr) {
        let Ok(path) = get_path_string(fcn, None) else {
            return;
        };
        if path == "print" || BUILTINS.contains_key(path.as_str()) {
            return;
        }
        let (root, rest) = match path.split_once('.') {
            Some((root, rest)) => (root, Some(rest)),
            None => (path.as_str(), None),
        };
        let target = if root == "data" {
            path.clone()
        } else if let Some(import) = self.imports.get(root) {
            match rest {
                Some(rest) => format!("{import}.{rest}"),
                None => import.clone(),
            }
        } else {
            format!("{}.{path}", self.package)
        };
        if !self.defined.functions.contains(&target) {
            self.report(
                span,
                format!("undefined function {path}: no builtin and no function of the policy set has this name"),
            );
            return;
        }
        if let (Some(function), Some(calls)) = (&self.function, self.calls.as_deref_mut()) {
            calls.entry(function.clone()).or_default().insert(target);
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. }
            | Expr::Var { .. } => {}
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for i in items {
                    self.expr(i);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    self.expr(k);
                    self.expr(v);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::Call {
                span, fcn, params, ..
            } => {
                self.call(span, fcn);
                for p in params {
                    self.expr(p);
                }
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::RefDot { span, refr, .. } => {
                if let Some(path) = Self::data_path(expr) {
                    if !self.defined.resolves(&path, self.external) {
                        self.report(
                            span,
                            format!("{path}: no package or rule of the policy set defines it"),
                        );
                        return;
                    }
                }
                self.expr(refr);
            }
            Expr::RefBrack {
                span, refr, index, ..
            } => {
                if let Some(path) = Self::data_path(expr) {
                    if !self.defined.resolves(&path, self.external) {
                        self.report(
                            span,
                            format!("{path}: no package or rule of the policy set defines it"),
                        );
                        return;
                    }
                }
                self.expr(refr);
                self.expr(index);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    self.expr(k);
                }
                self.expr(value);
                self.expr(collection);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}
