//! The operations of the expenses subgraph: each write stores the change and its
//! event in one document write (see `kit::events`), then wakes the dispatcher.

use chrono::NaiveDate;
use contract::events::{DomainEvent, ExpenseChanged};
use contract::ids::{ExpenseId, HouseholdId, UserId};
use kit::AppError;
use kit::clock::Clock;
use kit::events::{Dispatcher, Event, Outbox};
use kit::money::{Currency, Decimal, positive_amount};
use kit::users::UserProfile;
use serde_json::json;

use crate::domain::{
    self, CustomCategory, DayRange, Expense, PaymentMethod, Recurrence, Schedule, TxType,
    csv_format,
};
use crate::store::{Occurrence, Store, Stored};

/// A new expense as the client asked for it. The text fields are checked by
/// `create`, after a replay of an idempotent request is answered: the idempotency hash
/// is taken over the request as given.
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
    /// Shared with this household; the caller's right to it is checked before.
    pub household: Option<HouseholdId>,
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
    /// `Some(None)`: make it personal again.
    pub household: Option<Option<HouseholdId>>,
}

#[derive(Clone)]
pub struct Expenses {
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub clock: Clock,
    /// The database has multi-document transactions (a replica set): a recurring
    /// occurrence and the move of its series commit together.
    pub transactional: bool,
    /// The users service, asked by the recurrence scheduler whether the owner of a
    /// shared series may still share with its household (`None`: occurrences of shared
    /// series are made personal).
    pub users: Option<std::sync::Arc<kit::users::UserDirectory>>,
}

/// The `expense.*` event of a change from `before` to `after`.
fn expense_event(
    kind: fn(ExpenseChanged) -> DomainEvent,
    before: Option<&Expense>,
    after: &Expense,
    at: chrono::DateTime<chrono::Utc>,
) -> Event {
    let change = ExpenseChanged {
        expense_id: after.id.clone(),
        version: after.version,
        before: before.map(Expense::snapshot),
        after: (!after.deleted).then(|| after.snapshot()),
    };
    kind(change).into_event(&after.user_id, at)
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
        "household": input.household.as_ref().map(|h| h.as_str()),
    });
    kit::auth::sha256_hex(&canonical.to_string())
}

impl Expenses {
    pub fn new(db: &mongodb::Database, dispatcher: Dispatcher, clock: Clock) -> Expenses {
        Expenses {
            store: Store::new(db),
            dispatcher,
            clock,
            transactional: false,
            users: None,
        }
    }

    /// The household a new occurrence of `series` is shared with: the series' own while
    /// its owner is still an owner or member there (asked now: a removed member's
    /// occurrences stay personal), none otherwise.
    async fn occurrence_household(
        &self,
        series: &Expense,
    ) -> Result<Option<HouseholdId>, AppError> {
        let (Some(h), Some(users)) = (&series.household, &self.users) else {
            return Ok(None);
        };
        let members = users.household_members(h).await?;
        let may_write = members
            .members
            .iter()
            .any(|m| m.user_id == series.user_id && m.role.can_write());
        Ok(may_write.then(|| h.clone()))
    }

    fn consumers(&self) -> Vec<String> {
        self.dispatcher.consumer_names()
    }

    /// The outbox of a new expense: its `expense.created` event for every consumer.
    fn created_outbox(&self, e: &Expense, at: chrono::DateTime<chrono::Utc>) -> Outbox {
        Outbox::with(
            expense_event(DomainEvent::ExpenseCreated, None, e, at),
            &self.consumers(),
        )
    }

