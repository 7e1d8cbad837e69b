//! Reading a client's JSON without losing the digits of its numbers.
//!
//! `serde_json` reads a JSON number that is not a 64-bit integer through an `f64`, so
//! `12.34999999999999999999` becomes `12.35` and `12345678901234567890123` becomes
//! `1.2345678901234568e22` before any GraphQL scalar sees it. [`keep_exact_numbers`]
//! rewrites such a number as a JSON string holding the client's literal text, so the
//! exact `Decimal` scalar reads (and refuses) what was written, and an `Int` or `Float`
//! argument refuses a string instead of taking a rounded value. A number that an `f64`
//! carries exactly as written (every integer within 64 bits; `12.35`, `0.1`, `1e3`,
//! whose shortest `f64` text has the same decimal value) stays a number.
//!
//! One pass over the bytes, copying only when a number is rewritten; the caller has
//! already bounded the size of the text.

use std::borrow::Cow;

/// `text` with every JSON number that an `f64` would not carry exactly replaced by a
/// string of its literal text. Anything that is not valid JSON stays as it is, for the
/// JSON parser to refuse.
pub fn keep_exact_numbers(text: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => i = skip_string(text, i),
            b'-' | b'0'..=b'9' => {
                let end = number_end(text, i);
                let literal = &text[i..end];
                if !survives_f64(literal) {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(text.len() + 16));
                    o.extend_from_slice(&text[copied..i]);
                    o.push(b'"');
                    o.extend_from_slice(literal);
                    o.push(b'"');
                    copied = end;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.extend_from_slice(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The index just past the string starting at `start` (a `"`), or the end of `text`.
fn skip_string(text: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

/// The index just past the run of number characters starting at `start`.
fn number_end(text: &[u8], start: usize) -> usize {
    let len = text[start..]
        .iter()
        .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .count();
    start + len
}

/// Whether the number `literal` reaches a GraphQL scalar with the value it has: an
/// integer `serde_json` keeps as one, or a number whose `f64`, written in its shortest
/// form (as the scalars read it), has the same decimal value. Text that is not a JSON
/// number is left for the parser (true).
fn survives_f64(literal: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(literal) else {
        return true;
    };
    let Some(written) = Canonical::of(text) else {
        return true;
    };
    if fits_f64_digits(text) {
        return true;
    }
    let Ok(number) = serde_json::from_str::<serde_json::Number>(text) else {
        // A valid number the parser cannot hold (beyond the range of an f64).
        return false;
    };
    if number.is_i64() || number.is_u64() {
        return true;
    }
    Canonical::of(&number.to_string()).is_some_and(|read| read == written)
}

/// Whether `text`, a JSON number, is short enough to need no check: without an
/// exponent, at most 30 characters (so well within the normal range of an f64) and at
/// most 15 significant digits, which every f64 carries and gives back as written
/// (integers of up to 18 digits are 64-bit integers, kept as they are).
fn fits_f64_digits(text: &str) -> bool {
    if text.len() > 30 || text.contains(['e', 'E']) {
        return false;
    }
    let digits = text.bytes().filter(u8::is_ascii_digit);
    if !text.contains('.') {
        return digits.count() <= 18;
    }
    digits.skip_while(|b| *b == b'0').count() <= 15
}

/// A decimal value as `±0.digits × 10^point`, where `digits` are `int` then `frac`
/// without leading or trailing zeros; zero has no digits and no sign.
#[derive(Debug)]
struct Canonical<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
    point: i64,
}

impl PartialEq for Canonical<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.negative == other.negative
            && self.point == other.point
            && self
                .int
                .iter()
                .chain(self.frac)
                .eq(other.int.iter().chain(other.frac))
    }
}

impl<'a> Canonical<'a> {
    /// Reads a JSON number (`-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`); the `f64`
    /// forms `serde_json` writes (`12.35`, `1.2345678901234568e22`, `1e-7`) are JSON
    /// numbers too. `None` when `text` is not one.
    fn of(text: &'a str) -> Option<Canonical<'a>> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits_only(int)
            || (int.len() > 1 && int.starts_with('0'))
            || (mantissa.contains('.') && frac.is_empty())
            || !digits_only(frac)
        {
            return None;
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
                if unsigned.is_empty() || !digits_only(unsigned) {
                    return None;
                }
                // A longer exponent is beyond any f64 anyway: read it as the largest.
                let magnitude: i64 = unsigned.parse().unwrap_or(i64::MAX / 2);
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        // The digits of int and frac as one run, without leading or trailing zeros.
        let (int, frac) = (int.as_bytes(), frac.as_bytes());
        let lead = int.iter().take_while(|b| **b == b'0').count();
        let (int, frac, point) = if lead == int.len() {
            let zeros = frac.iter().take_while(|b| **b == b'0').count();
            (&int[..0], &frac[zeros..], -(zeros as i64))
        } else {
            (&int[lead..], frac, (int.len() - lead) as i64)
        };
        let (int, frac) = if frac.iter().all(|b| *b == b'0') {
            let keep = int.len() - int.iter().rev().take_while(|b| **b == b'0').count();
            (&int[..keep], &frac[..0])
        } else {
            let keep = frac.len() - frac.iter().rev().take_while(|b| **b == b'0').count();
            (int, &frac[..keep])
        };
        if int.is_empty() && frac.is_empty() {
            return Some(Canonical {
                negative: false,
                int,
                frac,
                point: 0,
            });
        }
        Some(Canonical {
            negative,
            int,
            frac,
            point: point.saturating_add(exponent),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(text: &str) -> String {
        String::from_utf8(keep_exact_numbers(text.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn numbers_an_f64_would_round_become_their_literal_text() {
        assert_eq!(
            rewrite(r#"{"a":12.34999999999999999999}"#),
            r#"{"a":"12.34999999999999999999"}"#
        );
        assert_eq!(
            rewrite(r#"{"a": [12345678901234567890123, -1e400, 1E-400]}"#),
            r#"{"a": ["12345678901234567890123", "-1e400", "1E-400"]}"#
        );
        assert_eq!(
            rewrite(r#"{"a":0.10000000000000000001,"b":9007199254740993.5}"#),
            r#"{"a":"0.10000000000000000001","b":"9007199254740993.5"}"#
        );
    }

    #[test]
    fn numbers_an_f64_carries_as_written_stay_numbers_without_a_copy() {
        for text in [
            r#"{"a":12.35,"b":0.1,"c":-0.5,"d":1e3,"e":1.5E+2,"f":0,"g":-0.0,"h":100}"#,
            r#"{"i":9223372036854775807,"u":18446744073709551615,"n":-9223372036854775808}"#,
            r#"{"x":12.350,"y":0.000001,"z":123456789.125,"w":1e-7,"v":2.5e-300}"#,
            r#"[1, 2.5, {"s": "12.34999999999999999999 in a string", "t": "\"1.000000000000000000001"}]"#,
        ] {
            assert!(
                matches!(keep_exact_numbers(text.as_bytes()), Cow::Borrowed(_)),
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_json_is_left_for_the_parser() {
        for text in [
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":--1}",
            "{\"a\":\"open",
            "-",
            "1e",
        ] {
            assert_eq!(rewrite(text), text);
        }
        assert!(
            serde_json::from_slice::<serde_json::Value>(&keep_exact_numbers(b"{\"a\":01}"))
                .is_err()
        );
    }

    #[test]
    fn the_rewritten_text_parses_to_strings_where_digits_would_be_lost() {
        let body =
            br#"{"query":"q","variables":{"input":{"amount":12.34999999999999999999,"n":3}}}"#;
        let v: serde_json::Value = serde_json::from_slice(&keep_exact_numbers(body)).unwrap();
        assert_eq!(v["variables"]["input"]["amount"], "12.34999999999999999999");
        assert_eq!(v["variables"]["input"]["n"], 3);
    }

    #[test]
    fn short_numbers_need_no_check_and_long_ones_are_checked() {
        for short in [
            "12.35",
            "-0.000123456789012345",
            "123456789012345678",
            "0.1",
        ] {
            assert!(fits_f64_digits(short), "{short}");
        }
        for long in [
            "1234567890123456789",
            "0.1234567890123456",
            "1e3",
            "12.34999999999999999999",
        ] {
            assert!(!fits_f64_digits(long), "{long}");
        }
        // Checked the long way, 16 or more significant digits can still be exact.
        assert!(survives_f64(b"0.1234567890123456"));
        assert!(!survives_f64(b"0.12345678901234567"));
    }

    #[test]
    fn canonical_values_ignore_zeros_and_notation() {
        let c = |s| Canonical::of(s).unwrap();
        assert_eq!(c("12.35"), c("1.235e1"));
        assert_eq!(c("1000"), c("1e3"));
        assert_eq!(c("1000.0"), c("1E+3"));
        assert_eq!(c("0.00012"), c("1.2e-4"));
        assert_eq!(c("-0.0"), c("0"));
        assert_ne!(c("12.35"), c("-12.35"));
        assert_ne!(c("12.35"), c("12.34999999999999999999"));
        assert_eq!(c("1e99999999999999999999999").point, i64::MAX / 2 + 1);
    }
}
