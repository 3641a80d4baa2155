//! Kubernetes resource quantities and Go durations, as Kyverno's arithmetic functions (and its condition operators)
//! understand them.

use std::cmp::Ordering;
use std::fmt;

const NANO: i128 = 1_000_000_000;
/// Largest magnitude kept, in nano units (10^36); beyond that parsing fails rather than overflowing.
const LIMIT: i128 = 1_000_000_000_000_000_000_000_000_000_000_000_000;

/// How a quantity prints: with binary suffixes (`Ki`, `Mi`, ...), decimal suffixes (`m`, `k`, `M`, ...) or a decimal
/// exponent (`1e3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityFormat {
    /// `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// `n`, `u`, `m`, (none), `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSI,
    /// `e3`, `E-6`, ...
    DecimalExponent,
}

/// A Kubernetes resource quantity (`100Mi`, `500m`, `1.5`, `2e3`), exact to 10^-9 (smaller fractions round up, as
/// Kubernetes does).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

/// `value / divisor`, rounded away from zero (Kubernetes rounds sub-nano fractions up).
fn div_round_up(value: i128, divisor: i128) -> i128 {
    let q = value / divisor;
    if value % divisor != 0 {
        if value < 0 {
            q - 1
        } else {
            q + 1
        }
    } else {
        q
    }
}

impl Quantity {
    /// Parse Kubernetes quantity syntax: an optionally signed decimal number followed by a binary suffix, a decimal
    /// suffix or a decimal exponent. Returns `None` when the text is not a quantity.
    pub fn parse(text: &str) -> Option<Quantity> {
        let bytes = text.as_bytes();
        let mut pos = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                pos = 1;
                true
            }
            Some(b'+') => {
                pos = 1;
                false
            }
            _ => false,
        };
        let int_start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let int_digits = text.get(int_start..pos)?;
        let mut frac_digits = "";
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            let frac_start = pos;
            while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            frac_digits = text.get(frac_start..pos)?;
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return None;
        }
        let suffix = text.get(pos..)?;
        let (exp10, exp2, format) = match suffix {
            "" => (0, 0, QuantityFormat::DecimalSI),
            "n" => (-9, 0, QuantityFormat::DecimalSI),
            "u" => (-6, 0, QuantityFormat::DecimalSI),
            "m" => (-3, 0, QuantityFormat::DecimalSI),
            "k" => (3, 0, QuantityFormat::DecimalSI),
            "M" => (6, 0, QuantityFormat::DecimalSI),
            "G" => (9, 0, QuantityFormat::DecimalSI),
            "T" => (12, 0, QuantityFormat::DecimalSI),
            "P" => (15, 0, QuantityFormat::DecimalSI),
            "E" => (18, 0, QuantityFormat::DecimalSI),
            "Ki" => (0, 10, QuantityFormat::BinarySI),
            "Mi" => (0, 20, QuantityFormat::BinarySI),
            "Gi" => (0, 30, QuantityFormat::BinarySI),
            "Ti" => (0, 40, QuantityFormat::BinarySI),
            "Pi" => (0, 50, QuantityFormat::BinarySI),
            "Ei" => (0, 60, QuantityFormat::BinarySI),
            other => {
                let exp = other.strip_prefix(['e', 'E'])?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty()
                    || digits.len() > 4
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                (exp.parse::<i32>().ok()?, 0, QuantityFormat::DecimalExponent)
            }
        };
        // Significant digits as one integer, then scale to nano units (trailing fraction zeros change nothing).
        let frac_digits = frac_digits.trim_end_matches('0');
        let digits = format!("{int_digits}{frac_digits}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 36 {
            return None;
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let scale = exp10 + 9 - i32::try_from(frac_digits.len()).ok()?;
        let mut nanos = if scale >= 0 {
            mantissa.checked_mul(pow10(u32::try_from(scale).ok()?)?)?
        } else {
            let divisor = pow10(u32::try_from(-scale).ok()?);
            match divisor {
                Some(d) => div_round_up(mantissa, d),
                None => i128::from(mantissa != 0),
            }
        };
        nanos = nanos.checked_mul(1i128.checked_shl(exp2)?)?;
        if nanos > LIMIT {
            return None;
        }
        Some(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// A quantity of `nanos` 10^-9 units printed in `format`.
    pub fn from_nanos(nanos: i128, format: QuantityFormat) -> Option<Quantity> {
        (nanos.abs() <= LIMIT).then_some(Quantity { nanos, format })
    }

    /// The value in 10^-9 units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The print format.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// The value as a float (approximate for very large or very precise values).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / 1e9
    }

    /// The sum; the format is the receiver's (or `other`'s when the receiver is zero), as in Kubernetes.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.nanos == 0 {
            other.format
        } else {
            self.format
        };
        Quantity::from_nanos(self.nanos.checked_add(other.nanos)?, format)
    }

    /// The difference, formatted like [`Quantity::checked_add`].
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.nanos == 0 {
            other.format
        } else {
            self.format
        };
        Quantity::from_nanos(self.nanos.checked_sub(other.nanos)?, format)
    }
}

