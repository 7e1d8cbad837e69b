//! Federation entity resolvers: `Budget` and `BudgetAlert` by id, only the caller's own.

use async_graphql::{Context, ID, Object, Result};

use super::{Budget, BudgetAlert, alert_id, budget_view, loaders};

#[derive(Default)]
pub struct Entities;

#[Object]
impl Entities {
    /// Entity resolution for `Budget`: only the caller's own; others resolve to null.
    #[graphql(entity)]
    async fn find_budget_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Budget>> {
        Ok(budget_view(ctx, &id).await?)
    }

    /// Entity resolution for `BudgetAlert`: only the caller's own.
    #[graphql(entity)]
    async fn find_budget_alert_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<BudgetAlert>> {
        let user = kit::auth::caller_id(ctx)?;
        let Some(id) = alert_id(&id) else {
            return Ok(None);
        };
        Ok(loaders(ctx)?.alerts.load(&user, id).await?.map(BudgetAlert))
    }
}
