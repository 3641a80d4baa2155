//! Kyverno's arithmetic functions.

use super::Function;

pub(crate) static FUNCTIONS: &[Function] = &[];
