//! The expense record, its recurring schedule and the user's own categories, as the
//! service and the GraphQL layer see them. How they are stored is `store`'s business.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use contract::events::ExpenseSnapshot;
use contract::ids::{ExpenseId, HouseholdId, UserId};
use kit::money::Money;

use super::{Frequency, Recurrence, SortKey, TxType, category_key};

/// How an expense was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentMethod {
    Cash,
    Card,
    BankTransfer,
    Mobile,
    Other,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 5] = [
        PaymentMethod::Cash,
        PaymentMethod::Card,
        PaymentMethod::BankTransfer,
        PaymentMethod::Mobile,
        PaymentMethod::Other,
    ];

    /// The name clients send and see, and the stored one.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "cash",
            PaymentMethod::Card => "card",
            PaymentMethod::BankTransfer => "bank_transfer",
            PaymentMethod::Mobile => "mobile",
            PaymentMethod::Other => "other",
        }
    }

    /// Exactly one of the names of [`PaymentMethod::as_str`].
    pub fn parse(s: &str) -> Option<PaymentMethod> {
        PaymentMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// The schedule of a recurring expense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub frequency: Frequency,
    /// Inclusive.
    pub end_date: Option<NaiveDate>,
    /// The user's timezone when the series was set: "due" means due there.
    pub timezone: Tz,
    /// Names this schedule: `<expense id>:<version that set it>`, so occurrences of a
    /// replaced schedule never collide with the new one's idempotency keys.
    pub series: String,
    /// Index of the next occurrence to create (0 is the expense itself).
    pub next_index: i64,
    /// The date of that occurrence; `None` when the series has ended.
    pub next_day: Option<NaiveDate>,
}

/// Most occurrences skipped when a schedule starts after a given day.
const MAX_SKIPPED: u32 = 100_000;

impl Schedule {
    /// The schedule of `rule` for an expense dated `start`. A new expense's schedule
    /// starts right after its date (missed occurrences up to today are created); a
    /// schedule changed later starts after `not_before` (no backfill).
    pub fn new(
        rule: Recurrence,
        start: NaiveDate,
        timezone: Tz,
        series: String,
        not_before: Option<NaiveDate>,
    ) -> Schedule {
        let mut n: u32 = 1;
        if let Some(day) = not_before {
            while rule
                .frequency
                .occurrence(start, n)
                .is_some_and(|d| d <= day)
                && n < MAX_SKIPPED
            {
                n += 1;
            }
        }
        Schedule {
            frequency: rule.frequency,
            end_date: rule.end_date,
            timezone,
            series,
            next_index: i64::from(n),
            next_day: rule.occurrence(start, n),
        }
    }

    /// How it repeats.
    pub fn rule(&self) -> Recurrence {
        Recurrence {
            frequency: self.frequency,
            end_date: self.end_date,
        }
    }
}

/// An expense or an income. Deleted ones stay as tombstones (`deleted`) so the delete
/// event rides in the same write and an idempotency key stays spent.
#[derive(Debug, Clone, PartialEq)]
pub struct Expense {
    pub id: ExpenseId,
    pub user_id: UserId,
    pub kind: TxType,
    /// Greater than 0.
    pub amount: Money,
    pub category: String,
    pub description: String,
    /// In the user's calendar.
    pub date: NaiveDate,
    pub payment_method: Option<PaymentMethod>,
    pub tags: Vec<String>,
    pub recurrence: Option<Schedule>,
    /// The recurring expense this one is an occurrence of.
    pub recurring_from: Option<ExpenseId>,
    /// The household the expense is shared with: its members see it and its budgets
    /// count it. `None`: personal, seen by its owner only.
    pub household: Option<HouseholdId>,
    /// The client's idempotency key (`key:<key>`), `recur:<series>:<n>` for
    /// occurrences, `import:<row id>` for imported rows, or `id:<id>` when none was
    /// given.
    pub idem_key: String,
    /// SHA-256 of the canonical input, to tell a replay from a reuse.
    pub idem_hash: Option<String>,
    /// Incremented by every write; the optimistic-concurrency check of replacements.
    pub version: i64,
    pub deleted: bool,
    /// To the millisecond, as stored.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Expense {
    /// The case-insensitive identity of the category (what filters and budgets match).
    pub fn category_key(&self) -> String {
        category_key(&self.category)
    }

    /// Where the expense is in lists.
    pub fn sort_key(&self) -> SortKey {
        SortKey::of(self.date, &self.id)
    }

    /// The fields of an expense that consumers (budgets, analytics) work from.
    pub fn snapshot(&self) -> ExpenseSnapshot {
        ExpenseSnapshot {
            kind: self.kind.into(),
            amount_minor: self.amount.amount_minor(),
            currency: self.amount.currency().code().to_string(),
            category: self.category.clone(),
            category_key: self.category_key(),
            date: self.date,
            household: self.household.clone(),
        }
    }
}

/// A category a user created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomCategory {
    pub user_id: UserId,
    pub kind: TxType,
    /// As created (trimmed); unique per user and type case-insensitively.
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl CustomCategory {
    pub fn key(&self) -> String {
        category_key(&self.name)
    }
}

/// A category as listed: a built-in one or one of the user's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    pub kind: TxType,
    /// True for categories the user created.
    pub custom: bool,
}

impl From<CustomCategory> for Category {
    fn from(c: CustomCategory) -> Self {
        Category {
            name: c.name,
            kind: c.kind,
            custom: true,
        }
    }
}

/// Built-in categories of both types, then the user's own.
pub fn all_categories(custom: Vec<CustomCategory>) -> Vec<Category> {
    let builtin = [TxType::Expense, TxType::Income]
        .into_iter()
        .flat_map(|kind| {
            kind.builtin_categories().iter().map(move |name| Category {
                name: (*name).to_string(),
                kind,
                custom: false,
            })
        });
    builtin
        .chain(custom.into_iter().map(Category::from))
        .collect()
}
