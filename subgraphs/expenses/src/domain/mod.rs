//! The domain of expenses: the records (`expense`), listing them (`listing`), and the
//! rules of categories, payment methods, amounts, dates, tags and recurrence. No
//! GraphQL and no BSON here.

pub mod csv_format;
mod expense;
mod listing;

pub use expense::{Category, CustomCategory, Expense, PaymentMethod, Schedule, all_categories};
pub use listing::{
    AmountRange, CategoryTotal, DayRange, ListFilter, SortKey, Summary, day_key, parse_day_key,
};

use chrono::{DateTime, Days, Months, NaiveDate, SubsecRound, Utc};
use kit::AppError;
use kit::money::Currency;

/// Built-in expense categories (from the original system).
pub const EXPENSE_CATEGORIES: &[&str] = &[
    "food",
    "transport",
    "entertainment",
    "utilities",
    "rent",
    "shopping",
    "health",
    "subscriptions",
    "education",
    "other",
];
/// Built-in income categories.
pub const INCOME_CATEGORIES: &[&str] = &["salary", "freelance", "investment", "bonus", "other"];
pub const PAYMENT_METHODS: &[&str] = &["cash", "card", "bank_transfer", "mobile", "other"];

pub const MAX_DESCRIPTION_CHARS: usize = 500;
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_CHARS: usize = 32;
pub const MAX_CATEGORY_CHARS: usize = 40;
/// Largest page size of `expenses`.
pub const MAX_PAGE: i32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxType {
    Expense,
    Income,
}

impl TxType {
    pub fn as_str(&self) -> &'static str {
        match self {
            TxType::Expense => "EXPENSE",
            TxType::Income => "INCOME",
        }
    }

    pub fn parse(s: &str) -> Option<TxType> {
        match s {
            "EXPENSE" => Some(TxType::Expense),
            "INCOME" => Some(TxType::Income),
            _ => None,
        }
    }

    pub fn builtin_categories(&self) -> &'static [&'static str] {
        match self {
            TxType::Expense => EXPENSE_CATEGORIES,
            TxType::Income => INCOME_CATEGORIES,
        }
    }
}

impl From<TxType> for contract::events::TxKind {
    fn from(t: TxType) -> Self {
        match t {
            TxType::Expense => contract::events::TxKind::Expense,
            TxType::Income => contract::events::TxKind::Income,
        }
    }
}

/// The case-insensitive identity of a category name.
pub fn category_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The stored name of a category: a built-in one of the type, or one of the user's
/// own (`custom`, names as created). Absent means `other`.
pub fn resolve_category(
    input: Option<&str>,
    ty: TxType,
    custom: &[String],
) -> Result<String, AppError> {
    let Some(raw) = input else {
        return Ok("other".to_string());
    };
    let key = category_key(raw);
    if let Some(b) = ty.builtin_categories().iter().find(|b| **b == key) {
        return Ok((*b).to_string());
    }
    if let Some(c) = custom.iter().find(|c| category_key(c) == key) {
        return Ok(c.clone());
    }
    Err(AppError::validation(
        "category",
        format!(
            "unknown {} category {:?}; use one of {} or create it first",
            ty.as_str().to_lowercase(),
            raw.trim(),
            ty.builtin_categories().join(", ")
        ),
    ))
}

/// A name for a new custom category.
pub fn custom_category_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_CATEGORY_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::validation(
            "name",
            format!("a category name has 1 to {MAX_CATEGORY_CHARS} characters"),
        ));
    }
    Ok(name.to_string())
}

