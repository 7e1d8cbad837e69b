//! Storage of the `budgets` database: budgets, the spending ledger built from expense
//! events, and alerts (each carrying its `budget.alert` event in its outbox).

use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use kit::events::Outbox;
use mongodb::bson::{self, doc};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

pub const ALERTS: &str = "alerts";

/// A re-armed threshold: after a budget change un-crossed it in a period, the next
/// alert for it in that period uses the next generation (a new unique key).
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
    /// Display name; null: all spending.
    pub category: Option<String>,
    pub category_key: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub period: String,
    pub thresholds: Vec<i32>,
    #[serde(default)]
    pub rearmed: Vec<RearmDoc>,
    /// `user|category-or-*|period` while live (unique: one budget per user, category
    /// and period); `deleted|id` once deleted.
    pub unique_key: String,
    pub deleted: bool,
    pub version: i64,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
}

impl BudgetDoc {
    pub fn generation(&self, threshold: i32, period_start: &str) -> i64 {
        self.rearmed
            .iter()
            .find(|r| r.threshold == threshold && r.period_start == period_start)
            .map(|r| r.generation)
            .unwrap_or(0)
    }
}

pub fn unique_key(user_id: &str, category_key: Option<&str>, period: &str) -> String {
    format!("{user_id}|{}|{period}", category_key.unwrap_or("*"))
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
    #[serde(rename = "type")]
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category_key: String,
    /// `YYYYMMDD`.
    pub day: String,
    /// `live` or `deleted` (text, not a boolean: nx-27017 stores a `$set` boolean as 1).
    pub state: String,
}

/// The part of a ledger entry a sum reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerAmount {
    amount_minor: i64,
    currency: String,
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
    pub severity: String,
    pub message: String,
    /// When the user marked it read; set with `$currentDate` (server time).
    pub read_at: Option<bson::DateTime>,
    pub created_at: bson::DateTime,
    #[serde(flatten)]
    pub events: Outbox,
}

#[derive(Clone)]
pub struct Store {
    pub budgets: Collection<BudgetDoc>,
    pub ledger: Collection<LedgerDoc>,
    pub alerts: Collection<AlertDoc>,
    pub rates: Collection<RateDoc>,
}

/// Sums of the ledger within a period for one budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spending {
    /// In the budget's currency; other currencies converted with the rates table.
    pub spent_minor: i64,
    /// Matching expenses in a currency without a rate: not counted, never guessed.
    pub uncounted: i64,
}

/// Units of a currency per 1 USD, as exact decimal text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateDoc {
    #[serde(rename = "_id")]
    pub currency: String,
    pub per_usd: String,
}

