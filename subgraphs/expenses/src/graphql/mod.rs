//! The expenses subgraph's GraphQL schema: output and input types (`types`), the
//! queries (`query`), the mutations (`mutation`) and the federation entities
//! (`entities`). Resolvers work on domain values; inputs become domain values here.

mod access;
mod entities;
mod mutation;
mod query;
mod types;

use async_graphql::{Context, EmptySubscription, ID, MergedObject, Schema};
use contract::ids::ExpenseId;
use kit::AppError;
use kit::users::UserDirectory;

use crate::service::Expenses;

pub use entities::{EntityQuery, User};
pub use mutation::Mutation;
pub use query::ExpenseQuery;
pub use types::*;

// The root query: the expenses queries and the entity resolvers. (A plain comment:
// a doc comment would become the type's description in the committed SDL.)
#[derive(MergedObject, Default)]
pub struct Query(ExpenseQuery, EntityQuery);

pub type ExpensesSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn build_schema(expenses: Expenses, users: UserDirectory) -> ExpensesSchema {
    let loader: entities::ExpenseLoader =
        kit::loader::loader(entities::ExpensesById(expenses.clone()));
    Schema::build(Query::default(), Mutation, EmptySubscription)
        .enable_federation()
        .data(loader)
        .data(expenses)
        .data(users)
        .limit_depth(16)
        .limit_complexity(1000)
        .finish()
}

fn service<'a>(ctx: &Context<'a>) -> Result<&'a Expenses, AppError> {
    kit::server::context_data(ctx)
}

/// An expense id a client sent; `None` when it is no id we issue (so no one's).
fn expense_id(id: &ID) -> Option<ExpenseId> {
    ExpenseId::parse(id).ok()
}