pub fn description(raw: &str) -> Result<String, AppError> {
    let d = raw.trim();
    let n = d.chars().count();
    if n == 0 || n > MAX_DESCRIPTION_CHARS {
        return Err(AppError::validation(
            "description",
            format!("description must have 1 to {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(d.to_string())
}

pub fn payment_method(raw: Option<&str>) -> Result<Option<PaymentMethod>, AppError> {
    let Some(raw) = raw else { return Ok(None) };
    PaymentMethod::parse(&raw.trim().to_lowercase())
        .map(Some)
        .ok_or_else(|| {
            AppError::validation(
                "paymentMethod",
                format!(
                    "payment method must be one of {}",
                    PAYMENT_METHODS.join(", ")
                ),
            )
        })
}

/// At most 10 tags of 1 to 32 characters; blanks trimmed, duplicates dropped.
pub fn tags(raw: &[String]) -> Result<Vec<String>, AppError> {
    let mut out: Vec<String> = Vec::new();
    for t in raw {
        let t = t.trim();
        let n = t.chars().count();
        if n == 0 || n > MAX_TAG_CHARS {
            return Err(AppError::validation(
                "tags",
                format!("each tag has 1 to {MAX_TAG_CHARS} characters"),
            ));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(AppError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    Ok(out)
}

pub fn currency(raw: Option<&str>, home: Currency) -> Result<Currency, AppError> {
    match raw {
        None => Ok(home),
        Some(c) => Currency::parse(c).map_err(|e| AppError::money("currency", e)),
    }
}

/// An instant as records keep it: to the millisecond (what the database keeps), so a
/// write answers with what a later read gives.
pub fn instant(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(3)
}

/// The latest date accepted: one year after today (in the user's timezone).
pub fn latest_date(today: NaiveDate) -> NaiveDate {
    today.checked_add_months(Months::new(12)).unwrap_or(today)
}

/// The earliest date accepted (2000-01-01): older entries are no personal-finance
/// record, and a recurring series cannot start a backfill of centuries.
pub const EARLIEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

pub fn date(value: Option<NaiveDate>, today: NaiveDate) -> Result<NaiveDate, AppError> {
    let d = value.unwrap_or(today);
    if d < EARLIEST_DATE {
        return Err(AppError::validation(
            "date",
            format!("date must not be before {EARLIEST_DATE}"),
        ));
    }
    if d > latest_date(today) {
        return Err(AppError::validation(
            "date",
            "date must not be more than a year in the future",
        ));
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Frequency {
    pub fn as_str(&self) -> &'static str {
        match self {
            Frequency::Daily => "DAILY",
            Frequency::Weekly => "WEEKLY",
            Frequency::Monthly => "MONTHLY",
            Frequency::Yearly => "YEARLY",
        }
    }

    pub fn parse(s: &str) -> Option<Frequency> {
        match s {
            "DAILY" => Some(Frequency::Daily),
            "WEEKLY" => Some(Frequency::Weekly),
            "MONTHLY" => Some(Frequency::Monthly),
            "YEARLY" => Some(Frequency::Yearly),
            _ => None,
        }
    }

    /// The `n`-th occurrence of a series starting on `start` (n = 0 is `start`).
    /// Counted from the start each time, so a series on the 31st gives Feb 29/28, then
    /// Mar 31 again, never drifting.
    pub fn occurrence(&self, start: NaiveDate, n: u32) -> Option<NaiveDate> {
        match self {
            Frequency::Daily => start.checked_add_days(Days::new(u64::from(n))),
            Frequency::Weekly => start.checked_add_days(Days::new(7 * u64::from(n))),
            Frequency::Monthly => start.checked_add_months(Months::new(n)),
            Frequency::Yearly => start.checked_add_months(Months::new(n.checked_mul(12)?)),
        }
    }
}

/// How an expense repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurrence {
    pub frequency: Frequency,
    /// Last day an occurrence may fall on (inclusive).
    pub end_date: Option<NaiveDate>,
}

impl Recurrence {
    /// The `n`-th occurrence of a series starting on `start`, if it is not past the end.
    pub fn occurrence(&self, start: NaiveDate, n: u32) -> Option<NaiveDate> {
        self.frequency
            .occurrence(start, n)
            .filter(|d| self.end_date.is_none_or(|end| *d <= end))
    }
}

pub fn recurrence(r: Recurrence, start: NaiveDate) -> Result<Recurrence, AppError> {
    if let Some(end) = r.end_date
        && end < start
    {
        return Err(AppError::validation(
            "recurrence.endDate",
            "the end date of a recurrence cannot be before the expense's date",
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn categories_resolve_case_insensitively_and_default_to_other() {
        assert_eq!(
            resolve_category(Some(" Food "), TxType::Expense, &[]).unwrap(),
            "food"
        );
        assert_eq!(
            resolve_category(None, TxType::Income, &[]).unwrap(),
            "other"
        );
        assert!(resolve_category(Some("salary"), TxType::Expense, &[]).is_err());
        let custom = vec!["Pets".to_string()];
        assert_eq!(
            resolve_category(Some("pets"), TxType::Expense, &custom).unwrap(),
            "Pets"
        );
    }

    #[test]
    fn monthly_series_do_not_drift() {
        let f = Frequency::Monthly;
        assert_eq!(f.occurrence(d("2024-01-31"), 1).unwrap(), d("2024-02-29"));
        assert_eq!(f.occurrence(d("2024-01-31"), 2).unwrap(), d("2024-03-31"));
        assert_eq!(
            Frequency::Weekly.occurrence(d("2024-01-01"), 2).unwrap(),
            d("2024-01-15")
        );
    }

    #[test]
    fn dates_more_than_a_year_ahead_are_refused() {
        let today = d("2024-05-10");
        assert!(date(Some(d("2025-05-10")), today).is_ok());
        assert!(date(Some(d("2025-05-11")), today).is_err());
        assert_eq!(date(None, today).unwrap(), today);
    }

    #[test]
    fn tags_are_limited() {
        let many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert!(tags(&many).is_err());
        assert!(tags(&["x".repeat(33)]).is_err());
        assert_eq!(tags(&[" a ".into(), "a".into()]).unwrap(), vec!["a"]);
    }

    #[test]
    fn payment_methods_are_the_listed_names() {
        let names: Vec<&str> = PaymentMethod::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names, PAYMENT_METHODS);
        assert_eq!(
            payment_method(Some(" Bank_Transfer ")).unwrap(),
            Some(PaymentMethod::BankTransfer)
        );
        assert!(payment_method(Some("cheque")).is_err());
    }
}
