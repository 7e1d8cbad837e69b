//! Exact money: an `i64` count of minor units plus an ISO 4217 currency.
//!
//! Never floats. Text is parsed digit by digit; a value is rejected when it has more
//! decimals than its currency allows, an exponent, a sign in the wrong place, or a
//! magnitude beyond ±10^13 major units.
//!
//! A sum of amounts is a [`Total`]: `i128` minor units, exact for any number of
//! amounts the product can hold (at the largest amount, 10^17 minor units in a
//! four-decimal currency, it takes more than 10^21 of them to reach its limit).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// Largest magnitude accepted, in major units (10^13).
pub const MAX_MAJOR_UNITS: i64 = 10_000_000_000_000;

/// Why a decimal, a currency or an amount was refused. The message is shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal number: {0:?}")]
    NotDecimal(String),
    #[error("{currency} allows at most {allowed} decimal places")]
    TooManyDecimals { currency: Currency, allowed: u32 },
    #[error("amount is out of range (at most 10^13 in absolute value)")]
    OutOfRange,
    #[error("the total is too large to be represented exactly")]
    TotalOutOfRange,
    #[error("unknown currency code {0:?} (expected an ISO 4217 code such as USD)")]
    UnknownCurrency(String),
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// ISO 4217 active currency codes with their minor-unit exponent.
/// Funds and precious metals without a minor unit are left out on purpose.
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// An ISO 4217 currency code, checked against the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u32,
}

impl Currency {
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };

    /// Parses a code such as `"usd"` or `" EUR "`; surrounding blanks and case are ignored.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .binary_search_by(|(c, _)| c.cmp(&upper.as_str()))
            .map(|i| {
                let (c, exponent) = CURRENCIES[i];
                let bytes = c.as_bytes();
                Currency {
                    code: [bytes[0], bytes[1], bytes[2]],
                    exponent,
                }
            })
            .map_err(|_| MoneyError::UnknownCurrency(code.to_string()))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("currency codes are ASCII from the table")
    }

    /// Number of decimal places of the minor unit (JPY 0, USD 2, KWD 3).
    pub fn exponent(&self) -> u32 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An exact decimal number as written: `mantissa × 10^-scale`.
/// Used for the GraphQL `Decimal` scalar before a currency gives it meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// More digits than this cannot be a valid amount in any currency.
const MAX_DIGITS: usize = 30;

impl Decimal {
    pub fn new(mantissa: i128, scale: u32) -> Self {
        Decimal { mantissa, scale }
    }

    /// Parses `-12.34`, `0.5`, `100`. Rejects exponents, NaN, infinities, blanks inside,
    /// a lone sign or dot, `+`, and leading/trailing dots (`.5`, `5.`).
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let bad = || MoneyError::NotDecimal(text.to_string());
        let s = text.trim();
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => {
                if f.is_empty() {
                    return Err(bad());
                }
                (i, f)
            }
            None => (digits, ""),
        };
        if int_part.is_empty()
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        // Trailing zeros of the fraction carry no value: "1.50" is 1.5.
        let frac_part = frac_part.trim_end_matches('0');
        let int_part = int_part.trim_start_matches('0');
        if int_part.len() + frac_part.len() > MAX_DIGITS {
            return Err(MoneyError::OutOfRange);
        }
        let mut mantissa: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa * 10 + i128::from(b - b'0');
        }
        if negative {
            mantissa = -mantissa;
        }
        Ok(Decimal {
            mantissa,
            scale: frac_part.len() as u32,
        })
    }

    pub fn mantissa(&self) -> i128 {
        self.mantissa
    }

    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// Formats with exactly `places` decimals (the value must fit, see `Money`).
    fn format_minor(minor: i128, places: u32) -> String {
        let negative = minor < 0;
        let digits = minor.unsigned_abs().to_string();
        let places = places as usize;
        let mut out = String::with_capacity(digits.len() + 3);
        if negative {
            out.push('-');
        }
        if places == 0 {
            out.push_str(&digits);
        } else if digits.len() > places {
            let (i, f) = digits.split_at(digits.len() - places);
            out.push_str(i);
            out.push('.');
            out.push_str(f);
        } else {
            out.push_str("0.");
            out.push_str(&"0".repeat(places - digits.len()));
            out.push_str(&digits);
        }
        out
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Decimal::format_minor(self.mantissa, self.scale))
    }
}

