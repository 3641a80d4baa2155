//! Where regorus 0.14 and OPA disagree on Rego, and what we do about each difference before a Gatekeeper template or a
//! plain Rego module is compiled (both engines call [`check`]). Every rewrite keeps the line count (so regorus' error
//! positions still point at the user's lines). The rewrites of rare constructs (D1, D2, D3) are reported as load
//! warnings, so `policyctl lint` and the server log show what was changed; the D4 and D5 rewrites are applied silently,
//! because those constructs are common and the rewrites give exactly OPA's meaning.
//!
//! | id | difference | handling |
//! |---|---|---|
//! | D1 | a line starting with `(` after a complete expression is parsed as a call of the previous line | rewrite: end the previous expression with `;` (what OPA's newline does); only for lines directly in a rule body |
//! | D2 | v0 multi-body rules `head { A } { B }`: a parse error for set rules, an `else` chain for functions and complete rules | rewrite: one definition per body, each with the same head (OPA's meaning) |
//! | D3 | `sprintf` with more verbs than arguments (or more arguments than verbs) is undefined, so the violation silently disappears | literal format and argument list: rewrite the format so regorus renders what Go renders (`%!v(MISSING)`, `%!(EXTRA …)`); any other call: routed through a helper that counts at run time and renders the format with `%!(BADARGS …)` on a mismatch (never undefined); both reported as warnings |
//! | D4 | `not f(a.b)` with `a.b` undefined is true in the interpreter, undefined in OPA | rewrite: hoist plain dotted refs out of the negated call (`__policyctl_h1 := a.b; not f(__policyctl_h1)`) |
//! | D5 | body-less definitions `f("a", _)` are undefined in the VM | rewrite: give them an explicit `{ true }` body (`if { true }` in v1) |
//! | D6 | conflicting values of a rule or function are an error in OPA (a denial in Gatekeeper), undefined in regorus 0.14.1's VM | fixed in the vendored regorus (vendor/regorus/POLICYCTL-PATCHES.md): the VM ends the evaluation with `eval_conflict_error`, as the interpreter and OPA do |
//! | D7 | in the VM, an `else` was not tried when the body before it ran to its end with an undefined value (`f(c) = t { t := c.a.b } else = t { t := "default" }` with `c.a` missing was undefined; OPA gives `"default"`) | fixed in the vendored regorus (same file) |
//! | D8 | in the VM, a default function (`default label(_) := "none"`) was undefined when no definition applied (the interpreter and OPA give the default), and a default computed by a comprehension over the input was fixed at compile time with no input | fixed in the vendored regorus (patch 11): constant defaults of functions are kept; a non-constant default sends the program to the interpreter |
//! | D9 | in the VM, `x := expr` with `expr` undefined bound `x` to undefined and the body went on (`limits := c.resources.limits; not limits.cpu` held for a container without limits), and array and object comprehensions kept undefined elements (`count([c.a \| c := cs[_]])` counted the containers without `a`) | fixed in the vendored regorus (patch 12): the assignment fails the body, the element is dropped, as in OPA |
//! | D10 | in the interpreter, an operator on a wrong type (`null - 3`) failed the evaluation outside strict mode, where OPA and the VM make it undefined | fixed in the vendored regorus (patch 13) |
//! | D11 | in the VM, one body of a complete rule or function that gives several different values (`v := x if { some x in xs }`) kept the last one, where OPA and the interpreter fail with a conflict | fixed in the vendored regorus (patch 14): the same conflict error as D6 |
//! | D12 | in the interpreter, `some x in v` with `v` not a collection failed the evaluation, where OPA and the VM find no solutions | fixed in the vendored regorus (patch 15) |
//! | D13 | in the VM, a partial object rule that gave one key two different values kept the last one, and a function with a default applied the default to an undefined argument, where OPA and the interpreter fail (conflict) and are undefined | fixed in the vendored regorus (patches 16 and 11) |
//!
//! Templates and plain Rego packages run on the regorus VM (about 2.5 times faster than the interpreter on the
//! benchmark); one the VM compiler rejects (e.g. `with`) runs on the interpreter. crates/gatekeeper's cross-check
//! holds the two to the same answers on real templates and variants of their samples (D9 and D10 were found so).
//!
//! What remains:
//! - the VM's suspendable execution mode (policyctl runs the run-to-completion mode only) fails on a call into
//!   another package (`Register index 4 out of bounds`) and answers undefined for some rules there; found by
//!   vm_patches' `library_packages_give_the_interpreters_answers_on_awkward_inputs`, not fixed;
//! - `%d` and the other typed verbs with a value of the wrong type render as `""` in regorus instead of Go's
//!   `%!d(string=…)`; the `EXTRA` rendering has no Go type names; a dynamic mismatch renders `%!(BADARGS …)`, not Go's
//!   text;
//! - D4 is only handled for dotted refs as call arguments (a ref with brackets is left alone, because hoisting `a[_]`
//!   would change iteration); D1 and D4 are only handled directly in rule bodies, not inside comprehensions;
//! - a multi-body rule that also uses `else` is left as it is and reported.
//! - found while testing patch 3, present in the unpatched 0.14.1 VM too: in strict mode a builtin error inside a
//!   rule body makes the rule undefined instead of an error (policyctl runs non-strict). (The non-strict comprehension
//!   case, an undefined element, is D9.)