    async fn custom_names(&self, user_id: &UserId, kind: TxType) -> Result<Vec<String>, AppError> {
        Ok(self
            .store
            .custom_categories(user_id)
            .await?
            .into_iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.name)
            .collect())
    }

    /// Creates an expense. With an idempotency key, a replay of the same input returns
    /// the first expense, and a different input under the same key is a conflict.
    #[tracing::instrument(skip(self, profile, input, idempotency_key), fields(user = %user_id))]
    pub async fn create(
        &self,
        user_id: &UserId,
        profile: UserProfile,
        input: NewExpense,
        idempotency_key: Option<String>,
    ) -> Result<Expense, AppError> {
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
        let id = ExpenseId::new();
        let expense = Expense {
            recurrence: recurrence
                .map(|r| Schedule::new(r, date, profile.timezone, format!("{id}:1"), None)),
            idem_key: match &key {
                Some(k) => format!("key:{k}"),
                None => format!("id:{id}"),
            },
            idem_hash: key.as_ref().map(|_| hash.clone()),
            id,
            user_id: user_id.clone(),
            kind,
            amount,
            category,
            description,
            date,
            payment_method,
            tags,
            recurring_from: None,
            household: input.household,
            version: 1,
            deleted: false,
            created_at: domain::instant(now),
            updated_at: domain::instant(now),
        };
        if self
            .store
            .insert(&expense, self.created_outbox(&expense, now))
            .await?
        {
            self.dispatcher.wake_user(expense.user_id.as_str());
            return Ok(expense);
        }
        // Lost a race for the same key with a concurrent request.
        match self.store.by_idem_key(user_id, &expense.idem_key).await? {
            Some(existing) => replay(existing, &hash),
            None => Err(AppError::internal(anyhow::anyhow!(
                "duplicate idempotency key without a document"
            ))),
        }
    }

    /// Changes the user's expense. `may_share(before, after)` is asked, on the very
    /// version the change is written over, whether the caller may move it from being
    /// shared with `before` to `after` (either `None`: personal).
    #[tracing::instrument(skip(self, profile, change, may_share), fields(user = %user_id))]
    pub async fn update<C, CF>(
        &self,
        user_id: &UserId,
        profile: UserProfile,
        id: &ExpenseId,
        change: ExpenseChange,
        may_share: C,
    ) -> Result<Expense, AppError>
    where
        C: Fn(Option<HouseholdId>, Option<HouseholdId>) -> CF,
        CF: std::future::Future<Output = Result<(), AppError>>,
    {
        let (change, may_share) = (&change, &may_share);
        kit::db::optimistic("expense", || async move {
            let read = self.store.owned(user_id, id).await?;
            let after = self
                .apply_change(user_id, profile, &read.expense, change)
                .await?;
            may_share(read.expense.household.clone(), after.household.clone()).await?;
            self.replace(&read, after, DomainEvent::ExpenseUpdated)
                .await
        })
        .await
    }

    async fn apply_change(
        &self,
        user_id: &UserId,
        profile: UserProfile,
        before: &Expense,
        change: &ExpenseChange,
    ) -> Result<Expense, AppError> {
        let mut after = before.clone();
        let kind = change.kind.unwrap_or(before.kind);
        after.kind = kind;
        let currency = match &change.currency {
            Some(c) => Currency::parse(c).map_err(|e| AppError::money("currency", e))?,
            None => before.amount.currency(),
        };
        // Without a new amount, the stored amount read in the (maybe new) currency.
        let amount = change.amount.unwrap_or_else(|| before.amount.to_decimal());
        after.amount = positive_amount(amount, currency)?;
        if change.category.is_some() || change.kind.is_some() {
            let custom = self.custom_names(user_id, kind).await?;
            let wanted = change.category.as_deref().unwrap_or(&before.category);
            after.category = domain::resolve_category(Some(wanted), kind, &custom)?;
        }
        if let Some(d) = &change.description {
            after.description = domain::description(d)?;
        }
        if let Some(d) = change.date {
            after.date = domain::date(Some(d), self.clock.today_in(profile.timezone))?;
        }
        if let Some(p) = &change.payment_method {
            after.payment_method = domain::payment_method(p.as_deref())?;
        }
        if let Some(t) = &change.tags {
            after.tags = domain::tags(t)?;
        }
        if let Some(h) = &change.household {
            after.household = h.clone();
        }
        match &change.recurrence {
            None => {}
            Some(None) => after.recurrence = None,
            Some(Some(r)) => {
                let r = domain::recurrence(*r, after.date)?;
                let series = format!("{}:{}", before.id, before.version + 1);
                let today = self.clock.today_in(profile.timezone);
                after.recurrence = Some(Schedule::new(
                    r,
                    after.date,
                    profile.timezone,
                    series,
                    Some(today),
                ));
            }
        }
        Ok(after)
    }

    /// Writes `after` over the expense as it was `read`, with the event `kind` of the
    /// change; `None` when someone else wrote it first.
    async fn replace(
        &self,
        read: &Stored,
        mut after: Expense,
        kind: fn(ExpenseChanged) -> DomainEvent,
    ) -> Result<Option<Expense>, AppError> {
        let now = self.clock.now();
        after.version = read.expense.version + 1;
        after.updated_at = domain::instant(now);
        let mut outbox = read.outbox.clone();
        outbox.push(
            expense_event(kind, Some(&read.expense), &after, now),
            &self.consumers(),
        );
        let written = self.store.replace(read, &after, outbox).await?;
        if written {
            self.dispatcher.wake_user(after.user_id.as_str());
        }
        Ok(written.then_some(after))
    }

    /// Deletes the user's expense; `may_share(before, None)` as for [`Expenses::update`].
    #[tracing::instrument(skip(self, may_share), fields(user = %user_id))]
    pub async fn delete<C, CF>(
        &self,
        user_id: &UserId,
        id: &ExpenseId,
        may_share: C,
    ) -> Result<(), AppError>
    where
        C: Fn(Option<HouseholdId>, Option<HouseholdId>) -> CF,
        CF: std::future::Future<Output = Result<(), AppError>>,
    {
        let may_share = &may_share;
        kit::db::optimistic("expense", || async move {
            let read = self.store.owned(user_id, id).await?;
            may_share(read.expense.household.clone(), None).await?;
            let mut after = read.expense.clone();
            after.deleted = true;
            after.recurrence = None;
            Ok(self
                .replace(&read, after, DomainEvent::ExpenseDeleted)
                .await?
                .map(|_| ()))
        })
        .await
    }

    pub async fn create_category(
        &self,
        user_id: &UserId,
        name: &str,
        kind: TxType,
    ) -> Result<CustomCategory, AppError> {
        let name = domain::custom_category_name(name)?;
        let category = CustomCategory {
            user_id: user_id.clone(),
            kind,
            name,
            created_at: domain::instant(self.clock.now()),
        };
        if kind.builtin_categories().contains(&category.key().as_str()) {
            return Err(AppError::conflict(
                format!("{:?} is already a built-in category", category.name),
                Some("name"),
            ));
        }
        if !self.store.insert_category(&category).await? {
            return Err(AppError::conflict(
                format!("you already have a category {:?}", category.name),
                Some("name"),
            ));
        }
        Ok(category)
    }

    /// Creates every occurrence that is due, once each, however many instances run:
    /// an occurrence's idempotency key is `recur:<schedule>:<n>` (unique per user), and
    /// the series moves on with a compare-and-set on `recurrence.nextIndex`. A crash
    /// between the two re-inserts the same key next time, which the index refuses.
    /// A series whose document does not read back is left alone without holding up
    /// the others, and reported (the run fails with the first such error). Returns the
    /// number of occurrences created.
    #[tracing::instrument(skip(self))]
    pub async fn run_recurrences(&self) -> Result<usize, AppError> {
        // The furthest "today" anywhere on Earth (UTC+14); each series is then checked
        // against today in its own timezone.
        let now = self.clock.now();
        let horizon = (now + chrono::Duration::hours(14)).date_naive();
        let mut created = 0;
        let mut unreadable = None;
        for series in self.store.due_series(horizon, 500).await? {
            match series {
                Ok(series) => created += self.catch_up(series).await?,
                Err(e) if unreadable.is_none() => unreadable = Some(e),
                Err(e) => {
                    let e = anyhow::Error::from(e);
                    tracing::error!(error = %format!("{e:#}"), "unreadable recurring series");
                }
            }
        }
        if created > 0 {
            self.dispatcher.wake();
        }
        match unreadable {
            Some(e) => Err(e),
            None => Ok(created),
        }
    }

    /// Creates the due occurrences of one series, at most [`MAX_CATCH_UP_PER_PASS`]: a
    /// long backfill goes on in later passes while every other series gets its turn
    /// in each one.
    async fn catch_up(&self, series: Expense) -> Result<usize, AppError> {
        let Some(schedule) = &series.recurrence else {
            return Ok(0);
        };
        let rule = schedule.rule();
        let start = series.date;
        let today = self.clock.today_in(schedule.timezone);
        let mut n = schedule.next_index;
        let mut created = 0;
        let mut household: Option<Option<HouseholdId>> = None;
        loop {
            let index = u32::try_from(n).map_err(AppError::internal)?;
            let Some(date) = rule.occurrence(start, index).filter(|d| *d <= today) else {
                break;
            };
            let now = self.clock.now();
            let household = match &household {
                Some(h) => h.clone(),
                None => household
                    .insert(self.occurrence_household(&series).await?)
                    .clone(),
            };
            let occurrence = Expense {
                id: ExpenseId::new(),
                household,
                date,
                recurrence: None,
                recurring_from: Some(series.id.clone()),
                idem_key: format!("recur:{}:{n}", schedule.series),
                idem_hash: None,
                version: 1,
                deleted: false,
                created_at: domain::instant(now),
                updated_at: domain::instant(now),
                ..series.clone()
            };
            let next = rule.occurrence(start, index + 1);
            let outbox = self.created_outbox(&occurrence, now);
            match self
                .store
                .record_occurrence(&series.id, n, next, &occurrence, outbox, self.transactional)
                .await?
            {
                Occurrence::Created => created += 1,
                Occurrence::AlreadyThere => {}
                // Another instance moved it, or its owner stopped or edited it.
                Occurrence::SeriesMoved => break,
            }
            if next.is_none() || created >= MAX_CATCH_UP_PER_PASS {
                break;
            }
            n += 1;
        }
        Ok(created)
    }
}

