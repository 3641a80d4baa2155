//! Kyverno's encoding functions.

use super::Function;

pub(crate) static FUNCTIONS: &[Function] = &[];
