//! Stage 2 of a request: select the policies that can match it.
//!
//! Every policy declares a conservative [`Scope`] (groups, kinds, operations). The [`Index`] is built once per policy
//! set and maps a request's group, kind and operation to the positions of the policies that may match, in set order.
//! Engines still do their own exact matching (namespaces, selectors, names, ...); the index only spares a request
//! the policies that cannot apply.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::admission::Operation;

/// A set of operations, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpSet(u8);

impl OpSet {
    /// No operation.
    pub const NONE: OpSet = OpSet(0);
    /// Every operation.
    pub const ALL: OpSet = OpSet(0b1111);

    fn bit(op: &Operation) -> u8 {
        match op {
            Operation::Create => 1,
            Operation::Update => 2,
            Operation::Delete => 4,
            Operation::Connect => 8,
        }
    }

    /// Just one operation.
    pub fn only(op: &Operation) -> OpSet {
        OpSet(Self::bit(op))
    }

    /// Add an operation.
    pub fn with(self, op: &Operation) -> OpSet {
        OpSet(self.0 | Self::bit(op))
    }

    /// Union.
    pub fn union(self, other: OpSet) -> OpSet {
        OpSet(self.0 | other.0)
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: &Operation) -> bool {
        self.0 & Self::bit(op) != 0
    }

    /// Parse an operation name as the API server spells it (`CREATE`, ...), or `*` for all.
    pub fn parse(name: &str) -> Option<OpSet> {
        match name.to_ascii_uppercase().as_str() {
            "*" => Some(OpSet::ALL),
            "CREATE" => Some(OpSet::only(&Operation::Create)),
            "UPDATE" => Some(OpSet::only(&Operation::Update)),
            "DELETE" => Some(OpSet::only(&Operation::Delete)),
            "CONNECT" => Some(OpSet::only(&Operation::Connect)),
            _ => None,
        }
    }
}

/// One kind of resource a policy may apply to. `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    /// API group (`""` is the core group); `None` for any group.
    pub group: Option<String>,
    /// Kind; `None` for any kind.
    pub kind: Option<String>,
    /// Operations.
    pub operations: OpSet,
}

/// The resources a policy may apply to: the union of its entries. An empty scope matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The entries.
    pub entries: Vec<ScopeEntry>,
}

impl Scope {
    /// Every resource and operation.
    pub fn any() -> Scope {
        Scope {
            entries: vec![ScopeEntry {
                group: None,
                kind: None,
                operations: OpSet::ALL,
            }],
        }
    }

    /// Add an entry.
    pub fn add(&mut self, group: Option<&str>, kind: Option<&str>, operations: OpSet) {
        self.entries.push(ScopeEntry {
            group: group.map(str::to_string),
            kind: kind.map(str::to_string),
            operations,
        });
    }
}

/// Policy positions per operation (create, update, delete, connect).
type PerOp = [Vec<u32>; 4];

fn op_index(op: &Operation) -> usize {
    match op {
        Operation::Create => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Connect => 3,
    }
}

const OPS: [Operation; 4] = [
    Operation::Create,
    Operation::Update,
    Operation::Delete,
    Operation::Connect,
];

/// Lookup from (group, kind, operation) to the positions of the policies that may match, built once per set.
#[derive(Debug, Default)]
pub struct Index {
    /// Exact (group, kind): the policies of that pair and of every wildcard that covers it, merged.
    exact: HashMap<(String, String), PerOp>,
    /// Any kind of a group, merged with `any`.
    group_any: HashMap<String, PerOp>,
    /// A kind in any group, merged with `any`.
    kind_any: HashMap<String, PerOp>,
    /// Any group, any kind.
    any: PerOp,
}

