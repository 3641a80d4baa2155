//! Kyverno's time functions. Times are RFC 3339 strings (`2026-01-02T15:04:05Z`), durations Go durations (`1h30m`);
//! results are formatted as Go's `time.RFC3339` (whole seconds, `Z` for a zero offset) and `Duration.String()`.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, SecondsFormat, TimeZone, Timelike, Utc};
use serde_json::Value;

use super::{Args, Function};
use crate::eval::Interp;
use crate::units::{format_duration, parse_duration};
use crate::JmesError;

pub(crate) static FUNCTIONS: &[Function] = &[
    Function::new("time_now", 0, Some(0), time_now),
    Function::new("time_now_utc", 0, Some(0), time_now_utc),
    Function::new("time_add", 2, Some(2), time_add),
    Function::new("time_parse", 2, Some(2), time_parse),
    Function::new("time_since", 3, Some(3), time_since),
    Function::new("time_to_cron", 1, Some(1), time_to_cron),
    Function::new("time_utc", 1, Some(1), time_utc),
    Function::new("time_diff", 2, Some(2), time_diff),
    Function::new("time_before", 2, Some(2), time_before),
    Function::new("time_after", 2, Some(2), time_after),
    Function::new("time_between", 3, Some(3), time_between),
    Function::new("time_truncate", 2, Some(2), time_truncate),
];

type Time = DateTime<FixedOffset>;

/// Go's `time.RFC3339` output.
pub(crate) fn rfc3339(t: &Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn time_arg(a: &Args<'_, '_>, i: usize) -> Result<Time, JmesError> {
    let text = a.string(i)?;
    DateTime::parse_from_rfc3339(text).map_err(|e| {
        a.error(format!(
            "argument {}: invalid RFC 3339 time {text:?}: {e}",
            i + 1
        ))
    })
}

fn duration_arg(a: &Args<'_, '_>, i: usize) -> Result<i64, JmesError> {
    let text = a.string(i)?;
    parse_duration(text)
        .ok_or_else(|| a.error(format!("argument {}: invalid duration {text:?}", i + 1)))
}

/// `t2 - t1` in nanoseconds, saturating like Go's `Time.Sub`.
fn sub_nanos(t2: &Time, t1: &Time) -> i64 {
    let secs = i128::from(t2.timestamp()) - i128::from(t1.timestamp());
    let nanos = secs * 1_000_000_000 + i128::from(t2.timestamp_subsec_nanos())
        - i128::from(t1.timestamp_subsec_nanos());
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

fn now() -> Time {
    Utc::now().fixed_offset()
}

fn time_now(_: &mut Interp<'_>, _: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::String(rfc3339(&chrono::Local::now().fixed_offset())))
}

fn time_now_utc(_: &mut Interp<'_>, _: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::String(rfc3339(&now())))
}

fn time_add(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let t = time_arg(a, 0)?;
    let d = duration_arg(a, 1)?;
    let sum = t
        .checked_add_signed(chrono::Duration::nanoseconds(d))
        .ok_or_else(|| a.error("time out of range"))?;
    Ok(Value::String(rfc3339(&sum)))
}

fn time_parse(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let layout = a.string(0)?;
    let text = a.string(1)?;
    let t = parse_layout(layout, text).map_err(|e| a.error(e.to_string()))?;
    Ok(Value::String(rfc3339(&t)))
}

fn time_since(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let layout = a.string(0)?;
    let parse = |i: usize| -> Result<Time, JmesError> {
        if layout.is_empty() {
            time_arg(a, i)
        } else {
            parse_layout(layout, a.string(i)?).map_err(|e| a.error(e.to_string()))
        }
    };
    let t1 = parse(1)?;
    let t2 = if a.string(2)?.is_empty() {
        now()
    } else {
        parse(2)?
    };
    Ok(Value::String(format_duration(sub_nanos(&t2, &t1))))
}

fn time_to_cron(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let t = time_arg(a, 0)?;
    Ok(Value::String(format!(
        "{} {} {} {} {}",
        t.minute(),
        t.hour(),
        t.day(),
        t.month(),
        t.weekday().num_days_from_sunday()
    )))
}

fn time_utc(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::String(rfc3339(
        &time_arg(a, 0)?.with_timezone(&Utc).fixed_offset(),
    )))
}

fn time_diff(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (t1, t2) = (time_arg(a, 0)?, time_arg(a, 1)?);
    Ok(Value::String(format_duration(sub_nanos(&t2, &t1))))
}

fn time_before(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::Bool(time_arg(a, 0)? < time_arg(a, 1)?))
}

