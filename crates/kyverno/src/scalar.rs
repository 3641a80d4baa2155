//! Scalar helpers shared by patterns and conditions: wildcards, Go durations, Kubernetes quantities, semver, and Go's
//! `fmt.Sprint` rendering of JSON values.

use serde_json::Value;

use policyctl_jmespath::units::{self, Quantity};
pub use policyctl_jmespath::{has_wildcards, wildcard_match as wildcard};

/// A wildcard pattern compiled once: its common shapes (`*`, `?*`, a literal, `prefix*`, `*suffix`) are answered
/// without the general matcher, with the same answers as [`wildcard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    /// `*`: anything.
    Any,
    /// `?*` / `*?`: at least one character.
    NonEmpty,
    /// No wildcard: the same text.
    Exact(String),
    /// `literal*`.
    Prefix(String),
    /// `*literal`.
    Suffix(String),
    /// `*literal*`.
    Contains(String),
    /// Anything else.
    General(String),
}

impl Glob {
    /// Compile a pattern.
    pub fn new(pattern: &str) -> Glob {
        let literal = |l: &&str| !has_wildcards(l);
        if pattern == "*" {
            Glob::Any
        } else if !has_wildcards(pattern) {
            Glob::Exact(pattern.to_string())
        } else if pattern == "?*" || pattern == "*?" {
            Glob::NonEmpty
        } else if let Some(l) = pattern.strip_suffix('*').filter(literal) {
            Glob::Prefix(l.to_string())
        } else if let Some(l) = pattern.strip_prefix('*').filter(literal) {
            Glob::Suffix(l.to_string())
        } else if let Some(l) = pattern
            .strip_prefix('*')
            .and_then(|p| p.strip_suffix('*'))
            .filter(literal)
        {
            Glob::Contains(l.to_string())
        } else {
            Glob::General(pattern.to_string())
        }
    }

    /// Whether `text` matches ([`wildcard`] of the pattern and `text`).
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::NonEmpty => !text.is_empty(),
            Glob::Exact(l) => text == l,
            Glob::Prefix(l) => text.starts_with(l.as_str()),
            Glob::Suffix(l) => text.ends_with(l.as_str()),
            Glob::Contains(l) => text.contains(l.as_str()),
            Glob::General(p) => wildcard(p, text),
        }
    }
}

/// Parse a Go `time.ParseDuration` string (surrounding blanks ignored) into seconds, with the one Go-duration
/// parser of the dialect ([`units::parse_duration`], exact nanoseconds).
pub fn parse_duration(text: &str) -> Option<f64> {
    units::parse_duration(text.trim()).map(|nanos| nanos as f64 / 1e9)
}

/// Parse a Kubernetes quantity (`100Mi`, `0.5`, `250m`, `1e3`) into the dialect's one exact quantity type, so a
/// pattern or condition compares quantities exactly as the JMESPath arithmetic functions do.
pub fn parse_quantity(text: &str) -> Option<Quantity> {
    Quantity::parse(text)
}

/// A JSON number as a quantity (exactly, through its decimal text).
pub fn number_quantity(n: &serde_json::Number) -> Option<Quantity> {
    Quantity::parse(&n.to_string())
}

/// A parsed semantic version (major, minor, patch, pre-release).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Semver {
    core: (u64, u64, u64),
    /// Empty pre-release sorts after any pre-release.
    release: bool,
    pre: String,
}

/// Parse `1.2.3`, `v1.2.3`, `1.2.3-rc.1` (build metadata ignored). All three numbers are required.
pub fn parse_semver(text: &str) -> Option<Semver> {
    let s = text.trim().strip_prefix('v').unwrap_or(text.trim());
    let s = s.split('+').next()?;
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, p.to_string()),
        None => (s, String::new()),
    };
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Semver {
        core: (major, minor, patch),
        release: pre.is_empty(),
        pre,
    })
}

