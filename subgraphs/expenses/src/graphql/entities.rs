//! Federation entities: `Expense` by id (only the caller's own) and `User`, which
//! this subgraph extends with `expenses`.

use async_graphql::{Context, ID, Object, Result};
use std::collections::HashMap;

use contract::ids::{ExpenseId, UserId};
use kit::AppError;
use kit::loader::{UserBatch, UserLoader};

use super::query::list_expenses;
use super::types::{Expense, ExpenseConnection, ExpenseFilter};

/// The `User` entity, extended here with the user's expenses.
// Fields this subgraph adds to another subgraph's entity are resolved by a different
// fetch than the entity's own fields, so they are nullable (`Option`): this subgraph
// being down then nulls only them (see schema/README.md).
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
    ) -> Result<Option<ExpenseConnection>> {
        if kit::auth::caller_id(ctx)? != self.id {
            return Err(AppError::not_found("user").into());
        }
        Ok(Some(list_expenses(ctx, filter, first, after).await?))
    }
}

/// The user's expenses by id, deleted ones included: the router's `_entities` with N
/// `Expense` representations costs one query (see `kit::loader`).
pub struct ExpensesById(pub crate::service::Expenses);

impl UserBatch for ExpensesById {
    type Key = ExpenseId;
    type Value = crate::domain::Expense;

    async fn load(
        &self,
        user: &UserId,
        keys: &[ExpenseId],
    ) -> Result<HashMap<ExpenseId, crate::domain::Expense>, AppError> {
        let found = self.0.store.get_many_even_deleted(user, keys).await?;
        Ok(found.into_iter().map(|e| (e.id.clone(), e)).collect())
    }
}

pub type ExpenseLoader = UserLoader<ExpensesById>;

/// The entity resolvers (part of `Query`).
#[derive(Default)]
pub struct EntityQuery;

#[Object]
impl EntityQuery {
    /// Entity resolution for `Expense`: only the caller's own (others resolve to null),
    /// and a deleted one as it last was, so that a read model that lists it until it
    /// hears of the deletion (analytics' `topExpenses`) answers consistently instead of
    /// with a null in a non-null field.
    #[graphql(entity)]
    async fn find_expense_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Expense>> {
        let user = kit::auth::caller_id(ctx)?;
        let Ok(id) = ExpenseId::parse(&id) else {
            return Ok(None);
        };
        let loader = kit::server::context_data::<ExpenseLoader>(ctx)?;
        Ok(loader.load(&user, id).await?.map(Expense))
    }

    /// Entity resolution for `User` (to reach `User.expenses`): only the caller.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let user = kit::auth::caller_id(ctx)?;
        Ok((user == id.0).then_some(User { id: user }))
    }
}
