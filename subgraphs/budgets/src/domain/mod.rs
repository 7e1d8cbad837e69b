//! The rules of budgets: periods, thresholds, how much is used, alert severity; and
//! the domain model they apply to (`model`). No GraphQL and no BSON here.

mod model;

use chrono::{Datelike, Days, Months, NaiveDate};
use kit::AppError;

pub use model::{
    Alert, Budget, BudgetView, Category, LedgerEntry, LiveEntry, Rates, Rearm, Spending,
};

pub const DEFAULT_THRESHOLDS: &[i32] = &[80, 100];
pub const MAX_THRESHOLDS: usize = 5;
pub const MAX_THRESHOLD: i32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    pub fn as_str(&self) -> &'static str {
        match self {
            Period::Weekly => "WEEKLY",
            Period::Monthly => "MONTHLY",
            Period::Yearly => "YEARLY",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "WEEKLY" => Some(Period::Weekly),
            "MONTHLY" => Some(Period::Monthly),
            "YEARLY" => Some(Period::Yearly),
            _ => None,
        }
    }

    /// The period containing `day`, as a half-open range `[start, next)` of calendar
    /// days. Expense dates are already calendar days in the user's timezone, so only
    /// "today" needs the timezone. Weeks start on Monday.
    pub fn range(&self, day: NaiveDate) -> (NaiveDate, NaiveDate) {
        let start = match self {
            Period::Weekly => day - Days::new(u64::from(day.weekday().num_days_from_monday())),
            Period::Monthly => day.with_day(1).unwrap_or(day),
            Period::Yearly => day.with_ordinal(1).unwrap_or(day),
        };
        let next = match self {
            Period::Weekly => start.checked_add_days(Days::new(7)),
            Period::Monthly => start.checked_add_months(Months::new(1)),
            Period::Yearly => start.checked_add_months(Months::new(12)),
        }
        .unwrap_or(start);
        (start, next)
    }
}

