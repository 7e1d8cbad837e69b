//! Storage of the `expenses` database: documents, indexes and queries.
//!
//! Every query starts with `userId` and is served by an index whose first key is
//! `userId`. Lists sort by `sortKey` = `YYYYMMDD|<id>` descending: one string field
//! that orders by date then id, carries the inclusive date range as a half-open key
//! range, and doubles as the page cursor.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use kit::events::Outbox;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

pub const EXPENSES: &str = "expenses";
/// How many values one `$in` lookup carries.
const LOOKUP_CHUNK: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecurrenceDoc {
    pub frequency: String,
    /// `YYYY-MM-DD`, inclusive.
    pub end_date: Option<String>,
    /// The user's timezone when the series was set: "due" means due there.
    pub timezone: String,
    /// Names this schedule: `<expense id>:<version that set it>`.
    pub series: String,
    /// Index of the next occurrence to create (0 is the expense itself).
    pub next_index: i64,
    /// `YYYYMMDD` of that occurrence; null when the series has ended.
    pub next_day: Option<String>,
}

/// A stored expense or income. Deleted ones stay as tombstones (`deleted: true`) so
/// the delete event rides in the same write and an idempotency key stays spent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExpenseDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    /// `EXPENSE` or `INCOME`.
    #[serde(rename = "type")]
    pub kind: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category: String,
    pub category_key: String,
    pub description: String,
    /// `YYYY-MM-DD` in the user's calendar.
    pub date: String,
    pub sort_key: String,
    pub payment_method: Option<String>,
    pub tags: Vec<String>,
    pub recurrence: Option<RecurrenceDoc>,
    /// The recurring expense this one is an occurrence of.
    pub recurring_from: Option<String>,
    /// The client's idempotency key, `recur:<template>:<n>` for occurrences, or
    /// `id:<id>` when none was given (so the unique index never sees a null).
    pub idem_key: String,
    /// SHA-256 of the canonical input, to tell a replay from a reuse.
    pub idem_hash: Option<String>,
    /// Incremented by every write; the optimistic-concurrency check of replacements.
    pub version: i64,
    pub deleted: bool,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(flatten)]
    pub events: Outbox,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CategoryDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub key: String,
    pub created_at: bson::DateTime,
}

/// What `expenses(filter)` narrows by; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub category_keys: Option<Vec<String>>,
    /// `YYYYMMDD` lower bound (inclusive).
    pub from_day: Option<String>,
    /// `YYYYMMDD` of the day after the last included day (exclusive).
    pub until_day: Option<String>,
    /// Amounts are compared in minor units of one currency, so the filter is bound to it.
    pub amount: Option<(String, Option<i64>, Option<i64>)>,
    pub search: Option<String>,
    pub tag: Option<String>,
    pub payment_method: Option<String>,
    pub currency: Option<String>,
}

/// Escapes text for use inside a regular expression.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for ch in text.chars() {
        if "\\^$.|?*+()[]{}/-".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

impl ListFilter {
    /// The query document; `before` is the cursor's sort key (exclusive).
    pub fn to_document(&self, user_id: &str, before: Option<&str>) -> Document {
        let mut q = doc! { "userId": user_id, "deleted": false };
        if let Some(k) = &self.kind {
            q.insert("type", k);
        }
        if let Some(keys) = &self.category_keys {
            if keys.len() == 1 {
                q.insert("categoryKey", &keys[0]);
            } else {
                q.insert("categoryKey", doc! { "$in": keys });
            }
        }
        let mut range = Document::new();
        if let Some(f) = &self.from_day {
            range.insert("$gte", f);
        }
        let upper = match (self.until_day.as_deref(), before) {
            (Some(a), Some(b)) => Some(if a < b { a } else { b }),
            (a, b) => a.or(b),
        };
        if let Some(u) = upper {
            range.insert("$lt", u);
        }
        if !range.is_empty() {
            q.insert("sortKey", range);
        }
        if let Some(c) = &self.currency {
            q.insert("currency", c);
        }
        if let Some((currency, min, max)) = &self.amount {
            q.insert("currency", currency);
            let mut r = Document::new();
            if let Some(m) = min {
                r.insert("$gte", m);
            }
            if let Some(m) = max {
                r.insert("$lte", m);
            }
            if !r.is_empty() {
                q.insert("amountMinor", r);
            }
        }
        if let Some(s) = &self.search {
            q.insert(
                "description",
                doc! { "$regex": regex_escape(s), "$options": "i" },
            );
        }
        if let Some(t) = &self.tag {
            q.insert("tags", t);
        }
        if let Some(p) = &self.payment_method {
            q.insert("paymentMethod", p);
        }
        q
    }
}

/// Sum and count of one category in a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryTotal {
    pub kind: String,
    pub category: String,
    pub total_minor: i64,
    pub count: i64,
}

