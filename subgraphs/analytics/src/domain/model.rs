//! The records analytics keeps: each expense's latest known state, the rows of the
//! read model and the weekly summary runs. Typed ids, money and dates; no storage
//! format.

use chrono::{DateTime, NaiveDate, Utc};
use contract::events::TxKind;
use contract::ids::{ExpenseId, HouseholdId, UserId};
use kit::money::{Currency, Money};

/// An expense's latest known state, as the expenses subgraph last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpenseState {
    pub id: ExpenseId,
    pub user_id: UserId,
    /// The expense's version; an older one never replaces a newer one.
    pub version: i64,
    /// A deleted expense is kept (its version guards against late events), never counted.
    pub deleted: bool,
    pub kind: TxKind,
    pub amount: Money,
    pub category: String,
    /// The category folded to lower case: what rows are grouped by.
    pub category_key: String,
    /// The calendar date in the user's calendar.
    pub date: NaiveDate,
    /// The household the expense is shared with (its members' household view counts
    /// it).
    pub household: Option<HouseholdId>,
}

impl ExpenseState {
    /// The read-model row this expense counts in.
    pub fn bucket(&self) -> BucketKey {
        BucketKey {
            user_id: self.user_id.clone(),
            date: self.date,
            kind: self.kind,
            currency: self.amount.currency(),
            category_key: self.category_key.clone(),
        }
    }
}

/// What a read-model row totals: a user's expenses (or incomes) of one day, currency and
/// category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketKey {
    pub user_id: UserId,
    pub date: NaiveDate,
    pub kind: TxKind,
    pub currency: Currency,
    pub category_key: String,
}

/// One read-model row: a user's total of one type and category on one day (in the
/// currency it was read for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTotal {
    pub date: NaiveDate,
    pub kind: TxKind,
    pub category: String,
    /// Minor units of the currency the rows were read for: an exact 128-bit sum.
    pub total_minor: i128,
    pub count: i64,
}

/// One expense as the insight rules see it (in the currency it was read for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpenseFact {
    pub id: ExpenseId,
    pub date: NaiveDate,
    pub category: String,
    pub amount_minor: i64,
}

/// A weekly summary made for a user and ISO week (made once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyRun {
    pub user_id: UserId,
    /// The ISO week label, `2024-W10`.
    pub week: String,
    pub created_at: DateTime<Utc>,
}
