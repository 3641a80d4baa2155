//! Scalar helpers shared by patterns and conditions: wildcards, Go durations, Kubernetes quantities, semver, and Go's
//! `fmt.Sprint` rendering of JSON values.

use serde_json::Value;

/// Kyverno's wildcard match: `*` is any run of characters (possibly empty), `?` exactly one character; everything
/// else is literal. An empty pattern matches only the empty string.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    if pattern.is_ascii() && text.is_ascii() {
        return wildcard_units(pattern.as_bytes(), text.as_bytes());
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    wildcard_units(&p, &t)
}

/// Iterative `*` / `?` matching with backtracking to the last star, over bytes (ASCII) or chars.
fn wildcard_units<T: Copy + PartialEq + From<u8>>(p: &[T], t: &[T]) -> bool {
    let star = T::from(b'*');
    let any = T::from(b'?');
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(c) if *c == star => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == any || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    backtrack = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == star))
}

/// Parse a Go `time.ParseDuration` string into seconds.
pub fn parse_duration(text: &str) -> Option<f64> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let number: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_end..];
    }
    Some(if neg { -total } else { total })
}

/// Parse a Kubernetes quantity (`100Mi`, `0.5`, `250m`, `1e3`) into a number.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let s = text.trim();
    if s.is_empty() || s != text {
        return None;
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    if i == digits_start || !bytes[digits_start..i].iter().any(u8::is_ascii_digit) {
        return None;
    }
    let number: f64 = s[..i].parse().ok()?;
    let suffix = &s[i..];
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        other => {
            let exp = other.strip_prefix(['e', 'E'])?;
            let exp: i32 = exp.parse().ok()?;
            10f64.powi(exp)
        }
    };
    Some(number * factor)
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
    fn durations_quantities_semver() {
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("0"), Some(0.0));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("1.5s"), Some(1.5));
        assert_eq!(parse_quantity("100Mi"), Some(100.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1x"), None);
        assert!(parse_semver("1.10.0") > parse_semver("1.9.3"));
        assert!(parse_semver("v1.0.0-rc.1") < parse_semver("1.0.0"));
        assert_eq!(parse_semver("1.2"), None);
    }

    #[test]
    fn sprint_like_go() {
        assert_eq!(sprint(&serde_json::json!(80)), "80");
        assert_eq!(sprint(&serde_json::json!(true)), "true");
        assert_eq!(sprint(&serde_json::json!(null)), "<nil>");
    }
}
