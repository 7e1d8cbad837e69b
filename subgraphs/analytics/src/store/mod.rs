//! Storage of the analytics subgraph (db `analytics`):
//! - `events`: every expense event received, kept as the log the rebuild replays;
//! - `expenses`: the latest known state of each expense (version-guarded);
//! - `daily`: the read model, one row per (user, day, type, currency, category),
//!   always recomputed from `expenses` (absolute values, so re-applying is harmless);
//! - `profiles`: each user's timezone and currency as last seen;
//! - `weekly_runs`: the weekly summaries made, each with its event in its outbox.
//!
//! Its methods take and return the domain model; `documents` maps it to what is stored.

mod documents;

use chrono::NaiveDate;
use std::collections::BTreeMap;

use contract::ids::{ExpenseId, HouseholdId, UserId};
use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use kit::error::is_duplicate_key;
use kit::events::{Event, Outbox};
use kit::money::{Currency, MoneyError};
use kit::users::UserProfile;
use mongodb::bson::{Bson, doc};
use mongodb::{Collection, Database};

use crate::domain::{BucketKey, DayTotal, ExpenseFact, ExpenseState, TxKind, WeeklyRun, Window};
pub use documents::{DailyDoc, EventDoc, ExpenseDoc, ProfileDoc, RunDoc};
use documents::{bucket_id, day};

