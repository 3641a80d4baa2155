//! Stage 2 of a request: select the policies that can match it.
//!
//! Every policy declares a conservative [`Scope`]: entries naming an API group and a kind (matched against the
//! request's `kind`), or an API group and a resource with its subresource (matched against the request's `resource`
//! and `subResource`, as Kubernetes' `resourceRules` do), each with operations. The [`Index`] is built once per
//! policy set and maps a request to the positions of the policies that may match it, in set order. Engines still do
//! their own exact matching (versions, namespaces, selectors, names, exclusions, ...); the index only spares a
//! request the policies that cannot apply, so it may offer a policy that then does not match, never the reverse.

use std::collections::HashMap;

use crate::admission::{Operation, Review};
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

/// The subresource part of a resource entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubResource {
    /// The resource itself, no subresource (`pods`, `*`).
    None,
    /// Any subresource, not the resource itself (`pods/*`, `*/*`).
    Any,
    /// One subresource (`pods/status`, `*/scale`).
    Named(String),
}

/// A resource as `resourceRules` name it: plural resource (`None` for `*`) and subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceName {
    /// The plural resource (`pods`); `None` for any resource.
    pub resource: Option<String>,
    /// The subresource part.
    pub sub_resource: SubResource,
}

impl ResourceName {
    /// Parse a `resourceRules` resource: `pods`, `pods/status`, `pods/*`, `*/scale`, `*` (every resource, no
    /// subresource) or `*/*` (every subresource of every resource).
    pub fn parse(name: &str) -> ResourceName {
        let (resource, sub) = name.split_once('/').unwrap_or((name, ""));
        ResourceName {
            resource: (resource != "*").then(|| resource.to_string()),
            sub_resource: match sub {
                "" => SubResource::None,
                "*" => SubResource::Any,
                other => SubResource::Named(other.to_string()),
            },
        }
    }
}

