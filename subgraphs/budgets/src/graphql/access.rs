//! Who may read and change a budget: the one place this subgraph decides it. A user's
//! own budget is theirs alone; a household's shared budget is read by its members
//! (every role) and created, changed and deleted by its owners. Roles are asked of the
//! users service on every request (`kit::households`), so a removed member is refused
//! from their next request on.

use async_graphql::Context;
use contract::households::{Need, Ownership};
use contract::ids::{BudgetId, HouseholdId, UserId};
use kit::AppError;
use kit::households::Membership;
pub use kit::households::{list_owner, may_read as may_read_household};

use super::service;
use crate::domain::Budget;

/// The caller may create a budget for `household` (its owners), or their own.
pub async fn may_create(
    ctx: &Context<'_>,
    household: Option<&HouseholdId>,
) -> Result<(UserId, Option<Membership>), AppError> {
    match household {
        None => Ok((kit::auth::caller_id(ctx)?, None)),
        Some(h) => {
            let (user, m) = kit::households::authorize(ctx, h, Need::Manage).await?;
            Ok((user, Some(m)))
        }
    }
}

/// The owner of the live budget `id` the caller is about to change or delete: the
/// caller, for their own; its household, when the caller is one of its owners.
/// `NOT_FOUND` for anyone else's (and for a household the caller is not in).
pub async fn owner_for_change(ctx: &Context<'_>, id: &BudgetId) -> Result<Ownership, AppError> {
    let user = kit::auth::caller_id(ctx)?;
    let budget: Option<Budget> = service(ctx)?.store.any_budget(id).await?;
    match budget.filter(|b| !b.deleted) {
        Some(b) => match &b.household {
            Some(h) => {
                kit::households::authorize(ctx, h, Need::Manage).await?;
                Ok(Ownership::Household(h.clone()))
            }
            None if b.user_id == user => Ok(Ownership::User(user)),
            None => Err(AppError::not_found("budget")),
        },
        None => Err(AppError::not_found("budget")),
    }
}