use crate::lexer::{lex, one_line, structure, Kind, Token};

/// The outcome of checking a module.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Checked {
    /// The source to compile.
    pub source: String,
    /// What was rewritten or could not be checked (load warnings).
    pub warnings: Vec<String>,
}

/// Check the `data` references of a module: templates may only read `data.inventory` and `data.lib.*`.
pub fn disallowed_data_refs(src: &str) -> Vec<String> {
    let tokens = lex(src);
    let mut out = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !token.is_word(src, "data") {
            continue;
        }
        if i > 0 && tokens.get(i - 1).is_some_and(|p| p.is_op(src, ".")) {
            continue;
        }
        let next = tokens.get(i + 1);
        let field = match next {
            Some(t) if t.is_op(src, ".") => tokens
                .get(i + 2)
                .filter(|w| w.kind == Kind::Word)
                .map(|w| w.text(src)),
            Some(t) if t.kind == Kind::Open('[') => tokens
                .get(i + 2)
                .filter(|s| s.kind == Kind::Str)
                .map(|s| s.text(src).trim_matches(|c| c == '"' || c == '`')),
            _ => None,
        };
        let line = line_of(src, token.start);
        match field {
            Some("inventory") | Some("lib") => {}
            Some(other) => out.push(format!(
                "line {line}: disallowed ref data.{other}: templates may only reference data.inventory and data.lib.*"
            )),
            None => out.push(format!(
                "line {line}: disallowed ref data: templates may only reference data.inventory and data.lib.*"
            )),
        }
    }
    out
}

/// Whether the module calls the function `name` (outside strings and comments).
pub fn calls(src: &str, name: &str) -> bool {
    let tokens = lex(src);
    tokens
        .windows(2)
        .any(|w| w[0].is_word(src, name) && w[1].kind == Kind::Open('('))
}

/// Whether the module reads `data.inventory`.
pub fn reads_inventory(src: &str) -> bool {
    let tokens = lex(src);
    tokens.windows(3).enumerate().any(|(i, w)| {
        w[0].is_word(src, "data")
            && w[1].is_op(src, ".")
            && w[2].is_word(src, "inventory")
            && !(i > 0 && tokens.get(i - 1).is_some_and(|p| p.is_op(src, ".")))
    })
}

/// Apply every rewrite; `v0` says whether the module is Rego v0 (D2 only exists in v0).
pub fn check(src: &str, v0: bool) -> Checked {
    let mut checked = Checked {
        source: src.to_string(),
        warnings: Vec::new(),
    };
    if v0 {
        split_multi_body_rules(&mut checked);
    }
    end_expressions_before_parens(&mut checked);
    hoist_refs_out_of_not(&mut checked);
    give_bodies_to_bodyless_definitions(&mut checked, v0);
    fix_sprintf(&mut checked, v0);
    checked
}

