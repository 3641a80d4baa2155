//! Request-derived text made safe for the logs.
//!
//! Anything a client sends (uid, name, namespace, kind, user, and policy messages that quote the object) is bounded and
//! escaped before it reaches a log field, so a request cannot forge a log line (newlines), drive a terminal (ANSI
//! escapes), reorder displayed text (bidirectional overrides) or flood the log (a megabyte-long name).
//!
//! - Control characters (C0, DEL, C1: newline, carriage return, escape, ...) and the invisible Unicode format and
//!   separator characters (zero-width, bidirectional overrides and isolates, line and paragraph separators, BOM) are
//!   written as `\u{..}` escapes.
//! - Text longer than the bound is cut at a character boundary and ends with `...[+N bytes]`.
//!
//! The results are recorded as string fields, so each log format also quotes them in its own way (text: a Rust string
//! literal, JSON: a JSON string): a space or `=` in a name cannot start a forged `key=value` pair either.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest identifier field (uid, name, namespace, kind, user) written to a log line, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

/// Longest message (a policy's error, denial or warning) written to a log line, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Most messages of one kind listed in one log line.
pub const MAX_MESSAGES: usize = 16;

/// An identifier field from a request, bounded to [`MAX_FIELD_BYTES`] and escaped.
pub fn field(value: &str) -> Cow<'_, str> {
    bounded(value, MAX_FIELD_BYTES)
}

/// A message that may quote a request, bounded to [`MAX_MESSAGE_BYTES`] and escaped.
pub fn message(value: &str) -> Cow<'_, str> {
    bounded(value, MAX_MESSAGE_BYTES)
}

/// At most [`MAX_MESSAGES`] messages, each as [`message`], and a last entry saying how many were left out.
pub fn messages(values: &[String]) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = values
        .iter()
        .take(MAX_MESSAGES)
        .map(|value| message(value))
        .collect();
    if values.len() > MAX_MESSAGES {
        out.push(Cow::Owned(format!(
            "...[+{} more]",
            values.len() - MAX_MESSAGES
        )));
    }
    out
}

/// `value` with unsafe characters escaped, cut to at most `max` bytes (plus the marker). Borrowed when nothing changes,
/// which is the common case: no allocation on the request path.
pub fn bounded(value: &str, max: usize) -> Cow<'_, str> {
    if value.len() <= max && !value.chars().any(needs_escape) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len().min(max) + 24);
    for (at, c) in value.char_indices() {
        let before = out.len();
        if needs_escape(c) {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            let _ = write!(out, "...[+{} bytes]", value.len() - at);
            break;
        }
    }
    Cow::Owned(out)
}

/// Characters a log line must not carry raw.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for value in [
            "",
            "nginx-7d4b9c",
            "kube-system",
            "system:serviceaccount:a:b",
            "日本語 é",
        ] {
            assert!(matches!(field(value), Cow::Borrowed(v) if v == value));
        }
    }

    #[test]
    fn controls_and_invisible_formatting_are_escaped() {
        for (value, expected) in [
            ("a\nb", "a\\u{a}b"),
            ("a\r\nINFO forged", "a\\u{d}\\u{a}INFO forged"),
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("tab\there", "tab\\u{9}here"),
            ("nul\0", "nul\\u{0}"),
            ("c1\u{85}\u{9b}", "c1\\u{85}\\u{9b}"),
            ("rtl\u{202e}gnp.exe", "rtl\\u{202e}gnp.exe"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("\u{feff}bom", "\\u{feff}bom"),
            ("del\u{7f}", "del\\u{7f}"),
        ] {
            assert_eq!(field(value), expected, "{value:?}");
        }
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_with_a_marker() {
        let long = "x".repeat(1_000_000);
        let cut = field(&long);
        assert_eq!(
            cut,
            format!("{}...[+{} bytes]", "x".repeat(256), 1_000_000 - 256)
        );

        // A multi-byte character straddling the bound is left out whole.
        let wide = format!("{}é", "x".repeat(255));
        let cut = field(&wide);
        assert!(cut.starts_with(&"x".repeat(255)));
        assert!(cut.ends_with("...[+2 bytes]"), "{cut}");

        // Escapes count against the bound, and are never cut in half.
        let escapes = "\n".repeat(100);
        let cut = field(&escapes);
        let kept = cut.split("...[").next().unwrap_or_default();
        assert_eq!(kept.len() % "\\u{a}".len(), 0, "{cut}");
        assert!(kept.len() <= MAX_FIELD_BYTES);
        assert_eq!(
            message(&"y".repeat(5000)).len(),
            1024 + "...[+3976 bytes]".len()
        );
    }

    #[test]
    fn message_lists_are_bounded() {
        let many: Vec<String> = (0..40).map(|i| format!("m{i}\n")).collect();
        let listed = messages(&many);
        assert_eq!(listed.len(), MAX_MESSAGES + 1);
        assert_eq!(listed[0], "m0\\u{a}");
        assert_eq!(listed[MAX_MESSAGES], "...[+24 more]");
        assert_eq!(messages(&many[..2]).len(), 2);
    }
}
