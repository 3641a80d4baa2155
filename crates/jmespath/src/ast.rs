//! The expression tree the interpreter runs: a `Send + Sync` copy of the parser's AST, with literals converted to
//! `serde_json::Value` and function names resolved (and their arity checked) when the expression is compiled.

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
    /// `name(args...)`
    Call(&'static Function, Vec<Node>),
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
                .map_err(|m| parse_error(text, &m))?;
            Node::Call(
                function,
                args.iter()
                    .map(|a| convert(a, text))
                    .collect::<Result<_, _>>()?,
            )
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
