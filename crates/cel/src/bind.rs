//! JSON → CEL values, built once and shared.
//!
//! Kubernetes hands CEL the unstructured object, where JSON integers are `int` (int64). The `cel` crate's own serde
//! path makes positive integers `uint` (`object.spec.replicas + 1` would then fail), and its built-in maps and lists
//! are deep-copied every time a comprehension binds an element. So we convert ourselves, once, into [`Shared`]: every
//! map and list sits behind an `Arc`, and cloning any node is a reference-count increment.
use std::collections::HashMap;
use std::sync::Arc;

use cel::common::traits::{Adder, Comparer, Container, Indexer, Iterable, Sizer, Zeroer};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, Type,
};
use cel::common::value::{Builtin, BuiltinRef, CowVal, Val};
use cel::ExecutionError;
use serde_json::Value as J;

/// A JSON number as Kubernetes sees it: int64 when it fits, else uint64, else double.
fn number(n: &serde_json::Number) -> Box<dyn Val + 'static> {
    if let Some(i) = n.as_i64() {
        Box::new(CelInt::from(i))
    } else if let Some(u) = n.as_u64() {
        Box::new(CelUInt::from(u))
    } else {
        Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
    }
}

fn scalar(json: &J) -> Box<dyn Val + 'static> {
    match json {
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => number(n),
        J::String(s) => Box::new(CelString::from(s.clone())),
        J::Null | J::Array(_) | J::Object(_) => Box::new(CelNull),
    }
}

/// Convert a JSON document into a shared CEL value (one deep conversion; clones afterwards are O(1)).
pub fn shared(json: &J) -> Shared {
    match json {
        J::Array(a) => Shared(Arc::new(CelList::from(
            a.iter().map(node).collect::<Vec<_>>(),
        ))),
        J::Object(o) => Shared(Arc::new(CelMap::from(
            o.iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), node(v)))
                .collect::<HashMap<_, _>>(),
        ))),
        other => Shared(Arc::from(scalar(other))),
    }
}

fn node(json: &J) -> Box<dyn Val + 'static> {
    match json {
        J::Array(_) | J::Object(_) => Box::new(shared(json)),
        other => scalar(other),
    }
}

/// An `Arc`-shared CEL value. It delegates every capability to the wrapped value, `as_builtin`/`into_builtin`
/// included, so the standard library's downcasts to `CelMap`/`CelList` see through it (`==`, list `+`, the lists
/// extension, conversion back to `cel::Value`).
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<dyn Val + 'static>);

impl Shared {
    /// CEL `null`.
    pub fn null() -> Shared {
        Shared(Arc::new(CelNull))
    }

    /// A boxed clone, for binding as a variable (O(1)).
    pub fn boxed(&self) -> Box<dyn Val + 'static> {
        Box::new(self.clone())
    }
}

impl Val for Shared {
    fn get_type(&self) -> &Type {
        self.0.get_type()
    }
    fn cel_type() -> &'static Type {
        // The type is per instance (list, map or a scalar): never named in an overload.
        &cel::common::types::DYN_TYPE
    }
    fn as_adder<'b, 'v>(&'b self) -> Option<&'b (dyn Adder + 'v)>
    where
        Self: 'v,
    {
        self.0.as_adder()
    }
    fn as_comparer(&self) -> Option<&dyn Comparer> {
        self.0.as_comparer()
    }
    fn as_container(&self) -> Option<&dyn Container> {
        self.0.as_container()
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        self.0.as_indexer()
    }
    fn into_indexer<'v>(self: Box<Self>) -> Option<Box<dyn Indexer + 'v>>
    where
        Self: 'v,
    {
        if self.0.as_indexer().is_some() {
            Some(self)
        } else {
            None
        }
    }
    fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
    where
        Self: 'v,
    {
        self.0.as_iterable()
    }
    fn as_sizer(&self) -> Option<&dyn Sizer> {
        self.0.as_sizer()
    }
    fn as_zeroer(&self) -> Option<&dyn Zeroer> {
        self.0.as_zeroer()
    }
    fn equals(&self, other: &dyn Val) -> bool {
        self.0.equals(other)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
    fn as_builtin<'b, 'v>(&'b self) -> BuiltinRef<'b, 'v>
    where
        Self: 'v,
    {
        self.0.as_builtin()
    }
    fn into_builtin<'v>(self: Box<Self>) -> Option<Builtin<'v>>
    where
        Self: 'v,
    {
        // Must agree with `as_builtin`. One level is copied: the children are `Shared` themselves.
        self.0.clone_as_boxed().into_builtin()
    }
}

impl Indexer for Shared {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match self.0.as_indexer() {
            Some(i) => i.get(idx),
            None => Err(ExecutionError::UnexpectedType {
                got: self.0.get_type().name().to_owned(),
                want: "indexable".to_owned(),
            }),
        }
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// A list or map evaluation result as a value that can be bound again at O(1) per clone. Its elements are what the
/// evaluation made of them: [`Shared`] when they come from bound values, so nothing below the top is copied.
pub fn share(value: Box<dyn Val + 'static>) -> Box<dyn Val + 'static> {
    Box::new(Shared(Arc::from(value)))
}

/// Converts an evaluation result into a value that can be bound again: lists and maps become [`Shared`] (so later
/// comprehensions over it do not deep-copy elements), scalars stay the built-in values the standard library expects.
pub fn from_value(value: cel::Value) -> Result<Box<dyn Val + 'static>, ExecutionError> {
    match value {
        cel::Value::List(items) => {
            let items = items
                .iter()
                .cloned()
                .map(from_value)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Box::new(Shared(Arc::new(CelList::from(items)))))
        }
        cel::Value::Map(map) => {
            let mut out = HashMap::with_capacity(map.map.len());
            for (k, v) in map.map.iter() {
                let key = match k {
                    cel::objects::Key::Int(i) => CelMapKey::from(*i),
                    cel::objects::Key::Uint(u) => CelMapKey::UInt(CelUInt::from(*u)),
                    cel::objects::Key::Bool(b) => CelMapKey::from(*b),
                    cel::objects::Key::String(s) => CelMapKey::from(s.to_string()),
                };
                out.insert(key, from_value(v.clone())?);
            }
            Ok(Box::new(Shared(Arc::new(CelMap::from(out)))))
        }
        other => other.try_into(),
    }
}