impl Store {
    pub fn new(db: &Database) -> Store {
        Store {
            budgets: db.collection("budgets"),
            ledger: db.collection("ledger"),
            alerts: db.collection(ALERTS),
            rates: db.collection("rates"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        self.budgets
            .create_indexes([
                index(doc! { "uniqueKey": 1 }, "one_per_category_period", true),
                index(doc! { "userId": 1, "deleted": 1 }, "user_budgets", false),
            ])
            .await?;
        self.ledger
            .create_indexes([index(
                doc! { "userId": 1, "state": 1, "type": 1, "day": 1 },
                "user_days",
                false,
            )])
            .await?;
        self.alerts
            .create_indexes([
                index(doc! { "dedupKey": 1 }, "one_alert_per_crossing", true),
                index(
                    doc! { "userId": 1, "budgetId": 1, "createdAt": -1 },
                    "user_budget_alerts",
                    false,
                ),
                index(
                    doc! { "userId": 1, "read": 1, "createdAt": -1 },
                    "user_alerts",
                    false,
                ),
            ])
            .await?;
        Ok(())
    }

    /// Inserts; false when the user already has a budget for that category and period.
    pub async fn insert_budget(&self, b: &BudgetDoc) -> Result<bool, AppError> {
        kit::db::insert_new(&self.budgets, b).await
    }

    /// Replaces under the version check. `Ok(None)`: lost a race; `Ok(Some(false))`:
    /// the new category/period collides with another budget.
    pub async fn replace_budget(
        &self,
        b: &BudgetDoc,
        version: i64,
    ) -> Result<Option<bool>, AppError> {
        match self
            .budgets
            .replace_one(
                doc! { "_id": &b.id, "userId": &b.user_id, "version": version },
                b,
            )
            .await
        {
            Ok(r) if r.matched_count == 1 => Ok(Some(true)),
            Ok(_) => Ok(None),
            Err(e) if kit::error::is_duplicate_key(&e) => Ok(Some(false)),
            Err(e) => Err(e.into()),
        }
    }

    /// The caller's live budget.
    pub async fn budget(&self, user_id: &str, id: &str) -> Result<Option<BudgetDoc>, AppError> {
        Ok(self
            .budgets
            .find_one(doc! { "_id": id, "userId": user_id, "deleted": false })
            .await?)
    }

    /// The caller's live budget `id`, or `NOT_FOUND` (also for someone else's).
    pub async fn owned_budget(&self, user_id: &str, id: &str) -> Result<BudgetDoc, AppError> {
        self.budget(user_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("budget"))
    }

    /// Also a deleted one (an old alert still names its budget).
    pub async fn budget_any(&self, user_id: &str, id: &str) -> Result<Option<BudgetDoc>, AppError> {
        Ok(self
            .budgets
            .find_one(doc! { "_id": id, "userId": user_id })
            .await?)
    }

    pub async fn budgets(&self, user_id: &str) -> Result<Vec<BudgetDoc>, AppError> {
        Ok(self
            .budgets
            .find(doc! { "userId": user_id, "deleted": false })
            .sort(doc! { "createdAt": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Applies an expense's state if it is newer than what the ledger has. The filter
    /// only matches an older entry; for a newer one the upsert collides with `_id`,
    /// which means "already applied".
    pub async fn apply(&self, entry: &LedgerDoc) -> Result<bool, AppError> {
        let r = self
            .ledger
            .update_one(
                doc! { "_id": &entry.id, "version": { "$lt": entry.version } },
                doc! { "$set": {
                    "userId": &entry.user_id,
                    "version": entry.version,
                    "type": &entry.kind,
                    "amountMinor": entry.amount_minor,
                    "currency": &entry.currency,
                    "categoryKey": &entry.category_key,
                    "day": &entry.day,
                    "state": &entry.state,
                } },
            )
            .upsert(true)
            .await;
        match r {
            Ok(r) => Ok(r.matched_count == 1 || r.upserted_id.is_some()),
            Err(e) if kit::error::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// What a budget has used in `[start, next)` (`YYYYMMDD` keys). INCOME never counts.
    pub async fn spending(
        &self,
        budget: &BudgetDoc,
        start: &str,
        next: &str,
    ) -> Result<Spending, AppError> {
        let mut q = doc! {
            "userId": &budget.user_id, "state": "live", "type": "EXPENSE",
            "day": { "$gte": start, "$lt": next },
        };
        if let Some(c) = &budget.category_key {
            q.insert("categoryKey", c);
        }
        let mut cursor = self
            .ledger
            .clone_with_type::<LedgerAmount>()
            .find(q)
            .projection(doc! { "amountMinor": 1, "currency": 1 })
            .await?;
        // Sum per currency first, then convert each foreign total once.
        let mut totals: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        while let Some(d) = cursor.try_next().await? {
            let t = totals.entry(d.currency).or_insert((0, 0));
            t.0 = t.0.saturating_add(d.amount_minor);
            t.1 += 1;
        }
        let mut s = Spending::default();
        let target = kit::money::Currency::parse(&budget.currency).map_err(AppError::internal)?;
        let mut rates: Option<std::collections::HashMap<String, String>> = None;
        for (currency, (minor, count)) in totals {
            if currency == budget.currency {
                s.spent_minor = s.spent_minor.saturating_add(minor);
                continue;
            }
            let table = match &rates {
                Some(t) => t,
                None => rates.insert(self.rate_table().await?),
            };
            let converted = (|| {
                let from = kit::money::Currency::parse(&currency).ok()?;
                let from_rate = kit::money::Decimal::parse(table.get(&currency)?).ok()?;
                let to_rate = kit::money::Decimal::parse(table.get(&budget.currency)?).ok()?;
                crate::domain::convert(
                    minor,
                    from.exponent(),
                    from_rate,
                    target.exponent(),
                    to_rate,
                )
            })();
            match converted {
                Some(m) => s.spent_minor = s.spent_minor.saturating_add(m),
                None => s.uncounted += count,
            }
        }
        Ok(s)
    }

    /// The rates table: currency → units per USD.
    pub async fn rate_table(&self) -> Result<std::collections::HashMap<String, String>, AppError> {
        let docs: Vec<RateDoc> = self.rates.find(doc! {}).await?.try_collect().await?;
        Ok(docs.into_iter().map(|r| (r.currency, r.per_usd)).collect())
    }

    /// Seeds the fixed rates where the table has none (never overwrites an admin's).
    pub async fn seed_rates(&self) -> Result<(), AppError> {
        for (currency, rate) in crate::domain::SEED_RATES {
            self.rates
                .update_one(
                    doc! { "_id": currency },
                    doc! { "$setOnInsert": { "perUsd": rate } },
                )
                .upsert(true)
                .await?;
        }
        Ok(())
    }

    /// Sets one rate (admin).
    pub async fn set_rate(&self, currency: &str, per_usd: &str) -> Result<(), AppError> {
        self.rates
            .update_one(
                doc! { "_id": currency },
                doc! { "$set": { "perUsd": per_usd } },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Inserts an alert; false when this crossing already has one.
    pub async fn insert_alert(&self, a: &AlertDoc) -> Result<bool, AppError> {
        kit::db::insert_new(&self.alerts, a).await
    }

    pub async fn alert(&self, user_id: &str, id: &str) -> Result<Option<AlertDoc>, AppError> {
        Ok(self
            .alerts
            .find_one(doc! { "_id": id, "userId": user_id })
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?)
    }

    pub async fn alerts(
        &self,
        user_id: &str,
        budget_ids: &[String],
        unread_only: bool,
    ) -> Result<Vec<AlertDoc>, AppError> {
        let mut q = doc! { "userId": user_id, "budgetId": { "$in": budget_ids } };
        if unread_only {
            q.insert("readAt", bson::Bson::Null);
        }
        Ok(self
            .alerts
            .find(q)
            .sort(doc! { "createdAt": -1, "threshold": -1 })
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?)
    }

    pub async fn mark_read(&self, user_id: &str, id: &str) -> Result<bool, AppError> {
        let r = self
            .alerts
            .update_one(
                doc! { "_id": id, "userId": user_id },
                doc! { "$currentDate": { "readAt": true } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }
}