/// Thresholds in percent: default [80, 100], each 1..=1000, at most 5; sorted, unique.
pub fn thresholds(input: Option<&[i32]>) -> Result<Vec<i32>, AppError> {
    let Some(list) = input else {
        return Ok(DEFAULT_THRESHOLDS.to_vec());
    };
    if list.is_empty() || list.len() > MAX_THRESHOLDS {
        return Err(AppError::validation(
            "alertThresholds",
            format!("give 1 to {MAX_THRESHOLDS} thresholds"),
        ));
    }
    if list.iter().any(|t| !(1..=MAX_THRESHOLD).contains(t)) {
        return Err(AppError::validation(
            "alertThresholds",
            format!("each threshold is a percentage from 1 to {MAX_THRESHOLD}"),
        ));
    }
    let mut out = list.to_vec();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// True when `spent` has reached `threshold` percent of `amount` (exact integers).
pub fn crossed(spent_minor: i128, amount_minor: i64, threshold: i32) -> bool {
    spent_minor.saturating_mul(100) >= i128::from(threshold) * i128::from(amount_minor)
}

/// Percentage used, rounded to 2 decimals (for display only; decisions use `crossed`).
pub fn percent_used(spent_minor: i128, amount_minor: i64) -> f64 {
    if amount_minor <= 0 {
        return 0.0;
    }
    // Basis points computed exactly, then shown as a float.
    let bp = spent_minor
        .saturating_mul(10_000)
        .saturating_add(i128::from(amount_minor) / 2)
        / i128::from(amount_minor);
    bp as f64 / 100.0
}

/// An alert's severity: below 100 % it warns, from 100 % on it is critical (the
/// contract's type, carried by `budget.alert` events).
pub use contract::events::AlertSeverity as Severity;

pub fn alert_message(
    category: Option<&str>,
    threshold: i32,
    percent: f64,
    spent: &str,
    amount: &str,
    currency: &str,
) -> String {
    let what = match category {
        Some(c) => format!("your {c} budget"),
        None => "your overall budget".to_string(),
    };
    if threshold >= 100 {
        format!("You have exceeded {what}: {percent:.0}% used ({spent} of {amount} {currency}).")
    } else {
        format!(
            "You have used {percent:.0}% of {what} ({spent} of {amount} {currency}), past your {threshold}% alert."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn periods_are_half_open_and_weeks_start_on_monday() {
        assert_eq!(
            Period::Weekly.range(d("2024-01-07")),
            (d("2024-01-01"), d("2024-01-08"))
        );
        assert_eq!(
            Period::Weekly.range(d("2024-01-08")),
            (d("2024-01-08"), d("2024-01-15"))
        );
        assert_eq!(
            Period::Monthly.range(d("2024-02-29")),
            (d("2024-02-01"), d("2024-03-01"))
        );
        assert_eq!(
            Period::Yearly.range(d("2024-12-31")),
            (d("2024-01-01"), d("2025-01-01"))
        );
    }

    #[test]
    fn thresholds_are_checked() {
        assert_eq!(thresholds(None).unwrap(), vec![80, 100]);
        assert_eq!(thresholds(Some(&[100, 50, 50])).unwrap(), vec![50, 100]);
        assert!(thresholds(Some(&[0])).is_err());
        assert!(thresholds(Some(&[1001])).is_err());
        assert!(thresholds(Some(&[1, 2, 3, 4, 5, 6])).is_err());
        assert!(thresholds(Some(&[])).is_err());
    }

    #[test]
    fn crossing_is_exact() {
        assert!(crossed(8000, 10000, 80));
        assert!(!crossed(7999, 10000, 80));
        assert_eq!(percent_used(8500, 10000), 85.0);
        assert_eq!(percent_used(1, 3), 33.33);
        assert_eq!(Severity::of_threshold(80), Severity::Warning);
        assert_eq!(Severity::of_threshold(100), Severity::Critical);
    }
}

/// Rates the service starts with, as units of a currency per 1 USD (exact decimal
/// text). The admin endpoint `PUT /internal/rates` replaces them; the table never
/// guesses a missing rate.
pub const SEED_RATES: &[(&str, &str)] = &[
    ("USD", "1"),
    ("EUR", "0.92"),
    ("GBP", "0.79"),
    ("JPY", "150"),
    ("CHF", "0.88"),
    ("CAD", "1.36"),
    ("AUD", "1.52"),
    ("NZD", "1.65"),
    ("CNY", "7.2"),
    ("INR", "83"),
    ("SEK", "10.5"),
    ("NOK", "10.6"),
    ("DKK", "6.9"),
    ("PLN", "4"),
    ("MXN", "17"),
    ("BRL", "5"),
];

/// Converts `minor` units of one currency into minor units of another through their
/// rates per USD, exactly in integers, rounding half away from zero once at the end.
/// `None` on overflow or a zero rate.
pub fn convert(
    minor: i128,
    from_exponent: u32,
    from_rate: kit::money::Decimal,
    to_exponent: u32,
    to_rate: kit::money::Decimal,
) -> Option<i128> {
    // value_to = minor * (m_t / 10^s_t) * 10^e_t / ((m_f / 10^s_f) * 10^e_f)
    let num = minor
        .checked_mul(to_rate.mantissa())?
        .checked_mul(10_i128.checked_pow(to_exponent + from_rate.scale())?)?;
    let den = from_rate
        .mantissa()
        .checked_mul(10_i128.checked_pow(from_exponent + to_rate.scale())?)?;
    if den <= 0 || to_rate.mantissa() <= 0 {
        return None;
    }
    let q = num / den;
    let r = num % den;
    let rounded = if r.abs() * 2 >= den {
        q + num.signum()
    } else {
        q
    };
    Some(rounded)
}

#[cfg(test)]
mod conversion_tests {
    use super::*;
    use kit::money::Decimal;

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn conversion_is_exact_and_rounds_once() {
        // 9.20 EUR at 0.92 per USD is 10.00 USD.
        assert_eq!(convert(920, 2, dec("0.92"), 2, dec("1")), Some(1000));
        // 1500 JPY at 150 per USD is 10.00 USD.
        assert_eq!(convert(1500, 0, dec("150"), 2, dec("1")), Some(1000));
        // 10.00 USD is 1500 JPY.
        assert_eq!(convert(1000, 2, dec("1"), 0, dec("150")), Some(1500));
        // 0.01 USD in JPY is 1.5 yen: rounds to 2.
        assert_eq!(convert(1, 2, dec("1"), 0, dec("150")), Some(2));
        assert_eq!(convert(1, 2, dec("0"), 0, dec("150")), None);
        // Totals beyond 64 bits convert exactly too.
        assert_eq!(
            convert(3 * 999_999_999_999_999, 2, dec("1"), 0, dec("150")),
            Some(4_499_999_999_999_996)
        );
        assert_eq!(convert(i128::MAX, 2, dec("1"), 0, dec("150")), None);
    }
}
