//! Storage of the `expenses` database: documents, indexes and queries. The documents
//! and their mapping to the domain are in `docs`; every method here takes and returns
//! domain types.
//!
//! Every query starts with `userId` (or, for a household's shared expenses,
//! `householdId`) and is served by an index whose first key is that field. Lists sort by `sortKey` = `YYYYMMDD|<id>` descending: one string field
//! that orders by date then id, carries the inclusive date range as a half-open key
//! range, and doubles as the page cursor.

mod docs;

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use contract::households::Ownership;
use contract::ids::{ExpenseId, UserId};
use futures::TryStreamExt;
use kit::AppError;
use kit::db::index;
use kit::events::Outbox;
use kit::money::{Currency, Total};
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Collection, Database};

pub use docs::{CategoryDoc, ExpenseDoc, RecurrenceDoc, Stored};

use crate::domain::{
    CategoryTotal, CustomCategory, DayRange, Expense, ListFilter, SortKey, Summary, TxType, day_key,
};
use docs::unreadable;

pub const EXPENSES: &str = "expenses";
/// How many values one `$in` lookup carries.
const LOOKUP_CHUNK: usize = 1000;

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

/// The query document of a list of `owner`'s expenses (a user's own, or those shared
/// with a household); `before` is the cursor's sort key (exclusive).
pub fn filter_document(f: &ListFilter, owner: &Ownership, before: Option<&SortKey>) -> Document {
    let mut q = match owner {
        Ownership::User(user) => doc! { "userId": user.as_str(), "deleted": false },
        Ownership::Household(h) => doc! { "householdId": h.as_str(), "deleted": false },
    };
    if let Some(k) = f.kind {
        q.insert("type", k.as_str());
    }
    if let Some(keys) = &f.category_keys {
        if keys.len() == 1 {
            q.insert("categoryKey", &keys[0]);
        } else {
            q.insert("categoryKey", doc! { "$in": keys });
        }
    }
    let mut range = Document::new();
    if let Some(from) = f.days.from {
        range.insert("$gte", day_key(from));
    }
    let until = f.days.until.map(day_key);
    let upper = match (until.as_deref(), before.map(SortKey::as_str)) {
        (Some(a), Some(b)) => Some(if a < b { a } else { b }),
        (a, b) => a.or(b),
    };
    if let Some(u) = upper {
        range.insert("$lt", u);
    }
    if !range.is_empty() {
        q.insert("sortKey", range);
    }
    if let Some(c) = &f.currency {
        q.insert("currency", c.code());
    }
    if let Some(amount) = &f.amount {
        q.insert("currency", amount.currency.code());
        let mut r = Document::new();
        if let Some(m) = &amount.min {
            r.insert("$gte", m.amount_minor());
        }
        if let Some(m) = &amount.max {
            r.insert("$lte", m.amount_minor());
        }
        if !r.is_empty() {
            q.insert("amountMinor", r);
        }
    }
    if let Some(s) = &f.search {
        q.insert(
            "description",
            doc! { "$regex": regex_escape(s), "$options": "i" },
        );
    }
    if let Some(t) = &f.tag {
        q.insert("tags", t);
    }
    if let Some(p) = &f.payment_method {
        q.insert("paymentMethod", p);
    }
    q
}

#[derive(Clone)]
pub struct Store {
    expenses: Collection<ExpenseDoc>,
    categories: Collection<CategoryDoc>,
}

/// What [`Store::record_occurrence`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    /// The occurrence is new and the series moved on.
    Created,
    /// The occurrence was recorded before; the series moved on now.
    AlreadyThere,
    /// The series was not at that occurrence any more (another instance moved it, or
    /// its owner stopped or edited it): nothing was recorded.
    SeriesMoved,
}

/// Indexes of earlier versions, dropped at start (see `Store::ensure_indexes`).
const LEGACY_INDEXES: &[&str] = &[
    "user_sort",
    "user_category_sort",
    "user_type_sort",
    "user_tag_sort",
    "user_payment_sort",
];

