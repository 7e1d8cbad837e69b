//! The budgets domain model: budgets, the ledger's entries, alerts, rates and what a
//! budget has used in a period. Typed ids, money and dates; no storage format.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use contract::events::TxKind;
use contract::households::Ownership;
use contract::ids::{AlertId, BudgetId, ExpenseId, HouseholdId, UserId};
use kit::AppError;
use kit::money::{Currency, Decimal, Money};

use super::{Period, Severity};

/// The category a budget covers: its display name and the key expenses match on (the
/// name folded to lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    pub key: String,
}

impl Category {
    /// A category a user typed: 1 to 40 characters once trimmed.
    pub fn parse(raw: &str) -> Result<Category, AppError> {
        let name = raw.trim();
        let n = name.chars().count();
        if n == 0 || n > 40 {
            return Err(AppError::validation(
                "category",
                "a category has 1 to 40 characters (or null for all spending)",
            ));
        }
        Ok(Category {
            name: name.to_string(),
            key: name.to_lowercase(),
        })
    }
}

/// A re-armed threshold: after a budget change un-crossed it in a period, the next
/// alert for it in that period uses the next generation (a new crossing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rearm {
    pub threshold: i32,
    pub period_start: NaiveDate,
    pub generation: i64,
}

/// A spending limit per category (or overall) and period.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub id: BudgetId,
    /// Who created it (for a household's budget, the owner who set it up).
    pub user_id: UserId,
    /// The household whose shared budget this is: it counts the expenses shared with
    /// the household and alerts every member. `None`: the user's own budget, counting
    /// all of their expenses.
    pub household: Option<HouseholdId>,
    /// `None`: all EXPENSE spending.
    pub category: Option<Category>,
    pub amount: Money,
    pub period: Period,
    /// Percentages, sorted and unique.
    pub thresholds: Vec<i32>,
    pub rearmed: Vec<Rearm>,
    pub deleted: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Budget {
    /// The generation of `threshold`'s crossing in the period starting `period_start`.
    pub fn generation(&self, threshold: i32, period_start: NaiveDate) -> i64 {
        self.rearmed
            .iter()
            .find(|r| r.threshold == threshold && r.period_start == period_start)
            .map_or(0, |r| r.generation)
    }

    /// Lets `threshold` alert again in the period starting `period_start`.
    pub fn rearm(&mut self, threshold: i32, period_start: NaiveDate) {
        let generation = self.generation(threshold, period_start) + 1;
        self.rearmed
            .retain(|r| !(r.threshold == threshold && r.period_start == period_start));
        self.rearmed.push(Rearm {
            threshold,
            period_start,
            generation,
        });
    }

    /// Whose budget it is: the user's or the household's.
    pub fn ownership(&self) -> Ownership {
        Ownership::of(&self.user_id, self.household.as_ref())
    }

    /// True when the budget counts an expense of category `key`.
    pub fn covers(&self, key: &str) -> bool {
        self.category.as_ref().is_none_or(|c| c.key == key)
    }
}

/// What a budget has used within a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spending {
    /// Minor units of the budget's currency (other currencies converted with the rates
    /// table). An exact sum in 128 bits: it may exceed the largest single amount.
    pub spent_minor: i128,
    /// Matching expenses in a currency without a rate: not counted, never guessed.
    pub uncounted: i64,
}

/// A budget with its current period `[start, next)` and what it used in it.
#[derive(Debug, Clone)]
pub struct BudgetView {
    pub budget: Budget,
    pub start: NaiveDate,
    pub next: NaiveDate,
    pub spending: Spending,
}

/// What one expense currently contributes, as last reported by the expenses subgraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub expense_id: ExpenseId,
    pub user_id: UserId,
    /// The expense's version this entry reflects; older events never overwrite it.
    pub version: i64,
    /// `None` once the expense is deleted.
    pub live: Option<LiveEntry>,
}

/// A live expense's part of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEntry {
    pub kind: TxKind,
    pub amount: Money,
    pub category_key: String,
    pub date: NaiveDate,
    /// The household the expense is shared with (its budgets count it).
    pub household: Option<HouseholdId>,
}

/// Raised once when spending reaches a threshold within a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: AlertId,
    pub user_id: UserId,
    pub budget_id: BudgetId,
    pub threshold: i32,
    /// Which crossing of the threshold in the period (see [`Rearm`]).
    pub generation: i64,
    pub period_start: NaiveDate,
    pub percent_used: f64,
    pub severity: Severity,
    pub message: String,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Units of each currency per 1 USD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rates(pub HashMap<Currency, Decimal>);

impl Rates {
    /// `minor` units of `from` in minor units of `to`; `None` without a rate for one of
    /// them (never guessed) or on overflow.
    pub fn convert(&self, minor: i128, from: Currency, to: Currency) -> Option<i128> {
        super::convert(
            minor,
            from.exponent(),
            *self.0.get(&from)?,
            to.exponent(),
            *self.0.get(&to)?,
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
    fn rearming_moves_a_threshold_to_its_next_generation_in_that_period() {
        let now = Utc::now();
        let mut b = Budget {
            id: BudgetId::new(),
            user_id: UserId::new(),
            household: None,
            category: Some(Category::parse(" Food ").unwrap()),
            amount: Money::from_minor(100, Currency::USD).unwrap(),
            period: Period::Monthly,
            thresholds: vec![80, 100],
            rearmed: Vec::new(),
            deleted: false,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        assert!(b.covers("food") && !b.covers("Food"));
        assert_eq!(b.generation(80, d("2024-03-01")), 0);
        b.rearm(80, d("2024-03-01"));
        b.rearm(80, d("2024-03-01"));
        b.rearm(80, d("2024-04-01"));
        assert_eq!(b.generation(80, d("2024-03-01")), 2);
        assert_eq!(b.generation(80, d("2024-04-01")), 1);
        assert_eq!(b.generation(100, d("2024-03-01")), 0);
        assert_eq!(b.rearmed.len(), 2);
    }

    #[test]
    fn conversion_needs_both_rates() {
        let eur = Currency::parse("EUR").unwrap();
        let rates = Rates(HashMap::from([
            (Currency::USD, Decimal::parse("1").unwrap()),
            (eur, Decimal::parse("0.92").unwrap()),
        ]));
        assert_eq!(rates.convert(920, eur, Currency::USD), Some(1000));
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(rates.convert(5000, kwd, Currency::USD), None);
    }
}
