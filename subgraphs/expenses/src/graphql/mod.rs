//! The expenses subgraph's GraphQL types and resolvers.

use async_graphql::{
    ComplexObject, Context, EmptySubscription, Enum, ErrorExtensions, ID, InputObject,
    MaybeUndefined, Object, Result, Schema, SimpleObject,
};
use base64::Engine;
use chrono::{DateTime, Days, Utc};
use kit::AppError;
use kit::money::{Currency, Money};
use kit::scalars::{Date, Decimal};
use kit::users::{UserDirectory, caller_profile};

use crate::domain::{self, Frequency, MAX_PAGE, TxType, csv_format};
use crate::service::{ExpenseChange, Expenses, NewExpense};
use crate::store::{ExpenseDoc, ListFilter, totals};

pub type ExpensesSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn build_schema(expenses: Expenses, users: UserDirectory) -> ExpensesSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(expenses)
        .data(users)
        .limit_depth(16)
        .limit_complexity(1000)
        .finish()
}

use kit::auth::caller_id;

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Expenses, AppError> {
    kit::server::context_data(ctx)
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TransactionType {
    Expense,
    Income,
}

impl From<TransactionType> for TxType {
    fn from(t: TransactionType) -> Self {
        match t {
            TransactionType::Expense => TxType::Expense,
            TransactionType::Income => TxType::Income,
        }
    }
}

impl From<TxType> for TransactionType {
    fn from(t: TxType) -> Self {
        match t {
            TxType::Expense => TransactionType::Expense,
            TxType::Income => TransactionType::Income,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RecurrenceFrequency {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl From<RecurrenceFrequency> for Frequency {
    fn from(f: RecurrenceFrequency) -> Self {
        match f {
            RecurrenceFrequency::Daily => Frequency::Daily,
            RecurrenceFrequency::Weekly => Frequency::Weekly,
            RecurrenceFrequency::Monthly => Frequency::Monthly,
            RecurrenceFrequency::Yearly => Frequency::Yearly,
        }
    }
}

/// How an expense repeats.
#[derive(SimpleObject)]
pub struct Recurrence {
    frequency: RecurrenceFrequency,
    /// Last day an occurrence may fall on (inclusive); null: no end.
    end_date: Option<Date>,
}

#[derive(InputObject)]
pub struct RecurrenceInput {
    frequency: RecurrenceFrequency,
    end_date: Option<Date>,
}

impl From<RecurrenceInput> for domain::Recurrence {
    fn from(r: RecurrenceInput) -> Self {
        domain::Recurrence {
            frequency: r.frequency.into(),
            end_date: r.end_date.map(|d| d.0),
        }
    }
}

/// An expense or an income.
pub struct Expense(pub ExpenseDoc);

fn money_of(doc: &ExpenseDoc) -> Result<Money, AppError> {
    let currency = Currency::parse(&doc.currency).map_err(AppError::internal)?;
    Money::from_minor(doc.amount_minor, currency).map_err(AppError::internal)
}

#[Object]
impl Expense {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> TransactionType {
        TxType::parse(&self.0.kind)
            .unwrap_or(TxType::Expense)
            .into()
    }
    /// Exact amount in `currency`.
    async fn amount(&self) -> Result<Decimal> {
        Ok(money_of(&self.0)?.into())
    }
    /// ISO 4217 code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Calendar date in the user's timezone.
    async fn date(&self) -> Result<Date> {
        Ok(Date(crate::service::parse_date(&self.0.date)?))
    }
    /// cash, card, bank_transfer, mobile or other.
    async fn payment_method(&self) -> Option<&str> {
        self.0.payment_method.as_deref()
    }
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn recurrence(&self) -> Option<Recurrence> {
        let r = self.0.recurrence.as_ref()?;
        let frequency = match Frequency::parse(&r.frequency)? {
            Frequency::Daily => RecurrenceFrequency::Daily,
            Frequency::Weekly => RecurrenceFrequency::Weekly,
            Frequency::Monthly => RecurrenceFrequency::Monthly,
            Frequency::Yearly => RecurrenceFrequency::Yearly,
        };
        Some(Recurrence {
            frequency,
            end_date: r.end_date.as_deref().and_then(|d| Date::parse(d).ok()),
        })
    }
    /// The recurring expense this one was created from, if any.
    async fn recurring_from(&self) -> Option<ID> {
        self.0.recurring_from.clone().map(ID)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.to_chrono()
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at.to_chrono()
    }
    /// The owner; other fields are resolved by the users subgraph.
    async fn user(&self) -> User {
        User {
            id: self.0.user_id.clone(),
        }
    }
}

#[derive(SimpleObject)]
pub struct ExpenseEdge {
    cursor: String,
    node: Expense,
}

/// Shared with other subgraphs' connections (same fields everywhere).
#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ExpenseConnection {
    edges: Vec<ExpenseEdge>,
    page_info: PageInfo,
    #[graphql(skip)]
    user_id: String,
    #[graphql(skip)]
    filter: ListFilter,
}

#[ComplexObject]
impl ExpenseConnection {
    /// Number of expenses matching the filter (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let n = service(ctx)?
            .store
            .count(&self.user_id, &self.filter)
            .await?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// Filters of `expenses`; all optional and combined.
#[derive(InputObject, Default)]
pub struct ExpenseFilter {
    #[graphql(name = "type")]
    kind: Option<TransactionType>,
    category: Option<String>,
    /// Any of these categories.
    categories: Option<Vec<String>>,
    /// First day included.
    from: Option<Date>,
    /// Last day included.
    to: Option<Date>,
    /// Amounts are compared in `currency` (default: the user's currency); with an
    /// amount bound, only expenses in that currency match.
    min_amount: Option<Decimal>,
    max_amount: Option<Decimal>,
    currency: Option<String>,
    /// Case-insensitive text within the description.
    search: Option<String>,
    tag: Option<String>,
    payment_method: Option<String>,
}

fn to_list_filter(f: ExpenseFilter, home: Currency) -> Result<ListFilter, AppError> {
    let mut out = ListFilter {
        kind: f.kind.map(|k| TxType::from(k).as_str().to_string()),
        ..ListFilter::default()
    };
    let mut keys: Vec<String> = Vec::new();
    if let Some(c) = &f.category {
        keys.push(domain::category_key(c));
    }
    for c in f.categories.iter().flatten() {
        keys.push(domain::category_key(c));
    }
    if f.categories.as_ref().is_some_and(|c| c.len() > 50) {
        return Err(AppError::validation("categories", "at most 50 categories"));
    }
    if f.category.is_some() && f.categories.is_some() {
        // Both given: the single category must also be among the list.
        let single = domain::category_key(f.category.as_deref().unwrap_or_default());
        keys = if keys[1..].contains(&single) {
            vec![single]
        } else {
            vec!["\u{0}no-match".to_string()]
        };
    }
    if f.category.is_some() || f.categories.is_some() {
        keys.sort();
        keys.dedup();
        out.category_keys = Some(keys);
    }
    if let (Some(a), Some(b)) = (f.from, f.to)
        && a > b
    {
        return Err(AppError::validation("to", "`to` is before `from`"));
    }
    out.from_day = f.from.map(|d| domain::day_key(d.0));
    out.until_day = match f.to {
        Some(d) => Some(domain::day_key(
            d.0.checked_add_days(Days::new(1))
                .ok_or_else(|| AppError::validation("to", "date out of range"))?,
        )),
        None => None,
    };
    let currency = domain::currency(f.currency.as_deref(), home)?;
    if f.currency.is_some() {
        out.currency = Some(currency.code().to_string());
    }
    if f.min_amount.is_some() || f.max_amount.is_some() {
        let bound = |v: Option<Decimal>, field: &str| -> Result<Option<i64>, AppError> {
            v.map(|d| {
                Money::from_decimal(d.0, currency)
                    .map(|m| m.amount_minor())
                    .map_err(|e| AppError::money(field, e))
            })
            .transpose()
        };
        out.amount = Some((
            currency.code().to_string(),
            bound(f.min_amount, "minAmount")?,
            bound(f.max_amount, "maxAmount")?,
        ));
    }
    if let Some(s) = f.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if s.chars().count() > 100 {
            return Err(AppError::validation("search", "at most 100 characters"));
        }
        out.search = Some(s.to_string());
    }
    out.tag = f.tag.map(|t| t.trim().to_string());
    out.payment_method = f.payment_method.map(|p| p.trim().to_lowercase());
    Ok(out)
}

fn encode_cursor(sort_key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_key)
}

fn decode_cursor(cursor: &str) -> Result<String, AppError> {
    let bad = || AppError::validation("after", "not a cursor from this list");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (day, id) = text.split_once('|').ok_or_else(bad)?;
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) || !kit::ids::is_valid_id(id) {
        return Err(bad());
    }
    Ok(text)
}

async fn list_expenses(
    ctx: &Context<'_>,
    filter: Option<ExpenseFilter>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<ExpenseConnection, AppError> {
    let first = first.unwrap_or(20);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(AppError::validation(
            "first",
            format!("first must be between 0 and {MAX_PAGE}"),
        ));
    }
    let (user_id, profile) = caller_profile(ctx).await?;
    let before = after.as_deref().map(decode_cursor).transpose()?;
    let filter = to_list_filter(filter.unwrap_or_default(), profile.currency)?;
    let mut docs = service(ctx)?
        .store
        .list(&user_id, &filter, before.as_deref(), i64::from(first) + 1)
        .await?;
    let has_next_page = docs.len() > first as usize;
    docs.truncate(first as usize);
    let edges: Vec<ExpenseEdge> = docs
        .into_iter()
        .map(|d| ExpenseEdge {
            cursor: encode_cursor(&d.sort_key),
            node: Expense(d),
        })
        .collect();
    let end_cursor = edges.last().map(|e| e.cursor.clone());
    Ok(ExpenseConnection {
        edges,
        page_info: PageInfo {
            has_next_page,
            end_cursor,
        },
        user_id,
        filter,
    })
}

/// The `User` entity, extended here with the user's expenses.
pub struct User {
    id: String,
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    /// The user's expenses (only ever the caller's own).
    async fn expenses(
        &self,
        ctx: &Context<'_>,
        filter: Option<ExpenseFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ExpenseConnection> {
        if caller_id(ctx)? != self.id {
            return Err(AppError::not_found("user").into());
        }
        Ok(list_expenses(ctx, filter, first, after).await?)
    }
}

#[derive(SimpleObject)]
pub struct CategorySummary {
    #[graphql(name = "type")]
    kind: TransactionType,
    category: String,
    total: Decimal,
    count: i64,
}

/// Totals of one currency over a date range.
#[derive(SimpleObject)]
pub struct ExpenseSummary {
    currency: String,
    total_income: Decimal,
    total_expenses: Decimal,
    balance: Decimal,
    by_category: Vec<CategorySummary>,
}

#[derive(SimpleObject)]
pub struct Category {
    name: String,
    #[graphql(name = "type")]
    kind: TransactionType,
    /// True for categories the user created.
    custom: bool,
}

pub struct Query;

#[Object]
impl Query {
    /// The caller's expenses, newest date first.
    async fn expenses(
        &self,
        ctx: &Context<'_>,
        filter: Option<ExpenseFilter>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<ExpenseConnection> {
        Ok(list_expenses(ctx, filter, first, after).await?)
    }

    async fn expense(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Expense>> {
        let user = caller_id(ctx)?;
        Ok(service(ctx)?.store.get(&user, &id).await?.map(Expense))
    }

    /// Totals over `[from, to]` (inclusive dates) in `currency` (default: the user's).
    async fn expense_summary(
        &self,
        ctx: &Context<'_>,
        from: Option<Date>,
        to: Option<Date>,
        currency: Option<String>,
    ) -> Result<ExpenseSummary> {
        let (user, profile) = caller_profile(ctx).await?;
        let currency = domain::currency(currency.as_deref(), profile.currency)?;
        if let (Some(a), Some(b)) = (from, to)
            && a > b
        {
            return Err(AppError::validation("to", "`to` is before `from`").into());
        }
        let until = to
            .map(|d| {
                d.0.checked_add_days(Days::new(1))
                    .map(domain::day_key)
                    .ok_or_else(|| AppError::validation("to", "date out of range"))
            })
            .transpose()?;
        let rows = service(ctx)?
            .store
            .summary(
                &user,
                currency.code(),
                from.map(|d| domain::day_key(d.0)),
                until,
            )
            .await?;
        let sums = totals(&rows);
        let m = |minor: i64| -> Result<Decimal, AppError> {
            Ok(Money::from_minor(minor, currency)
                .map_err(AppError::internal)?
                .into())
        };
        let income = sums.get("INCOME").copied().unwrap_or(0);
        let spent = sums.get("EXPENSE").copied().unwrap_or(0);
        let mut by_category = Vec::with_capacity(rows.len());
        for r in &rows {
            by_category.push(CategorySummary {
                kind: TxType::parse(&r.kind).unwrap_or(TxType::Expense).into(),
                category: r.category.clone(),
                total: m(r.total_minor)?,
                count: r.count,
            });
        }
        Ok(ExpenseSummary {
            currency: currency.code().to_string(),
            total_income: m(income)?,
            total_expenses: m(spent)?,
            balance: m(income - spent)?,
            by_category,
        })
    }

    /// The caller's expenses from `from` to `to` (both inclusive, either open) as CSV,
    /// ordered by date then id. Columns: `id,date,type,amount,currency,category,
    /// description,paymentMethod,tags` (tags `;`-joined); RFC 4180 with CRLF line ends;
    /// text cells that a spreadsheet would read as a formula start with `'`. The same
    /// format is accepted by `importExpensesCsv`.
    async fn export_expenses_csv(
        &self,
        ctx: &Context<'_>,
        from: Option<Date>,
        to: Option<Date>,
    ) -> Result<ExpensesCsv> {
        let user = caller_id(ctx)?;
        let (csv, rows) = service(ctx)?
            .export_csv(&user, from.map(|d| d.0), to.map(|d| d.0))
            .await?;
        Ok(ExpensesCsv {
            csv,
            row_count: i32::try_from(rows).unwrap_or(i32::MAX),
        })
    }

    /// Built-in categories of both types, then the caller's own.
    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<Category>> {
        let user = caller_id(ctx)?;
        let mut out = Vec::new();
        for kind in [TxType::Expense, TxType::Income] {
            for name in kind.builtin_categories() {
                out.push(Category {
                    name: (*name).to_string(),
                    kind: kind.into(),
                    custom: false,
                });
            }
        }
        for c in service(ctx)?.store.custom_categories(&user).await? {
            out.push(Category {
                name: c.name,
                kind: TxType::parse(&c.kind).unwrap_or(TxType::Expense).into(),
                custom: true,
            });
        }
        Ok(out)
    }

    /// Entity resolution for `Expense`: only the caller's own; others resolve to null.
    #[graphql(entity)]
    async fn find_expense_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Expense>> {
        let user = caller_id(ctx)?;
        Ok(service(ctx)?.store.get(&user, &id).await?.map(Expense))
    }

    /// Entity resolution for `User` (to reach `User.expenses`): only the caller.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let user = caller_id(ctx)?;
        Ok((id.0 == user).then_some(User { id: user }))
    }
}

#[derive(InputObject)]
pub struct CreateExpenseInput {
    /// Default EXPENSE.
    #[graphql(name = "type")]
    kind: Option<TransactionType>,
    /// Greater than 0, in `currency`.
    amount: Decimal,
    /// ISO 4217; default the user's currency.
    currency: Option<String>,
    /// Default `other`.
    category: Option<String>,
    description: String,
    /// Default: today in the user's timezone.
    date: Option<Date>,
    payment_method: Option<String>,
    tags: Option<Vec<String>>,
    recurrence: Option<RecurrenceInput>,
}

#[derive(InputObject)]
pub struct UpdateExpenseInput {
    #[graphql(name = "type")]
    kind: Option<TransactionType>,
    amount: Option<Decimal>,
    currency: Option<String>,
    category: Option<String>,
    description: Option<String>,
    date: Option<Date>,
    /// null clears it.
    payment_method: MaybeUndefined<String>,
    tags: Option<Vec<String>>,
    /// null stops the recurrence.
    recurrence: MaybeUndefined<RecurrenceInput>,
}

fn change<T, U>(v: MaybeUndefined<T>, f: impl FnOnce(T) -> U) -> Option<Option<U>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(x) => Some(Some(f(x))),
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Records an expense. With `idempotencyKey`, a retry of the same request returns
    /// the first expense; the same key with a different input is a CONFLICT.
    async fn create_expense(
        &self,
        ctx: &Context<'_>,
        input: CreateExpenseInput,
        idempotency_key: Option<String>,
    ) -> Result<Expense> {
        let (user, profile) = caller_profile(ctx).await?;
        let new = NewExpense {
            kind: input.kind.map(Into::into),
            amount: input.amount.0,
            currency: input.currency,
            category: input.category,
            description: input.description,
            date: input.date.map(|d| d.0),
            payment_method: input.payment_method,
            tags: input.tags,
            recurrence: input.recurrence.map(Into::into),
        };
        let doc = service(ctx)?
            .create(&user, profile, new, idempotency_key)
            .await?;
        Ok(Expense(doc))
    }

    async fn update_expense(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateExpenseInput,
    ) -> Result<Expense> {
        let (user, profile) = caller_profile(ctx).await?;
        let c = ExpenseChange {
            kind: input.kind.map(Into::into),
            amount: input.amount.map(|d| d.0),
            currency: input.currency,
            category: input.category,
            description: input.description,
            date: input.date.map(|d| d.0),
            payment_method: change(input.payment_method, |p| p),
            tags: input.tags,
            recurrence: change(input.recurrence, Into::into),
        };
        Ok(Expense(service(ctx)?.update(&user, profile, &id, c).await?))
    }

    async fn delete_expense(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let user = caller_id(ctx)?;
        service(ctx)?.delete(&user, &id).await?;
        Ok(true)
    }

    /// Imports expenses from CSV in the format of `exportExpensesCsv` (header row
    /// required, columns by name; `id`, `date`, `amount`, `description` required). At
    /// most 10,000 rows and 5 MiB. Every row is checked first with createExpense's
    /// rules; if any is bad nothing is imported and the VALIDATION_FAILED error lists
    /// them in `extensions.errors` (`row`, `line`, `column`, `message`). Idempotent by
    /// the `id` column: importing the same file again creates nothing new.
    async fn import_expenses_csv(&self, ctx: &Context<'_>, csv: String) -> Result<ImportReport> {
        let (user, profile) = caller_profile(ctx).await?;
        match service(ctx)?.import_csv(&user, profile, &csv).await? {
            Ok(r) => Ok(ImportReport {
                rows: count(r.rows),
                created: count(r.created),
                already_present: count(r.already_present),
            }),
            Err(errors) => Err(import_error(&errors)),
        }
    }

    /// Adds a category of the caller's own.
    async fn create_category(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(name = "type", default_with = "TransactionType::Expense")] kind: TransactionType,
    ) -> Result<Category> {
        let user = caller_id(ctx)?;
        let c = service(ctx)?
            .create_category(&user, &name, kind.into())
            .await?;
        Ok(Category {
            name: c.name,
            kind,
            custom: true,
        })
    }
}

/// CSV text of the caller's expenses.
#[derive(SimpleObject)]
pub struct ExpensesCsv {
    /// RFC 4180 text with a header row.
    csv: String,
    /// Data rows (the header not counted).
    row_count: i32,
}

/// What `importExpensesCsv` did.
#[derive(SimpleObject)]
pub struct ImportReport {
    /// Data rows in the file.
    rows: i32,
    /// Expenses created now.
    created: i32,
    /// Rows that were already imported (same `id`, same content) or are the caller's
    /// own expenses; nothing is written for them.
    already_present: i32,
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Most row errors listed in one error (`errorCount` has them all).
const MAX_LISTED_ERRORS: usize = 200;

/// VALIDATION_FAILED on field `csv`, with each bad row and column in `extensions.errors`.
fn import_error(errors: &[csv_format::RowError]) -> async_graphql::Error {
    let rows: std::collections::BTreeSet<Option<usize>> = errors.iter().map(|e| e.row).collect();
    let message = match errors.first() {
        Some(e) if e.row.is_none() => format!("{}; nothing was imported", e.message),
        _ => format!(
            "{} row(s) of the CSV have errors; nothing was imported",
            rows.len()
        ),
    };
    let listed: Vec<async_graphql::Value> = errors
        .iter()
        .take(MAX_LISTED_ERRORS)
        .map(|e| {
            let mut m = async_graphql::indexmap::IndexMap::new();
            m.insert(
                async_graphql::Name::new("row"),
                e.row
                    .map(|r| async_graphql::Value::from(count(r)))
                    .unwrap_or(async_graphql::Value::Null),
            );
            m.insert(
                async_graphql::Name::new("line"),
                async_graphql::Value::from(i64::try_from(e.line).unwrap_or(i64::MAX)),
            );
            m.insert(
                async_graphql::Name::new("column"),
                async_graphql::Value::from(e.column.as_str()),
            );
            m.insert(
                async_graphql::Name::new("message"),
                async_graphql::Value::from(e.message.as_str()),
            );
            async_graphql::Value::Object(m)
        })
        .collect();
    let total = count(errors.len());
    let e: async_graphql::Error = AppError::validation("csv", message).into();
    e.extend_with(move |_, ext| {
        ext.set("errors", async_graphql::Value::List(listed.clone()));
        ext.set("errorCount", total);
    })
}
