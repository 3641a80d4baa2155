//! The expression tree the interpreter runs: a `Send + Sync` copy of the parser's AST, with literals converted to
//! `serde_json::Value` and function names resolved (and their arity checked) when the expression is compiled.

use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

use super::functions::{self, Function};
use super::JmesError;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One node of a compiled expression.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// `@`
    Identity,
    /// `foo`, `"foo"`
    Field(String),
    /// `[3]`, `[-1]`
    Index(i64),
    /// `[a:b:c]` (the projection around it is a separate node)
    Slice {
        start: Option<i64>,
        stop: Option<i64>,
        step: i64,
    },
    /// `` `json` `` or `'raw'`
    Literal(Value),
    /// `a.b`, `a[0]`, `a | b`
    Subexpr(Box<Node>, Box<Node>),
    /// `lhs[*].rhs`, `lhs[].rhs`, `lhs.*.rhs`, `lhs[?c].rhs`, `lhs[a:b].rhs`
    Projection(Box<Node>, Box<Node>),
    /// the `*` of `a.*`: an object's values as an array
    ObjectValues(Box<Node>),
    /// the `[]` of `a[]`: flatten one level
    Flatten(Box<Node>),
    /// filter body: `predicate` truthy → `then`, else null
    Condition(Box<Node>, Box<Node>),
    /// `a == b` etc.
    Comparison(Cmp, Box<Node>, Box<Node>),
    /// `a && b`
    And(Box<Node>, Box<Node>),
    /// `a || b`
    Or(Box<Node>, Box<Node>),
    /// `!a`
    Not(Box<Node>),
    /// `[a, b]`
    MultiList(Vec<Node>),
    /// `{k: a, l: b}`
    MultiHash(Vec<(String, Node)>),
    /// `name(args...)`, with the regular expression of a regex function whose pattern is a literal, compiled when
    /// the expression is (`None` otherwise, and for a literal that does not compile: the call reports it).
    Call(&'static Function, Vec<Node>, Option<Arc<Regex>>),
    /// `&expr`
    Expref(Box<Node>),
}

/// Whether `node` is made only of what [`crate::eval::borrow`] follows without computing values: fields, indexes,
/// sub-expressions, multi-select lists, flattens, projections and `@` (`request.object.spec.containers`,
/// `spec.[initContainers, containers][]`). Such an expression's result is parts of the searched document.
pub(crate) fn borrowable(node: &Node) -> bool {
    match node {
        Node::Identity | Node::Field(_) | Node::Index(_) => true,
        Node::Subexpr(lhs, rhs) | Node::Projection(lhs, rhs) => borrowable(lhs) && borrowable(rhs),
        Node::Flatten(inner) => borrowable(inner),
        Node::MultiList(elements) => elements.iter().all(borrowable),
        _ => false,
    }
}

/// A read of a member of the searched document's root: `member` of the root's `name` (`request.object`:
/// `request`, `Some("object")`), the whole of `name` (`member: None`), or the whole root (`name: None`: `@`,
/// `keys(@)`, `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRead {
    /// The root member read, `None` for the whole root.
    pub name: Option<String>,
    /// The member of it read, `None` when it is used whole.
    pub member: Option<String>,
}

/// Whether the value of `node` may be (or contain) the current value itself rather than a part of it: `@`, a
/// function call, or what is built of or selected from such a value.
fn may_be_current(node: &Node) -> bool {
    match node {
        Node::Identity | Node::Call(..) => true,
        Node::Field(_)
        | Node::Index(_)
        | Node::Slice { .. }
        | Node::Literal(_)
        | Node::Comparison(..)
        | Node::Not(_)
        | Node::Expref(_) => false,
        // Parts of the left side's value (or values computed from them).
        Node::Subexpr(lhs, _) | Node::Projection(lhs, _) => may_be_current(lhs),
        Node::ObjectValues(inner) | Node::Flatten(inner) => may_be_current(inner),
        Node::Condition(_, then) => may_be_current(then),
        Node::And(a, b) | Node::Or(a, b) => may_be_current(a) || may_be_current(b),
        Node::MultiList(items) => items.iter().any(may_be_current),
        Node::MultiHash(pairs) => pairs.iter().any(|(_, n)| may_be_current(n)),
    }
}

fn leftmost_field(node: &Node) -> Option<&str> {
    match node {
        Node::Field(name) => Some(name),
        Node::Subexpr(lhs, _) => leftmost_field(lhs),
        _ => None,
    }
}