/// One kind of resource a policy may apply to. `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    /// API group (`""` is the core group); `None` for any group. The group of the request's `kind`, or of its
    /// `resource` when the entry names a resource.
    pub group: Option<String>,
    /// Kind; `None` for any kind (always `None` when the entry names a resource).
    pub kind: Option<String>,
    /// A resource instead of a kind: matched against the request's `resource` and `subResource`.
    pub resource: Option<ResourceName>,
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
                resource: None,
                operations: OpSet::ALL,
            }],
        }
    }

    /// Add a kind entry.
    pub fn add(&mut self, group: Option<&str>, kind: Option<&str>, operations: OpSet) {
        self.entries.push(ScopeEntry {
            group: group.map(str::to_string),
            kind: kind.map(str::to_string),
            resource: None,
            operations,
        });
    }

    /// Add a resource entry: `resource` as `resourceRules` spell it (see [`ResourceName::parse`]).
    pub fn add_resource(&mut self, group: Option<&str>, resource: &str, operations: OpSet) {
        self.entries.push(ScopeEntry {
            group: group.map(str::to_string),
            kind: None,
            resource: Some(ResourceName::parse(resource)),
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

/// The symbol of a wildcard in a pattern key.
const WILD: u32 = 0;

/// Policy lists keyed by patterns of `N` interned strings (`WILD` for a wildcard). Each list is merged at build
/// time with the lists of every pattern that covers its key, so a lookup needs only the most specific hits.
#[derive(Debug, Default)]
struct Patterns<const N: usize> {
    lists: HashMap<[u32; N], PerOp>,
    /// The wildcard masks (bit `i`: position `i` is a wildcard) of the keys present, fewest wildcards first.
    shapes: Vec<u8>,
    /// A position whose wildcard stands only for non-empty values (the subresource of `pods/*`).
    non_empty: Option<usize>,
}

fn mask_of<const N: usize>(key: &[u32; N]) -> u8 {
    (0..N)
        .filter(|&i| key[i] == WILD)
        .fold(0, |m, i| m | 1 << i)
}

impl<const N: usize> Patterns<N> {
    fn insert(&mut self, key: [u32; N], position: u32, operations: OpSet) {
        let slot = self.lists.entry(key).or_default();
        for op in &OPS {
            if operations.contains(op) {
                slot[op_index(op)].push(position);
            }
        }
    }

    /// Whether a wildcard at position `i` covers `value`.
    fn wild_covers(&self, i: usize, value: u32, empty: u32) -> bool {
        self.non_empty != Some(i) || value != empty
    }

    /// Merge every covering pattern's list into each list, and record the shapes present.
    fn finish(&mut self, empty: u32) {
        let originals = self.lists.clone();
        for (key, per_op) in self.lists.iter_mut() {
            let own = mask_of(key);
            for mask in 0..(1u8 << N) {
                if mask == own || mask & own != own {
                    continue;
                }
                let mut general = *key;
                let mut covers = true;
                for (i, value) in general.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 && *value != WILD {
                        covers &= self.non_empty != Some(i) || *value != empty;
                        *value = WILD;
                    }
                }
                if !covers {
                    continue;
                }
                if let Some(other) = originals.get(&general) {
                    for (list, more) in per_op.iter_mut().zip(other.iter()) {
                        list.extend_from_slice(more);
                    }
                }
            }
            for list in per_op.iter_mut() {
                sort_dedup(list);
            }
        }
        let mut shapes: Vec<u8> = self.lists.keys().map(mask_of).collect();
        shapes.sort_by_key(|m| (m.count_ones(), *m));
        shapes.dedup();
        self.shapes = shapes;
    }

    /// Add to `out` the lists of `op` whose pattern matches `request` (`None`: a string no pattern names).
    fn lookup<'a>(
        &'a self,
        request: [Option<u32>; N],
        empty: u32,
        op: usize,
        out: &mut Candidates<'a>,
    ) {
        let mut hits = [0u8; 8];
        let mut found = 0;
        'shapes: for &shape in &self.shapes {
            // A hit whose wildcards are all wildcards here already holds this pattern's list.
            if hits[..found].iter().any(|&hit| hit & !shape == 0) {
                continue;
            }
            let mut key = [WILD; N];
            for i in 0..N {
                if shape & (1 << i) != 0 {
                    // A string no pattern names is not the empty string (which is always interned).
                    if request[i].is_some_and(|v| !self.wild_covers(i, v, empty)) {
                        continue 'shapes;
                    }
                } else {
                    match request[i] {
                        Some(value) => key[i] = value,
                        None => continue 'shapes,
                    }
                }
            }
            if let Some(per_op) = self.lists.get(&key) {
                if found < hits.len() {
                    hits[found] = shape;
                    found += 1;
                }
                out.push(&per_op[op]);
            }
        }
    }
}

/// Lookup from a request's kind, resource, subresource and operation to the positions of the policies that may
/// match it, built once per set. A lookup hashes the request's strings once each and probes a few patterns; it
/// allocates nothing.
#[derive(Debug, Default)]
pub struct Index {
    /// Every string the entries name; `WILD` (0) is never a symbol.
    symbols: HashMap<String, u32>,
    /// The symbol of `""` (the core group, no subresource).
    empty: u32,
    /// (group, kind) entries, and the entries that match anything.
    kinds: Patterns<2>,
    /// (group, resource, subresource) entries.
    resources: Patterns<3>,
}

/// What the index looks a request up by.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `kind.group`.
    pub kind_group: &'a str,
    /// `kind.kind`.
    pub kind: &'a str,
    /// `resource.group`.
    pub resource_group: &'a str,
    /// `resource.resource` (plural).
    pub resource: &'a str,
    /// `subResource` (`""` for none).
    pub sub_resource: &'a str,
    /// `operation`.
    pub operation: &'a Operation,
}

impl<'a> Target<'a> {
    /// The target of an admission review.
    pub fn of(review: &'a Review) -> Target<'a> {
        Target {
            kind_group: &review.kind.group,
            kind: &review.kind.kind,
            resource_group: &review.resource.group,
            resource: &review.resource.resource,
            sub_resource: review.sub_resource.as_deref().unwrap_or(""),
            operation: &review.operation,
        }
    }
}

impl Index {
    /// Build the index over policies' scopes, in set order.
    pub fn build<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Index {
        let mut index = Index {
            resources: Patterns {
                non_empty: Some(2),
                ..Default::default()
            },
            ..Default::default()
        };
        index.empty = index.intern("");
        for (position, scope) in scopes.into_iter().enumerate() {
            let position = position as u32;
            for entry in &scope.entries {
                let group = entry.group.as_deref().map_or(WILD, |g| index.intern(g));
                match &entry.resource {
                    None => {
                        let kind = entry.kind.as_deref().map_or(WILD, |k| index.intern(k));
                        index
                            .kinds
                            .insert([group, kind], position, entry.operations);
                    }
                    Some(name) => {
                        let resource = name.resource.as_deref().map_or(WILD, |r| index.intern(r));
                        let sub = match &name.sub_resource {
                            SubResource::None => index.empty,
                            SubResource::Any => WILD,
                            SubResource::Named(s) => index.intern(s),
                        };
                        index
                            .resources
                            .insert([group, resource, sub], position, entry.operations);
                    }
                }
            }
        }
        index.kinds.finish(index.empty);
        index.resources.finish(index.empty);
        index
    }

