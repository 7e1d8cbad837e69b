//! The budgets subgraph's mutations.

use async_graphql::{Context, ID, MaybeUndefined, Object, Result};
use kit::AppError;
use kit::money::Currency;

use super::{
    Budget, BudgetAlert, CreateBudgetInput, UpdateBudgetInput, access, alert_id, budget_id, service,
};
use crate::service::{BudgetChange, NewBudget};

pub struct Mutation;

#[Object]
impl Mutation {
    async fn create_budget(&self, ctx: &Context<'_>, input: CreateBudgetInput) -> Result<Budget> {
        let (_, profile) = kit::users::caller_profile(ctx).await?;
        let household = input
            .household_id
            .as_ref()
            .map(|h| kit::households::household_id("householdId", h))
            .transpose()?;
        let (user, membership) = access::may_create(ctx, household.as_ref()).await?;
        let currency = input
            .currency
            .as_deref()
            .map(Currency::parse)
            .transpose()
            .map_err(|e| AppError::money("currency", e))?;
        let view = service(ctx)?
            .create(
                &user,
                profile,
                NewBudget {
                    category: input.category,
                    amount: input.amount.0,
                    currency,
                    period: input.period.into(),
                    thresholds: input.alert_thresholds,
                    household: membership,
                },
            )
            .await?;
        Ok(Budget(view))
    }

    /// Changing the amount re-arms the thresholds that are no longer reached.
    async fn update_budget(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateBudgetInput,
    ) -> Result<Budget> {
        let (_, profile) = kit::users::caller_profile(ctx).await?;
        let id = budget_id(&id).ok_or_else(|| AppError::not_found("budget"))?;
        let owner = access::owner_for_change(ctx, &id).await?;
        let change = BudgetChange {
            category: match input.category {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(c) => Some(Some(c)),
            },
            amount: input.amount.map(|d| d.0),
            period: input.period.map(Into::into),
            thresholds: input.alert_thresholds,
        };
        Ok(Budget(
            service(ctx)?.update(&owner, profile, &id, change).await?,
        ))
    }

    async fn delete_budget(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = budget_id(&id).ok_or_else(|| AppError::not_found("budget"))?;
        let owner = access::owner_for_change(ctx, &id).await?;
        service(ctx)?.delete(&owner, &id).await?;
        Ok(true)
    }

    async fn mark_budget_alert_read(&self, ctx: &Context<'_>, id: ID) -> Result<BudgetAlert> {
        let user = kit::auth::caller_id(ctx)?;
        let s = service(ctx)?;
        let id = alert_id(&id).ok_or_else(|| AppError::not_found("budget alert"))?;
        if !s.store.mark_read(&user, &id).await? {
            return Err(AppError::not_found("budget alert").into());
        }
        let alert = s
            .store
            .alert(&user, &id)
            .await?
            .ok_or_else(|| AppError::not_found("budget alert"))?;
        Ok(BudgetAlert(alert))
    }
}
