//! GraphQL scalars of the contract: `Decimal` (exact decimal text) and `Date` (`YYYY-MM-DD`).
//! `DateTime` is async-graphql's RFC 3339 `DateTime<Utc>`.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::NaiveDate;

use crate::money;

/// An exact decimal, written as a string (`"12.34"`). Numbers are accepted on input and
/// read through their decimal text, never through binary floating point arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal(pub money::Decimal);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        let text = match &value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(InputValueError::expected_type(value)),
        };
        money::Decimal::parse(&text)
            .map(Decimal)
            .map_err(|e| InputValueError::custom(e.to_string()))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

impl From<money::Money> for Decimal {
    fn from(m: money::Money) -> Self {
        Decimal(m.to_decimal())
    }
}

impl From<money::Total> for Decimal {
    fn from(t: money::Total) -> Self {
        Decimal(t.to_decimal())
    }
}

/// A calendar date, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub NaiveDate);

pub const DATE_FORMAT: &str = "%Y-%m-%d";

impl Date {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        // Exactly 10 characters: chrono alone would accept "2024-1-5".
        if text.len() != 10 {
            return Err(format!("expected a date as YYYY-MM-DD, got {text:?}"));
        }
        NaiveDate::parse_from_str(text, DATE_FORMAT)
            .map(Date)
            .map_err(|_| format!("expected a date as YYYY-MM-DD, got {text:?}"))
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format(DATE_FORMAT))
    }
}

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Date::parse(s).map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_scalar_accepts_strings_and_numbers_exactly() {
        let d = <Decimal as ScalarType>::parse(Value::from("12.34")).unwrap();
        assert_eq!(d.to_value(), Value::from("12.34"));
        let n: serde_json::Number = serde_json::from_str("0.1").unwrap();
        let d = <Decimal as ScalarType>::parse(Value::Number(n)).unwrap();
        assert_eq!(d.0.to_string(), "0.1");
        assert!(<Decimal as ScalarType>::parse(Value::from("1e3")).is_err());
        assert!(<Decimal as ScalarType>::parse(Value::Boolean(true)).is_err());
    }

    #[test]
    fn date_scalar_is_strict() {
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2024-1-5",
            "24-01-05",
            "2024/01/05",
            "",
            "2024-01-05T00:00:00Z",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
    }
}
