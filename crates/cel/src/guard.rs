//! Safe compilation of untrusted CEL source.
//!
//! Findings on `cel` 0.15.0 this guards against:
//! * the ANTLR parser recurses before its own recursion limit is checked: about 20 nested parentheses overflow a
//!   2 MiB stack and abort the process (a stack overflow cannot be caught);
//! * left-associative chains (`1+1+1…`) and select chains (`a.b.c…`) are not limited at all: a 10,000-deep AST is
//!   produced, and evaluating (or dropping) it overflows;
//! * a parse error's `Display` panics when the error column exceeds 65,535.
//!
//! So: cheap lexical checks first (length, bracket nesting), then compile on a dedicated thread with a large stack,
//! measure the AST depth iteratively there and reject deep ASTs (dropping them on that thread), and format parse
//! errors from their fields, never through `Display`. Evaluation then only sees ASTs of bounded depth.
use std::sync::Arc;

use cel::common::ast::IdedExpr;
use cel::parser::Expression;
use cel::{Env, Program};

use crate::CompileError;

/// Longest accepted source, in bytes.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// Deepest accepted bracket nesting.
pub const MAX_BRACKET_NESTING: usize = 32;
/// Deepest accepted AST.
pub const MAX_AST_DEPTH: usize = 48;
/// Stack of the compile thread (virtual memory; only touched pages are committed).
const COMPILE_STACK: usize = 256 * 1024 * 1024;

/// Bracket nesting outside string literals (a rough lexer: quotes and backslash escapes).
pub fn bracket_nesting(src: &str) -> usize {
    let (mut depth, mut max, mut quote, mut esc) = (0usize, 0usize, None::<char>, false);
    for c in src.chars() {
        if let Some(q) = quote {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// AST depth, computed iteratively (a recursive walk could overflow on a deep AST).
pub fn ast_depth(root: &Expression) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&IdedExpr, usize)> = vec![(root, 1)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        crate::budget::for_each_child(e, &mut |c| stack.push((c, d + 1)));
    }
    max
}

fn format_parse_errors(e: &cel::ParseErrors) -> String {
    e.errors
        .iter()
        .map(|pe| {
            let msg: String = pe.msg.chars().take(200).collect();
            // pos is (line, column), 0-based column.
            format!("line {} column {}: {msg}", pe.pos.0, pe.pos.1 + 1)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Compiles untrusted CEL: the program, its AST depth checked.
pub fn safe_compile(env: &Arc<Env>, src: &str) -> Result<Program, CompileError> {
    if src.len() > MAX_SOURCE_BYTES {
        return Err(CompileError::TooLong {
            len: src.len(),
            max: MAX_SOURCE_BYTES,
        });
    }
    let n = bracket_nesting(src);
    if n > MAX_BRACKET_NESTING {
        return Err(CompileError::TooNested {
            depth: n,
            max: MAX_BRACKET_NESTING,
        });
    }
    let env = env.clone();
    let src = src.to_owned();
    std::thread::Builder::new()
        .name("cel-compile".into())
        .stack_size(COMPILE_STACK)
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let p = env
                    .compile(&src)
                    .map_err(|e| CompileError::Syntax(format_parse_errors(&e)))?;
                let d = ast_depth(p.expression());
                if d > MAX_AST_DEPTH {
                    // Dropping a deep AST recurses too: do it here, on the big stack.
                    drop(p);
                    return Err(CompileError::TooDeep {
                        depth: d,
                        max: MAX_AST_DEPTH,
                    });
                }
                Ok(p)
            }));
            r.unwrap_or_else(|_| Err(CompileError::Internal("the CEL compiler panicked".into())))
        })
        .map_err(|e| CompileError::Internal(format!("cannot start the compile thread: {e}")))?
        .join()
        .map_err(|_| CompileError::Internal("the compile thread died".into()))?
}