impl FromStr for Decimal {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s)
    }
}

/// An amount of money: minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

fn max_minor(currency: Currency) -> i64 {
    MAX_MAJOR_UNITS * 10_i64.pow(currency.exponent())
}

impl Money {
    /// Builds from minor units, refusing magnitudes beyond 10^13 major units.
    pub fn from_minor(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor.unsigned_abs() > max_minor(currency).unsigned_abs() {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    pub fn zero(currency: Currency) -> Self {
        Money {
            amount_minor: 0,
            currency,
        }
    }

    /// Interprets an exact decimal in `currency`.
    pub fn from_decimal(value: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let allowed = currency.exponent();
        if value.scale() > allowed {
            return Err(MoneyError::TooManyDecimals { currency, allowed });
        }
        let factor = 10_i128.pow(allowed - value.scale());
        let minor = value
            .mantissa()
            .checked_mul(factor)
            .ok_or(MoneyError::OutOfRange)?;
        let minor = i64::try_from(minor).map_err(|_| MoneyError::OutOfRange)?;
        Money::from_minor(minor, currency)
    }

    /// Parses text such as `"12.34"` as an amount of `currency`.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        Money::from_decimal(Decimal::parse(text)?, currency)
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_positive(&self) -> bool {
        self.amount_minor > 0
    }

    pub fn to_decimal(&self) -> Decimal {
        Decimal::new(i128::from(self.amount_minor), self.currency.exponent())
    }

    /// The amount as text with the currency's number of decimals: `"12.30"`, `"1000"` (JPY).
    pub fn amount_text(&self) -> String {
        Decimal::format_minor(i128::from(self.amount_minor), self.currency.exponent())
    }

    /// The amount as the shortest exact decimal text: `"12.3"`, `"12"`; suits JSON numbers.
    pub fn amount_text_trimmed(&self) -> String {
        let text = self.amount_text();
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(())
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::OutOfRange)?;
        Money::from_minor(sum, self.currency)
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let diff = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::OutOfRange)?;
        Money::from_minor(diff, self.currency)
    }
}

/// A sum of amounts of one currency, exact at any size the product reaches: `i128` minor
/// units. Unlike [`Money`] it is not limited to the largest amount of one expense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Total {
    minor: i128,
    currency: Currency,
}

impl Total {
    pub fn zero(currency: Currency) -> Self {
        Total { minor: 0, currency }
    }

    pub fn from_minor(minor: i128, currency: Currency) -> Self {
        Total { minor, currency }
    }

    /// Parses exact decimal text in `currency` (the currency's decimals at most).
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let value = Decimal::parse(text)?;
        let allowed = currency.exponent();
        if value.scale() > allowed {
            return Err(MoneyError::TooManyDecimals { currency, allowed });
        }
        let minor = value
            .mantissa()
            .checked_mul(10_i128.pow(allowed - value.scale()))
            .ok_or(MoneyError::TotalOutOfRange)?;
        Ok(Total { minor, currency })
    }

    pub fn minor(&self) -> i128 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Adds minor units of this total's currency.
    pub fn checked_add_minor(&self, minor: i128) -> Result<Total, MoneyError> {
        let minor = self
            .minor
            .checked_add(minor)
            .ok_or(MoneyError::TotalOutOfRange)?;
        Ok(Total { minor, ..*self })
    }

    pub fn checked_add(&self, other: &Total) -> Result<Total, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        self.checked_add_minor(other.minor)
    }

    pub fn checked_add_money(&self, m: &Money) -> Result<Total, MoneyError> {
        self.checked_add(&Total::from(*m))
    }

    pub fn checked_sub(&self, other: &Total) -> Result<Total, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self
            .minor
            .checked_sub(other.minor)
            .ok_or(MoneyError::TotalOutOfRange)?;
        Ok(Total { minor, ..*self })
    }

    /// The minor units for a record that holds a 64-bit number (an event's figure),
    /// saturating beyond it (more than 9,000 of the largest amounts): the exact value
    /// is [`Total::amount_text`].
    pub fn minor_saturating_i64(&self) -> i64 {
        i64::try_from(self.minor).unwrap_or(if self.minor < 0 { i64::MIN } else { i64::MAX })
    }

    /// The total as one amount, when it is within the limit of one amount.
    pub fn to_money(&self) -> Result<Money, MoneyError> {
        let minor = i64::try_from(self.minor).map_err(|_| MoneyError::OutOfRange)?;
        Money::from_minor(minor, self.currency)
    }

    pub fn to_decimal(&self) -> Decimal {
        Decimal::new(self.minor, self.currency.exponent())
    }

    /// The total as text with the currency's number of decimals, every digit exact.
    pub fn amount_text(&self) -> String {
        Decimal::format_minor(self.minor, self.currency.exponent())
    }
}