fn line_of(src: &str, at: usize) -> usize {
    src.get(..at).map(|s| s.matches('\n').count()).unwrap_or(0) + 1
}

/// Replacements `(start, end, text)` applied back to front.
fn apply(src: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|edit| std::cmp::Reverse(edit.0));
    let mut out = src.to_string();
    for (start, end, text) in edits {
        if start <= end
            && end <= out.len()
            && out.is_char_boundary(start)
            && out.is_char_boundary(end)
        {
            out.replace_range(start..end, &text);
        }
    }
    out
}

/// A top-level `{…}` group: its token indexes and whether it is a rule body (not a value after `=`/`:=`).
struct Group {
    open: usize,
    close: usize,
    body: bool,
}

/// Top-level statements: (first token, groups at depth 0, uses `else`).
fn statements(
    src: &str,
    tokens: &[Token],
    matching: &[Option<usize>],
) -> Vec<(usize, Vec<Group>, bool)> {
    let mut out: Vec<(usize, Vec<Group>, bool)> = Vec::new();
    let mut i = 0;
    let mut prev: Option<usize> = None; // previous significant top-level token
    let mut after_newline = true;
    while i < tokens.len() {
        let token = tokens[i];
        if token.kind == Kind::Newline {
            after_newline = true;
            i += 1;
            continue;
        }
        let continues = match prev {
            None => false,
            Some(p) => {
                let p = tokens[p];
                token.kind == Kind::Open('{')
                    || token.is_word(src, "else")
                    || p.kind == Kind::Op
                    || p.is_word(src, "else")
                    || p.is_word(src, "if")
                    || p.is_word(src, "contains")
            }
        };
        if after_newline && !continues || out.is_empty() {
            out.push((i, Vec::new(), false));
        }
        after_newline = false;
        if token.is_word(src, "else") {
            if let Some(last) = out.last_mut() {
                last.2 = true;
            }
        }
        let end = match token.kind {
            Kind::Open(_) => matching
                .get(i)
                .copied()
                .flatten()
                .unwrap_or(tokens.len() - 1),
            _ => i,
        };
        if token.kind == Kind::Open('{') {
            let body = !prev.is_some_and(|p| tokens[p].kind == Kind::Op);
            if let Some(last) = out.last_mut() {
                last.1.push(Group {
                    open: i,
                    close: end,
                    body,
                });
            }
        }
        prev = Some(end);
        i = end + 1;
    }
    out
}

/// D2: `head { A } { B }` → `head { A }` + `head { B }`.
fn split_multi_body_rules(checked: &mut Checked) {
    let src = checked.source.clone();
    let tokens = lex(&src);
    let (matching, _) = structure(&tokens);
    let mut edits = Vec::new();
    for (first, groups, uses_else) in statements(&src, &tokens, &matching) {
        let bodies: Vec<&Group> = groups.iter().filter(|g| g.body).collect();
        let multi = bodies
            .windows(2)
            .any(|w| w[1].open == next_significant(&tokens, w[0].close + 1));
        if !multi {
            continue;
        }
        let line = line_of(&src, tokens[first].start);
        if uses_else {
            checked.warnings.push(format!(
                "line {line}: a rule with several bodies and `else` is evaluated differently by regorus than by OPA \
                 (regorus divergence D2); write one definition per body"
            ));
            continue;
        }
        let head_tokens = &tokens[first..bodies[0].open];
        let head = one_line(&src, head_tokens);
        for body in bodies.iter().skip(1) {
            let at = tokens[body.open].start;
            edits.push((at, at, format!("{head} ")));
        }
        checked.warnings.push(format!(
            "line {line}: rule `{head}` has {} bodies; rewritten as {} definitions of the same rule, as OPA reads it \
             (regorus divergence D2)",
            bodies.len(),
            bodies.len()
        ));
    }
    if !edits.is_empty() {
        checked.source = apply(&src, edits);
    }
}

