//! The budgets subgraph's GraphQL schema: output and input types (`types`), queries
//! (`query`), federation entity resolvers (`entities`) and mutations (`mutation`).
//! Resolvers work on the domain model; client ids and inputs become domain values here.

mod access;
mod entities;
mod loaders;
mod mutation;
mod query;
mod types;

use async_graphql::{Context, EmptySubscription, ID, MergedObject, Schema};
use contract::ids::{AlertId, BudgetId};
use kit::AppError;
use kit::users::UserDirectory;

use crate::service::Budgets;

pub use mutation::Mutation;
pub use types::{
    AlertSeverity, Budget, BudgetAlert, BudgetPeriod, CreateBudgetInput, UpdateBudgetInput,
};

// The query root: the queries and the federation entity resolvers (a doc comment
// here would become a description in the SDL).
#[derive(MergedObject, Default)]
pub struct Query(query::BudgetQueries, entities::Entities);

pub type BudgetsSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn build_schema(budgets: Budgets, users: UserDirectory) -> BudgetsSchema {
    let loaders = loaders::Loaders::new(&budgets);
    Schema::build(Query::default(), Mutation, EmptySubscription)
        .enable_federation()
        .data(loaders)
        .data(budgets)
        .data(users)
        .limit_depth(16)
        .limit_complexity(1000)
        .finish()
}

/// A budget id a client sent; text that is not an id we issue names no budget.
fn budget_id(id: &ID) -> Option<BudgetId> {
    BudgetId::parse(id).ok()
}

/// An alert id a client sent; text that is not an id we issue names no alert.
fn alert_id(id: &ID) -> Option<AlertId> {
    AlertId::parse(id).ok()
}

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Budgets, AppError> {
    kit::server::context_data(ctx)
}

fn loaders<'a>(ctx: &Context<'a>) -> Result<&'a loaders::Loaders, AppError> {
    kit::server::context_data(ctx)
}

/// The budget `id` (also a deleted one) the caller may read, with its current period:
/// their own (loaded together with the other budgets asked for at the moment), or a
/// shared budget of a household they are in. `None` for any other id.
async fn any_budget_view(ctx: &Context<'_>, id: &BudgetId) -> Result<Option<Budget>, AppError> {
    let (user, profile) = kit::users::caller_profile(ctx).await?;
    let s = service(ctx)?;
    let today = s.clock.today_in(profile.timezone);
    let Some(view) = loaders(ctx)?.views.load(&user, (id.clone(), today)).await? else {
        return Ok(None);
    };
    // A household's budget, whoever created it: for its members only.
    let readable = match &view.budget.household {
        None => view.budget.user_id == user,
        Some(h) => access::may_read_household(ctx, h).await?,
    };
    Ok(readable.then_some(Budget(view)))
}

/// The caller's live budget `id`, with its current period; `None` for an id that names
/// none of the caller's budgets.
async fn budget_view(ctx: &Context<'_>, id: &ID) -> Result<Option<Budget>, AppError> {
    let Some(id) = budget_id(id) else {
        kit::users::caller_profile(ctx).await?;
        return Ok(None);
    };
    Ok(any_budget_view(ctx, &id)
        .await?
        .filter(|b| !b.0.budget.deleted))
}
