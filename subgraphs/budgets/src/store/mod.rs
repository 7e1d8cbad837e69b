//! Storage of the `budgets` database: budgets, the spending ledger built from expense
//! events, and alerts (each carrying its `budget.alert` event in its outbox). Its
//! methods take and return the domain model; `documents` maps it to what is stored.

mod documents;

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use contract::households::Ownership;
use contract::ids::{AlertId, BudgetId, UserId};
use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use kit::events::Outbox;
use kit::money::{Currency, Decimal};
use mongodb::bson::{self, doc};
use mongodb::{Collection, Database};

use crate::domain::{Alert, Budget, LedgerEntry, Rates, Spending};
pub use documents::{AlertDoc, BudgetDoc, LedgerDoc, RateDoc, RearmDoc, unique_key};
use documents::{LedgerAmount, day_key, stored_currency};

pub const ALERTS: &str = "alerts";

#[derive(Clone)]
pub struct Store {
    pub budgets: Collection<BudgetDoc>,
    pub ledger: Collection<LedgerDoc>,
    pub alerts: Collection<AlertDoc>,
    pub rates: Collection<RateDoc>,
}

/// Maps every document of a query's answer.
fn all<D, T>(docs: Vec<D>) -> Result<Vec<T>, AppError>
where
    T: TryFrom<D, Error = AppError>,
{
    docs.into_iter().map(T::try_from).collect()
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
                index(
                    doc! { "householdId": 1, "deleted": 1 },
                    "household_budgets",
                    false,
                ),
            ])
            .await?;
        self.ledger
            .create_indexes([
                index(
                    doc! { "userId": 1, "state": 1, "type": 1, "day": 1 },
                    "user_days",
                    false,
                ),
                index(
                    doc! { "householdId": 1, "state": 1, "type": 1, "day": 1 },
                    "household_days",
                    false,
                ),
            ])
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
    pub async fn insert_budget(&self, b: &Budget) -> Result<bool, AppError> {
        kit::db::insert_new(&self.budgets, &BudgetDoc::from(b)).await
    }

    /// Replaces under the version check. `Ok(None)`: lost a race; `Ok(Some(false))`:
    /// the new category/period collides with another budget.
    pub async fn replace_budget(&self, b: &Budget, version: i64) -> Result<Option<bool>, AppError> {
        match self
            .budgets
            .replace_one(
                doc! { "_id": b.id.as_str(), "userId": b.user_id.as_str(), "version": version },
                BudgetDoc::from(b),
            )
            .await
        {
            Ok(r) if r.matched_count == 1 => Ok(Some(true)),
            Ok(_) => Ok(None),
            Err(e) if kit::error::is_duplicate_key(&e) => Ok(Some(false)),
            Err(e) => Err(e.into()),
        }
    }

    /// The live budget `id` of `owner` (a user's own, or a household's).
    pub async fn budget(
        &self,
        owner: &Ownership,
        id: &BudgetId,
    ) -> Result<Option<Budget>, AppError> {
        Ok(self
            .any_budget(id)
            .await?
            .filter(|b| !b.deleted && &b.ownership() == owner))
    }

    /// The budget `id`, whoever's it is, deleted or not: for a caller whose right to it
    /// is checked next.
    pub async fn any_budget(&self, id: &BudgetId) -> Result<Option<Budget>, AppError> {
        self.budgets
            .find_one(doc! { "_id": id.as_str() })
            .await?
            .map(Budget::try_from)
            .transpose()
    }

    /// The live budget `id` of `owner`, or `NOT_FOUND` (also for anyone else's).
    pub async fn owned_budget(&self, owner: &Ownership, id: &BudgetId) -> Result<Budget, AppError> {
        self.budget(owner, id)
            .await?
            .ok_or_else(|| AppError::not_found("budget"))
    }

    /// The budgets among `ids`, whoever's, also deleted ones (an old alert still names
    /// its budget), in one query; absent ids are not in the answer. The caller filters
    /// what the reader may see.
    pub async fn budgets_by_ids(&self, ids: &[BudgetId]) -> Result<Vec<Budget>, AppError> {
        let ids: Vec<&str> = ids.iter().map(BudgetId::as_str).collect();
        all(self
            .budgets
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?)
    }

    /// The live budgets of `owner`, oldest first: a user's own (not the households'
    /// they created), or a household's.
    pub async fn budgets_of(&self, owner: &Ownership) -> Result<Vec<Budget>, AppError> {
        let q = match owner {
            Ownership::User(u) => doc! { "userId": u.as_str(), "deleted": false },
            Ownership::Household(h) => doc! { "householdId": h.as_str(), "deleted": false },
        };
        let found: Vec<Budget> = all(self
            .budgets
            .find(q)
            .sort(doc! { "createdAt": 1 })
            .await?
            .try_collect()
            .await?)?;
        Ok(found
            .into_iter()
            .filter(|b| &b.ownership() == owner)
            .collect())
    }

    /// The user's own live budgets.
    pub async fn budgets(&self, user_id: &UserId) -> Result<Vec<Budget>, AppError> {
        self.budgets_of(&Ownership::User(user_id.clone())).await
    }

    /// Applies an expense's state if it is newer than what the ledger has. The filter
    /// only matches an older entry; for a newer one the upsert collides with `_id`,
    /// which means "already applied".
    pub async fn apply(&self, entry: &LedgerEntry) -> Result<bool, AppError> {
        let entry = LedgerDoc::from(entry);
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
                    "householdId": &entry.household_id,
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

    /// What a budget has used in `[start, next)`. INCOME never counts.
    pub async fn spending(
        &self,
        budget: &Budget,
        start: NaiveDate,
        next: NaiveDate,
    ) -> Result<Spending, AppError> {
        let mut all = self.spendings(&[(budget, start, next)]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// What each budget has used in its `[start, next)`, in the order given: one ledger
    /// query over the span of the periods whatever the number of budgets (one per owner
    /// when they belong to several), and the rates table at most once. A user's budget
    /// counts all of the user's expenses; a household's, the expenses shared with it.
    pub async fn spendings(
        &self,
        periods: &[(&Budget, NaiveDate, NaiveDate)],
    ) -> Result<Vec<Spending>, AppError> {
        // Sum per budget and currency first, then convert each foreign total once.
        let mut totals: Vec<BTreeMap<Currency, (i128, i64)>> = vec![BTreeMap::new(); periods.len()];
        let owners: Vec<Ownership> = periods.iter().map(|(b, _, _)| b.ownership()).collect();
        let mut distinct: Vec<&Ownership> = owners.iter().collect();
        distinct.sort();
        distinct.dedup();
        for owner in distinct {
            let mine: Vec<(usize, &Budget, String, String)> = periods
                .iter()
                .enumerate()
                .filter(|(i, _)| &owners[*i] == owner)
                .map(|(i, (b, start, next))| (i, *b, day_key(*start), day_key(*next)))
                .collect();
            let (Some(from), Some(to)) = (
                mine.iter().map(|m| m.2.as_str()).min(),
                mine.iter().map(|m| m.3.as_str()).max(),
            ) else {
                continue;
            };
            let mut q = match owner {
                Ownership::User(u) => doc! { "userId": u.as_str() },
                Ownership::Household(h) => doc! { "householdId": h.as_str() },
            };
            q.insert("state", "live");
            q.insert("type", "EXPENSE");
            q.insert("day", doc! { "$gte": from, "$lt": to });
            // Only the budgets' categories, unless one of them counts all spending.
            if mine.iter().all(|m| m.1.category.is_some()) {
                let keys: Vec<&str> = mine
                    .iter()
                    .filter_map(|m| m.1.category.as_ref().map(|c| c.key.as_str()))
                    .collect();
                q.insert("categoryKey", doc! { "$in": keys });
            }
            let mut cursor = self
                .ledger
                .clone_with_type::<LedgerAmount>()
                .find(q)
                .projection(doc! { "amountMinor": 1, "currency": 1, "categoryKey": 1, "day": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                let currency = stored_currency("ledger entry", &d.id, &d.currency)?;
                for (i, budget, start, next) in &mine {
                    let day = d.day.as_str();
                    if !budget.covers(&d.category_key)
                        || day < start.as_str()
                        || day >= next.as_str()
                    {
                        continue;
                    }
                    let t = totals[*i].entry(currency).or_insert((0, 0));
                    t.0 = t.0.saturating_add(i128::from(d.amount_minor));
                    t.1 += 1;
                }
            }
        }
        let mut rates: Option<Rates> = None;
        let mut out = Vec::with_capacity(periods.len());
        for ((budget, _, _), totals) in periods.iter().zip(totals) {
            let mut s = Spending::default();
            let target = budget.amount.currency();
            for (currency, (minor, count)) in totals {
                if currency == target {
                    s.spent_minor = s.spent_minor.saturating_add(minor);
                    continue;
                }
                let table = match &rates {
                    Some(t) => t,
                    None => rates.insert(self.rate_table().await?),
                };
                match table.convert(minor, currency, target) {
                    Some(m) => s.spent_minor = s.spent_minor.saturating_add(m),
                    None => s.uncounted += count,
                }
            }
            out.push(s);
        }
        Ok(out)
    }

    /// The rates table: units of each currency per USD.
    pub async fn rate_table(&self) -> Result<Rates, AppError> {
        let docs: Vec<RateDoc> = self.rates.find(doc! {}).await?.try_collect().await?;
        Ok(Rates(
            docs.iter()
                .map(RateDoc::rate)
                .collect::<Result<HashMap<_, _>, _>>()?,
        ))
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

    /// Sets one rate (admin): `per_usd` units of `currency` per USD.
    pub async fn set_rate(&self, currency: Currency, per_usd: Decimal) -> Result<(), AppError> {
        self.rates
            .update_one(
                doc! { "_id": currency.code() },
                doc! { "$set": { "perUsd": per_usd.to_string() } },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Inserts an alert with its events; false when this crossing already has one.
    pub async fn insert_alert(&self, a: &Alert, events: Outbox) -> Result<bool, AppError> {
        kit::db::insert_new(&self.alerts, &AlertDoc::new(a, events)).await
    }

    pub async fn alert(&self, user_id: &UserId, id: &AlertId) -> Result<Option<Alert>, AppError> {
        self.alerts
            .find_one(doc! { "_id": id.as_str(), "userId": user_id.as_str() })
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .map(Alert::try_from)
            .transpose()
    }

    /// The user's alerts among `ids`, in one query; absent ids (or someone else's) are
    /// not in the answer.
    pub async fn alerts_by_ids(
        &self,
        user_id: &UserId,
        ids: &[AlertId],
    ) -> Result<Vec<Alert>, AppError> {
        let ids: Vec<&str> = ids.iter().map(AlertId::as_str).collect();
        all(self
            .alerts
            .find(doc! { "_id": { "$in": ids }, "userId": user_id.as_str() })
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?)
    }

    pub async fn alerts(
        &self,
        user_id: &UserId,
        budget_ids: &[BudgetId],
        unread_only: bool,
    ) -> Result<Vec<Alert>, AppError> {
        let ids: Vec<&str> = budget_ids.iter().map(BudgetId::as_str).collect();
        let mut q = doc! { "userId": user_id.as_str(), "budgetId": { "$in": ids } };
        if unread_only {
            q.insert("readAt", bson::Bson::Null);
        }
        all(self
            .alerts
            .find(q)
            .sort(doc! { "createdAt": -1, "threshold": -1 })
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?)
    }

    pub async fn mark_read(&self, user_id: &UserId, id: &AlertId) -> Result<bool, AppError> {
        let r = self
            .alerts
            .update_one(
                doc! { "_id": id.as_str(), "userId": user_id.as_str() },
                doc! { "$currentDate": { "readAt": true } },
            )
            .await?;
        Ok(r.matched_count == 1)
    }
}
