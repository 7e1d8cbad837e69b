//! The GraphQL output types (each wrapping a domain value) and input types (each
//! converting into the domain at the edge).

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject,
};
use chrono::{DateTime, Utc};
use contract::households::Ownership;
use kit::AppError;
use kit::money::{Currency, Money};
use kit::scalars::{Date, Decimal};

use super::entities::User;
use super::service;
use crate::domain::{self, AmountRange, DayRange, Frequency, ListFilter, TxType};
use crate::service::{ExpenseChange, NewExpense};

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

impl From<Frequency> for RecurrenceFrequency {
    fn from(f: Frequency) -> Self {
        match f {
            Frequency::Daily => RecurrenceFrequency::Daily,
            Frequency::Weekly => RecurrenceFrequency::Weekly,
            Frequency::Monthly => RecurrenceFrequency::Monthly,
            Frequency::Yearly => RecurrenceFrequency::Yearly,
        }
    }
}

pub struct Recurrence(pub domain::Recurrence);

/// How an expense repeats.
#[Object]
impl Recurrence {
    async fn frequency(&self) -> RecurrenceFrequency {
        self.0.frequency.into()
    }
    /// Last day an occurrence may fall on (inclusive); null: no end.
    async fn end_date(&self) -> Option<Date> {
        self.0.end_date.map(Date)
    }
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
pub struct Expense(pub domain::Expense);

#[Object]
impl Expense {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> TransactionType {
        self.0.kind.into()
    }
    /// Exact amount in `currency`.
    async fn amount(&self) -> Decimal {
        self.0.amount.into()
    }
    /// ISO 4217 code.
    async fn currency(&self) -> String {
        self.0.amount.currency().code().to_string()
    }
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Calendar date in the user's timezone.
    async fn date(&self) -> Date {
        Date(self.0.date)
    }
    /// cash, card, bank_transfer, mobile or other.
    async fn payment_method(&self) -> Option<&str> {
        self.0.payment_method.map(|p| p.as_str())
    }
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn recurrence(&self) -> Option<Recurrence> {
        self.0.recurrence.as_ref().map(|s| Recurrence(s.rule()))
    }
    /// The recurring expense this one was created from, if any.
    async fn recurring_from(&self) -> Option<ID> {
        self.0.recurring_from.as_ref().map(|id| ID(id.to_string()))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The household the expense is shared with (null: personal); its other fields
    /// are resolved by the users subgraph, for its members.
    async fn household(&self) -> Option<Household> {
        self.0.household.as_ref().map(|h| Household {
            id: ID(h.to_string()),
        })
    }
    /// Who added a shared expense, as a member of its household (null: personal): a
    /// member's name on a shared expense, resolved by the users subgraph.
    async fn shared_by(&self) -> Option<HouseholdMember> {
        self.0.household.as_ref().map(|h| HouseholdMember {
            household_id: ID(h.to_string()),
            user_id: ID(self.0.user_id.to_string()),
        })
    }
    /// The owner; other fields are resolved by the users subgraph.
    // Nullable: the users subgraph resolves the rest of it in another fetch, and its
    // failure must not null the expense (see schema/README.md).
    async fn user(&self) -> Option<User> {
        Some(User {
            id: self.0.user_id.clone(),
        })
    }
}

/// A household, resolved by the users subgraph (for its members only).
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct Household {
    pub id: ID,
}

/// A member of a household, resolved by the users subgraph (for the household's
/// members only).
#[derive(SimpleObject)]
#[graphql(unresolvable = "householdId userId")]
pub struct HouseholdMember {
    pub household_id: ID,
    pub user_id: ID,
}

#[derive(SimpleObject)]
pub struct ExpenseEdge {
    pub cursor: String,
    pub node: Expense,
}

/// Shared with other subgraphs' connections (same fields everywhere).
#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ExpenseConnection {
    pub edges: Vec<ExpenseEdge>,
    pub page_info: PageInfo,
    #[graphql(skip)]
    pub owner: Ownership,
    #[graphql(skip)]
    pub filter: ListFilter,
}

#[ComplexObject]
impl ExpenseConnection {
    /// Number of expenses matching the filter (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let n = service(ctx)?.store.count(&self.owner, &self.filter).await?;
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
    /// The expenses shared with this household, whoever added them (for its members);
    /// without it, the caller's own.
    household_id: Option<ID>,
}

impl ExpenseFilter {
    /// The household whose shared expenses are asked for, if any.
    pub fn household(&self) -> Result<Option<contract::ids::HouseholdId>, AppError> {
        self.household_id
            .as_ref()
            .map(|h| kit::households::household_id("householdId", h))
            .transpose()
    }