impl From<Money> for Total {
    fn from(m: Money) -> Self {
        Total {
            minor: i128::from(m.amount_minor),
            currency: m.currency,
        }
    }
}

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_text(), self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_text(), self.currency)
    }
}

/// An input's `amount`: exact in the currency's minor units and greater than 0; a
/// validation error on the `amount` field otherwise.
pub fn positive_amount(value: Decimal, currency: Currency) -> Result<Money, AppError> {
    let m = Money::from_decimal(value, currency).map_err(|e| AppError::money("amount", e))?;
    if !m.is_positive() {
        return Err(AppError::validation(
            "amount",
            "amount must be greater than 0",
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).expect("known currency")
    }

    #[test]
    fn currency_table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn point_one_plus_point_two_is_exactly_point_three() {
        let usd = cur("USD");
        let a = Money::parse("0.1", usd).unwrap();
        let b = Money::parse("0.2", usd).unwrap();
        let sum = a.checked_add(&b).unwrap();
        assert_eq!(sum, Money::parse("0.3", usd).unwrap());
        assert_eq!(sum.amount_text(), "0.30");
        assert_eq!(sum.amount_minor(), 30);
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(cur("JPY").exponent(), 0);
        assert_eq!(cur("usd").exponent(), 2);
        assert_eq!(cur("KWD").exponent(), 3);
        assert_eq!(cur(" eur ").code(), "EUR");
    }

    #[test]
    fn unknown_currencies_are_rejected() {
        for bad in ["", "US", "USDD", "XXX", "ABC", "12$"] {
            assert!(
                matches!(Currency::parse(bad), Err(MoneyError::UnknownCurrency(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn jpy_has_no_decimals() {
        let jpy = cur("JPY");
        assert_eq!(Money::parse("1500", jpy).unwrap().amount_minor(), 1500);
        assert_eq!(Money::parse("1500.0", jpy).unwrap().amount_minor(), 1500);
        assert!(matches!(
            Money::parse("1500.5", jpy),
            Err(MoneyError::TooManyDecimals { allowed: 0, .. })
        ));
        assert_eq!(Money::parse("1500", jpy).unwrap().amount_text(), "1500");
    }

    #[test]
    fn kwd_has_three_decimals() {
        let kwd = cur("KWD");
        let m = Money::parse("1.234", kwd).unwrap();
        assert_eq!(m.amount_minor(), 1234);
        assert_eq!(m.amount_text(), "1.234");
        assert_eq!(Money::parse("0.5", kwd).unwrap().amount_text(), "0.500");
        assert!(Money::parse("1.2345", kwd).is_err());
    }

    #[test]
    fn negative_amounts_parse_and_format() {
        let usd = cur("USD");
        let m = Money::parse("-12.05", usd).unwrap();
        assert_eq!(m.amount_minor(), -1205);
        assert_eq!(m.amount_text(), "-12.05");
        assert_eq!(Money::parse("-0.05", usd).unwrap().amount_text(), "-0.05");
        assert_eq!(
            Money::from_minor(-5, usd).unwrap().amount_text_trimmed(),
            "-0.05"
        );
    }

    #[test]
    fn too_many_decimals_are_rejected_not_rounded() {
        let usd = cur("USD");
        assert!(matches!(
            Money::parse("12.345", usd),
            Err(MoneyError::TooManyDecimals { allowed: 2, .. })
        ));
        // Trailing zeros are not extra precision.
        assert_eq!(Money::parse("12.3400", usd).unwrap().amount_minor(), 1234);
    }

    #[test]
    fn malformed_text_is_rejected() {
        let usd = cur("USD");
        for bad in [
            "", " ", "abc", "NaN", "nan", "inf", "Infinity", "1e5", "1E5", "1.2e3", "+5", "--5",
            "-", ".", ".5", "5.", "1,5", "1 000", "0x10", "1.2.3", "١٢",
        ] {
            assert!(
                matches!(Money::parse(bad, usd), Err(MoneyError::NotDecimal(_))),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn magnitude_is_limited_to_ten_to_the_thirteen() {
        let usd = cur("USD");
        assert!(Money::parse("10000000000000", usd).is_ok());
        assert!(Money::parse("-10000000000000.00", usd).is_ok());
        assert_eq!(
            Money::parse("10000000000000.01", usd),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(
            Money::parse("99999999999999999999999999999999999", usd),
            Err(MoneyError::OutOfRange)
        );
        let max = Money::parse("10000000000000", usd).unwrap();
        let cent = Money::parse("0.01", usd).unwrap();
        assert_eq!(max.checked_add(&cent), Err(MoneyError::OutOfRange));
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let a = Money::parse("1", cur("USD")).unwrap();
        let b = Money::parse("1", cur("EUR")).unwrap();
        assert!(matches!(
            a.checked_add(&b),
            Err(MoneyError::CurrencyMismatch(_, _))
        ));
        assert!(a.checked_sub(&b).is_err());
    }

    #[test]
    fn formatting_pads_and_trims() {
        let usd = cur("USD");
        assert_eq!(Money::parse("12.5", usd).unwrap().amount_text(), "12.50");
        assert_eq!(
            Money::parse("12.5", usd).unwrap().amount_text_trimmed(),
            "12.5"
        );
        assert_eq!(Money::parse("12", usd).unwrap().amount_text_trimmed(), "12");
        assert_eq!(Money::parse("0.07", usd).unwrap().amount_text(), "0.07");
        assert_eq!(Money::parse("007.10", usd).unwrap().amount_text(), "7.10");
        assert_eq!(Money::zero(usd).amount_text(), "0.00");
        assert_eq!(Money::parse("12.34", usd).unwrap().to_string(), "12.34 USD");
    }

    #[test]
    fn totals_of_the_largest_amounts_are_exact() {
        let usd = cur("USD");
        let max = Money::parse("9999999999999.99", usd).unwrap();
        let mut t = Total::zero(usd);
        for _ in 0..3 {
            t = t.checked_add_money(&max).unwrap();
        }
        assert_eq!(t.amount_text(), "29999999999999.97");
        assert_eq!(t.to_decimal().to_string(), "29999999999999.97");
        assert_eq!(t.to_string(), "29999999999999.97 USD");
        // Beyond one amount's limit, so not a `Money`.
        assert_eq!(t.to_money(), Err(MoneyError::OutOfRange));
        assert_eq!(Total::from(max).to_money(), Ok(max));
        // Far past i64: a million of the largest amounts in the four-decimal currency.
        let clf = cur("CLF");
        let big = Money::parse("10000000000000", clf).unwrap();
        let mut t = Total::zero(clf);
        for _ in 0..1_000_000 {
            t = t.checked_add_money(&big).unwrap();
        }
        assert_eq!(t.amount_text(), "10000000000000000000.0000");
        assert_eq!(Total::parse("10000000000000000000", clf), Ok(t));
        let back = t.checked_sub(&Total::from(big)).unwrap();
        assert_eq!(back.amount_text(), "9999990000000000000.0000");
    }

    #[test]
    fn totals_refuse_what_they_cannot_hold() {
        let usd = cur("USD");
        let t = Total::from_minor(i128::MAX, usd);
        assert_eq!(t.checked_add_minor(1), Err(MoneyError::TotalOutOfRange));
        assert_eq!(
            Total::from_minor(i128::MIN, usd).checked_sub(&Total::from_minor(1, usd)),
            Err(MoneyError::TotalOutOfRange)
        );
        let eur = Total::zero(cur("EUR"));
        assert!(matches!(
            t.checked_add(&eur),
            Err(MoneyError::CurrencyMismatch(_, _))
        ));
        assert!(matches!(
            Total::parse("1.234", usd),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert_eq!(Total::from_minor(-5, usd).amount_text(), "-0.05");
        assert_eq!(Total::from_minor(-5, usd).minor_saturating_i64(), -5);
        assert_eq!(t.minor_saturating_i64(), i64::MAX);
        assert_eq!(
            Total::from_minor(i128::MIN, usd).minor_saturating_i64(),
            i64::MIN
        );
    }

    #[test]
    fn decimal_round_trips_through_text() {
        for text in ["0", "12.34", "-0.5", "100", "0.001"] {
            assert_eq!(Decimal::parse(text).unwrap().to_string(), text);
        }
    }
}
