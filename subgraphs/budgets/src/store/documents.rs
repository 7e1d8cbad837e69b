//! The documents of the `budgets` database as stored, and their mapping to the domain
//! model and back: the one place that knows how a budget, a ledger entry, an alert or
//! a rate is written down. A stored value that does not read back (an unknown period,
//! currency, severity or date) is an internal error naming the record, the field and
//! the value, never a default.

pub(super) use kit::error::unreadable;
use std::fmt::Debug;

use chrono::NaiveDate;
use contract::households::Ownership;
use contract::ids::{AlertId, BudgetId, HouseholdId, UserId};
use kit::AppError;
use kit::events::Outbox;
use kit::money::{Currency, Decimal, Money};
use mongodb::bson;
use serde::{Deserialize, Serialize};

use crate::domain::{Alert, Budget, Category, LedgerEntry, Period, Rearm, Severity};

/// A re-armed threshold (see [`Rearm`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RearmDoc {
    pub threshold: i32,
    /// `YYYY-MM-DD`.
    pub period_start: String,
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// The household whose shared budget this is (absent: the user's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_id: Option<String>,
    /// Display name; null: all spending.
    pub category: Option<String>,
    pub category_key: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    /// `WEEKLY`, `MONTHLY` or `YEARLY`.
    pub period: String,
    pub thresholds: Vec<i32>,
    #[serde(default)]
    pub rearmed: Vec<RearmDoc>,
    /// `user|category-or-*|period` while live (unique: one budget per user, category
    /// and period; `household:<id>|...` for a household's); `deleted|id` once deleted.
    pub unique_key: String,
    pub deleted: bool,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
}

/// What one expense currently contributes, as last reported by the expenses subgraph.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerDoc {
    /// The expense id.
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// The expense's version this entry reflects; older events never overwrite it.
    pub version: i64,
    /// `EXPENSE` or `INCOME`; empty once deleted.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category_key: String,
    /// `YYYYMMDD`; empty once deleted.
    pub day: String,
    /// `live` or `deleted` (text, not a boolean: nx-27017 stores a `$set` boolean as 1).
    pub state: String,
    /// The household a live expense is shared with (null: personal).
    #[serde(default)]
    pub household_id: Option<String>,
}

/// The part of a ledger entry a sum reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LedgerAmount {
    #[serde(rename = "_id")]
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category_key: String,
    pub day: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub budget_id: String,
    pub threshold: i32,
    pub generation: i64,
    /// `YYYY-MM-DD`.
    pub period_start: String,
    /// `budget|periodStart|threshold|generation`, unique: one alert per crossing.
    pub dedup_key: String,
    pub percent_used: f64,
    /// `WARNING` or `CRITICAL`.
    pub severity: String,
    pub message: String,
    /// When the user marked it read; set with `$currentDate` (server time).
    pub read_at: Option<bson::DateTime>,
    pub created_at: bson::DateTime,
    #[serde(flatten)]
    pub events: Outbox,
}

/// Units of a currency per 1 USD, as exact decimal text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateDoc {
    #[serde(rename = "_id")]
    pub currency: String,
    pub per_usd: String,
}

