//! Federation entities: `Expense` by id (only the caller's own) and `User`, which
//! this subgraph extends with `expenses`.

use async_graphql::{Context, ID, Object, Result};
use contract::ids::UserId;
use kit::AppError;

use super::query::{find_expense, list_expenses};
use super::types::{Expense, ExpenseConnection, ExpenseFilter};

/// The `User` entity, extended here with the user's expenses.
pub struct User {
    pub id: UserId,
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// The user's expenses (only ever the caller's own).
    async fn expenses(
        &self,
        ctx: &Context<'_>,
        filter: Option<ExpenseFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ExpenseConnection> {
        if kit::auth::caller_id(ctx)? != self.id {
            return Err(AppError::not_found("user").into());
        }
        Ok(list_expenses(ctx, filter, first, after).await?)
    }
}

/// The entity resolvers (part of `Query`).
#[derive(Default)]
pub struct EntityQuery;

#[Object]
impl EntityQuery {
    /// Entity resolution for `Expense`: only the caller's own; others resolve to null.
    #[graphql(entity)]
    async fn find_expense_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Expense>> {
        find_expense(ctx, &id).await
    }

    /// Entity resolution for `User` (to reach `User.expenses`): only the caller.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let user = kit::auth::caller_id(ctx)?;
        Ok((user == id.0).then_some(User { id: user }))
    }
}