    /// The domain filter; `home` is the caller's currency.
    pub fn into_domain(self, home: Currency) -> Result<ListFilter, AppError> {
        let f = self;
        let mut out = ListFilter {
            kind: f.kind.map(Into::into),
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
        out.days = DayRange::inclusive(f.from.map(|d| d.0), f.to.map(|d| d.0))?;
        let currency = domain::currency(f.currency.as_deref(), home)?;
        if f.currency.is_some() {
            out.currency = Some(currency);
        }
        if f.min_amount.is_some() || f.max_amount.is_some() {
            let bound = |v: Option<Decimal>, field: &str| -> Result<Option<Money>, AppError> {
                v.map(|d| Money::from_decimal(d.0, currency).map_err(|e| AppError::money(field, e)))
                    .transpose()
            };
            out.amount = Some(AmountRange {
                currency,
                min: bound(f.min_amount, "minAmount")?,
                max: bound(f.max_amount, "maxAmount")?,
            });
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
}

pub struct CategorySummary(pub domain::CategoryTotal);

#[Object]
impl CategorySummary {
    #[graphql(name = "type")]
    async fn kind(&self) -> TransactionType {
        self.0.kind.into()
    }
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn total(&self) -> Decimal {
        self.0.total.into()
    }
    async fn count(&self) -> i64 {
        self.0.count
    }
}

pub struct ExpenseSummary(pub domain::Summary);

/// Totals of one currency over a date range.
#[Object]
impl ExpenseSummary {
    async fn currency(&self) -> &str {
        self.0.currency.code()
    }
    async fn total_income(&self) -> Decimal {
        self.0.total_income.into()
    }
    async fn total_expenses(&self) -> Decimal {
        self.0.total_expenses.into()
    }
    async fn balance(&self) -> Decimal {
        self.0.balance.into()
    }
    async fn by_category(&self) -> Vec<CategorySummary> {
        self.0
            .by_category
            .iter()
            .cloned()
            .map(CategorySummary)
            .collect()
    }
}

pub struct Category(pub domain::Category);

#[Object]
impl Category {
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> TransactionType {
        self.0.kind.into()
    }
    /// True for categories the user created.
    async fn custom(&self) -> bool {
        self.0.custom
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
    /// Shares the expense with this household: its members see it and its budgets
    /// count it (you must be its OWNER or a MEMBER). Default: personal.
    household_id: Option<ID>,
}

impl CreateExpenseInput {
    pub fn into_domain(self) -> Result<NewExpense, AppError> {
        let input = self;
        Ok(NewExpense {
            household: input
                .household_id
                .as_ref()
                .map(|h| kit::households::household_id("householdId", h))
                .transpose()?,
            kind: input.kind.map(Into::into),
            amount: input.amount.0,
            currency: input.currency,
            category: input.category,
            description: input.description,
            date: input.date.map(|d| d.0),
            payment_method: input.payment_method,
            tags: input.tags,
            recurrence: input.recurrence.map(Into::into),
        })
    }
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
    /// Shares the expense with this household; null makes it personal again.
    household_id: MaybeUndefined<ID>,
}

/// Undefined leaves a field alone, null clears it.
fn change<T, U>(v: MaybeUndefined<T>, f: impl FnOnce(T) -> U) -> Option<Option<U>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(x) => Some(Some(f(x))),
    }
}

impl UpdateExpenseInput {
    pub fn into_domain(self) -> Result<ExpenseChange, AppError> {
        let input = self;
        Ok(ExpenseChange {
            household: change(input.household_id, |h| {
                kit::households::household_id("householdId", &h)
            })
            .map(Option::transpose)
            .transpose()?,
            kind: input.kind.map(Into::into),
            amount: input.amount.map(|d| d.0),
            currency: input.currency,
            category: input.category,
            description: input.description,
            date: input.date.map(|d| d.0),
            payment_method: change(input.payment_method, |p| p),
            tags: input.tags,
            recurrence: change(input.recurrence, Into::into),
        })
    }
}

/// CSV text of the caller's expenses.
#[derive(SimpleObject)]
pub struct ExpensesCsv {
    /// RFC 4180 text with a header row.
    pub csv: String,
    /// Data rows (the header not counted).
    pub row_count: i32,
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

impl From<crate::service::ImportReport> for ImportReport {
    fn from(r: crate::service::ImportReport) -> Self {
        ImportReport {
            rows: count(r.rows),
            created: count(r.created),
            already_present: count(r.already_present),
        }
    }
}

/// A count as a GraphQL `Int`.
pub fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