impl Store {
    pub fn new(db: &Database) -> Store {
        Store {
            expenses: db.collection(EXPENSES),
            categories: db.collection("categories"),
        }
    }

    /// Creates the indexes every query relies on. Idempotent.
    ///
    /// The listing indexes end in an *ascending* `sortKey` although lists are read newest
    /// first: MongoDB walks an index either way, so one direction serves both sorts. They
    /// were descending once; SecantusDB 0.7.0b3 drops documents from a range over a
    /// descending index (`scripts/repro/secantus_desc_index_range.py`), so the descending
    /// ones are dropped here when found.
    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        for old in LEGACY_INDEXES {
            if let Err(e) = self.expenses.drop_index(*old).await {
                // Absent (a new database, or dropped before) is the usual answer.
                if !matches!(kit::error::server_code(&e), Some(26 | 27)) {
                    return Err(e.into());
                }
            }
        }
        self.expenses
            .create_indexes([
                // Idempotency keys (and recurrence occurrences) are unique per user.
                index(doc! { "userId": 1, "idemKey": 1 }, "user_idem_unique", true),
                // Listing, date ranges, cursors, search, and any filter without its own.
                index(
                    doc! { "userId": 1, "deleted": 1, "sortKey": 1 },
                    "user_by_key",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "categoryKey": 1, "sortKey": 1 },
                    "user_category_by_key",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "type": 1, "sortKey": 1 },
                    "user_type_by_key",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "tags": 1, "sortKey": 1 },
                    "user_tag_by_key",
                    false,
                ),
                index(
                    doc! { "userId": 1, "deleted": 1, "paymentMethod": 1, "sortKey": 1 },
                    "user_payment_by_key",
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
                // A household's shared expenses, listed by its members.
                index(
                    doc! { "householdId": 1, "deleted": 1, "sortKey": 1 },
                    "household_by_key",
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

    /// Inserts a new expense with the events of `outbox`; `Ok(false)` when the user's
    /// idempotency key is already taken.
    pub async fn insert(&self, e: &Expense, outbox: Outbox) -> Result<bool, AppError> {
        kit::db::insert_new(&self.expenses, &ExpenseDoc::new(e, outbox)).await
    }

    /// Replaces an expense read as `read` by `after`, carrying `outbox` (the one read,
    /// with this change's event pushed), if nobody wrote it (nor acknowledged one of
    /// its events) since it was read; false on a lost race.
    pub async fn replace(
        &self,
        read: &Stored,
        after: &Expense,
        outbox: Outbox,
    ) -> Result<bool, AppError> {
        let r = self
            .expenses
            .replace_one(
                doc! { "_id": read.expense.id.as_str(), "userId": read.expense.user_id.as_str(),
                "version": read.expense.version, "outboxRev": read.outbox.outbox_rev },
                ExpenseDoc::new(after, outbox),
            )
            .await?;
        Ok(r.matched_count == 1)
    }

    async fn find_owned(&self, user: &UserId, id: &ExpenseId) -> Result<Option<Stored>, AppError> {
        self.expenses
            .find_one(doc! { "_id": id.as_str(), "userId": user.as_str(), "deleted": false })
            .await?
            .map(Stored::try_from)
            .transpose()
    }

    /// The live expense `id`, whoever's it is: for a reader whose right to it is checked
    /// next (a household's member reading a shared expense).
    pub async fn get_any(&self, id: &ExpenseId) -> Result<Option<Expense>, AppError> {
        self.expenses
            .find_one(doc! { "_id": id.as_str(), "deleted": false })
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .map(Expense::try_from)
            .transpose()
    }

    /// The caller's live expense; someone else's id is simply not found.
    pub async fn get(&self, user: &UserId, id: &ExpenseId) -> Result<Option<Expense>, AppError> {
        Ok(self.find_owned(user, id).await?.map(|s| s.expense))
    }

    /// The user's expenses among `ids`, also deleted ones (their last state): what entity
    /// references from a read model that has not yet heard of a deletion resolve to. One
    /// query; ids naming none of them (or someone else's) are not in the answer.
    pub async fn get_many_even_deleted(
        &self,
        user: &UserId,
        ids: &[ExpenseId],
    ) -> Result<Vec<Expense>, AppError> {
        let ids: Vec<&str> = ids.iter().map(ExpenseId::as_str).collect();
        let docs: Vec<_> = self
            .expenses
            .find(doc! { "_id": { "$in": ids }, "userId": user.as_str() })
            .await?
            .try_collect()
            .await?;
        docs.into_iter()
            .map(|d| Stored::try_from(d).map(|s| s.expense))
            .collect()
    }

    /// The caller's live expense `id` with its outbox, for a change; `NOT_FOUND` (also
    /// for someone else's).
    pub async fn owned(&self, user: &UserId, id: &ExpenseId) -> Result<Stored, AppError> {
        self.find_owned(user, id)
            .await?
            .ok_or_else(|| AppError::not_found("expense"))
    }

    /// The user's expense (deleted ones included) stored under an idempotency key.
    pub async fn by_idem_key(&self, user: &UserId, key: &str) -> Result<Option<Expense>, AppError> {
        self.expenses
            .find_one(doc! { "userId": user.as_str(), "idemKey": key })
            .await?
            .map(Expense::try_from)
            .transpose()
    }

    /// The expenses `query` finds, in `order` of the sort key (1 ascending, -1
    /// descending), at most `limit`, without their outboxes.
    async fn find(
        &self,
        query: Document,
        order: i32,
        limit: i64,
    ) -> Result<Vec<Expense>, AppError> {
        let docs: Vec<ExpenseDoc> = self
            .expenses
            .find(query)
            .sort(doc! { "sortKey": order })
            .limit(limit)
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?;
        // One that does not read back fails the whole list.
        docs.into_iter().map(Expense::try_from).collect()
    }

    /// One page (plus one more to tell whether another page exists), newest first.
    pub async fn list(
        &self,
        owner: &Ownership,
        filter: &ListFilter,
        before: Option<&SortKey>,
        limit: i64,
    ) -> Result<Vec<Expense>, AppError> {
        self.find(filter_document(filter, owner, before), -1, limit)
            .await
    }

    pub async fn count(&self, owner: &Ownership, filter: &ListFilter) -> Result<u64, AppError> {
        Ok(self
            .expenses
            .count_documents(filter_document(filter, owner, None))
            .await?)
    }

    /// Sums per (type, category) of one currency within a date range, added up here in
    /// 128 bits: exact for any number of the largest amounts. (A database `$sum` of
    /// 64-bit integers turns into a double once it overflows.) The documents come in
    /// one stream of `type`, `category` and `amountMinor`; memory is one entry per
    /// category.
    pub async fn summary(
        &self,
        user: &UserId,
        currency: Currency,
        days: DayRange,
    ) -> Result<Summary, AppError> {
        let mut totals: HashMap<(TxType, String), (Total, i64)> = HashMap::new();
        for kind in [TxType::Expense, TxType::Income] {
            let filter = ListFilter {
                kind: Some(kind),
                currency: Some(currency),
                days,
                ..ListFilter::default()
            };
            let mut cursor = self
                .expenses
                .clone_with_type::<Document>()
                .find(filter_document(
                    &filter,
                    &Ownership::User(user.clone()),
                    None,
                ))
                .projection(doc! { "category": 1, "amountMinor": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                let id = d.get_str("_id").unwrap_or_default();
                let category = match d.get("category") {
                    Some(Bson::String(c)) => c.clone(),
                    other => return Err(unreadable("expense", id, "category", other, "not text")),
                };
                let minor = match d.get("amountMinor") {
                    Some(Bson::Int64(n)) => i128::from(*n),
                    Some(Bson::Int32(n)) => i128::from(*n),
                    other => {
                        return Err(unreadable(
                            "expense",
                            id,
                            "amountMinor",
                            other,
                            "not an integer",
                        ));
                    }
                };
                let (total, count) = totals
                    .entry((kind, category))
                    .or_insert((Total::zero(currency), 0));
                *total = total.checked_add_minor(minor).map_err(AppError::total)?;
                *count += 1;
            }
        }
        let out = totals
            .into_iter()
            .map(|((kind, category), (total, count))| CategoryTotal {
                kind,
                category,
                total,
                count,
            })
            .collect();
        Summary::new(currency, out)
    }

    /// The user's own categories, by key.
    pub async fn custom_categories(&self, user: &UserId) -> Result<Vec<CustomCategory>, AppError> {
        let docs: Vec<CategoryDoc> = self
            .categories
            .find(doc! { "userId": user.as_str() })
            .sort(doc! { "key": 1 })
            .await?
            .try_collect()
            .await?;
        docs.into_iter().map(CustomCategory::try_from).collect()
    }

    /// Inserts a custom category; false when the user already has it.
    pub async fn insert_category(&self, c: &CustomCategory) -> Result<bool, AppError> {
        kit::db::insert_new(&self.categories, &CategoryDoc::new(c)).await
    }

    /// Recurring series with an occurrence due on or before `day`, each read on its own:
    /// one that does not read back does not hold up the others.
    pub async fn due_series(
        &self,
        day: NaiveDate,
        limit: i64,
    ) -> Result<Vec<Result<Expense, AppError>>, AppError> {
        let docs: Vec<ExpenseDoc> = self
            .expenses
            .find(doc! { "recurrence.nextDay": { "$lte": day_key(day) }, "deleted": false })
            .limit(limit)
            .projection(doc! { "outbox": 0, "outboxPending": 0 })
            .await?
            .try_collect()
            .await?;
        Ok(docs.into_iter().map(Expense::try_from).collect())
    }

    /// Records occurrence `n` of `series` (the expense `occurrence`, with its outbox) and
    /// moves the series on to `n + 1`, once, however many instances run and whatever
    /// the owner does meanwhile.
    ///
    /// Where the server has multi-document transactions (`transactional`: a replica
    /// set), both writes commit together, and only while the series still stands at
    /// `n`: an owner who stops or edits the series first leaves nothing behind, so a
    /// series stops the moment the stop is answered. Elsewhere the occurrence is inserted
    /// first and the series moved after (an occurrence's idempotency key makes a retry
    /// after a crash in between harmless), so a stop can still meet one occurrence in
    /// flight.
    pub async fn record_occurrence(
        &self,
        series: &ExpenseId,
        n: i64,
        next_day: Option<NaiveDate>,
        occurrence: &Expense,
        outbox: Outbox,
        transactional: bool,
    ) -> Result<Occurrence, AppError> {
        let doc = ExpenseDoc::new(occurrence, outbox);
        if !transactional {
            let created = kit::db::insert_new(&self.expenses, &doc).await?;
            if !self.advance_series(series, n, next_day).await? {
                return Ok(Occurrence::SeriesMoved);
            }
            return Ok(if created {
                Occurrence::Created
            } else {
                Occurrence::AlreadyThere
            });
        }
        let mut session = self.expenses.client().start_session().await?;
        session.start_transaction().await?;
        let moved = self
            .expenses
            .update_one(Self::at_index(series, n), Self::advance(n, next_day))
            .session(&mut session)
            .await;
        let moved = match moved {
            Ok(r) => r.modified_count == 1,
            // Another instance's transaction holds the series: it is theirs to move.
            Err(e) if e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) => {
                return Ok(Occurrence::SeriesMoved);
            }
            Err(e) => return Err(e.into()),
        };
        if !moved {
            session.abort_transaction().await?;
            return Ok(Occurrence::SeriesMoved);
        }
        match self.expenses.insert_one(&doc).session(&mut session).await {
            Ok(_) => {}
            Err(e) if kit::error::is_duplicate_key(&e) => {
                // Recorded before, without a transaction (an instance that stopped
                // between its two writes): only the series is left to move.
                let _ = session.abort_transaction().await;
                return Ok(if self.advance_series(series, n, next_day).await? {
                    Occurrence::AlreadyThere
                } else {
                    Occurrence::SeriesMoved
                });
            }
            Err(e) if e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) => {
                return Ok(Occurrence::SeriesMoved);
            }
            Err(e) => return Err(e.into()),
        }
        match session.commit_transaction().await {
            Ok(()) => Ok(Occurrence::Created),
            // A conflicting write (the owner's edit) won: nothing of this was committed.
            Err(e) if e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) => {
                Ok(Occurrence::SeriesMoved)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn at_index(series: &ExpenseId, n: i64) -> Document {
        doc! { "_id": series.as_str(), "recurrence.nextIndex": n }
    }

    fn advance(n: i64, next_day: Option<NaiveDate>) -> Document {
        doc! { "$set": { "recurrence.nextIndex": n + 1, "recurrence.nextDay": next_day.map(day_key) } }
    }

    /// Moves a series from occurrence `n` on, if no other instance did it first.
    async fn advance_series(
        &self,
        id: &ExpenseId,
        n: i64,
        next_day: Option<NaiveDate>,
    ) -> Result<bool, AppError> {
        let r = self
            .expenses
            .update_one(Self::at_index(id, n), Self::advance(n, next_day))
            .await?;
        Ok(r.modified_count == 1)
    }

    /// The caller's live expenses in a date range, oldest first (date, then id), at
    /// most `limit`.
    pub async fn export(
        &self,
        user: &UserId,
        days: DayRange,
        limit: i64,
    ) -> Result<Vec<Expense>, AppError> {
        let filter = ListFilter {
            days,
            ..ListFilter::default()
        };
        self.find(
            filter_document(&filter, &Ownership::User(user.clone()), None),
            1,
            limit,
        )
        .await
    }

    /// Which of these idempotency keys the user already has, each with its input hash.
    pub async fn existing_idem_keys(
        &self,
        user: &UserId,
        keys: &[String],
    ) -> Result<HashMap<String, Option<String>>, AppError> {
        let docs = self.expenses.clone_with_type::<Document>();
        let mut out = HashMap::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let mut cursor = docs
                .find(doc! { "userId": user.as_str(), "idemKey": { "$in": chunk } })
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
        user: &UserId,
        ids: &[ExpenseId],
    ) -> Result<HashSet<ExpenseId>, AppError> {
        let docs = self.expenses.clone_with_type::<Document>();
        let mut out = HashSet::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let chunk: Vec<&str> = chunk.iter().map(ExpenseId::as_str).collect();
            let mut cursor = docs
                .find(doc! { "_id": { "$in": chunk }, "userId": user.as_str() })
                .projection(doc! { "_id": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                if let Ok(id) = d.get_str("_id") {
                    out.insert(ExpenseId::from_trusted(id));
                }
            }
        }
        Ok(out)
    }

    /// Inserts new expenses, each with its outbox, in bulk, unordered: one whose
    /// idempotency key is already taken (a concurrent import of the same rows) is
    /// skipped, the others are written. Returns how many were inserted.
    pub async fn insert_new(&self, new: Vec<(Expense, Outbox)>) -> Result<usize, AppError> {
        if new.is_empty() {
            return Ok(0);
        }
        let docs: Vec<ExpenseDoc> = new
            .into_iter()
            .map(|(e, o)| ExpenseDoc::new(&e, o))
            .collect();
        match self.expenses.insert_many(&docs).ordered(false).await {
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

    /// Bulk insert without events, for seeding (the benchmark).
    pub async fn insert_many(&self, expenses: &[Expense]) -> Result<(), AppError> {
        let docs: Vec<ExpenseDoc> = expenses
            .iter()
            .map(|e| ExpenseDoc::new(e, Outbox::default()))
            .collect();
        self.expenses.insert_many(docs).await?;
        Ok(())
    }
}