/// Occurrences one series may get in one scheduler pass.
pub const MAX_CATCH_UP_PER_PASS: usize = 50;

fn replay(existing: Expense, hash: &str) -> Result<Expense, AppError> {
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
        "paymentMethod": r.payment_method.map(PaymentMethod::as_str),
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
        user_id: &UserId,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<(String, usize), AppError> {
        let days = DayRange::inclusive(from, to)?;
        let max = csv_format::MAX_EXPORT_ROWS;
        let rows = self
            .store
            .export(user_id, days, i64::try_from(max + 1).unwrap_or(i64::MAX))
            .await?;
        if rows.len() > max {
            return Err(AppError::validation(
                "from",
                format!("more than {max} expenses in the range; export a shorter range"),
            ));
        }
        Ok((csv_format::write(&rows)?, rows.len()))
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
        user_id: &UserId,
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
                .filter(|c| c.kind == kind)
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
        // Only an id we issue can be one of the caller's expenses.
        let row_ids: Vec<ExpenseId> = rows
            .iter()
            .filter_map(|r| ExpenseId::parse(&r.row_id).ok())
            .collect();
        let own = self.store.existing_ids(user_id, &row_ids).await?;
        let now = self.clock.now();
        let mut new = Vec::with_capacity(rows.len());
        let mut already_present = 0;
        for ((row, hash), key) in rows.iter().zip(&hashes).zip(keys) {
            if ExpenseId::parse(&row.row_id).is_ok_and(|id| own.contains(&id)) {
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
            let expense = Expense {
                id: ExpenseId::new(),
                user_id: user_id.clone(),
                kind: row.kind,
                amount: row.amount,
                category: row.category.clone(),
                description: row.description.clone(),
                date: row.date,
                payment_method: row.payment_method,
                tags: row.tags.clone(),
                recurrence: None,
                recurring_from: None,
                household: None,
                idem_key: key,
                idem_hash: Some(hash.clone()),
                version: 1,
                deleted: false,
                created_at: domain::instant(now),
                updated_at: domain::instant(now),
            };
            let outbox = self.created_outbox(&expense, now);
            new.push((expense, outbox));
        }
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        let written = new.len();
        let created = self.store.insert_new(new).await?;
        if created > 0 {
            self.dispatcher.wake_user(user_id.as_str());
        }
        Ok(Ok(ImportReport {
            rows: rows.len(),
            created,
            already_present: already_present + (written - created),
        }))
    }
}