/// The index of the first non-newline token at or after `i` (or `tokens.len()`).
fn next_significant(tokens: &[Token], i: usize) -> usize {
    (i..tokens.len())
        .find(|&j| tokens[j].kind != Kind::Newline)
        .unwrap_or(tokens.len())
}

/// The rule bodies of a module: `(open, close)` token indexes of every top-level body group.
fn bodies(src: &str, tokens: &[Token], matching: &[Option<usize>]) -> Vec<(usize, usize)> {
    statements(src, tokens, matching)
        .into_iter()
        .flat_map(|(_, groups, _)| {
            groups
                .into_iter()
                .filter(|g| g.body)
                .map(|g| (g.open, g.close))
        })
        .collect()
}

/// Whether a token can end a term (so a following line is a new expression in OPA).
fn ends_term(src: &str, token: &Token) -> bool {
    match token.kind {
        Kind::Word => !matches!(
            token.text(src),
            "not" | "some" | "else" | "with" | "as" | "in" | "if" | "every"
        ),
        Kind::Str | Kind::Num | Kind::Close(_) => true,
        _ => false,
    }
}

/// D1: a line in a rule body starting with `(` after a complete expression starts a new expression in OPA.
fn end_expressions_before_parens(checked: &mut Checked) {
    let src = checked.source.clone();
    let tokens = lex(&src);
    let (matching, depth) = structure(&tokens);
    let mut edits = Vec::new();
    for (open, close) in bodies(&src, &tokens, &matching) {
        let inner = depth[open] + 1;
        let mut last: Option<usize> = None;
        let mut newline_since_last = false;
        let mut j = open + 1;
        while j < close {
            let token = tokens[j];
            if token.kind == Kind::Newline {
                newline_since_last = true;
                j += 1;
                continue;
            }
            if depth[j] == inner && token.kind == Kind::Open('(') && newline_since_last {
                if let Some(l) = last {
                    if ends_term(&src, &tokens[l]) {
                        let at = tokens[l].end;
                        edits.push((at, at, ";".to_string()));
                        checked.warnings.push(format!(
                            "line {}: a line starting with `(` would be read by regorus as a call of the line before; \
                             ended the previous expression with `;`, as OPA reads it (regorus divergence D1)",
                            line_of(&src, token.start)
                        ));
                    }
                }
            }
            newline_since_last = false;
            let end = match token.kind {
                Kind::Open(_) => matching[j].unwrap_or(close),
                _ => j,
            };
            last = Some(end);
            j = end + 1;
        }
    }
    if !edits.is_empty() {
        checked.source = apply(&src, edits);
    }
}

