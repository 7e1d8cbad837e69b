//! Storage of the analytics subgraph (db `analytics`):
//! - `events`: every expense event received, kept as the log the rebuild replays;
//! - `expenses`: the latest known state of each expense (version-guarded);
//! - `daily`: the read model, one row per (user, day, type, currency, category),
//!   always recomputed from `expenses` (absolute values, so re-applying is harmless).

use chrono::NaiveDate;
use contract::ids::{EventId, UserId};
use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use kit::error::is_duplicate_key;
use kit::events::Event;
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use crate::domain::{DayTotal, ExpenseFact, Kind, Window};

pub const EVENTS: &str = "events";
pub const EXPENSES: &str = "expenses";
pub const DAILY: &str = "daily";
pub const PROFILES: &str = "profiles";

/// The event log entry (the event as received).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload's version (absent on entries logged before versions: 1).
    #[serde(default = "first_version")]
    pub version: i64,
    pub user_id: String,
    pub occurred_at: String,
    /// The event's data as JSON text (kept exactly as sent).
    pub data: String,
    pub received_at: bson::DateTime,
}

fn first_version() -> i64 {
    1
}

impl EventDoc {
    pub fn from_event(e: &Event) -> EventDoc {
        EventDoc {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            version: i64::from(e.version),
            user_id: e.user_id.to_string(),
            occurred_at: e.occurred_at.clone(),
            data: e.data.to_string(),
            received_at: bson::DateTime::now(),
        }
    }

    pub fn to_event(&self) -> Result<Event, AppError> {
        Ok(Event {
            id: EventId::from_trusted(&self.id),
            kind: self.kind.clone(),
            version: u32::try_from(self.version).map_err(AppError::internal)?,
            user_id: UserId::from_trusted(&self.user_id),
            occurred_at: self.occurred_at.clone(),
            data: serde_json::from_str(&self.data).map_err(AppError::internal)?,
        })
    }
}

/// An expense's latest known state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExpenseDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub version: i64,
    pub deleted: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category: String,
    pub category_key: String,
    /// `YYYY-MM-DD` in the user's calendar.
    pub date: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub date: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub currency: String,
    pub category: String,
    pub category_key: String,
    pub total_minor: i64,
    pub count: i64,
}

/// The key of a read-model row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketKey {
    pub user_id: String,
    pub date: String,
    pub kind: String,
    pub currency: String,
    pub category_key: String,
}

impl BucketKey {
    pub fn of(e: &ExpenseDoc) -> BucketKey {
        BucketKey {
            user_id: e.user_id.clone(),
            date: e.date.clone(),
            kind: e.kind.clone(),
            currency: e.currency.clone(),
            category_key: e.category_key.clone(),
        }
    }

    fn id(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.user_id, self.date, self.kind, self.currency, self.category_key
        )
    }
}

pub fn parse_day(s: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| AppError::internal(anyhow::anyhow!("stored date {s:?}: {e}")))
}