/// Every read `node` may make of the root of the document it searches (a superset: reads of values that are
/// only possibly the root count).
pub(crate) fn root_reads(node: &Node, at_root: bool, out: &mut Vec<RootRead>) {
    if !at_root {
        return;
    }
    let whole = |name: Option<&str>, member: Option<&str>| RootRead {
        name: name.map(str::to_string),
        member: member.map(str::to_string),
    };
    match node {
        Node::Identity => out.push(whole(None, None)),
        Node::Field(name) => out.push(whole(Some(name), None)),
        Node::Index(_) | Node::Slice { .. } | Node::Literal(_) => {}
        Node::Subexpr(lhs, rhs) => {
            if let Node::Field(name) = &**lhs {
                out.push(whole(Some(name), leftmost_field(rhs)));
                if leftmost_field(rhs).is_some() {
                    root_reads(rhs, false, out);
                    return;
                }
            } else {
                root_reads(lhs, true, out);
            }
            root_reads(rhs, may_be_current(lhs), out);
        }
        Node::Projection(lhs, rhs) => {
            root_reads(lhs, true, out);
            root_reads(rhs, may_be_current(lhs), out);
        }
        Node::ObjectValues(inner) => {
            root_reads(inner, true, out);
            if may_be_current(inner) {
                out.push(whole(None, None));
            }
        }
        Node::Flatten(inner) | Node::Not(inner) | Node::Expref(inner) => {
            root_reads(inner, true, out)
        }
        Node::Condition(a, b) | Node::Comparison(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
            root_reads(a, true, out);
            root_reads(b, true, out);
        }
        Node::MultiList(items) => items.iter().for_each(|n| root_reads(n, true, out)),
        Node::MultiHash(pairs) => pairs.iter().for_each(|(_, n)| root_reads(n, true, out)),
        Node::Call(_, args, _) => args.iter().for_each(|n| root_reads(n, true, out)),
    }
}

/// Convert the parser's AST; unknown functions and wrong argument counts are compile errors.
pub(crate) fn convert(ast: &jmespath::ast::Ast, text: &str) -> Result<Node, JmesError> {
    use jmespath::ast::{Ast, Comparator};
    let boxed = |a: &Ast| convert(a, text).map(Box::new);
    Ok(match ast {
        Ast::Identity { .. } => Node::Identity,
        Ast::Field { name, .. } => Node::Field(name.clone()),
        Ast::Index { idx, .. } => Node::Index(i64::from(*idx)),
        Ast::Slice {
            start, stop, step, ..
        } => {
            if *step == 0 {
                return Err(parse_error(text, "slice step cannot be 0"));
            }
            Node::Slice {
                start: start.map(i64::from),
                stop: stop.map(i64::from),
                step: i64::from(*step),
            }
        }
        Ast::Literal { value, .. } => {
            let value = serde_json::to_value(&**value)
                .map_err(|e| parse_error(text, &format!("invalid literal: {e}")))?;
            Node::Literal(value)
        }
        Ast::Subexpr { lhs, rhs, .. } => Node::Subexpr(boxed(lhs)?, boxed(rhs)?),
        Ast::Projection { lhs, rhs, .. } => Node::Projection(boxed(lhs)?, boxed(rhs)?),
        Ast::ObjectValues { node, .. } => Node::ObjectValues(boxed(node)?),
        Ast::Flatten { node, .. } => Node::Flatten(boxed(node)?),
        Ast::Condition {
            predicate, then, ..
        } => Node::Condition(boxed(predicate)?, boxed(then)?),
        Ast::Comparison {
            comparator,
            lhs,
            rhs,
            ..
        } => {
            let op = match comparator {
                Comparator::Equal => Cmp::Eq,
                Comparator::NotEqual => Cmp::Ne,
                Comparator::LessThan => Cmp::Lt,
                Comparator::LessThanEqual => Cmp::Le,
                Comparator::GreaterThan => Cmp::Gt,
                Comparator::GreaterThanEqual => Cmp::Ge,
            };
            Node::Comparison(op, boxed(lhs)?, boxed(rhs)?)
        }
        Ast::And { lhs, rhs, .. } => Node::And(boxed(lhs)?, boxed(rhs)?),
        Ast::Or { lhs, rhs, .. } => Node::Or(boxed(lhs)?, boxed(rhs)?),
        Ast::Not { node, .. } => Node::Not(boxed(node)?),
        Ast::MultiList { elements, .. } => Node::MultiList(
            elements
                .iter()
                .map(|e| convert(e, text))
                .collect::<Result<_, _>>()?,
        ),
        Ast::MultiHash { elements, .. } => Node::MultiHash(
            elements
                .iter()
                .map(|kv| Ok((kv.key.clone(), convert(&kv.value, text)?)))
                .collect::<Result<_, JmesError>>()?,
        ),
        Ast::Function { name, args, .. } => {
            let function = functions::lookup(name)
                .ok_or_else(|| parse_error(text, &format!("unknown function {name}()")))?;
            function
                .check_arity(args.len())
                .map_err(|e| parse_error(text, &e.to_string()))?;
            let args: Vec<Node> = args
                .iter()
                .map(|a| convert(a, text))
                .collect::<Result<_, _>>()?;
            let regex = match args.first() {
                Some(Node::Literal(Value::String(pattern)))
                    if functions::strings::REGEX_FUNCTIONS.contains(&function.name) =>
                {
                    functions::strings::build_regex(pattern).ok().map(Arc::new)
                }
                _ => None,
            };
            Node::Call(function, args, regex)
        }
        Ast::Expref { ast, .. } => Node::Expref(boxed(ast)?),
    })
}

fn parse_error(text: &str, message: &str) -> JmesError {
    JmesError::Parse {
        expression: text.to_string(),
        message: message.to_string(),
    }
}