    fn intern(&mut self, name: &str) -> u32 {
        let next = self.symbols.len() as u32 + 1;
        *self.symbols.entry(name.to_string()).or_insert(next)
    }

    fn symbol(&self, name: &str) -> Option<u32> {
        self.symbols.get(name).copied()
    }

    /// Positions of the policies that may match `target`, ascending, each once.
    pub fn candidates<'i>(&'i self, target: &Target<'_>) -> Candidates<'i> {
        let op = op_index(target.operation);
        let mut out = Candidates::default();
        if !self.kinds.lists.is_empty() {
            let request = [self.symbol(target.kind_group), self.symbol(target.kind)];
            self.kinds.lookup(request, self.empty, op, &mut out);
        }
        if !self.resources.lists.is_empty() {
            let request = [
                self.symbol(target.resource_group),
                self.symbol(target.resource),
                self.symbol(target.sub_resource),
            ];
            self.resources.lookup(request, self.empty, op, &mut out);
        }
        out
    }
}

/// The policy positions of a lookup: a merge of a few sorted lists, ascending and without repeats.
#[derive(Debug, Default)]
pub struct Candidates<'a> {
    /// At most 4 kind patterns and 8 resource patterns match a request.
    lists: [&'a [u32]; 12],
    len: usize,
}

impl<'a> Candidates<'a> {
    fn push(&mut self, list: &'a [u32]) {
        // At most one list per probed pattern: 4 + 8 fit.
        debug_assert!(self.len < self.lists.len());
        if !list.is_empty() && self.len < self.lists.len() {
            self.lists[self.len] = list;
            self.len += 1;
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let lists = &mut self.lists[..self.len];
        let next = lists.iter().filter_map(|l| l.first().copied()).min()?;
        for list in lists.iter_mut() {
            if list.first() == Some(&next) {
                *list = &list[1..];
            }
        }
        Some(next)
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

    fn resources(entries: &[(Option<&str>, &str, OpSet)]) -> Scope {
        let mut s = Scope::default();
        for (g, r, ops) in entries {
            s.add_resource(*g, r, *ops);
        }
        s
    }

    /// A request for `kind`, whose resource is `plural` (`resource/subresource`) in the same group.
    fn lookup(index: &Index, group: &str, kind: &str, plural: &str, op: Operation) -> Vec<u32> {
        let (resource, sub) = plural.split_once('/').unwrap_or((plural, ""));
        index
            .candidates(&Target {
                kind_group: group,
                kind,
                resource_group: group,
                resource,
                sub_resource: sub,
                operation: &op,
            })
            .collect()
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
        let l = |g, k, op| lookup(&index, g, k, "x", op);
        assert_eq!(l("", "Pod", Operation::Create), [0, 2, 4, 6]);
        assert_eq!(l("", "Pod", Operation::Delete), [0, 2, 6]);
        assert_eq!(l("apps", "Deployment", Operation::Create), [1, 2, 3, 6]);
        assert_eq!(l("apps", "Deployment", Operation::Update), [2, 3, 6]);
        assert_eq!(l("apps", "StatefulSet", Operation::Update), [2, 3, 6]);
        assert_eq!(l("batch", "Job", Operation::Create), [2, 6]);
        assert_eq!(l("apps", "Pod", Operation::Create), [2, 3, 4, 6]);
    }

    #[test]
    fn selects_resource_entries_with_subresources() {
        let create = OpSet::only(&Operation::Create);
        let scopes = vec![
            resources(&[(Some(""), "pods", OpSet::ALL)]), // 0: pods, no subresource
            resources(&[(Some(""), "pods/status", OpSet::ALL)]), // 1: pods/status
            resources(&[(Some(""), "pods/*", OpSet::ALL)]), // 2: any pod subresource
            resources(&[(None, "*/scale", OpSet::ALL)]),  // 3: scale of anything
            resources(&[(Some("apps"), "*", create)]),    // 4: any apps resource, create
            resources(&[(None, "*/*", OpSet::ALL)]),      // 5: every subresource
            resources(&[(Some("apps"), "deployments", OpSet::ALL)]), // 6: deployments
            resources(&[(None, "deployments", OpSet::ALL)]), // 7: deployments of any group
        ];
        let index = Index::build(&scopes);
        let l = |g, k, r, op| lookup(&index, g, k, r, op);
        assert_eq!(l("", "Pod", "pods", Operation::Create), [0]);
        assert_eq!(l("", "Pod", "pods/status", Operation::Update), [1, 2, 5]);
        assert_eq!(l("", "Pod", "pods/exec", Operation::Connect), [2, 5]);
        assert_eq!(l("", "Pod", "pods/scale", Operation::Update), [2, 3, 5]);
        assert_eq!(
            l("apps", "Deployment", "deployments", Operation::Create),
            [4, 6, 7]
        );
        assert_eq!(
            l("apps", "Deployment", "deployments", Operation::Update),
            [6, 7]
        );
        assert_eq!(
            l("apps", "Scale", "deployments/scale", Operation::Update),
            [3, 5]
        );
        assert_eq!(
            l("extensions", "Deployment", "deployments", Operation::Update),
            [7]
        );
        assert_eq!(
            l("apps", "StatefulSet", "statefulsets", Operation::Create),
            [4]
        );
        assert_eq!(
            l("apps", "StatefulSet", "statefulsets", Operation::Delete),
            Vec::<u32>::new()
        );
        // A Pod request is not offered the deployments-only policies, nor is a ConfigMap offered anything.
        assert!(!l("", "Pod", "pods", Operation::Create).contains(&6));
        assert!(l("", "ConfigMap", "configmaps", Operation::Create).is_empty());
        assert!(l("", "ConfigMap", "configmaps/status", Operation::Create) == [5]);
    }

    #[test]
    fn mixes_kind_and_resource_entries_in_set_order() {
        let scopes = vec![
            resources(&[(Some("apps"), "deployments", OpSet::ALL)]), // 0
            scope(&[(Some(""), Some("Pod"), OpSet::ALL)]),           // 1
            resources(&[(Some(""), "pods", OpSet::ALL)]),            // 2
            Scope::any(),                                            // 3
            {
                // 4: a kind and a resource entry that both match (offered once)
                let mut s = resources(&[(Some(""), "pods", OpSet::ALL)]);
                s.add(Some(""), Some("Pod"), OpSet::ALL);
                s
            },
            resources(&[(None, "*", OpSet::ALL)]), // 5: every resource, no subresource
            scope(&[(Some("apps"), None, OpSet::ALL)]), // 6
        ];
        let index = Index::build(&scopes);
        let l = |g, k, r| lookup(&index, g, k, r, Operation::Create);
        assert_eq!(l("", "Pod", "pods"), [1, 2, 3, 4, 5]);
        assert_eq!(l("", "Pod", "pods/status"), [1, 3, 4]);
        assert_eq!(l("apps", "Deployment", "deployments"), [0, 3, 5, 6]);
        assert_eq!(l("batch", "Job", "jobs"), [3, 5]);
        // Strings no entry names match wildcards only.
        assert_eq!(l("example.com", "Widget", "widgets/status"), [3]);
    }

    #[test]
    fn parses_resource_names() {
        let p = ResourceName::parse;
        assert_eq!(p("pods").resource.as_deref(), Some("pods"));
        assert_eq!(p("pods").sub_resource, SubResource::None);
        assert_eq!(p("*").resource, None);
        assert_eq!(p("*").sub_resource, SubResource::None);
        assert_eq!(p("*/*").sub_resource, SubResource::Any);
        assert_eq!(
            p("*/scale").sub_resource,
            SubResource::Named("scale".into())
        );
        assert_eq!(p("pods/*").resource.as_deref(), Some("pods"));
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