/// D4: `not f(a.b)` → `__policyctl_hN := a.b; not f(__policyctl_hN)` for plain dotted refs.
fn hoist_refs_out_of_not(checked: &mut Checked) {
    let src = checked.source.clone();
    let tokens = lex(&src);
    let (matching, depth) = structure(&tokens);
    let mut edits = Vec::new();
    let mut counter = 0;
    for (open, close) in bodies(&src, &tokens, &matching) {
        let inner = depth[open] + 1;
        for j in open + 1..close {
            let token = tokens[j];
            if depth[j] != inner || !token.is_word(&src, "not") {
                continue;
            }
            // `not` must start an expression.
            let starts = j
                .checked_sub(1)
                .and_then(|p| tokens.get(p))
                .is_some_and(|p| {
                    p.kind == Kind::Newline || p.kind == Kind::Open('{') || p.is_op(&src, ";")
                });
            if !starts {
                continue;
            }
            // A function name: word (. word)*, then `(`.
            let mut k = j + 1;
            if tokens.get(k).map(|t| t.kind) != Some(Kind::Word) {
                continue;
            }
            k += 1;
            while tokens.get(k).is_some_and(|t| t.is_op(&src, "."))
                && tokens.get(k + 1).is_some_and(|t| t.kind == Kind::Word)
            {
                k += 2;
            }
            if tokens.get(k).map(|t| t.kind) != Some(Kind::Open('(')) {
                continue;
            }
            let Some(call_close) = matching[k] else {
                continue;
            };
            // The call must be the whole expression.
            let after = tokens.get(call_close + 1);
            if !after.is_none_or(|t| {
                t.kind == Kind::Newline || t.is_op(&src, ";") || t.kind == Kind::Close('}')
            }) {
                continue;
            }
            // Arguments split on top-level commas.
            let mut args: Vec<(usize, usize)> = Vec::new();
            let mut start = k + 1;
            let mut m = k + 1;
            while m < call_close {
                match tokens[m].kind {
                    Kind::Open(_) => m = matching[m].unwrap_or(call_close),
                    Kind::Op if tokens[m].is_op(&src, ",") => {
                        args.push((start, m));
                        start = m + 1;
                    }
                    _ => {}
                }
                m += 1;
            }
            args.push((start, call_close));
            let mut hoisted = String::new();
            for (a, b) in args {
                let arg: Vec<Token> = tokens[a..b]
                    .iter()
                    .filter(|t| t.kind != Kind::Newline)
                    .copied()
                    .collect();
                if !is_dotted_ref(&src, &arg) {
                    continue;
                }
                counter += 1;
                let var = format!("__policyctl_h{counter}");
                let (Some(first), Some(last)) = (arg.first(), arg.last()) else {
                    continue;
                };
                hoisted.push_str(&format!("{var} := {}; ", one_line(&src, &arg)));
                edits.push((first.start, last.end, var));
            }
            if !hoisted.is_empty() {
                // Not reported: the construct is common and the rewrite gives exactly OPA's meaning.
                edits.push((token.start, token.start, hoisted));
            }
        }
    }
    if !edits.is_empty() {
        checked.source = apply(&src, edits);
    }
}

/// `word(.word)+` with a first word that is a variable (not a literal keyword).
fn is_dotted_ref(src: &str, arg: &[Token]) -> bool {
    if arg.len() < 3 || arg.len().is_multiple_of(2) {
        return false;
    }
    let first_ok =
        arg[0].kind == Kind::Word && !matches!(arg[0].text(src), "true" | "false" | "null" | "_");
    first_ok
        && arg.iter().enumerate().skip(1).all(|(i, t)| {
            if i % 2 == 1 {
                t.is_op(src, ".")
            } else {
                t.kind == Kind::Word
            }
        })
}

/// D5: `f(args)` or `p[key]` with no body and no value → `f(args) { true }`.
fn give_bodies_to_bodyless_definitions(checked: &mut Checked, v0: bool) {
    let src = checked.source.clone();
    let tokens = lex(&src);
    let (matching, _) = structure(&tokens);
    let starts: Vec<usize> = statements(&src, &tokens, &matching)
        .into_iter()
        .map(|(first, _, _)| first)
        .collect();
    let mut edits = Vec::new();
    for (n, &first) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(tokens.len());
        let significant: Vec<usize> = (first..end)
            .filter(|&j| tokens[j].kind != Kind::Newline)
            .collect();
        let Some(&head) = significant.first() else {
            continue;
        };
        if tokens[head].kind != Kind::Word
            || matches!(
                tokens[head].text(&src),
                "package" | "import" | "default" | "else" | "not"
            )
        {
            continue;
        }
        // word (. word)* then one bracket group that ends the statement.
        let mut k = 1;
        while significant
            .get(k)
            .is_some_and(|&j| tokens[j].is_op(&src, "."))
            && significant
                .get(k + 1)
                .is_some_and(|&j| tokens[j].kind == Kind::Word)
        {
            k += 2;
        }
        let Some(&open) = significant.get(k) else {
            continue;
        };
        if !matches!(tokens[open].kind, Kind::Open('(') | Kind::Open('[')) {
            continue;
        }
        let Some(close) = matching.get(open).copied().flatten() else {
            continue;
        };
        if significant.last() != Some(&close) {
            continue;
        }
        let body = if v0 { " { true }" } else { " if { true }" };
        edits.push((tokens[close].end, tokens[close].end, body.to_string()));
    }
    if !edits.is_empty() {
        checked.source = apply(&src, edits);
    }
}