impl Index {
    /// Build the index over policies' scopes, in set order.
    pub fn build<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Index {
        let mut exact: HashMap<(String, String), PerOp> = HashMap::new();
        let mut group_any: HashMap<String, PerOp> = HashMap::new();
        let mut kind_any: HashMap<String, PerOp> = HashMap::new();
        let mut any: PerOp = Default::default();
        for (position, scope) in scopes.into_iter().enumerate() {
            let position = position as u32;
            for entry in &scope.entries {
                let slot = match (&entry.group, &entry.kind) {
                    (Some(g), Some(k)) => exact.entry((g.clone(), k.clone())).or_default(),
                    (Some(g), None) => group_any.entry(g.clone()).or_default(),
                    (None, Some(k)) => kind_any.entry(k.clone()).or_default(),
                    (None, None) => &mut any,
                };
                for op in &OPS {
                    if entry.operations.contains(op) {
                        slot[op_index(op)].push(position);
                    }
                }
            }
        }
        // Merge the wildcards into the narrower lists, so most lookups are one hash probe.
        for ((group, kind), per_op) in exact.iter_mut() {
            for i in 0..4 {
                let mut merged = std::mem::take(&mut per_op[i]);
                if let Some(g) = group_any.get(group) {
                    merged.extend_from_slice(&g[i]);
                }
                if let Some(k) = kind_any.get(kind) {
                    merged.extend_from_slice(&k[i]);
                }
                merged.extend_from_slice(&any[i]);
                sort_dedup(&mut merged);
                per_op[i] = merged;
            }
        }
        for per_op in group_any.values_mut().chain(kind_any.values_mut()) {
            for i in 0..4 {
                per_op[i].extend_from_slice(&any[i]);
                sort_dedup(&mut per_op[i]);
            }
        }
        for list in any.iter_mut() {
            sort_dedup(list);
        }
        Index {
            exact,
            group_any,
            kind_any,
            any,
        }
    }

    /// Positions of the policies that may match a request for `group`/`kind` with `op`, ascending.
    pub fn candidates(&self, group: &str, kind: &str, op: &Operation) -> Cow<'_, [u32]> {
        let i = op_index(op);
        if let Some(per_op) = self.exact.get(&(group.to_string(), kind.to_string())) {
            return Cow::Borrowed(&per_op[i]);
        }
        match (self.group_any.get(group), self.kind_any.get(kind)) {
            (None, None) => Cow::Borrowed(&self.any[i]),
            (Some(g), None) => Cow::Borrowed(&g[i]),
            (None, Some(k)) => Cow::Borrowed(&k[i]),
            (Some(g), Some(k)) => {
                let mut merged = g[i].clone();
                merged.extend_from_slice(&k[i]);
                sort_dedup(&mut merged);
                Cow::Owned(merged)
            }
        }
    }
}

fn sort_dedup(list: &mut Vec<u32>) {
    list.sort_unstable();
    list.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(entries: &[(Option<&str>, Option<&str>, OpSet)]) -> Scope {
        let mut s = Scope::default();
        for (g, k, ops) in entries {
            s.add(*g, *k, *ops);
        }
        s
    }

    #[test]
    fn selects_exact_and_wildcard_policies_in_set_order() {
        let create = OpSet::only(&Operation::Create);
        let scopes = vec![
            scope(&[(Some(""), Some("Pod"), OpSet::ALL)]), // 0: core Pods
            scope(&[(Some("apps"), Some("Deployment"), create)]), // 1: Deployments on create
            Scope::any(),                                  // 2: everything
            scope(&[(Some("apps"), None, OpSet::ALL)]),    // 3: any apps kind
            scope(&[(None, Some("Pod"), create)]),         // 4: Pod in any group, create
            Scope::default(),                              // 5: nothing
            scope(&[
                (Some(""), Some("Pod"), OpSet::ALL),
                (None, None, OpSet::ALL),
            ]), // 6: both (dedup)
        ];
        let index = Index::build(&scopes);
        assert_eq!(
            &*index.candidates("", "Pod", &Operation::Create),
            &[0, 2, 4, 6]
        );
        assert_eq!(
            &*index.candidates("", "Pod", &Operation::Delete),
            &[0, 2, 6]
        );
        assert_eq!(
            &*index.candidates("apps", "Deployment", &Operation::Create),
            &[1, 2, 3, 6]
        );
        assert_eq!(
            &*index.candidates("apps", "Deployment", &Operation::Update),
            &[2, 3, 6]
        );
        assert_eq!(
            &*index.candidates("apps", "StatefulSet", &Operation::Update),
            &[2, 3, 6]
        );
        assert_eq!(
            &*index.candidates("batch", "Job", &Operation::Create),
            &[2, 6]
        );
        assert_eq!(
            &*index.candidates("apps", "Pod", &Operation::Create),
            &[2, 3, 4, 6]
        );
    }

    #[test]
    fn parses_operations() {
        assert_eq!(
            OpSet::parse("create"),
            Some(OpSet::only(&Operation::Create))
        );
        assert_eq!(OpSet::parse("*"), Some(OpSet::ALL));
        assert_eq!(OpSet::parse("PATCH"), None);
        assert!(OpSet::NONE
            .with(&Operation::Delete)
            .contains(&Operation::Delete));
    }
}
