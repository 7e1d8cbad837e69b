//! Listing expenses: the order they are listed in, the filters, date ranges and the
//! summary of a range.

use chrono::{Days, NaiveDate};
use contract::ids::{ExpenseId, is_valid_id};
use kit::AppError;
use kit::money::{Currency, Money, Total};

use super::TxType;

/// `YYYYMMDD`: the compact form used in sort keys and range queries.
pub fn day_key(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// Undoes [`day_key`].
pub fn parse_day_key(s: &str) -> Option<NaiveDate> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = s[..4].parse().ok()?;
    let month = s[4..6].parse().ok()?;
    let day = s[6..].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// The key expenses are listed by, `YYYYMMDD|<id>`: date descending, then id
/// descending. It is also the position a page cursor names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey(String);

impl SortKey {
    pub fn of(date: NaiveDate, id: &ExpenseId) -> SortKey {
        SortKey(format!("{}|{}", day_key(date), id))
    }

    /// A key as a client sent it back (inside a cursor): eight digits, `|`, an id.
    pub fn parse(text: &str) -> Option<SortKey> {
        let (day, id) = text.split_once('|')?;
        (day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()) && is_valid_id(id))
            .then(|| SortKey(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Days from `from` (inclusive) until `until` (exclusive), either open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayRange {
    pub from: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
}

impl DayRange {
    /// The days from `from` to `to`, both inclusive, as a client gives them.
    pub fn inclusive(from: Option<NaiveDate>, to: Option<NaiveDate>) -> Result<DayRange, AppError> {
        if let (Some(a), Some(b)) = (from, to)
            && a > b
        {
            return Err(AppError::validation("to", "`to` is before `from`"));
        }
        let until = to
            .map(|d| {
                d.checked_add_days(Days::new(1))
                    .ok_or_else(|| AppError::validation("to", "date out of range"))
            })
            .transpose()?;
        Ok(DayRange { from, until })
    }
}

/// Amounts between `min` and `max` (inclusive, either open) in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountRange {
    pub currency: Currency,
    pub min: Option<Money>,
    pub max: Option<Money>,
}

/// What a list of expenses is narrowed by; all optional, combined with AND. Only live
/// (not deleted) expenses are ever listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub kind: Option<TxType>,
    /// Any of these category keys (see [`super::category_key`]).
    pub category_keys: Option<Vec<String>>,
    pub days: DayRange,
    /// Amounts are compared in minor units of one currency, so the range is bound to it.
    pub amount: Option<AmountRange>,
    /// Case-insensitive text within the description.
    pub search: Option<String>,
    pub tag: Option<String>,
    /// The payment method's name as the client gave it (trimmed, lower case): one that
    /// is not a payment method matches nothing.
    pub payment_method: Option<String>,
    pub currency: Option<Currency>,
}

/// Sum and count of one category of one type in a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryTotal {
    pub kind: TxType,
    pub category: String,
    pub total: Total,
    pub count: i64,
}

/// Totals of one currency over a date range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub currency: Currency,
    pub total_income: Total,
    pub total_expenses: Total,
    pub balance: Total,
    /// By type (expenses first), then largest total first, then category name.
    pub by_category: Vec<CategoryTotal>,
}

impl Summary {
    pub fn new(
        currency: Currency,
        mut by_category: Vec<CategoryTotal>,
    ) -> Result<Summary, AppError> {
        by_category.sort_by(|a, b| {
            (
                a.kind.as_str(),
                std::cmp::Reverse(a.total.minor()),
                a.category.as_str(),
            )
                .cmp(&(
                    b.kind.as_str(),
                    std::cmp::Reverse(b.total.minor()),
                    b.category.as_str(),
                ))
        });
        let sum = |kind: TxType| {
            by_category
                .iter()
                .filter(|t| t.kind == kind)
                .try_fold(Total::zero(currency), |sum, t| sum.checked_add(&t.total))
                .map_err(AppError::total)
        };
        let (income, spent) = (sum(TxType::Income)?, sum(TxType::Expense)?);
        Ok(Summary {
            currency,
            total_income: income,
            total_expenses: spent,
            balance: income.checked_sub(&spent).map_err(AppError::total)?,
            by_category,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn day_keys_read_back() {
        assert_eq!(day_key(d("2024-02-29")), "20240229");
        assert_eq!(parse_day_key("20240229"), Some(d("2024-02-29")));
        assert_eq!(parse_day_key("20230229"), None);
        assert_eq!(parse_day_key("2024-1-1"), None);
    }

    #[test]
    fn sort_keys_order_by_date_then_id() {
        let a = ExpenseId::from_trusted("a");
        let b = ExpenseId::from_trusted("b");
        let z = ExpenseId::from_trusted("z");
        assert!(SortKey::of(d("2024-01-02"), &a) > SortKey::of(d("2024-01-01"), &z));
        assert!(SortKey::of(d("2024-01-02"), &b) > SortKey::of(d("2024-01-02"), &a));
        let id = ExpenseId::new();
        let key = SortKey::of(d("2024-01-02"), &id);
        assert_eq!(SortKey::parse(key.as_str()), Some(key));
        assert_eq!(SortKey::parse("2024010|x"), None);
    }

    #[test]
    fn ranges_are_inclusive_and_ordered() {
        let r = DayRange::inclusive(Some(d("2024-01-01")), Some(d("2024-01-31"))).unwrap();
        assert_eq!(r.until, Some(d("2024-02-01")));
        assert!(DayRange::inclusive(Some(d("2024-02-01")), Some(d("2024-01-31"))).is_err());
    }
}
