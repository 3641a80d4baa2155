//! Kyverno's miscellaneous functions: paths, semantic versions, image references, URLs, collections, `random`.

use std::cmp::Ordering;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::strings::text_arg;
use super::{as_integer, Args, Function};
use crate::eval::Interp;
use crate::JmesError;

pub(crate) static FUNCTIONS: &[Function] = &[
    Function::new("path_canonicalize", 1, Some(1), path_canonicalize),
    Function::new("semver_compare", 2, Some(2), semver_compare),
    Function::new("image_normalize", 1, Some(1), image_normalize),
    Function::new("is_external_url", 1, Some(1), is_external_url),
    Function::new("lookup", 2, Some(2), lookup),
    Function::new("items", 3, Some(3), items),
    Function::new("object_from_lists", 2, Some(2), object_from_lists),
    Function::new("random", 1, Some(1), random),
];

// ---------------------------------------------------------------------------------------------------------------
// path_canonicalize

fn path_canonicalize(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let path = a.string(0)?;
    Ok(Value::String(if path.is_empty() {
        String::new()
    } else {
        clean_path(path)
    }))
}

/// Lexically clean a slash-separated path as Go's `filepath.Clean` does on Linux.
pub(crate) fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// semver_compare

#[derive(Debug, Clone, PartialEq, Eq)]
enum PreId {
    Num(u64),
    Alpha(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<PreId>,
}

fn parse_numeric(part: &str) -> Option<u64> {
    if part.is_empty()
        || (part.len() > 1 && part.starts_with('0'))
        || !part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    part.parse().ok()
}

impl Version {
    /// Strict semantic version: `MAJOR.MINOR.PATCH[-pre][+build]`.
    fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let core_and_pre = text.split_once('+').map_or(text, |(c, _)| c);
        let (core, pre) = match core_and_pre.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (core_and_pre, None),
        };
        let mut nums = core.split('.');
        let major = parse_numeric(nums.next()?)?;
        let minor = parse_numeric(nums.next()?)?;
        let patch = parse_numeric(nums.next()?)?;
        if nums.next().is_some() {
            return None;
        }
        let mut ids = Vec::new();
        if let Some(pre) = pre {
            for id in pre.split('.') {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return None;
                }
                ids.push(match id.bytes().all(|b| b.is_ascii_digit()) {
                    true => PreId::Num(parse_numeric(id)?),
                    false => PreId::Alpha(id.to_string()),
                });
            }
        }
        Some(Version {
            major,
            minor,
            patch,
            pre: ids,
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let core =
            (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        for (x, y) in self.pre.iter().zip(&other.pre) {
            let ord = match (x, y) {
                (PreId::Num(p), PreId::Num(q)) => p.cmp(q),
                (PreId::Num(_), PreId::Alpha(_)) => Ordering::Less,
                (PreId::Alpha(_), PreId::Num(_)) => Ordering::Greater,
                (PreId::Alpha(p), PreId::Alpha(q)) => p.cmp(q),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One `op version` comparator of a range.
fn comparator_matches(version: &Version, op: &str, target: &Version) -> Option<bool> {
    let ord = version.cmp(target);
    Some(match op {
        "" | "=" | "==" => ord == Ordering::Equal,
        "!" | "!=" => ord != Ordering::Equal,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        _ => return None,
    })
}

/// Expand one range term (operator + version, possibly with `x` wildcards) into comparators.
fn expand_term(op: &str, version: &str) -> Option<Vec<(String, Version)>> {
    let parts: Vec<&str> = version.split('.').collect();
    let wild = |p: &str| matches!(p, "x" | "X" | "*");
    let first_wild = parts.iter().position(|p| wild(p));
    let Some(at) = first_wild else {
        return Some(vec![(op.to_string(), Version::parse(version)?)]);
    };
    if parts.iter().skip(at).any(|p| !wild(p)) || at == 0 || parts.len() > 3 {
        return None;
    }
    let major = parse_numeric(parts.first()?)?;
    let (low, high) = if at == 1 {
        (
            Version {
                major,
                minor: 0,
                patch: 0,
                pre: vec![],
            },
            Version {
                major: major.checked_add(1)?,
                minor: 0,
                patch: 0,
                pre: vec![],
            },
        )
    } else {
        let minor = parse_numeric(parts.get(1)?)?;
        (
            Version {
                major,
                minor,
                patch: 0,
                pre: vec![],
            },
            Version {
                major,
                minor: minor.checked_add(1)?,
                patch: 0,
                pre: vec![],
            },
        )
    };
    Some(match op {
        "" | "=" | "==" => vec![(">=".into(), low), ("<".into(), high)],
        ">" => vec![(">=".into(), high)],
        ">=" => vec![(">=".into(), low)],
        "<" => vec![("<".into(), low)],
        "<=" => vec![("<".into(), high)],
        _ => return None,
    })
}

/// Evaluate a range (`">=1.0.0 <2.0.0 || 3.x"`) for a version; `None` when the range is invalid.
fn range_matches(version: &Version, range: &str) -> Option<bool> {
    let mut any = false;
    for alternative in range.split("||") {
        let tokens: Vec<&str> = alternative.split_whitespace().collect();
        if tokens.is_empty() {
            return None;
        }
        let mut all = true;
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            i += 1;
            let op_len = token
                .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
                .unwrap_or(token.len());
            let (op, mut ver) = token.split_at(op_len);
            if ver.is_empty() {
                ver = tokens.get(i)?;
                i += 1;
            }
            for (op, target) in expand_term(op, ver)? {
                if !comparator_matches(version, &op, &target)? {
                    all = false;
                }
            }
        }
        any |= all;
    }
    Some(any)
}

fn semver_compare(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let version_text = a.string(0)?;
    let version = Version::parse(version_text)
        .ok_or_else(|| a.error(format!("invalid semantic version {version_text:?}")))?;
    let range = a.string(1)?;
    range_matches(&version, range)
        .map(Value::Bool)
        .ok_or_else(|| a.error(format!("invalid semantic version range {range:?}")))
}

// ---------------------------------------------------------------------------------------------------------------
// image_normalize

/// Why `image_normalize` failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ImageError {
    /// The built-in reference grammar did not compile (never expected).
    #[error("internal error: reference patterns")]
    Patterns,
    /// The text is not an image reference.
    #[error("invalid image reference {0:?}")]
    Invalid(String),
}

fn reference_patterns() -> Option<&'static (Regex, Regex, Regex, Regex)> {
    static PATTERNS: OnceLock<Option<(Regex, Regex, Regex, Regex)>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            Some((
                Regex::new(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$").ok()?,
                Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").ok()?,
                Regex::new(r"^[\w][\w.-]{0,127}$").ok()?,
                Regex::new(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$").ok()?,
            ))
        })
        .as_ref()
}

/// Normalize an image reference as Kyverno does: default registry `docker.io`, default tag `latest`; with a digest
/// the result is `registry/path@digest`.
pub(crate) fn normalize_image(image: &str) -> Result<String, ImageError> {
    let (domain_re, component_re, tag_re, digest_re) =
        reference_patterns().ok_or(ImageError::Patterns)?;
    let invalid = || ImageError::Invalid(image.to_string());
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest.get(last_slash..).and_then(|tail| tail.rfind(':')) {
        Some(colon) => {
            let split = last_slash + colon;
            (
                rest.get(..split).ok_or_else(invalid)?,
                rest.get(split + 1..),
            )
        }
        None => (rest, None),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, remainder)
        }
        _ => ("docker.io", name),
    };
    if !domain_re.is_match(registry)
        || path.is_empty()
        || !path.split('/').all(|c| component_re.is_match(c))
    {
        return Err(invalid());
    }
    if let Some(tag) = tag {
        if !tag_re.is_match(tag) {
            return Err(invalid());
        }
    }
    if let Some(digest) = digest {
        if !digest_re.is_match(digest) {
            return Err(invalid());
        }
        return Ok(format!("{registry}/{path}@{digest}"));
    }
    Ok(format!("{registry}/{path}:{}", tag.unwrap_or("latest")))
}

