//! The operations of the expenses subgraph: each write stores the change and its
//! event in one document write (see `kit::events`), then wakes the dispatcher.

use chrono::NaiveDate;
use contract::events::{DomainEvent, ExpenseChanged, ExpenseSnapshot};
use contract::ids::{ExpenseId, UserId};
use kit::AppError;
use kit::clock::Clock;
use kit::events::{Dispatcher, Event, Outbox};
use kit::money::{Currency, Decimal, Money, positive_amount};
use kit::users::UserProfile;
use mongodb::bson;
use serde_json::json;

use crate::domain::{self, Frequency, Recurrence, TxType, csv_format};
use crate::store::{CategoryDoc, ExpenseDoc, RecurrenceDoc, Store};

#[derive(Debug, Clone)]
pub struct NewExpense {
    pub kind: Option<TxType>,
    pub amount: Decimal,
    pub currency: Option<String>,
    pub category: Option<String>,
    pub description: String,
    pub date: Option<NaiveDate>,
    pub payment_method: Option<String>,
    pub tags: Option<Vec<String>>,
    pub recurrence: Option<Recurrence>,
}

/// A change; `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct ExpenseChange {
    pub kind: Option<TxType>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub category: Option<String>,
    pub description: Option<String>,
    pub date: Option<NaiveDate>,
    pub payment_method: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub recurrence: Option<Option<Recurrence>>,
}

#[derive(Clone)]
pub struct Expenses {
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub clock: Clock,
}

pub fn parse_date(s: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| AppError::internal(anyhow::anyhow!("stored date {s:?}: {e}")))
}

/// The type of a stored expense; an unknown one is an internal error (logged), never
/// a silent default.
fn stored_kind(kind: &str) -> Result<TxType, AppError> {
    TxType::parse(kind)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown stored expense type {kind:?}")))
}

/// The fields of an expense that consumers (budgets, analytics) work from.
fn snapshot(d: &ExpenseDoc) -> Result<ExpenseSnapshot, AppError> {
    let kind = stored_kind(&d.kind)?;
    Ok(ExpenseSnapshot {
        kind: kind.into(),
        amount_minor: d.amount_minor,
        currency: d.currency.clone(),
        category: d.category.clone(),
        category_key: d.category_key.clone(),
        date: parse_date(&d.date)?,
    })
}

