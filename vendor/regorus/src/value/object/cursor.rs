// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

//! Resumable, self-owned cursor over an [`Object`]'s entries.

use core::ops::Bound;

use super::{Object, Repr};
use crate::value::Value;

impl Object {
    /// Create a resumable cursor over entries in implementation-defined
    /// order. Stable for the lifetime of `&self`. O(1).
    #[inline]
    pub const fn cursor(&self) -> ObjectCursor {
        ObjectCursor {
            inner: ObjectCursorInner::Start,
        }
    }

    /// Advance `cursor` and yield the next entry.
    ///
    /// Frozen storage resumes by position: the cursor remembers where the last
    /// key was found and, when that slot still holds the same key (an O(1)
    /// check while the object is unchanged, keys being reference-counted),
    /// steps to the next slot without searching. Otherwise, and for BTree
    /// storage, it resumes after the last key by search, so mutation between
    /// steps stays safe. (The positional step is a policyctl patch, see
    /// POLICYCTL-PATCHES.md.)
    pub fn next<'a>(&'a self, cursor: &mut ObjectCursor) -> Option<(&'a Value, &'a Value)> {
        match (&self.repr, &mut cursor.inner) {
            (Repr::Empty, _) => None,
            (Repr::Frozen(v), ObjectCursorInner::Start) => {
                if let Some((k, val)) = v.first() {
                    cursor.inner = ObjectCursorInner::Key(k.clone(), 0);
                    Some((k, val))
                } else {
                    None
                }
            }
            (Repr::Frozen(v), ObjectCursorInner::Key(prev, at)) => {
                let unchanged = v.get(*at).is_some_and(|(k, _)| k == prev);
                let i = if unchanged {
                    at.saturating_add(1)
                } else {
                    match v.binary_search_by(|(k, _)| k.cmp(prev)) {
                        Ok(i) => i.saturating_add(1),
                        Err(i) => i,
                    }
                };
                if let Some((k, val)) = v.get(i) {
                    cursor.inner = ObjectCursorInner::Key(k.clone(), i);
                    Some((k, val))
                } else {
                    None
                }
            }
            (Repr::BTree(m), ObjectCursorInner::Start) => {
                let (k, val) = m.iter().next()?;
                cursor.inner = ObjectCursorInner::Key(k.clone(), usize::MAX);
                Some((k, val))
            }
            (Repr::BTree(m), ObjectCursorInner::Key(prev, _)) => {
                let (k, val) = m
                    .range::<Value, _>((Bound::Excluded(&*prev), Bound::Unbounded))
                    .next()?;
                cursor.inner = ObjectCursorInner::Key(k.clone(), usize::MAX);
                Some((k, val))
            }
        }
    }
}

/// Opaque resumable cursor over an [`Object`]'s entries in
/// implementation-defined order.
///
/// Self-owned: holds no borrow on the `Object`, so it can be stored as a
/// field of a long-lived state struct (e.g. an RVM iteration frame).
#[derive(Debug, Clone)]
pub struct ObjectCursor {
    inner: ObjectCursorInner,
}

#[derive(Debug, Clone)]
enum ObjectCursorInner {
    Start,
    /// The last key yielded and, for Frozen storage, the slot it was found in
    /// (`usize::MAX` for BTree storage, where it is not used).
    Key(Value, usize),
}