fn image_normalize(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    normalize_image(a.string(0)?)
        .map(Value::String)
        .map_err(|e| a.error(e.to_string()))
}

// ---------------------------------------------------------------------------------------------------------------
// is_external_url

fn is_external_url(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let text = a.string(0)?;
    let Some((scheme, rest)) = text.split_once("://") else {
        return Ok(Value::Bool(false));
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Ok(Value::Bool(false));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
        return Ok(Value::Bool(false));
    }
    let external = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            !(ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified())
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let first = ip.segments().first().copied().unwrap_or(0);
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(ip.is_loopback() || ip.is_unspecified() || unique_local || link_local)
        }
        Err(_) => true,
    };
    Ok(Value::Bool(external))
}

// ---------------------------------------------------------------------------------------------------------------
// collections

fn lookup(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    match a.value(0)? {
        Value::Object(map) => {
            let key = a.string(1)?;
            Ok(map.get(key).cloned().unwrap_or(Value::Null))
        }
        Value::Array(items) => {
            let index = match a.value(1)? {
                Value::Number(n) => as_integer(n)
                    .ok_or_else(|| a.error(format!("argument 2: expected an integer, got {n}")))?,
                other => return Err(a.type_error(1, "number", other)),
            };
            Ok(usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .unwrap_or(Value::Null))
        }
        other => Err(a.type_error(0, "object or array", other)),
    }
}