/// `YYYY-MM-DD`, as dates are stored.
fn stored_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// `YYYYMMDD`: the compact day key of the ledger, used in range queries.
pub(super) fn day_key(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// A stored currency code of the record `id`.
pub(super) fn stored_currency(record: &str, id: &str, text: &str) -> Result<Currency, AppError> {
    Currency::parse(text).map_err(|_| unreadable(record, id, "currency", text))
}

/// The unique key of a live budget: one per owner (a user, or a household), category
/// and period.
pub fn unique_key(owner: &Ownership, category_key: Option<&str>, period: Period) -> String {
    let owner = match owner {
        Ownership::User(u) => u.to_string(),
        Ownership::Household(h) => format!("household:{h}"),
    };
    format!(
        "{owner}|{}|{}",
        category_key.unwrap_or("*"),
        period.as_str()
    )
}

impl TryFrom<BudgetDoc> for Budget {
    type Error = AppError;

    fn try_from(d: BudgetDoc) -> Result<Budget, AppError> {
        let bad = |field: &str, value: &dyn Debug| unreadable("budget", &d.id, field, value);
        let period = Period::parse(&d.period).ok_or_else(|| bad("period", &d.period))?;
        let currency = stored_currency("budget", &d.id, &d.currency)?;
        let amount = Money::from_minor(d.amount_minor, currency)
            .map_err(|_| bad("amountMinor", &d.amount_minor))?;
        let category = match (&d.category, &d.category_key) {
            (Some(name), Some(key)) => Some(Category {
                name: name.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            (_, key) => return Err(bad("categoryKey", key)),
        };
        let rearmed = d
            .rearmed
            .iter()
            .map(|r| {
                Ok(Rearm {
                    threshold: r.threshold,
                    period_start: stored_date(&r.period_start)
                        .ok_or_else(|| bad("rearmed.periodStart", &r.period_start))?,
                    generation: r.generation,
                })
            })
            .collect::<Result<_, AppError>>()?;
        Ok(Budget {
            category,
            amount,
            period,
            thresholds: d.thresholds,
            rearmed,
            deleted: d.deleted,
            version: d.version,
            created_at: d.created_at.to_chrono(),
            updated_at: d.updated_at.to_chrono(),
            id: BudgetId::from_trusted(d.id),
            user_id: UserId::from_trusted(d.user_id),
            household: d.household_id.map(HouseholdId::from_trusted),
        })
    }
}

impl From<&Budget> for BudgetDoc {
    fn from(b: &Budget) -> BudgetDoc {
        let category_key = b.category.as_ref().map(|c| c.key.clone());
        BudgetDoc {
            id: b.id.to_string(),
            user_id: b.user_id.to_string(),
            household_id: b.household.as_ref().map(ToString::to_string),
            category: b.category.as_ref().map(|c| c.name.clone()),
            unique_key: if b.deleted {
                format!("deleted|{}", b.id)
            } else {
                unique_key(&b.ownership(), category_key.as_deref(), b.period)
            },
            category_key,
            amount_minor: b.amount.amount_minor(),
            currency: b.amount.currency().code().to_string(),
            period: b.period.as_str().to_string(),
            thresholds: b.thresholds.clone(),
            rearmed: b
                .rearmed
                .iter()
                .map(|r| RearmDoc {
                    threshold: r.threshold,
                    period_start: r.period_start.to_string(),
                    generation: r.generation,
                })
                .collect(),
            deleted: b.deleted,
            version: b.version,
            created_at: bson::DateTime::from_chrono(b.created_at),
            updated_at: bson::DateTime::from_chrono(b.updated_at),
        }
    }
}

impl From<&LedgerEntry> for LedgerDoc {
    fn from(e: &LedgerEntry) -> LedgerDoc {
        let (id, user_id, version) = (e.expense_id.to_string(), e.user_id.to_string(), e.version);
        match &e.live {
            Some(l) => LedgerDoc {
                id,
                user_id,
                version,
                kind: l.kind.as_str().to_string(),
                amount_minor: l.amount.amount_minor(),
                currency: l.amount.currency().code().to_string(),
                category_key: l.category_key.clone(),
                day: day_key(l.date),
                state: "live".to_string(),
                household_id: l.household.as_ref().map(ToString::to_string),
            },
            None => LedgerDoc {
                id,
                user_id,
                version,
                kind: String::new(),
                amount_minor: 0,
                currency: String::new(),
                category_key: String::new(),
                day: String::new(),
                state: "deleted".to_string(),
                household_id: None,
            },
        }
    }
}

fn stored_severity(text: &str) -> Option<Severity> {
    [Severity::Warning, Severity::Critical]
        .into_iter()
        .find(|s| s.as_str() == text)
}

impl TryFrom<AlertDoc> for Alert {
    type Error = AppError;

    fn try_from(d: AlertDoc) -> Result<Alert, AppError> {
        let bad = |field: &str, value: &dyn Debug| unreadable("alert", &d.id, field, value);
        let period_start =
            stored_date(&d.period_start).ok_or_else(|| bad("periodStart", &d.period_start))?;
        let severity = stored_severity(&d.severity).ok_or_else(|| bad("severity", &d.severity))?;
        Ok(Alert {
            threshold: d.threshold,
            generation: d.generation,
            period_start,
            percent_used: d.percent_used,
            severity,
            read_at: d.read_at.map(bson::DateTime::to_chrono),
            created_at: d.created_at.to_chrono(),
            id: AlertId::from_trusted(d.id),
            user_id: UserId::from_trusted(d.user_id),
            budget_id: BudgetId::from_trusted(d.budget_id),
            message: d.message,
        })
    }
}

impl AlertDoc {
    /// The document of a new alert carrying its events.
    pub fn new(a: &Alert, events: Outbox) -> AlertDoc {
        AlertDoc {
            id: a.id.to_string(),
            user_id: a.user_id.to_string(),
            budget_id: a.budget_id.to_string(),
            threshold: a.threshold,
            generation: a.generation,
            period_start: a.period_start.to_string(),
            dedup_key: format!(
                "{}|{}|{}|{}",
                a.budget_id, a.period_start, a.threshold, a.generation
            ),
            percent_used: a.percent_used,
            severity: a.severity.as_str().to_string(),
            message: a.message.clone(),
            read_at: a.read_at.map(bson::DateTime::from_chrono),
            created_at: bson::DateTime::from_chrono(a.created_at),
            events,
        }
    }
}

impl RateDoc {
    /// The rate as the domain reads it.
    pub fn rate(&self) -> Result<(Currency, Decimal), AppError> {
        let currency = stored_currency("rate", &self.currency, &self.currency)?;
        let per_usd = Decimal::parse(&self.per_usd)
            .map_err(|_| unreadable("rate", &self.currency, "perUsd", &self.per_usd))?;
        Ok((currency, per_usd))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn budget_doc() -> BudgetDoc {
        let at = bson::DateTime::from_chrono(Utc.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap());
        BudgetDoc {
            id: "0190a000-0000-7000-8000-000000000001".into(),
            user_id: "0190a000-0000-7000-8000-0000000000aa".into(),
            household_id: None,
            category: Some("Food".into()),
            category_key: Some("food".into()),
            amount_minor: 10_000,
            currency: "EUR".into(),
            period: "WEEKLY".into(),
            thresholds: vec![80, 100],
            rearmed: vec![RearmDoc {
                threshold: 80,
                period_start: "2024-03-04".into(),
                generation: 2,
            }],
            unique_key: "0190a000-0000-7000-8000-0000000000aa|food|WEEKLY".into(),
            deleted: false,
            version: 3,
            created_at: at,
            updated_at: at,
        }
    }

    fn alert_doc() -> AlertDoc {
        let at = bson::DateTime::from_chrono(Utc.with_ymd_and_hms(2024, 3, 5, 9, 0, 0).unwrap());
        AlertDoc {
            id: "0190a000-0000-7000-8000-000000000002".into(),
            user_id: "0190a000-0000-7000-8000-0000000000aa".into(),
            budget_id: "0190a000-0000-7000-8000-000000000001".into(),
            threshold: 80,
            generation: 2,
            period_start: "2024-03-04".into(),
            dedup_key: "0190a000-0000-7000-8000-000000000001|2024-03-04|80|2".into(),
            percent_used: 85.0,
            severity: "WARNING".into(),
            message: "You have used 85% of your Food budget".into(),
            read_at: None,
            created_at: at,
            events: Outbox::default(),
        }
    }

    use kit::testing::assert_internal as internal;

    #[test]
    fn documents_read_back_and_write_the_same() {
        let doc = budget_doc();
        let budget = Budget::try_from(doc.clone()).unwrap();
        assert_eq!(budget.period, Period::Weekly);
        assert_eq!(budget.amount.amount_text(), "100.00");
        assert_eq!(budget.category.as_ref().unwrap().key, "food");
        assert_eq!(
            budget.generation(80, NaiveDate::from_ymd_opt(2024, 3, 4).unwrap()),
            2
        );
        assert_eq!(BudgetDoc::from(&budget), doc);

        let mut deleted = budget.clone();
        deleted.deleted = true;
        assert_eq!(
            BudgetDoc::from(&deleted).unique_key,
            format!("deleted|{}", budget.id)
        );

        let doc = alert_doc();
        let alert = Alert::try_from(doc.clone()).unwrap();
        assert_eq!(alert.severity, Severity::Warning);
        assert_eq!(AlertDoc::new(&alert, Outbox::default()), doc);
    }

    #[test]
    fn unknown_stored_values_are_internal_errors_naming_record_field_and_value() {
        let id = "0190a000-0000-7000-8000-000000000001";
        for (change, field, value) in [
            (
                (|d: &mut BudgetDoc| d.period = "FORTNIGHTLY".into()) as fn(&mut BudgetDoc),
                "period",
                "FORTNIGHTLY",
            ),
            (|d| d.currency = "XYZ".into(), "currency", "XYZ"),
            (
                |d| d.rearmed[0].period_start = "2024-13-01".into(),
                "rearmed.periodStart",
                "2024-13-01",
            ),
            (|d| d.category_key = None, "categoryKey", "None"),
        ] {
            let mut doc = budget_doc();
            change(&mut doc);
            let e = Budget::try_from(doc).unwrap_err();
            internal(e, &[id, field, value]);
        }

        let mut doc = alert_doc();
        doc.severity = "SEVERE".into();
        internal(
            Alert::try_from(doc).unwrap_err(),
            &[
                "alert",
                "0190a000-0000-7000-8000-000000000002",
                "severity",
                "SEVERE",
            ],
        );
        let mut doc = alert_doc();
        doc.period_start = "soon".into();
        internal(Alert::try_from(doc).unwrap_err(), &["periodStart", "soon"]);

        let rate = RateDoc {
            currency: "EUR".into(),
            per_usd: "a lot".into(),
        };
        internal(
            rate.rate().unwrap_err(),
            &["rate", "EUR", "perUsd", "a lot"],
        );
    }
}