impl fmt::Display for Quantity {
    /// The canonical Kubernetes form: `1536Mi`, `1500m`, `2k`, `1200`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == QuantityFormat::BinarySI
            && self.nanos % NANO == 0
            && self.nanos.abs() >= 1024 * NANO
        {
            let units = self.nanos / NANO;
            let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut best = 0usize;
            for k in 1..suffixes.len() {
                let divisor = 1i128 << (10 * k);
                if units % divisor == 0 {
                    best = k;
                } else {
                    break;
                }
            }
            let suffix = suffixes.get(best).copied().unwrap_or("");
            return write!(f, "{}{suffix}", units / (1i128 << (10 * best)));
        }
        // Largest exponent (a multiple of 3, from -9 to 18) that keeps the mantissa an integer.
        let mut exp = -9i32;
        for candidate in (-6..=18).step_by(3) {
            let Some(divisor) = u32::try_from(candidate + 9).ok().and_then(pow10) else {
                break;
            };
            if self.nanos % divisor == 0 {
                exp = candidate;
            } else {
                break;
            }
        }
        let divisor = u32::try_from(exp + 9).ok().and_then(pow10).unwrap_or(1);
        let mantissa = self.nanos / divisor;
        if self.format == QuantityFormat::DecimalExponent {
            return if exp == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

/// Parse a Go duration (`time.ParseDuration`): `300ms`, `-1.5h`, `2h45m`, `1µs`, `0`. Units `ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`; a unit is required except for `0`. Returns nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = rest.get(..int_len)?;
        rest = rest.get(int_len..)?;
        let mut frac_part = "";
        if let Some(after) = rest.strip_prefix('.') {
            let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = after.get(..frac_len)?;
            rest = after.get(frac_len..)?;
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: i128 = match rest.get(..unit_len)? {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = rest.get(unit_len..)?;
        if int_part.len() > 20 {
            return None;
        }
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = whole.checked_mul(unit)?;
        if !frac_part.is_empty() {
            let frac = frac_part.get(..frac_part.len().min(18))?;
            let numerator: i128 = frac.parse().ok()?;
            let scale = pow10(u32::try_from(frac.len()).ok()?)?;
            value = value.checked_add(numerator.checked_mul(unit)? / scale)?;
        }
        total = total.checked_add(value)?;
        if total > i128::from(i64::MAX) {
            return None;
        }
    }
    i64::try_from(if negative { -total } else { total }).ok()
}

/// Format nanoseconds as Go's `Duration.String()` does: `1h0m0s`, `1m30s`, `1.5s`, `500ms`, `0s`.
pub fn format_duration(nanos: i64) -> String {
    let negative = nanos < 0;
    let mut u = nanos.unsigned_abs();
    let sign = if negative { "-" } else { "" };
    if u == 0 {
        return "0s".to_string();
    }
    if u < 1_000_000_000 {
        let (unit, prec) = if u < 1_000 {
            ("ns", 0)
        } else if u < 1_000_000 {
            ("µs", 3)
        } else {
            ("ms", 6)
        };
        let (int, frac) = split_frac(u, prec);
        return format!("{sign}{int}{frac}{unit}");
    }
    let (secs, frac) = split_frac(u, 9);
    u = secs;
    let s = u % 60;
    u /= 60;
    if u == 0 {
        return format!("{sign}{s}{frac}s");
    }
    let m = u % 60;
    let h = u / 60;
    if h == 0 {
        format!("{sign}{m}m{s}{frac}s")
    } else {
        format!("{sign}{h}h{m}m{s}{frac}s")
    }
}

/// Split `v` into its integer part and `.fraction` (trailing zeros removed) at `prec` decimal places.
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return (int, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (int, format!(".{}", digits.trim_end_matches('0')))
}
