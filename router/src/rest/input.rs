//! Request input: amounts (JSON numbers or strings, read from their exact text),
//! dates, lower-case enums, JSON bodies read field by field so errors name the field.

use contract::ErrorCode;
use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::error::ApiError;

/// Whether `s` is a plain decimal: `-?digits(.digits)?`.
pub fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// An amount from a raw JSON value: a number (its exact text) or a string holding a
/// decimal. Never goes through `f64`.
pub fn amount_from_raw(field: &str, raw: &RawValue) -> Result<String, ApiError> {
    let text = raw.get().trim();
    let candidate = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|_| ApiError::invalid(field, "must be a number or a decimal string"))?
            .trim()
            .to_owned()
    } else {
        text.to_owned()
    };
    if is_decimal(&candidate) {
        Ok(candidate)
    } else {
        Err(ApiError::invalid(
            field,
            "must be a decimal number like 12.50 (no exponent)",
        ))
    }
}

/// A date as `YYYY-MM-DD`; RFC 3339 date-times are cut to their date.
pub fn date(field: &str, text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    // Everything valid is ASCII; checking first also keeps the byte slicing below on
    // character boundaries.
    if !text.is_ascii() {
        return Err(ApiError::invalid(field, "must be YYYY-MM-DD or RFC 3339"));
    }
    let day = if text.len() > 10 {
        let (d, rest) = text.split_at(10);
        let rest_ok = rest.starts_with(['T', 't', ' '])
            && rest.len() >= 9
            && rest[1..].bytes().all(|b| {
                b.is_ascii_digit() || matches!(b, b':' | b'.' | b'+' | b'-' | b'Z' | b'z')
            });
        if !rest_ok {
            return Err(ApiError::invalid(field, "must be YYYY-MM-DD or RFC 3339"));
        }
        d
    } else {
        text
    };
    let b = day.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let valid = shape && {
        let y: u32 = day[0..4].parse().unwrap_or(0);
        let m: u32 = day[5..7].parse().unwrap_or(0);
        let d: u32 = day[8..10].parse().unwrap_or(0);
        let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let max = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => 0,
        };
        y >= 1 && (1..=max).contains(&d)
    };
    if valid {
        Ok(day.to_owned())
    } else {
        Err(ApiError::invalid(field, "must be YYYY-MM-DD or RFC 3339"))
    }
}

/// An enum value in any case (`monthly`, `MONTHLY`), checked against `allowed`.
pub fn enum_value(field: &str, text: &str, allowed: &[&str]) -> Result<String, ApiError> {
    let upper = text.trim().to_ascii_uppercase();
    if allowed.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "must be one of {}",
                allowed
                    .iter()
                    .map(|a| a.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// A JSON object body whose fields are read one by one.
pub struct Body(HashMap<String, Box<RawValue>>);

impl Body {
    /// Parses a JSON object; 415 for a non-JSON content type, 400 for bad JSON.
    pub fn parse(headers: &HeaderMap, bytes: &[u8]) -> Result<Self, ApiError> {
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            if !ct.starts_with("application/json") && !ct.contains("+json") {
                return Err(ApiError::coded(
                    ErrorCode::UnsupportedMediaType,
                    "The body must be application/json",
                ));
            }
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(HashMap::new()));
        }
        serde_json::from_slice::<HashMap<String, Box<RawValue>>>(bytes)
            .map(Self)
            .map_err(|e| {
                ApiError::coded(
                    ErrorCode::BadRequest,
                    format!("The body must be a JSON object: {e}"),
                )
            })
    }

    fn raw(&self, field: &str) -> Option<&RawValue> {
        self.0
            .get(field)
            .map(AsRef::as_ref)
            .filter(|r| r.get().trim() != "null")
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// Whether the field is present and explicitly `null`.
    pub fn is_null(&self, field: &str) -> bool {
        self.0.get(field).is_some_and(|r| r.get().trim() == "null")
    }

    pub fn get<T: DeserializeOwned>(&self, field: &str, what: &str) -> Result<Option<T>, ApiError> {
        match self.raw(field) {
            None => Ok(None),
            Some(r) => serde_json::from_str(r.get())
                .map(Some)
                .map_err(|_| ApiError::invalid(field, format!("must be {what}"))),
        }
    }

    pub fn string(&self, field: &str) -> Result<Option<String>, ApiError> {
        self.get(field, "a string")
    }

    /// Copies each of `fields` that is present (a string) into `input`.
    pub fn copy_strings(
        &self,
        fields: &[&str],
        input: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ApiError> {
        for &f in fields {
            if let Some(v) = self.string(f)? {
                input.insert(f.into(), serde_json::Value::String(v));
            }
        }
        Ok(())
    }

    pub fn required_string(&self, field: &str) -> Result<String, ApiError> {
        self.string(field)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::invalid(field, "is required"))
    }

    pub fn amount(&self, field: &str) -> Result<Option<String>, ApiError> {
        self.raw(field)
            .map(|r| amount_from_raw(field, r))
            .transpose()
    }

    pub fn date(&self, field: &str) -> Result<Option<String>, ApiError> {
        self.string(field)?.map(|s| date(field, &s)).transpose()
    }

    pub fn enum_value(&self, field: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        self.string(field)?
            .map(|s| enum_value(field, &s, allowed))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn amounts_keep_the_exact_text_of_numbers_and_strings() {
        assert_eq!(amount_from_raw("amount", &raw("12.50")).unwrap(), "12.50");
        assert_eq!(amount_from_raw("amount", &raw("\"0.1\"")).unwrap(), "0.1");
        assert_eq!(
            amount_from_raw("amount", &raw("12345678901234567.89")).unwrap(),
            "12345678901234567.89"
        );
    }

    #[test]
    fn amounts_that_are_not_decimals_are_rejected_naming_the_field() {
        for bad in ["1e3", "\"abc\"", "true", "\"\"", "\"1.\""] {
            let e = amount_from_raw("amount", &raw(bad)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert_eq!(e.body.details[0]["field"], "amount");
        }
    }

    #[test]
    fn dates_accept_plain_days_and_rfc3339() {
        assert_eq!(date("date", "2024-02-29").unwrap(), "2024-02-29");
        assert_eq!(date("date", "2024-03-01T10:00:00Z").unwrap(), "2024-03-01");
        assert_eq!(
            date("date", "2024-03-01T10:00:00.123+02:00").unwrap(),
            "2024-03-01"
        );
        assert!(date("date", "2023-02-29").is_err());
        assert!(date("date", "2024-13-01").is_err());
        assert!(date("date", "yesterday").is_err());
        // Multi-byte characters around byte 10 are a 400, not a panic.
        assert!(date("date", "2024-01-0\u{e9}T10:00:00Z").is_err());
        assert!(date("date", "q\u{ac}\u{8b}\u{b5}\u{2}\u{d4}\u{8f}\u{91}\u{b1}").is_err());
    }

    #[test]
    fn enums_are_accepted_in_lower_case() {
        assert_eq!(
            enum_value("type", "income", &["EXPENSE", "INCOME"]).unwrap(),
            "INCOME"
        );
        assert!(enum_value("type", "gift", &["EXPENSE", "INCOME"]).is_err());
    }
}