/// Format verbs of a Go format string (`%%` is not a verb): each verb's byte range in the literal and its letter.
fn verbs(format: &str) -> Vec<(usize, usize, char)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = format.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if c != '%' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        if chars.get(j).map(|c| c.1) == Some('%') {
            i = j + 1;
            continue;
        }
        while chars
            .get(j)
            .is_some_and(|c| "+-# 0123456789.*".contains(c.1))
        {
            j += 1;
        }
        match chars.get(j) {
            Some(&(at, verb)) => {
                out.push((start, at + verb.len_utf8(), verb));
                i = j + 1;
            }
            None => break,
        }
    }
    out
}

/// The function dynamic `sprintf` calls are renamed to.
const SPRINTF_HELPER: &str = "__policyctl_sprintf";

/// The warning for a dynamic `sprintf` call.
const DYNAMIC_SPRINTF: &str = "sprintf with a format or argument list that is not a literal is checked when it runs: \
     if its verbs and arguments differ in number, the message is the format followed by %!(BADARGS …) instead of \
     regorus making it undefined and dropping the violation (regorus divergence D3)";

/// `sprintf` that never becomes undefined over a verb/argument count mismatch (appended to modules that need it; one
/// definition with `else`, so it is not a multi-value definition).
const SPRINTF_HELPER_V0: &str = "__policyctl_sprintf(f, a) = s { __policyctl_verbs(f) == count(a); s := sprintf(f, a) } \
     else = s { s := sprintf(\"%s%%!(BADARGS %v verbs, %v arguments: %v)\", [f, __policyctl_verbs(f), count(a), a]) }\n\
     __policyctl_verbs(f) = n { n := count([v | v := regex.find_n(`%[-+# 0-9.*]*[a-zA-Z%]`, f, -1)[_]; v != \"%%\"]) }\n";
const SPRINTF_HELPER_V1: &str = "__policyctl_sprintf(f, a) := s if { __policyctl_verbs(f) == count(a); s := sprintf(f, a) } \
     else := s if { s := sprintf(\"%s%%!(BADARGS %v verbs, %v arguments: %v)\", [f, __policyctl_verbs(f), count(a), a]) }\n\
     __policyctl_verbs(f) := n if { n := count([v | some v in regex.find_n(`%[-+# 0-9.*]*[a-zA-Z%]`, f, -1); v != \"%%\"]) }\n";