#[derive(Clone)]
pub struct Store {
    pub expenses: Collection<ExpenseDoc>,
    categories: Collection<CategoryDoc>,
}

fn number(b: Option<&Bson>) -> Result<i64, AppError> {
    match b {
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Double(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
        None => Ok(0),
        other => Err(AppError::internal(anyhow::anyhow!(
            "unexpected sum in aggregation: {other:?}"
        ))),
    }
}

impl Store {
    pub fn new(db: &Database) -> Store {
        Store {
            expenses: db.collection(EXPENSES),
            categories: db.collection("categories"),
        }
    }

    /// Creates the indexes every query relies on. Idempotent.
    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        self.expenses
            .create_indexes([
                // Idempotency keys (and recurrence occurrences) are unique per user.
                index(doc! { "userId": 1, "idemKey": 1 }, "user_idem_unique", true),
                // Listing, date ranges, cursors, search, and any filter without its own.
                index(
                    doc! { "userId": 1, "deleted": 1, "sortKey": -1 },
                    "user_sort",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "categoryKey": 1, "sortKey": -1 },
                    "user_category_sort",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "type": 1, "sortKey": -1 },
                    "user_type_sort",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "tags": 1, "sortKey": -1 },
                    "user_tag_sort",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "paymentMethod": 1, "sortKey": -1 },
                    "user_payment_sort",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "currency": 1, "amountMinor": 1 },
                    "user_amount",
                    false,
                ),
                // Summaries: per type and currency over a date range.
                index(
                    doc! { "userId": 1, "deleted": 1, "type": 1, "currency": 1, "sortKey": 1 },
                    "user_summary",
                    false,
                ),
                // The recurrence scheduler's due series.
                index(doc! { "recurrence.nextDay": 1 }, "recurrence_due", false),
            ])
            .await?;
        self.categories
            .create_indexes([index(
                doc! { "userId": 1, "type": 1, "key": 1 },
                "user_category_unique",
                true,
            )])
            .await?;
        Ok(())
    }

    /// Inserts; `Ok(false)` when the user's idempotency key is already taken.
    pub async fn insert(&self, doc: &ExpenseDoc) -> Result<bool, AppError> {
        kit::db::insert_new(&self.expenses, doc).await
    }

    /// Replaces a document if nobody wrote it (nor acknowledged one of its events) since
    /// it was read; false on a lost race.
    pub async fn replace(&self, doc: &ExpenseDoc, version: i64) -> Result<bool, AppError> {
        let r = self
            .expenses
            .replace_one(
                doc! { "_id": &doc.id, "userId": &doc.user_id, "version": version,
                "outboxRev": doc.events.outbox_rev },
                doc,
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    /// The caller's live expense; someone else's id is simply not found.
    pub async fn get(&self, user_id: &str, id: &str) -> Result<Option<ExpenseDoc>, AppError> {
        Ok(self
            .expenses
            .find_one(doc! { "_id": id, "userId": user_id, "deleted": false })
            .await?)
    }

    /// The caller's live expense `id`, or `NOT_FOUND` (also for someone else's).
    pub async fn owned(&self, user_id: &str, id: &str) -> Result<ExpenseDoc, AppError> {
        self.get(user_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("expense"))
    }

    pub async fn by_idem_key(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<ExpenseDoc>, AppError> {
        Ok(self
            .expenses
            .find_one(doc! { "userId": user_id, "idemKey": key })
            .await?)
    }

    /// One page (plus one more to tell whether another page exists).
    pub async fn list(
        &self,
        user_id: &str,
        filter: &ListFilter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExpenseDoc>, AppError> {
        Ok(self
            .expenses
            .find(filter.to_document(user_id, before))
            .sort(doc! { "sortKey": -1 })
            .limit(limit)
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?)
    }

    pub async fn count(&self, user_id: &str, filter: &ListFilter) -> Result<u64, AppError> {
        Ok(self
            .expenses
            .count_documents(filter.to_document(user_id, None))
            .await?)
    }

    /// Sums per (type, category) of one currency within a date range.
    pub async fn summary(
        &self,
        user_id: &str,
        currency: &str,
        from_day: Option<String>,
        until_day: Option<String>,
    ) -> Result<Vec<CategoryTotal>, AppError> {
        let mut out = Vec::new();
        for kind in ["EXPENSE", "INCOME"] {
            let filter = ListFilter {
                kind: Some(kind.to_string()),
                currency: Some(currency.to_string()),
                from_day: from_day.clone(),
                until_day: until_day.clone(),
                ..ListFilter::default()
            };
            let pipeline = [
                doc! { "$match": filter.to_document(user_id, None) },
                doc! { "$group": { "_id": "$category", "total": { "$sum": "$amountMinor" }, "count": { "$sum": 1 } } },
            ];
            let mut cursor = self.expenses.aggregate(pipeline).await?;
            while let Some(d) = cursor.try_next().await? {
                out.push(CategoryTotal {
                    kind: kind.to_string(),
                    category: d.get_str("_id").unwrap_or("other").to_string(),
                    total_minor: number(d.get("total"))?,
                    count: number(d.get("count"))?,
                });
            }
        }
        out.sort_by(|a, b| {
            (
                a.kind.as_str(),
                std::cmp::Reverse(a.total_minor),
                a.category.as_str(),
            )
                .cmp(&(
                    b.kind.as_str(),
                    std::cmp::Reverse(b.total_minor),
                    b.category.as_str(),
                ))
        });
        Ok(out)
    }

    pub async fn custom_categories(&self, user_id: &str) -> Result<Vec<CategoryDoc>, AppError> {
        Ok(self
            .categories
            .find(doc! { "userId": user_id })
            .sort(doc! { "key": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Inserts a custom category; false when the user already has it.
    pub async fn insert_category(&self, c: &CategoryDoc) -> Result<bool, AppError> {
        kit::db::insert_new(&self.categories, c).await
    }

    /// Recurring series with an occurrence due on or before `day` (`YYYYMMDD`).
    pub async fn due_series(&self, day: &str, limit: i64) -> Result<Vec<ExpenseDoc>, AppError> {
        Ok(self
            .expenses
            .find(doc! { "recurrence.nextDay": { "$lte": day }, "deleted": false })
            .limit(limit)
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?)
    }

    /// Moves a series from occurrence `n` on, if no other instance did it first.
    pub async fn advance_series(
        &self,
        id: &str,
        n: i64,
        next_day: Option<&str>,
    ) -> Result<bool, AppError> {
        let r = self
            .expenses
            .update_one(
                doc! { "_id": id, "recurrence.nextIndex": n },
                doc! { "$set": { "recurrence.nextIndex": n + 1, "recurrence.nextDay": next_day } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// The caller's live expenses in a date range, oldest first (date, then id), at
    /// most `limit`.
    pub async fn export(
        &self,
        user_id: &str,
        filter: &ListFilter,
        limit: i64,
    ) -> Result<Vec<ExpenseDoc>, AppError> {
        Ok(self
            .expenses
            .find(filter.to_document(user_id, None))
            .sort(doc! { "sortKey": 1 })
            .limit(limit)
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?)
    }

    /// Which of these idempotency keys the user already has, each with its input hash.
    pub async fn existing_idem_keys(
        &self,
        user_id: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Option<String>>, AppError> {
        let docs = self.expenses.clone_with_type::<Document>();
        let mut out = HashMap::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let mut cursor = docs
                .find(doc! { "userId": user_id, "idemKey": { "$in": chunk } })
                .projection(doc! { "_id": 0, "idemKey": 1, "idemHash": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                if let Ok(k) = d.get_str("idemKey") {
                    let hash = d.get_str("idemHash").ok().map(str::to_string);
                    out.insert(k.to_string(), hash);
                }
            }
        }
        Ok(out)
    }

    /// Which of these ids are the user's own expenses (deleted ones included).
    pub async fn existing_ids(
        &self,
        user_id: &str,
        ids: &[String],
    ) -> Result<HashSet<String>, AppError> {
        let docs = self.expenses.clone_with_type::<Document>();
        let mut out = HashSet::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let mut cursor = docs
                .find(doc! { "_id": { "$in": chunk }, "userId": user_id })
                .projection(doc! { "_id": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                if let Ok(id) = d.get_str("_id") {
                    out.insert(id.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Inserts new documents in bulk, unordered: a document whose idempotency key is
    /// already taken (a concurrent import of the same rows) is skipped, the others are
    /// written. Returns how many were inserted.
    pub async fn insert_new(&self, docs: &[ExpenseDoc]) -> Result<usize, AppError> {
        if docs.is_empty() {
            return Ok(0);
        }
        match self.expenses.insert_many(docs).ordered(false).await {
            Ok(r) => Ok(r.inserted_ids.len()),
            Err(e) => {
                if let mongodb::error::ErrorKind::InsertMany(im) = e.kind.as_ref()
                    && let Some(errs) = &im.write_errors
                    && im.write_concern_error.is_none()
                    && errs.iter().all(|w| w.code == 11000)
                {
                    return Ok(docs.len().saturating_sub(errs.len()));
                }
                Err(e.into())
            }
        }
    }

    /// Bulk insert for seeding (the benchmark).
    pub async fn insert_many(&self, docs: &[ExpenseDoc]) -> Result<(), AppError> {
        self.expenses.insert_many(docs).await?;
        Ok(())
    }
}

/// Groups sums by kind: (total income, total expenses).
pub fn totals(rows: &[CategoryTotal]) -> HashMap<&str, i64> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r.kind.as_str()).or_insert(0) += r.total_minor;
    }
    m
}