pub fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[derive(Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: &Database) -> Store {
        Store { db: db.clone() }
    }

    pub fn events(&self) -> Collection<EventDoc> {
        self.db.collection(EVENTS)
    }

    pub fn expenses(&self) -> Collection<ExpenseDoc> {
        self.db.collection(EXPENSES)
    }

    pub fn daily(&self) -> Collection<DailyDoc> {
        self.db.collection(DAILY)
    }

    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        self.daily()
            .create_index(index(doc! { "userId": 1, "date": 1 }, "user_date", false))
            .await?;
        self.expenses()
            .create_index(index(
                doc! { "userId": 1, "date": 1, "type": 1 },
                "user_date_type",
                false,
            ))
            .await?;
        Ok(())
    }

    /// Records an event in the log; false when it was already there.
    pub async fn log_event(&self, event: &Event) -> Result<bool, AppError> {
        kit::db::insert_new(&self.events(), &EventDoc::from_event(event)).await
    }

    /// Stores `state` unless a newer or equal version is already stored.
    pub async fn put_expense(&self, state: &ExpenseDoc) -> Result<(), AppError> {
        let r = self
            .expenses()
            .replace_one(
                doc! { "_id": &state.id, "version": { "$lt": state.version } },
                state,
            )
            .await?;
        if r.matched_count == 1 {
            return Ok(());
        }
        match self.expenses().insert_one(state).await {
            Ok(_) => Ok(()),
            // Exists with a version at least as new: this event is old news.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_expense(&self, id: &str) -> Result<Option<ExpenseDoc>, AppError> {
        Ok(self.expenses().find_one(doc! { "_id": id }).await?)
    }

    /// Recomputes one read-model row from the stored expenses.
    pub async fn recompute(&self, key: &BucketKey) -> Result<(), AppError> {
        let mut cursor = self
            .expenses()
            .find(doc! {
                "userId": &key.user_id, "date": &key.date, "type": &key.kind,
                "currency": &key.currency, "categoryKey": &key.category_key, "deleted": false,
            })
            .await?;
        let (mut total, mut count, mut category) = (0_i64, 0_i64, String::new());
        while let Some(e) = cursor.try_next().await? {
            total = total.saturating_add(e.amount_minor);
            count += 1;
            category = e.category;
        }
        let id = key.id();
        if count == 0 {
            self.daily().delete_one(doc! { "_id": &id }).await?;
            return Ok(());
        }
        let row = DailyDoc {
            id: id.clone(),
            user_id: key.user_id.clone(),
            date: key.date.clone(),
            kind: key.kind.clone(),
            currency: key.currency.clone(),
            category,
            category_key: key.category_key.clone(),
            total_minor: total,
            count,
        };
        self.daily()
            .replace_one(doc! { "_id": &id }, &row)
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Read-model rows of a user in `currency` over `[from, to)`.
    pub async fn day_totals(
        &self,
        user_id: &str,
        currency: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayTotal>, AppError> {
        let mut cursor = self
            .daily()
            .find(doc! {
                "userId": user_id,
                "date": { "$gte": day(from), "$lt": day(to) },
            })
            .await?;
        let mut out = Vec::new();
        while let Some(r) = cursor.try_next().await? {
            if r.currency != currency {
                continue;
            }
            let Some(kind) = Kind::parse(&r.kind) else {
                continue;
            };
            out.push(DayTotal {
                date: parse_day(&r.date)?,
                kind,
                category: r.category,
                total_minor: r.total_minor,
                count: r.count,
            });
        }
        Ok(out)
    }

    /// A user's expenses (not incomes) in `currency` within `window`.
    pub async fn expense_facts(
        &self,
        user_id: &str,
        currency: &str,
        window: Window,
    ) -> Result<Vec<ExpenseFact>, AppError> {
        let mut cursor = self
            .expenses()
            .find(doc! {
                "userId": user_id,
                "date": { "$gte": day(window.start), "$lt": day(window.next) },
                "type": "EXPENSE",
            })
            .await?;
        let mut out = Vec::new();
        while let Some(e) = cursor.try_next().await? {
            if e.deleted || e.currency != currency {
                continue;
            }
            out.push(ExpenseFact {
                date: parse_day(&e.date)?,
                id: e.id,
                category: e.category,
                amount_minor: e.amount_minor,
            });
        }
        Ok(out)
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Users with an expense dated on or after `since`.
    pub async fn recent_users(&self, since: NaiveDate) -> Result<Vec<String>, AppError> {
        let found = self
            .expenses()
            .distinct("userId", doc! { "date": { "$gte": day(since) } })
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect())
    }

    /// The currency of the user's most recently dated expense.
    pub async fn latest_currency(&self, user_id: &str) -> Result<Option<String>, AppError> {
        Ok(self
            .expenses()
            .find_one(doc! { "userId": user_id })
            .sort(doc! { "date": -1 })
            .await?
            .map(|e| e.currency))
    }

    /// Remembers a user's timezone and currency (seen when they use analytics), for
    /// the weekly job, which runs without a user's token.
    pub async fn remember_profile(
        &self,
        user_id: &str,
        timezone: &str,
        currency: &str,
    ) -> Result<(), AppError> {
        let profiles = self.db.collection::<Document>(PROFILES);
        let same = profiles
            .find_one(doc! { "_id": user_id, "timezone": timezone, "currency": currency })
            .await?;
        if same.is_none() {
            profiles
                .replace_one(
                    doc! { "_id": user_id },
                    doc! { "_id": user_id, "timezone": timezone, "currency": currency },
                )
                .upsert(true)
                .await?;
        }
        Ok(())
    }

    /// The remembered timezone (UTC when unknown) and currency of a user.
    pub async fn profile_of(
        &self,
        user_id: &str,
    ) -> Result<(chrono_tz::Tz, Option<String>), AppError> {
        let p = self
            .db
            .collection::<Document>(PROFILES)
            .find_one(doc! { "_id": user_id })
            .await?;
        let tz = p
            .as_ref()
            .and_then(|d| d.get_str("timezone").ok())
            .and_then(|t| t.parse().ok())
            .unwrap_or(chrono_tz::Tz::UTC);
        let currency = p
            .as_ref()
            .and_then(|d| d.get_str("currency").ok())
            .map(str::to_string);
        Ok((tz, currency))
    }

    /// Drops the derived collections (the rebuild starts from the log).
    pub async fn clear_read_models(&self) -> Result<(), AppError> {
        self.expenses().delete_many(doc! {}).await?;
        self.daily().delete_many(doc! {}).await?;
        Ok(())
    }

    /// The whole event log, oldest first (UUIDv7 ids sort by creation time).
    pub async fn all_events(&self) -> Result<mongodb::Cursor<EventDoc>, AppError> {
        Ok(self.events().find(doc! {}).sort(doc! { "_id": 1 }).await?)
    }
}