/// D3: make `sprintf` verb/argument count mismatches render as Go renders them instead of becoming undefined.
fn fix_sprintf(checked: &mut Checked, v0: bool) {
    let src = checked.source.clone();
    let tokens = lex(&src);
    let (matching, _) = structure(&tokens);
    let mut edits = Vec::new();
    let mut dynamic = false;
    for (i, token) in tokens.iter().enumerate() {
        if !token.is_word(&src, "sprintf") || (i > 0 && tokens[i - 1].is_op(&src, ".")) {
            continue;
        }
        let Some(open) = tokens.get(i + 1).filter(|t| t.kind == Kind::Open('(')) else {
            continue;
        };
        let _ = open;
        let line = line_of(&src, token.start);
        let significant: Vec<usize> = (i + 2..tokens.len())
            .filter(|&j| tokens[j].kind != Kind::Newline)
            .take(3)
            .collect();
        let format = significant
            .first()
            .map(|&j| tokens[j])
            .filter(|t| t.kind == Kind::Str && t.text(&src).starts_with('"'));
        let comma = significant
            .get(1)
            .map(|&j| tokens[j])
            .is_some_and(|t| t.is_op(&src, ","));
        let list = significant
            .get(2)
            .copied()
            .filter(|&j| tokens[j].kind == Kind::Open('['));
        let (Some(format), true, Some(list)) = (format, comma, list) else {
            edits.push((token.start, token.end, SPRINTF_HELPER.to_string()));
            dynamic = true;
            checked
                .warnings
                .push(format!("line {line}: {DYNAMIC_SPRINTF}"));
            continue;
        };
        let Some(list_close) = matching.get(list).copied().flatten() else {
            continue;
        };
        let mut args = 0;
        let mut pending = false;
        let mut m = list + 1;
        while m < list_close {
            match tokens[m].kind {
                Kind::Newline => {}
                Kind::Open(_) => {
                    pending = true;
                    m = matching[m].unwrap_or(list_close);
                }
                Kind::Op if tokens[m].is_op(&src, ",") => {
                    if pending {
                        args += 1;
                    }
                    pending = false;
                }
                _ => pending = true,
            }
            m += 1;
        }
        if pending {
            args += 1;
        }
        if tokens
            .iter()
            .skip(list + 1)
            .take(list_close.saturating_sub(list + 1))
            .any(|t| t.is_op(&src, "|"))
        {
            // An array comprehension: the count is dynamic.
            edits.push((token.start, token.end, SPRINTF_HELPER.to_string()));
            dynamic = true;
            checked
                .warnings
                .push(format!("line {line}: {DYNAMIC_SPRINTF}"));
            continue;
        }
        let literal = format.text(&src);
        if literal.len() < 2 || !literal.ends_with('"') {
            continue; // unterminated: regorus reports the syntax error
        }
        let found = verbs(literal);
        if found.len() == args {
            continue;
        }
        let mut fixed = literal.to_string();
        if found.len() > args {
            for &(start, end, verb) in found.iter().skip(args).rev() {
                fixed.replace_range(start..end, &format!("%%!{verb}(MISSING)"));
            }
            checked.warnings.push(format!(
                "line {line}: sprintf has {} verbs but {args} arguments; the missing ones are rendered as \
                 %!v(MISSING) as in OPA (regorus would make the message undefined and drop the violation: \
                 divergence D3)",
                found.len()
            ));
        } else {
            let extra = vec!["%v"; args - found.len()].join(", ");
            fixed.insert_str(
                fixed.len().saturating_sub(1),
                &format!("%%!(EXTRA {extra})"),
            );
            checked.warnings.push(format!(
                "line {line}: sprintf has {} verbs but {args} arguments; the extra ones are rendered as \
                 %!(EXTRA …) as in OPA, without Go's type names (regorus would make the message undefined and drop \
                 the violation: divergence D3)",
                found.len()
            ));
        }
        edits.push((format.start, format.end, fixed));
    }
    if !edits.is_empty() {
        checked.source = apply(&src, edits);
    }
    if dynamic {
        if !checked.source.ends_with('\n') {
            checked.source.push('\n');
        }
        checked.source.push_str(if v0 {
            SPRINTF_HELPER_V0
        } else {
            SPRINTF_HELPER_V1
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_refs_other_than_inventory_and_lib_are_rejected() {
        let src = "package x\nimport data.lib.y\nv { data.inventory.a; x := data.foo.bar; input.data.z; \"data.q\" }\nw { data[\"secret\"] }\n";
        let errors = disallowed_data_refs(src);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("line 3: disallowed ref data.foo"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("line 4: disallowed ref data.secret"),
            "{errors:?}"
        );
    }

    #[test]
    fn multi_body_rules_are_split_keeping_lines() {
        let src = "package t\np[x] { x := 1 } {\n x := 2\n}\nq = 1 { true }\n";
        let checked = check(src, true);
        assert_eq!(
            checked.source,
            "package t\np[x] { x := 1 } p[x] {\n x := 2\n}\nq = 1 { true }\n"
        );
        assert_eq!(checked.warnings.len(), 1);
        assert!(checked.warnings[0].contains("D2"));
    }

    #[test]
    fn multi_line_heads_are_joined() {
        let src = "package t\nviolation[{\"msg\": m, # c\n \"d\": 1}] { m := 1 }\n{ m := 2 }\n";
        let checked = check(src, true);
        assert!(
            checked
                .source
                .ends_with("\nviolation[{\"msg\": m, \"d\": 1}] { m := 2 }\n"),
            "{}",
            checked.source
        );
    }

    #[test]
    fn value_braces_are_not_bodies() {
        let src = "package t\nq = {1, 2} { true }\n";
        let checked = check(src, true);
        assert_eq!(checked.source, src);
        assert!(checked.warnings.is_empty());
    }

    #[test]
    fn line_starting_with_paren_ends_the_previous_expression() {
        let src = "package t\nx {\n  input.a\n  (input.b - 1) >= 0\n  y := [1,\n  (2)]\n}\n";
        let checked = check(src, true);
        assert_eq!(
            checked.source,
            "package t\nx {\n  input.a;\n  (input.b - 1) >= 0\n  y := [1,\n  (2)]\n}\n"
        );
        assert_eq!(checked.warnings.len(), 1);
    }

    #[test]
    fn refs_are_hoisted_out_of_not() {
        let src = "package t\nv {\n  not f(x, input.missing)\n  not g(input.a[_])\n}\n";
        let checked = check(src, true);
        assert!(
            checked
                .source
                .contains("__policyctl_h1 := input.missing; not f(x, __policyctl_h1)"),
            "{}",
            checked.source
        );
        assert!(checked.source.contains("not g(input.a[_])"));
    }

    #[test]
    fn truncated_sources_never_panic() {
        let src = "package t\nimport data.lib.x\nf(a) = b { b := 1 } { b := 2 }\nok(\"é\")\nv[{\"msg\": m}] {\n  not f(input.a.b)\n  input.x\n  (input.y - 1) > 0\n  m := sprintf(\"%v %v é\", [`raw`, [1, {2}]])\n} else = 3 { true }\n# comment \"\n";
        for (i, _) in src.char_indices() {
            let prefix = &src[..i];
            let _ = check(prefix, true);
            let _ = check(prefix, false);
            let _ = disallowed_data_refs(prefix);
        }
    }

    #[test]
    fn bodyless_definitions_get_a_body() {
        let src = "package t\nimport data.lib.x\nok(\"RuntimeDefault\")\nacc(\"RunAsAny\", _)\np[\"a\"]\nf(x) = 1\ng(x) { x }\n";
        let checked = check(src, true);
        assert_eq!(
            checked.source,
            "package t\nimport data.lib.x\nok(\"RuntimeDefault\") { true }\nacc(\"RunAsAny\", _) { true }\np[\"a\"] { true }\nf(x) = 1\ng(x) { x }\n"
        );
        assert!(checked.warnings.is_empty());
        assert!(check("package t\nok(1)\n", false)
            .source
            .ends_with("ok(1) if { true }\n"));
    }

    #[test]
    fn sprintf_mismatches_render_like_go() {
        let checked = check("package t\nm := sprintf(\"%v and %v\", [1])\n", true);
        assert!(
            checked
                .source
                .contains(r#"sprintf("%v and %%!v(MISSING)", [1])"#),
            "{}",
            checked.source
        );
        let checked = check("package t\nm := sprintf(\"%v\", [1, [2, 3]])\n", true);
        assert!(
            checked
                .source
                .contains(r#"sprintf("%v%%!(EXTRA %v)", [1, [2, 3]])"#),
            "{}",
            checked.source
        );
        let checked = check("package t\nm := sprintf(\"%v %% %s\", [1, \"a\"])\n", true);
        assert!(checked.warnings.is_empty());
        let checked = check("package t\nm := sprintf(f, [1])\n", true);
        assert_eq!(checked.warnings.len(), 1);
        assert!(checked
            .source
            .starts_with("package t\nm := __policyctl_sprintf(f, [1])\n__policyctl_sprintf(f, a)"));
    }
}