fn time_after(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    Ok(Value::Bool(time_arg(a, 0)? > time_arg(a, 1)?))
}

fn time_between(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let (t, start, end) = (time_arg(a, 0)?, time_arg(a, 1)?, time_arg(a, 2)?);
    Ok(Value::Bool(t > start && t < end))
}

/// Seconds from 0001-01-01T00:00:00Z (Go's zero time) to the Unix epoch.
const ZERO_TO_UNIX: i128 = 62_135_596_800;

fn time_truncate(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let t = time_arg(a, 0)?;
    let d = duration_arg(a, 1)?;
    if d <= 0 {
        return Ok(Value::String(rfc3339(&t)));
    }
    // Go truncates relative to its zero time, whatever the zone.
    let since_zero = (i128::from(t.timestamp()) + ZERO_TO_UNIX) * 1_000_000_000
        + i128::from(t.timestamp_subsec_nanos());
    let rem = since_zero.rem_euclid(i128::from(d));
    let back = i64::try_from(rem).map_err(|_| a.error("time out of range"))?;
    let truncated = t
        .checked_sub_signed(chrono::Duration::nanoseconds(back))
        .ok_or_else(|| a.error("time out of range"))?;
    Ok(Value::String(rfc3339(&truncated)))
}

// ---------------------------------------------------------------------------------------------------------------
// Go time layouts ("Mon Jan 2 15:04:05 MST 2006")

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    YearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm,
    Tz,
    /// `Z` allowed for zero; then hh[:mm[:ss]] per the flags.
    Offset {
        z: bool,
        colon: bool,
        minutes: bool,
        seconds: bool,
    },
    /// `.000` (fixed digits) or `.999` (optional).
    Frac {
        digits: usize,
        optional: bool,
    },
}

/// A piece of a Go layout.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Text matched as written.
    Literal(String),
    /// A layout element.
    Chunk(Chunk),
}

/// Why a time did not parse with a Go layout (`time_parse`, `time_since`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum LayoutError {
    /// The text does not have the layout's shape.
    #[error("cannot parse {text:?} as {layout:?}")]
    Mismatch {
        /// The time text.
        text: String,
        /// The layout.
        layout: String,
    },
    /// The text goes on after the layout ends.
    #[error("cannot parse {text:?} as {layout:?}: extra text {rest:?}")]
    ExtraText {
        /// The time text.
        text: String,
        /// The layout.
        layout: String,
        /// What is left over.
        rest: String,
    },
    /// A 12-hour clock hour past 12.
    #[error("hour out of range in {0:?}")]
    Hour(String),
    /// A day the month (or year) does not have.
    #[error("day out of range in {0:?}")]
    Day(String),
    /// A time of day that does not exist.
    #[error("time out of range in {0:?}")]
    Time(String),
    /// A zone offset out of range.
    #[error("invalid zone offset in {0:?}")]
    Offset(String),
    /// A local time the zone does not have.
    #[error("invalid time {0:?}")]
    Invalid(String),
}

