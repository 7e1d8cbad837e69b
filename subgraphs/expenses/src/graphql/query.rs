//! The queries: lists with cursors, one expense, the summary, the CSV export and the
//! categories.

use async_graphql::{Context, ID, Object, Result};
use base64::Engine;
use kit::AppError;
use kit::scalars::Date;

use super::types::{
    Category, Expense, ExpenseConnection, ExpenseEdge, ExpenseFilter, ExpenseSummary, ExpensesCsv,
    PageInfo, count,
};
use super::{access, expense_id, service};
use crate::domain::{self, DayRange, MAX_PAGE, SortKey};

fn encode_cursor(key: &SortKey) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_str())
}

fn decode_cursor(cursor: &str) -> Result<SortKey, AppError> {
    let bad = || AppError::validation("after", "not a cursor from this list");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    SortKey::parse(&text).ok_or_else(bad)
}

/// A page of the caller's expenses (`Query.expenses` and `User.expenses`).
pub(super) async fn list_expenses(
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
    let (_, profile) = kit::users::caller_profile(ctx).await?;
    let before = after.as_deref().map(decode_cursor).transpose()?;
    let filter = filter.unwrap_or_default();
    let household = filter.household()?;
    let filter = filter.into_domain(profile.currency)?;
    let owner = access::list_owner(ctx, household.as_ref()).await?;
    let mut expenses = service(ctx)?
        .store
        .list(&owner, &filter, before.as_ref(), i64::from(first) + 1)
        .await?;
    let has_next_page = expenses.len() > first as usize;
    expenses.truncate(first as usize);
    let edges: Vec<ExpenseEdge> = expenses
        .into_iter()
        .map(|e| ExpenseEdge {
            cursor: encode_cursor(&e.sort_key()),
            node: Expense(e),
        })
        .collect();
    let end_cursor = edges.last().map(|e| e.cursor.clone());
    Ok(ExpenseConnection {
        edges,
        page_info: PageInfo {
            has_next_page,
            end_cursor,
        },
        owner,
        filter,
    })
}

/// The live expense `id` if the caller may read it (their own, or shared with a
/// household they are in); `None` for anyone else's and for what is no id of ours.
pub(super) async fn find_expense(ctx: &Context<'_>, id: &ID) -> Result<Option<Expense>> {
    kit::auth::caller_id(ctx)?;
    let Some(id) = expense_id(id) else {
        return Ok(None);
    };
    let Some(expense) = service(ctx)?.store.get_any(&id).await? else {
        return Ok(None);
    };
    Ok(access::may_read(ctx, &expense)
        .await?
        .then_some(Expense(expense)))
}

// Every field here is a root field: it shares the response's one `data` object with
// the other subgraphs' root fields, so it is nullable (`Option`), and a failure here
// costs only this field (see schema/README.md, "Nullability across subgraphs").
#[derive(Default)]
pub struct ExpenseQuery;

#[Object]
impl ExpenseQuery {
    /// The caller's expenses (or, with `filter.householdId`, the expenses shared with
    /// that household), newest date first.
    async fn expenses(
        &self,
        ctx: &Context<'_>,
        filter: Option<ExpenseFilter>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Option<ExpenseConnection>> {
        Ok(Some(list_expenses(ctx, filter, first, after).await?))
    }

    async fn expense(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Expense>> {
        find_expense(ctx, &id).await
    }

    /// Totals over `[from, to]` (inclusive dates) in `currency` (default: the user's).
    async fn expense_summary(
        &self,
        ctx: &Context<'_>,
        from: Option<Date>,
        to: Option<Date>,
        currency: Option<String>,
    ) -> Result<Option<ExpenseSummary>> {
        let (user, profile) = kit::users::caller_profile(ctx).await?;
        let currency = domain::currency(currency.as_deref(), profile.currency)?;
        let days = DayRange::inclusive(from.map(|d| d.0), to.map(|d| d.0))?;
        let summary = service(ctx)?.store.summary(&user, currency, days).await?;
        Ok(Some(ExpenseSummary(summary)))
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
    ) -> Result<Option<ExpensesCsv>> {
        let user = kit::auth::caller_id(ctx)?;
        let (csv, rows) = service(ctx)?
            .export_csv(&user, from.map(|d| d.0), to.map(|d| d.0))
            .await?;
        Ok(Some(ExpensesCsv {
            csv,
            row_count: count(rows),
        }))
    }

    /// Built-in categories of both types, then the caller's own.
    async fn categories(&self, ctx: &Context<'_>) -> Result<Option<Vec<Category>>> {
        let user = kit::auth::caller_id(ctx)?;
        let custom = service(ctx)?.store.custom_categories(&user).await?;
        Ok(Some(
            domain::all_categories(custom)
                .into_iter()
                .map(Category)
                .collect(),
        ))
    }
}
