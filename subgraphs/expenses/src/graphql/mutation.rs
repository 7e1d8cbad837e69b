//! The mutations: create, update and delete an expense, import CSV, add a category.

use async_graphql::{Context, ErrorExtensions, ID, Object, Result};
use kit::AppError;

use super::types::{
    Category, CreateExpenseInput, Expense, ImportReport, TransactionType, UpdateExpenseInput, count,
};
use super::{access, expense_id, service};
use crate::domain::{self, csv_format};

/// The caller's expense `id` to change: `NOT_FOUND` when it is no id of ours.
fn existing(id: &ID) -> Result<contract::ids::ExpenseId, AppError> {
    expense_id(id).ok_or_else(|| AppError::not_found("expense"))
}

#[derive(Default)]
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
        let (user, profile) = kit::users::caller_profile(ctx).await?;
        let input = input.into_domain()?;
        access::may_share(ctx, None, input.household.clone()).await?;
        let expense = service(ctx)?
            .create(&user, profile, input, idempotency_key)
            .await?;
        Ok(Expense(expense))
    }

    async fn update_expense(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateExpenseInput,
    ) -> Result<Expense> {
        let (user, profile) = kit::users::caller_profile(ctx).await?;
        let id = existing(&id)?;
        let change = input.into_domain()?;
        let may_share = |before, after| access::may_share(ctx, before, after);
        let expense = service(ctx)?
            .update(&user, profile, &id, change, may_share)
            .await?;
        Ok(Expense(expense))
    }

    async fn delete_expense(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let user = kit::auth::caller_id(ctx)?;
        let may_share = |before, after| access::may_share(ctx, before, after);
        service(ctx)?
            .delete(&user, &existing(&id)?, may_share)
            .await?;
        Ok(true)
    }

    /// Imports expenses from CSV in the format of `exportExpensesCsv` (header row
    /// required, columns by name; `id`, `date`, `amount`, `description` required). At
    /// most 10,000 rows and 5 MiB. Every row is checked first with createExpense's
    /// rules; if any is bad nothing is imported and the VALIDATION_FAILED error lists
    /// them in `extensions.errors` (`row`, `line`, `column`, `message`). Idempotent by
    /// the `id` column: importing the same file again creates nothing new.
    async fn import_expenses_csv(&self, ctx: &Context<'_>, csv: String) -> Result<ImportReport> {
        let (user, profile) = kit::users::caller_profile(ctx).await?;
        match service(ctx)?.import_csv(&user, profile, &csv).await? {
            Ok(r) => Ok(r.into()),
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
        let user = kit::auth::caller_id(ctx)?;
        let c = service(ctx)?
            .create_category(&user, &name, kind.into())
            .await?;
        Ok(Category(domain::Category::from(c)))
    }
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