fn items(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let key_name = a.string(1)?;
    let value_name = a.string(2)?;
    let pair = |k: Value, v: &Value| {
        let mut m = Map::new();
        m.insert(key_name.to_string(), k);
        m.insert(value_name.to_string(), v.clone());
        Value::Object(m)
    };
    match a.value(0)? {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            Ok(Value::Array(
                keys.into_iter()
                    .filter_map(|k| map.get(k).map(|v| pair(Value::String(k.clone()), v)))
                    .collect(),
            ))
        }
        Value::Array(list) => Ok(Value::Array(
            list.iter()
                .enumerate()
                .map(|(i, v)| pair(Value::from(i), v))
                .collect(),
        )),
        other => Err(a.type_error(0, "object or array", other)),
    }
}

fn object_from_lists(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let keys = a.array(0)?;
    let values = a.array(1)?;
    let mut out = Map::new();
    for (i, key) in keys.iter().enumerate() {
        let key = match key {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => {
                let args = [super::Arg::Value(std::borrow::Cow::Borrowed(key))];
                text_arg(&Args::new(a.name, &args), 0)?.into_owned()
            }
            other => {
                return Err(a.error(format!(
                    "keys must be strings, found {}",
                    super::type_name(other)
                )))
            }
        };
        out.insert(key, values.get(i).cloned().unwrap_or(Value::Null));
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------------------------
// random

/// Longest pattern `random` accepts.
pub(crate) const MAX_RANDOM_PATTERN: usize = 1024;
/// Longest string `random` generates.
pub(crate) const MAX_RANDOM_OUTPUT: usize = 4096;
/// Repetitions generated for an unbounded `*` / `+` / `{n,}` beyond its minimum.
const UNBOUNDED_EXTRA: u32 = 10;

/// Most generation steps one `random` call may take (zero-width repetitions do not grow the output).
const MAX_RANDOM_STEPS: u32 = 100_000;

/// A small xorshift generator seeded from the process's random hasher keys and the clock, with a step budget.
struct Rng(u64, u32);

impl Rng {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        Rng(hasher.finish() | 1, 0)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn random(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let pattern = a.string(0)?;
    generate(pattern)
        .map(Value::String)
        .map_err(|e| a.error(e.to_string()))
}

/// Why `random` could not generate a string.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum RandomError {
    /// An empty pattern.
    #[error("no pattern provided")]
    Empty,
    /// A pattern longer than the limit.
    #[error("pattern longer than {} bytes", MAX_RANDOM_PATTERN)]
    TooLong,
    /// A pattern that is not a regular expression.
    #[error("invalid pattern {pattern:?}: {source}")]
    Invalid {
        /// The pattern.
        pattern: String,
        /// The parser's error.
        #[source]
        source: Box<regex_syntax::Error>,
    },
    /// Generating would take too many steps.
    #[error("pattern too expensive to generate")]
    TooExpensive,
    /// The output would be longer than the limit.
    #[error("pattern generates more than {} bytes", MAX_RANDOM_OUTPUT)]
    TooLongOutput,
    /// A character class that matches nothing.
    #[error("pattern has an empty character class")]
    EmptyClass,
    /// A repetition whose minimum alone is past the output limit.
    #[error("repetition {{{0}}} too large")]
    Repetition(u32),
}

/// Generate a random string matching a regular expression.
pub(crate) fn generate(pattern: &str) -> Result<String, RandomError> {
    if pattern.is_empty() {
        return Err(RandomError::Empty);
    }
    if pattern.len() > MAX_RANDOM_PATTERN {
        return Err(RandomError::TooLong);
    }
    let hir = regex_syntax::ParserBuilder::new()
        .nest_limit(32)
        .build()
        .parse(pattern)
        .map_err(|e| RandomError::Invalid {
            pattern: pattern.to_string(),
            source: Box::new(e),
        })?;
    let mut out = String::new();
    let mut rng = Rng::new();
    emit(&hir, &mut rng, &mut out)?;
    Ok(out)
}

fn emit(hir: &regex_syntax::hir::Hir, rng: &mut Rng, out: &mut String) -> Result<(), RandomError> {
    use regex_syntax::hir::{Class, HirKind};
    rng.1 += 1;
    if rng.1 > MAX_RANDOM_STEPS {
        return Err(RandomError::TooExpensive);
    }
    if out.len() > MAX_RANDOM_OUTPUT {
        return Err(RandomError::TooLongOutput);
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => out.push_str(&String::from_utf8_lossy(&lit.0)),
        HirKind::Class(Class::Unicode(class)) => {
            // Prefer printable ASCII for broad classes such as `.` or `[^a]`.
            let mut printable =
                regex_syntax::hir::ClassUnicode::new([regex_syntax::hir::ClassUnicodeRange::new(
                    ' ', '~',
                )]);
            printable.intersect(class);
            let ranges = if printable.ranges().is_empty() {
                class.ranges()
            } else {
                printable.ranges()
            };
            let total: u64 = ranges
                .iter()
                .map(|r| u64::from(r.end()) - u64::from(r.start()) + 1)
                .sum();
            if total == 0 {
                return Err(RandomError::EmptyClass);
            }
            let mut pick = rng.below(total);
            for r in ranges {
                let size = u64::from(r.end()) - u64::from(r.start()) + 1;
                if pick < size {
                    let code =
                        u32::try_from(u64::from(r.start()) + pick).unwrap_or(u32::from(r.start()));
                    out.push(char::from_u32(code).unwrap_or(r.start()));
                    break;
                }
                pick -= size;
            }
        }
        HirKind::Class(Class::Bytes(class)) => {
            let ranges = class.ranges();
            let total: u64 = ranges
                .iter()
                .map(|r| u64::from(r.end()) - u64::from(r.start()) + 1)
                .sum();
            let mut pick = rng.below(total.max(1));
            for r in ranges {
                let size = u64::from(r.end()) - u64::from(r.start()) + 1;
                if pick < size {
                    let byte = u8::try_from(u64::from(r.start()) + pick).unwrap_or(r.start());
                    out.push(char::from(byte));
                    break;
                }
                pick -= size;
            }
        }
        HirKind::Repetition(rep) => {
            let max = rep
                .max
                .unwrap_or_else(|| rep.min.saturating_add(UNBOUNDED_EXTRA));
            if rep.min as usize > MAX_RANDOM_OUTPUT {
                return Err(RandomError::Repetition(rep.min));
            }
            let count = rep.min
                + u32::try_from(rng.below(u64::from(max.saturating_sub(rep.min)) + 1)).unwrap_or(0);
            for _ in 0..count {
                emit(&rep.sub, rng, out)?;
                if out.len() > MAX_RANDOM_OUTPUT {
                    return Err(RandomError::TooLongOutput);
                }
            }
        }
        HirKind::Capture(cap) => emit(&cap.sub, rng, out)?,
        HirKind::Concat(parts) => {
            for part in parts {
                emit(part, rng, out)?;
            }
        }
        HirKind::Alternation(options) => {
            let len = u64::try_from(options.len()).unwrap_or(1);
            if let Some(choice) = usize::try_from(rng.below(len))
                .ok()
                .and_then(|i| options.get(i))
            {
                emit(choice, rng, out)?;
            }
        }
    }
    Ok(())
}