/// Split a Go layout into literal text and layout elements, following Go's `nextStdChunk`.
fn tokenize(layout: &str) -> Vec<Token> {
    let b = layout.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    let starts = |i: usize, s: &str| layout.get(i..).is_some_and(|rest| rest.starts_with(s));
    let lower_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_lowercase);
    while i < b.len() {
        let (chunk, len) = match b.get(i).copied().unwrap_or(0) {
            b'J' if starts(i, "January") => (Some(Chunk::LongMonth), 7),
            b'J' if starts(i, "Jan") && !lower_at(i + 3) => (Some(Chunk::Month), 3),
            b'M' if starts(i, "Monday") => (Some(Chunk::LongWeekDay), 6),
            b'M' if starts(i, "Mon") && !lower_at(i + 3) => (Some(Chunk::WeekDay), 3),
            b'M' if starts(i, "MST") => (Some(Chunk::Tz), 3),
            b'0' if starts(i, "002") => (Some(Chunk::ZeroYearDay), 3),
            b'0' if starts(i, "01") => (Some(Chunk::ZeroMonth), 2),
            b'0' if starts(i, "02") => (Some(Chunk::ZeroDay), 2),
            b'0' if starts(i, "03") => (Some(Chunk::ZeroHour12), 2),
            b'0' if starts(i, "04") => (Some(Chunk::ZeroMinute), 2),
            b'0' if starts(i, "05") => (Some(Chunk::ZeroSecond), 2),
            b'0' if starts(i, "06") => (Some(Chunk::Year), 2),
            b'1' if starts(i, "15") => (Some(Chunk::Hour), 2),
            b'1' => (Some(Chunk::NumMonth), 1),
            b'2' if starts(i, "2006") => (Some(Chunk::LongYear), 4),
            b'2' => (Some(Chunk::Day), 1),
            b'_' if starts(i, "_2006") => {
                literal.push('_');
                (Some(Chunk::LongYear), 5)
            }
            b'_' if starts(i, "__2") => (Some(Chunk::YearDay), 3),
            b'_' if starts(i, "_2") => (Some(Chunk::UnderDay), 2),
            b'3' => (Some(Chunk::Hour12), 1),
            b'4' => (Some(Chunk::Minute), 1),
            b'5' => (Some(Chunk::Second), 1),
            b'P' if starts(i, "PM") => (Some(Chunk::Pm), 2),
            b'p' if starts(i, "pm") => (Some(Chunk::Pm), 2),
            b'-' | b'Z' => {
                let z = b.get(i) == Some(&b'Z');
                let rest = layout.get(i + 1..).unwrap_or("");
                let forms: [(&str, bool, bool, bool); 5] = [
                    ("07:00:00", true, true, true),
                    ("070000", false, true, true),
                    ("07:00", true, true, false),
                    ("0700", false, true, false),
                    ("07", false, false, false),
                ];
                match forms.iter().find(|(f, ..)| rest.starts_with(f)) {
                    Some((f, colon, minutes, seconds)) => (
                        Some(Chunk::Offset {
                            z,
                            colon: *colon,
                            minutes: *minutes,
                            seconds: *seconds,
                        }),
                        1 + f.len(),
                    ),
                    None => (None, 1),
                }
            }
            c @ (b'.' | b',') => {
                let digit = b.get(i + 1).copied();
                if matches!(digit, Some(b'0') | Some(b'9')) {
                    let run = b
                        .get(i + 1..)
                        .map_or(0, |r| r.iter().take_while(|x| Some(**x) == digit).count());
                    if b.get(i + 1 + run).is_some_and(u8::is_ascii_digit) {
                        (None, 1)
                    } else {
                        let _ = c;
                        (
                            Some(Chunk::Frac {
                                digits: run,
                                optional: digit == Some(b'9'),
                            }),
                            1 + run,
                        )
                    }
                } else {
                    (None, 1)
                }
            }
            _ => (None, 1),
        };
        match chunk {
            Some(chunk) => {
                if !literal.is_empty() {
                    out.push(Token::Literal(std::mem::take(&mut literal)));
                }
                out.push(Token::Chunk(chunk));
                i += len;
            }
            None => {
                let ch = layout
                    .get(i..)
                    .and_then(|r| r.chars().next())
                    .unwrap_or('\u{fffd}');
                literal.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    if !literal.is_empty() {
        out.push(Token::Literal(literal));
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Parse `text` with a Go layout (`time.Parse`): no zone in the text means UTC.
pub(crate) fn parse_layout(layout: &str, text: &str) -> Result<Time, LayoutError> {
    let bad = || LayoutError::Mismatch {
        text: text.to_string(),
        layout: layout.to_string(),
    };
    let mut rest = text;
    let (mut year, mut month, mut day, mut yday) = (0i32, 1u32, 1u32, 0u32);
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    let mut pm: Option<bool> = None;
    let mut offset = 0i32;
    // Take 1..=max digits (exactly `max` when `fixed`).
    fn digits(rest: &mut &str, min: usize, max: usize) -> Option<u32> {
        let n = rest
            .bytes()
            .take(max)
            .take_while(u8::is_ascii_digit)
            .count();
        if n < min {
            return None;
        }
        let (num, tail) = rest.split_at(n);
        *rest = tail;
        num.parse().ok()
    }
    fn name(rest: &mut &str, names: &[&str], short: bool) -> Option<u32> {
        for (i, full) in names.iter().enumerate() {
            let want = if short {
                full.get(..3).unwrap_or(full)
            } else {
                full
            };
            if rest.len() >= want.len()
                && rest
                    .get(..want.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(want))
            {
                *rest = rest.get(want.len()..).unwrap_or("");
                return u32::try_from(i).ok();
            }
        }
        None
    }
    let chunks = tokenize(layout);
    for (index, chunk) in chunks.iter().enumerate() {
        let next_is_fraction = matches!(
            chunks.get(index + 1),
            Some(Token::Chunk(Chunk::Frac { .. }))
        );
        match chunk.clone() {
            Token::Literal(lit) => {
                rest = skip_literal(rest, &lit).ok_or_else(bad)?;
            }
            Token::Chunk(c) => match c {
                Chunk::LongMonth => month = name(&mut rest, &MONTHS, false).ok_or_else(bad)? + 1,
                Chunk::Month => month = name(&mut rest, &MONTHS, true).ok_or_else(bad)? + 1,
                Chunk::LongWeekDay => {
                    name(&mut rest, &DAYS, false).ok_or_else(bad)?;
                }
                Chunk::WeekDay => {
                    name(&mut rest, &DAYS, true).ok_or_else(bad)?;
                }
                Chunk::NumMonth => month = digits(&mut rest, 1, 2).ok_or_else(bad)?,
                Chunk::ZeroMonth => month = digits(&mut rest, 2, 2).ok_or_else(bad)?,
                Chunk::Day => day = digits(&mut rest, 1, 2).ok_or_else(bad)?,
                Chunk::UnderDay => {
                    rest = rest.strip_prefix(' ').unwrap_or(rest);
                    day = digits(&mut rest, 1, 2).ok_or_else(bad)?;
                }
                Chunk::ZeroDay => day = digits(&mut rest, 2, 2).ok_or_else(bad)?,
                Chunk::YearDay => {
                    rest = rest.trim_start_matches(' ');
                    yday = digits(&mut rest, 1, 3).ok_or_else(bad)?;
                }
                Chunk::ZeroYearDay => yday = digits(&mut rest, 3, 3).ok_or_else(bad)?,
                Chunk::Hour => hour = digits(&mut rest, 1, 2).ok_or_else(bad)?,
                Chunk::Hour12 => hour = digits(&mut rest, 1, 2).ok_or_else(bad)?,
                Chunk::ZeroHour12 => hour = digits(&mut rest, 2, 2).ok_or_else(bad)?,
                Chunk::Minute => minute = digits(&mut rest, 1, 2).ok_or_else(bad)?,
                Chunk::ZeroMinute => minute = digits(&mut rest, 2, 2).ok_or_else(bad)?,
                Chunk::Second | Chunk::ZeroSecond => {
                    let min = if c == Chunk::ZeroSecond { 2 } else { 1 };
                    second = digits(&mut rest, min, 2).ok_or_else(bad)?;
                    // Go accepts a fraction after seconds even when the layout has none.
                    if next_is_fraction {
                        continue;
                    }
                    if let Some(after) = rest.strip_prefix(['.', ',']) {
                        if after.starts_with(|ch: char| ch.is_ascii_digit()) {
                            rest = after;
                            nanos = fraction(&mut rest);
                        }
                    }
                }
                Chunk::LongYear => {
                    year = i32::try_from(digits(&mut rest, 4, 4).ok_or_else(bad)?)
                        .map_err(|_| bad())?;
                }
                Chunk::Year => {
                    let y = i32::try_from(digits(&mut rest, 2, 2).ok_or_else(bad)?)
                        .map_err(|_| bad())?;
                    year = if y >= 69 { 1900 + y } else { 2000 + y };
                }
                Chunk::Pm => {
                    let word = rest.get(..2).ok_or_else(bad)?;
                    pm = Some(match word.to_ascii_uppercase().as_str() {
                        "PM" => true,
                        "AM" => false,
                        _ => return Err(bad()),
                    });
                    rest = rest.get(2..).unwrap_or("");
                }
                Chunk::Tz => {
                    let n = rest.bytes().take_while(u8::is_ascii_uppercase).count();
                    if n < 3 {
                        return Err(bad());
                    }
                    rest = rest.get(n..).unwrap_or("");
                }
                Chunk::Offset {
                    z,
                    colon,
                    minutes,
                    seconds,
                } => {
                    if z {
                        if let Some(after) = rest.strip_prefix('Z') {
                            rest = after;
                            continue;
                        }
                    }
                    let sign = match rest.as_bytes().first() {
                        Some(b'+') => 1,
                        Some(b'-') => -1,
                        _ => return Err(bad()),
                    };
                    rest = rest.get(1..).unwrap_or("");
                    let h = digits(&mut rest, 2, 2).ok_or_else(bad)?;
                    let mut m = 0;
                    let mut s = 0;
                    if minutes {
                        if colon {
                            rest = rest.strip_prefix(':').ok_or_else(bad)?;
                        }
                        m = digits(&mut rest, 2, 2).ok_or_else(bad)?;
                    }
                    if seconds {
                        if colon {
                            rest = rest.strip_prefix(':').ok_or_else(bad)?;
                        }
                        s = digits(&mut rest, 2, 2).ok_or_else(bad)?;
                    }
                    offset = sign * i32::try_from(h * 3600 + m * 60 + s).map_err(|_| bad())?;
                }
                Chunk::Frac {
                    digits: n,
                    optional,
                } => {
                    if optional {
                        if let Some(after) = rest.strip_prefix(['.', ',']) {
                            rest = after;
                            nanos = fraction(&mut rest);
                        }
                    } else {
                        let after = rest.strip_prefix(['.', ',']).ok_or_else(bad)?;
                        let count = after.bytes().take_while(u8::is_ascii_digit).count();
                        if count != n {
                            return Err(bad());
                        }
                        rest = after;
                        nanos = fraction(&mut rest);
                    }
                }
            },
        }
    }
    if !rest.is_empty() {
        return Err(LayoutError::ExtraText {
            text: text.to_string(),
            layout: layout.to_string(),
            rest: rest.to_string(),
        });
    }
    if let Some(pm) = pm {
        if hour > 12 {
            return Err(LayoutError::Hour(text.to_string()));
        }
        hour = match (pm, hour) {
            (true, h) if h < 12 => h + 12,
            (false, 12) => 0,
            (_, h) => h,
        };
    }
    let date = if yday > 0 {
        NaiveDate::from_yo_opt(year, yday)
    } else {
        NaiveDate::from_ymd_opt(year, month, day)
    }
    .ok_or_else(|| LayoutError::Day(text.to_string()))?;
    let naive = date
        .and_hms_nano_opt(hour, minute, second, nanos)
        .ok_or_else(|| LayoutError::Time(text.to_string()))?;
    let zone =
        FixedOffset::east_opt(offset).ok_or_else(|| LayoutError::Offset(text.to_string()))?;
    zone.from_local_datetime(&naive)
        .single()
        .ok_or_else(|| LayoutError::Invalid(text.to_string()))
}

/// Match layout literal text: a run of spaces in the layout matches a run of spaces in the value (Go's `skip`).
fn skip_literal<'t>(mut value: &'t str, mut prefix: &str) -> Option<&'t str> {
    while let Some(c) = prefix.chars().next() {
        if c == ' ' {
            if !value.is_empty() && !value.starts_with(' ') {
                return None;
            }
            prefix = prefix.trim_start_matches(' ');
            value = value.trim_start_matches(' ');
            continue;
        }
        value = value.strip_prefix(c)?;
        prefix = prefix.get(c.len_utf8()..)?;
    }
    Some(value)
}

/// Consume up to nine significant fraction digits (more are read and ignored) as nanoseconds.
fn fraction(rest: &mut &str) -> u32 {
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, tail) = rest.split_at(n);
    *rest = tail;
    let mut value = 0u32;
    for (i, d) in digits.bytes().take(9).enumerate() {
        let _ = i;
        value = value * 10 + u32::from(d - b'0');
    }
    let used = digits.len().min(9);
    for _ in used..9 {
        value *= 10;
    }
    value
}