pub const EVENTS: &str = "events";
pub const EXPENSES: &str = "expenses";
pub const DAILY: &str = "daily";
pub const PROFILES: &str = "profiles";
pub const WEEKLY_RUNS: &str = "weekly_runs";

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

    fn profiles(&self) -> Collection<ProfileDoc> {
        self.db.collection(PROFILES)
    }

    fn runs(&self) -> Collection<RunDoc> {
        self.db.collection(WEEKLY_RUNS)
    }

    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        self.daily()
            .create_index(index(doc! { "userId": 1, "date": 1 }, "user_date", false))
            .await?;
        self.expenses()
            .create_index(index(
                doc! { "householdId": 1, "date": 1 },
                "household_date",
                false,
            ))
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
    pub async fn put_expense(&self, state: &ExpenseState) -> Result<(), AppError> {
        let state = ExpenseDoc::from(state);
        let r = self
            .expenses()
            .replace_one(
                doc! { "_id": &state.id, "version": { "$lt": state.version } },
                &state,
            )
            .await?;
        if r.matched_count == 1 {
            return Ok(());
        }
        match self.expenses().insert_one(&state).await {
            Ok(_) => Ok(()),
            // Exists with a version at least as new: this event is old news.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_expense(&self, id: &ExpenseId) -> Result<Option<ExpenseState>, AppError> {
        self.expenses()
            .find_one(doc! { "_id": id.as_str() })
            .await?
            .map(ExpenseState::try_from)
            .transpose()
    }

    /// Recomputes one read-model row from the stored expenses.
    pub async fn recompute(&self, key: &BucketKey) -> Result<(), AppError> {
        let date = day(key.date);
        let mut cursor = self
            .expenses()
            .find(doc! {
                "userId": key.user_id.as_str(), "date": &date, "type": key.kind.as_str(),
                "currency": key.currency.code(), "categoryKey": &key.category_key,
                "deleted": false,
            })
            .await?;
        let (mut total, mut count, mut category) = (0_i128, 0_i64, String::new());
        while let Some(e) = cursor.try_next().await? {
            total = total
                .checked_add(i128::from(e.amount_minor))
                .ok_or_else(|| AppError::total(MoneyError::TotalOutOfRange))?;
            count += 1;
            category = e.category;
        }
        let id = bucket_id(key);
        if count == 0 {
            self.daily().delete_one(doc! { "_id": &id }).await?;
            return Ok(());
        }
        let row = DailyDoc {
            id: id.clone(),
            user_id: key.user_id.to_string(),
            date,
            kind: key.kind.as_str().to_string(),
            currency: key.currency.code().to_string(),
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
        user_id: &UserId,
        currency: Currency,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayTotal>, AppError> {
        let mut cursor = self
            .daily()
            .find(doc! {
                "userId": user_id.as_str(),
                "date": { "$gte": day(from), "$lt": day(to) },
            })
            .await?;
        let mut out = Vec::new();
        while let Some(r) = cursor.try_next().await? {
            let (c, total) = r.into_total()?;
            if c == currency {
                out.push(total);
            }
        }
        Ok(out)
    }

    /// The day totals of the expenses and incomes shared with `household`, in
    /// `currency`, over `[from, to)`: summed here from the expenses themselves (a
    /// household's shared records are few next to its members' own).
    pub async fn household_day_totals(
        &self,
        household: &HouseholdId,
        currency: Currency,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayTotal>, AppError> {
        let mut cursor = self
            .expenses()
            .find(doc! {
                "householdId": household.as_str(),
                "date": { "$gte": day(from), "$lt": day(to) },
                "currency": currency.code(),
                "deleted": false,
            })
            .await?;
        let mut rows: BTreeMap<(NaiveDate, &'static str, String), DayTotal> = BTreeMap::new();
        while let Some(doc) = cursor.try_next().await? {
            // Live and in `currency`: the query's own conditions.
            let e = ExpenseState::try_from(doc)?;
            let row = rows
                .entry((e.date, e.kind.as_str(), e.category_key.clone()))
                .or_insert_with(|| DayTotal {
                    date: e.date,
                    kind: e.kind,
                    category: e.category.clone(),
                    total_minor: 0,
                    count: 0,
                });
            row.total_minor = row
                .total_minor
                .checked_add(i128::from(e.amount.amount_minor()))
                .ok_or_else(|| AppError::total(MoneyError::TotalOutOfRange))?;
            row.count += 1;
        }
        Ok(rows.into_values().collect())
    }

    /// A user's expenses (not incomes) in `currency` within `window`.
    pub async fn expense_facts(
        &self,
        user_id: &UserId,
        currency: Currency,
        window: Window,
    ) -> Result<Vec<ExpenseFact>, AppError> {
        let mut cursor = self
            .expenses()
            .find(doc! {
                "userId": user_id.as_str(),
                "date": { "$gte": day(window.start), "$lt": day(window.next) },
                "type": TxKind::Expense.as_str(),
            })
            .await?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.try_next().await? {
            let e = ExpenseState::try_from(doc)?;
            if e.deleted || e.amount.currency() != currency {
                continue;
            }
            out.push(ExpenseFact {
                id: e.id,
                date: e.date,
                category: e.category,
                amount_minor: e.amount.amount_minor(),
            });
        }
        Ok(out)
    }

    /// Users with an expense dated on or after `since`.
    pub async fn recent_users(&self, since: NaiveDate) -> Result<Vec<UserId>, AppError> {
        self.expenses()
            .distinct("userId", doc! { "date": { "$gte": day(since) } })
            .await?
            .into_iter()
            .map(|b| match b {
                Bson::String(id) => Ok(UserId::from_trusted(id)),
                other => Err(AppError::internal(anyhow::anyhow!(
                    "an expense has an unreadable stored userId: {other:?}"
                ))),
            })
            .collect()
    }

    /// The currency of the user's most recently dated expense.
    pub async fn latest_currency(&self, user_id: &UserId) -> Result<Option<Currency>, AppError> {
        let latest = self
            .expenses()
            .find_one(doc! { "userId": user_id.as_str() })
            .sort(doc! { "date": -1 })
            .await?;
        Ok(latest
            .map(ExpenseState::try_from)
            .transpose()?
            .map(|e| e.amount.currency()))
    }

    /// Remembers a user's timezone and currency (seen when they use analytics), for
    /// the weekly job, which runs without a user's token.
    pub async fn remember_profile(
        &self,
        user_id: &UserId,
        profile: &UserProfile,
    ) -> Result<(), AppError> {
        let doc = ProfileDoc::new(user_id, profile);
        let same = self
            .profiles()
            .find_one(doc! { "_id": &doc.id, "timezone": &doc.timezone, "currency": &doc.currency })
            .await?;
        if same.is_none() {
            self.profiles()
                .replace_one(doc! { "_id": &doc.id }, &doc)
                .upsert(true)
                .await?;
        }
        Ok(())
    }

    /// The remembered timezone and currency of a user; `None` before they used analytics.
    pub async fn profile_of(&self, user_id: &UserId) -> Result<Option<UserProfile>, AppError> {
        self.profiles()
            .find_one(doc! { "_id": user_id.as_str() })
            .await?
            .map(UserProfile::try_from)
            .transpose()
    }

    /// True when `user`'s summary of `week` was made.
    pub async fn weekly_run_made(&self, user_id: &UserId, week: &str) -> Result<bool, AppError> {
        Ok(self
            .runs()
            .find_one(doc! { "_id": RunDoc::id(user_id, week) })
            .await?
            .is_some())
    }

    /// Inserts a weekly run with its events; false when another instance made it first.
    pub async fn insert_weekly_run(
        &self,
        run: &WeeklyRun,
        events: Outbox,
    ) -> Result<bool, AppError> {
        kit::db::insert_new(&self.runs(), &RunDoc::new(run, events)).await
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