/// [`sprint`], borrowing a string value's own text (no copy for the common string keys and values).
pub fn sprint_cow(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(sprint(other)),
    }
}

/// Go's `fmt.Sprint` of a decoded JSON value, as Kyverno stringifies condition keys.
pub fn sprint(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(sprint).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => format!(
            "map[{}]",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", sprint(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (p, t, want) in [
            ("*", "", true),
            ("?*", "", false),
            ("?*", "a", true),
            ("?", "ab", false),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*:latest", "nginx:latest", true),
            ("", "", true),
            ("", "x", false),
            ("*.io/*", "ghcr.io/x", true),
            ("é?", "éa", true),
            ("?", "é", true),
            ("a*é", "abcé", true),
        ] {
            assert_eq!(wildcard(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn compiled_globs_answer_as_the_matcher() {
        let patterns = [
            "*",
            "?*",
            "*?",
            "",
            "abc",
            "abc*",
            "*abc",
            "a*c",
            "?",
            "??",
            "a?c*",
            "**",
            "*é",
            "é*",
            "?é*",
            "registry.example.com/*",
            "*:latest",
            "a\\*",
        ];
        let texts = [
            "",
            "a",
            "é",
            "abc",
            "abcd",
            "xabc",
            "ac",
            "abbc",
            "é",
            "xé",
            "éx",
            "ab",
            "registry.example.com/x",
            "registry.example.com",
            "nginx:latest",
            "a\\x",
        ];
        for p in patterns {
            let g = Glob::new(p);
            for t in texts {
                assert_eq!(g.matches(t), wildcard(p, t), "{p:?} vs {t:?} ({g:?})");
            }
        }
        assert_eq!(Glob::new("?*"), Glob::NonEmpty);
        assert_eq!(Glob::new("ab*"), Glob::Prefix("ab".into()));
        assert_eq!(Glob::new("*ab"), Glob::Suffix("ab".into()));
        assert_eq!(Glob::new("ab"), Glob::Exact("ab".into()));
        assert_eq!(Glob::new("a*b"), Glob::General("a*b".into()));
        assert_eq!(Glob::new("*:*"), Glob::Contains(":".into()));
        assert_eq!(Glob::new("*"), Glob::Any);
    }

    #[test]
    fn durations_quantities_semver() {
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("0"), Some(0.0));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("1.5s"), Some(1.5));
        let q = |t: &str| parse_quantity(t).map(|q| q.as_f64());
        assert_eq!(q("100Mi"), Some(100.0 * 1024.0 * 1024.0));
        assert_eq!(q("250m"), Some(0.25));
        assert_eq!(q("2"), Some(2.0));
        assert_eq!(q("1e3"), Some(1000.0));
        assert_eq!(q("abc"), None);
        assert_eq!(q("1x"), None);
        // Exact: 0.1 + 0.2 is 0.3 as a quantity, where f64 would say otherwise.
        assert_eq!(parse_quantity("300m"), parse_quantity("0.3"));
        assert!(parse_quantity("1Gi") > parse_quantity("1G"));
        assert!(parse_semver("1.10.0") > parse_semver("1.9.3"));
        assert!(parse_semver("v1.0.0-rc.1") < parse_semver("1.0.0"));
        assert_eq!(parse_semver("1.2"), None);
    }

    #[test]
    fn sprint_like_go() {
        assert_eq!(sprint(&serde_json::json!(80)), "80");
        assert_eq!(sprint(&serde_json::json!(true)), "true");
        assert_eq!(sprint(&serde_json::json!(null)), "<nil>");
        for v in [
            serde_json::json!("a b"),
            serde_json::json!(1.5),
            serde_json::json!([1, "x", null]),
            serde_json::json!({"k": [true]}),
        ] {
            assert_eq!(sprint_cow(&v), sprint(&v), "{v}");
        }
        assert!(matches!(
            sprint_cow(&serde_json::json!("s")),
            std::borrow::Cow::Borrowed("s")
        ));
    }
}
