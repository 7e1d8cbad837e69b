//! The budgets subgraph's queries.

use async_graphql::{Context, ID, Object, Result};
use contract::ids::BudgetId;

use super::{Budget, BudgetAlert, access, budget_view, service};

/// The queries of the budgets subgraph.
// Every field here is a root field: it shares the response's one `data` object with
// the other subgraphs' root fields, so it is nullable (`Option`), and a failure here
// costs only this field (see schema/README.md, "Nullability across subgraphs").
#[derive(Default)]
pub struct BudgetQueries;

#[Object]
impl BudgetQueries {
    /// The caller's budgets (or, with `householdId`, that household's shared budgets)
    /// with their current period's spending.
    async fn budgets(
        &self,
        ctx: &Context<'_>,
        household_id: Option<ID>,
    ) -> Result<Option<Vec<Budget>>> {
        let (_, profile) = kit::users::caller_profile(ctx).await?;
        let household = household_id
            .as_ref()
            .map(|h| kit::households::household_id("householdId", h))
            .transpose()?;
        let owner = access::list_owner(ctx, household.as_ref()).await?;
        let s = service(ctx)?;
        let today = s.clock.today_in(profile.timezone);
        let budgets = s.store.budgets_of(&owner).await?;
        Ok(Some(
            s.views(budgets, today)
                .await?
                .into_iter()
                .map(Budget)
                .collect(),
        ))
    }

    async fn budget(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Budget>> {
        Ok(budget_view(ctx, &id).await?)
    }

    /// Alerts of the caller's live budgets, newest first.
    async fn budget_alerts(
        &self,
        ctx: &Context<'_>,
        unread_only: Option<bool>,
    ) -> Result<Option<Vec<BudgetAlert>>> {
        let user = kit::auth::caller_id(ctx)?;
        let s = service(ctx)?;
        let ids: Vec<BudgetId> = s
            .store
            .budgets(&user)
            .await?
            .into_iter()
            .map(|b| b.id)
            .collect();
        let alerts = s
            .store
            .alerts(&user, &ids, unread_only.unwrap_or(false))
            .await?;
        Ok(Some(alerts.into_iter().map(BudgetAlert).collect()))
    }
}