/// The `expense.*` event of a change from `before` to `after`.
fn expense_event(
    kind: fn(ExpenseChanged) -> DomainEvent,
    before: Option<&ExpenseDoc>,
    after: &ExpenseDoc,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Event, AppError> {
    let change = ExpenseChanged {
        expense_id: ExpenseId::from_trusted(&after.id),
        version: after.version,
        before: before.map(snapshot).transpose()?,
        after: if after.deleted {
            None
        } else {
            Some(snapshot(after)?)
        },
    };
    Ok(kind(change).into_event(&UserId::from_trusted(&after.user_id), at))
}

/// A recurrence as stored. `series` names this schedule (`<id>:<version>` when it was
/// set) so occurrences of a replaced schedule never collide with the new one's keys.
/// A new expense's schedule starts right after its date (missed occurrences up to today
/// are created); a schedule changed later starts after `not_before` (no backfill).
fn recurrence_doc(
    r: &Recurrence,
    start: NaiveDate,
    tz: &str,
    series: String,
    not_before: Option<NaiveDate>,
) -> RecurrenceDoc {
    let mut n: u32 = 1;
    if let Some(day) = not_before {
        while r.frequency.occurrence(start, n).is_some_and(|d| d <= day) && n < 100_000 {
            n += 1;
        }
    }
    let next_day = r
        .frequency
        .occurrence(start, n)
        .filter(|d| r.end_date.is_none_or(|end| *d <= end))
        .map(domain::day_key);
    RecurrenceDoc {
        frequency: r.frequency.as_str().to_string(),
        end_date: r.end_date.map(|d| d.to_string()),
        timezone: tz.to_string(),
        series,
        next_index: i64::from(n),
        next_day,
    }
}

/// SHA-256 of the request as given (amount normalised: "12.50" and "12.5" agree).
fn input_hash(input: &NewExpense) -> String {
    let canonical = json!({
        "type": input.kind.map(|k| k.as_str()),
        "amount": input.amount.to_string(),
        "currency": input.currency.as_deref().map(|c| c.trim().to_uppercase()),
        "category": input.category.as_deref().map(domain::category_key),
        "description": input.description.trim(),
        "date": input.date.map(|d| d.to_string()),
        "paymentMethod": input.payment_method.as_deref().map(|p| p.trim().to_lowercase()),
        "tags": input.tags,
        "recurrence": input.recurrence.map(|r| json!({
            "frequency": r.frequency.as_str(),
            "endDate": r.end_date.map(|d| d.to_string()),
        })),
    });
    kit::auth::sha256_hex(&canonical.to_string())
}

impl Expenses {
    pub fn new(db: &mongodb::Database, dispatcher: Dispatcher, clock: Clock) -> Expenses {
        Expenses {
            store: Store::new(db),
            dispatcher,
            clock,
        }
    }

    fn consumers(&self) -> Vec<String> {
        self.dispatcher.consumer_names()
    }

    async fn custom_names(&self, user_id: &str, kind: TxType) -> Result<Vec<String>, AppError> {
        Ok(self
            .store
            .custom_categories(user_id)
            .await?
            .into_iter()
            .filter(|c| c.kind == kind.as_str())
            .map(|c| c.name)
            .collect())
    }

    /// Creates an expense. With an idempotency key, a replay of the same input returns
    /// the first expense, and a different input under the same key is a conflict.
    #[tracing::instrument(skip(self, profile, input, idempotency_key), fields(user = %user_id))]
    pub async fn create(
        &self,
        user_id: &str,
        profile: UserProfile,
        input: NewExpense,
        idempotency_key: Option<String>,
    ) -> Result<ExpenseDoc, AppError> {
        let key = match idempotency_key.as_deref().map(str::trim) {
            None => None,
            Some(k) if k.is_empty() || k.len() > 200 => {
                return Err(AppError::validation(
                    "idempotencyKey",
                    "an idempotency key has 1 to 200 characters",
                ));
            }
            Some(k) => Some(k.to_string()),
        };
        let hash = input_hash(&input);
        // A replay is answered before validation: "today" may have moved on since.
        if let Some(k) = &key
            && let Some(existing) = self.store.by_idem_key(user_id, &format!("key:{k}")).await?
        {
            return replay(existing, &hash);
        }
        let kind = input.kind.unwrap_or(TxType::Expense);
        let now = self.clock.now();
        let today = self.clock.today_in(profile.timezone);
        let currency = domain::currency(input.currency.as_deref(), profile.currency)?;
        let amount = positive_amount(input.amount, currency)?;
        let custom = self.custom_names(user_id, kind).await?;
        let category = domain::resolve_category(input.category.as_deref(), kind, &custom)?;
        let description = domain::description(&input.description)?;
        let date = domain::date(input.date, today)?;
        let payment_method = domain::payment_method(input.payment_method.as_deref())?;
        let tags = domain::tags(input.tags.as_deref().unwrap_or_default())?;
        let recurrence = input
            .recurrence
            .map(|r| domain::recurrence(r, date))
            .transpose()?;
        let id = kit::ids::new_id();
        let mut doc = ExpenseDoc {
            id: id.clone(),
            user_id: user_id.to_string(),
            kind: kind.as_str().to_string(),
            amount_minor: amount.amount_minor(),
            currency: currency.code().to_string(),
            category_key: domain::category_key(&category),
            category,
            description,
            date: date.to_string(),
            sort_key: domain::sort_key(date, &id),
            payment_method,
            tags,
            recurrence: recurrence
                .as_ref()
                .map(|r| recurrence_doc(r, date, profile.timezone.name(), format!("{id}:1"), None)),
            recurring_from: None,
            idem_key: match &key {
                Some(k) => format!("key:{k}"),
                None => format!("id:{id}"),
            },
            idem_hash: key.as_ref().map(|_| hash.clone()),
            version: 1,
            deleted: false,
            created_at: bson::DateTime::from_chrono(now),
            updated_at: bson::DateTime::from_chrono(now),
            events: Outbox::default(),
        };
        doc.events = Outbox::with(
            expense_event(DomainEvent::ExpenseCreated, None, &doc, now)?,
            &self.consumers(),
        );
        if self.store.insert(&doc).await? {
            self.dispatcher.wake();
            return Ok(doc);
        }
        // Lost a race for the same key with a concurrent request.
        let k = doc.idem_key.clone();
        match self.store.by_idem_key(user_id, &k).await? {
            Some(existing) => replay(existing, &hash),
            None => Err(AppError::internal(anyhow::anyhow!(
                "duplicate idempotency key without a document"
            ))),
        }
    }

    #[tracing::instrument(skip(self, profile, change), fields(user = %user_id))]
    pub async fn update(
        &self,
        user_id: &str,
        profile: UserProfile,
        id: &str,
        change: ExpenseChange,
    ) -> Result<ExpenseDoc, AppError> {
        let change = &change;
        kit::db::optimistic("expense", || async move {
            let before = self.store.owned(user_id, id).await?;
            let mut after = self.apply_change(user_id, profile, &before, change).await?;
            let now = self.clock.now();
            after.version = before.version + 1;
            after.updated_at = bson::DateTime::from_chrono(now);
            let event = expense_event(DomainEvent::ExpenseUpdated, Some(&before), &after, now)?;
            after.events.push(event, &self.consumers());
            let written = self.store.replace(&after, before.version).await?;
            if written {
                self.dispatcher.wake();
            }
            Ok(written.then_some(after))
        })
        .await
    }

    async fn apply_change(
        &self,
        user_id: &str,
        profile: UserProfile,
        before: &ExpenseDoc,
        change: &ExpenseChange,
    ) -> Result<ExpenseDoc, AppError> {
        let mut after = before.clone();
        let kind = change.kind.map_or_else(|| stored_kind(&before.kind), Ok)?;
        after.kind = kind.as_str().to_string();
        let currency = match &change.currency {
            Some(c) => Currency::parse(c).map_err(|e| AppError::money("currency", e))?,
            None => Currency::parse(&before.currency).map_err(AppError::internal)?,
        };
        let amount = match change.amount {
            Some(a) => positive_amount(a, currency)?,
            None => {
                // The stored amount read in the (maybe new) currency's minor units.
                let old_currency = Currency::parse(&before.currency).map_err(AppError::internal)?;
                let old = Money::from_minor(before.amount_minor, old_currency)
                    .map_err(AppError::internal)?;
                positive_amount(old.to_decimal(), currency)?
            }
        };
        after.amount_minor = amount.amount_minor();
        after.currency = currency.code().to_string();
        if change.category.is_some() || change.kind.is_some() {
            let custom = self.custom_names(user_id, kind).await?;
            let wanted = change.category.as_deref().unwrap_or(&before.category);
            after.category = domain::resolve_category(Some(wanted), kind, &custom)?;
            after.category_key = domain::category_key(&after.category);
        }
        if let Some(d) = &change.description {
            after.description = domain::description(d)?;
        }
        let mut date = parse_date(&before.date)?;
        if let Some(d) = change.date {
            date = domain::date(Some(d), self.clock.today_in(profile.timezone))?;
            after.date = date.to_string();
            after.sort_key = domain::sort_key(date, &after.id);
        }
        if let Some(p) = &change.payment_method {
            after.payment_method = domain::payment_method(p.as_deref())?;
        }
        if let Some(t) = &change.tags {
            after.tags = domain::tags(t)?;
        }
        match &change.recurrence {
            None => {}
            Some(None) => after.recurrence = None,
            Some(Some(r)) => {
                let r = domain::recurrence(*r, date)?;
                let series = format!("{}:{}", before.id, before.version + 1);
                let today = self.clock.today_in(profile.timezone);
                after.recurrence = Some(recurrence_doc(
                    &r,
                    date,
                    profile.timezone.name(),
                    series,
                    Some(today),
                ));
            }
        }
        Ok(after)
    }

    #[tracing::instrument(skip(self), fields(user = %user_id))]
    pub async fn delete(&self, user_id: &str, id: &str) -> Result<(), AppError> {
        kit::db::optimistic("expense", || async move {
            let before = self.store.owned(user_id, id).await?;
            let now = self.clock.now();
            let mut after = before.clone();
            after.deleted = true;
            after.recurrence = None;
            after.version = before.version + 1;
            after.updated_at = bson::DateTime::from_chrono(now);
            let event = expense_event(DomainEvent::ExpenseDeleted, Some(&before), &after, now)?;
            after.events.push(event, &self.consumers());
            let written = self.store.replace(&after, before.version).await?;
            if written {
                self.dispatcher.wake();
            }
            Ok(written.then_some(()))
        })
        .await
    }

    pub async fn create_category(
        &self,
        user_id: &str,
        name: &str,
        kind: TxType,
    ) -> Result<CategoryDoc, AppError> {
        let name = domain::custom_category_name(name)?;
        let key = domain::category_key(&name);
        if kind.builtin_categories().contains(&key.as_str()) {
            return Err(AppError::conflict(
                format!("{name:?} is already a built-in category"),
                Some("name"),
            ));
        }
        let doc = CategoryDoc {
            id: kit::ids::new_id(),
            user_id: user_id.to_string(),
            kind: kind.as_str().to_string(),
            name,
            key,
            created_at: bson::DateTime::from_chrono(self.clock.now()),
        };
        if !self.store.insert_category(&doc).await? {
            return Err(AppError::conflict(
                format!("you already have a category {:?}", doc.name),
                Some("name"),
            ));
        }
        Ok(doc)
    }

    /// Creates every occurrence that is due, once each, however many instances run:
    /// an occurrence's idempotency key is `recur:<schedule>:<n>` (unique per user), and
    /// the series moves on with a compare-and-set on `recurrence.nextIndex`. A crash
    /// between the two re-inserts the same key next time, which the index refuses.
    /// Returns the number of occurrences created.
    #[tracing::instrument(skip(self))]
    pub async fn run_recurrences(&self) -> Result<usize, AppError> {
        // The furthest "today" anywhere on Earth (UTC+14); each series is then checked
        // against today in its own timezone.
        let now = self.clock.now();
        let horizon = domain::day_key((now + chrono::Duration::hours(14)).date_naive());
        let mut created = 0;
        for series in self.store.due_series(&horizon, 500).await? {
            created += self.catch_up(series).await?;
        }
        if created > 0 {
            self.dispatcher.wake();
        }
        Ok(created)
    }

    async fn catch_up(&self, series: ExpenseDoc) -> Result<usize, AppError> {
        let Some(rec) = series.recurrence.clone() else {
            return Ok(0);
        };
        let (Some(frequency), Ok(tz)) = (
            Frequency::parse(&rec.frequency),
            rec.timezone.parse::<chrono_tz::Tz>(),
        ) else {
            return Ok(0);
        };
        let start = parse_date(&series.date)?;
        let end = rec.end_date.as_deref().map(parse_date).transpose()?;
        let today = self.clock.today_in(tz);
        let mut n = rec.next_index;
        let mut created = 0;
        loop {
            let index = u32::try_from(n).map_err(AppError::internal)?;
            let Some(date) = frequency.occurrence(start, index) else {
                break;
            };
            if date > today || end.is_some_and(|e| date > e) {
                break;
            }
            let now = self.clock.now();
            let id = kit::ids::new_id();
            let mut occurrence = ExpenseDoc {
                id: id.clone(),
                date: date.to_string(),
                sort_key: domain::sort_key(date, &id),
                recurrence: None,
                recurring_from: Some(series.id.clone()),
                idem_key: format!("recur:{}:{n}", rec.series),
                idem_hash: None,
                version: 1,
                deleted: false,
                created_at: bson::DateTime::from_chrono(now),
                updated_at: bson::DateTime::from_chrono(now),
                events: Outbox::default(),
                ..series.clone()
            };
            occurrence.events = Outbox::with(
                expense_event(DomainEvent::ExpenseCreated, None, &occurrence, now)?,
                &self.consumers(),
            );
            if self.store.insert(&occurrence).await? {
                created += 1;
            }
            let next = frequency
                .occurrence(start, index + 1)
                .filter(|d| end.is_none_or(|e| *d <= e))
                .map(domain::day_key);
            if !self
                .store
                .advance_series(&series.id, n, next.as_deref())
                .await?
            {
                // Another instance (or an edit of the series) moved it; leave it to them.
                break;
            }
            if next.is_none() {
                break;
            }
            n += 1;
        }
        Ok(created)
    }
}

fn replay(existing: ExpenseDoc, hash: &str) -> Result<ExpenseDoc, AppError> {
    if existing.idem_hash.as_deref() != Some(hash) {
        return Err(AppError::conflict(
            "this idempotency key was already used with a different input",
            Some("idempotencyKey"),
        ));
    }
    if existing.deleted {
        return Err(AppError::conflict(
            "this idempotency key belongs to an expense that was deleted",
            Some("idempotencyKey"),
        ));
    }
    Ok(existing)
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Data rows in the file.
    pub rows: usize,
    /// Expenses created by this request.
    pub created: usize,
    /// Rows left alone: imported before (same row id, same content), or the id of one
    /// of the caller's own expenses (importing your own export creates nothing).
    pub already_present: usize,
}

/// The idempotency key of an imported row.
fn import_key(row_id: &str) -> String {
    format!("import:{row_id}")
}

/// SHA-256 of a checked row, to tell a re-import from a reuse of its row id.
fn row_hash(r: &csv_format::ImportRow) -> String {
    let canonical = json!({
        "type": r.kind.as_str(),
        "amountMinor": r.amount.amount_minor(),
        "currency": r.amount.currency().code(),
        "category": domain::category_key(&r.category),
        "description": r.description,
        "date": r.date.to_string(),
        "paymentMethod": r.payment_method,
        "tags": r.tags,
    });
    kit::auth::sha256_hex(&canonical.to_string())
}

impl Expenses {
    /// The caller's expenses from `from` to `to` (inclusive, either open) as CSV in
    /// the format of [`csv_format`], ordered by date then id. Returns the text and the
    /// number of rows.
    #[tracing::instrument(skip(self), fields(user = %user_id))]
    pub async fn export_csv(
        &self,
        user_id: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<(String, usize), AppError> {
        if let (Some(a), Some(b)) = (from, to)
            && a > b
        {
            return Err(AppError::validation("to", "`to` is before `from`"));
        }
        let until_day = to
            .map(|d| {
                d.checked_add_days(chrono::Days::new(1))
                    .map(domain::day_key)
                    .ok_or_else(|| AppError::validation("to", "date out of range"))
            })
            .transpose()?;
        let filter = crate::store::ListFilter {
            from_day: from.map(domain::day_key),
            until_day,
            ..Default::default()
        };
        let max = csv_format::MAX_EXPORT_ROWS;
        let docs = self
            .store
            .export(user_id, &filter, i64::try_from(max + 1).unwrap_or(i64::MAX))
            .await?;
        if docs.len() > max {
            return Err(AppError::validation(
                "from",
                format!("more than {max} expenses in the range; export a shorter range"),
            ));
        }
        let mut rows = Vec::with_capacity(docs.len());
        for d in docs {
            let currency = Currency::parse(&d.currency).map_err(AppError::internal)?;
            rows.push(csv_format::CsvExpense {
                date: parse_date(&d.date)?,
                kind: TxType::parse(&d.kind).unwrap_or(TxType::Expense),
                amount: Money::from_minor(d.amount_minor, currency).map_err(AppError::internal)?,
                id: d.id,
                category: d.category,
                description: d.description,
                payment_method: d.payment_method,
                tags: d.tags,
            });
        }
        let n = rows.len();
        Ok((csv_format::write(&rows)?, n))
    }

    /// Imports CSV text in the format of [`csv_format`]. Every row is checked first,
    /// with createExpense's rules; if any row is bad nothing is written and the inner
    /// `Err` lists every bad row and column.
    ///
    /// Idempotent by the `id` column: a row is stored under the idempotency key
    /// `import:<id>` (unique per user), so the same file imported twice creates its
    /// expenses once, and another user's export creates the caller's own expenses with
    /// new ids. Rows are written with one unordered `insert_many`, each document with
    /// its `expense.created` event in its outbox exactly as createExpense writes it.
    /// That bulk write is not atomic: if it stops halfway (a crash, a lost connection),
    /// the documents written are complete ones with their events, and re-running the
    /// same import writes only the missing rows, because the written ones are found by
    /// their keys (and the unique index refuses any that a concurrent run writes).
    #[tracing::instrument(skip(self, profile, text), fields(user = %user_id, bytes = text.len()))]
    pub async fn import_csv(
        &self,
        user_id: &str,
        profile: UserProfile,
        text: &str,
    ) -> Result<Result<ImportReport, Vec<csv_format::RowError>>, AppError> {
        let raw = match csv_format::read(text) {
            Ok(r) => r,
            Err(errors) => return Ok(Err(errors)),
        };
        let custom = self.store.custom_categories(user_id).await?;
        let custom_of = |kind: TxType| -> Vec<String> {
            custom
                .iter()
                .filter(|c| c.kind == kind.as_str())
                .map(|c| c.name.clone())
                .collect()
        };
        let today = self.clock.today_in(profile.timezone);
        let mut errors = Vec::new();
        let mut rows = Vec::with_capacity(raw.len());
        let mut seen: std::collections::HashMap<String, usize> =
            std::collections::HashMap::with_capacity(raw.len());
        for r in &raw {
            match csv_format::check(r, profile.currency, today, &custom_of) {
                Ok(row) => {
                    if let Some(first) = seen.get(&row.row_id) {
                        errors.push(csv_format::RowError {
                            row: Some(r.row),
                            line: r.line,
                            column: "id".into(),
                            message: format!("row id {:?} is also on row {first}", row.row_id),
                        });
                    } else {
                        seen.insert(row.row_id.clone(), r.row);
                        rows.push(row);
                    }
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        let hashes: Vec<String> = rows.iter().map(row_hash).collect();
        let keys: Vec<String> = rows.iter().map(|r| import_key(&r.row_id)).collect();
        let taken = self.store.existing_idem_keys(user_id, &keys).await?;
        let row_ids: Vec<String> = rows.iter().map(|r| r.row_id.clone()).collect();
        let own = self.store.existing_ids(user_id, &row_ids).await?;
        let now = self.clock.now();
        let consumers = self.consumers();
        let mut docs = Vec::with_capacity(rows.len());
        let mut already_present = 0;
        for ((row, hash), key) in rows.iter().zip(&hashes).zip(keys) {
            if own.contains(&row.row_id) {
                already_present += 1;
                continue;
            }
            match taken.get(&key) {
                Some(existing) if existing.as_deref() == Some(hash.as_str()) => {
                    already_present += 1;
                    continue;
                }
                Some(_) => {
                    errors.push(csv_format::RowError {
                        row: Some(row.row),
                        line: raw
                            .iter()
                            .find(|r| r.row == row.row)
                            .map(|r| r.line)
                            .unwrap_or(0),
                        column: "id".into(),
                        message: format!(
                            "row id {:?} was already imported with different content",
                            row.row_id
                        ),
                    });
                    continue;
                }
                None => {}
            }
            let id = kit::ids::new_id();
            let mut doc = ExpenseDoc {
                id: id.clone(),
                user_id: user_id.to_string(),
                kind: row.kind.as_str().to_string(),
                amount_minor: row.amount.amount_minor(),
                currency: row.amount.currency().code().to_string(),
                category_key: domain::category_key(&row.category),
                category: row.category.clone(),
                description: row.description.clone(),
                date: row.date.to_string(),
                sort_key: domain::sort_key(row.date, &id),
                payment_method: row.payment_method.clone(),
                tags: row.tags.clone(),
                recurrence: None,
                recurring_from: None,
                idem_key: key,
                idem_hash: Some(hash.clone()),
                version: 1,
                deleted: false,
                created_at: bson::DateTime::from_chrono(now),
                updated_at: bson::DateTime::from_chrono(now),
                events: Outbox::default(),
            };
            doc.events = Outbox::with(
                expense_event(DomainEvent::ExpenseCreated, None, &doc, now)?,
                &consumers,
            );
            docs.push(doc);
        }
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        let created = self.store.insert_new(&docs).await?;
        if created > 0 {
            self.dispatcher.wake();
        }
        Ok(Ok(ImportReport {
            rows: rows.len(),
            created,
            already_present: already_present + (docs.len() - created),
        }))
    }
}
